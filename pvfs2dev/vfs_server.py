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

from .broker import Broker, serve_connections
from .vfs import Call, Result, needs_glue, perform, start

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

    async def serve(self, listener: trio.socket.SocketType, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await serve_connections(listener, self._connect, "vfs connection", task_status=task_status)

    def _connect(self, sock: socket.socket) -> VfsConnection:
        conn = VfsConnection(self, sock)
        self.connections.add(conn)
        return conn


class VfsConnection:
    """One caller connection.

    Reads drain the socket with non-blocking calls and handle every complete
    message; plain ops are answered from their wake-up (no task), the rest get
    a task each.  Replies go into an outbox that is written at once when the
    socket has room and by a task when it has not, so replies never interleave.
    """

    RECV_SIZE = 256 * 1024
    #: Socket buffers that hold a whole 4 MiB FILE_IO message, so one goes
    #: in or out in a few system calls rather than dozens of wake-ups.
    SOCKET_BUFFER = 4 * 1024 * 1024

    def __init__(self, server: VfsServer, sock: socket.socket) -> None:
        self.server = server
        self.broker = server.broker
        self.sock = sock
        self.pid, self.uid, self.gid = peer_credentials(sock)
        self.calls: dict[int, Call] = {}
        self.closed = False
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._writing = False
        self._flushed = trio.Event()  # set when a _flush task ends
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, self.SOCKET_BUFFER)
            except OSError:
                pass

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                try:
                    await self._loop()
                    # End of input.  Replies already queued still go out whole:
                    # a peer that only shut down its sending side reads them,
                    # and a torn reply would be worse than none.
                    if self._writing:
                        await self._flushed.wait()
                finally:
                    # Gone away with calls in flight: a killed process (fatal signal).
                    self.closed = True
                    for call in list(self.calls.values()):
                        call.interrupt(fatal=True)
        finally:
            self.closed = True
            self.server.connections.discard(self)
            self.sock.close()

    async def _loop(self) -> None:
        inbox = self._inbox
        while not self.closed:
            try:
                chunk = self.sock.recv(self.RECV_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            except OSError:
                return
            if not chunk:
                return
            inbox += chunk
            pos = 0
            while len(inbox) - pos >= VFS_LENGTH.size:
                (length,) = VFS_LENGTH.unpack_from(inbox, pos)
                if length > MAX_MESSAGE:
                    log.debug("vfs peer %d sent a %d-byte length: closing", self.pid, length)
                    return
                end = pos + VFS_LENGTH.size + length
                if len(inbox) < end:
                    if length > self.RECV_SIZE:
                        # A big message (FILE_IO write data): receive the rest
                        # straight into its own buffer, one copy from the kernel.
                        message = bytearray(length)
                        have = len(inbox) - pos - VFS_LENGTH.size
                        message[:have] = memoryview(inbox)[pos + VFS_LENGTH.size :]
                        del inbox[:]
                        pos = 0
                        if not await self._receive_into(memoryview(message)[have:]):
                            return
                        self._dispatch(message)
                    break
                self._dispatch(bytes(inbox[pos + VFS_LENGTH.size : end]))
                pos = end
            del inbox[:pos]
            await trio.lowlevel.checkpoint()

    async def _receive_into(self, view: memoryview) -> bool:
        """Fill ``view`` from the socket; False if the peer went away first."""
        while view:
            try:
                n = self.sock.recv_into(view)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            except OSError:
                return False
            if not n:
                return False
            view = view[n:]
        return True

    def _dispatch(self, message: bytes | bytearray) -> None:
        if len(message) < VFS_REQUEST.size:
            self.reply(0, Result(-errno.EINVAL))
            return
        flags, kind, req_id = VFS_REQUEST.unpack_from(message)
        if kind == VfsKind.INTERRUPT:
            call = self.calls.get(req_id)
            if call is not None:
                call.interrupt(fatal=flags == SignalKind.FATAL)
            return
        if kind != VfsKind.SUBMIT or len(message) < VFS_REQUEST.size + UPCALL_SIZE or req_id in self.calls:
            self.reply(req_id, Result(-errno.EINVAL))
            return
        upcall = bytearray(message[VFS_REQUEST.size : VFS_REQUEST.size + UPCALL_SIZE])
        # A view: FILE_IO write data is copied once, into the slot.
        data = memoryview(message)[VFS_REQUEST.size + UPCALL_SIZE :]
        uid, gid = self.uid, self.gid
        if self.uid == 0:
            uid, gid = struct.unpack_from("<II", upcall, _UIDGID_AT)
        call = Call(self.broker, uid=uid, gid=gid, pid=self.pid, tgid=self.pid, flags=flags)
        self.calls[req_id] = call
        if data or needs_glue(upcall):
            self.nursery.start_soon(self._perform, req_id, call, upcall, data)
        else:
            start(call, upcall, lambda result: self._finished(req_id, result))

    async def _perform(self, req_id: int, call: Call, upcall: bytearray, data: bytes) -> None:
        try:
            result = await perform(call, upcall, data)
        finally:
            self.calls.pop(req_id, None)
        try:
            self.reply(req_id, result)
        finally:
            if result.release is not None:
                result.release()  # the reply is sent or copied: the slot may go

    def _finished(self, req_id: int, result: Result) -> None:
        self.calls.pop(req_id, None)
        self.reply(req_id, result)

    def reply(self, req_id: int, result: Result) -> None:
        """Queue one reply; it is sent now if the socket has room."""
        if self.closed:
            return
        downcall = result.downcall if len(result.downcall) == DOWNCALL_SIZE else bytes(DOWNCALL_SIZE)
        head = VFS_LENGTH.pack(VFS_REPLY.size + DOWNCALL_SIZE + len(result.data)) + VFS_REPLY.pack(
            result.result, result.tag, req_id
        )
        parts = [head, downcall, result.data]
        if self._outbox:
            for part in parts:
                self._outbox += part
            return
        try:
            # Gathered, so megabytes of read data are not joined into one more copy.
            sent = self.sock.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.closed = True
            return
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            self._outbox += memoryview(part)[sent:]
            sent = 0
        if self._outbox and not self._writing:
            self._writing = True
            self._flushed = trio.Event()
            self.nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        try:
            while self._outbox and not self.closed:
                await trio.lowlevel.wait_writable(self.sock)
                try:
                    sent = self.sock.send(self._outbox)
                except BlockingIOError:
                    continue
                except OSError:
                    self.closed = True
                    return
                del self._outbox[:sent]
        finally:
            self._writing = False
            self._flushed.set()
