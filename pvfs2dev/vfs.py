"""The VFS glue: what the kernel does between a filesystem call and its upcalls (spec §4.13, §5.3–§5.4).

A :class:`Call` is one filesystem call in progress on behalf of one caller.
:func:`perform` takes an upcall as the caller built it and does what the
kernel's VFS code would around it:

* FILE_IO — takes an I/O slot (waiting if none is free), copies write data
  into it, services the op, copies read data out, and puts the slot back; a
  request larger than a slot goes in slot-size chunks and stops at the first
  short transfer; a purge retakes a slot and resubmits; a failure after the
  client-core read the op sends a CANCEL, which keeps the slot (file.c);
* READDIR — takes a readdir slot for the op's duration, retries after a
  purge, refuses a trailer over 16 MiB with EIO (dir.c);
* FS_MOUNT — is mount(2): FS_MOUNT, then GETATTR of the root and FEATURES,
  and the filesystem joins the mount list (super.c);
* FS_UMOUNT — is umount(2): FS_UMOUNT, and the filesystem leaves the list;
* anything else — one service_operation.

Signals reach a call through :meth:`Call.interrupt`: an ordinary signal ends
an interruptible wait, a fatal one (the caller is gone) any wait but
WRITEBACK; a signal that arrives between waits stays pending for the next.
"""

from __future__ import annotations

import dataclasses
import errno
import struct
from typing import Callable

import trio

import pvfs2proto as proto
from pvfs2proto import IoType, OpCode
from pvfs2proto.constants import (
    DOWNCALL_SIZE,
    ORANGEFS_FEATURES_USERSPACE_VERSION,
    ORANGEFS_FS_ID_NULL,
    READDIR_TRAILER_MAX,
    UPCALL_SIZE,
)

from .bufmap import SlotMap, SlotWaiter
from .broker import Broker
from .op import Op

_S32 = struct.Struct("<i")
_IO_FIELDS = struct.Struct("<iiiiq")  # req.io: __pad1, buf_index, count, __pad2, offset
_IO_AT = 40
_IO_TYPE_AT = 88  # req.io.io_type
_AMT_AT = 24  # resp.io.amt_complete in the downcall
_STATUS_AT = 4


@dataclasses.dataclass
class Result:
    """What a call returns to its caller."""

    result: int  # 0 or -errno
    tag: int = 0
    downcall: bytes = bytes(DOWNCALL_SIZE)
    data: bytes | bytearray | memoryview = b""  # FILE_IO read data, or the READDIR trailer
    #: Called once ``data`` has been sent or copied: a single-slot read hands
    #: out a view of the slot itself and keeps the slot until then.
    release: Callable[[], None] | None = None


@dataclasses.dataclass(eq=False)
class Call:
    """One filesystem call in progress: whose it is and what it waits on."""

    broker: Broker
    uid: int
    gid: int
    pid: int
    tgid: int
    flags: int = 0
    #: What the call waits on right now (for signals).
    op: Op | None = None
    slot_wait: tuple[SlotMap, SlotWaiter] | None = None
    #: A signal not yet consumed by a wait: None, "signal" or "fatal".
    pending_signal: str | None = None

    @property
    def kernel(self):
        return self.broker.kernel

    def interrupt(self, *, fatal: bool = False) -> None:
        """Deliver a signal (fatal: the caller was killed or went away)."""
        if fatal or self.pending_signal is None:
            self.pending_signal = "fatal" if fatal else "signal"
        now = self.broker.now()
        if self.slot_wait is not None:
            slots, waiter = self.slot_wait
            # Slot waits are TASK_INTERRUPTIBLE: any signal ends them (bufmap.c).
            if slots.cancel_wait(waiter, errno.EINTR):
                self._consume_signal()
        elif self.op is not None and self.kernel.signal(self.op, now, fatal=fatal):
            self._consume_signal()

    def _consume_signal(self) -> None:
        if self.pending_signal == "signal":
            self.pending_signal = None

    # -- the two waits ------------------------------------------------------------------------------

    async def service(self, op: Op) -> int:
        """service_operation, awaited: queue ``op`` and wait for its result."""
        done = trio.Event()
        op.wake = done.set
        op.owner = self
        self.op = op
        now = self.broker.now()
        # A fatal signal already pending kills the wait at once; an ordinary
        # one only ends an interruptible wait (and is consumed by it).
        self.kernel.service(op, now)
        if self.pending_signal and op.result is None:
            if self.kernel.signal(op, now, fatal=self.pending_signal == "fatal"):
                self._consume_signal()
        try:
            await done.wait()
        finally:
            self.op = None
        return op.result

    async def get_slot(self, slots: SlotMap) -> int:
        """``orangefs_bufmap_get``: a slot index, or -errno (ETIMEDOUT, EINTR)."""
        if self.pending_signal:
            self._consume_signal()
            return -errno.EINTR
        got = slots.get(self.broker.now())
        if isinstance(got, int):
            return got
        done = trio.Event()
        got.wake = done.set
        self.slot_wait = (slots, got)
        try:
            await done.wait()
        finally:
            self.slot_wait = None
        return got.result

    def new_op(self, upcall: bytes | bytearray, flags: int | None = None) -> Op:
        return self.kernel.new_op(
            upcall,
            flags=self.flags if flags is None else flags,
            uid=self.uid,
            gid=self.gid,
            pid=self.pid,
            tgid=self.tgid,
            now=self.broker.now(),
        )


