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

While someone records (``pvfs2ctl trace --record``), READ, WRITE and MAP also
go through ``broker.recorder`` (pvfs2dev/recorder.py); otherwise that costs one
attribute check per call.
"""

from __future__ import annotations

import array
import errno
import logging
import math
import os
import secrets
import select
import socket

import trio

from pvfs2proto.channels import DEVICE_REPLY, DEVICE_REQUEST, FILE_TOKEN, POLLIN, DeviceCall
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE, READDIR_TRAILER_MAX
from pvfs2proto.ioctl import IoctlCommand

from .broker import Broker, serve_connections

log = logging.getLogger("pvfs2dev.device")

#: Largest packet accepted: a device write with the largest READDIR trailer.
MAX_PACKET = DEVICE_REQUEST.size + MAX_DEV_REQ_DOWNSIZE + READDIR_TRAILER_MAX
#: Socket buffers big enough for the largest ordinary packets in one go.
SOCKET_BUFFER = 4 * 1024 * 1024
_ANCILLARY = socket.CMSG_SPACE(16 * array.array("i").itemsize)
# Plain ints: the socket module's flags are IntFlags, slow to combine per packet.
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_HUNG_UP = select.POLLHUP | select.POLLRDHUP


def _peer_gone(sock: socket.socket) -> bool:
    """After a 0-byte receive: did the peer close, or send an empty packet?

    On SOCK_SEQPACKET both read as 0 bytes; only a close leaves the socket
    hung up (an empty packet is malformed, and gets EINVAL like any short one).
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLRDHUP)
    return any(events & _HUNG_UP for _, events in poller.poll(0))
_READ, _WRITE, _POLL, _IOCTL = int(DeviceCall.READ), int(DeviceCall.WRITE), int(DeviceCall.POLL), int(DeviceCall.IOCTL)


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
        await serve_connections(listener, self._connect, "device connection", task_status=task_status)

    def _connect(self, sock: socket.socket) -> DeviceConnection:
        conn = DeviceConnection(self, sock)
        self.connections.add(conn)
        return conn

    def release(self, file: DeviceFile) -> None:
        """Close the open file: the kernel's release runs (purge, slot teardown)."""
        if file.closed:
            return
        file.closed = True
        if self.file is file:
            self.file = None
        self.kernel.dev_release(self.broker.now())
        self.broker.faults.on_device_release()


