"""The client-core daemon: answers the broker's upcalls from a store (issue 4, shared/DESIGN.md).

Start-up follows the real client-core (spec §1.7): OPEN, the informational
ioctls, CLIENT_STRING, MAP (the two buffer fds are mapped), then the reader
loop on a second connection ATTACHed to the same open file, and REMOUNT_ALL
from a third while the loop runs (it blocks until the loop has answered the
FS_MOUNT upcalls it causes).

The reader loop keeps READs outstanding while ops keep coming and POLLs when
there are none; each op becomes one trio task (at most ``--max-inflight``):
metadata ops call the store inline, FILE_IO runs in a worker thread, moving
data between the shared buffer slot and the store with no intermediate copy,
in pieces so that a CANCEL can stop it between two of them.  A CANCEL is
answered only once its I/O no longer touches the slot (the kernel frees the
slot on that answer); the I/O's own answer is then never sent.

Exit statuses: 0 stopped by a signal; 1 start-up failed (see the log; not
restarted, it would fail again); 70 a failure after start-up; 75 the broker
closed the device (both restarted by the watchdog, the second to reconnect);
244 the device spoke a wrong magic or version (protocol-fatal, as the real
client-core's 244; never restarted).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import signal
import socket
import struct
import threading

import trio

import pvfs2proto as proto
from pvfs2proto import OpCode, ProtocolError
from pvfs2proto.channels import POLLIN, DeviceCall
from pvfs2proto.constants import MAX_DEV_REQ_UPSIZE, PVFS2DEV_USERSPACE_VERSION

from .device import SOCKET_BUFFER, Device, MappedBuffers, RawChannel, handshake
from .faults import ANSWER, ANSWER_NORMALLY, CORRUPT, CRASH, DELAY, Action, FaultPlan, corrupt_frame
from .ops import OpError, OpHandlers, Reply, status_of
from .store import Creds, Store

log = logging.getLogger("clientcore")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_CRASHED = 70  # EX_SOFTWARE: a failure after start-up; the watchdog restarts
EXIT_DEVICE_LOST = 75  # EX_TEMPFAIL: the broker closed the device; the watchdog restarts
EXIT_PROTOCOL = 244

#: Bytes moved per store call in a FILE_IO; a CANCEL waits at most this long.
IO_PIECE = 1 << 20
#: Most READs the loop keeps outstanding while ops keep coming.
MAX_READS = 8
#: Tag and op type in a read frame (after proto_ver and magic).
_TAG_TYPE = struct.Struct("<QI")
#: Ops answered in their own task: FILE_IO runs in a worker thread and can be
#: stopped by a CANCEL; a CANCEL waits for the I/O it names.  The store answers
#: every other op at once.
_WAITING_OPS = frozenset({OpCode.FILE_IO, OpCode.CANCEL})
#: How long an idle POLL waits before the loop reads anyway (a CANCEL comes
#: without waking pollers).
POLL_TIMEOUT_MS = 100


class ProtocolFatal(Exception):
    """The device broke the protocol (bad magic or version): exit 244."""


class _InFlight:
    """An op being answered: its task can be told to stop touching its slot."""

    __slots__ = ("tag", "cancelled", "done", "delaying")

    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.cancelled = threading.Event()
        self.done = trio.Event()
        #: While a --fault delay holds the answer back.
        self.delaying: trio.CancelScope | None = None


class Daemon:
    """One client-core: a store, the device connections, and the ops in flight."""

    def __init__(self, store: Store, rundir: str | os.PathLike, *, desc_count: int, desc_size: int,
                 max_inflight: int = 64, faults: FaultPlan | None = None) -> None:
        #: Set once the device is open and mapped: failures after it are not start-up errors.
        self.started = False
        #: Set when the broker closed the device under us.
        self.device_lost = False
        self.store = store
        self.path = os.path.join(rundir, "pvfs2-req")
        self.desc_count, self.desc_size = desc_count, desc_size
        self.max_inflight = max_inflight
        self.handlers = OpHandlers(store)
        self.buffers: MappedBuffers | None = None
        self.inflight: dict[int, _InFlight] = {}
        self.stopped = trio.Event()
        self.io_limiter = trio.CapacityLimiter(max_inflight)
        #: --fault: how this daemon misbehaves on purpose (empty: it doesn't).
        self.faults = faults or FaultPlan([])
        #: For each WRITE not yet answered, the damage done to it ("" for none); kept only with faults.
        self._write_faults: collections.deque[str] = collections.deque()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start up, serve until the broker closes the device, then return."""
        async with Device.connect(self.path) as device:
            token, self.buffers = await handshake(device, desc_count=self.desc_count, desc_size=self.desc_size)
            log.info("device open and mapped: %d slots of %d bytes", self.desc_count, self.desc_size)
            self.started = True
            try:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    await nursery.start(self._serve, token)
                    nursery.start_soon(self._remount, token)
                    task_status.started()
                    await self.stopped.wait()
                    nursery.cancel_scope.cancel()
            finally:
                self.buffers.close()

    # -- REMOUNT_ALL from its own connection -----------------------------------------------------

    async def _remount(self, token: int) -> None:
        async with Device.connect(self.path) as second:
            await second.attach(token)
            result, _, _ = await second.ioctl(proto.IoctlCommand.REMOUNT_ALL)
            log.info("remount done: %s", "ok" if result == 0 else os.strerror(-result))

    # -- the reader loop ------------------------------------------------------------------------------

    async def _serve(self, token: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.stopped = trio.Event()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.connect(self.path)
            sock.setblocking(False)
            self.channel = channel = RawChannel(sock)
            channel.send(DeviceCall.ATTACH, token if token < 2**63 else token - 2**64)
            _, result, _ = await channel.receive()
            if result < 0:
                raise OSError(-result, f"ATTACH: {os.strerror(-result)}")
            task_status.started()
            self.reads = 0  # READs sent, not yet answered
            self.active = 0  # ops being answered
            self.polling = False
            self._read_more(1)
            async with trio.open_nursery() as ops:
                while True:
                    call, result, payload = await channel.receive()
                    if call == DeviceCall.READ:
                        self.reads -= 1
                        if result > 0:
                            tag, op_type = _TAG_TYPE.unpack_from(payload, 8)
                            action = self.faults.on_upcall(op_type) if self.faults else ANSWER_NORMALLY
                            if action.what == ANSWER and op_type not in _WAITING_OPS:
                                # The store answers metadata ops synchronously: answer
                                # at once, so the downcall goes out before more READs
                                # and no task is spawned (the latency of one upcall).
                                self._answer_now(payload, tag)
                            elif action.what in (ANSWER, DELAY, CORRUPT):
                                self.active += 1
                                # Registered before any task runs, so a CANCEL read
                                # in the same batch always finds the I/O it names.
                                entry = self.inflight[tag] = _InFlight(tag)
                                ops.start_soon(self._answer, payload, entry, action)
                            else:
                                self._misbehave(action, tag, op_type)
                            # Ops keep coming: ramp the reads up.
                            self._read_more(2 if self.reads < MAX_READS - 1 else 1)
                        elif result != -errno.EAGAIN:
                            raise OSError(-result, f"READ: {os.strerror(-result)}")
                        elif self.reads == 0 and not self.polling and self._room():
                            # With a timeout, as the real client-core: the kernel
                            # queues a CANCEL without waking pollers (spec §1.5).
                            channel.send(DeviceCall.POLL, POLLIN, POLL_TIMEOUT_MS)
                            self.polling = True
                    elif call == DeviceCall.POLL:
                        self.polling = False
                        self._read_more(1)
                    elif call == DeviceCall.WRITE and self.faults and self._write_faults.popleft():
                        log.info("fault: the broker answered our damaged downcall with %s",
                                 os.strerror(-result) if result < 0 else f"{result} (accepted)")
                    elif call == DeviceCall.WRITE and result < 0:
                        if result == -errno.EPROTO:
                            raise ProtocolFatal("the device refused our downcall version or magic")
                        log.warning("the broker refused a downcall: %s", os.strerror(-result))
        except* (BrokenPipeError, ConnectionResetError):
            # except*: the reset may surface inside the ops nursery, grouped.
            log.warning("the broker closed the device")
            self.device_lost = True
        finally:
            sock.close()
            self.stopped.set()

    def _room(self) -> int:
        return self.max_inflight - self.active - self.reads

    def _read_more(self, wanted: int) -> None:
        """Send up to ``wanted`` READs, within --max-inflight and MAX_READS."""
        for _ in range(min(wanted, self._room(), MAX_READS - self.reads)):
            self.channel.send(DeviceCall.READ, MAX_DEV_REQ_UPSIZE)
            self.reads += 1

    # -- one op ------------------------------------------------------------------------------------------

    @staticmethod
    def _upcall_of(frame: bytes):
        try:
            return proto.decode_read_frame(frame, userspace_version=PVFS2DEV_USERSPACE_VERSION).upcall
        except ProtocolError as exc:
            raise ProtocolFatal(str(exc)) from exc

    def _send_downcall(self, tag: int, up, reply: Reply, damage: str = "") -> None:
        downcall = {"type": up.type, "status": reply.status}
        if reply.resp is not None and reply.status == 0:
            downcall["resp"] = reply.resp
        trailer = reply.trailer if reply.status == 0 else b""
        try:
            frame = proto.encode_write_frame(tag, downcall, trailer)
        except proto.EncodeError:
            # A bug of ours (an answer that does not fit its fields): the op gets
            # EIO rather than the daemon dying with every op in flight.
            log.exception("internal error: the answer to %s tag %d does not encode", proto.opname(up.type), tag)
            frame = proto.encode_write_frame(tag, {"type": up.type, "status": status_of(errno.EIO)})
        if self.faults:
            # WRITEs are answered in order: this says which answer is to a damaged one.
            self._write_faults.append(damage)
            if damage:
                log.info("fault: answering %s tag %d with a downcall damaged by %s", proto.opname(up.type), tag, damage)
                frame = corrupt_frame(frame, damage)
        self.channel.send(DeviceCall.WRITE, payload=frame)

    def _misbehave(self, action: Action, tag: int, op_type: int) -> None:
        """--fault crash-after and drop: die like a crashed daemon, or never answer."""
        name = proto.opname(op_type)
        if action.what == CRASH:
            log.warning("fault: crashing on upcall %d (%s tag %d)", self.faults.upcalls, name, tag)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)  # no close of the device: a crash
        log.info("fault: dropping %s tag %d (never answered)", name, tag)

    def _store_reply(self, up) -> Reply:
        """What the store says to any op but FILE_IO and CANCEL (READDIR fills its readdir slot)."""
        if up.type == OpCode.READDIR:
            return self.handlers.answer(up, lambda: self._readdir(up))
        return self.handlers.answer(up)

    def _answer_now(self, frame: bytes, tag: int) -> None:
        """A metadata op (or READDIR, whose slot the kernel holds until it is answered)."""
        up = self._upcall_of(frame)
        self._send_downcall(tag, up, self._store_reply(up))

    async def _answer(self, frame: bytes, entry: _InFlight, action: Action = ANSWER_NORMALLY) -> None:
        """FILE_IO (in a worker thread, stoppable), CANCEL (waits for the I/O it names), or a faulted op."""
        tag = entry.tag
        try:
            up = self._upcall_of(frame)
            if action.delay:
                log.info("fault: delaying %s tag %d by %g s", proto.opname(up.type), tag, action.delay)
                with trio.CancelScope() as entry.delaying:
                    await trio.sleep(action.delay)
                if entry.cancelled.is_set():
                    return
            if up.type == OpCode.CANCEL:
                reply = await self._cancel(up.req.cancel.op_tag)
            elif up.type == OpCode.FILE_IO:
                reply = await self._file_io(up, entry)
            else:
                reply = self._store_reply(up)
            if reply is None or entry.cancelled.is_set():
                return  # cancelled: the kernel drops a late answer anyway
            self._send_downcall(tag, up, reply, action.corrupt if action.what == CORRUPT else "")
        finally:
            del self.inflight[tag]
            self.active -= 1
            entry.done.set()
            # If the loop stopped reading for lack of room, this makes room.
            if self.reads == 0 and not self.polling:
                self._read_more(1)

    def _readdir(self, up) -> Reply:
        index = up.req.readdir.buf_index
        if self.buffers is None or not 0 <= index < self.buffers.readdir_count:
            raise OpError(errno.EINVAL, f"readdir buf_index {index} outside the readdir buffer")
        slot = self.buffers.readdir_slot(index)
        try:
            return self.handlers.readdir(up, Creds(up.uid, up.gid), slot)
        finally:
            slot.release()

    async def _cancel(self, op_tag: int) -> Reply:
        """Stop the I/O ``op_tag`` names; answer once it no longer touches its slot."""
        target = self.inflight.get(op_tag)
        if target is not None:
            target.cancelled.set()
            if target.delaying is not None:
                target.delaying.cancel()  # a --fault delay ends at once
            await target.done.wait()
        return Reply()

    async def _file_io(self, up, entry: _InFlight) -> Reply | None:
        def move() -> Reply | None:
            def body() -> Reply:
                handle, index, count, offset, io_type = self.handlers.file_io_target(up)
                if not 0 <= index < self.desc_count or count > self.desc_size:
                    raise OpError(errno.EINVAL, f"buf_index {index} / count {count} outside the I/O buffer")
                creds = Creds(up.uid, up.gid)
                slot = self.buffers.io_slot(index)
                done = 0
                try:
                    while done < count:
                        if entry.cancelled.is_set():
                            return Reply()
                        piece = slot[done : min(count, done + IO_PIECE)]
                        wanted = len(piece)
                        if io_type == proto.IoType.READ:
                            n = self.store.read(creds, handle, offset + done, piece)
                        else:
                            n = self.store.write(creds, handle, offset + done, piece)
                        piece.release()
                        done += n
                        if n < wanted:
                            break  # end of file
                finally:
                    slot.release()
                return Reply({"io": {"amt_complete": done}})

            return self.handlers.answer(up, body)

        return await trio.to_thread.run_sync(move, limiter=self.io_limiter)