#: Ops the VFS glue wraps in more than one service_operation (or refuses).
_GLUE_OPS = frozenset({OpCode.FILE_IO, OpCode.READDIR, OpCode.FS_MOUNT, OpCode.FS_UMOUNT, OpCode.CANCEL})


def needs_glue(upcall: bytes | bytearray) -> bool:
    """Whether :func:`perform` must run for this upcall, or :func:`start` will do."""
    return len(upcall) != UPCALL_SIZE or struct.unpack_from("<I", upcall, 0)[0] in _GLUE_OPS


def start(call: Call, upcall: bytes | bytearray, done: Callable[[Result], None]) -> None:
    """Start a plain op (one service_operation) and call ``done`` with its result.

    No task and no event: the op's wake-up answers the caller directly, which
    is what keeps the VFS channel's per-op cost low.
    """
    op = call.new_op(upcall)
    op.owner = call
    call.op = op

    def finished() -> None:
        call.op = None
        done(Result(op.result, op.tag, op.downcall or bytes(DOWNCALL_SIZE)))

    op.wake = finished
    call.kernel.service(op, call.broker.now())


async def perform(call: Call, upcall: bytes | bytearray, data: bytes | memoryview = b"") -> Result:
    """Do what the kernel does for one upcall-shaped request (see the module docstring).

    Args:
        call: who is calling, with which service_operation flags.
        upcall: the 8528-byte upcall as the caller built it (tag and
            credentials are the kernel's to fill).
        data: FILE_IO write data (exactly ``io.count`` bytes).

    Returns:
        The result.  If it has a ``release``, its ``data`` is a view of an I/O
        slot: the caller must call ``release()`` once it has sent or copied
        the data, and must not touch the data after that.
    """
    if len(upcall) != UPCALL_SIZE:
        return Result(-errno.EINVAL)
    (op_type,) = struct.unpack_from("<I", upcall, 0)
    if op_type == OpCode.FILE_IO:
        return await file_io(call, upcall, data)
    if data:
        return Result(-errno.EINVAL)
    if op_type == OpCode.READDIR:
        return await readdir(call, upcall)
    if op_type == OpCode.FS_MOUNT:
        return await mount(call, upcall)
    if op_type == OpCode.FS_UMOUNT:
        return await umount(call, upcall)
    if op_type == OpCode.CANCEL:
        # CANCELs are the kernel's own; no caller may send one.
        return Result(-errno.EINVAL)
    op = call.new_op(upcall)
    result = await call.service(op)
    return Result(result, op.tag, op.downcall or bytes(DOWNCALL_SIZE))


def _amt_complete(op: Op) -> int:
    return struct.unpack_from("<q", op.downcall, _AMT_AT)[0]


