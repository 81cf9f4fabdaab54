"""Clients of the broker's VFS and control sockets (shared/DESIGN.md).

:class:`VfsClient` submits upcalls as the kernel's VFS would and gets each
reply by ``req_id`` (many may be in flight); :class:`ControlClient` speaks the
JSON-lines control protocol.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, SignalKind, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE


@dataclasses.dataclass
class VfsReply:
    result: int  # 0 or -errno
    tag: int
    req_id: int
    downcall: bytes
    data: bytes


class PendingReply:
    """A SUBMIT in flight: ``await wait()`` returns its :class:`VfsReply`."""

    __slots__ = ("req_id", "event", "reply")

    def __init__(self, req_id: int) -> None:
        self.req_id = req_id
        self.event = trio.Event()
        self.reply: VfsReply | None = None

    def set(self, reply: VfsReply) -> None:
        self.reply = reply
        self.event.set()

    async def wait(self) -> VfsReply:
        await self.event.wait()
        return self.reply


class VfsClient:
    """One connection to ``pvfs2-vfs``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, PendingReply] = {}
        self._send_lock = trio.Lock()
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: str | os.PathLike) -> AsyncIterator["VfsClient"]:
        stream = await trio.open_unix_socket(os.fspath(path))
        client = cls(stream)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        buffer = bytearray()
        try:
            while True:
                while True:
                    if len(buffer) >= 4:
                        (length,) = VFS_LENGTH.unpack_from(buffer)
                        if len(buffer) >= 4 + length:
                            break
                    chunk = await self.stream.receive_some(1 << 20)
                    if not chunk:
                        return
                    buffer += chunk
                body = bytes(buffer[4 : 4 + length])
                del buffer[: 4 + length]
                result, tag, req_id = VFS_REPLY.unpack_from(body)
                waiter = self._waiting.pop(req_id, None)
                if waiter is not None:
                    rest = body[VFS_REPLY.size :]
                    waiter.set(VfsReply(result, tag, req_id, rest[:DOWNCALL_SIZE], rest[DOWNCALL_SIZE:]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._closed = True
            for waiter in self._waiting.values():
                waiter.set(VfsReply(-errno.EPIPE, 0, waiter.req_id, bytes(DOWNCALL_SIZE), b""))
            self._waiting.clear()

    def next_id(self) -> int:
        return next(self._ids)

    async def send_submit(self, req_id: int, upcall: bytes, data: bytes = b"", flags: int = 0) -> PendingReply:
        """Send a SUBMIT without waiting for its reply."""
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "the broker closed the VFS channel")
        pending = self._waiting[req_id] = PendingReply(req_id)
        body = VFS_REQUEST.pack(flags, VfsKind.SUBMIT, req_id) + upcall + data
        async with self._send_lock:
            await self.stream.send_all(VFS_LENGTH.pack(len(body)) + body)
        return pending

    async def submit(self, upcall: bytes, data: bytes = b"", *, flags: int = 0, req_id: int | None = None) -> VfsReply:
        """Submit one upcall and wait for its reply."""
        req_id = self.next_id() if req_id is None else req_id
        pending = await self.send_submit(req_id, upcall, data, flags)
        return await pending.wait()

    async def interrupt(self, req_id: int, *, fatal: bool = False) -> None:
        """Signal the caller waiting on ``req_id`` (the EINTR / give-up / CANCEL paths)."""
        body = VFS_REQUEST.pack(SignalKind.FATAL if fatal else SignalKind.SIGNAL, VfsKind.INTERRUPT, req_id)
        async with self._send_lock:
            await self.stream.send_all(VFS_LENGTH.pack(len(body)) + body)

    async def send_raw(self, message: bytes) -> None:
        """Send bytes as they are (for tests of malformed input)."""
        async with self._send_lock:
            await self.stream.send_all(message)


class ControlClient:
    """One connection to ``pvfs2-ctl``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: str | os.PathLike) -> AsyncIterator["ControlClient"]:
        stream = await trio.open_unix_socket(os.fspath(path))
        async with stream:
            yield cls(stream)

    async def request(self, cmd: str, **fields) -> dict:
        await self.stream.send_all(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        return await self.receive()

    async def receive(self) -> dict:
        # Search only the new bytes: a recorded FILE_IO line can be megabytes long.
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "the broker closed the control channel")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return json.loads(line)


__all__ = ["VfsClient", "VfsReply", "ControlClient"]
