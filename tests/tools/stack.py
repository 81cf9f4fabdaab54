"""A broker and a client-core as real processes, for the pvfs2ctl tests, and the shared result checks."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

import trio

from pvfs2ctl.client import ControlClient
from pvfs2dev.testing.stack import Broker, ClientCore, default_clientcore_command

DEADLINE = 20.0


def control(rundir: Path, cmd: str, **fields) -> dict:
    """One control-channel request, from synchronous test code."""

    async def ask() -> dict:
        async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
            return await ctl.request(cmd, **fields)

    return trio.run(ask)


#: Our client-core's geometry in these stacks: small slots, so a test's memory stays small.
CLIENTCORE_ARGS = ("--desc-count", "4", "--desc-size", "1MiB", "--log-level", "warning")


@contextlib.contextmanager
def running_stack(base: Path, *, open_to_others: bool = False,
                  clientcore_args: Sequence[str] = CLIENTCORE_ARGS) -> Iterator[tuple[Path, subprocess.Popen,
                                                                                      subprocess.Popen]]:
    """``pvfs2dev serve`` in base/run and ``clientcore`` on base/store, in service; both stopped afterwards.

    The processes are the plugin's (:mod:`pvfs2dev.testing.stack`), so their
    logs are base/broker.log and base/clientcore.log, and leaving the block
    fails if either died on its own, did not stop on SIGTERM or left a socket.
    Yields (run directory, broker process, client-core process).  With
    ``open_to_others`` the run directory is made 0755 once the broker has
    created it (0700), so another uid can reach the sockets.
    """
    run = base / "run"
    base.mkdir(parents=True, exist_ok=True)
    if open_to_others:
        run.mkdir(mode=0o755, exist_ok=True)
    broker = Broker(run, ["--log-level", "warning"], log=base / "broker.log", timeout=DEADLINE)
    core = None
    problems: list[str] = []
    try:
        if open_to_others:
            os.chmod(run, 0o755)
        argv = [*default_clientcore_command(), *clientcore_args]
        core = ClientCore(broker, argv, base / "store", log=base / "clientcore.log", timeout=DEADLINE).start()
        yield run, broker.child.proc, core.child.proc
    finally:
        if core is not None:
            problems += core.stop()
        problems += broker.stop()
    assert not problems, "\n".join(problems)


def fails(result, name: str) -> str:
    """The failure is one line naming errno ``name``, exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pvfs2ctl: {name}: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]