async def serve(store: Store, rundir: str, *, desc_count: int, desc_size: int, max_inflight: int,
                faults: FaultPlan | None = None) -> int:
    """Run one daemon until the device goes away or a signal comes; return the exit status."""
    daemon = Daemon(store, rundir, desc_count=desc_count, desc_size=desc_size, max_inflight=max_inflight,
                    faults=faults)
    fatal: list[BaseException] = []
    failed: list[BaseException] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
            await daemon.run()
            nursery.cancel_scope.cancel()
    except* ProtocolFatal as group:
        fatal.extend(group.exceptions)
    except* Exception as group:
        failed.extend(group.exceptions)
    if fatal:
        log.error("protocol-fatal: %s", fatal[0])
        return EXIT_PROTOCOL
    if failed:
        if not daemon.started:
            log.error("start-up failed: %s", failed[0])
            return EXIT_STARTUP
        log.error("failed after start-up", exc_info=failed[0])
        return EXIT_CRASHED
    return EXIT_DEVICE_LOST if daemon.device_lost else EXIT_OK


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def parse_size(text: str) -> int:
    """``4MiB``, ``64KiB``, ``1048576``: a byte count."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(lowered[: -len(unit)]) * factor
    return int(lowered)


def main(argv: list[str] | None = None) -> None:
    """``clientcore``: the client-core daemon (``--watchdog`` runs it under the watchdog)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--watchdog" in args:
        from . import watchdog

        args.remove("--watchdog")
        sys.exit(watchdog.main(args))
    from .cli import command

    command.main(args=args, prog_name="clientcore")


if __name__ == "__main__":
    main()
