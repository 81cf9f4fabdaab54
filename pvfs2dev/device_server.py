"""The device channel: ``pvfs2-req``, the emulated character device (shared/DESIGN.md).

One SOCK_SEQPACKET connection per client-core thread; each packet is one
syscall and gets one reply packet.  OPEN makes the connection hold the open
file; ATTACH lets another connection of the same client-core share it (as a
second thread shares an fd).  The file is released — the kernel's release,
with its purge — on CLOSE, or when the last connection holding it goes away.

Answers are immediate except POLL (until POLLIN or its timeout) and
REMOUNT_ALL (until every remount is serviced), which reply later: clients
match replies by ``seq``.  Malformed packets get ``-EINVAL`` (or the errno the
kernel would give) and never take the broker down; fds sent with any packet
are closed and refused.
"""

from __future__ import annotations

import array
import errno
import logging
import math
import os
import secrets
import socket

import trio

from pvfs2proto.channels import DEVICE_REPLY, DEVICE_REQUEST, FILE_TOKEN, POLLIN, DeviceCall
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE, READDIR_TRAILER_MAX
from pvfs2proto.ioctl import IoctlCommand

from .broker import Broker

log = logging.getLogger("pvfs2dev.device")

#: Largest packet accepted: a device write with the largest READDIR trailer.
MAX_PACKET = DEVICE_REQUEST.size + MAX_DEV_REQ_DOWNSIZE + READDIR_TRAILER_MAX
#: Socket buffers big enough for the largest ordinary packets in one go.
SOCKET_BUFFER = 4 * 1024 * 1024
_ANCILLARY = socket.CMSG_SPACE(16 * array.array("i").itemsize)


class DeviceFile:
    """The device's one open file, possibly shared by several connections."""

    def __init__(self) -> None:
        self.token = secrets.randbits(64)
        self.connections: set[DeviceConnection] = set()
        self.closed = False


class DeviceServer:
    """Accepts device connections and serves their calls."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.kernel = broker.kernel
        self.file: DeviceFile | None = None
        self.connections: set[DeviceConnection] = set()

    async def serve(self, listener: trio.socket.SocketType, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                sock, _ = await listener.accept()
                conn = DeviceConnection(self, sock)
                self.connections.add(conn)
                nursery.start_soon(conn.run)

    def release(self, file: DeviceFile) -> None:
        """Close the open file: the kernel's release runs (purge, slot teardown)."""
        if file.closed:
            return
        file.closed = True
        if self.file is file:
            self.file = None
        self.kernel.dev_release(self.broker.now())
        self.broker.poke()


