"""Kernel-side faults through the control channel (``pvfs2ctl fault``; pvfs2dev/faults.py; issue 7).

Each fault arranges a circumstance a real kernel meets and drives the rule
that applies to it: an interrupted FILE_IO the client-core had read becomes a
CANCEL holding its slot (spec §4.10); callers queue FIFO for held slots and
time out after ``slot_timeout_secs`` (§4.5); with reads paused, queued ops
time out after ``op_timeout_secs`` though a client-core is attached (§4.1).
"""

from __future__ import annotations

import errno

import pytest
import trio

from pvfs2ctl.client import VfsClient
from pvfs2proto import OpCode, OpFlags

from .live import (
    HandCore,
    MiB,
    control,
    getattr_upcall,
    mount_by_hand,
    read_upcall,
    status,
    submit_soon,
    vfs_path,
    wait_for,
    write_upcall,
)

NO_FAULTS = {"reads_paused": False, "held_slots": {"io": [], "readdir": []}}


def assert_error(reply: dict, err: int) -> None:
    assert reply["ok"] is False, reply
    assert reply["errno"] == err, reply


async def fault(rundir, action: str, **fields) -> dict:
    return await control(rundir, "fault", action=action, **fields)


async def test_no_faults_are_arranged_at_first_and_status_shows_them(broker, rundir):
    with trio.fail_after(10):
        assert (await fault(rundir, "show"))["faults"] == NO_FAULTS
        assert (await status(rundir))["faults"] == NO_FAULTS


@pytest.mark.parametrize("fields, err", [
    ({"action": "explode"}, errno.EINVAL),
    ({"action": "interrupt"}, errno.EINVAL),
    ({"action": "interrupt", "tag": "7"}, errno.EINVAL),
    ({"action": "interrupt", "tag": True}, errno.EINVAL),
    ({"action": "interrupt", "tag": 7, "fatal": "yes"}, errno.EINVAL),
    ({"action": "interrupt", "tag": 987654}, errno.ESRCH),
    ({"action": "hold-slots", "map": "disk"}, errno.EINVAL),
    ({"action": "hold-slots", "count": 0}, errno.EINVAL),
    ({"action": "hold-slots", "count": "2"}, errno.EINVAL),
    ({"action": "hold-slots"}, errno.ENXIO),  # no buffer mapped yet
    ({"action": "release-slots", "map": 3}, errno.EINVAL),
    ({"action": "release-slots", "count": 0}, errno.EINVAL),
    ({"action": "release-slots", "count": "1"}, errno.EINVAL),
])
async def test_bad_fault_requests_get_the_errno_and_change_nothing(broker, rundir, fields, err):
    with trio.fail_after(10):
        assert_error(await control(rundir, "fault", **fields), err)
        assert (await fault(rundir, "show"))["faults"] == NO_FAULTS


async def test_paused_reads_leave_ops_queued_without_a_timeout_while_the_daemon_is_in_service(
        broker, rundir, autojump_clock):
    """Spec §4.5 step 4 / §4.6: with the daemon in service a queued op's wait has no timeout; while reads are
    paused READ is EAGAIN and POLL does not report POLLIN, and the op waits past any op_timeout_secs until
    reads resume."""
    async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(6000):
            await mount_by_hand(core, vfs)
            assert (await fault(rundir, "pause-reads"))["faults"]["reads_paused"] is True
            async with trio.open_nursery() as nursery:
                replies = submit_soon(nursery, vfs, getattr_upcall())
                await wait_for(rundir, lambda s: s["request_list"] == 1)
                assert not await core.device.poll(5.0)
                assert await core.device.read() is None
                await trio.sleep(1000)  # fifty op timeouts
                assert (await status(rundir))["request_list"] == 1 and not replies
                await fault(rundir, "resume-reads")
                await core.auto(await core.next_frame())
            assert replies[0].result == 0


async def test_resuming_reads_wakes_a_waiting_poller(broker, rundir, autojump_clock):
    """A POLL waiting while reads are paused reports POLLIN as soon as they resume, if an op is queued."""
    async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(60):
            await mount_by_hand(core, vfs)
            await fault(rundir, "pause-reads")
            async with trio.open_nursery() as nursery:
                replies = submit_soon(nursery, vfs, getattr_upcall())
                await wait_for(rundir, lambda s: s["request_list"] == 1)

                async def resume_later():
                    await trio.sleep(3)
                    await fault(rundir, "resume-reads")

                nursery.start_soon(resume_later)
                start = trio.current_time()
                assert await core.device.poll(10.0)
                assert 3 <= trio.current_time() - start < 4
                await core.auto(await core.next_frame())
            assert replies[0].result == 0


