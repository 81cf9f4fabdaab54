"""The emulated kernel and the client-core under test, as processes in a temporary directory.

Layout of a work directory (one per test)::

    base/run/            the broker's run directory: pvfs2-req, pvfs2-vfs, pvfs2-ctl
    base/store/          an empty directory for the client-core's state ({store})
    base/broker.log      the broker's stderr
    base/clientcore.log  the client-core's stdout and stderr, every start appended

:class:`Broker` runs ``pvfs2dev serve --rundir base/run``; it is ready when its
control socket answers (the control socket is bound last).  :class:`ClientCore`
runs any command, with ``{rundir}`` and ``{store}`` replaced in each argument
(and ``$PVFS2DEV_RUNDIR``, ``$PVFS2DEV_STORE`` set), and is in service when the
broker says so: the device is open, the shared buffers are mapped (MAP) and
no mount waits for its REMOUNT_ALL.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from pvfs2dev.rundir import CONTROL_SOCKET, DEVICE_SOCKET, VFS_SOCKET

from .channels import control_request
from .processes import Child, wait_until

#: How long the broker gets to bind its sockets, and a client-core to come into service.
START_TIMEOUT = 30.0
#: The longest AF_UNIX path (sun_path is 108 bytes with its NUL).
SUN_PATH_MAX = 107
#: What ``{rundir}`` and ``{store}`` stand for in a client-core command.
PLACEHOLDERS = ("{rundir}", "{store}")


def _script(name: str, module: str) -> list[str]:
    """The console script installed beside this Python, else ``python -m module``."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def default_clientcore_command() -> list[str]:
    """Our own client-core on a fresh embedded store: ``clientcore --rundir {rundir} --store {store}``."""
    return [*_script("clientcore", "clientcore.daemon"), "--rundir", "{rundir}", "--store", "{store}"]


def parse_command(command: str | Sequence[str]) -> list[str]:
    """A client-core command as argv: a string is split as a shell would (no shell runs it)."""
    argv = shlex.split(command) if isinstance(command, str) else [os.fspath(arg) for arg in command]
    if not argv:
        raise ValueError("the client-core command is empty")
    return argv


def expand(argv: Sequence[str], rundir: Path, store: Path) -> list[str]:
    """``argv`` with ``{rundir}`` and ``{store}`` replaced (only those: other braces stay as they are)."""
    return [arg.replace("{rundir}", os.fspath(rundir)).replace("{store}", os.fspath(store)) for arg in argv]


def check_socket_paths(rundir: Path) -> None:
    """Fail early, and say why, when the sockets' paths would not fit in ``sun_path``.

    Raises:
        ValueError: ENAMETOOLONG's case, with the remedy (a shorter $TMPDIR).
    """
    longest = os.fspath(rundir / max(DEVICE_SOCKET, VFS_SOCKET, CONTROL_SOCKET, key=len))
    if len(os.fsencode(longest)) > SUN_PATH_MAX:
        raise ValueError(f"{longest} is {len(os.fsencode(longest))} bytes, over the {SUN_PATH_MAX} an AF_UNIX "
                         "socket path may have; set TMPDIR to a shorter directory")


class Broker:
    """``pvfs2dev serve`` in ``rundir``: the emulated kernel module."""

    def __init__(self, rundir: Path, args: Sequence[str] = (), *, log: Path,
                 timeout: float = START_TIMEOUT) -> None:
        check_socket_paths(rundir)
        self.rundir = rundir
        self.args = list(args)
        self.timeout = timeout
        argv = [sys.executable, "-m", "pvfs2dev.cli", "serve", "--rundir", os.fspath(rundir), *self.args]
        try:
            self.child = Child("pvfs2dev serve", argv, log, env=_env(rundir, None))
        except OSError as exc:
            raise AssertionError(f"cannot run {argv}: {exc}") from None
        try:
            wait_until(self._answers, f"the broker's sockets in {rundir}", timeout, watch=[self.child])
        except BaseException:
            self.child.stop()
            raise

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def device_path(self) -> Path:
        return self.rundir / DEVICE_SOCKET

    @property
    def vfs_path(self) -> Path:
        return self.rundir / VFS_SOCKET

    @property
    def control_path(self) -> Path:
        return self.rundir / CONTROL_SOCKET

    def _answers(self) -> bool:
        if not self.control_path.is_socket():
            return False
        try:
            return bool(control_request(self.control_path, "status", timeout=self.timeout).get("ok"))
        except OSError:
            return False  # bound but not yet listening

    def control(self, cmd: str, **fields) -> dict:
        """One control-channel request; the broker's answer (``ok`` false carries ``errno``, ``error``).

        Raises:
            AssertionError: the broker is gone (its log is in the message).
        """
        try:
            return control_request(self.control_path, cmd, timeout=self.timeout, **fields)
        except OSError as exc:
            raise AssertionError(f"control {cmd!r}: {exc}; broker {self.child.state()}, its log ends:\n"
                                 f"{self.child.tail()}") from None

    def status(self) -> dict:
        """The control channel's ``status`` (open_count, daemon_in_service, mounts, buffers, ops_by_state...)."""
        answer = self.control("status")
        assert answer.get("ok"), f"status refused: {answer}"
        return answer

    def wait_status(self, predicate: Callable[[dict], bool], what: str, timeout: float | None = None,
                    *, watch: Sequence[Child] = ()) -> dict:
        """Ask ``status`` until ``predicate(status)`` holds; that status.

        Raises:
            AssertionError: not within ``timeout`` seconds (the last status is in the message),
                or a process in ``watch`` (and the broker) exited meanwhile.
        """
        last: list[dict] = []

        def ready():
            last[:] = [self.status()]
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(ready, what, self.timeout if timeout is None else timeout,
                              watch=[self.child, *watch])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast status: {last[0] if last else None}") from None

    def stop(self) -> list[str]:
        """SIGTERM, wait, and check it shut down cleanly; the problems found (empty if none).

        The broker's own sockets are removed even if it had to be killed.
        """
        problems = []
        if not self.child.alive() and not self.child.expected_exit:
            problems.append(f"the broker died during the test ({self.child.state()})")
        status, killed = self.child.stop()
        if killed:
            problems.append("the broker did not exit within 10 s of SIGTERM and was killed")
        elif status != 0 and not problems:
            problems.append(f"the broker exited {status} after SIGTERM")
        for path in (self.device_path, self.vfs_path, self.control_path):
            try:
                if path.is_socket():
                    path.unlink()
                    if not killed and not problems:
                        problems.append(f"the broker left {path.name} behind")
            except OSError:
                pass
        if problems:
            problems[-1] += f"; its log ends:\n{self.child.tail()}"
        return problems


