"""``clientcore --fault``: the grammar, the seeded plan, the damage, and each fault against the real broker (issue 7).

Each fault drives a named kernel path (spec §1.4 write checks, §4.1 waits and
timeouts, §4.10 cancel, §5 release and purge); the stack tests run the broker
and the daemon in the test's trio run with the autojump clock, and the crash
test runs ``clientcore`` as a process, since a crash is a SIGKILL.
"""

from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path

import pytest
import trio

import pvfs2proto as proto
from clientcore.faults import (
    ANSWER,
    CORRUPT,
    CRASH,
    DELAY,
    DROP,
    Fault,
    FaultPlan,
    FaultSpecError,
    corrupt_frame,
    parse_fault,
)
from pvfs2ctl.client import VfsClient
from pvfs2proto import OpCode, OpFlags, ProtocolError
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE
from pvfs2proto.frames import check_write_head

from .daemon_stack import (
    ROOT,
    assert_ok,
    assert_quiescent,
    call,
    control,
    create_upcall,
    decode,
    getattr_upcall,
    pattern,
    readdir_upcall,
    start_stack,
    vfs_path,
    wait_for,
    write_upcall,
)
from ..pvfs2dev.live import submit_soon

#: Virtual seconds (the stack tests wait out op and slot timeouts on the autojump clock).  The stack is
#: started before the deadline: binding a Unix socket runs in a worker thread, and while it takes real
#: time the autojump clock would race past any deadline around it.
TIMEOUT = 600


# -- the grammar ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, fault", [
    ("delay:GETATTR:200ms", Fault(DELAY, int(OpCode.GETATTR), delay=0.2)),
    ("delay:file_io:1.5s:0.25", Fault(DELAY, int(OpCode.FILE_IO), 0.25, delay=1.5)),
    ("delay:*:2", Fault(DELAY, None, delay=2.0)),
    ("drop:FILE_IO:0.1", Fault(DROP, int(OpCode.FILE_IO), 0.1)),
    ("drop:ORANGEFS_VFS_OP_LOOKUP", Fault(DROP, int(OpCode.LOOKUP))),
    ("corrupt:LOOKUP", Fault(CORRUPT, int(OpCode.LOOKUP), corrupt="trailer")),
    ("corrupt:LOOKUP:magic", Fault(CORRUPT, int(OpCode.LOOKUP), corrupt="magic")),
    ("corrupt:READDIR:short:0.5", Fault(CORRUPT, int(OpCode.READDIR), 0.5, corrupt="short")),
    ("crash-after:500", Fault(CRASH, after=500)),
    ("stall-readdir", Fault(DROP, int(OpCode.READDIR))),
])
def test_fault_specs_parse(spec, fault):
    """Issue 7: the --fault grammar of clientcore/faults.py."""
    assert parse_fault(spec) == fault


@pytest.mark.parametrize("spec, why", [
    ("", "not a fault"), ("explode", "not a fault"), ("delay:GETATTR", "not a fault"),
    ("delay:GETATTR:soon", "not a time"), ("delay:NOPE:1s", "unknown op"),
    ("drop:CANCEL", "CANCEL cannot be faulted"), ("drop:GETATTR:0", "probability"),
    ("drop:GETATTR:1.5", "probability"), ("drop:GETATTR:x", "probability"),
    ("corrupt:LOOKUP:mangle", "not one of"), ("crash-after:0", ">= 1"), ("crash-after:x", ">= 1"),
    ("stall-readdir:1", "not a fault"),
])
def test_bad_fault_specs_are_one_line_errors(spec, why):
    """Bad input gets one clear line naming the spec."""
    with pytest.raises(FaultSpecError) as exc:
        parse_fault(spec)
    assert why in str(exc.value) and "\n" not in str(exc.value)


def test_bad_fault_spec_on_the_command_line_exits_2_with_one_line():
    """click refuses a bad --fault before anything starts (usage error, exit 2)."""
    from click.testing import CliRunner

    from clientcore.cli import command

    result = CliRunner().invoke(command, ["--fault", "drop:NOPE"])
    assert result.exit_code == 2
    assert "unknown op 'NOPE'" in result.output


# -- the plan ------------------------------------------------------------------------------------------------


def test_the_first_matching_fault_decides_and_cancel_is_never_hit():
    plan = FaultPlan.parse(["drop:GETATTR", "delay:*:1s"])
    assert plan.on_upcall(OpCode.GETATTR).what == DROP
    assert plan.on_upcall(OpCode.LOOKUP).what == DELAY
    assert plan.on_upcall(OpCode.CANCEL).what == ANSWER
    assert plan.applied == {DROP: 1, DELAY: 1}


def test_probabilities_are_seeded_and_reproducible():
    """--fault-seed: the same seed hits the same upcalls; about P of them are hit."""
    def hits(seed: int) -> list[bool]:
        plan = FaultPlan.parse(["drop:GETATTR:0.3"], seed)
        return [plan.on_upcall(OpCode.GETATTR).what == DROP for _ in range(2000)]

    assert hits(7) == hits(7)
    assert hits(7) != hits(8)
    assert 500 < sum(hits(7)) < 700


