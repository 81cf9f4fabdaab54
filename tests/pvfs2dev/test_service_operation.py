"""service_operation: queueing, timeouts, signals and the outcome of the wait (spec §4.3, §4.5, §4.6, §4.9)."""

import errno

import pytest

from pvfs2proto import OpFlags, OpState, ProtocolStatus

from .harness import DeviceError, OpCode, World, status_of

INTR = OpFlags.INTERRUPTIBLE
WRITEBACK = OpFlags.WRITEBACK


def _daemon():
    w = World()
    w.client_open()
    return w


def _remounting():
    """A world whose REMOUNT_ALL holds the request mutex (its FS_MOUNT is queued, unanswered)."""
    w = World()
    w.mount(7)
    w.client_open()
    w.remount()
    assert w.queued_types() == [OpCode.FS_MOUNT]
    return w


# --- queueing -----------------------------------------------------------------------------------------


def test_ops_are_queued_at_the_tail():
    """Spec §4.4, §4.5 step 4: normal ops are linked at the tail of the one global FIFO."""
    w = _daemon()
    ops = [w.submit(OpCode.PARAM) for _ in range(3)]
    assert w.queued() == ops
    assert all(op.state == OpState.WAITING for op in ops)


def test_priority_op_is_queued_at_the_head():
    """Spec §4.3: ORANGEFS_OP_PRIORITY inserts at the head of the request list."""
    w = _daemon()
    a = w.submit(OpCode.PARAM)
    b = w.submit(OpCode.PARAM)
    p = w.submit(OpCode.FEATURES, flags=OpFlags.PRIORITY)
    assert w.queued() == [p, a, b]
    assert w.read_op().tag == p.tag


def test_each_priority_op_goes_in_front_of_earlier_ones():
    """Spec §4.4: PRIORITY ops are linked at the head, so the latest one is read first."""
    w = _daemon()
    p1 = w.submit(OpCode.FEATURES, flags=OpFlags.PRIORITY)
    p2 = w.submit(OpCode.FEATURES, flags=OpFlags.PRIORITY)
    assert w.queued() == [p2, p1]


def test_async_flag_is_ignored_and_the_caller_still_waits():
    """Spec §4.3: ORANGEFS_OP_ASYNC is ignored by current kernels; the submitter waits for the downcall."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=OpFlags.ASYNC)
    assert op.result is None
    frame = w.read_op()
    w.answer(frame)
    assert op.result == 0


# --- timeouts -----------------------------------------------------------------------------------------


def test_wait_is_infinite_with_a_daemon_in_service():
    """Spec §4.5 step 4, §4.6: with the daemon in service the wait has no timeout, even once read and never answered."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    w.read_op()
    assert w.k.next_deadline() is None
    w.advance(100_000)
    assert op.result is None
    assert op.state == OpState.INPROGR


def test_op_times_out_after_op_timeout_secs_without_a_daemon():
    """Spec §4.11: ops queued while no daemon is open wait at most op_timeout_secs (20 s), then ETIMEDOUT."""
    w = World()
    op = w.submit(OpCode.PARAM)
    assert w.k.next_deadline() == pytest.approx(20)
    w.advance(19.999)
    assert op.result is None
    w.advance(0.001)
    assert op.result == -errno.ETIMEDOUT
    assert w.wakes(op) == 1


def test_timed_out_op_is_given_up_and_unlinked():
    """Spec §4.5 step 8, §4.9: on timeout the op is marked GIVEN_UP and unlinked from the request list."""
    w = World()
    op = w.submit(OpCode.PARAM)
    w.advance(20)
    assert op.state & OpState.GIVEN_UP
    assert w.queued() == []
    assert w.k.dev_poll() is False


def test_op_timeout_comes_from_the_constructor_parameter():
    """Spec §2.4, §6.3: op_timeout_secs is a load-time module parameter."""
    w = World(op_timeout_secs=5)
    op = w.submit(OpCode.PARAM)
    w.advance(5)
    assert op.result == -errno.ETIMEDOUT


def test_op_timeout_follows_the_sysfs_knob():
    """Spec §6.1: op_timeout_secs is a writable kernel int; later queued ops use the new value."""
    w = World()
    w.k.params["op_timeout_secs"] = 3
    op = w.submit(OpCode.PARAM)
    w.advance(3)
    assert op.result == -errno.ETIMEDOUT


def test_negative_timeout_module_params_are_clamped_to_zero():
    """Spec §2.4: negative op_timeout/slot_timeout module params are clamped to 0 at load."""
    w = World(op_timeout_secs=-4, slot_timeout_secs=-1)
    assert w.k.params["op_timeout_secs"] == 0
    assert w.k.params["slot_timeout_secs"] == 0


def test_timeout_is_chosen_when_the_op_is_queued():
    """Spec §4.5 step 4: the timeout is set at queue time, so a daemon opening later does not make it infinite."""
    w = World()
    op = w.submit(OpCode.PARAM)
    w.advance(5)
    w.client_open()
    frame = w.read_op()
    w.advance(14.9)
    assert op.result is None
    w.advance(0.1)
    assert op.result == -errno.ETIMEDOUT
    assert op.state == OpState.INPROGR | OpState.GIVEN_UP
    # The late reply matches nothing any more (§4.8).
    assert w.answer(frame) == 8240
    assert op.result == -errno.ETIMEDOUT


