"""The client-core watchdog: run the daemon as a child and restart it when it dies.

Theory of operation
-------------------
The real ``pvfs2-client`` is a small parent that forks ``pvfs2-client-core``
and starts it again when it dies; the kernel side is built for that (release
purges, the waiters retry, the new daemon's REMOUNT_ALL clears *mount pending*,
spec §4.12).  This module is that parent, in two layers:

* :class:`Policy` is sans-IO: given how the child ended, the time, and the
  recent :class:`Run` history, :meth:`Policy.decide` answers :class:`Restart`
  (after a delay) or :class:`Stop` (with the watchdog's exit status).  It never
  reads the clock; callers pass ``now``.
* :class:`Watchdog` is the trio edge: it starts the child, waits for it, asks
  the policy, sleeps, starts it again; it forwards SIGTERM/SIGINT to the child.

Exit statuses of the daemon (:class:`DaemonExit`; ``clientcore.daemon`` exits with these)
------------------------------------------------------------------------------------------
=====  ==============  =========================================================
  0    CLEAN           stopped as asked (SIGTERM/SIGINT, or the broker released
                       it normally and it was asked to stop); not restarted
  1    STARTUP_ERROR   bad arguments, store refused, broker socket missing; not
                       restarted (it would fail the same way again)
 70    CRASHED         a failure after start-up (a bug); restarted
 75    DEVICE_LOST     the broker closed the device; restarted, to reconnect
 244   PROTOCOL_FATAL  bad magic or version from the device, as the real
                       pvfs2-client-core's status 244; never restarted
=====  ==============  =========================================================

Death by any signal (SIGKILL, SIGSEGV, SIGABRT, an unhandled SIGTERM...) and
every other exit status are unexpected: the child is restarted.

Exit statuses of the watchdog (:class:`WatchdogExit`)
-----------------------------------------------------
=====  =================  ======================================================
  0    CLEAN              the child exited 0, or the watchdog got SIGTERM/SIGINT
                          and stopped the child
  3    TOO_MANY_RESTARTS  more than ``max_restarts`` unexpected exits within
                          ``restart_window`` seconds
  4    PROTOCOL_FATAL     the child exited 244
  5    STARTUP_ERROR      the child exited 1, or could not be started at all
=====  =================  ======================================================

Back-off (defaults): the first restart after a failure waits ``initial_delay``
(0.1 s); each further failure in a row doubles the wait up to ``max_delay``
(10 s).  A child that stayed up at least ``reset_after`` (30 s) starts the
sequence over.  More than ``max_restarts`` (10) unexpected exits within
``restart_window`` (60 s) stop the watchdog with status 3.  On SIGTERM/SIGINT
the child gets SIGTERM, and SIGKILL if it is still running ``stop_timeout``
(10 s) later; a second signal kills it at once.
"""

from __future__ import annotations

import enum
import logging
import math
import shlex
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

import trio

log = logging.getLogger("clientcore.watchdog")


class DaemonExit(enum.IntEnum):
    """Exit statuses of ``python -m clientcore.daemon`` that the watchdog reads (see the module docstring)."""

    CLEAN = 0
    STARTUP_ERROR = 1
    #: A failure after start-up (a bug): restarted.
    CRASHED = 70
    #: The broker closed the device under the daemon: restarted, to reconnect.
    DEVICE_LOST = 75
    #: As the real pvfs2-client-core: bad magic or protocol version from the device.
    PROTOCOL_FATAL = 244


class WatchdogExit(enum.IntEnum):
    """Exit statuses of the watchdog itself (see the module docstring)."""

    CLEAN = 0
    TOO_MANY_RESTARTS = 3
    PROTOCOL_FATAL = 4
    STARTUP_ERROR = 5


