"""The VFS channel: ``pvfs2-vfs``, where callers submit upcalls as the kernel would (shared/DESIGN.md).

Each message is a u32 little-endian length and then::

    request  u32 flags | u32 kind | u64 req_id | SUBMIT: upcall (8528) + write data
    reply    i32 result | u32 pad | u64 tag | u64 req_id | downcall (8224) + read data / trailer

Credentials come from SO_PEERCRED: the broker writes the peer's uid and gid
into the upcall, except for a root peer, whose own uid/gid fields are kept
(so a privileged test harness can act as any user).  pid and tgid are always
the peer's.  Many requests may be in flight on one connection; INTERRUPT
signals the request with that ``req_id``.  A connection that goes away has
given up on everything it had in flight, as a killed process.

Malformed requests get ``-EINVAL`` with ``req_id`` echoed when it could be
read; a length that cannot be honest closes the connection.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct

import trio

from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, SignalKind, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE, UPCALL_SIZE

from .broker import Broker
from .vfs import Call, Result, perform

log = logging.getLogger("pvfs2dev.vfs")

#: Largest message accepted: an upcall with 1 GiB of write data.
MAX_MESSAGE = VFS_REQUEST.size + UPCALL_SIZE + (1 << 30)
_UIDGID_AT = 4
_PEERCRED = struct.Struct("3i")


def peer_credentials(sock) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(raw)


class VfsServer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connections: set[VfsConnection] = set()

    async def serve(self, listener: trio.SocketListener, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                conn = VfsConnection(self, stream)
                self.connections.add(conn)
                nursery.start_soon(conn.run)


class VfsConnection:
    def __init__(self, server: VfsServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.broker = server.broker
        self.stream = stream
        self.pid, self.uid, self.gid = peer_credentials(stream.socket)
        self.calls: dict[int, Call] = {}
        self.send_lock = trio.Lock()
        self.closed = False
        self._buffer = bytearray()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    while True:
                        message = await self._receive()
                        if message is None:
                            break
                        self._dispatch(message, nursery)
                finally:
                    # Gone away with calls in flight: a killed process (fatal signal).
                    self.closed = True
                    for call in list(self.calls.values()):
                        call.interrupt(fatal=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.closed = True
            self.server.connections.discard(self)
            await trio.aclose_forcefully(self.stream)

    async def _receive(self) -> bytes | None:
        """One length-prefixed message, or None at a clean end of stream."""
        head = await self._read_exactly(VFS_LENGTH.size)
        if head is None:
            return None
        (length,) = VFS_LENGTH.unpack(head)
        if length > MAX_MESSAGE:
            log.debug("vfs peer %d sent a %d-byte length: closing", self.pid, length)
            return None
        body = await self._read_exactly(length)
        if body is None:
            return None
        return body

    async def _read_exactly(self, n: int) -> bytes | None:
        while len(self._buffer) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self._buffer)))
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _dispatch(self, message: bytes, nursery: trio.Nursery) -> None:
        if len(message) < VFS_REQUEST.size:
            nursery.start_soon(self.reply, 0, Result(-errno.EINVAL))
            return
        flags, kind, req_id = VFS_REQUEST.unpack_from(message)
        if kind == VfsKind.INTERRUPT:
            call = self.calls.get(req_id)
            if call is not None:
                call.interrupt(fatal=flags == SignalKind.FATAL)
            return
        if kind != VfsKind.SUBMIT or len(message) < VFS_REQUEST.size + UPCALL_SIZE or req_id in self.calls:
            nursery.start_soon(self.reply, req_id, Result(-errno.EINVAL))
            return
        upcall = bytearray(message[VFS_REQUEST.size : VFS_REQUEST.size + UPCALL_SIZE])
        data = message[VFS_REQUEST.size + UPCALL_SIZE :]
        uid, gid = self.uid, self.gid
        if self.uid == 0:
            uid, gid = struct.unpack_from("<II", upcall, _UIDGID_AT)
        call = Call(self.broker, uid=uid, gid=gid, pid=self.pid, tgid=self.pid, flags=flags)
        self.calls[req_id] = call
        nursery.start_soon(self._perform, req_id, call, upcall, data)

    async def _perform(self, req_id: int, call: Call, upcall: bytearray, data: bytes) -> None:
        try:
            result = await perform(call, upcall, data)
        finally:
            self.calls.pop(req_id, None)
        if not self.closed:
            await self.reply(req_id, result)

    async def reply(self, req_id: int, result: Result) -> None:
        downcall = result.downcall if len(result.downcall) == DOWNCALL_SIZE else bytes(DOWNCALL_SIZE)
        body = VFS_REPLY.pack(result.result, result.tag, req_id) + downcall + result.data
        try:
            async with self.send_lock:
                await self.stream.send_all(VFS_LENGTH.pack(len(body)) + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
