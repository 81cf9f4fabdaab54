"""The plugin from a client-core author's side: a plain pytest session, in a directory of its own.

Each test writes a test file somewhere else and runs pytest on it in a
subprocess (pytester), with no async plugin (``-p no:trio``) and warnings as
errors.  The plugin comes from its pytest11 entry point, as it would for
anyone who installed pvfs2dev.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

pytest_plugins = ["pytester"]

#: A plain session: no trio plugin, every warning an error.
PLAIN = ("-p", "no:trio", "-p", "no:cacheprovider", "-W", "error")

AUTHOR_TESTS = '''
import errno
import json
import os

from pvfs2dev.testing import assert_errno, assert_ok


def test_round_trip(pvfs2_mounted):
    k = pvfs2_mounted
    handle = assert_ok(k.create("hello")).handle
    assert_ok(k.write(handle, b"hello, world"))
    assert assert_ok(k.read(handle, 100)).data == b"hello, world"
    assert b"hello" in k.listdir()
    k.assert_quiescent()


def test_wrong_errno(pvfs2_mounted):
    k = pvfs2_mounted
    with open({state!r}, "w") as f:
        json.dump({{"pids": [k.broker.pid, k.clientcore.pid], "workdir": str(k.rundir.parent)}}, f)
    assert_ok(k.create("taken"))
    assert_errno(k.create("taken"), errno.ENOENT)
'''


def readme_example() -> str:
    """The example test in the README's "Testing your own client-core"."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Testing your own client-core", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def alive_in(workdir: Path) -> list[int]:
    """Processes whose command line names ``workdir`` (a broker or client-core left running)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if os.fsencode(workdir) in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_plain_session_passes_fails_readably_and_leaves_nothing_running(pytester, tmp_path):
    """Non-trio test files pass (the README's example among them); a wrong errno fails naming the op and
    both errnos, with the logs; afterwards no process is left and, with --pvfs2-keep, the failed test's
    directory stays, without sockets."""
    state = tmp_path / "state.json"
    pytester.makepyfile(test_author=AUTHOR_TESTS.format(state=str(state)), test_readme=readme_example())
    result = pytester.runpytest_subprocess(*PLAIN, "--pvfs2-keep")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*OP_CREATE: expected ENOENT (No such file or directory), got EEXIST (File exists)*",
        "*pvfs2 clientcore.log (end)*",
        "*pvfs2 work directory*",
    ])
    assert "Traceback" not in result.stdout.str()
    recorded = json.loads(state.read_text())
    workdir = Path(recorded["workdir"])
    try:
        assert alive_in(workdir) == []
        for pid in recorded["pids"]:
            assert not os.path.exists(f"/proc/{pid}") or pid not in alive_in(workdir)
        assert (workdir / "clientcore.log").exists() and (workdir / "broker.log").exists()
        assert [p for p in workdir.rglob("*") if p.is_socket()] == []
        assert f"kept: {workdir}" in result.stdout.str()
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


SWAPPED_TESTS = '''
import os
import signal

import pytest

from pvfs2dev.testing import assert_ok


def test_the_command_line_clientcore(pvfs2_mounted, pvfs2_rundir):
    k = pvfs2_mounted
    assert "clientcore.minimal" in k.clientcore.argv
    assert str(pvfs2_rundir) in k.clientcore.argv
    assert k.fs_id == 7
    assert_ok(k.getattr())
    assert k.control("params", name="op_timeout_secs")["value"].strip() == "3"  # as sysfs shows it


def test_clientcore_dies_behind_our_back(pvfs2_kernel):
    os.kill(pvfs2_kernel.clientcore.pid, signal.SIGKILL)
    pvfs2_kernel.broker.wait_status(lambda s: s["open_count"] == 0, "the device released")


@pytest.mark.parametrize("pvfs2_clientcore_command", ["sh -c 'echo no device for me >&2; exit 3'"])
def test_clientcore_that_exits_at_once(pvfs2_clientcore):
    pass
'''


def test_command_line_swaps_the_clientcore_and_an_unexpected_death_is_reported(pytester):
    """--pvfs2-clientcore runs another client-core ({rundir} expanded), --pvfs2-broker-arg reaches
    pvfs2dev serve, a client-core that dies without the test asking fails it at teardown, and one that
    exits at start-up fails the setup with its exit status and its output."""
    pytester.makepyfile(test_swapped=SWAPPED_TESTS)
    result = pytester.runpytest_subprocess(
        *PLAIN, f"--pvfs2-clientcore={sys.executable} -m clientcore.minimal --rundir {{rundir}}",
        "--pvfs2-broker-arg=--op-timeout=3")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_clientcore_dies_behind_our_back*",
        "*the client-core killed by SIGKILL during the test; its log ends:*",
    ])
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_clientcore_that_exits_at_once*",
        "*client-core exited 3 while waiting for the client-core in service*",
        "no device for me",
    ])