#: Why the watchdog stops, by its exit status; the log line's wording.
_STOP_REASONS: Mapping[int, str] = MappingProxyType({
    WatchdogExit.CLEAN: "the child stopped cleanly",
    WatchdogExit.TOO_MANY_RESTARTS: "too many restarts",
    WatchdogExit.PROTOCOL_FATAL: "the child hit a protocol-fatal error",
    WatchdogExit.STARTUP_ERROR: "the child failed to start up",
})

#: Child exit status -> watchdog exit status, for the exits that are not restarted.
DEFAULT_STOP_STATUSES: Mapping[int, WatchdogExit] = MappingProxyType({
    DaemonExit.CLEAN: WatchdogExit.CLEAN,
    DaemonExit.STARTUP_ERROR: WatchdogExit.STARTUP_ERROR,
    DaemonExit.PROTOCOL_FATAL: WatchdogExit.PROTOCOL_FATAL,
})


def describe_exit(exit: int | signal.Signals) -> str:
    """How a child ended, for log lines: ``"exit status 244"`` or ``"signal SIGKILL"``.

    Args:
        exit: a :class:`signal.Signals` (killed by that signal), or a return code
            in the :mod:`subprocess` convention (``-N``: killed by signal N).
    """
    if isinstance(exit, signal.Signals):
        return f"signal {exit.name}"
    if exit < 0:
        try:
            return f"signal {signal.Signals(-exit).name}"
        except ValueError:
            return f"signal {-exit}"
    return f"exit status {exit}"


@dataclass(frozen=True)
class Run:
    """One run of the child: when it started and when it ended (monotonic seconds)."""

    started: float
    #: None for the run that is ending as :meth:`Policy.decide` is asked: it ends ``now``.
    ended: float | None = None

    def end(self, now: float) -> float:
        return now if self.ended is None else self.ended


