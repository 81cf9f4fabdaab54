"""The running broker: the kernel core plus what it needs from trio.

The :class:`~pvfs2dev.kernel.Kernel` never sleeps; this object does it for
it.  One timer task sleeps until ``kernel.next_deadline()`` and calls
``kernel.expire``; the kernel reports every deadline it sets (``on_deadline``)
and only an earlier one wakes the timer.  Waiting for an op or a slot is a ``trio.Event`` set by
the core's wake hook.  The shared buffers created at MAP live here, and every
state transition is logged at debug level and fanned out to trace subscribers.
"""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path

import trio

from pvfs2proto.constants import ORANGEFS_READDIR_DEFAULT_DESC_SIZE

from .buffers import BufferPair
from .faults import KernelFaults
from .kernel import Kernel
from .recorder import Recorder, RecordStream
from .stats import TraceEvent

log = logging.getLogger("pvfs2dev")


async def guarded(run, what: str, *args) -> None:
    """Run one connection's task; if it fails, log it and lose only that connection.

    Peers going away are handled inside each loop; what reaches here is a bug,
    and a bug serving one peer must not take the whole broker (and every
    other caller) down with it.
    """
    try:
        await run(*args)
    except Exception:
        log.exception("%s failed; dropping it", what)


async def serve_connections(listener, connect, what: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept forever; hand each connection over as a plain non-blocking socket.

    ``connect(sock)`` returns an object whose ``run()`` serves it; each runs
    :func:`guarded`.  The servers drive these sockets with non-blocking calls
    and ``trio.lowlevel.wait_readable`` rather than trio's socket methods,
    which cost two scheduler trips per call even when data is ready.
    """
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            sock, _ = await listener.accept()
            raw = socket.socket(fileno=sock.detach())
            raw.setblocking(False)
            nursery.start_soon(guarded, connect(raw).run, what)


class Broker:
    """Kernel + clock + buffers + subscribers, shared by the three channels."""

    def __init__(self, kernel: Kernel, rundir: Path, *, readdir_slot_size: int = ORANGEFS_READDIR_DEFAULT_DESC_SIZE):
        self.kernel = kernel
        self.rundir = rundir
        self.readdir_slot_size = readdir_slot_size
        self.buffers: BufferPair | None = None
        self._timer_poked = trio.Event()
        self._poll_event = trio.Event()
        self._release_done = trio.Event()
        self.trace_subscribers: set[trio.MemorySendChannel] = set()
        #: The device edge's recording hook: None unless someone records (pvfs2dev/recorder.py).
        self.recorder: Recorder | None = None
        kernel.on_poll = self.wake_pollers
        kernel.on_release_done = self._released
        kernel.on_log = self._log
        kernel.on_deadline = self._deadline_set
        self._timer_target = math.inf
        #: Kernel-side faults arranged through the control channel.
        self.faults = KernelFaults(self)
        self.update_tracing()

    @staticmethod
    def now() -> float:
        return trio.current_time()

    # -- time ---------------------------------------------------------------------------------

    def _deadline_set(self, deadline: float) -> None:
        # Only a deadline earlier than the one the timer sleeps towards matters.
        if deadline < self._timer_target:
            self._timer_target = deadline
            self._timer_poked.set()

    async def run_timer(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Call ``kernel.expire`` whenever the next deadline passes, forever."""
        task_status.started()
        while True:
            deadline = self.kernel.next_deadline()
            self._timer_target = math.inf if deadline is None else deadline
            with trio.move_on_at(self._timer_target):
                await self._timer_poked.wait()
            self._timer_poked = trio.Event()
            self.kernel.expire(self.now())

    # -- waiting on the core --------------------------------------------------------------------

    async def wait_poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (inf = forever) for POLLIN; True if it came."""
        if self.readable():
            return True
        with trio.move_on_after(timeout):
            while not self.readable():
                await self._poll_event.wait()
            return True
        return False

    def readable(self) -> bool:
        """POLLIN: an op is eligible to be read, and reads are not paused (``pvfs2ctl fault pause-reads``)."""
        return self.kernel.dev_poll() and not self.faults.reads_paused

    def wake_pollers(self) -> None:
        self._poll_event.set()
        self._poll_event = trio.Event()

    async def wait_release_done(self) -> None:
        await self._release_done.wait()

    def _released(self) -> None:
        if self.buffers is not None:
            self.buffers.close()
            self.buffers = None
        self._release_done.set()
        self._release_done = trio.Event()

    # -- the shared buffers ----------------------------------------------------------------------

    def create_buffers(self, desc) -> BufferPair:
        """Make the two buffer files for a MAP with ``desc``'s geometry."""
        self.buffers = BufferPair(
            self.rundir, desc.size, desc.count, self.readdir_slot_size, self.kernel.readdir_slot_count
        )
        return self.buffers

    # -- trace and log ------------------------------------------------------------------------------

    def update_tracing(self) -> None:
        """Have the kernel build trace events only while someone reads them."""
        wanted = bool(self.trace_subscribers) or log.isEnabledFor(logging.DEBUG)
        self.kernel.on_trace = self._trace if wanted else None

    def subscribe(self, channel: trio.MemorySendChannel) -> None:
        self.trace_subscribers.add(channel)
        self.update_tracing()

    def unsubscribe(self, channel: trio.MemorySendChannel) -> None:
        self.trace_subscribers.discard(channel)
        self.update_tracing()

    def _trace(self, event: TraceEvent) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tag %d %s: %s (%s -> %s)", event.tag, event.op, event.event, event.before, event.after)
        for channel in list(self.trace_subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                pass  # a slow reader loses events rather than stalling the kernel
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.trace_subscribers.discard(channel)

    # -- byte-level recording -------------------------------------------------------------------------

    def subscribe_records(self, stream: RecordStream) -> None:
        """Have the device edge record every upcall and downcall for ``stream`` (until unsubscribed)."""
        if self.recorder is None:
            self.recorder = Recorder(self._io_slot)
        self.recorder.streams.add(stream)

    def unsubscribe_records(self, stream: RecordStream) -> None:
        if self.recorder is not None:
            self.recorder.streams.discard(stream)
            if not self.recorder.streams:
                self.recorder = None

    def _io_slot(self, index: int) -> memoryview | None:
        buffers = self.buffers
        if buffers is None or not 0 <= index < buffers.io.count:
            return None
        return buffers.io.slot(index)

    @staticmethod
    def _log(level: str, message: str) -> None:
        getattr(log, level)(message)
