"""A broker and a client-core as real processes, for the pvfs2ctl tests, and the shared result checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import trio

from pvfs2ctl.client import ControlClient

DEADLINE = 20.0


def control(rundir: Path, cmd: str, **fields) -> dict:
    """One control-channel request, from synchronous test code."""

    async def ask() -> dict:
        async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
            return await ctl.request(cmd, **fields)

    return trio.run(ask)


def stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` (continuing it first, in case a test left it stopped), killing it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_stack(base: Path, *, open_to_others: bool = False) -> Iterator[tuple[Path, subprocess.Popen, subprocess.Popen]]:
    """``pvfs2dev serve`` in base/run and ``clientcore`` on base/store, in service; both stopped afterwards.

    Yields (run directory, broker process, client-core process).  With
    ``open_to_others`` the run directory is made 0755 once the broker has
    created it (0700), so another uid can reach the sockets.
    """
    run = base / "run"
    if open_to_others:
        run.mkdir(mode=0o755, exist_ok=True)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "pvfs2dev.cli", "serve", "--rundir", str(run),
                                       "--log-level", "warning"], stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + DEADLINE
        # The control socket is bound last, so once it is there every socket is.
        while not (run / "pvfs2-ctl").exists():
            assert procs[0].poll() is None, "the broker exited"
            assert time.monotonic() < deadline, "the broker did not start"
            time.sleep(0.02)
        if open_to_others:
            os.chmod(run, 0o755)
        procs.append(subprocess.Popen([sys.executable, "-m", "clientcore.daemon", "--rundir", str(run),
                                       "--store", str(base / "store"), "--desc-count", "4", "--desc-size", "1MiB",
                                       "--log-level", "warning"], stdin=subprocess.DEVNULL))
        while True:
            assert procs[1].poll() is None, "the client-core exited"
            assert time.monotonic() < deadline, "the client-core did not come into service"
            try:
                if control(run, "status")["daemon_in_service"]:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield run, procs[0], procs[1]
    finally:
        for proc in reversed(procs):
            stop(proc)


def fails(result, name: str) -> str:
    """The failure is one line naming errno ``name``, exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pvfs2ctl: {name}: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]
