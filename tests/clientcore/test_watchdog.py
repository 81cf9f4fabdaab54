"""The client-core watchdog: the restart policy with explicit times, then real child processes.

Process tests run small throwaway children (``sys.executable`` scripts written
to ``tmp_path``); each child appends its start time to ``tmp_path/starts``, so
the test can count starts and measure the gaps between them.  Every one is
bounded by ``trio.fail_after``, and the watchdog kills its child when the
test's cancel scope ends it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from clientcore.watchdog import (
    DaemonExit,
    Policy,
    Restart,
    Run,
    Stop,
    Watchdog,
    WatchdogExit,
    daemon_command,
    describe_exit,
)

# ---------------------------------------------------------------------------------------------------------------
# Policy.decide, with explicit times


def instant_deaths(policy: Policy, count: int, start: float = 0.0) -> tuple[list[Run], list[Restart | Stop]]:
    """``count`` runs that each die at once, restarted after the delay the policy gives."""
    history: list[Run] = []
    decisions: list[Restart | Stop] = []
    now = start
    for _ in range(count):
        history.append(Run(now))
        decision = policy.decide(-signal.SIGKILL, now, history)
        decisions.append(decision)
        history[-1] = Run(now, now)
        if isinstance(decision, Stop):
            break
        now += decision.delay
    return history, decisions


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap():
    """Failures in a row wait 0.1, 0.2, 0.4 ... seconds, never more than 10."""
    policy = Policy(max_restarts=100)
    _, decisions = instant_deaths(policy, 10)
    assert [d.delay for d in decisions] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10, 10])


def test_backoff_resets_after_a_long_lived_child():
    """A child that stayed up over reset_after seconds is restarted after initial_delay, and the doubling starts over."""
    policy = Policy(max_restarts=100)
    history, decisions = instant_deaths(policy, 6)
    assert decisions[-1] == Restart(3.2)
    now = history[-1].ended + 3.2
    history.append(Run(now))
    assert policy.decide(-signal.SIGSEGV, now + 31.0, history) == Restart(0.1)
    history[-1] = Run(now, now + 31.0)
    history.append(Run(now + 31.1))
    assert policy.decide(-signal.SIGSEGV, now + 31.1, history) == Restart(0.2)


def test_a_child_just_short_of_reset_after_keeps_the_streak():
    """A child that died 29.9 s after start is still in the failure streak: the delay keeps doubling."""
    policy = Policy(max_restarts=100)
    history, decisions = instant_deaths(policy, 3)
    now = history[-1].ended + decisions[-1].delay
    history.append(Run(now))
    assert policy.decide(-signal.SIGKILL, now + 29.9, history) == Restart(0.8)


def test_restart_limit_stops_with_status_3_at_the_eleventh_exit_in_a_minute():
    """Ten restarts within 60 s are allowed; the eleventh unexpected exit stops the watchdog with status 3."""
    policy = Policy(initial_delay=0.1, max_delay=0.1)
    history, decisions = instant_deaths(policy, 20)
    assert len(decisions) == 11
    assert all(isinstance(d, Restart) for d in decisions[:10])
    assert decisions[-1].status == WatchdogExit.TOO_MANY_RESTARTS == 3
    assert "too many restarts" in decisions[-1].reason and "11 unexpected exits" in decisions[-1].reason


def test_the_default_backoff_alone_reaches_the_limit_after_about_43_seconds():
    """A child that always dies at once is given up at its eleventh exit, 42.7 s of back-off after the first."""
    history, decisions = instant_deaths(Policy(), 20)
    assert isinstance(decisions[-1], Stop) and len(decisions) == 11
    assert history[-1].ended == pytest.approx(42.7)


def test_exits_older_than_the_window_do_not_count():
    """Exits more than restart_window seconds ago no longer count against the limit."""
    policy = Policy(max_restarts=2, restart_window=60.0)
    history = [Run(0.0, 1.0), Run(1.1, 2.0), Run(70.0)]
    assert isinstance(policy.decide(-signal.SIGKILL, 70.0, history), Restart)
    history = [Run(0.0, 11.0), Run(11.1, 12.0), Run(20.0)]
    assert policy.decide(-signal.SIGKILL, 70.0, history).status == WatchdogExit.TOO_MANY_RESTARTS


@pytest.mark.parametrize(("exit", "status", "words"), [
    (DaemonExit.CLEAN, WatchdogExit.CLEAN, "stopped cleanly"),
    (DaemonExit.STARTUP_ERROR, WatchdogExit.STARTUP_ERROR, "start up"),
    (DaemonExit.PROTOCOL_FATAL, WatchdogExit.PROTOCOL_FATAL, "protocol-fatal"),
])
def test_no_restart_after_0_1_or_244(exit, status, words):
    """Exit 0 stops with 0, exit 1 (start-up error) with 5, exit 244 (protocol-fatal) with 4."""
    decision = Policy().decide(int(exit), 5.0, [Run(0.0)])
    assert decision == Stop(status, decision.reason)
    assert words in decision.reason and f"exit status {int(exit)}" in decision.reason


def test_protocol_fatal_is_not_restarted_even_after_a_long_life():
    """244 stops the watchdog whatever the history: a long-lived child, no earlier failures."""
    assert Policy().decide(244, 3600.0, [Run(0.0)]).status == 4


@pytest.mark.parametrize("exit", [
    signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM,
    -signal.SIGKILL, -signal.SIGSEGV, -signal.SIGBUS,
    2, 3, 4, 5, 9, 137, 139, 243, 245, 255,
])
def test_restart_after_a_signal_or_any_other_status(exit):
    """Death by a signal (as a Signals or a negative return code) and every other exit status are restarted."""
    assert Policy().decide(exit, 1.0, [Run(0.0)]) == Restart(0.1)


def test_a_signal_numbered_like_a_stop_status_is_still_restarted():
    """Killed by signal 1 (SIGHUP) is not exit status 1: it is restarted."""
    assert Policy().decide(-signal.SIGHUP, 1.0, [Run(0.0)]) == Restart(0.1)
    assert Policy().decide(signal.SIGHUP, 1.0, [Run(0.0)]) == Restart(0.1)


def test_stop_statuses_are_part_of_the_policy():
    """A policy can add statuses that stop the watchdog, and drop the default ones."""
    policy = Policy(stop_statuses={7: WatchdogExit.STARTUP_ERROR})
    assert policy.decide(7, 1.0, [Run(0.0)]).status == 5
    assert policy.decide(1, 1.0, [Run(0.0)]) == Restart(0.1)


def test_forgetting_old_runs_changes_no_decision():
    """Keeping only the last history_length runs gives the decisions a full history gives."""
    policy = Policy(max_restarts=100)
    history, _ = instant_deaths(policy, 30)
    now = history[-1].ended + 10
    history.append(Run(now))
    short = history[-policy.history_length:]
    assert policy.decide(-9, now + 1, short) == policy.decide(-9, now + 1, history) == Restart(10)


def test_decide_needs_the_run_that_ended():
    """An empty history is a caller's mistake."""
    with pytest.raises(ValueError):
        Policy().decide(-9, 0.0, [])


