"""A fake ``pvfs2-req``: a bare SOCK_SEQPACKET listener that plays the kernel for one client-core.

It speaks the device channel framing (``pvfs2proto.channels``) and answers
each call as the real module would on a quiet system, recording every call
with its connection and a global sequence number so a test can check the
client-core's start-up order (spec §1.7):

* OPEN → a file token; ATTACH → 0;
* ioctls → GET_MAGIC ``magic`` (0x20030529 unless told otherwise),
  GET_MAX_UPSIZE 8544, GET_MAX_DOWNSIZE 8240, UPSTREAM 1, DEBUG /
  CLIENT_MASK / CLIENT_STRING 0, MAP → 0 with two memfds (I/O and readdir
  buffers) by SCM_RIGHTS, REMOUNT_ALL → 0;
* READ → the next frame queued with :meth:`FakeDevice.queue`, else EAGAIN;
* POLL → POLLIN at once if a frame is queued; otherwise held, answered
  POLLIN when a frame is queued if ``answer_polls``, and 0 when its timeout
  passes if ``poll_timeouts`` (else never);
* WRITE → the byte count; the downcall is kept by its tag for
  :meth:`FakeDevice.downcall`.

So a test can feed the daemon crafted upcall frames that the real broker
would never produce (a FILE_IO with any ``buf_index``, bad magics) and read
back exactly what the daemon wrote.
"""

from __future__ import annotations

import array
import dataclasses
import errno
import itertools
import mmap
import os
import socket
import struct
from collections import deque
from pathlib import Path

import trio

from pvfs2proto.channels import DEVICE_REPLY, DEVICE_REQUEST, FILE_TOKEN, POLLIN, DeviceCall
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_KERNEL_PROTO_VERSION,
)
from pvfs2proto.ioctl import IoctlCommand, ORANGEFS_dev_map_desc

READDIR_BUFFER_SIZE = 5 * 128 * 1024
TOKEN = 0x1234_5678_9ABC_DEF0
_INT = struct.Struct("<i")


@dataclasses.dataclass
class Recorded:
    """One device call as the fake received it."""

    order: int  # global arrival order
    conn: int  # connection number, 0 for the first accepted
    call: DeviceCall
    a0: int
    a1: int
    payload: bytes

    @property
    def name(self) -> str:
        """``OPEN``, ``READ`` … or, for ioctls, the command (``GET_MAGIC`` …)."""
        if self.call == DeviceCall.IOCTL:
            try:
                return IoctlCommand(self.a0 & 0xFFFFFFFF).name
            except ValueError:
                return f"IOCTL({self.a0:#x})"
        return self.call.name


def read_frame(tag: int, upcall: bytes, *, magic: int = ORANGEFS_DEVREQ_MAGIC,
               version: int = ORANGEFS_KERNEL_PROTO_VERSION) -> bytes:
    """The 8544 bytes a device read returns: version, magic, tag, then the upcall as given."""
    frame = struct.pack("<iIQ", version, magic & 0xFFFFFFFF, tag) + upcall
    assert len(frame) == MAX_DEV_REQ_UPSIZE, len(frame)
    return frame


