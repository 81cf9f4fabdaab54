"""The emulated OrangeFS kernel module, without I/O (spec §1, §4, §5).

Theory of operation
-------------------
:class:`Kernel` holds what the module holds — the request list, the
in-progress table, the two slot maps, the mounts, the request mutex, the
knobs — and does what its functions do, synchronously.  It never awaits,
sleeps or reads a clock: every public method takes ``now`` (seconds on any
monotonic clock) and the edge calls :meth:`expire` when
:meth:`next_deadline` comes.

Both sides of the device meet here:

* the **VFS side** builds an :class:`~pvfs2dev.op.Op` with :meth:`new_op` and
  hands it to :meth:`service` — ``service_operation``: take the request mutex
  (unless NO_MUTEX), link the op (PRIORITY at the head), pick the wait
  timeout (infinite with a client-core open, ``op_timeout_secs`` without, 0
  for FS_UMOUNT, ``op_timeout_secs`` on a retry), then wait.  The wait ends
  when the downcall arrives, a signal comes (:meth:`signal`), the device is
  released (purge) or the deadline passes.  Then the op is given up if it was
  not serviced, a purge under 5 attempts becomes EAGAIN and a non-slot op goes
  round again by itself, and finally ``op.result`` is set and ``op.wake()``
  called.  FILE_IO and READDIR get EAGAIN back and retake a slot themselves;
  an interrupted FILE_IO the client-core had read becomes a CANCEL
  (:meth:`cancel_io`).
* the **device side** is the client-core's open file: :meth:`dev_open`,
  :meth:`dev_read`, :meth:`dev_write`, :meth:`dev_poll`, :meth:`dev_ioctl`,
  :meth:`dev_map` / :meth:`install_bufmap`, :meth:`remount_all` and
  :meth:`dev_release`, each checking what the kernel checks in its order.

Errors returned to the client-core are raised as :class:`DeviceError` (or the
protocol package's :class:`~pvfs2proto.ProtocolError`, also an OSError with
the kernel's errno); errors of the VFS side are op results (``-errno``).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import heapq
import itertools
import os
import struct
from typing import Callable

import pvfs2proto as proto
from pvfs2proto import OpCode, OpFlags, OpState, ProtocolError
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_FEATURES_USERSPACE_VERSION,
    ORANGEFS_FIRST_TAG,
    ORANGEFS_KERNEL_PROTO_VERSION,
    ORANGEFS_PURGE_RETRY_COUNT,
    ORANGEFS_READDIR_DEFAULT_DESC_COUNT,
    UPCALL_SIZE,
)
from pvfs2proto.debug import decode_client_debug_string
from pvfs2proto.frames import check_write_body, check_write_head
from pvfs2proto.ioctl import IoctlCommand, check_ioctl_command, decode_ioctl_arg, validate_map_desc
from pvfs2proto.upcall import FS_ID_OFFSETS

from .bufmap import SlotMap
from .lists import InProgressTable, RequestList
from .op import SLOT_OPS, WAIT_INTERRUPTED, WAIT_PURGED, WAIT_SERVICED, WAIT_TIMED_OUT, Op
from .params import PARAMS
from .stats import Stats, TraceEvent, TraceSink

__all__ = ["DeviceError", "Kernel", "Mount"]

_READ_HEAD = struct.Struct("<iiQ")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
_CREDS = struct.Struct("<IIii")  # uid, gid, pid, tgid at upcall offset 4
_INT_OUT = struct.Struct("<i")
_EFAULT_STATUS = proto.errno_to_status(errno.EFAULT)

# Offsets inside the upcall (spec §3.2) the kernel writes after allocation.
_UPCALL_CREDS_AT = 4
_IO_BUF_INDEX_AT = 44  # req.io.buf_index
_IO_COUNT_AT = 48  # req.io.count
_READDIR_BUF_INDEX_AT = 76  # req.readdir.buf_index
_CANCEL_OP_TAG_AT = 40  # req.cancel.op_tag
_DOWNCALL_STATUS_AT = 4
_DOWNCALL_RESP_AT = 24
_AMT_COMPLETE = struct.Struct("<q")
# Plain ints for flag tests on the hot path (IntFlag arithmetic is slow).
_PRIORITY, _NO_MUTEX, _INPROGR = int(OpFlags.PRIORITY), int(OpFlags.NO_MUTEX), int(OpState.INPROGR)
_INTERRUPTIBLE = int(OpFlags.INTERRUPTIBLE)
_FILE_IO, _FS_UMOUNT = int(OpCode.FILE_IO), int(OpCode.FS_UMOUNT)


class DeviceError(OSError):
    """A device call failed; ``.errno`` is what the kernel's syscall returns."""


