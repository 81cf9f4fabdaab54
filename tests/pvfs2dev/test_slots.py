"""The I/O and readdir slot maps (spec §5.2, with §1.6 and §5.1)."""

import errno

import pytest

from pvfs2dev.bufmap import SlotWaiter

from .harness import World


def _mapped(count=4, **kw):
    w = World(**kw)
    w.start_client(count=count)
    return w


@pytest.mark.parametrize("which", ["io", "readdir"])
def test_counter_is_minus_one_before_any_buffer(which):
    """Spec §5.2: c = −1 means no buffer installed (the initial state), for both maps."""
    w = World()
    slots = w.k.io_slots if which == "io" else w.k.readdir_slots
    assert slots.c == -1


def test_get_takes_the_lowest_free_index_and_decrements_c():
    """Spec §5.2: get with c > 0 does c−1 and takes the lowest free index."""
    w = _mapped(4)
    assert [w.get_slot() for _ in range(3)] == [0, 1, 2]
    assert w.k.io_slots.c == 1


def test_put_frees_the_slot_and_increments_c():
    """Spec §5.2: put clears the bit and does c+1; the freed index is the lowest free one again."""
    w = _mapped(4)
    for _ in range(3):
        w.get_slot()
    w.put_slot(1)
    assert w.k.io_slots.c == 2
    assert w.get_slot() == 1
    assert w.get_slot() == 3


def test_get_with_every_slot_busy_waits():
    """Spec §5.2: c = 0 means all slots busy; get waits."""
    w = _mapped(2)
    w.get_slot(), w.get_slot()
    assert w.k.io_slots.c == 0
    waiter = w.get_slot()
    assert isinstance(waiter, SlotWaiter)
    assert waiter.result is None


def test_put_wakes_one_waiter_which_takes_the_slot():
    """Spec §5.2: put wakes one waiter when slots are free; it takes the slot (c back to 0)."""
    w = _mapped(1)
    slot = w.get_slot()
    waiter = w.get_slot()
    woken = []
    waiter.wake = lambda: woken.append(waiter.result)
    w.put_slot(slot)
    assert woken == [0]
    assert w.k.io_slots.c == 0


def test_waiters_are_served_in_fifo_order():
    """Spec §5.2: waiting is an exclusive FIFO wait."""
    w = _mapped(1)
    slot = w.get_slot()
    first, second, third = (w.get_slot() for _ in range(3))
    w.put_slot(slot)
    assert (first.result, second.result, third.result) == (0, None, None)
    w.put_slot(first.result)
    assert (second.result, third.result) == (0, None)
    w.put_slot(second.result)
    assert third.result == 0


def test_a_signal_ends_a_slot_wait_with_eintr():
    """Spec §5.2: the wait is interruptible (EINTR); the next waiter is served as usual."""
    w = _mapped(1)
    slot = w.get_slot()
    a, b = w.get_slot(), w.get_slot()
    assert w.k.io_slots.cancel_wait(a, errno.EINTR)
    assert a.result == -errno.EINTR
    w.put_slot(slot)
    assert b.result == 0


def test_slot_wait_with_a_buffer_times_out_after_slot_timeout_secs():
    """Spec §5.2, §2.4: with a buffer installed the overall budget is slot_timeout_secs (900 s) → ETIMEDOUT."""
    w = _mapped(1)
    w.get_slot()
    waiter = w.get_slot()
    w.advance(899.9)
    assert waiter.result is None
    w.advance(0.1)
    assert waiter.result == -errno.ETIMEDOUT


def test_slot_timeout_follows_the_parameter():
    """Spec §2.4, §6.1: the budget is the slot_timeout_secs knob."""
    w = _mapped(1, slot_timeout_secs=60)
    w.get_slot()
    waiter = w.get_slot()
    w.advance(60)
    assert waiter.result == -errno.ETIMEDOUT


def test_slot_wait_without_a_buffer_gives_up_after_30_seconds():
    """Spec §5.2, §2.4: while there is no buffer each sleep is capped at 30 s; a whole 30 s without one → ETIMEDOUT."""
    w = World()
    waiter = w.get_slot()
    assert isinstance(waiter, SlotWaiter)
    w.advance(29.9)
    assert waiter.result is None
    w.advance(0.1)
    assert waiter.result == -errno.ETIMEDOUT


def test_no_buffer_cap_never_exceeds_the_budget():
    """Spec §5.2: the overall budget still applies; with slot_timeout_secs < 30 the wait ends at the budget."""
    w = World(slot_timeout_secs=10)
    waiter = w.get_slot()
    w.advance(10)
    assert waiter.result == -errno.ETIMEDOUT


def test_readdir_slot_wait_without_a_buffer_also_gives_up_after_30_seconds():
    """Spec §5.4: readdir slots come with MAP, so readdir stalls ≤ 30 s, then ETIMEDOUT, if no buffer is registered."""
    w = World()
    waiter = w.get_slot("readdir")
    w.advance(30)
    assert waiter.result == -errno.ETIMEDOUT


