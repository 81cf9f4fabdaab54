"""poll on the device (spec §1.5)."""

from .harness import OpCode, World


def test_poll_is_not_readable_with_an_empty_request_list():
    """Spec §1.5: POLLIN is reported only while the request list is non-empty."""
    w = World()
    w.client_open()
    assert w.k.dev_poll() is False


def test_poll_is_readable_once_an_op_is_queued():
    """Spec §1.5: a non-empty request list reports POLLIN."""
    w = World()
    w.client_open()
    w.submit(OpCode.PARAM)
    assert w.k.dev_poll() is True


def test_poll_goes_quiet_after_the_last_op_is_read():
    """Spec §1.5: once the request list is empty again there is no POLLIN (in-progress ops do not count)."""
    w = World()
    w.client_open()
    w.submit(OpCode.PARAM)
    w.read_op()
    assert w.k.dev_poll() is False


def test_poll_is_readable_even_if_every_queued_op_would_be_skipped():
    """Spec §1.5: POLLIN is raised even when read would skip every op (mount pending / unknown fs) and return EAGAIN."""
    w = World()
    w.client_open()
    w.mount(7).pending = True
    w.submit(OpCode.GETATTR, fs_id=7)
    w.submit(OpCode.LOOKUP, fs_id=99)
    assert w.k.dev_poll() is True
    assert w.read_all() == []
    assert w.k.dev_poll() is True


def test_queueing_an_op_wakes_pollers():
    """Spec §1.5, §4.5 step 4: service_operation wakes the request-list wait queue when it queues an op."""
    w = World()
    w.client_open()
    w.submit(OpCode.PARAM)
    w.submit(OpCode.PARAM)
    assert w.poll_wakes == 2


def test_queueing_without_a_daemon_also_wakes_pollers():
    """Spec §4.5 step 4: pollers are woken whenever service_operation links an op, daemon or not."""
    w = World()
    w.submit(OpCode.PARAM)
    assert w.poll_wakes == 1


def test_queueing_a_cancel_does_not_wake_pollers():
    """Spec §1.5, §4.10 step 3: a CANCEL is linked at the head without waking pollers; the next poll still sees it."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=1)
    w.read_op()
    wakes = w.poll_wakes
    w.signal(io)
    assert w.k.cancel_io(io, w.now)
    assert w.poll_wakes == wakes
    assert w.k.dev_poll() is True


def test_an_interrupted_waiting_op_no_longer_makes_the_device_readable():
    """Spec §4.9, §1.5: a given-up WAITING op is unlinked from the request list, so poll no longer reports it."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM, flags=1)
    w.signal(op)
    assert w.k.dev_poll() is False


def test_poll_can_report_pollin_after_a_release():
    """Spec §1.5, §1.6: after a release purged ops are re-queued as retries, so the list is non-empty again."""
    w = World()
    w.client_open()
    w.submit(OpCode.PARAM)
    w.release()
    assert w.k.dev_poll() is True


def test_requeued_retry_wakes_pollers():
    """Spec §4.5 steps 4 and 9: a purged non-slot op goes back through step 4, which wakes pollers."""
    w = World()
    w.client_open()
    w.submit(OpCode.PARAM)
    w.read_op()
    before = w.poll_wakes
    w.release()
    assert w.poll_wakes == before + 1