def test_fs_umount_does_not_wait_without_a_daemon():
    """Spec §4.5 step 4, §4.11: FS_UMOUNT gets a zero timeout when no daemon is in service."""
    w = World()
    w.mount(7)
    op = w.submit(OpCode.FS_UMOUNT, fs_id=7)
    assert op.result == -errno.ETIMEDOUT
    assert w.queued() == []


def test_fs_umount_waits_forever_with_a_daemon():
    """Spec §4.5 step 4: the zero timeout is only for the daemon-absent case."""
    w = _daemon()
    w.mount(7)
    op = w.submit(OpCode.FS_UMOUNT, fs_id=7)
    w.advance(1000)
    assert op.result is None
    assert w.read_op().tag == op.tag


# --- results ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("err", [errno.ENOENT, errno.EACCES, errno.EIO, errno.ERANGE, errno.EEXIST])
def test_serviced_status_is_normalised_to_an_errno(err):
    """Spec §4.5 step 7, §2.7: on service the OrangeFS-encoded status becomes a negative errno."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    w.answer(w.read_op(), err=err)
    assert op.result == -err


def test_plain_negative_errno_status_is_einval():
    """Spec §2.7: a status without ORANGEFS_ERROR_BIT (e.g. −2) is not understood and decodes to EINVAL."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    w.answer(w.read_op(), status=-2)
    assert op.result == -errno.EINVAL


def test_positive_status_is_treated_as_an_inverted_error():
    """Spec §1.4 notes, §2.7: a positive status is negated, then decoded."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    w.answer(w.read_op(), status=-status_of(errno.ENOENT))
    assert op.result == -errno.ENOENT


def test_protocol_ecancel_status_is_etimedout_and_others_einval():
    """Spec §2.7: protocol error ECANCEL → ETIMEDOUT, any other protocol error → EINVAL."""
    w = _daemon()
    a = w.submit(OpCode.PARAM)
    b = w.submit(OpCode.PARAM)
    w.answer(w.read_op(), status=-ProtocolStatus.ECANCEL)
    w.answer(w.read_op(), status=-ProtocolStatus.ETRYAGAIN)
    assert a.result == -errno.ETIMEDOUT
    assert b.result == -errno.EINVAL


def test_submitter_is_woken_exactly_once():
    """Spec §4.5: service_operation returns once; the submitter is woken a single time with its result."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    w.answer(w.read_op())
    w.advance(100)
    assert w.wakes(op) == 1


# --- signals ------------------------------------------------------------------------------------------


def test_interruptible_wait_ends_with_eintr_on_any_signal():
    """Spec §4.3, §4.5 step 6: INTERRUPTIBLE waits end on any signal with EINTR."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    assert w.signal(op) is True
    assert op.result == -errno.EINTR


def test_interruptible_wait_ends_with_eintr_on_a_fatal_signal():
    """Spec §4.5 step 6: a fatal signal also ends an INTERRUPTIBLE wait."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    assert w.signal(op, fatal=True) is True
    assert op.result == -errno.EINTR


def test_killable_wait_ignores_ordinary_signals():
    """Spec §4.3, §4.5 step 6: without INTERRUPTIBLE only fatal signals end the wait."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    assert w.signal(op) is False
    assert op.result is None
    w.answer(w.read_op())
    assert op.result == 0


def test_killable_wait_ends_with_eintr_on_a_fatal_signal():
    """Spec §4.5 step 6: a non-interruptible (killable) wait ends with EINTR when the caller is killed."""
    w = _daemon()
    op = w.submit(OpCode.PARAM)
    assert w.signal(op, fatal=True) is True
    assert op.result == -errno.EINTR


def test_writeback_wait_ignores_even_fatal_signals():
    """Spec §4.3, §4.5 step 6: WRITEBACK ops wait uninterruptibly (I/O wait)."""
    w = _daemon()
    w.mount(7)
    op = w.submit(OpCode.SETATTR, fs_id=7, flags=WRITEBACK)
    assert w.signal(op, fatal=True) is False
    assert w.signal(op) is False
    assert op.result is None
    w.answer(w.read_op())
    assert op.result == 0


def test_writeback_wins_over_interruptible_for_the_wait():
    """Spec §4.5 step 6: WRITEBACK is checked first, so WRITEBACK|INTERRUPTIBLE still waits uninterruptibly."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=WRITEBACK | INTR)
    assert w.signal(op) is False
    assert w.signal(op, fatal=True) is False
    assert op.result is None


def test_signal_while_waiting_unlinks_the_op_from_the_request_list():
    """Spec §4.9: a given-up WAITING op is unlinked from the request list and never read."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    w.signal(op)
    assert op.state == OpState.WAITING | OpState.GIVEN_UP
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_signal_while_in_progress_unlinks_the_op_from_its_bucket():
    """Spec §4.9: a given-up INPROGR op is unlinked from its in-progress bucket; its downcall is then discarded."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    frame = w.read_op()
    w.signal(op)
    assert op.state == OpState.INPROGR | OpState.GIVEN_UP
    assert len(w.k.in_progress) == 0
    assert w.answer(frame) == 8240
    assert op.result == -errno.EINTR