class ClientCore:
    """The client-core under test: one command, started, killed and restarted as a test needs.

    ``argv`` may hold ``{rundir}`` and ``{store}``.
    """

    def __init__(self, broker: Broker, argv: Sequence[str], store: Path, *, log: Path,
                 timeout: float = START_TIMEOUT) -> None:
        self.broker = broker
        self.template = list(argv)
        self.store = store
        self.log = log
        self.timeout = timeout
        self.argv = expand(self.template, broker.rundir, store)
        self.child: Child | None = None
        #: Every process started, the current one last.
        self.history: list[Child] = []

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def start(self, *, wait: bool = True) -> "ClientCore":
        """Start the command; with ``wait``, until the broker has it in service.

        Raises:
            AssertionError: it exited or did not come into service within the
                start timeout (the message has its log and the broker's status).
        """
        assert not self.alive(), f"the client-core is already running (pid {self.pid})"
        try:
            self.child = Child("client-core", self.argv, self.log, env=_env(self.broker.rundir, self.store))
        except OSError as exc:  # ENOENT, EACCES: the command is not there or not executable
            raise AssertionError(f"cannot run {self.argv}: {exc}") from None
        self.history.append(self.child)
        if wait:
            self.wait_in_service()
        return self

    def wait_in_service(self) -> dict:
        """Wait until the device is open, both slot maps are installed (MAP) and no mount is pending."""
        try:
            return self.broker.wait_status(in_service, "the client-core in service", self.timeout,
                                           watch=[self.child] if self.child is not None else [])
        except AssertionError as exc:
            hints = [why_not_in_service(self.broker.status())] if self.broker.child.alive() else []
            if not any(p in arg for arg in self.template for p in PLACEHOLDERS):
                hints.append("its command has no {rundir}: it has only $PVFS2DEV_RUNDIR to find the broker")
            raise AssertionError("; ".join([str(exc), *hints])) from None

    def expect_exit(self) -> None:
        """Say that the client-core may exit from now on (a test that makes it exit)."""
        if self.child is not None:
            self.child.expected_exit = True

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the client-core's process group, wait for it to exit and for the
        broker's release of the device (the purge: open_count back to 0); its exit status.

        Raises:
            AssertionError: it did not exit, or the broker did not release the device.
        """
        assert self.child is not None, "no client-core was started"
        try:
            status = self.child.kill(sig)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None
        self.broker.wait_status(lambda s: s["open_count"] == 0, "the device released after the client-core exited")
        return status

    def restart(self, sig: int = signal.SIGKILL) -> "ClientCore":
        """Kill it (if running) with ``sig`` and start it again, in service (REMOUNT_ALL done)."""
        if self.alive():
            self.kill(sig)
        return self.start()

    def check(self) -> None:
        """Raise if the client-core exited without the test asking for it.

        Raises:
            AssertionError: with its exit status and the end of its log.
        """
        if self.child is not None and not self.child.alive() and not self.child.expected_exit:
            raise AssertionError(f"the client-core {self.child.state()} during the test; its log ends:\n"
                                 f"{self.child.tail()}")

    def stop(self) -> list[str]:
        """SIGTERM the client-core (and its group); the problems found (empty if none)."""
        problems = []
        try:
            self.check()
        except AssertionError as exc:
            problems.append(str(exc))
        for child in self.history:
            _, killed = child.stop()
            if killed:
                problems.append(f"the client-core (pid {child.pid}) did not exit within 10 s of SIGTERM "
                                f"and was killed; its log ends:\n{child.tail()}")
        return problems


def in_service(status: dict) -> bool:
    """The broker's view of a client-core ready for any op: device open, MAP done, no mount pending."""
    maps_installed = all(m["count"] > 0 for m in status["buffers"])
    return status["daemon_in_service"] and maps_installed and not any(m["pending"] for m in status["mounts"])


def why_not_in_service(status: dict) -> str:
    """What the broker still waits for before a client-core is in service, in the kernel's words."""
    if not status["daemon_in_service"]:
        return "the device is not open (no OPEN on pvfs2-req)"
    if not all(m["count"] > 0 for m in status["buffers"]):
        return "the shared buffers are not mapped (no MAP ioctl)"
    pending = [m["devname"] for m in status["mounts"] if m["pending"]]
    if pending:
        return f"mounts {pending} wait for REMOUNT_ALL"
    return "in service now"


def _env(rundir: Path, store: Path | None) -> dict[str, str]:
    env = dict(os.environ, PVFS2DEV_RUNDIR=os.fspath(rundir))
    if store is not None:
        env["PVFS2DEV_STORE"] = os.fspath(store)
    return env


__all__ = ["Broker", "ClientCore", "default_clientcore_command", "expand", "in_service", "parse_command"]
