"""The kernel's side of a test: submit upcalls as the VFS would, look at the downcalls, inspect the broker.

A :class:`KernelSession` is one caller on the broker's VFS channel (one
connection: one process, as far as the broker can tell) plus the control
channel, with blocking helpers:

* ``submit(upcall, data)`` and ``submit_nowait`` / ``wait_reply`` / ``interrupt``
  for any upcall (build one with :mod:`pvfs2dev.testing.upcalls`);
* ``mount()``, then one method per common op (``getattr``, ``lookup``,
  ``create``, ``mkdir``, ``remove``, ``write``, ``read``, ``readdir``,
  ``statfs``...), each returning the :class:`~pvfs2dev.testing.replies.Reply`
  without judging it — tests judge with ``assert_ok`` / ``assert_errno``;
* ``status()``, ``ops()``, ``assert_quiescent()`` over the control channel;
* ``kill_clientcore()`` / ``restart_clientcore()`` for crash tests.

Every wait has a deadline (``timeout``, 30 s unless the session says
otherwise): a client-core that never answers fails the test with the ops in
flight and the end of its log, instead of hanging the run.
"""

from __future__ import annotations

import signal
import struct
import time

from pvfs2ctl.vfsops import MountInfo
from pvfs2dev.mounts import DEFAULT_FSNAME
from pvfs2proto import AttrMask, opname
from pvfs2proto.constants import ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START

from . import upcalls as up
from .channels import VfsConnection
from .replies import Reply, assert_ok
from .stack import Broker, ClientCore

#: How long a reply may take before the test fails (longer than op_timeout_secs, 20 s,
#: so the kernel's own ETIMEDOUT for an op nobody read comes first).
REPLY_TIMEOUT = 30.0
#: How long the broker may take to settle (give-ups, purges) before it must be quiescent.
QUIESCENT_TIMEOUT = 10.0


def maps_full(maps: list[dict]) -> bool:
    """Both slot maps installed and every slot free, nobody waiting (``c`` back at ``count``)."""
    return all(m["count"] > 0 and m["c"] == m["count"] and not m["busy"] and m["waiters"] == 0 for m in maps)


def quiescent(status: dict) -> bool:
    """No op on the request list or in progress, no live op at all, and both slot maps full.

    With no client-core the maps are not installed (release tears the bufmap
    down, as the kernel's does): then no slot may be held or waited for.
    """
    if status["request_list"] or status["in_progress"] or status["ops_by_state"]:
        return False
    if status["daemon_in_service"]:
        return maps_full(status["buffers"])
    return not any(m["busy"] or m["waiters"] for m in status["buffers"])


