"""What the FUSE tests share: the skip marker, the running stack, and small program runners.

:class:`Stack` runs ``pvfs2dev serve --rundir D --mount M`` and
``clientcore --rundir D --store S`` (optionally under ``--watchdog``) as
processes; :meth:`Stack.stop` always ends them and fails if the mount is left
behind in /proc/mounts.  The fixtures built on it are in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _why_not() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: this machine cannot mount FUSE filesystems"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return f"pyfuse3 cannot be imported ({exc}); ./dev installs fuse3, libfuse3-dev and pyfuse3"
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not usable by this user"
    return None


#: Every FUSE test module sets ``pytestmark = needs_fuse``.
needs_fuse = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")

BIN = Path(sys.executable).parent
DEADLINE = 20.0
MiB = 1024 * 1024


def _command(name: str, module: str) -> list[str]:
    path = BIN / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def mounted(mountpoint: Path) -> bool:
    """Whether ``mountpoint`` is in /proc/mounts."""
    target = os.path.realpath(mountpoint)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def run(*args: str, cwd: Path | None = None, input: bytes | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> str:
    """Run a program; its stdout, or a failure showing its stderr."""
    done = subprocess.run(args, cwd=cwd, input=input, capture_output=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{args} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode(errors="replace")


def sh(script: str, cwd: Path, timeout: float = 60) -> str:
    return run("sh", "-ec", script, cwd=cwd, timeout=timeout)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc/PID/task/*/children), [] once it is gone."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return out


def poll_until(ready, what: str, timeout: float = DEADLINE, interval: float = 0.05):
    """Poll ``ready()`` until it returns something true (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(interval)
    return value


class Stack:
    """The broker with its mount and a client-core, as processes.

    With ``watchdog=True`` the client-core runs as ``clientcore --watchdog``:
    ``self.clientcore`` is the watchdog, and :meth:`daemon_pid` the daemon it
    runs (and restarts when it dies).
    """

    def __init__(self, base: Path, *, mount_options: tuple[str, ...] = (), watchdog: bool = False,
                 mount: bool = True, clientcore: bool = True, serve_args: tuple[str, ...] = ()) -> None:
        self.base = base
        self.rundir = base / "run"
        self.store = base / "store"
        self.mnt = base / "mnt"
        self.watchdog = watchdog
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logs = {name: open(base / f"{name}.log", "wb") for name in ("serve", "clientcore")}
        options = [arg for opt in mount_options for arg in ("-o", opt)]
        mount_args = ["--mount", str(self.mnt), *options] if mount else []
        self.serve = subprocess.Popen(
            [*_command("pvfs2dev", "pvfs2dev.cli"), "serve", "--rundir", str(self.rundir), *mount_args, *serve_args],
            stdin=subprocess.DEVNULL, stdout=self.logs["serve"], stderr=subprocess.STDOUT)
        self.clientcore = None
        #: Every daemon pid seen under the watchdog (for cleanup if the watchdog itself must be killed).
        self.daemons: set[int] = set()
        try:
            self._wait(lambda: (self.rundir / "pvfs2-req").is_socket(), "the broker's sockets")
            if clientcore:
                self.start_clientcore()
            if mount:
                self._wait(lambda: mounted(self.mnt), "the mount")
        except BaseException:
            self.stop()
            raise

    def start_clientcore(self) -> None:
        self.clientcore = subprocess.Popen(
            [*_command("clientcore", "clientcore.cli"), *(["--watchdog"] if self.watchdog else []),
             "--rundir", str(self.rundir), "--store", str(self.store)],
            stdin=subprocess.DEVNULL, stdout=self.logs["clientcore"], stderr=subprocess.STDOUT)

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not ready():
            if self.serve.poll() is not None:
                raise AssertionError(f"pvfs2dev serve exited {self.serve.returncode}:\n{self.log('serve')}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {DEADLINE} s:\n{self.log('serve')}")
            time.sleep(0.05)

    def daemon_pid(self) -> int | None:
        """The client-core daemon the watchdog runs now (None between runs or without a watchdog)."""
        if not self.watchdog or self.clientcore is None or self.clientcore.poll() is not None:
            return None
        pids = children(self.clientcore.pid)
        self.daemons.update(pids)
        return pids[0] if len(pids) == 1 else None

    def _kill_orphan(self, pid: int) -> None:
        """SIGKILL ``pid`` if it is still one of this stack's daemons (its command line names our rundir)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return
        if os.fsencode(self.rundir) in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self, name: str) -> str:
        if not self.logs[name].closed:
            self.logs[name].flush()
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM the broker (it unmounts), then the client-core; kill whatever is left."""
        if self.watchdog:
            self.daemon_pid()  # remember the daemon running now
        for process in (self.serve, self.clientcore):
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                if process is self.clientcore:
                    self.daemon_pid()
                process.kill()
                process.wait(timeout=DEADLINE)
        for pid in self.daemons:  # a watchdog killed above leaves its daemon behind: never leave it running
            self._kill_orphan(pid)
        for f in self.logs.values():
            f.close()
        if mounted(self.mnt):  # never leave a stale mount behind, even when the test fails
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
            raise AssertionError(f"{self.mnt} was still mounted after the broker stopped")