class DeviceConnection:
    """One client-core connection.

    The loop drains every packet that is ready with non-blocking calls on the
    plain socket and answers most of them on the spot; only calls that wait
    (OPEN during a release, POLL, REMOUNT_ALL) get a task.  A SEQPACKET send is
    all or nothing and replies are matched by seq, so replies need no lock and
    no ordering: one that finds the socket full is finished by a task.
    """

    #: Packets handled between two checkpoints, so a busy peer cannot starve others.
    BATCH = 64

    def __init__(self, server: DeviceServer, sock: socket.socket) -> None:
        self.server = server
        self.broker = server.broker
        self.kernel = server.kernel
        self.sock = sock
        self.file: DeviceFile | None = None
        self.closed = False
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
        finally:
            self.closed = True
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
        handled = 0
        while not self.closed:
            try:
                nbytes, ancdata, msg_flags, _ = self.sock.recvmsg_into([self.view], _ANCILLARY)
            except BlockingIOError:
                handled = 0
                await trio.lowlevel.wait_readable(self.sock)
                continue
            except OSError:
                return  # reset by the peer: the same as a close
            if nbytes == 0 and not ancdata and _peer_gone(self.sock):
                return  # peer closed
            if ancdata:
                _close_fds(ancdata)
                self._reply_bad(nbytes, "file descriptors are not accepted here")
            elif msg_flags & _TRUNCATED:
                self._reply_bad(nbytes, "packet too large")
            elif nbytes < DEVICE_REQUEST.size:
                self._reply_bad(nbytes, f"packet of {nbytes} bytes is shorter than its header")
            else:
                call, seq, a0, a1 = DEVICE_REQUEST.unpack_from(self.buffer)
                self._dispatch(call, seq, a0, a1, self.view[DEVICE_REQUEST.size : nbytes])
            handled += 1
            if handled >= self.BATCH:
                handled = 0
                await trio.lowlevel.checkpoint()

    def _dispatch(self, call: int, seq: int, a0: int, a1: int, payload: memoryview) -> None:
        now = self.broker.now()
        try:
            if call == _READ:
                self._need_file()
                if self.broker.faults.reads_paused:
                    raise OSError(errno.EAGAIN, "reads are paused (pvfs2ctl fault pause-reads)")
                frame = self.kernel.dev_read(a0, now)
                recorder = self.broker.recorder
                if recorder is not None:
                    recorder.read(frame, now)
                self.reply(call, seq, len(frame), frame)
            elif call == _WRITE:
                self._need_file()
                recorder = self.broker.recorder
                if recorder is None:
                    self.reply(call, seq, self.kernel.dev_write(payload, now))
                else:
                    self.reply(call, seq, recorder.write(self.kernel.dev_write, payload, now))
            elif call == _POLL:
                self._need_file()
                if a0 & POLLIN and self.broker.readable():
                    self.reply(call, seq, POLLIN)
                else:
                    self.nursery.start_soon(self._poll, seq, a0, a1)
            elif call == _IOCTL:
                self._need_file()
                self._ioctl(seq, a0 & 0xFFFFFFFF, bytes(payload))
            elif call == DeviceCall.OPEN:
                self._open(seq, a0)
            elif call == DeviceCall.ATTACH:
                self._attach(seq, a0)
            elif call == DeviceCall.CLOSE:
                self._need_file()
                file = self.file
                self.reply(call, seq, 0)
                for conn in list(file.connections):
                    conn.file = None
                file.connections.clear()
                self.server.release(file)
            else:
                self.reply(call, seq, -errno.EINVAL)
        except OSError as exc:
            self.reply(call, seq, -(exc.errno or errno.EINVAL))

    def _need_file(self) -> None:
        if self.file is None or self.file.closed:
            raise OSError(errno.EBADF, "the device is not open on this connection")

    def _open(self, seq: int, flags: int) -> None:
        if self.file is not None and not self.file.closed:
            # A second open by the same process is still a second opener.
            raise OSError(errno.EACCES, "already open")
        if self.kernel.dev_open(flags, self.broker.now()):
            self._opened(seq)
        else:
            # open blocks on the device mutex while a release runs (spec §1.2).
            self.nursery.start_soon(self._open_after_release, seq, flags)

    async def _open_after_release(self, seq: int, flags: int) -> None:
        await self.broker.wait_release_done()
        try:
            self._open(seq, flags)
        except OSError as exc:
            self.reply(DeviceCall.OPEN, seq, -(exc.errno or errno.EINVAL))

    def _opened(self, seq: int) -> None:
        file = DeviceFile()
        file.connections.add(self)
        self.file = self.server.file = file
        self.reply(DeviceCall.OPEN, seq, 0, FILE_TOKEN.pack(file.token))

    def _attach(self, seq: int, token: int) -> None:
        file = self.server.file
        if file is None or file.closed or (token & 0xFFFFFFFFFFFFFFFF) != file.token:
            raise OSError(errno.EBADF, "no open device file with that token")
        self._drop_file()
        file.connections.add(self)
        self.file = file
        self.reply(DeviceCall.ATTACH, seq, 0)

    async def _poll(self, seq: int, events: int, timeout_ms: int) -> None:
        timeout = math.inf if timeout_ms < 0 else timeout_ms / 1000
        if events & POLLIN:
            ready = await self.broker.wait_poll(timeout)
        else:
            # Nothing asked for can ever be ready (the device never reports
            # POLLOUT): poll(2) waits out its timeout.
            await trio.sleep(timeout)
            ready = False
        self.reply(DeviceCall.POLL, seq, POLLIN if ready else 0)

    def _ioctl(self, seq: int, cmd: int, arg: bytes) -> None:
        now = self.broker.now()
        if cmd == IoctlCommand.MAP:
            desc = self.kernel.dev_map(arg)
            try:
                buffers = self.broker.create_buffers(desc)
            except OSError as exc:
                raise OSError(errno.ENOMEM, f"cannot create the shared buffers: {exc}") from None
            self.kernel.install_bufmap(desc, now)
            if self.broker.recorder is not None:
                self.broker.recorder.mapped(buffers.io.count, buffers.io.slot_size, now)
            self.reply(DeviceCall.IOCTL, seq, 0, b"", fds=buffers.fds)
            buffers.handed_over()
        elif cmd == IoctlCommand.REMOUNT_ALL:
            self.nursery.start_soon(self._remount_all, seq)
        else:
            result, out = self.kernel.dev_ioctl(cmd, arg, now)
            self.reply(DeviceCall.IOCTL, seq, result, out)

    async def _remount_all(self, seq: int) -> None:
        done = trio.Event()
        status: list[int] = []

        def finished(result: int) -> None:
            status.append(result)
            done.set()

        self.kernel.remount_all(self.broker.now(), finished)
        await done.wait()
        self.reply(DeviceCall.IOCTL, seq, status[0])

    def _reply_bad(self, nbytes: int, why: str) -> None:
        log.debug("bad device packet: %s", why)
        call = seq = 0
        if nbytes >= 8:
            call, seq = int.from_bytes(self.buffer[0:4], "little"), int.from_bytes(self.buffer[4:8], "little")
        self.reply(call, seq, -errno.EINVAL)

    def reply(self, call: int, seq: int, result: int, payload: bytes = b"", fds: list[int] | None = None) -> None:
        """Send one reply packet now, or from a task once the socket has room."""
        if self.closed:
            return
        head = DEVICE_REPLY.pack(call, seq, result)
        packet = head + payload if payload else head
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            if ancillary:
                self.sock.sendmsg([packet], ancillary)
            else:
                self.sock.send(packet)
        except BlockingIOError:
            # The fds must survive until the task sends them.
            self.nursery.start_soon(self._send_later, packet, ancillary and [(a, b, bytes(c)) for a, b, c in ancillary])
        except OSError:
            self.closed = True  # the peer is gone; the loop notices

    async def _send_later(self, packet: bytes, ancillary: list) -> None:
        while not self.closed:
            await trio.lowlevel.wait_writable(self.sock)
            try:
                self.sock.sendmsg([packet], ancillary)
                return
            except BlockingIOError:
                continue
            except OSError:
                self.closed = True


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