@pytest.mark.parametrize("kwargs", [
    {"initial_delay": 0}, {"initial_delay": 2, "max_delay": 1}, {"max_restarts": -1}, {"restart_window": 0},
    {"reset_after": -1}, {"stop_timeout": -1},
])
def test_policy_refuses_nonsense_numbers(kwargs):
    """Numbers that cannot make a back-off are refused when the policy is made."""
    with pytest.raises(ValueError):
        Policy(**kwargs)


@pytest.mark.parametrize(("exit", "text"), [
    (0, "exit status 0"), (244, "exit status 244"), (-9, "signal SIGKILL"), (signal.SIGSEGV, "signal SIGSEGV"),
    (-200, "signal 200"),
])
def test_describe_exit(exit, text):
    """Log lines name the exit status, or the signal by name."""
    assert describe_exit(exit) == text


def test_exit_status_values_are_the_documented_ones():
    """The daemon's and the watchdog's exit statuses have the documented numbers."""
    assert [int(s) for s in DaemonExit] == [0, 1, 70, 75, 244]
    assert {s.name: int(s) for s in WatchdogExit} == {
        "CLEAN": 0, "TOO_MANY_RESTARTS": 3, "PROTOCOL_FATAL": 4, "STARTUP_ERROR": 5}


@pytest.mark.parametrize("status", [DaemonExit.CRASHED, DaemonExit.DEVICE_LOST])
def test_a_crash_after_start_up_and_a_lost_device_are_restarted(status):
    """Exit 70 (failure after start-up) and 75 (broker closed the device) are restarted, not final."""
    assert isinstance(Policy().decide(int(status), 100.0, [Run(0.0, 100.0)]), Restart)


def test_main_runs_the_daemon_module_with_its_arguments():
    """`clientcore --watchdog ARGS` runs `python -m clientcore.daemon ARGS` with this interpreter."""
    assert daemon_command(["--store", "/x", "--log-level", "debug"]) == [
        sys.executable, "-m", "clientcore.daemon", "--store", "/x", "--log-level", "debug"]


# ---------------------------------------------------------------------------------------------------------------
# Real child processes

#: Small numbers so the process tests take a fraction of a second.
FAST = Policy(initial_delay=0.01, max_delay=0.04, reset_after=5.0, max_restarts=5, stop_timeout=2.0)
LIMIT = 20  # seconds: bound on every process test