@dataclasses.dataclass
class Mount:
    """One mounted filesystem (``struct orangefs_sb_info_s``, the parts that matter)."""

    fs_id: int
    id: int
    devname: bytes
    root_khandle: bytes = bytes(16)
    #: Set when the client-core went away; ops of this fs are held back until
    #: REMOUNT_ALL remounts it (spec §4.12).
    pending: bool = False


class _Remount:
    """One REMOUNT_ALL in progress (it holds the request mutex throughout)."""

    def __init__(self, done: Callable[[int], None]) -> None:
        self.done = done


class Kernel:
    """The kernel module's state and rules.  See the module docstring."""

    def __init__(
        self,
        *,
        op_timeout_secs: int | None = None,
        slot_timeout_secs: int | None = None,
        hash_table_size: int = proto.ORANGEFS_DEFAULT_HASH_TABLE_SIZE,
        readdir_slots: int = ORANGEFS_READDIR_DEFAULT_DESC_COUNT,
        now: float = 0.0,
    ) -> None:
        self.now = now
        self.started = now
        #: Local sysfs knobs (name → int); negative module params clamp to 0.
        self.params: dict[str, int] = {name: p.default for name, p in PARAMS.items() if p.kind == "local"}
        if op_timeout_secs is not None:
            self.params["op_timeout_secs"] = max(0, op_timeout_secs)
        if slot_timeout_secs is not None:
            self.params["slot_timeout_secs"] = max(0, slot_timeout_secs)
        self.requests = RequestList()
        self.in_progress = InProgressTable(hash_table_size)
        self.io_slots = SlotMap("io", lambda: self.params["slot_timeout_secs"])
        self.readdir_slots = SlotMap("readdir", lambda: self.params["slot_timeout_secs"])
        self.io_slots.on_dead = self.readdir_slots.on_dead = self._check_release_done
        self.readdir_slot_count = readdir_slots
        #: ``open_access_count``: 0 closed, 1 open, -1 while a release runs.
        self.open_count = 0
        #: ``orangefs_userspace_version``: recorded by the first good write.
        self.userspace_version = 0
        #: ``orangefs_features`` from the last FEATURES downcall.
        self.features = 0
        #: The MAP descriptor of the installed buffer, or None.
        self.bufmap = None
        self.mounts: list[Mount] = []
        self.kernel_debug_mask = 0
        self.client_debug_masks = (0, 0)
        self.client_debug_keywords: list | None = None
        self.stats = Stats()
        #: Ops from service() until they return, and cancels until freed.
        self.live: dict[int, Op] = {}
        self._next_tag = ORANGEFS_FIRST_TAG
        self._mutex_held = False
        self._mutex_waiters: collections.deque[Op | _Remount] = collections.deque()
        self._timers: list[tuple[float, int, Op]] = []
        self._timer_seq = itertools.count()
        self._releasing = False
        # Hooks for the edge; all optional and called synchronously.
        #: A new op was queued by service_operation (wake pollers).
        self.on_poll: Callable[[], None] | None = None
        #: The release finished: the buffer may be unmapped, opens may proceed.
        self.on_release_done: Callable[[], None] | None = None
        #: A state transition happened.
        self.on_trace: TraceSink | None = None
        #: A line for the log: (level, message).
        self.on_log: Callable[[str, str], None] | None = None
        #: A deadline was set: :meth:`expire` is due by then.
        self.on_deadline: Callable[[float], None] | None = None
        self.io_slots.on_deadline = self.readdir_slots.on_deadline = self._deadline_set

    # ================================================================ VFS side

    @property
    def daemon_in_service(self) -> bool:
        """``is_daemon_in_service``: exactly "the device is open" (spec §1.2)."""
        return self.open_count == 1

    def new_tag(self) -> int:
        """``orangefs_new_tag``: the next tag; a wrap to 0 restarts at 100 (spec §4.4)."""
        tag = self._next_tag
        self._next_tag = tag + 1 if tag + 1 < 2**64 else ORANGEFS_FIRST_TAG
        return tag

    def new_op(
        self,
        upcall: bytes | bytearray,
        *,
        flags: int = 0,
        uid: int = 0,
        gid: int = 0,
        pid: int = 0,
        tgid: int = 0,
        now: float,
    ) -> Op:
        """``op_alloc``: a fresh op for an upcall, with a new tag and the caller's credentials.

        The upcall's uid/gid/pid/tgid fields are overwritten, as the kernel
        fills them; the rest is sent as given.
        """
        if len(upcall) != UPCALL_SIZE:
            raise ValueError(f"an upcall is {UPCALL_SIZE} bytes, not {len(upcall)}")
        self.now = now
        body = bytearray(upcall)
        (op_type,) = _U32.unpack_from(body, 0)
        _CREDS.pack_into(body, _UPCALL_CREDS_AT, uid, gid, pid, tgid)
        at = FS_ID_OFFSETS.get(op_type)
        fs_id = _S32.unpack_from(body, at)[0] if at is not None else 0
        return Op(
            tag=self.new_tag(),
            type=op_type,
            upcall=body,
            flags=flags,
            fs_id=fs_id,
            uid=uid,
            gid=gid,
            pid=pid,
            tgid=tgid,
            uses_shared_memory=op_type in SLOT_OPS,
            created=now,
        )

    @staticmethod
    def set_slot(op: Op, slot: int) -> None:
        """Put a slot index into a FILE_IO or READDIR upcall (``buf_index``)."""
        at = _IO_BUF_INDEX_AT if op.type == OpCode.FILE_IO else _READDIR_BUF_INDEX_AT
        _S32.pack_into(op.upcall, at, slot)
        op.slot = slot

    def service(self, op: Op, now: float) -> None:
        """``service_operation``: queue ``op`` and wait; ``op.wake()`` reports the result.

        The result (``op.result``) is 0 or a negative errno: the normalised
        downcall status, or ETIMEDOUT (no client-core within the timeout),
        EINTR (a signal), EAGAIN (purged; only FILE_IO and READDIR see it) or
        EIO (purged for the sixth time).
        """
        self.now = now
        # A FILE_IO or READDIR comes back here after a purge: a fresh call of
        # service_operation, so a fresh wait (infinite again with a daemon);
        # only ``attempts`` carries over, so the sixth purge still fails.
        op.result = op.done_at = op.wait_outcome = None
        op.retry_timeout = False
        self.live[op.tag] = op
        self._service_round(op)

    def signal(self, op: Op, now: float, *, fatal: bool = False) -> bool:
        """Deliver a signal to the submitter waiting on ``op`` (spec §4.3, §4.9).

        An ordinary signal ends INTERRUPTIBLE waits; a fatal one (the caller
        was killed) ends any wait but a WRITEBACK one.  A wait for the request
        mutex ends with EINTR and the op never queued.

        Returns:
            Whether the wait ended.
        """
        self.now = now
        if op.result is not None:
            return False
        if op.linked == "mutex":
            # mutex_lock_interruptible with INTERRUPTIBLE, else mutex_lock_killable;
            # WRITEBACK only changes the wait for the downcall.
            if not (fatal or op.flags & _INTERRUPTIBLE):
                return False
            self._mutex_waiters.remove(op)
            op.linked = None
            self._finish(op, -errno.EINTR)
            return True
        if op.linked in ("request", "inprogress") and (op.interruptible or (fatal and op.killable)):
            self._end_wait(op, WAIT_INTERRUPTED)
            return True
        return False

    def cancel_io(self, op: Op, now: float) -> bool:
        """``orangefs_cancel_op_in_progress``: turn a failed, already-read FILE_IO into a CANCEL.

        The CANCEL carries the I/O's tag in ``op_tag``, gets a tag of its own,
        goes to the head of the request list without waking pollers, and keeps
        the I/O slot until its downcall arrives or it is purged.

        Returns:
            True if a CANCEL was queued (the caller must *not* put the slot).
        """
        self.now = now
        if not op.state & _INPROGR:
            return False
        # The kernel turns the op into a cancel and tags it before it looks
        # for a daemon, so the tag is used up either way.
        tag = self.new_tag()
        if not self.daemon_in_service:
            return False
        upcall = bytearray(UPCALL_SIZE)
        _U32.pack_into(upcall, 0, OpCode.CANCEL)
        struct.pack_into("<Q", upcall, _CANCEL_OP_TAG_AT, op.tag)
        cancel = Op(
            tag=tag,
            type=OpCode.CANCEL,
            upcall=upcall,
            state=op.state,
            slot=op.slot,
            is_cancel=True,
            created=now,
            queued=now,
        )
        before = cancel.state
        cancel.transition("queue")
        self.requests.add_head(cancel)
        self.live[cancel.tag] = cancel
        self.stats.cancels_sent += 1
        self._trace(cancel, "queue", before)
        return True

    # ---------------------------------------------------------------- mounts

    def add_mount(self, fs_id: int, mount_id: int, devname: bytes, root_khandle: bytes = bytes(16)) -> Mount:
        """Record a filesystem the VFS has just mounted (after its FS_MOUNT)."""
        mount = Mount(fs_id, mount_id, devname, root_khandle)
        self.mounts.append(mount)
        return mount

    def remove_mount(self, fs_id: int, mount_id: int | None = None) -> Mount | None:
        """Forget a filesystem (after its FS_UMOUNT); ``mount_id`` picks one of several with that fs_id."""
        for i, mount in enumerate(self.mounts):
            if mount.fs_id == fs_id and mount_id in (None, mount.id):
                return self.mounts.pop(i)
        return None

    def mount_by_fs_id(self, fs_id: int) -> Mount | None:
        for mount in self.mounts:
            if mount.fs_id == fs_id:
                return mount
        return None

    # ================================================================ device side

    def dev_open(self, flags: int, now: float) -> bool:
        """``orangefs_devreq_open``.

        Returns:
            True when opened; False while a release is still running (the
            kernel's open blocks on the device mutex until it ends — call
            again after ``on_release_done``).

        Raises:
            DeviceError: EINVAL without O_NONBLOCK; EACCES if already open.
        """
        self.now = now
        if not flags & os.O_NONBLOCK:
            raise DeviceError(errno.EINVAL, "the device must be opened with O_NONBLOCK")
        if self.open_count == -1:
            return False
        if self.open_count != 0:
            raise DeviceError(errno.EACCES, "the device is already open (one client-core at a time)")
        self.open_count = 1
        self.stats.device_opens += 1
        self._log("info", "client-core opened the device")
        return True

    def dev_read(self, count: int, now: float) -> bytes:
        """``orangefs_devreq_read``: hand the first eligible op to the client-core.

        Returns:
            The 8544-byte read frame (version 0, magic, tag, upcall).

        Raises:
            DeviceError: EINVAL unless ``count`` is exactly 8544; EAGAIN when
                nothing on the request list is eligible.
        """
        self.now = now
        if count != MAX_DEV_REQ_UPSIZE:
            raise DeviceError(errno.EINVAL, f"device reads must be exactly {MAX_DEV_REQ_UPSIZE} bytes")
        if not self.requests:
            raise DeviceError(errno.EAGAIN, "no upcall waiting")
        for op in self.requests.head():
            if op.purged or op.given_up or not self._eligible(op):
                continue
            break
        else:
            raise DeviceError(errno.EAGAIN, "no eligible upcall")
        self.requests.remove(op)
        before = op.state
        op.transition("read")
        op.read_at = now
        self.in_progress.add(op)
        self._trace(op, "read", before)
        return _READ_HEAD.pack(ORANGEFS_KERNEL_PROTO_VERSION, ORANGEFS_DEVREQ_MAGIC, op.tag) + op.upcall

    def dev_write(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """``orangefs_devreq_write_iter``: deliver one downcall (spec §1.4).

        Returns:
            ``len(data)``, also for a downcall whose tag matches no op in
            progress (accepted and dropped).

        Raises:
            ProtocolError: EFAULT (short), EPROTO (version or magic).
            DeviceError: EPROTO if the version differs from the recorded one;
                EFAULT for a malformed downcall — its op is completed with
                EFAULT too, so the waiting caller gets EFAULT.
        """
        self.now = now
        tag = check_write_head(data)
        (version,) = _U32.unpack_from(data, 0)
        if not self.userspace_version:
            self.userspace_version = version
        elif version != self.userspace_version:
            raise DeviceError(errno.EPROTO, f"userspace version changed from {self.userspace_version} to {version}")
        op = self.in_progress.find(tag)
        if op is None:
            self._log("debug", f"downcall for unknown tag {tag} dropped")
            return len(data)
        self.in_progress.remove(op)
        downcall = bytearray(data[16:MAX_DEV_REQ_DOWNSIZE])
        failure: ProtocolError | None = None
        trailer = None
        try:
            status, trailer = check_write_body(data)
            if op.type == _FILE_IO and status == 0:
                (count,) = _S32.unpack_from(op.upcall, _IO_COUNT_AT)
                (amt,) = _AMT_COMPLETE.unpack_from(downcall, _DOWNCALL_RESP_AT)
                if not 0 <= amt <= count:
                    # Our rule; the kernel never checks, and would overrun the
                    # slot or hand back other callers' bytes (man/pvfs2-req.4).
                    raise ProtocolError(errno.EFAULT, f"amt_complete {amt} is outside 0..{count}")
        except ProtocolError as exc:
            failure = exc
            trailer = None
            _S32.pack_into(downcall, _DOWNCALL_STATUS_AT, _EFAULT_STATUS)
        if op.is_cancel:
            self._free_cancel(op)
        else:
            op.downcall = downcall  # already a private copy; its readers never write to it
            op.trailer = None if trailer is None else bytes(trailer)
            before = op.state
            op.transition("service")
            self._trace(op, "service", before)
            self._end_wait(op, WAIT_SERVICED)
        if failure is not None:
            self._log("warning", f"bad downcall for op {op.tag} {op.name}: {failure.strerror}")
            raise DeviceError(failure.errno, failure.strerror)
        return len(data)

    def dev_poll(self) -> bool:
        """``orangefs_devreq_poll``: POLLIN exactly while the request list is non-empty."""
        return bool(self.requests)

    def dev_ioctl(self, cmd: int, arg: bytes, now: float) -> tuple[int, bytes]:
        """The informational and debug ioctls (all but MAP and REMOUNT_ALL).

        Returns:
            (return value, bytes written back to the argument).

        Raises:
            ProtocolError: EINVAL/ENOTTY for a bad command, EIO/EFAULT for an
                unreadable argument, EINVAL for a bad DEBUG type or a
                CLIENT_STRING without lines.
        """
        self.now = now
        command = check_ioctl_command(cmd)
        if command is IoctlCommand.GET_MAGIC:
            return 0, _INT_OUT.pack(ORANGEFS_DEVREQ_MAGIC)
        if command is IoctlCommand.GET_MAX_UPSIZE:
            return 0, _INT_OUT.pack(MAX_DEV_REQ_UPSIZE)
        if command is IoctlCommand.GET_MAX_DOWNSIZE:
            return 0, _INT_OUT.pack(MAX_DEV_REQ_DOWNSIZE)
        if command is IoctlCommand.UPSTREAM:
            return 0, _INT_OUT.pack(1)
        if command is IoctlCommand.DEBUG:
            desc = decode_ioctl_arg(command, arg)
            if desc.mask_type == proto.DebugMaskType.KERNEL_MASK:
                self.kernel_debug_mask = desc.mask_value & 0xFFFF
            elif desc.mask_type != proto.DebugMaskType.CLIENT_MASK:
                raise DeviceError(errno.EINVAL, f"DEBUG: unknown mask type {desc.mask_type}")
            return 0, b""
        if command is IoctlCommand.CLIENT_MASK:
            desc = decode_ioctl_arg(command, arg)
            self.client_debug_masks = (desc.mask1_value, desc.mask2_value)
            return 0, b""
        if command is IoctlCommand.CLIENT_STRING:
            keywords = decode_client_debug_string(decode_ioctl_arg(command, arg))
            if self.client_debug_keywords is None:  # debugfs files are built once
                self.client_debug_keywords = keywords
            return 0, b""
        raise DeviceError(errno.EINVAL, f"{command.kernel_name} is not handled by dev_ioctl")

    def dev_map(self, arg: bytes):
        """MAP's checks (``orangefs_bufmap_initialize``); returns the descriptor to install.

        Raises:
            ProtocolError: EIO for an unreadable argument; EINVAL for a bad
                geometry (spec §5.1) or when a buffer is already registered.
        """
        desc = decode_ioctl_arg(IoctlCommand.MAP, arg)
        validate_map_desc(desc)
        if self.bufmap is not None:
            raise DeviceError(errno.EINVAL, "a shared buffer is already registered")
        return desc

    def install_bufmap(self, desc, now: float) -> None:
        """Install the I/O map (``desc.count`` slots) and the readdir map; wake slot waiters."""
        self.now = now
        self.bufmap = desc
        self.io_slots.install(desc.count, now)
        self.readdir_slots.install(self.readdir_slot_count, now)

    def remount_all(self, now: float, done: Callable[[int], None]) -> None:
        """``ORANGEFS_DEV_REMOUNT_ALL``: remount every filesystem, holding off other ops.

        Takes the request mutex, then for each mount in order sends FS_MOUNT
        (PRIORITY | NO_MUTEX) and, at userspace version ≥ 20906, FEATURES;
        stops at the first mount whose final status is an error.  ``done``
        gets that status (0 if none) when it is all over (spec §4.12).
        """
        self.now = now
        request = _Remount(done)
        if self._mutex_held:
            self._mutex_waiters.append(request)
        else:
            self._mutex_held = True
            self._remount_step(request, 0)

    def dev_release(self, now: float) -> None:
        """``orangefs_devreq_release``: the client-core's device is closed (spec §1.6).

        Marks both slot maps dying, takes the daemon out of service, marks
        every mount pending, purges the request list and the in-progress table
        (cancels are freed; every other op is PURGED and its submitter woken),
        and finishes — recorded version reset, ``on_release_done`` — once
        every slot has come back.
        """
        self.now = now
        if self.open_count != 1:
            return
        self.stats.device_releases += 1
        self._releasing = True
        self.open_count = -1
        self.io_slots.mark_killed(now)
        self.readdir_slots.mark_killed(now)
        for mount in self.mounts:
            mount.pending = True
        purged = []
        for op in list(self.requests) + list(self.in_progress):
            if op.is_cancel:
                self._free_cancel(op)
                continue
            before = op.state
            op.transition("purge")
            self.stats.purged += 1
            self._trace(op, "purge", before)
            purged.append(op)
        # The submitters run after the purge walk, as the woken tasks would.
        for op in purged:
            if op.result is None and op.purged:
                self._end_wait(op, WAIT_PURGED)
        self._log("info", f"client-core closed the device: {len(purged)} ops purged")
        self._check_release_done(now)

    # ================================================================ time

    def next_deadline(self) -> float | None:
        """When :meth:`expire` must next be called, or None."""
        while self._timers:
            deadline, seq, op = self._timers[0]
            if op.deadline == deadline and op.result is None and op.linked in ("request", "inprogress"):
                break
            heapq.heappop(self._timers)
        candidates = [d for d in (self.io_slots.next_deadline(), self.readdir_slots.next_deadline()) if d is not None]
        if self._timers:
            candidates.append(self._timers[0][0])
        return min(candidates, default=None)

    def expire(self, now: float) -> None:
        """End every wait whose deadline is ``now`` or earlier (ETIMEDOUT)."""
        self.now = now
        while self._timers and self._timers[0][0] <= now:
            deadline, _, op = heapq.heappop(self._timers)
            if op.deadline == deadline and op.result is None and op.linked in ("request", "inprogress"):
                self._end_wait(op, WAIT_TIMED_OUT)
        self.io_slots.expire(now)
        self.readdir_slots.expire(now)

    # ================================================================ internals

    def _service_round(self, op: Op) -> None:
        # retry_servicing: take the request mutex unless told not to.
        if not op.flags & _NO_MUTEX and self._mutex_held:
            op.linked = "mutex"
            self._mutex_waiters.append(op)
            return
        self._queue(op)

    def _queue(self, op: Op) -> None:
        before = op.state
        op.transition("queue")
        if op.flags & _PRIORITY:
            self.requests.add_head(op)
        else:
            self.requests.add_tail(op)
        op.queued = self.now
        self._trace(op, "queue", before)
        timeout = None
        if not self.daemon_in_service:
            timeout = 0 if op.type == _FS_UMOUNT else self.params["op_timeout_secs"]
        elif op.retry_timeout:
            timeout = self.params["op_timeout_secs"]
        if self.on_poll:
            self.on_poll()
        if timeout is None:
            op.deadline = None
        elif timeout == 0:
            self._end_wait(op, WAIT_TIMED_OUT)
        else:
            op.deadline = self.now + timeout
            heapq.heappush(self._timers, (op.deadline, next(self._timer_seq), op))
            self._deadline_set(op.deadline)

    def _end_wait(self, op: Op, outcome: str) -> None:
        """The rest of service_operation once the wait is over (spec §4.5 steps 7–10, §4.6)."""
        op.deadline = None
        op.wait_outcome = outcome
        if outcome == WAIT_SERVICED:
            (status,) = _S32.unpack_from(op.downcall, _DOWNCALL_STATUS_AT)
            result = -proto.status_to_errno(status)
        else:
            if outcome == WAIT_INTERRUPTED:
                result = -errno.EINTR
            elif outcome == WAIT_PURGED:
                result = -errno.EAGAIN if op.attempts < ORANGEFS_PURGE_RETRY_COUNT else -errno.EIO
            else:
                result = -errno.ETIMEDOUT
                self.stats.timed_out += 1
                self._log("warning", f"op {op.tag} {op.name}: wait timed out; aborting attempt")
            self._give_up(op)
        # Only a purge retries: a serviced op whose client-core answered EAGAIN
        # returns it as is (service_operation jumps to "out" on a downcall).
        # Retrying it re-queued a SERVICED op (TransitionError) and counted an
        # attempt the kernel never counts.
        if outcome == WAIT_PURGED and result == -errno.EAGAIN:
            op.attempts += 1
            op.retry_timeout = True
            if not op.uses_shared_memory:
                self._service_round(op)
                return
        self._finish(op, result)

    def _give_up(self, op: Op) -> None:
        """``orangefs_clean_up_interrupted_operation``: mark GIVEN_UP and unlink."""
        before = op.state
        op.transition("give_up")
        if op.linked == "request":
            self.requests.remove(op)
        elif op.linked == "inprogress":
            self.in_progress.remove(op)
        self._trace(op, "give_up", before)

    def _finish(self, op: Op, result: int) -> None:
        op.result = result
        op.done_at = self.now
        self.live.pop(op.tag, None)
        self.stats.record(op.type, result, self.now - op.created)
        if op.wake:
            op.wake()

    def _free_cancel(self, op: Op) -> None:
        """``put_cancel``: a CANCEL is done (answered or purged); its I/O slot is free."""
        if op.linked == "request":
            self.requests.remove(op)
        elif op.linked == "inprogress":
            self.in_progress.remove(op)
        self.live.pop(op.tag, None)
        self._trace(op, "free", op.state)
        if op.slot is not None:
            self.io_slots.put(op.slot, self.now)

    def _eligible(self, op: Op) -> bool:
        """The device read's mount filter (spec §1.3 rule 2)."""
        if not op.fs_id:
            return True
        mount = self.mount_by_fs_id(op.fs_id)
        if mount is not None:
            return not mount.pending
        if op.type in (OpCode.FS_MOUNT, OpCode.GETATTR, OpCode.FS_UMOUNT):
            return True
        # gossip_err in the kernel, on every read that passes the op by.
        self._log("error", f"op {op.tag} {op.name}: skipped, no mounted fs has fs_id {op.fs_id}")
        return False

    def _check_release_done(self, now: float) -> None:
        if not self._releasing or self.io_slots.c != -1 or self.readdir_slots.c != -1:
            return
        self._releasing = False
        self.bufmap = None
        self.open_count = 0
        self.userspace_version = 0
        self._log("info", "release finished: every slot returned")
        if self.on_release_done:
            self.on_release_done()

    def _mutex_release(self) -> None:
        self._mutex_held = False
        while self._mutex_waiters and not self._mutex_held:
            waiter = self._mutex_waiters.popleft()
            if isinstance(waiter, _Remount):
                self._mutex_held = True
                self._remount_step(waiter, 0)
            else:
                waiter.linked = None
                self._queue(waiter)

    # REMOUNT_ALL as a chain of op completions (orangefs_remount_all / orangefs_remount).

    def _remount_step(self, request: _Remount, index: int) -> None:
        if index >= len(self.mounts):
            self._mutex_release()
            request.done(0)
            return
        mount = self.mounts[index]
        upcall = proto.encode_upcall(
            {"type": OpCode.FS_MOUNT, "req": {"fs_mount": {"orangefs_config_server": mount.devname}}}
        )
        op = self.new_op(upcall, flags=OpFlags.PRIORITY | OpFlags.NO_MUTEX, now=self.now)
        op.wake = lambda: self._remount_mounted(request, index, mount, op)
        self.service(op, self.now)

    def _remount_mounted(self, request: _Remount, index: int, mount: Mount, op: Op) -> None:
        status = op.result
        if status == 0:
            # Only the id is refreshed: fs_id must be the one the client-core
            # handed out before (spec §4.12).
            (mount.id,) = _S32.unpack_from(op.downcall, _DOWNCALL_RESP_AT + 4)
            mount.pending = False
        if self.userspace_version < ORANGEFS_FEATURES_USERSPACE_VERSION:
            self.features = 0
            self._remount_after(request, index, status)
            return
        upcall = proto.encode_upcall({"type": OpCode.FEATURES})
        features = self.new_op(upcall, flags=OpFlags.PRIORITY | OpFlags.NO_MUTEX, now=self.now)
        features.wake = lambda: self._remount_featured(request, index, features)
        self.service(features, self.now)

    def _remount_featured(self, request: _Remount, index: int, op: Op) -> None:
        # FEATURES' status replaces the FS_MOUNT status (a quirk, spec §4.12).
        if op.result == 0:
            (self.features,) = struct.unpack_from("<Q", op.downcall, _DOWNCALL_RESP_AT)
        else:
            self.features = 0
        self._remount_after(request, index, op.result)

    def _remount_after(self, request: _Remount, index: int, status: int) -> None:
        if status != 0:
            self._mutex_release()
            request.done(status)
        else:
            self._remount_step(request, index + 1)

    def _trace(self, op: Op, event: str, before: int) -> None:
        if self.on_trace:
            self.on_trace(
                TraceEvent(self.now, op.tag, op.name, event, proto.state_names(before), proto.state_names(op.state))
            )

    def _deadline_set(self, deadline: float) -> None:
        if self.on_deadline:
            self.on_deadline(deadline)

    def _log(self, level: str, message: str) -> None:
        if self.on_log:
            self.on_log(level, message)