def test_crash_after_counts_every_upcall():
    plan = FaultPlan.parse(["crash-after:3"])
    assert [plan.on_upcall(op).what for op in (OpCode.GETATTR, OpCode.CANCEL, OpCode.LOOKUP)] == [
        ANSWER, ANSWER, CRASH]


# -- the damage (spec §1.4, "Processing, in order") ---------------------------------------------------------


def _good_frame(tag: int = 42) -> bytes:
    return proto.encode_write_frame(tag, {"type": OpCode.GETATTR, "status": 0})


def test_corrupt_magic_fails_check_4_with_eproto():
    with pytest.raises(ProtocolError) as exc:
        check_write_head(corrupt_frame(_good_frame(), "magic"))
    assert exc.value.errno == errno.EPROTO


def test_corrupt_short_fails_check_1_with_efault():
    damaged = corrupt_frame(_good_frame(), "short")
    assert len(damaged) < MAX_DEV_REQ_DOWNSIZE
    with pytest.raises(ProtocolError) as exc:
        check_write_head(damaged)
    assert exc.value.errno == errno.EFAULT


def test_corrupt_tag_names_another_tag_and_corrupt_trailer_fails_check_9():
    good = _good_frame(42)
    assert proto.decode_write_head(corrupt_frame(good, "tag")).tag != 42
    with pytest.raises(ProtocolError) as exc:
        proto.decode_write_frame(corrupt_frame(good, "trailer"), OpCode.GETATTR)
    assert exc.value.errno == errno.EFAULT


# -- each fault against the broker --------------------------------------------------------------------------


async def faulty_stack(nursery, rundir: Path, *specs: str):
    """Broker and daemon with the filesystem mounted by a well-behaved daemon, then a daemon with ``specs``
    in its place (the mount is remounted by REMOUNT_ALL, spec §5.3)."""
    stack = await start_stack(nursery, rundir)
    await stack.stop_daemon()
    await stack.start_daemon(faults=FaultPlan.parse(specs))
    await wait_for(rundir, lambda s: s["mounts"] and not any(m["pending"] for m in s["mounts"]))
    return stack


async def _ops(rundir: Path, name: str) -> list[dict]:
    return [op for op in (await control(rundir, "ops"))["ops"] if op["op"] == name]


async def test_corrupt_downcall_fails_the_write_and_the_caller_with_efault(nursery, tmp_path, autojump_clock):
    """Spec §1.4 check 9 (issue 7 scenario 4): a bad downcall for a waiting op — the write returns EFAULT, the
    caller gets EFAULT, and the daemon goes on serving (its own damaged write is not fatal to it)."""
    stack = await faulty_stack(nursery, tmp_path, "corrupt:GETATTR")
    with trio.fail_after(TIMEOUT):
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, getattr_upcall(ROOT))
            assert answer.result == -errno.EFAULT
            assert_ok(await call(vfs, create_upcall(b"f")), OpCode.CREATE)
        assert stack.daemon.faults.applied == {CORRUPT: 1}
        await assert_quiescent(tmp_path)


@pytest.mark.parametrize("spec", ["drop:GETATTR", "corrupt:GETATTR:magic", "corrupt:GETATTR:short",
                                  "corrupt:GETATTR:tag"])
async def test_unanswered_op_waits_while_the_daemon_lives_then_is_purged_and_retried(
        nursery, tmp_path, autojump_clock, spec):
    """Spec §1.4 checks 1, 4, 6 and §5 (issue 7 scenario 3): an op read but never (validly) answered stays in
    progress past op_timeout_secs while the daemon has the device open; when the daemon goes away it is purged
    and retried, and the next daemon answers it."""
    stack = await faulty_stack(nursery, tmp_path, spec)
    with trio.fail_after(TIMEOUT):
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs, trio.open_nursery() as callers:
            answers = submit_soon(callers, vfs, getattr_upcall(ROOT))
            await wait_for(tmp_path, lambda r: any(op["op"] == "OP_GETATTR" for op in r["ops"]), cmd="ops")
            await trio.sleep(60)  # three op timeouts (autojump clock): still waiting on the live daemon
            (op,) = await _ops(tmp_path, "OP_GETATTR")
            assert op["where"].startswith("bucket:") and not answers  # in the in-progress table
            await stack.stop_daemon()  # the purge: back on the request list, waiting for a daemon
            await stack.start_daemon()
        (answer,) = answers
        assert_ok(decode(answer, OpCode.GETATTR), OpCode.GETATTR)
        await assert_quiescent(tmp_path)


async def test_delay_holds_the_answer_back(nursery, tmp_path, autojump_clock):
    """delay:GETATTR:5s: the caller's op is in progress for 5 s, then answered (spec §4.1: no timeout while
    the daemon has it)."""
    await faulty_stack(nursery, tmp_path, "delay:GETATTR:5s")
    with trio.fail_after(TIMEOUT):
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            start = trio.current_time()
            assert_ok(await call(vfs, getattr_upcall(ROOT)), OpCode.GETATTR)
            assert trio.current_time() - start >= 5
            start = trio.current_time()
            assert_ok(await call(vfs, create_upcall(b"quick")), OpCode.CREATE)
            assert trio.current_time() - start < 1