PRELUDE = """\
import os, signal, sys, time
from pathlib import Path
here = Path(sys.argv[1])
with open(here / "starts", "a") as f:
    f.write(f"{time.monotonic()}\\n")
start = len((here / "starts").read_text().splitlines())
"""

# Stays up until SIGTERM, which it records in tmp_path/got; "ready" holds its pid once the handler is in.
STAY_UP = """
def on_signal(signum, frame):
    (here / "got").write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_signal)
(here / "ready.tmp").write_text(str(os.getpid()))
os.replace(here / "ready.tmp", here / "ready")
while True:
    signal.pause()
"""


def child(tmp_path: Path, body: str) -> list[str]:
    """A throwaway child command: the start-counting prelude, then ``body``."""
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return [sys.executable, str(script), str(tmp_path)]


def starts(tmp_path: Path) -> list[float]:
    path = tmp_path / "starts"
    return [float(line) for line in path.read_text().split()] if path.exists() else []


async def wait_for_file(path: Path) -> str:
    while not path.exists():
        await trio.sleep(0.01)
    return path.read_text()


def kill_if_ours(pid: int, tmp_path: Path) -> None:
    """SIGKILL a grandchild left behind by a failed test, only if its command line is one of ours."""
    try:
        if str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass


@pytest.fixture
def watchdog_log(caplog):
    caplog.set_level(logging.INFO, logger="clientcore.watchdog")
    return caplog


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "clientcore.watchdog"]


async def test_restarts_a_child_killed_by_sigkill_with_growing_delays(tmp_path, watchdog_log):
    """A child SIGKILLed twice is restarted after 0.2 s then 0.4 s, and the third start stays up until stopped."""
    policy = Policy(initial_delay=0.2, max_delay=1.0, reset_after=5.0, stop_timeout=2.0)
    watchdog = Watchdog(child(tmp_path, "if start <= 2:\n    os.kill(os.getpid(), signal.SIGKILL)\n" + STAY_UP),
                        policy)
    status = None

    async def supervise():
        nonlocal status
        status = await watchdog.run()

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise)
            await wait_for_file(tmp_path / "ready")
            watchdog.stop()
    assert status == WatchdogExit.CLEAN
    assert (tmp_path / "got").read_text() == "SIGTERM"
    times = starts(tmp_path)
    assert len(times) == watchdog.starts == 3
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4
    lines = messages(watchdog_log)
    assert [m for m in lines if m.startswith("restarting")] == ["restarting in 0.2s", "restarting in 0.4s"]
    assert sum("signal SIGKILL" in m for m in lines) == 2
    assert sum(m.startswith("start ") for m in lines) == 3


@pytest.mark.parametrize("body", [
    "os.kill(os.getpid(), signal.SIGSEGV)",
    "sys.exit(7)",
])
async def test_restarts_after_sigsegv_or_an_unexpected_status(tmp_path, body):
    """A child that segfaults or exits 7 on its first start is started again; its clean exit then ends the watchdog."""
    watchdog = Watchdog(child(tmp_path, f"if start == 1:\n    {body}\nsys.exit(0)\n"), FAST)
    with trio.fail_after(LIMIT):
        assert await watchdog.run() == WatchdogExit.CLEAN
    assert len(starts(tmp_path)) == 2


@pytest.mark.parametrize(("code", "status"), [(244, 4), (0, 0), (1, 5)])
async def test_no_restart_after_244_0_or_1(tmp_path, watchdog_log, code, status):
    """A child exiting 244, 0 or 1 is started once, and the watchdog exits 4, 0 or 5."""
    watchdog = Watchdog(child(tmp_path, f"sys.exit({code})"), FAST)
    with trio.fail_after(LIMIT):
        assert await watchdog.run() == status
    assert len(starts(tmp_path)) == 1
    assert messages(watchdog_log)[-1].startswith(f"not restarting: exit status {code}: ")
    assert messages(watchdog_log)[-1].endswith(f"exiting {status}")