async def file_io(call: Call, upcall: bytes | bytearray, data: bytes | memoryview = b"") -> Result:
    """Direct I/O in slot-size chunks (``wait_for_direct_io`` / ``do_readv_writev``)."""
    kernel, broker = call.kernel, call.broker
    _, _, count, _, offset = _IO_FIELDS.unpack_from(upcall, _IO_AT)
    (io_type,) = struct.unpack_from("<I", upcall, _IO_TYPE_AT)
    if io_type not in (IoType.READ, IoType.WRITE) or count < 0 or offset < 0:
        return Result(-errno.EINVAL)
    if io_type == IoType.WRITE and len(data) != count:
        return Result(-errno.EINVAL)
    if io_type == IoType.READ and data:
        return Result(-errno.EINVAL)
    if io_type == IoType.READ:
        kernel.stats.reads += 1
    else:
        kernel.stats.writes += 1
    done = 0
    out = bytearray()
    last_tag = 0
    last_downcall = bytes(DOWNCALL_SIZE)
    while done < count or count == 0:
        op = None
        while True:
            slot = await call.get_slot(kernel.io_slots)
            if slot < 0:
                return _io_result(done, slot, last_tag, last_downcall, out)
            slot_size = broker.buffers.io.slot_size
            chunk = min(count - done, slot_size)
            if op is None:
                op = call.new_op(upcall)
            # Fresh each round: after a purge the new buffer may have other slots.
            _IO_FIELDS.pack_into(op.upcall, _IO_AT, 0, slot, chunk, 0, offset + done)
            kernel.set_slot(op, slot)
            if io_type == IoType.WRITE:
                # (Again after a purge: the iterator is rewound, the data recopied.)
                broker.buffers.io.slot(slot)[:chunk] = data[done : done + chunk]
            result = await call.service(op)
            last_tag = op.tag
            if result == -errno.EAGAIN and op.purged:
                # Purged: the slot goes back, a new one is taken (after the new
                # client-core maps a buffer) and the same op goes again, so
                # its attempts add up to the sixth purge's EIO.
                kernel.io_slots.put(slot, broker.now())
                continue
            break
        if result < 0:
            result = _interrupted_io_result(op, result, io_type, offset + done, chunk)
            if not kernel.cancel_io(op, broker.now()):
                kernel.io_slots.put(slot, broker.now())
            if result > 0:  # an interrupted write the client-core had read counts as done
                done += result
                result = 0
            return _io_result(done, result, last_tag, last_downcall, out)
        last_downcall = op.downcall
        amt = _amt_complete(op)
        if io_type == IoType.READ and done == 0 and (amt < chunk or amt == count):
            # All the data is in this one slot: reply from the slot itself and
            # put it back once the reply is out (no copy into a buffer).
            result = _io_result(amt, 0, last_tag, last_downcall, broker.buffers.io.slot(slot)[:amt])
            result.release = lambda: kernel.io_slots.put(slot, broker.now())
            return result
        if io_type == IoType.READ:
            out += broker.buffers.io.slot(slot)[:amt]
        kernel.io_slots.put(slot, broker.now())
        done += amt
        if amt < chunk or count == 0:
            break
    return _io_result(done, 0, last_tag, last_downcall, out)


def _interrupted_io_result(op: Op, result: int, io_type: int, offset: int, chunk: int) -> int:
    """file.c on EINTR: what an interrupted chunk reports (spec §4.10)."""
    if result != -errno.EINTR:
        return result
    if op.state & proto.OpState.INPROGR:
        # The client-core had the op: reads fail, writes count as written.
        return -errno.EINTR if io_type == IoType.READ else chunk
    # Still waiting: nothing happened; EINTR only at file offset 0.
    return -errno.EINTR if offset == 0 else 0


def _io_result(done: int, error: int, tag: int, downcall: bytes, out: bytearray | memoryview) -> Result:
    """The reply for a (possibly chunked) FILE_IO: bytes moved, or the error if none were."""
    if error < 0 and done == 0:
        return Result(error, tag, downcall)
    reply = bytearray(downcall)
    struct.pack_into("<IiqQ", reply, 0, OpCode.FILE_IO, 0, 0, 0)
    struct.pack_into("<q", reply, _AMT_AT, done)
    return Result(0, tag, bytes(reply), out)


