"""A small world around the sans-IO kernel core, so tests read like protocol stories.

``World`` owns one :class:`pvfs2dev.kernel.Kernel` and a fake clock.  The VFS
side submits upcalls (:meth:`World.submit`), the client-core side opens the
device, reads decoded frames and writes downcalls (:meth:`World.read_op`,
:meth:`World.reply`), and time only moves when a test says so
(:meth:`World.advance`).  Nothing here sleeps or reads a real clock.

The helpers build bytes with the protocol package only; everything the kernel
decides is observed through its public methods and the ops it hands back.
"""

from __future__ import annotations

import errno as E
import os

import pvfs2proto as proto
from pvfs2proto import OpCode, OpFlags
from pvfs2proto.constants import MAX_DEV_REQ_UPSIZE, PVFS2DEV_USERSPACE_VERSION
from pvfs2proto.downcall import DOWNCALL_MEMBERS
from pvfs2proto.ioctl import IoctlCommand, ORANGEFS_dev_map_desc
from pvfs2proto.upcall import UPCALL_MEMBERS

from pvfs2dev.kernel import DeviceError, Kernel
from pvfs2dev.op import Op

__all__ = ["World", "DeviceError", "OpCode", "OpFlags", "MiB", "NONBLOCK", "FS_ID_FIELD", "status_of"]

MiB = 1024 * 1024
NONBLOCK = os.O_RDWR | os.O_NONBLOCK
DEVNAME = b"tcp://localhost:3334/orangefs"

#: Spec §4.7: where each op keeps the fs_id the device read filters on, as a
#: path of (member, sub-struct...) ending in the struct that holds "fs_id".
FS_ID_FIELD: dict[int, tuple[str, ...]] = {
    OpCode.FILE_IO: ("io", "refn"),
    OpCode.LOOKUP: ("lookup", "parent_refn"),
    OpCode.CREATE: ("create", "parent_refn"),
    OpCode.REMOVE: ("remove", "parent_refn"),
    OpCode.MKDIR: ("mkdir", "parent_refn"),
    OpCode.SYMLINK: ("sym", "parent_refn"),
    OpCode.GETATTR: ("getattr", "refn"),
    OpCode.READDIR: ("readdir", "refn"),
    OpCode.SETATTR: ("setattr", "refn"),
    OpCode.TRUNCATE: ("truncate", "refn"),
    OpCode.RA_FLUSH: ("ra_cache_flush", "refn"),
    OpCode.GETXATTR: ("getxattr", "refn"),
    OpCode.SETXATTR: ("setxattr", "refn"),
    OpCode.LISTXATTR: ("listxattr", "refn"),
    OpCode.REMOVEXATTR: ("removexattr", "refn"),
    OpCode.FSYNC: ("fsync", "refn"),
    OpCode.RENAME: ("rename", "old_parent_refn"),
    OpCode.STATFS: ("statfs",),
    OpCode.FS_UMOUNT: ("fs_umount",),
}


def status_of(err: int) -> int:
    """The downcall status a client-core sends for ``err`` (spec §2.7)."""
    return proto.errno_to_status(err)


