"""Helpers for tests that drive a running broker through its three real sockets.

The broker runs in the test's own trio run (``Server(Config(rundir)).run``);
everything here talks to it only through ``pvfs2-req``, ``pvfs2-vfs`` and
``pvfs2-ctl``:

* :class:`RawDevice` — a bare SOCK_SEQPACKET device connection: packets in,
  packets out, replies in arrival order (for seq, ordering and junk tests);
* :class:`HandCore` — a hand-written client-core on :class:`clientcore.device.Device`:
  the test reads each upcall and decides the downcall itself;
* :class:`RawVfs` — a bare VFS stream: length-prefixed messages, replies in
  arrival order;
* upcall builders, :func:`mount`, :func:`status`, :func:`assert_quiescent`.
"""

from __future__ import annotations

import array
import dataclasses
import math
import os
import socket
import struct
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable

import trio

import pvfs2proto as proto
from clientcore import minimal
from clientcore.device import Device, MappedBuffers, handshake
from pvfs2ctl.client import ControlClient, VfsClient
from pvfs2proto import IoType, OpCode
from pvfs2proto.channels import (
    DEVICE_REPLY,
    DEVICE_REQUEST,
    POLLIN,
    VFS_LENGTH,
    VFS_REPLY,
    VFS_REQUEST,
    DeviceCall,
    VfsKind,
)
from pvfs2proto.constants import (
    DOWNCALL_SIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_ITERATE_START,
    PVFS2DEV_USERSPACE_VERSION,
)

DEVNAME = b"tcp://localhost:3334/orangefs"
FS_ID = minimal.MINIMAL_FS_ID  # what the minimal client-core (and our hand core) answer FS_MOUNT with
ROOT = minimal.MINIMAL_ROOT
FILE = bytes(range(0x40, 0x50))  # a khandle for FILE_IO tests
NONBLOCK = os.O_RDWR | os.O_NONBLOCK
KiB = 1024
MiB = 1024 * KiB


# -- paths -------------------------------------------------------------------------------------------------


def dev_path(rundir: Path) -> Path:
    return Path(rundir) / "pvfs2-req"


def vfs_path(rundir: Path) -> Path:
    return Path(rundir) / "pvfs2-vfs"


def ctl_path(rundir: Path) -> Path:
    return Path(rundir) / "pvfs2-ctl"


# -- upcalls -----------------------------------------------------------------------------------------------


def getattr_upcall(fs_id: int = FS_ID, khandle: bytes = ROOT, *, uid: int = 0, gid: int = 0) -> bytes:
    return proto.encode_upcall(
        {
            "type": OpCode.GETATTR,
            "uid": uid,
            "gid": gid,
            "req": {"getattr": {"refn": {"khandle": khandle, "fs_id": fs_id}, "mask": proto.AttrMask.ALL_NOHINT}},
        }
    )


def mount_upcall(devname: bytes = DEVNAME) -> bytes:
    return proto.encode_upcall({"type": OpCode.FS_MOUNT, "req": {"fs_mount": {"orangefs_config_server": devname}}})


def file_io_upcall(io_type: int, count: int, offset: int = 0, *, fs_id: int = FS_ID, khandle: bytes = FILE) -> bytes:
    return proto.encode_upcall(
        {
            "type": OpCode.FILE_IO,
            "req": {
                "io": {
                    "count": count,
                    "offset": offset,
                    "io_type": io_type,
                    "refn": {"khandle": khandle, "fs_id": fs_id},
                }
            },
        }
    )


def write_upcall(count: int, offset: int = 0, **kwargs) -> bytes:
    return file_io_upcall(IoType.WRITE, count, offset, **kwargs)


def read_upcall(count: int, offset: int = 0, **kwargs) -> bytes:
    return file_io_upcall(IoType.READ, count, offset, **kwargs)


def readdir_upcall(fs_id: int = FS_ID, khandle: bytes = ROOT, token: int = ORANGEFS_ITERATE_START) -> bytes:
    return proto.encode_upcall(
        {
            "type": OpCode.READDIR,
            "req": {
                "readdir": {
                    "refn": {"khandle": khandle, "fs_id": fs_id},
                    "token": token,
                    "max_dirent_count": proto.ORANGEFS_MAX_DIRENT_COUNT_READDIR,
                }
            },
        }
    )


