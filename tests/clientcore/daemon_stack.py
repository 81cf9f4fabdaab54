"""Helpers for the daemon tests: the broker, the client-core daemon over a MemStore, and callers.

Everything runs in the test's own trio run.  :func:`start_stack` starts the
broker (``pvfs2dev.server.Server``) in the given nursery; :meth:`Stack.start_daemon`
starts a :class:`clientcore.daemon.Daemon` in a cancel scope of its own, so
:meth:`Stack.stop_daemon` can end it (the broker then releases the device,
as when a client-core dies) while the broker and its callers stay.

Upcall builders take the fields the kernel would fill and return the 8528
upcall bytes; :func:`call` submits one on the VFS channel and returns the
reply with its downcall decoded as the op's type.
"""

from __future__ import annotations

import dataclasses
import errno
import struct
from pathlib import Path

import trio

import pvfs2proto as proto
from clientcore.daemon import Daemon
from pvfs2ctl.client import VfsClient, VfsReply
from pvfs2dev.server import Config, Server
from pvfs2proto import AttrMask, IoType, OpCode
from pvfs2proto.constants import DOWNCALL_SIZE, ORANGEFS_ITERATE_START, UPCALL_SIZE
from pvfs2proto.structs import mode_to_perms

from ..pvfs2dev.live import assert_quiescent, control, maps_full, wait_for  # noqa: F401 (used by the tests)
from .memstore import MemStore

DEVNAME = b"tcp://localhost:3334/orangefs"
FS_ID = MemStore.fs_id
ROOT = b"\x01" * 16
SLOT = 1 << 20
SLOTS = 4
KiB, MiB = 1024, 1024 * 1024


def vfs_path(rundir: Path) -> Path:
    return Path(rundir) / "pvfs2-vfs"


def ctl_path(rundir: Path) -> Path:
    return Path(rundir) / "pvfs2-ctl"


# -- the stack ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class RunningDaemon:
    daemon: Daemon
    scope: trio.CancelScope
    finished: trio.Event
    error: list[BaseException]


@dataclasses.dataclass(eq=False)
class Stack:
    rundir: Path
    nursery: trio.Nursery
    server: Server
    store: MemStore
    current: RunningDaemon | None = None

    @property
    def daemon(self) -> Daemon:
        assert self.current is not None, "no daemon running"
        return self.current.daemon

    async def start_daemon(self, store: MemStore | None = None, *, wait_in_service: bool = True,
                           may_die: bool = False, **kwargs) -> RunningDaemon:
        """Start a Daemon on ``store`` (default: the stack's) in a cancel scope of its own.

        A daemon that dies of an exception fails the test, unless ``may_die``: then the exception is kept
        in ``RunningDaemon.error`` for the test to look at.
        """
        kwargs.setdefault("desc_count", SLOTS)
        kwargs.setdefault("desc_size", SLOT)
        daemon = Daemon(store or self.store, self.rundir, **kwargs)
        running = RunningDaemon(daemon, trio.CancelScope(), trio.Event(), [])

        async def run(*, task_status=trio.TASK_STATUS_IGNORED):
            try:
                with running.scope:
                    await daemon.run(task_status=task_status)
            except BaseException as exc:
                running.error.append(exc)
                if not may_die:
                    raise
            finally:
                running.finished.set()

        await self.nursery.start(run)
        self.current = running
        if wait_in_service:
            await wait_for(self.rundir, lambda s: s["daemon_in_service"])
        return running

    async def stop_daemon(self) -> None:
        """Cancel the daemon's scope and wait until the broker has released the device."""
        running, self.current = self.current, None
        assert running is not None
        running.scope.cancel()
        with trio.fail_after(10):
            await running.finished.wait()
        await wait_for(self.rundir, lambda s: not s["daemon_in_service"] and s["open_count"] == 0)

    async def mount(self) -> VfsReply:
        async with VfsClient.connect(vfs_path(self.rundir)) as vfs:
            reply = await vfs.submit(mount_upcall())
        assert reply.result == 0, f"mount failed: {proto.errno_name(-reply.result)}"
        return reply