async def readdir(call: Call, upcall: bytes | bytearray) -> Result:
    """One READDIR through a readdir slot (dir.c ``do_readdir``)."""
    kernel, broker = call.kernel, call.broker
    op = call.new_op(upcall)
    while True:
        slot = await call.get_slot(kernel.readdir_slots)
        if slot < 0:
            return Result(slot, op.tag)
        kernel.set_slot(op, slot)
        result = await call.service(op)
        kernel.readdir_slots.put(slot, broker.now())
        if result == -errno.EAGAIN and op.purged:
            continue
        break
    downcall = op.downcall or bytes(DOWNCALL_SIZE)
    if result < 0:
        return Result(result, op.tag, downcall)
    if op.trailer is not None and len(op.trailer) > READDIR_TRAILER_MAX:
        return Result(-errno.EIO, op.tag, downcall)
    return Result(0, op.tag, downcall, op.trailer or b"")


async def mount(call: Call, upcall: bytes | bytearray) -> Result:
    """mount(2): FS_MOUNT, then GETATTR of the root and FEATURES (``orangefs_mount``)."""
    kernel = call.kernel
    op = call.new_op(upcall)
    result = await call.service(op)
    if result < 0:
        return Result(result, op.tag, op.downcall or bytes(DOWNCALL_SIZE))
    reply = proto.decode_downcall(op.downcall, OpCode.FS_MOUNT)
    info = reply.resp.fs_mount
    if info.fs_id == ORANGEFS_FS_ID_NULL:
        return Result(-errno.EINVAL, op.tag, op.downcall)
    devname = proto.decode_upcall(bytes(upcall)).req.fs_mount.orangefs_config_server
    kernel.add_mount(info.fs_id, info.id, devname, info.root_khandle)
    root = call.new_op(
        proto.encode_upcall(
            {
                "type": OpCode.GETATTR,
                "req": {
                    "getattr": {
                        "refn": {"khandle": info.root_khandle, "fs_id": info.fs_id},
                        "mask": proto.AttrMask.ALL_NOHINT,
                    }
                },
            }
        )
    )
    root_result = await call.service(root)
    if root_result < 0:
        # The mount fails after userspace mounted it: tell the client-core.
        await _send_umount(call, kernel.remove_mount(info.fs_id))
        return Result(root_result, op.tag, op.downcall)
    if kernel.userspace_version >= ORANGEFS_FEATURES_USERSPACE_VERSION:
        features = call.new_op(proto.encode_upcall({"type": OpCode.FEATURES}), flags=0)
        await call.service(features)
        # The kernel takes the value from the downcall even when it failed.
        kernel.features = struct.unpack_from("<Q", features.downcall or bytes(DOWNCALL_SIZE), 24)[0]
    return Result(0, op.tag, op.downcall)


async def umount(call: Call, upcall: bytes | bytearray) -> Result:
    """umount(2): FS_UMOUNT for a mounted fs; it leaves the list whatever the reply."""
    # fs_umount: id @40, fs_id @44.  The id tells apart two mounts of one fs.
    mount_id, fs_id = struct.unpack_from("<ii", upcall, 40)
    mount_ = next((m for m in call.kernel.mounts if m.fs_id == fs_id and m.id == mount_id), None)
    if mount_ is None:
        mount_ = call.kernel.mount_by_fs_id(fs_id)
    if mount_ is None:
        return Result(-errno.EINVAL)
    call.kernel.remove_mount(fs_id, mount_.id)
    op = await _send_umount(call, mount_)
    return Result(op.result, op.tag, op.downcall or bytes(DOWNCALL_SIZE))


async def _send_umount(call: Call, mount_) -> Op:
    upcall = proto.encode_upcall(
        {
            "type": OpCode.FS_UMOUNT,
            "req": {
                "fs_umount": {"id": mount_.id, "fs_id": mount_.fs_id, "orangefs_config_server": mount_.devname}
            },
        }
    )
    op = call.new_op(upcall, flags=0)
    await call.service(op)
    return op


__all__ = ["Call", "Result", "needs_glue", "start", "perform", "file_io", "readdir", "mount", "umount"]