class KernelSession:
    """A caller of the emulated kernel, with the broker and (optionally) the client-core it runs against."""

    def __init__(self, broker: Broker, clientcore: ClientCore | None = None, *,
                 timeout: float = REPLY_TIMEOUT) -> None:
        self.broker = broker
        self.clientcore = clientcore
        self.timeout = timeout
        #: The mount :meth:`mount` made (None before): its fs_id and root are the ops' defaults.
        self.mount_info: MountInfo | None = None
        self._vfs: VfsConnection | None = None
        self._ops_sent: dict[int, int] = {}  # req_id -> op type, for the reply

    @property
    def rundir(self):
        return self.broker.rundir

    @property
    def fs_id(self) -> int:
        return self._mounted().fs_id

    @property
    def root(self) -> bytes:
        return self._mounted().root

    def close(self) -> None:
        """Close the VFS connection (requests still in flight are given up, as by a killed process)."""
        if self._vfs is not None:
            self._vfs.close()
            self._vfs = None

    # -- any upcall ---------------------------------------------------------------------------------

    @property
    def vfs(self) -> VfsConnection:
        """The session's VFS connection, opened on first use."""
        if self._vfs is None:
            self._vfs = VfsConnection(self.broker.vfs_path)
        return self._vfs

    def submit_nowait(self, upcall: bytes, data: bytes = b"", *, flags: int = 0) -> int:
        """Send one upcall (and write data) and return its ``req_id`` without waiting for the reply.

        Args:
            flags: ``service_operation`` flags (``pvfs2proto.OpFlags``: INTERRUPTIBLE, PRIORITY...).
        """
        req_id = self.vfs.send_submit(upcall, data, flags=flags)
        (self._ops_sent[req_id],) = struct.unpack_from("<I", upcall, 0)
        return req_id

    def wait_reply(self, req_id: int, *, timeout: float | None = None) -> Reply:
        """The reply to a :meth:`submit_nowait`.

        Raises:
            AssertionError: no reply within ``timeout`` (default: the session's)
                seconds, or the broker closed the channel; the message shows the
                ops in flight, the client-core's state and the end of its log.
        """
        __tracebackhide__ = True
        op = self._ops_sent.get(req_id, 0)
        wait = self.timeout if timeout is None else timeout
        try:
            raw = self.vfs.wait_reply(req_id, time.monotonic() + wait)
        except TimeoutError:
            raise AssertionError(f"no reply to {opname(op)} (req_id {req_id}) after {wait} s; "
                                 f"{self._diagnosis()}") from None
        except OSError as exc:
            raise AssertionError(f"{opname(op)} (req_id {req_id}): {exc}; {self._diagnosis()}") from None
        self._ops_sent.pop(req_id, None)
        return Reply.of(op, raw)

    def submit(self, upcall: bytes, data: bytes = b"", *, flags: int = 0, timeout: float | None = None) -> Reply:
        """Submit one upcall as the kernel's VFS would and wait for its reply.

        Returns: the :class:`Reply` (``result`` 0 or -errno: ENOENT, EEXIST... from
            the client-core; ETIMEDOUT with no client-core after op_timeout_secs;
            EINTR if interrupted; EIO after five purges).
        Raises: AssertionError: as :meth:`wait_reply`.
        """
        __tracebackhide__ = True
        return self.wait_reply(self.submit_nowait(upcall, data, flags=flags), timeout=timeout)

    def interrupt(self, req_id: int, *, fatal: bool = False) -> None:
        """Signal the caller waiting on ``req_id``: EINTR if its op was not read yet, else the
        give-up and CANCEL paths (a ``fatal`` signal ends every wait but WRITEBACK's)."""
        self.vfs.send_interrupt(req_id, fatal=fatal)

    def _diagnosis(self) -> str:
        parts = []
        try:
            ops = self.ops()
            shown = [f"{o['op']} tag {o['tag']} {o['state_names']} at {o['where']}" for o in ops]
            parts.append(f"ops in flight: {shown or 'none'}")
        except AssertionError as exc:
            parts.append(str(exc))
        core = self.clientcore
        if core is None or core.child is None:
            parts.append("no client-core started")
        else:
            parts.append(f"client-core {core.child.state()}; its log ends:\n{core.child.tail()}")
        return "; ".join(parts)

    # -- mounts ------------------------------------------------------------------------------------

    def mount(self, device: str = DEFAULT_FSNAME) -> MountInfo:
        """mount(2): FS_MOUNT of ``device``, which the broker runs as the kernel does (FS_MOUNT,
        GETATTR of the root, FEATURES) and registers.  Later ops default to its fs_id and root.

        Raises:
            AssertionError: the mount failed (its errno in the message).
        """
        __tracebackhide__ = True
        reply = assert_ok(self.submit(up.fs_mount_upcall(device)))
        info = reply.resp
        self.mount_info = MountInfo(info.fs_id, info.id, device, bytes(info.root_khandle), mounted_now=True)
        return self.mount_info

    def umount(self) -> Reply:
        """FS_UMOUNT of the mount :meth:`mount` made; the broker forgets it whatever the answer."""
        m = self._mounted()
        self.mount_info = None
        return self.submit(up.fs_umount_upcall(m.fs_id, m.id, m.devname))

    def _mounted(self) -> MountInfo:
        if self.mount_info is None:
            raise RuntimeError("nothing mounted: call mount() first (or use the pvfs2_mounted fixture)")
        return self.mount_info

    def _dir(self, handle: bytes | None) -> bytes:
        return self.root if handle is None else handle

    # -- one op each (None as a handle: the root) ---------------------------------------------------------

    def getattr(self, handle: bytes | None = None, mask: int = AttrMask.ALL_NOHINT) -> Reply:
        """GETATTR; ``reply.attrs`` has objtype, perms, owner, size..."""
        return self.submit(up.getattr_upcall(self.fs_id, self._dir(handle), mask))

    def setattr(self, handle: bytes, attributes: dict) -> Reply:
        """SETATTR (``attributes``: an ORANGEFS_sys_attr_s dict with its ``mask``)."""
        return self.submit(up.setattr_upcall(self.fs_id, handle, attributes))

    def lookup(self, name: str | bytes, parent: bytes | None = None) -> Reply:
        """LOOKUP; ``reply.handle`` is the entry's khandle (ENOENT if missing)."""
        return self.submit(up.lookup_upcall(self.fs_id, self._dir(parent), name))

    def create(self, name: str | bytes, parent: bytes | None = None, mode: int = 0o644) -> Reply:
        """CREATE a regular file; ``reply.handle`` is its khandle (EEXIST if the name is taken)."""
        return self.submit(up.create_upcall(self.fs_id, self._dir(parent), name, mode))

    def mkdir(self, name: str | bytes, parent: bytes | None = None, mode: int = 0o755) -> Reply:
        """MKDIR; ``reply.handle`` is the new directory's khandle."""
        return self.submit(up.mkdir_upcall(self.fs_id, self._dir(parent), name, mode))

    def symlink(self, name: str | bytes, target: str | bytes, parent: bytes | None = None) -> Reply:
        """SYMLINK ``name`` → ``target``."""
        return self.submit(up.symlink_upcall(self.fs_id, self._dir(parent), name, target))

    def remove(self, name: str | bytes, parent: bytes | None = None) -> Reply:
        """REMOVE (ENOENT if missing, ENOTEMPTY for a directory with entries)."""
        return self.submit(up.remove_upcall(self.fs_id, self._dir(parent), name))

    def rename(self, old: str | bytes, new: str | bytes, old_parent: bytes | None = None,
               new_parent: bytes | None = None) -> Reply:
        """RENAME ``old`` in ``old_parent`` to ``new`` in ``new_parent``."""
        return self.submit(up.rename_upcall(self.fs_id, self._dir(old_parent), old, self._dir(new_parent), new))

    def truncate(self, handle: bytes, size: int) -> Reply:
        """TRUNCATE to ``size``."""
        return self.submit(up.truncate_upcall(self.fs_id, handle, size))

    def write(self, handle: bytes, data: bytes, offset: int = 0) -> Reply:
        """FILE_IO write of ``data`` at ``offset``; ``reply.amt_complete`` is the count written.
        The broker splits a write larger than one slot, as the kernel does."""
        return self.submit(up.write_upcall(self.fs_id, handle, len(data), offset), data)

    def read(self, handle: bytes, count: int, offset: int = 0) -> Reply:
        """FILE_IO read of ``count`` bytes at ``offset``; ``reply.data`` holds the bytes read."""
        return self.submit(up.read_upcall(self.fs_id, handle, count, offset))

    def fsync(self, handle: bytes) -> Reply:
        """FSYNC."""
        return self.submit(up.fsync_upcall(self.fs_id, handle))

    def readdir(self, handle: bytes | None = None, token: int = ORANGEFS_ITERATE_START) -> Reply:
        """One READDIR from ``token``; ``reply.readdir`` is the decoded trailer (token, entries)."""
        return self.submit(up.readdir_upcall(self.fs_id, self._dir(handle), token))

    def listdir(self, handle: bytes | None = None) -> dict[bytes, bytes]:
        """Every entry, name → khandle: READDIR from ITERATE_START until ITERATE_END, as getdents does.

        Raises:
            AssertionError: a READDIR failed, or its token did not move (a loop forever in the kernel).
        """
        __tracebackhide__ = True
        entries: dict[bytes, bytes] = {}
        token = ORANGEFS_ITERATE_START
        while token != ORANGEFS_ITERATE_END:
            reply = assert_ok(self.readdir(handle, token))
            trailer = reply.readdir
            for entry in trailer.entries:
                entries[bytes(entry.name)] = bytes(entry.khandle)
            if trailer.token == token:
                raise AssertionError(f"READDIR from token {token} answered the same token: no progress")
            token = trailer.token
        return entries

    def statfs(self) -> Reply:
        """STATFS of the mounted filesystem."""
        return self.submit(up.statfs_upcall(self.fs_id))

    def getxattr(self, handle: bytes, key: str | bytes) -> Reply:
        """GETXATTR (ENOENT from the client-core for a missing key; the kernel makes it ENODATA)."""
        return self.submit(up.getxattr_upcall(self.fs_id, handle, key))

    def setxattr(self, handle: bytes, key: str | bytes, value: bytes, flags: int = 0) -> Reply:
        """SETXATTR."""
        return self.submit(up.setxattr_upcall(self.fs_id, handle, key, value, flags))

    # -- the control channel ---------------------------------------------------------------------------

    def control(self, cmd: str, **fields) -> dict:
        """Any control request (``params``, ``fault``, ``stats``, ``buffers``...); the broker's answer."""
        return self.broker.control(cmd, **fields)

    def status(self) -> dict:
        """``status``: open_count, daemon_in_service, mounts, buffers, ops_by_state, request_list, in_progress."""
        return self.broker.status()

    def wait_status(self, predicate, what: str, timeout: float | None = None) -> dict:
        """Poll ``status`` until ``predicate(status)`` holds (``what`` names it in the failure); that status.

        Raises:
            AssertionError: not within ``timeout`` seconds (default: the session's), or the broker or the
                client-core exited meanwhile.
        """
        __tracebackhide__ = True
        core = self.clientcore
        watch = [core.child] if core is not None and core.child is not None and not core.child.expected_exit else []
        return self.broker.wait_status(predicate, what, self.timeout if timeout is None else timeout, watch=watch)

    def ops(self) -> list[dict]:
        """``ops``: every live op (tag, op, state_names, age, attempts, slot, where)."""
        answer = self.control("ops")
        assert answer.get("ok"), f"ops refused: {answer}"
        return answer["ops"]

    def assert_quiescent(self, timeout: float = QUIESCENT_TIMEOUT) -> dict:
        """Nothing in flight: no op queued, in progress or alive, and both slot maps full
        (with no client-core: no slot held or waited for).

        Waits up to ``timeout`` seconds for give-ups and purges to settle.

        Raises:
            AssertionError: with the status and the ops still alive.
        """
        __tracebackhide__ = True
        try:
            return self.broker.wait_status(quiescent, "a quiescent broker", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nops: {self.ops()}") from None

    # -- the client-core ---------------------------------------------------------------------------------

    def _core(self) -> ClientCore:
        if self.clientcore is None:
            raise RuntimeError("this session has no client-core")
        return self.clientcore

    def kill_clientcore(self, sig: int = signal.SIGKILL) -> int:
        """Kill the client-core (its whole process group) and wait for the broker's release; its exit status."""
        return self._core().kill(sig)

    def start_clientcore(self) -> ClientCore:
        """Start the client-core again after :meth:`kill_clientcore`, and wait until it is in service."""
        return self._core().start()

    def restart_clientcore(self, sig: int = signal.SIGKILL) -> ClientCore:
        """Kill the client-core with ``sig`` and start it again; it is in service (remounted) on return."""
        return self._core().restart(sig)


__all__ = ["KernelSession", "maps_full", "quiescent"]