# --- outcome classification order (§4.6) ----------------------------------------------------------------


def test_serviced_is_classified_before_a_later_signal():
    """Spec §4.6: a wait that ended SERVICED returns the status; a signal afterwards changes nothing."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    w.answer(w.read_op())
    assert w.signal(op, fatal=True) is False
    assert op.result == 0


def test_serviced_is_classified_before_an_overdue_timeout():
    """Spec §4.6: SERVICED is checked first, so a downcall that lands after the deadline but before the wake-up wins."""
    w = World()
    op = w.submit(OpCode.PARAM)
    w.client_open()
    frame = w.read_op()
    w.now = 25  # past the 20 s deadline; the timer has not been handled yet
    w.answer(frame)
    w.advance(0)
    assert op.result == 0


def test_purged_is_classified_before_an_overdue_timeout():
    """Spec §4.6: PURGED is checked before the timeout, so a purge after an unhandled deadline gives EAGAIN (a retry)."""
    w = World()
    op = w.submit(OpCode.PARAM)
    w.client_open()
    w.read_op()
    w.now = 25
    w.release()
    assert op.result is None  # EAGAIN: re-queued, not ETIMEDOUT
    assert op.attempts == 1
    assert w.queued() == [op]


def test_interrupted_op_is_not_purged_later():
    """Spec §4.6, §4.9: once EINTR has been returned the op is off every list, so a release does not touch it."""
    w = _daemon()
    op = w.submit(OpCode.PARAM, flags=INTR)
    w.read_op()
    w.signal(op)
    w.release()
    assert op.result == -errno.EINTR
    assert not op.state & OpState.PURGED
    assert w.queued() == []


def test_timed_out_op_ignores_a_later_signal():
    """Spec §4.6: after ETIMEDOUT the wait is over; a signal changes nothing."""
    w = World()
    op = w.submit(OpCode.PARAM, flags=INTR)
    w.advance(20)
    assert w.signal(op) is False
    assert op.result == -errno.ETIMEDOUT


# --- the request mutex (§4.5 steps 3 and 5) -----------------------------------------------------------


def test_normal_submission_waits_for_the_request_mutex():
    """Spec §4.5 step 3, §4.12: while REMOUNT_ALL holds the request mutex a normal op is not queued."""
    w = _remounting()
    op = w.submit(OpCode.PARAM)
    assert op not in w.queued()
    assert op.state == 0


def test_interruptible_mutex_wait_fails_with_eintr_and_the_op_is_never_queued():
    """Spec §4.5 step 3: an interrupted mutex acquisition returns EINTR; the op was never queued."""
    w = _remounting()
    op = w.submit(OpCode.PARAM, flags=INTR)
    assert w.signal(op) is True
    assert op.result == -errno.EINTR
    w.answer(w.read_op(), fs_id=7, id=2)  # finish the FS_MOUNT; remount releases the mutex
    while w.queued_types() == [OpCode.FEATURES]:
        w.answer(w.read_op(), features=0)
    assert op not in w.queued()


def test_killable_mutex_wait_ignores_ordinary_signals():
    """Spec §4.5 step 3: without INTERRUPTIBLE the mutex is taken killably; an ordinary signal does not end it."""
    w = _remounting()
    op = w.submit(OpCode.PARAM)
    assert w.signal(op) is False
    assert op.result is None


def test_killable_mutex_wait_ends_on_a_fatal_signal():
    """Spec §4.5 step 3: a killable mutex acquisition fails with EINTR when the caller is killed."""
    w = _remounting()
    op = w.submit(OpCode.PARAM)
    assert w.signal(op, fatal=True) is True
    assert op.result == -errno.EINTR


def test_writeback_mutex_wait_is_killable():
    """Spec §4.5 step 3: the mutex is taken "interruptible or killable per flags"; WRITEBACK only changes the wait of step 6."""
    w = _remounting()
    w.k.mounts[0].pending = False
    op = w.submit(OpCode.SETATTR, fs_id=7, flags=WRITEBACK)
    assert w.signal(op, fatal=True) is True
    assert op.result == -errno.EINTR


def test_no_mutex_op_is_not_held_off_by_the_request_mutex():
    """Spec §4.3, §4.5 step 3: ORANGEFS_OP_NO_MUTEX skips the request mutex."""
    w = _remounting()
    op = w.submit(OpCode.PARAM, flags=OpFlags.NO_MUTEX)
    assert op in w.queued()


def test_writeback_interruptible_mutex_wait_ends_on_an_ordinary_signal():
    """Spec §4.5 step 3: with INTERRUPTIBLE the mutex is taken interruptibly, WRITEBACK or not."""
    w = _remounting()
    op = w.submit(OpCode.PARAM, flags=WRITEBACK | INTR)
    assert w.signal(op) is True
    assert op.result == -errno.EINTR