# -- downcalls ---------------------------------------------------------------------------------------------


def write_frame(tag: int, downcall: dict, trailer: bytes = b"", **kwargs) -> bytes:
    return proto.encode_write_frame(tag, downcall, trailer, **kwargs)


def status_of(err: int) -> int:
    return proto.errno_to_status(err)


@dataclasses.dataclass
class Frame:
    """One upcall as a device read returned it."""

    raw: bytes

    @property
    def tag(self) -> int:
        return struct.unpack_from("<Q", self.raw, 8)[0]

    @property
    def type(self) -> int:
        return struct.unpack_from("<I", self.raw, 16)[0]

    @property
    def decoded(self):
        return proto.decode_read_frame(self.raw)

    @property
    def upcall(self):
        return self.decoded.upcall


# -- the device channel, raw -------------------------------------------------------------------------------


@dataclasses.dataclass
class RawReply:
    call: int
    seq: int
    result: int
    payload: bytes
    fds: list[int]


class RawDevice:
    """A bare device connection: each :meth:`send` is one packet; :meth:`recv` the next reply packet."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.seq = 0

    @classmethod
    @asynccontextmanager
    async def connect(cls, rundir: Path) -> AsyncIterator["RawDevice"]:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, 4 * MiB)  # as the client-core does, for big packets
            await sock.connect(os.fspath(dev_path(rundir)))
            yield cls(sock)
        finally:
            sock.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def send(self, call: int, seq: int | None = None, a0: int = 0, a1: int = 0, payload: bytes = b"",
                   fds: list[int] | None = None) -> int:
        """Send one request packet; returns its seq."""
        seq = self.next_seq() if seq is None else seq
        await self.send_bytes(DEVICE_REQUEST.pack(call, seq, a0, a1) + payload, fds)
        return seq

    async def send_bytes(self, packet: bytes, fds: list[int] | None = None) -> None:
        if fds:
            await self.sock.sendmsg([packet], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            await self.sock.send(packet)

    async def recv(self) -> RawReply:
        data, ancdata, _, _ = await self.sock.recvmsg(DEVICE_REPLY.size + MAX_DEV_REQ_UPSIZE + 64,
                                                      socket.CMSG_SPACE(8 * 4))
        if not data:
            raise EOFError("the broker closed the device connection")
        call, seq, result = DEVICE_REPLY.unpack_from(data)
        fds = array.array("i")
        for level, kind, blob in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(blob[: len(blob) - len(blob) % fds.itemsize])
        return RawReply(call, seq, result, data[DEVICE_REPLY.size :], list(fds))

    async def call(self, call: int, a0: int = 0, a1: int = 0, payload: bytes = b"") -> RawReply:
        """One call whose reply is the next packet (for calls answered at once)."""
        seq = await self.send(call, None, a0, a1, payload)
        reply = await self.recv()
        assert reply.seq == seq, f"reply for seq {reply.seq} while waiting for {seq}"
        assert reply.call == call
        return reply


# -- a hand-written client-core ----------------------------------------------------------------------------


class HandCore:
    """A client-core whose every upcall the test answers itself.

    :meth:`next_frame` polls and reads one upcall; :meth:`reply` writes a
    downcall; :meth:`serve` answers upcalls in a loop with a handler.
    """

    def __init__(self, device: Device, token: int, buffers: MappedBuffers) -> None:
        self.device = device
        self.token = token
        self.buffers = buffers
        self.seen: list[Frame] = []

    @classmethod
    @asynccontextmanager
    async def start(cls, rundir: Path, *, count: int = 4, size: int = 1 * MiB) -> AsyncIterator["HandCore"]:
        async with Device.connect(dev_path(rundir)) as device:
            token, buffers = await handshake(device, desc_count=count, desc_size=size)
            try:
                yield cls(device, token, buffers)
            finally:
                buffers.close()

    async def next_frame(self, timeout: float = 10.0) -> Frame:
        """Poll and read until one upcall comes (fails after ``timeout`` seconds)."""
        with trio.fail_after(timeout):
            while True:
                raw = await self.device.read()
                if raw is not None:
                    frame = Frame(raw)
                    self.seen.append(frame)
                    return frame
                await self.device.poll()

    async def no_frame(self, wait: float = 1.0) -> None:
        """Assert no upcall becomes readable within ``wait`` seconds."""
        assert not await self.device.poll(wait), "an upcall was queued"
        assert await self.device.read() is None

    async def write(self, data: bytes) -> int:
        """Write raw downcall bytes; the device's result (byte count or -errno)."""
        return (await self.device.call(DeviceCall.WRITE, payload=data)).result

    async def reply(self, frame: Frame, *, status: int = 0, resp: dict | None = None, trailer: bytes = b"",
                    op_type: int | None = None, **extra) -> int:
        downcall: dict = {"type": frame.type if op_type is None else op_type, "status": status, **extra}
        if resp:
            downcall["resp"] = resp
        return await self.write(write_frame(frame.tag, downcall, trailer))

    async def auto(self, frame: Frame) -> int:
        """Answer as the minimal client-core would (success, type echoed)."""
        return await self.write(minimal.reply_for(frame.raw))

    async def serve(self, handler: Callable | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Answer upcalls forever; ``handler(core, frame)`` (async) answers one, default :meth:`auto`."""
        task_status.started()
        while True:
            frame = await self.next_frame(math.inf)
            if handler is None:
                await self.auto(frame)
            else:
                await handler(self, frame)

    @asynccontextmanager
    async def serving(self, handler: Callable | None = None) -> AsyncIterator[None]:
        """:meth:`serve` in the background for the body of the ``async with``."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve, handler)
            yield
            nursery.cancel_scope.cancel()


def submit_soon(nursery: trio.Nursery, vfs: VfsClient, upcall: bytes, data: bytes = b"", **kwargs) -> list:
    """Submit ``upcall`` from a task of ``nursery``; the returned list receives its reply when it comes."""
    replies: list = []

    async def submit() -> None:
        replies.append(await vfs.submit(upcall, data, **kwargs))

    nursery.start_soon(submit)
    return replies


async def mount(vfs: VfsClient, devname: bytes = DEVNAME, **kwargs):
    """mount(2) through the VFS channel; asserts it worked and returns the reply."""
    reply = await vfs.submit(mount_upcall(devname), **kwargs)
    assert reply.result == 0, f"mount failed: {proto.errno_name(-reply.result)}"
    return reply


async def mount_by_hand(core: HandCore, vfs: VfsClient, *, features: int = 0) -> None:
    """Mount while ``core`` answers FS_MOUNT, GETATTR of the root and FEATURES (with ``features``)."""
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def submit():
            await mount(vfs)
            done.set()

        nursery.start_soon(submit)
        expected = [OpCode.FS_MOUNT, OpCode.GETATTR, OpCode.FEATURES]
        for op_type in expected:
            frame = await core.next_frame()
            assert frame.type == op_type, f"mount sent {proto.opname(frame.type)}, expected {proto.opname(op_type)}"
            if op_type == OpCode.FEATURES:
                assert await core.reply(frame, resp={"features": {"features": features}}) > 0
            else:
                assert await core.auto(frame) > 0
        await done.wait()


class _StartedWith:
    """A task_status that reports ``value`` whatever the inner task starts with."""

    def __init__(self, outer, value) -> None:
        self.outer, self.value = outer, value

    def started(self, _=None) -> None:
        self.outer.started(self.value)


async def minimal_core(rundir: Path, count: int = 4, size: int = 1 * MiB, *,
                       task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The minimal client-core in a cancel scope of its own: ``scope = await nursery.start(minimal_core, rundir)``."""
    with trio.CancelScope() as scope:
        await minimal.run(rundir, count, size, task_status=_StartedWith(task_status, scope))


# -- the VFS channel, raw ----------------------------------------------------------------------------------


@dataclasses.dataclass
class RawVfsReply:
    result: int
    tag: int
    req_id: int
    downcall: bytes
    data: bytes


class RawVfs:
    """A bare VFS connection: bytes out, replies in arrival order."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    @asynccontextmanager
    async def connect(cls, rundir: Path) -> AsyncIterator["RawVfs"]:
        stream = await trio.open_unix_socket(os.fspath(vfs_path(rundir)))
        async with stream:
            yield cls(stream)

    async def send_message(self, body: bytes) -> None:
        await self.stream.send_all(VFS_LENGTH.pack(len(body)) + body)

    async def submit(self, req_id: int, upcall: bytes, data: bytes = b"", flags: int = 0) -> None:
        await self.send_message(VFS_REQUEST.pack(flags, VfsKind.SUBMIT, req_id) + upcall + data)

    async def recv(self) -> RawVfsReply:
        """The next reply; EOFError when the broker closed the connection."""
        while True:
            if len(self.buffer) >= 4:
                (length,) = VFS_LENGTH.unpack_from(self.buffer)
                if len(self.buffer) >= 4 + length:
                    body = bytes(self.buffer[4 : 4 + length])
                    del self.buffer[: 4 + length]
                    result, tag, req_id = VFS_REPLY.unpack_from(body)
                    rest = body[VFS_REPLY.size :]
                    return RawVfsReply(result, tag, req_id, rest[:DOWNCALL_SIZE], rest[DOWNCALL_SIZE:])
            try:
                chunk = await self.stream.receive_some(1 << 20)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                raise EOFError("the broker closed the VFS connection")
            self.buffer += chunk


# -- the control channel -----------------------------------------------------------------------------------


async def control(rundir: Path, cmd: str, **fields) -> dict:
    """One control request on a fresh connection."""
    async with ControlClient.connect(ctl_path(rundir)) as ctl:
        return await ctl.request(cmd, **fields)


async def status(rundir: Path) -> dict:
    reply = await control(rundir, "status")
    assert reply["ok"], reply
    return reply


async def wait_for(rundir: Path, predicate: Callable[[dict], bool], *, cmd: str = "status",
                   timeout: float = 10.0, **fields) -> dict:
    """Ask the control channel until ``predicate(reply)`` holds (fails after ``timeout``)."""
    with trio.fail_after(timeout):
        while True:
            reply = await control(rundir, cmd, **fields)
            if predicate(reply):
                return reply
            await trio.sleep(0.01)


def maps_full(maps: list[dict]) -> bool:
    return all(m["c"] == m["count"] and m["count"] > 0 and not m["busy"] and m["waiters"] == 0 for m in maps)


async def assert_quiescent(rundir: Path, timeout: float = 10.0) -> dict:
    """Nothing in flight, no live op, and both slot maps full (waits briefly for give-ups to settle)."""
    def quiet(s: dict) -> bool:
        return s["request_list"] == 0 and s["in_progress"] == 0 and not s["ops_by_state"] and maps_full(s["buffers"])

    try:
        return await wait_for(rundir, quiet, timeout=timeout)
    except trio.TooSlowError:
        s = await status(rundir)
        ops = await control(rundir, "ops")
        raise AssertionError(f"broker not quiescent: {s} ops={ops['ops']}") from None


async def assert_getattr_round_trip(rundir: Path, timeout: float = 10.0) -> None:
    """A fresh caller's GETATTR of the root is served (result 0)."""
    with trio.fail_after(timeout):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            reply = await vfs.submit(getattr_upcall())
    assert reply.result == 0, proto.errno_name(-reply.result)
    downcall = proto.decode_downcall(reply.downcall, OpCode.GETATTR)
    assert downcall.type == OpCode.GETATTR


__all__ = [
    "DEVNAME", "FS_ID", "ROOT", "FILE", "NONBLOCK", "KiB", "MiB", "POLLIN", "ORANGEFS_DEVREQ_MAGIC",
    "PVFS2DEV_USERSPACE_VERSION", "MAX_DEV_REQ_UPSIZE",
    "dev_path", "vfs_path", "ctl_path", "getattr_upcall", "mount_upcall", "file_io_upcall", "write_upcall",
    "read_upcall", "readdir_upcall", "write_frame", "status_of", "Frame", "RawDevice", "RawReply", "HandCore",
    "mount", "mount_by_hand", "minimal_core", "RawVfs", "RawVfsReply", "control", "status", "wait_for",
    "maps_full", "assert_quiescent", "assert_getattr_round_trip",
]