def test_installing_a_buffer_wakes_waiters_in_order():
    """Spec §4.12 step 2, §5.1: MAP installs fresh slot maps and wakes slot waiters, which take slots in FIFO order."""
    w = World()
    w.client_open()
    waiters = [w.get_slot() for _ in range(3)]
    w.advance(10)
    w.map_buffer(count=2)
    assert [x.result for x in waiters] == [0, 1, None]
    assert w.k.io_slots.c == 0


def test_waiter_left_over_after_install_keeps_the_full_budget():
    """Spec §5.2: once a buffer exists the 30 s no-buffer cap no longer applies; the rest of the budget does."""
    w = World()
    w.client_open()
    waiters = [w.get_slot() for _ in range(2)]
    w.advance(10)
    w.map_buffer(count=1)
    w.advance(100)
    assert waiters[1].result is None
    w.put_slot(waiters[0].result)
    assert waiters[1].result == 0


def test_budget_counts_from_the_start_of_the_wait():
    """Spec §5.2: slot_timeout_secs is an overall budget, not per sleep: time spent before the install counts."""
    w = World(slot_timeout_secs=100)
    w.client_open()
    waiters = [w.get_slot() for _ in range(2)]
    w.advance(20)
    w.map_buffer(count=1)
    w.advance(79.9)
    assert waiters[1].result is None
    w.advance(0.1)
    assert waiters[1].result == -errno.ETIMEDOUT


def test_teardown_subtracts_count_plus_one():
    """Spec §5.2: teardown does c ← c − (count+1), so in-use slots keep c below −1; −(c+1) slots are still held."""
    w = _mapped(4)
    held = [w.get_slot(), w.get_slot()]
    w.release()
    assert w.k.io_slots.c == 2 - 5 == -3
    assert -(w.k.io_slots.c + 1) == len(held)
    w.put_slot(held[0])
    assert w.k.io_slots.c == -2
    w.put_slot(held[1])
    assert w.k.io_slots.c == -1


def test_teardown_with_no_slot_in_use_ends_at_minus_one():
    """Spec §5.2: with nothing held, teardown takes c from count straight to −1."""
    w = _mapped(4)
    w.release()
    assert w.k.io_slots.c == -1
    assert w.k.readdir_slots.c == -1


def test_get_during_teardown_waits_for_a_new_buffer():
    """Spec §5.2: c < −1 (being torn down) is c ≤ 0, so get waits, with the 30 s no-buffer cap."""
    w = _mapped(1)
    slot = w.get_slot()
    w.release()
    waiter = w.get_slot()
    assert isinstance(waiter, SlotWaiter)
    w.put_slot(slot)
    assert waiter.result is None
    w.advance(30)
    assert waiter.result == -errno.ETIMEDOUT


def test_teardown_finishing_wakes_every_waiter_into_the_no_buffer_wait():
    """Spec §5.2: when c reaches −1 during teardown everyone is woken; they then wait ≤ 30 s for a new buffer."""
    w = _mapped(1)
    slot = w.get_slot()
    waiters = [w.get_slot(), w.get_slot()]  # waiting with a buffer: 900 s budget
    w.advance(5)
    w.release()
    w.advance(5)
    w.put_slot(slot)  # t=10: c reaches −1
    w.advance(29.9)
    assert all(x.result is None for x in waiters)
    w.advance(0.1)
    assert [x.result for x in waiters] == [-errno.ETIMEDOUT] * 2


def test_waiters_from_before_a_restart_get_slots_from_the_new_buffer():
    """Spec §4.11, §5.2: a caller waiting across a client-core restart takes a slot from the newly mapped buffer."""
    w = _mapped(1)
    slot = w.get_slot()
    waiter = w.get_slot()
    w.release()
    w.put_slot(slot)
    w.advance(10)
    w.start_client(count=2)
    assert waiter.result == 0
    assert w.k.io_slots.c == 1


def test_readdir_map_has_five_slots_with_the_same_rules():
    """Spec §5.1, §5.4: the readdir map has 5 slots and the same counter semantics."""
    w = _mapped(1)
    got = [w.get_slot("readdir") for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]
    waiter = w.get_slot("readdir")
    assert isinstance(waiter, SlotWaiter)
    w.put_slot(3, "readdir")
    assert waiter.result == 3


def test_set_slot_writes_buf_index_into_the_upcall():
    """Spec §3.2, §5.3 step 2, §5.4: the slot index travels in io.buf_index / readdir.buf_index."""
    from .harness import OpCode
    w = _mapped(4)
    w.get_slot()
    w.get_slot()
    slot = w.get_slot()
    io = w.submit_io(slot)
    rslot = w.get_slot("readdir")
    rd = w.new(OpCode.READDIR, fs_id=0)
    w.k.set_slot(rd, rslot)
    w.k.service(rd, w.now)
    frames = {f.tag: f for f in w.read_all()}
    assert frames[io.tag].upcall.req.io.buf_index == 2
    assert frames[rd.tag].upcall.req.readdir.buf_index == 0
