"""Device release, purge and retry (spec §1.6, §4.5 step 9, §4.6, §4.11)."""

import errno

import pytest

from pvfs2proto import OpState

from .harness import DeviceError, OpCode, World


def _cycle(w):
    """A client-core comes, reads everything it can, and goes away without answering."""
    assert w.client_open()
    frames = w.read_all()
    w.release()
    return frames


# --- what release does ----------------------------------------------------------------------------------


def test_release_purges_waiting_and_in_progress_ops():
    """Spec §1.6 steps 4–5: every op on the request list and in the in-progress table gets PURGED and its submitter is woken."""
    w = World()
    w.client_open()
    read = w.submit(OpCode.PARAM)
    w.read_op()
    waiting = w.submit(OpCode.PARAM)
    seen = []
    w.k.on_trace = seen.append
    w.release()
    purged = {e.tag for e in seen if e.event == "purge"}
    assert purged == {read.tag, waiting.tag}
    assert all(op.attempts == 1 for op in (read, waiting))
    assert len(w.k.in_progress) == 0


def test_purge_ors_purged_onto_the_state():
    """Spec §4.2: PURGED is OR-ed onto the current state: 9 for a waiting op, 10 for one in progress."""
    w = World()
    w.client_open()
    a = w.submit(OpCode.PARAM)
    w.read_op()
    b = w.submit(OpCode.PARAM)
    seen = []
    w.k.on_trace = seen.append
    w.release()
    after = {e.tag: e.after for e in seen if e.event == "purge"}
    from pvfs2proto import state_names
    assert after[a.tag] == state_names(OpState.INPROGR | OpState.PURGED)
    assert after[b.tag] == state_names(OpState.WAITING | OpState.PURGED)


def test_release_marks_every_mount_pending():
    """Spec §1.6 step 3: every mounted superblock is marked mount pending."""
    w = World()
    a, b = w.mount(7), w.mount(8, 2)
    w.client_open()
    w.release()
    assert a.pending and b.pending


def test_release_takes_the_daemon_out_of_service():
    """Spec §1.6 step 2: the open count becomes −1 at once, so the daemon is absent."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    w.release()
    assert w.k.open_count == -1
    assert not w.k.daemon_in_service
    w.put_slot(slot)
    assert w.k.open_count == 0


def test_release_of_a_closed_device_does_nothing():
    """Spec §1.6: release runs on the close of the last reference; without an open there is nothing to release."""
    w = World()
    w.release()
    assert w.k.open_count == 0
    assert w.releases_done == 0


# --- retry of non-slot ops ----------------------------------------------------------------------------


def test_purged_non_slot_op_is_requeued_by_itself():
    """Spec §4.5 step 9, §4.11: a purged op that uses no slot gets EAGAIN internally and is re-queued with attempts+1."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    w.read_op()
    w.release()
    assert op.result is None
    assert w.wakes(op) == 0
    assert op.attempts == 1
    assert op.state == OpState.WAITING
    assert w.queued() == [op]


def test_requeued_op_is_answered_by_the_next_client_core():
    """Spec §4.11: the retry is read and serviced by the new daemon like any op."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    w.read_op()
    w.release()
    w.client_open()
    frame = w.read_op()
    assert frame.tag == op.tag
    w.answer(frame)
    assert op.result == 0


def test_retry_waits_op_timeout_secs():
    """Spec §4.5 step 9, §4.11: the retry of a non-slot op is queued with a 20 s timeout."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    w.advance(3)
    w.release()
    w.advance(19.9)
    assert op.result is None
    w.advance(0.1)
    assert op.result == -errno.ETIMEDOUT


def test_retry_timeout_still_applies_when_a_new_daemon_reads_it():
    """Spec §2.4, §4.5 step 9: retries keep op_timeout_secs even once a daemon is open again."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    w.release()
    w.advance(1)
    w.client_open()
    w.read_op()
    w.advance(18.9)
    assert op.result is None
    w.advance(0.1)
    assert op.result == -errno.ETIMEDOUT


def test_retry_deadline_restarts_from_the_requeue():
    """Spec §4.5 steps 2–4 and 9: each round sets a fresh timeout; an earlier round's deadline no longer applies."""
    w = World()
    op = w.submit(OpCode.PARAM)  # no daemon: deadline t=20
    w.advance(5)
    w.client_open()
    w.read_op()
    w.advance(10)
    w.release()  # t=15: purged and re-queued, deadline t=35
    w.advance(6)  # t=21
    assert op.result is None
    w.advance_to(35)
    assert op.result == -errno.ETIMEDOUT