def _nest(path: tuple[str, ...], leaf: dict) -> dict:
    out = leaf
    for name in reversed(path):
        out = {name: out}
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class World:
    """One emulated kernel, its fake clock, a VFS caller side and a client-core side."""

    def __init__(self, *, now: float = 0.0, **kernel_kwargs) -> None:
        self.now = now
        self.k = Kernel(now=now, **kernel_kwargs)
        #: How many times pollers were woken (``on_poll``).
        self.poll_wakes = 0
        #: How many releases finished (``on_release_done``).
        self.releases_done = 0
        #: Every op whose submitter was woken, in order (one entry per wake).
        self.woken: list[Op] = []
        #: Results REMOUNT_ALL reported to its caller.
        self.remount_results: list[int] = []
        #: Version our client-core writes in every downcall.
        self.version = PVFS2DEV_USERSPACE_VERSION
        self.k.on_poll = self._on_poll
        self.k.on_release_done = self._on_release_done

    def _on_poll(self) -> None:
        self.poll_wakes += 1

    def _on_release_done(self) -> None:
        self.releases_done += 1

    # ------------------------------------------------------------------ VFS side

    def upcall(self, op_type: int, *, fs_id: int | None = None, **fields) -> bytes:
        """The 8528 bytes of an upcall of ``op_type``; ``fields`` go in its union member."""
        member = UPCALL_MEMBERS[op_type][0] if op_type in UPCALL_MEMBERS else None
        req: dict = {}
        if fields:
            req = {member: dict(fields)}
        if fs_id is not None:
            path = FS_ID_FIELD[op_type]
            req = _merge(req, _nest(path, {"fs_id": fs_id}))
        return proto.encode_upcall({"type": op_type, "req": req} if req else {"type": op_type})

    def new(self, op_type: int, *, flags: int = 0, uid: int = 0, gid: int = 0, pid: int = 0, tgid: int = 0,
            fs_id: int | None = None, **fields) -> Op:
        """Allocate an op (``op_alloc``) without submitting it."""
        op = self.k.new_op(
            self.upcall(op_type, fs_id=fs_id, **fields), flags=flags, uid=uid, gid=gid, pid=pid, tgid=tgid,
            now=self.now,
        )
        op.wake = lambda: self.woken.append(op)
        return op

    def submit(self, op_type: int, **kwargs) -> Op:
        """Allocate an op and hand it to ``service_operation``; returns the op."""
        op = self.new(op_type, **kwargs)
        self.k.service(op, self.now)
        return op

    def resubmit(self, op: Op) -> None:
        """Hand the same op to ``service_operation`` again (the FILE_IO/READDIR retry)."""
        self.k.service(op, self.now)

    def submit_io(self, slot: int | None = None, *, count: int = 4096, fs_id: int = 0, io_type: int = 1,
                  flags: int = 0, **fields) -> Op:
        """A FILE_IO using I/O slot ``slot`` (spec §5.3)."""
        op = self.new(OpCode.FILE_IO, fs_id=fs_id, count=count, io_type=io_type, flags=flags, **fields)
        if slot is not None:
            Kernel.set_slot(op, slot)
        self.k.service(op, self.now)
        return op

    def wakes(self, op: Op) -> int:
        return sum(1 for o in self.woken if o is op)

    def signal(self, op: Op, *, fatal: bool = False) -> bool:
        return self.k.signal(op, self.now, fatal=fatal)

    def get_slot(self, which: str = "io"):
        """An int slot, or a SlotWaiter."""
        slots = self.k.io_slots if which == "io" else self.k.readdir_slots
        return slots.get(self.now)

    def put_slot(self, slot: int, which: str = "io") -> None:
        slots = self.k.io_slots if which == "io" else self.k.readdir_slots
        slots.put(slot, self.now)

    # ------------------------------------------------------------------ mounts

    def mount(self, fs_id: int = 7, mount_id: int = 1, devname: bytes = DEVNAME):
        return self.k.add_mount(fs_id, mount_id, devname)

    # ------------------------------------------------------------------ client-core side

    def client_open(self, flags: int = NONBLOCK) -> bool:
        return self.k.dev_open(flags, self.now)

    def read_raw(self, count: int = MAX_DEV_REQ_UPSIZE) -> bytes:
        return self.k.dev_read(count, self.now)

    def read_op(self):
        """One device read, decoded: ``Container(version, magic, tag, upcall)``."""
        return proto.decode_read_frame(self.read_raw())

    def read_all(self) -> list:
        """Read until EAGAIN; the decoded frames."""
        frames = []
        while True:
            try:
                frames.append(self.read_op())
            except DeviceError as exc:
                assert exc.errno == E.EAGAIN
                return frames

    def frame(self, tag: int, op_type: int, status: int = 0, *, err: int | None = None, trailer: bytes = b"",
              version: int | None = None, magic: int | None = None, downcall_extra: dict | None = None,
              **resp) -> bytes:
        """The bytes of one downcall write."""
        if err is not None:
            status = status_of(err)
        downcall: dict = {"type": op_type, "status": status}
        if resp:
            member = DOWNCALL_MEMBERS.get(op_type)
            assert member is not None, f"{op_type:#x} has no response member"
            downcall["resp"] = {member[0]: resp}
        if downcall_extra:
            downcall.update(downcall_extra)
        kwargs = {"version": self.version if version is None else version}
        if magic is not None:
            kwargs["magic"] = magic
        return proto.encode_write_frame(tag, downcall, trailer, **kwargs)

    def reply(self, tag: int, op_type: int, status: int = 0, **kwargs) -> int:
        """Write one downcall answering ``tag``; returns what the write returned."""
        return self.write(self.frame(tag, op_type, status, **kwargs))

    def answer(self, frame, status: int = 0, **kwargs) -> int:
        """Reply to a decoded read frame, echoing its op type."""
        return self.reply(frame.tag, frame.upcall.type, status, **kwargs)

    def write(self, data: bytes) -> int:
        return self.k.dev_write(data, self.now)

    def ioctl(self, cmd: int, arg: bytes = b""):
        return self.k.dev_ioctl(cmd, arg, self.now)

    @staticmethod
    def map_desc(count: int = 4, size: int = 4 * MiB, *, ptr: int = 0x7F0000000000, total_size: int | None = None
                 ) -> bytes:
        total = size * count if total_size is None else total_size
        return ORANGEFS_dev_map_desc.pack({"ptr": ptr, "total_size": total, "size": size, "count": count})

    def map_buffer(self, count: int = 4, size: int = 4 * MiB, **kwargs):
        """ioctl MAP with a fresh descriptor, then install it (spec §5.1)."""
        desc = self.k.dev_map(self.map_desc(count, size, **kwargs))
        self.k.install_bufmap(desc, self.now)
        return desc

    def remount(self) -> None:
        """ioctl REMOUNT_ALL; its result lands in ``remount_results``."""
        self.k.remount_all(self.now, self.remount_results.append)

    def release(self) -> None:
        self.k.dev_release(self.now)

    def start_client(self, *, count: int = 4, size: int = 4 * MiB) -> None:
        """open + MAP, as a client-core does at start-up."""
        assert self.client_open()
        self.map_buffer(count, size)

    # ------------------------------------------------------------------ time

    def advance(self, seconds: float) -> None:
        """Move the clock and let every deadline due by then expire."""
        self.now += seconds
        self.k.expire(self.now)

    def advance_to(self, t: float) -> None:
        self.now = t
        self.k.expire(self.now)

    # ------------------------------------------------------------------ views

    def queued(self) -> list[Op]:
        """The request list, head first."""
        return list(self.k.requests)

    def queued_types(self) -> list[int]:
        return [op.type for op in self.k.requests]


__all__ += ["IoctlCommand", "DEVNAME"]