class DeviceConnection:
    """One client-core connection: a reader loop and a send lock."""

    def __init__(self, server: DeviceServer, sock: trio.socket.SocketType) -> None:
        self.server = server
        self.broker = server.broker
        self.kernel = server.kernel
        self.sock = sock
        self.file: DeviceFile | None = None
        self.send_lock = trio.Lock()
        self.buffer = bytearray(MAX_PACKET + 1)
        self.view = memoryview(self.buffer)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await self._loop()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.sock.close()
            self.server.connections.discard(self)
            self._drop_file()

    def _drop_file(self) -> None:
        """This connection no longer refers to the open file; the last one releases it."""
        file, self.file = self.file, None
        if file is None:
            return
        file.connections.discard(self)
        if not file.connections:
            self.server.release(file)

    async def _loop(self) -> None:
        while True:
            nbytes, ancdata, msg_flags, _ = await self.sock.recvmsg_into([self.view], _ANCILLARY)
            if nbytes == 0 and not ancdata:
                return  # peer closed
            if ancdata:
                _close_fds(ancdata)
                await self._reply_bad(nbytes, "file descriptors are not accepted here")
                continue
            if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                await self._reply_bad(nbytes, "packet too large")
                continue
            if nbytes < DEVICE_REQUEST.size:
                await self._reply_bad(nbytes, f"packet of {nbytes} bytes is shorter than its header")
                continue
            call, seq, a0, a1 = DEVICE_REQUEST.unpack_from(self.buffer)
            payload = self.view[DEVICE_REQUEST.size : nbytes]
            await self._dispatch(call, seq, a0, a1, payload)

    async def _dispatch(self, call: int, seq: int, a0: int, a1: int, payload: memoryview) -> None:
        now = self.broker.now()
        try:
            if call == DeviceCall.READ:
                self._need_file()
                frame = self.kernel.dev_read(a0, now)
                await self.reply(call, seq, len(frame), frame)
            elif call == DeviceCall.WRITE:
                self._need_file()
                result = self.kernel.dev_write(payload, now)
                self.broker.poke()
                await self.reply(call, seq, result)
            elif call == DeviceCall.POLL:
                self._need_file()
                self.nursery.start_soon(self._poll, seq, a0, a1)
            elif call == DeviceCall.IOCTL:
                self._need_file()
                await self._ioctl(seq, a0 & 0xFFFFFFFF, bytes(payload))
            elif call == DeviceCall.OPEN:
                await self._open(seq, a0)
            elif call == DeviceCall.ATTACH:
                await self._attach(seq, a0)
            elif call == DeviceCall.CLOSE:
                self._need_file()
                file = self.file
                await self.reply(call, seq, 0)
                for conn in list(file.connections):
                    conn.file = None
                file.connections.clear()
                self.server.release(file)
            else:
                await self.reply(call, seq, -errno.EINVAL)
        except OSError as exc:
            if isinstance(exc, (trio.BrokenResourceError, ConnectionError)):
                raise
            await self.reply(call, seq, -(exc.errno or errno.EINVAL))

    def _need_file(self) -> None:
        if self.file is None or self.file.closed:
            raise OSError(errno.EBADF, "the device is not open on this connection")

    async def _open(self, seq: int, flags: int) -> None:
        if self.file is not None and not self.file.closed:
            # A second open by the same process is still a second opener.
            raise OSError(errno.EACCES, "already open")
        while not self.kernel.dev_open(flags, self.broker.now()):
            # open blocks on the device mutex while a release runs (spec §1.2).
            await self.broker.wait_release_done()
        file = DeviceFile()
        file.connections.add(self)
        self.file = self.server.file = file
        await self.reply(DeviceCall.OPEN, seq, 0, FILE_TOKEN.pack(file.token))

    async def _attach(self, seq: int, token: int) -> None:
        file = self.server.file
        if file is None or file.closed or (token & 0xFFFFFFFFFFFFFFFF) != file.token:
            raise OSError(errno.EBADF, "no open device file with that token")
        self._drop_file()
        file.connections.add(self)
        self.file = file
        await self.reply(DeviceCall.ATTACH, seq, 0)

    async def _poll(self, seq: int, events: int, timeout_ms: int) -> None:
        timeout = math.inf if timeout_ms < 0 else timeout_ms / 1000
        ready = bool(events & POLLIN) and await self.broker.wait_poll(timeout)
        await self.reply(DeviceCall.POLL, seq, POLLIN if ready else 0)

    async def _ioctl(self, seq: int, cmd: int, arg: bytes) -> None:
        now = self.broker.now()
        if cmd == IoctlCommand.MAP:
            desc = self.kernel.dev_map(arg)
            try:
                buffers = self.broker.create_buffers(desc)
            except OSError as exc:
                raise OSError(errno.ENOMEM, f"cannot create the shared buffers: {exc}") from None
            self.kernel.install_bufmap(desc, now)
            self.broker.poke()
            await self.reply(DeviceCall.IOCTL, seq, 0, b"", fds=buffers.fds)
            buffers.handed_over()
        elif cmd == IoctlCommand.REMOUNT_ALL:
            self.nursery.start_soon(self._remount_all, seq)
        else:
            result, out = self.kernel.dev_ioctl(cmd, arg, now)
            await self.reply(DeviceCall.IOCTL, seq, result, out)

    async def _remount_all(self, seq: int) -> None:
        done = trio.Event()
        status: list[int] = []

        def finished(result: int) -> None:
            status.append(result)
            done.set()

        self.kernel.remount_all(self.broker.now(), finished)
        self.broker.poke()
        await done.wait()
        await self.reply(DeviceCall.IOCTL, seq, status[0])

    async def _reply_bad(self, nbytes: int, why: str) -> None:
        log.debug("bad device packet: %s", why)
        call = seq = 0
        if nbytes >= 8:
            call, seq = int.from_bytes(self.buffer[0:4], "little"), int.from_bytes(self.buffer[4:8], "little")
        await self.reply(call, seq, -errno.EINVAL)

    async def reply(self, call: int, seq: int, result: int, payload: bytes = b"", fds: list[int] | None = None) -> None:
        head = DEVICE_REPLY.pack(call, seq, result)
        async with self.send_lock:
            if fds:
                await self.sock.sendmsg(
                    [head, payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
            else:
                await self.sock.send(head + payload if payload else head)


def _close_fds(ancdata) -> None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