@dataclass(frozen=True)
class Restart:
    """Start the child again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class Stop:
    """Do not restart; the watchdog exits with ``status`` (a :class:`WatchdogExit`)."""

    status: int
    reason: str


@dataclass(frozen=True)
class Policy:
    """When and how soon the watchdog restarts the child; all times in seconds."""

    #: Delay before the first restart after a failure; doubled for each further failure in a row.
    initial_delay: float = 0.1
    #: The doubling stops here.
    max_delay: float = 10.0
    #: A child that stayed up this long ends the failure streak: back-off starts again at initial_delay.
    reset_after: float = 30.0
    #: More unexpected exits than this within restart_window stop the watchdog (status 3).
    max_restarts: int = 10
    restart_window: float = 60.0
    #: After forwarding SIGTERM, how long to wait for the child before SIGKILL.
    stop_timeout: float = 10.0
    #: Child exit statuses that are never restarted, and the watchdog's exit status for each.
    #: Any other status, and every death by signal, is restarted.
    stop_statuses: Mapping[int, int] = field(default_factory=lambda: DEFAULT_STOP_STATUSES)

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay:
            raise ValueError(f"need 0 < initial_delay <= max_delay, got {self.initial_delay}, {self.max_delay}")
        if self.reset_after < 0 or self.restart_window <= 0 or self.stop_timeout < 0:
            raise ValueError("reset_after and stop_timeout must be >= 0, restart_window > 0")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")

    @property
    def _doublings(self) -> int:
        # Failures in a row after which the delay sits at max_delay.
        return math.ceil(math.log2(self.max_delay / self.initial_delay)) + 1

    @property
    def history_length(self) -> int:
        """How many recent runs :meth:`decide` looks at; older ones can be forgotten."""
        return max(self.max_restarts + 1, self._doublings)

    def decide(self, exit: int | signal.Signals, now: float, history: Sequence[Run]) -> Restart | Stop:
        """Decide what follows the child's exit.

        Args:
            exit: how the child ended: a :class:`signal.Signals` (killed by it),
                or a return code in the :mod:`subprocess` convention (``-N``:
                killed by signal N; otherwise the exit status).
            now: the time of the exit, on the clock the runs were stamped with.
            history: recent runs, oldest first; the last is the run that just
                ended (its ``ended`` may be None, meaning ``now``).  Every
                earlier run ended unexpectedly (else the watchdog had stopped).

        Returns:
            :class:`Stop` for an exit status in :attr:`stop_statuses`, or when
            this exit is the ``max_restarts + 1``-th unexpected one within
            :attr:`restart_window`; otherwise :class:`Restart` with the back-off
            delay.

        Raises:
            ValueError: ``history`` is empty (it must hold the run that ended).
        """
        if not history:
            raise ValueError("history must hold the run that just ended")
        what = describe_exit(exit)
        by_signal = isinstance(exit, signal.Signals) or exit < 0
        if not by_signal and exit in self.stop_statuses:
            status = self.stop_statuses[exit]
            return Stop(status, f"{what}: {_STOP_REASONS.get(status, 'not restarted')}")

        # Each unexpected exit asks for one restart: count them in the window, this one included.
        since = now - self.restart_window
        exits = sum(1 for run in history if run.end(now) > since)
        if exits > self.max_restarts:
            return Stop(WatchdogExit.TOO_MANY_RESTARTS,
                        f"{what}: {_STOP_REASONS[WatchdogExit.TOO_MANY_RESTARTS]}, {exits} unexpected exits "
                        f"within {self.restart_window:g}s (at most {self.max_restarts} restarts allowed)")

        # The failure streak: the runs that ended back to back, counted from the newest, up to and
        # including the last one that had stayed up reset_after (its exit was the streak's first).
        streak = 0
        for run in reversed(history):
            streak += 1
            if run.end(now) - run.started >= self.reset_after or streak >= self._doublings:
                break
        return Restart(min(self.initial_delay * 2 ** (streak - 1), self.max_delay))


class Watchdog:
    """Runs ``command`` as a child process and restarts it as :class:`Policy` says.

    ``await run()`` returns the watchdog's exit status (a :class:`WatchdogExit`).
    :meth:`stop` (or SIGTERM/SIGINT, with ``handle_signals=True``) stops the
    child gracefully and makes ``run()`` return 0.  Cancelling ``run()`` kills
    the child with SIGKILL and reaps it.  The child inherits the watchdog's
    standard streams and environment.
    """

    def __init__(self, command: Sequence[str], policy: Policy | None = None) -> None:
        self.command = list(command)
        self.policy = policy or Policy()
        #: The most recent child (None before the first start).
        self.process: trio.Process | None = None
        #: How many times the child was started.
        self.starts = 0
        self.history: deque[Run] = deque(maxlen=self.policy.history_length)
        self._stopping = False
        self._wait_scope: trio.CancelScope | None = None
        self._sleep_scope: trio.CancelScope | None = None

    async def run(self, *, handle_signals: bool = False, task_status=trio.TASK_STATUS_IGNORED) -> int:
        """Supervise the child until the policy says stop or :meth:`stop` is called.

        Args:
            handle_signals: catch SIGTERM and SIGINT (main thread only) and
                treat them as :meth:`stop`.

        Returns:
            The watchdog's exit status (:class:`WatchdogExit`).
        """
        async with trio.open_nursery() as nursery:
            if handle_signals:
                # Installed before the first child starts, so no signal can find the default action.
                await nursery.start(self._watch_signals)
            task_status.started(self)
            status = await self._supervise()
            nursery.cancel_scope.cancel()
        return status

    def stop(self) -> None:
        """Stop supervising: SIGTERM to the child, SIGKILL after ``policy.stop_timeout``.

        ``run()`` then returns 0 once the child is gone (at once if it is
        between runs).  A second call kills the child with SIGKILL at once.
        """
        process = self.process
        running = process is not None and process.returncode is None
        if self._stopping:
            if running:
                log.warning("pid %d: stopped again, SIGKILL", process.pid)
                process.kill()
            return
        self._stopping = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()
        if running:
            self._terminate(process)

    def _terminate(self, process: trio.Process) -> None:
        log.info("pid %d: forwarding SIGTERM, SIGKILL in %gs", process.pid, self.policy.stop_timeout)
        process.terminate()
        if self._wait_scope is not None:
            self._wait_scope.deadline = trio.current_time() + self.policy.stop_timeout

    async def _watch_signals(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("%s: stopping the child", signal.Signals(signum).name)
                self.stop()

    async def _supervise(self) -> int:
        while not self._stopping:
            try:
                process = await trio.lowlevel.open_process(self.command)
            except OSError as exc:
                log.error("cannot start %s: %s; exiting %d", shlex.join(self.command), exc,
                          WatchdogExit.STARTUP_ERROR)
                return WatchdogExit.STARTUP_ERROR
            self.process = process
            self.starts += 1
            started = trio.current_time()
            log.info("start %d: pid %d: %s", self.starts, process.pid, shlex.join(self.command))
            try:
                with trio.CancelScope() as self._wait_scope:
                    if self._stopping:  # stop() came while the child was being spawned
                        self._terminate(process)
                    await process.wait()
                self._wait_scope = None
                if process.returncode is None:  # the stop timeout ran out
                    log.warning("pid %d: still running %gs after SIGTERM, SIGKILL", process.pid,
                                self.policy.stop_timeout)
                    process.kill()
                    await process.wait()
            finally:
                self._wait_scope = None
                if process.returncode is None:  # run() was cancelled: never leave the child behind
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
            now = trio.current_time()
            self.history.append(Run(started, now))
            what = describe_exit(process.returncode)
            clean = self._stopping or process.returncode == DaemonExit.CLEAN
            log.log(logging.INFO if clean else logging.WARNING, "pid %d: %s after %.2fs",
                    process.pid, what, now - started)
            if self._stopping:
                break
            decision = self.policy.decide(process.returncode, now, self.history)
            if isinstance(decision, Stop):
                log.log(logging.INFO if decision.status == WatchdogExit.CLEAN else logging.ERROR,
                        "not restarting: %s; exiting %d", decision.reason, decision.status)
                return decision.status
            log.warning("restarting in %gs", decision.delay)
            with trio.CancelScope() as self._sleep_scope:
                await trio.sleep(decision.delay)
            self._sleep_scope = None
        log.info("stopped; exiting %d", WatchdogExit.CLEAN)
        return WatchdogExit.CLEAN


def supervise(command: Sequence[str], policy: Policy | None = None) -> int:
    """Run ``command`` under a :class:`Watchdog` handling SIGTERM/SIGINT, until it stops.

    Returns:
        The watchdog's exit status (:class:`WatchdogExit`), for ``sys.exit``.
    """
    return int(trio.run(partial(Watchdog(command, policy).run, handle_signals=True)))


def daemon_command(argv: Sequence[str]) -> list[str]:
    """The command line of the client-core daemon with its own arguments ``argv``."""
    return [sys.executable, "-m", "clientcore.daemon", *argv]


def _log_level(argv: Sequence[str]) -> str:
    # The watchdog logs at the daemon's --log-level; a bad value is the daemon's to refuse.
    level = "info"
    for i, arg in enumerate(argv):
        if arg == "--log-level" and i + 1 < len(argv):
            level = argv[i + 1]
        elif arg.startswith("--log-level="):
            level = arg.partition("=")[2]
    return level.upper() if level.lower() in ("debug", "info", "warning", "error") else "INFO"


def main(argv: Sequence[str], policy: Policy | None = None) -> int:
    """``clientcore --watchdog ARGS...``: run ``python -m clientcore.daemon ARGS...`` under the watchdog.

    Args:
        argv: the daemon's own arguments (without ``--watchdog``).
        policy: the restart policy (default :class:`Policy`).

    Returns:
        The watchdog's exit status (:class:`WatchdogExit`).  Logging is set up
        at the daemon's ``--log-level`` unless the caller already configured it.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=_log_level(argv), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return supervise(daemon_command(argv), policy)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