async def start_stack(nursery: trio.Nursery, rundir: Path, *, store: MemStore | None = None,
                      daemon: bool = True, mount: bool = True, **daemon_kwargs) -> Stack:
    """A broker in ``rundir`` and (by default) a daemon over a fresh MemStore with the fs mounted."""
    server = await nursery.start(Server(Config(rundir=rundir)).run)
    stack = Stack(Path(rundir), nursery, server, store or MemStore())
    if daemon:
        await stack.start_daemon(**daemon_kwargs)
        if mount:
            await stack.mount()
    return stack


# -- control channel ----------------------------------------------------------------------------------------


def kref(handle: bytes = ROOT, fs_id: int = FS_ID) -> dict:
    return {"khandle": handle, "fs_id": fs_id}


def upcall(op_type: int, member: str | None = None, /, *, uid: int = 0, gid: int = 0, **fields) -> bytes:
    up: dict = {"type": op_type, "uid": uid, "gid": gid}
    if member is not None:
        up["req"] = {member: fields}
    return proto.encode_upcall(up)


def mount_upcall(devname: bytes = DEVNAME) -> bytes:
    return upcall(OpCode.FS_MOUNT, "fs_mount", orangefs_config_server=devname)


def umount_upcall(fs_id: int = FS_ID, mount_id: int = 0, devname: bytes = DEVNAME) -> bytes:
    return upcall(OpCode.FS_UMOUNT, "fs_umount", id=mount_id, fs_id=fs_id, orangefs_config_server=devname)


def lookup_upcall(name: bytes, parent: bytes = ROOT, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.LOOKUP, "lookup", sym_follow=0, parent_refn=kref(parent, fs_id), d_name=name)


def _new_attrs(mode: int, uid: int = 0, gid: int = 0) -> dict:
    return {"owner": uid, "group": gid, "perms": mode_to_perms(mode), "mask": AttrMask.ALL_SETABLE}


def create_upcall(name: bytes, parent: bytes = ROOT, mode: int = 0o644, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.CREATE, "create", parent_refn=kref(parent, fs_id), attributes=_new_attrs(mode), d_name=name)


def mkdir_upcall(name: bytes, parent: bytes = ROOT, mode: int = 0o755, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.MKDIR, "mkdir", parent_refn=kref(parent, fs_id), attributes=_new_attrs(mode), d_name=name)


def symlink_upcall(name: bytes, target: bytes, parent: bytes = ROOT, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.SYMLINK, "sym", parent_refn=kref(parent, fs_id), attributes=_new_attrs(0o755),
                  entry_name=name, target=target)


def getattr_upcall(handle: bytes = ROOT, mask: int = AttrMask.ALL_NOHINT, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.GETATTR, "getattr", refn=kref(handle, fs_id), mask=mask)


def setattr_upcall(handle: bytes, attributes: dict, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.SETATTR, "setattr", refn=kref(handle, fs_id), attributes=attributes)


def remove_upcall(name: bytes, parent: bytes = ROOT, fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.REMOVE, "remove", parent_refn=kref(parent, fs_id), d_name=name)


def rename_upcall(old: bytes, new: bytes, old_parent: bytes = ROOT, new_parent: bytes = ROOT) -> bytes:
    return upcall(OpCode.RENAME, "rename", old_parent_refn=kref(old_parent), new_parent_refn=kref(new_parent),
                  d_old_name=old, d_new_name=new)


def statfs_upcall(fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.STATFS, "statfs", fs_id=fs_id)


def truncate_upcall(handle: bytes, size: int) -> bytes:
    return upcall(OpCode.TRUNCATE, "truncate", refn=kref(handle), size=size)


def file_io_upcall(handle: bytes, io_type: int, count: int, offset: int = 0, *, buf_index: int = 0,
                   fs_id: int = FS_ID) -> bytes:
    return upcall(OpCode.FILE_IO, "io", buf_index=buf_index, count=count, offset=offset, refn=kref(handle, fs_id),
                  io_type=io_type)


def write_upcall(handle: bytes, count: int, offset: int = 0, **kwargs) -> bytes:
    return file_io_upcall(handle, IoType.WRITE, count, offset, **kwargs)