def test_sixth_purge_fails_a_non_slot_op_with_eio():
    """Spec §2.4, §4.6, §4.11: purges 1–5 give EAGAIN and a retry; the 6th purge gives EIO."""
    w = World()
    op = w.submit(OpCode.PARAM)
    for n in range(1, 6):
        frames = _cycle(w)
        assert [f.tag for f in frames] == [op.tag]
        assert op.result is None and op.attempts == n
    _cycle(w)
    assert op.result == -errno.EIO
    assert op.attempts == 5
    assert w.queued() == []
    assert w.wakes(op) == 1


def test_purge_of_a_never_read_op_counts_as_an_attempt():
    """Spec §1.6 step 4, §4.6: ops still waiting on the request list are purged too and count towards the limit."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    for _ in range(5):
        w.release()
        w.client_open()
    assert op.attempts == 5 and op.result is None
    w.release()
    assert op.result == -errno.EIO


# --- slot ops -----------------------------------------------------------------------------------------


def test_purged_file_io_returns_eagain_to_its_caller():
    """Spec §4.5 step 9: slot-using ops (FILE_IO) return EAGAIN to their caller instead of being re-queued."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    w.read_op()
    w.release()
    assert op.result == -errno.EAGAIN
    assert op.attempts == 1
    assert w.wakes(op) == 1
    assert w.queued() == []


def test_purged_readdir_returns_eagain_to_its_caller():
    """Spec §4.5 step 9, §5.4: READDIR uses a slot and also gets EAGAIN back."""
    w = World()
    w.start_client()
    slot = w.get_slot("readdir")
    op = w.new(OpCode.READDIR, fs_id=0)
    w.k.set_slot(op, slot)
    w.k.service(op, w.now)
    w.read_op()
    w.release()
    assert op.result == -errno.EAGAIN


def _purge_io(w, op, slot):
    """Release while ``op`` is queued/read; the caller returns its slot as §5.3 step 4 says."""
    w.release()
    assert op.result == -errno.EAGAIN
    w.put_slot(slot)


def test_resubmitted_file_io_is_serviced_normally():
    """Spec §5.3 step 4, §4.11: after EAGAIN the I/O takes a new slot and resubmits; the new daemon services it."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    w.read_op()
    _purge_io(w, op, slot)
    w.start_client()
    slot = w.get_slot()
    w.k.set_slot(op, slot)
    w.resubmit(op)
    frame = w.read_op()
    assert frame.tag == op.tag
    w.answer(frame, amt_complete=4096)
    assert op.result == 0


def test_resubmitted_file_io_without_a_daemon_times_out_after_op_timeout():
    """Spec §4.5 step 4, §4.11: a FILE_IO resubmitted while no daemon is open waits op_timeout_secs, then ETIMEDOUT."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    _purge_io(w, op, slot)
    w.resubmit(op)  # (a real caller would be waiting for a slot; the wait rule of the op is what matters here)
    w.advance(20)
    assert op.result == -errno.ETIMEDOUT


