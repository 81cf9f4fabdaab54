"""The client-core's side of the device channel: ``/dev/pvfs2-req`` as a trio object.

:class:`Device` turns each device syscall into one request packet and waits
for the reply with the same ``seq`` (POLL and REMOUNT_ALL may be answered out
of order, so a reader task matches replies to callers).  Errors come back as
``OSError`` with the kernel's errno.  :func:`handshake` is the real
client-core's start-up sequence up to and including MAP.
"""

from __future__ import annotations

import array
import errno
import itertools
import math
import mmap
import os
import select
import socket
import struct
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

import pvfs2proto as proto
from pvfs2proto.channels import DEVICE_REPLY, DEVICE_REQUEST, FILE_TOKEN, POLLIN, DeviceCall
from pvfs2proto.constants import (
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_READDIR_DEFAULT_DESC_SIZE,
    PAGE_SIZE,
)
from pvfs2proto.debug import ClientDebugKeyword, encode_client_debug_string
from pvfs2proto.ioctl import ORANGEFS_dev_map_desc, IoctlCommand

_INT = struct.Struct("<i")
_RECV_SIZE = DEVICE_REPLY.size + MAX_DEV_REQ_UPSIZE + 64
_ANCILLARY = socket.CMSG_SPACE(4 * array.array("i").itemsize)
SOCKET_BUFFER = 4 * 1024 * 1024


class _Pending:
    __slots__ = ("event", "result", "payload", "fds")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result = 0
        self.payload = b""
        self.fds: list[int] = []