def read_upcall(handle: bytes, count: int, offset: int = 0, **kwargs) -> bytes:
    return file_io_upcall(handle, IoType.READ, count, offset, **kwargs)


def fsync_upcall(handle: bytes) -> bytes:
    return upcall(OpCode.FSYNC, "fsync", refn=kref(handle))


def ra_flush_upcall(handle: bytes) -> bytes:
    return upcall(OpCode.RA_FLUSH, "ra_cache_flush", refn=kref(handle))


def readdir_upcall(handle: bytes = ROOT, token: int = ORANGEFS_ITERATE_START, count: int = 512,
                   buf_index: int = 0) -> bytes:
    return upcall(OpCode.READDIR, "readdir", refn=kref(handle), token=token, max_dirent_count=count,
                  buf_index=buf_index)


def getxattr_upcall(handle: bytes, key: bytes) -> bytes:
    return upcall(OpCode.GETXATTR, "getxattr", refn=kref(handle), key_sz=len(key) + 1, key=key)


def setxattr_upcall(handle: bytes, key: bytes, value: bytes, flags: int = 0, val_sz: int | None = None) -> bytes:
    keyval = {"key": key, "key_sz": len(key) + 1, "val_sz": len(value) if val_sz is None else val_sz, "val": value}
    return upcall(OpCode.SETXATTR, "setxattr", refn=kref(handle), keyval=keyval, flags=flags)


def listxattr_upcall(handle: bytes, count: int = 16, token: int = ORANGEFS_ITERATE_START) -> bytes:
    return upcall(OpCode.LISTXATTR, "listxattr", refn=kref(handle), requested_count=count, token=token)


def removexattr_upcall(handle: bytes, key: bytes) -> bytes:
    return upcall(OpCode.REMOVEXATTR, "removexattr", refn=kref(handle), key_sz=len(key) + 1, key=key)


def raw_upcall(op_type: int, union: bytes = b"") -> bytes:
    """An upcall of any type with the union given as raw bytes (for types we do not encode)."""
    body = bytearray(UPCALL_SIZE)
    struct.pack_into("<I", body, 0, op_type & 0xFFFFFFFF)
    body[40 : 40 + len(union)] = union
    return bytes(body)


# -- calls --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """A VFS reply with its downcall decoded as the op's type."""

    result: int
    downcall: object
    raw: bytes
    data: bytes

    @property
    def resp(self):
        return self.downcall.resp


def decode(reply: VfsReply, op_type: int) -> Answer:
    known = op_type in {int(op) for op in OpCode}
    downcall = proto.decode_downcall(reply.downcall, op_type if known else None)
    return Answer(reply.result, downcall, reply.downcall, reply.data)


async def call(vfs: VfsClient, up: bytes, data: bytes = b"", *, flags: int = 0) -> Answer:
    (op_type,) = struct.unpack_from("<I", up, 0)
    reply = await vfs.submit(up, data, flags=flags)
    assert len(reply.downcall) == DOWNCALL_SIZE
    return decode(reply, op_type)


def status_of(err: int) -> int:
    return proto.errno_to_status(err)


def assert_ok(answer: Answer, op_type: int) -> None:
    """result 0, status 0, type echoed, trailer_size and trailer_buf zero."""
    assert answer.result == 0, f"{proto.opname(op_type)}: {proto.errno_name(-answer.result)}"
    assert answer.downcall.type == op_type, f"downcall.type {answer.downcall.type:#x} for {proto.opname(op_type)}"
    assert answer.downcall.status == 0
    assert answer.downcall.trailer_size == 0 and answer.raw[16:24] == bytes(8)


def assert_error(answer: Answer, op_type: int, err: int) -> None:
    """result -err, status the OrangeFS encoding of err (spec §2.7), type echoed."""
    assert answer.result == -err, (
        f"{proto.opname(op_type)}: expected {errno.errorcode[err]}, got "
        f"{proto.errno_name(-answer.result) if answer.result else 'success'}"
    )
    assert answer.downcall.status == status_of(err), f"status {answer.downcall.status:#x}"
    assert answer.downcall.type == op_type


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic bytes, different for each seed."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]