async def test_interrupted_delayed_write_is_cancelled_at_once_and_its_slot_freed(nursery, tmp_path, autojump_clock):
    """Spec §4.10 (issue 7 scenario 5): a FILE_IO the daemon holds (delay:FILE_IO:1h) is interrupted; the
    caller is told it was written, CANCEL reaches the daemon with its tag, ends the delay, is answered, and
    only then is the I/O slot free."""
    stack = await start_stack(nursery, tmp_path, faults=FaultPlan.parse(["delay:FILE_IO:3600s"]))
    with trio.fail_after(TIMEOUT):
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            created = await call(vfs, create_upcall(b"held"))
            handle = created.resp.create.refn.khandle
            data = pattern(4096, 3)
            req_id = vfs.next_id()
            pending = await vfs.send_submit(req_id, write_upcall(handle, len(data)), data,
                                            flags=OpFlags.INTERRUPTIBLE)
            (op,) = (await wait_for(tmp_path, lambda r: [o for o in r["ops"] if o["op"] == "OP_FILE_IO"
                                                            and o["where"].startswith("bucket:")], cmd="ops"))["ops"]
            await vfs.interrupt(req_id)
            # The kernel counts a write the daemon had read as written (spec §4.10) ...
            reply = await pending.wait()
            assert reply.result == 0
            # ... and frees its slot only when the CANCEL for its tag is answered, at once here.
            await assert_quiescent(tmp_path)
            assert trio.current_time() < 3600
            # So a caller can be told "written" for data that never reached the store.
            assert stack.store.getattr(None, handle).size == 0
            assert op["slot"] is not None


async def test_stall_readdir_holds_readdir_slots_until_a_caller_times_out(nursery, tmp_path, autojump_clock):
    """stall-readdir (issue 7 scenario 6): each READDIR keeps its readdir slot while the daemon sits on it; with
    all 5 taken the next caller waits slot_timeout_secs for one and fails ETIMEDOUT (spec §4.5)."""
    await start_stack(nursery, tmp_path, faults=FaultPlan.parse(["stall-readdir"]))
    with trio.fail_after(TIMEOUT):
        assert (await control(tmp_path, "params", name="slot_timeout_secs", value="30"))["ok"]
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            stuck = [await vfs.send_submit(vfs.next_id(), readdir_upcall(ROOT), b"") for _ in range(5)]
            await wait_for(tmp_path, lambda s: s["buffers"][1]["busy"] == [0, 1, 2, 3, 4])
            start = trio.current_time()
            sixth = await call(vfs, readdir_upcall(ROOT))
            assert sixth.result == -errno.ETIMEDOUT
            assert 30 <= trio.current_time() - start < 31
            assert all(not p.event.is_set() for p in stuck)


# -- a crash is a SIGKILL: clientcore as a process ----------------------------------------------------------


async def test_crash_after_n_upcalls_kills_the_daemon_and_the_op_is_retried(nursery, tmp_path):
    """crash-after:N (issue 7, spec §5): the daemon dies by SIGKILL on reading upcall N, without closing the
    device; the broker releases it, purges the op, and a new client-core answers the retried call."""
    store = tmp_path / "store"
    rundir = tmp_path / "run"
    await start_stack(nursery, rundir, daemon=False)
    with trio.fail_after(TIMEOUT):
        command = [sys.executable, "-m", "clientcore.daemon", "--rundir", str(rundir), "--store", str(store),
                   "--desc-count", "2", "--desc-size", "1MiB"]
        log = open(tmp_path / "crash.log", "wb")
        crashing = await trio.lowlevel.open_process(command + ["--fault", "crash-after:5"],
                                                    stdout=log, stderr=log)
        try:
            await wait_for(rundir, lambda s: s["daemon_in_service"])
            async with VfsClient.connect(vfs_path(rundir)) as vfs:
                # No mount: upcalls 1-4 are answered (whatever the store says of this handle) ...
                stat = getattr_upcall(ROOT)
                first = [await vfs.submit(stat) for _ in range(4)]
                assert len({reply.result for reply in first}) == 1
                async with trio.open_nursery() as callers:
                    answers = submit_soon(callers, vfs, stat)  # ... and the daemon dies reading upcall 5
                    assert await crashing.wait() == -signal.SIGKILL
                    await wait_for(rundir, lambda s: not s["daemon_in_service"] and s["open_count"] == 0)
                    assert not answers
                    again = await trio.lowlevel.open_process(command, stdout=log, stderr=log)
                try:
                    (answer,) = answers
                    assert answer.result == first[0].result  # the purged GETATTR was retried and answered
                finally:
                    again.terminate()
                    await again.wait()
        finally:
            crashing.kill()
            await crashing.wait()
            log.close()
        assert "fault: crashing on upcall 5" in (tmp_path / "crash.log").read_text()