class Device:
    """One connection to the broker's device socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self._seq = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: str | os.PathLike) -> AsyncIterator["Device"]:
        """Connect to the device socket at ``path`` and run the reply reader."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
        try:
            await sock.connect(os.fspath(path))
            device = cls(sock)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(device._reader)
                try:
                    yield device
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            sock.close()

    async def _reader(self) -> None:
        try:
            while True:
                data, ancdata, _, _ = await self.sock.recvmsg(_RECV_SIZE, _ANCILLARY)
                if not data:
                    break
                call, seq, result = DEVICE_REPLY.unpack_from(data)
                pending = self._pending.pop(seq, None)
                fds = _fds(ancdata)
                if pending is None:
                    for fd in fds:
                        os.close(fd)
                    continue
                pending.result, pending.payload, pending.fds = result, data[DEVICE_REPLY.size :], fds
                pending.event.set()
        except OSError:
            pass
        finally:
            self._closed = True
            for pending in self._pending.values():
                pending.result = -errno.EPIPE
                pending.event.set()
            self._pending.clear()

    async def call(self, call: int, a0: int = 0, a1: int = 0, payload: bytes = b"") -> _Pending:
        """One device syscall; returns the reply (result may be negative)."""
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the broker closed the device channel")
        seq = next(self._seq) & 0xFFFFFFFF
        pending = self._pending[seq] = _Pending()
        async with self._send_lock:
            await self.sock.send(DEVICE_REQUEST.pack(call, seq, a0, a1) + payload)
        await pending.event.wait()
        return pending

    async def _checked(self, call: int, a0: int = 0, a1: int = 0, payload: bytes = b"") -> _Pending:
        reply = await self.call(call, a0, a1, payload)
        if reply.result < 0:
            for fd in reply.fds:
                os.close(fd)
            raise OSError(-reply.result, f"{DeviceCall(call).name}: {os.strerror(-reply.result)}")
        return reply

    # -- the syscalls ------------------------------------------------------------------------------

    async def open(self, flags: int = os.O_RDWR | os.O_NONBLOCK) -> int:
        """open(2); returns the file token other connections can ATTACH with."""
        return FILE_TOKEN.unpack((await self._checked(DeviceCall.OPEN, flags)).payload)[0]

    async def attach(self, token: int) -> None:
        await self._checked(DeviceCall.ATTACH, token if token < 2**63 else token - 2**64)

    async def read(self) -> bytes | None:
        """read(2) of one upcall frame; None when the kernel says EAGAIN."""
        reply = await self.call(DeviceCall.READ, MAX_DEV_REQ_UPSIZE)
        if reply.result == -errno.EAGAIN:
            return None
        if reply.result < 0:
            raise OSError(-reply.result, f"READ: {os.strerror(-reply.result)}")
        return reply.payload

    async def read_batch(self, count: int) -> list[bytes]:
        """``count`` reads sent back to back, so the broker answers them in one wake-up.

        Returns every frame read, in order; reads that found nothing (EAGAIN)
        are left out.  Every returned op is in progress and must be answered.

        Raises:
            OSError: the kernel refused the reads (other than EAGAIN) and none succeeded.
        """
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the broker closed the device channel")
        batch = []
        async with self._send_lock:
            for _ in range(count):
                seq = next(self._seq) & 0xFFFFFFFF
                pending = self._pending[seq] = _Pending()
                batch.append(pending)
                await self.sock.send(DEVICE_REQUEST.pack(DeviceCall.READ, seq, MAX_DEV_REQ_UPSIZE, 0))
        frames, error = [], None
        for pending in batch:
            await pending.event.wait()
            if pending.result >= 0:
                frames.append(pending.payload)
            elif pending.result != -errno.EAGAIN and error is None:
                error = pending.result
        if error is not None and not frames:
            raise OSError(-error, f"READ: {os.strerror(-error)}")
        return frames

    async def write_nowait(self, frame: bytes) -> _Pending:
        """Send a downcall without waiting for the kernel's answer (check ``.result`` later)."""
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the broker closed the device channel")
        seq = next(self._seq) & 0xFFFFFFFF
        pending = self._pending[seq] = _Pending()
        async with self._send_lock:
            await self.sock.send(DEVICE_REQUEST.pack(DeviceCall.WRITE, seq, 0, 0) + frame)
        return pending

    async def write(self, frame: bytes) -> int:
        """writev(2) of one downcall frame; returns the byte count."""
        return (await self._checked(DeviceCall.WRITE, payload=frame)).result

    async def poll(self, timeout: float = math.inf) -> bool:
        """poll(2) for POLLIN; True when the request list is non-empty."""
        ms = -1 if math.isinf(timeout) else int(timeout * 1000)
        return bool((await self._checked(DeviceCall.POLL, POLLIN, ms)).result & POLLIN)

    async def ioctl(self, cmd: int, arg: bytes = b"") -> tuple[int, bytes, list[int]]:
        reply = await self._checked(DeviceCall.IOCTL, cmd, 0, arg)
        return reply.result, reply.payload, reply.fds

    async def close(self) -> None:
        await self._checked(DeviceCall.CLOSE)


class RawChannel:
    """A non-blocking device connection driven by hand: packets out, replies in.

    For loops that pipeline calls (several READs and WRITEs outstanding) and so
    match replies by call type rather than waiting on each: one wake-up serves
    many packets, which :class:`Device`'s await-per-call cannot.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    def send(self, call: int, a0: int = 0, a1: int = 0, payload: bytes = b"") -> None:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        packet = DEVICE_REQUEST.pack(call, self.seq, a0, a1) + payload
        while True:
            try:
                self.sock.send(packet)
                return
            except BlockingIOError:
                # The broker reads all the time; a full buffer drains in microseconds.
                select.select([], [self.sock], [], 1.0)

    async def receive(self) -> tuple[int, int, bytes]:
        while True:
            try:
                data = self.sock.recv(_RECV_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not data:
                raise BrokenPipeError(errno.EPIPE, "the broker closed the device channel")
            call, _, result = DEVICE_REPLY.unpack_from(data)
            return call, result, data[DEVICE_REPLY.size :]


def _fds(ancdata) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


class MappedBuffers:
    """The client-core's view of the two shared buffers after MAP."""

    def __init__(self, io_fd: int, readdir_fd: int, io_size: int, io_count: int) -> None:
        self.io_size, self.io_count = io_size, io_count
        try:
            self.io = mmap.mmap(io_fd, io_size * io_count)
            self.readdir = mmap.mmap(readdir_fd, os.fstat(readdir_fd).st_size)
        finally:
            os.close(io_fd)
            os.close(readdir_fd)
        self.io_view = memoryview(self.io)
        # The broker cuts the readdir buffer into slots of the userspace default
        # size; how many there are follows from the file it handed over.
        self.readdir_size = ORANGEFS_READDIR_DEFAULT_DESC_SIZE
        self.readdir_count = len(self.readdir) // self.readdir_size

    def io_slot(self, index: int) -> memoryview:
        return self.io_view[index * self.io_size : (index + 1) * self.io_size]

    def readdir_slot(self, index: int) -> memoryview:
        """Readdir slot ``index``; the caller releases the view."""
        return memoryview(self.readdir)[index * self.readdir_size : (index + 1) * self.readdir_size]

    def close(self) -> None:
        self.io_view.release()
        self.io.close()
        self.readdir.close()


