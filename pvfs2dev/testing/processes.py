"""The broker and the client-core as child processes: start, watch, signal, stop, and their logs.

Each child runs in a process group of its own (``start_new_session``), so a
client-core that forks (a watchdog, a shell wrapper, a C daemon that
daemonises) is stopped whole: signals go to the group, and the group is
SIGKILLed at the end whatever the leader did.  Output goes to a log file, not
a pipe, so a chatty child never blocks on a full pipe and the log survives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

#: How long a child gets to exit after SIGTERM before it is SIGKILLed.
STOP_GRACE = 10.0
#: Bytes of a log shown in a failure message.
TAIL_BYTES = 4000
#: How often a wait re-checks the state it waits for.
POLL_INTERVAL = 0.02


class Child:
    """One child process and its log.

    ``expected_exit`` is set by whoever ends it on purpose (a kill, a stop),
    so that an exit nobody asked for can be told apart at teardown.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.expected_exit = False
        self._swept = False
        with open(log, "ab") as out:
            out.write(f"--- {name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid} {self.state()}>"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self) -> str:
        """"running", or how it ended ("exited 1", "killed by SIGKILL")."""
        code = self.proc.poll()
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited {code}"

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (ignored once the group is gone)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            # ESRCH: every member has exited.  EPERM: the group id now names
            # someone else's group (the members exited and the id was reused).
            pass

    def kill(self, sig: int = signal.SIGKILL, *, timeout: float = STOP_GRACE) -> int:
        """Send ``sig`` to the group and wait for the child to exit; its exit status.

        Raises:
            TimeoutError: it is still running ``timeout`` seconds later.
        """
        self.expected_exit = True
        if sig != signal.SIGKILL:
            self.signal_group(signal.SIGCONT)  # a stopped child cannot act on SIGTERM
        self.signal_group(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} (pid {self.pid}) still running {timeout} s after "
                               f"{signal.Signals(sig).name}") from None
        self._sweep()
        return status

    def _sweep(self) -> None:
        # Whatever the leader left behind in its group (a forked daemon) goes
        # too, once: later the group id may be free for someone else's use.
        if not self._swept:
            self._swept = True
            self.signal_group(signal.SIGKILL)

    def stop(self) -> tuple[int, bool]:
        """SIGTERM, then SIGKILL if it lingers; every member of its group ends.

        Returns:
            (exit status, whether it had to be SIGKILLed).
        """
        killed = False
        if self.alive():
            try:
                self.kill(signal.SIGTERM)
            except TimeoutError:
                killed = True
                self.proc.kill()
                self.proc.wait()
        self.expected_exit = True
        self._sweep()
        return self.proc.returncode, killed

    def tail(self, size: int = TAIL_BYTES) -> str:
        """The end of the child's log (stdout and stderr together)."""
        return tail(self.log, size)


def tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The last ``size`` bytes of a log, as text."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"


def wait_until(ready, what: str, timeout: float, *, watch: Sequence[Child] = ()):
    """Poll ``ready()`` until it returns something true, which is returned.

    Raises:
        AssertionError: after ``timeout`` seconds, or at once when a child in
            ``watch`` exits meanwhile; the message names ``what`` and shows the
            child's log.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        for child in watch:
            if not child.alive():
                raise AssertionError(f"{child.name} {child.state()} while waiting for {what}; its log ends:\n"
                                     f"{child.tail()}")
        if time.monotonic() > deadline:
            logs = "".join(f"\n{child.name} ({child.state()}) log ends:\n{child.tail()}" for child in watch)
            raise AssertionError(f"still waiting for {what} after {timeout} s{logs}")
        time.sleep(POLL_INTERVAL)


__all__ = ["Child", "tail", "wait_until"]