async def test_held_slots_make_callers_wait_fifo_and_time_out(broker, rundir, autojump_clock):
    """Spec §4.5 (issue 7 scenario 6): with every I/O slot held, FILE_IO callers queue FIFO; a released slot
    goes to the first waiter; a caller left waiting gets ETIMEDOUT after slot_timeout_secs."""
    async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(600):
            await mount_by_hand(core, vfs)
            assert (await control(rundir, "params", name="slot_timeout_secs", value="30"))["ok"]
            held = await fault(rundir, "hold-slots", map="io", count=5)
            assert held["taken"] == [0, 1] and held["faults"]["held_slots"]["io"] == [0, 1]
            results = {}
            async with trio.open_nursery() as nursery:
                async def writer(offset: int):
                    reply = await vfs.submit(write_upcall(4096, offset), b"x" * 4096)
                    results[offset] = reply.result

                nursery.start_soon(writer, 0)
                await wait_for(rundir, lambda s: s["buffers"][0]["waiters"] == 1)
                nursery.start_soon(writer, 8192)
                await wait_for(rundir, lambda s: s["buffers"][0]["waiters"] == 2)
                await trio.sleep(10)
                # One slot back: it goes to the first waiter, whose FILE_IO is the first upcall.
                assert (await fault(rundir, "release-slots", map="io", count=1))["released"] == 1
                first = await core.next_frame()
                assert first.upcall.req.io.offset == 0
                assert (await status(rundir))["buffers"][0]["waiters"] == 1
                assert (await fault(rundir, "release-slots", map="io"))["released"] == 1
                second = await core.next_frame()
                assert second.upcall.req.io.offset == 8192
                for frame in (first, second):
                    await core.reply(frame, resp={"io": {"amt_complete": 4096}})
            assert results == {0: 0, 8192: 0}
            # Now hold them again and let a caller wait out the slot timeout.
            await fault(rundir, "hold-slots", map="io", count=2)
            start = trio.current_time()
            reply = await vfs.submit(read_upcall(4096))
            assert reply.result == -errno.ETIMEDOUT
            assert 30 - 1e-6 <= trio.current_time() - start < 31
            await fault(rundir, "release-slots")
            assert (await fault(rundir, "show"))["faults"] == NO_FAULTS


async def test_held_slots_go_back_when_the_device_is_released(broker, rundir):
    """Spec §1.6: the release's teardown waits for every slot; held ones are given back, so it finishes and
    the next client-core can MAP."""
    with trio.fail_after(20):
        async with HandCore.start(rundir, count=2, size=1 * MiB):
            assert (await fault(rundir, "hold-slots", map="readdir", count=2))["taken"] == [0, 1]
        await wait_for(rundir, lambda s: s["open_count"] == 0 and s["faults"] == NO_FAULTS)
        async with HandCore.start(rundir, count=2, size=1 * MiB):
            s = await status(rundir)
            assert s["daemon_in_service"] and s["buffers"][1]["c"] == s["buffers"][1]["count"]


async def test_interrupt_of_a_file_io_the_daemon_read_becomes_a_cancel_with_its_tag(broker, rundir):
    """Spec §4.10 (issue 7 scenario 5): interrupting a FILE_IO the client-core has read gives it up; a CANCEL
    naming its tag is queued at the head, and the slot is freed only when the cancel is answered."""
    async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(20):
            await mount_by_hand(core, vfs)
            async with trio.open_nursery() as nursery:
                replies = submit_soon(nursery, vfs, read_upcall(4096), flags=OpFlags.INTERRUPTIBLE)
                io = await core.next_frame()
                assert io.type == OpCode.FILE_IO
                answer = await fault(rundir, "interrupt", tag=io.tag)
                assert answer["op"] == "OP_FILE_IO" and answer["fatal"] is False
                cancel = await core.next_frame()
                assert cancel.type == OpCode.CANCEL and cancel.upcall.req.cancel.op_tag == io.tag
                slot = io.upcall.req.io.buf_index
                assert slot in (await status(rundir))["buffers"][0]["busy"]
                assert await core.auto(cancel) > 0
                await wait_for(rundir, lambda s: slot not in s["buffers"][0]["busy"] and not s["ops_by_state"])
            assert replies[0].result == -errno.EINTR


async def test_ordinary_interrupt_leaves_an_uninterruptible_op_alone_and_fatal_ends_it(broker, rundir):
    """Spec §4.1: an ordinary signal ends only an INTERRUPTIBLE wait; a fatal one ends any wait but
    WRITEBACK's (the GETATTR here waits in progress, so it is given up)."""
    async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(20):
            await mount_by_hand(core, vfs)
            async with trio.open_nursery() as nursery:
                replies = submit_soon(nursery, vfs, getattr_upcall())
                frame = await core.next_frame()
                await fault(rundir, "interrupt", tag=frame.tag)
                await trio.sleep(0.2)
                assert not replies
                assert (await fault(rundir, "interrupt", tag=frame.tag, fatal=True))["fatal"] is True
                await wait_for(rundir, lambda s: not s["ops_by_state"])
            assert replies[0].result == -errno.EINTR


# -- issue 7 scenario 2: no client-core at all -----------------------------------------------------------


async def test_with_no_client_core_calls_time_out_and_one_that_starts_in_time_serves_them(broker, rundir,
                                                                                          autojump_clock):
    """Spec §4.5 step 4, §4.6: with no client-core a call waits op_timeout_secs (20) and fails ETIMEDOUT; a call
    still waiting when a client-core opens the device is read and answered by it."""
    async with VfsClient.connect(vfs_path(rundir)) as vfs:
        with trio.fail_after(600):
            start = trio.current_time()
            assert (await vfs.submit(getattr_upcall())).result == -errno.ETIMEDOUT
            assert 20 <= trio.current_time() - start < 21
            async with trio.open_nursery() as nursery:
                replies = submit_soon(nursery, vfs, getattr_upcall())
                await wait_for(rundir, lambda s: s["request_list"] == 1)
                await trio.sleep(15)  # within the op timeout
                async with HandCore.start(rundir, count=2, size=1 * MiB) as core:
                    await core.auto(await core.next_frame())
                    while not replies:
                        await trio.sleep(0.01)
            assert [reply.result for reply in replies] == [0]
            assert trio.current_time() - start < 20 + 20