#: The debug keywords our client-core announces with CLIENT_STRING.
CLIENT_DEBUG_KEYWORDS = [
    ClientDebugKeyword("none", 0, 0),
    ClientDebugKeyword("ops", 1, 0),
    ClientDebugKeyword("store", 2, 0),
    ClientDebugKeyword("io", 4, 0),
    ClientDebugKeyword("verbose", 0xFFFF, 0),
    ClientDebugKeyword("all", 0xFFFF, 0),
]


async def handshake(device: Device, *, desc_count: int, desc_size: int) -> tuple[int, MappedBuffers]:
    """Open and MAP in the real client-core's order (spec §1.7).

    OPEN, GET_MAGIC, GET_MAX_UPSIZE, GET_MAX_DOWNSIZE, DEBUG (kernel mask),
    UPSTREAM, CLIENT_MASK, CLIENT_STRING, MAP.  The geometry is checked as the
    userspace library does (slot size a power of two, total a page multiple
    under 128 MiB) before anything is sent.

    Returns:
        The file token and the mapped buffers.
    """
    total = desc_count * desc_size
    if desc_size <= 0 or desc_size & (desc_size - 1) or desc_count <= 0:
        raise ValueError(f"slot size {desc_size} must be a power of two and count {desc_count} positive")
    if total % PAGE_SIZE or total >= proto.ORANGEFS_BUFMAP_TOTAL_LIMIT:
        raise ValueError(f"buffer of {total} bytes must be a page multiple under 128 MiB")
    token = await device.open()
    _, out, _ = await device.ioctl(IoctlCommand.GET_MAGIC)
    if _INT.unpack(out)[0] != ORANGEFS_DEVREQ_MAGIC:
        raise OSError(errno.EPROTO, "the device answered a wrong magic")
    for cmd, want in ((IoctlCommand.GET_MAX_UPSIZE, proto.MAX_DEV_REQ_UPSIZE),
                      (IoctlCommand.GET_MAX_DOWNSIZE, proto.MAX_DEV_REQ_DOWNSIZE)):
        _, out, _ = await device.ioctl(cmd)
        if _INT.unpack(out)[0] != want:
            raise OSError(errno.EPROTO, f"{cmd.name} is {_INT.unpack(out)[0]}, expected {want}")
    await device.ioctl(IoctlCommand.DEBUG, struct.pack("<I4xQ", proto.DebugMaskType.KERNEL_MASK, 0))
    await device.ioctl(IoctlCommand.UPSTREAM)
    await device.ioctl(IoctlCommand.CLIENT_MASK, struct.pack("<QQ", 0, 0))
    await device.ioctl(IoctlCommand.CLIENT_STRING, encode_client_debug_string(CLIENT_DEBUG_KEYWORDS))
    desc = ORANGEFS_dev_map_desc.pack({"ptr": 0, "total_size": total, "size": desc_size, "count": desc_count})
    _, _, fds = await device.ioctl(IoctlCommand.MAP, desc)
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EPROTO, f"MAP handed over {len(fds)} fds, expected 2")
    return token, MappedBuffers(fds[0], fds[1], desc_size, desc_count)