class FakeDevice:
    """The fake device at ``rundir/pvfs2-req``; run :meth:`serve` with ``nursery.start``."""

    def __init__(self, rundir: Path, *, magic: int = ORANGEFS_DEVREQ_MAGIC, answer_polls: bool = True,
                 poll_timeouts: bool = True) -> None:
        self.path = Path(rundir) / "pvfs2-req"
        self.magic = magic
        self.answer_polls = answer_polls
        self.poll_timeouts = poll_timeouts
        self.calls: list[Recorded] = []
        self.frames: deque[bytes] = deque()
        self.downcalls: dict[int, bytes] = {}
        self.frames_read = 0  # queued frames the client-core has read so far
        #: While set, READs are held unanswered until :meth:`release_reads` (so several replies can be
        #: sent back to back, as a busy kernel's would be).
        self.hold_reads = False
        #: Called with (tag, frame) as each downcall arrives, before it is acknowledged.
        self.on_write = None
        self.held_reads: list[tuple[socket.socket, int]] = []
        self.map_desc = None
        self.io: mmap.mmap | None = None  # the fake's own view of the mapped buffers
        self.readdir: mmap.mmap | None = None
        self._order = itertools.count()
        self._conns = itertools.count()
        self._polls: list[tuple[socket.socket, int]] = []
        self._changed = trio.Event()
        self._fds: list[int] = []

    # -- what tests use --------------------------------------------------------------------------

    def queue(self, frame: bytes) -> None:
        """Make ``frame`` readable; wakes a held POLL if ``answer_polls``."""
        self.frames.append(frame)
        if self.answer_polls:
            polls, self._polls = self._polls, []
            for sock, seq in polls:
                self._send(sock, DeviceCall.POLL, seq, POLLIN)

    async def downcall(self, tag: int, timeout: float = 5.0) -> bytes:
        """The write the client-core made for ``tag`` (waits for it)."""
        with trio.fail_after(timeout):
            while tag not in self.downcalls:
                await self._wait_change()
        return self.downcalls[tag]

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds after some call."""
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._wait_change()

    def release_reads(self, count: int | None = None) -> None:
        """Answer ``count`` held READs (all by default) at once: queued frames first, then EAGAIN."""
        count = len(self.held_reads) if count is None else count
        released, self.held_reads = self.held_reads[:count], self.held_reads[count:]
        for sock, seq in released:
            if self.frames:
                frame = self.frames.popleft()
                self.frames_read += 1
                self._send(sock, DeviceCall.READ, seq, len(frame), frame)
            else:
                self._send(sock, DeviceCall.READ, seq, -errno.EAGAIN)

    def names(self, conn: int | None = None) -> list[str]:
        return [c.name for c in self.calls if conn is None or c.conn == conn]

    # -- serving ---------------------------------------------------------------------------------------

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            listener.bind(os.fspath(self.path))
            listener.listen(16)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                while True:
                    await trio.lowlevel.wait_readable(listener)
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    sock.setblocking(False)
                    nursery.start_soon(self._connection, sock, next(self._conns))
        finally:
            listener.close()
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self._unmap()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _connection(self, sock: socket.socket, conn: int) -> None:
        with sock:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
            while True:
                try:
                    data = sock.recv(DEVICE_REQUEST.size + MAX_DEV_REQ_DOWNSIZE + (1 << 20))
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError:
                    return
                if not data:
                    return
                call, seq, a0, a1 = DEVICE_REQUEST.unpack_from(data)
                payload = data[DEVICE_REQUEST.size :]
                self.calls.append(Recorded(next(self._order), conn, DeviceCall(call), a0, a1, payload))
                self._answer(sock, DeviceCall(call), seq, a0, a1, payload)
                self._note()

    async def _poll_timeout(self, sock: socket.socket, seq: int, seconds: float) -> None:
        await trio.sleep(seconds)
        if (sock, seq) in self._polls:
            self._polls.remove((sock, seq))
            self._send(sock, DeviceCall.POLL, seq, 0)

    def _answer(self, sock, call: DeviceCall, seq: int, a0: int, a1: int, payload: bytes) -> None:
        if call == DeviceCall.OPEN:
            self._send(sock, call, seq, 0, FILE_TOKEN.pack(TOKEN))
        elif call in (DeviceCall.ATTACH, DeviceCall.CLOSE):
            self._send(sock, call, seq, 0)
        elif call == DeviceCall.READ:
            if self.hold_reads:
                self.held_reads.append((sock, seq))
            elif self.frames:
                frame = self.frames.popleft()
                self.frames_read += 1
                self._send(sock, call, seq, len(frame), frame)
            else:
                self._send(sock, call, seq, -errno.EAGAIN)
        elif call == DeviceCall.POLL:
            if self.frames:
                self._send(sock, call, seq, POLLIN)
            else:
                self._polls.append((sock, seq))
                if self.poll_timeouts and a1 >= 0:
                    self._nursery.start_soon(self._poll_timeout, sock, seq, a1 / 1000)
        elif call == DeviceCall.WRITE:
            (tag,) = struct.unpack_from("<Q", payload, 8)
            self.downcalls[tag] = payload
            if self.on_write is not None:
                self.on_write(tag, payload)
            self._send(sock, call, seq, len(payload))
        elif call == DeviceCall.IOCTL:
            self._ioctl(sock, seq, a0 & 0xFFFFFFFF, payload)
        else:
            self._send(sock, call, seq, -errno.EINVAL)

    def _ioctl(self, sock, seq: int, cmd: int, arg: bytes) -> None:
        out = {
            IoctlCommand.GET_MAGIC: _INT.pack(self.magic - 2**32 if self.magic >= 2**31 else self.magic),
            IoctlCommand.GET_MAX_UPSIZE: _INT.pack(MAX_DEV_REQ_UPSIZE),
            IoctlCommand.GET_MAX_DOWNSIZE: _INT.pack(MAX_DEV_REQ_DOWNSIZE),
            IoctlCommand.UPSTREAM: _INT.pack(1),
        }
        if cmd in out:
            self._send(sock, DeviceCall.IOCTL, seq, 0, out[cmd])
        elif cmd == IoctlCommand.MAP:
            desc = self.map_desc = ORANGEFS_dev_map_desc.unpack(arg)
            io_fd = os.memfd_create("fake-io-buffer", os.MFD_CLOEXEC)
            rd_fd = os.memfd_create("fake-readdir-buffer", os.MFD_CLOEXEC)
            self._fds += [io_fd, rd_fd]
            os.ftruncate(io_fd, desc.total_size)
            os.ftruncate(rd_fd, READDIR_BUFFER_SIZE)
            self._unmap()
            self.io = mmap.mmap(io_fd, desc.total_size)
            self.readdir = mmap.mmap(rd_fd, READDIR_BUFFER_SIZE)
            self._send(sock, DeviceCall.IOCTL, seq, 0, fds=[io_fd, rd_fd])
        else:
            # DEBUG, CLIENT_MASK, CLIENT_STRING, REMOUNT_ALL (nothing mounted): 0.
            self._send(sock, DeviceCall.IOCTL, seq, 0)

    def _unmap(self) -> None:
        for buffer in (self.io, self.readdir):
            if buffer is not None:
                buffer.close()
        self.io = self.readdir = None

    def _send(self, sock: socket.socket, call: int, seq: int, result: int, payload: bytes = b"",
              fds: list[int] | None = None) -> None:
        # Replies are small and the peer's buffer is 4 MiB: a non-blocking send goes through at once.
        packet = DEVICE_REPLY.pack(call, seq, result) + payload
        try:
            if fds:
                sock.sendmsg([packet], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                sock.send(packet)
        except OSError:
            pass  # the client-core is gone