def test_resubmitted_file_io_waits_forever_with_a_daemon():
    """Spec §2.4: FILE_IO and READDIR resubmit from scratch, so with a daemon open their wait is infinite again."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    w.read_op()
    _purge_io(w, op, slot)
    w.start_client()
    slot = w.get_slot()
    w.k.set_slot(op, slot)
    w.resubmit(op)
    w.read_op()
    assert op.deadline is None  # no timer armed for this round
    w.advance(1000)
    assert op.state == OpState.INPROGR
    assert w.k.in_progress.find(op.tag) is op


def test_sixth_purge_fails_a_file_io_with_eio():
    """Spec §4.11: the attempts counter survives resubmission, so the 6th purge of the same FILE_IO gives EIO."""
    w = World()
    results = []
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    for n in range(6):
        w.read_op()
        w.release()
        results.append(op.result)
        w.put_slot(slot)
        if op.result != -errno.EAGAIN:
            break
        w.start_client()
        slot = w.get_slot()
        w.k.set_slot(op, slot)
        w.resubmit(op)
    assert results == [-errno.EAGAIN] * 5 + [-errno.EIO]


# --- waiting for slots ----------------------------------------------------------------------------------


def test_release_waits_for_every_slot_before_finishing():
    """Spec §1.6 step 6: release waits until every I/O and readdir slot is returned, then frees the buffer."""
    w = World()
    w.start_client()
    io_slot = w.get_slot()
    rd_slot = w.get_slot("readdir")
    w.release()
    assert w.releases_done == 0
    w.put_slot(io_slot)
    assert w.releases_done == 0
    assert w.k.open_count == -1
    w.put_slot(rd_slot, "readdir")
    assert w.releases_done == 1
    assert w.k.open_count == 0
    assert w.k.bufmap is None


def test_release_resets_the_recorded_userspace_version_at_the_end():
    """Spec §1.6 step 7: the recorded userspace version goes back to 0 when the release finishes."""
    w = World()
    w.start_client()
    w.reply(1, OpCode.PARAM, version=20907)
    slot = w.get_slot()
    w.release()
    assert w.k.userspace_version == 20907  # step 7 has not run yet
    w.put_slot(slot)
    assert w.k.userspace_version == 0
    w.client_open()
    assert w.reply(2, OpCode.PARAM, version=20910) == 8240
    assert w.k.userspace_version == 20910


def test_release_without_a_buffer_finishes_at_once():
    """Spec §1.6: with no buffer registered there is no slot to wait for."""
    w = World()
    w.client_open()
    w.release()
    assert w.releases_done == 1
    assert w.k.open_count == 0


def test_open_during_release_waits_for_the_slots():
    """Spec §1.2, §1.6: an open that races a release waits for it (slots included), then succeeds."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot)
    w.read_op()
    w.release()
    assert op.result == -errno.EAGAIN
    assert w.client_open() is False
    w.put_slot(slot)
    assert w.client_open() is True


def test_slots_returned_during_release_do_not_go_to_waiters():
    """Spec §1.6 step 1, §5.2: the maps are marked dying before the purge, so slots put back by purged callers wake nobody."""
    w = World()
    w.start_client(count=1)
    slot = w.get_slot()
    op = w.submit_io(slot)
    waiter = w.get_slot()
    assert not isinstance(waiter, int)
    w.release()
    w.put_slot(slot)
    assert op.result == -errno.EAGAIN
    assert waiter.result is None
    assert w.releases_done == 1


def test_ops_queued_after_release_wait_for_the_next_daemon():
    """Spec §4.11: after a release new ops wait op_timeout_secs for a daemon and are read once one opens."""
    w = World()
    w.client_open()
    w.release()
    op = w.submit(OpCode.PARAM)
    w.advance(10)
    w.client_open()
    assert w.read_op().tag == op.tag
    with pytest.raises(DeviceError):
        w.read_raw()


def test_resubmitted_file_io_can_still_be_interrupted():
    """Spec §4.5 step 6, §5.3 step 4: a resubmitted FILE_IO is a fresh service_operation, so a signal ends its wait with EINTR."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    op = w.submit_io(slot, flags=1)
    _purge_io(w, op, slot)
    w.start_client()
    slot = w.get_slot()
    w.k.set_slot(op, slot)
    w.resubmit(op)
    assert w.signal(op) is True
    assert op.result == -errno.EINTR


def test_readdir_purged_again_after_resubmission_gets_eagain_again():
    """Spec §5.4, §4.6: READDIR takes a new readdir slot and resubmits after a purge; a second purge wakes it with EAGAIN again."""
    w = World()
    w.start_client()
    slot = w.get_slot("readdir")
    op = w.new(OpCode.READDIR, fs_id=0)
    w.k.set_slot(op, slot)
    w.k.service(op, w.now)
    for round_ in (1, 2):
        w.read_op()
        w.release()
        assert w.wakes(op) == round_
        assert op.result == -errno.EAGAIN and op.attempts == round_
        w.put_slot(slot, "readdir")
        w.start_client()
        slot = w.get_slot("readdir")
        w.k.set_slot(op, slot)
        w.resubmit(op)
    frame = w.read_op()
    assert frame.tag == op.tag
    w.answer(frame, trailer=bytes(24))
    assert op.result == 0