async def test_too_many_restarts_exits_3(tmp_path, watchdog_log):
    """A child that always dies is restarted max_restarts times, then the watchdog exits 3 with a clear line."""
    watchdog = Watchdog(child(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)"), FAST)
    with trio.fail_after(LIMIT):
        assert await watchdog.run() == WatchdogExit.TOO_MANY_RESTARTS
    assert len(starts(tmp_path)) == FAST.max_restarts + 1
    last = watchdog_log.records[-1]
    assert last.levelno == logging.ERROR and "too many restarts" in last.getMessage()


async def test_a_command_that_cannot_start_exits_5(tmp_path):
    """A command that cannot be executed at all is a start-up error: status 5, nothing restarted."""
    watchdog = Watchdog([str(tmp_path / "no-such-program")], FAST)
    with trio.fail_after(LIMIT):
        assert await watchdog.run() == WatchdogExit.STARTUP_ERROR
    assert watchdog.starts == 0


async def test_stop_kills_a_child_that_ignores_sigterm_after_the_timeout(tmp_path, watchdog_log):
    """A child ignoring SIGTERM is SIGKILLed stop_timeout after stop(), and the watchdog still exits 0."""
    body = STAY_UP.replace("signal.signal(signal.SIGTERM, on_signal)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    policy = Policy(stop_timeout=0.3)
    watchdog = Watchdog(child(tmp_path, body), policy)
    status = None

    async def supervise():
        nonlocal status
        status = await watchdog.run()

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise)
            await wait_for_file(tmp_path / "ready")
            stopped = trio.current_time()
            watchdog.stop()
    assert trio.current_time() - stopped >= 0.3
    assert status == WatchdogExit.CLEAN and watchdog.process.returncode == -signal.SIGKILL
    assert any("SIGKILL" in m for m in messages(watchdog_log))


async def test_a_second_stop_kills_at_once(tmp_path):
    """Stopping twice does not wait out stop_timeout: the child is SIGKILLed at once."""
    body = STAY_UP.replace("signal.signal(signal.SIGTERM, on_signal)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    watchdog = Watchdog(child(tmp_path, body), Policy(stop_timeout=60.0))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog.run)
            await wait_for_file(tmp_path / "ready")
            watchdog.stop()
            watchdog.stop()
    assert watchdog.process.returncode == -signal.SIGKILL


async def test_stop_during_backoff_exits_without_another_start(tmp_path):
    """stop() while waiting to restart ends the watchdog at once with 0 and starts nothing more."""
    watchdog = Watchdog(child(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)"),
                        Policy(initial_delay=30.0, max_delay=30.0))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog.run)
            while watchdog.process is None or watchdog.process.returncode is None:
                await trio.sleep(0.01)
            await trio.sleep(0.05)
            watchdog.stop()
    assert watchdog.starts == 1


async def test_cancelling_the_watchdog_kills_its_child(tmp_path):
    """Cancelling run() leaves no child behind: it is SIGKILLed and reaped."""
    watchdog = Watchdog(child(tmp_path, STAY_UP), FAST)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog.run)
            await wait_for_file(tmp_path / "ready")
            nursery.cancel_scope.cancel()
    assert watchdog.process.returncode == -signal.SIGKILL
    assert not (tmp_path / "got").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_to_the_watchdog_is_forwarded_as_sigterm(tmp_path, signum):
    """SIGTERM or SIGINT to the watchdog process reaches the child as SIGTERM, and the watchdog exits 0."""
    command = child(tmp_path, STAY_UP)
    script = ("import logging, sys\n"
              "from clientcore.watchdog import Policy, supervise\n"
              "logging.basicConfig(level=logging.INFO)\n"
              f"sys.exit(supervise({command!r}, Policy(stop_timeout=5.0)))\n")
    stderr = tmp_path / "watchdog.err"
    grandchild = None
    with open(stderr, "wb") as err:
        watchdog = await trio.lowlevel.open_process([sys.executable, "-c", script], stderr=err)
    try:
        with trio.fail_after(LIMIT):
            grandchild = int(await wait_for_file(tmp_path / "ready"))
            watchdog.send_signal(signum)
            assert await watchdog.wait() == 0, stderr.read_text()
        assert (tmp_path / "got").read_text() == "SIGTERM"
        log = stderr.read_text()
        assert f"{signum.name}: stopping the child" in log and "forwarding SIGTERM" in log
        assert "exit status 0" in log
    finally:
        if watchdog.returncode is None:
            watchdog.kill()
            with trio.CancelScope(shield=True):
                await watchdog.wait()
        if grandchild is not None:
            kill_if_ours(grandchild, tmp_path)


def test_python_m_clientcore_watchdog_runs_the_daemon():
    """`python -m clientcore.watchdog --help` runs the daemon's --help as its child and exits 0 with it."""
    result = subprocess.run([sys.executable, "-m", "clientcore.watchdog", "--help"], capture_output=True,
                            timeout=LIMIT)
    assert result.returncode == WatchdogExit.CLEAN, result.stderr
    assert b"Usage: clientcore" in result.stdout
    assert b"start 1: pid" in result.stderr and b"exit status 0" in result.stderr


def test_the_daemon_exits_with_the_statuses_the_watchdog_reads():
    """clientcore.daemon's exit statuses are the ones the policy treats as clean, start-up error and protocol-fatal."""
    from clientcore import daemon

    assert (daemon.EXIT_OK, daemon.EXIT_STARTUP, daemon.EXIT_CRASHED, daemon.EXIT_DEVICE_LOST,
            daemon.EXIT_PROTOCOL) == tuple(DaemonExit)
