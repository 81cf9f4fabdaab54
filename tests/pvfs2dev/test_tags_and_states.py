"""Tags, op states and the in-progress table (spec §4.2, §4.4)."""

import pytest

from pvfs2dev.lists import InProgressTable
from pvfs2dev.op import Op, TransitionError
from pvfs2proto import OpFlags, OpState, state_names

from .harness import OpCode, World

W, I, S, P, G = OpState.WAITING, OpState.INPROGR, OpState.SERVICED, OpState.PURGED, OpState.GIVEN_UP


def test_first_tag_is_100():
    """Spec §2.4, §4.4: the global tag counter starts at 100."""
    w = World()
    assert w.new(OpCode.PARAM).tag == 100


def test_tags_increase_by_one_per_allocated_op():
    """Spec §4.4: the counter increments once per allocated op, whether or not it is submitted."""
    w = World()
    tags = [w.new(OpCode.PARAM).tag for _ in range(3)] + [w.submit(OpCode.PARAM).tag]
    assert tags == [100, 101, 102, 103]


def test_converting_an_op_into_a_cancel_takes_one_more_tag():
    """Spec §4.4: the counter increments once more when an op is converted into a cancel."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=OpFlags.INTERRUPTIBLE)
    w.read_op()
    w.signal(io)
    w.k.cancel_io(io, w.now)
    assert w.read_op().tag == 101
    assert w.new(OpCode.PARAM).tag == 102


def test_cancel_conversion_takes_a_tag_even_when_nothing_is_sent():
    """Spec §4.10 steps 1–2: the new tag is assigned before the daemon check, so it is consumed even without a daemon."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=OpFlags.INTERRUPTIBLE)
    w.read_op()
    w.signal(io)
    w.release()
    assert w.k.cancel_io(io, w.now) is False
    assert w.new(OpCode.PARAM).tag == 102
    w.put_slot(slot)


def test_tag_counter_wrapping_to_zero_restarts_at_100():
    """Spec §4.4: if the 64-bit counter wraps to 0 it restarts at 100."""
    w = World()
    w.k._next_tag = 2**64 - 2
    assert [w.new(OpCode.PARAM).tag for _ in range(3)] == [2**64 - 2, 2**64 - 1, 100]


def test_retries_keep_their_tag():
    """Spec §4.4, §4.5 step 9: a retried op is the same op with the same tag."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    first = w.read_op().tag
    w.release()
    w.client_open()
    assert w.read_op().tag == first == op.tag


# --- the state machine --------------------------------------------------------------------------------


def _op(state):
    return Op(tag=1, type=OpCode.PARAM, upcall=bytearray(8528), state=state)


@pytest.mark.parametrize("event, before, after", [
    ("queue", 0, W),
    ("read", W, I),
    ("service", I, S),
    ("purge", W, W | P),
    ("purge", I, I | P),
    ("give_up", W, W | G),
    ("give_up", I, I | G),
    ("give_up", W | P, W | P | G),
    ("give_up", I | P, I | P | G),
    ("queue", W | P | G, W),
    ("queue", I | P | G, W),
    ("queue", I | G, W),
])
def test_kernel_transitions_are_allowed(event, before, after):
    """Spec §4.2: WAITING/INPROGR/SERVICED are assigned (replacing the value), PURGED and GIVEN_UP are OR-ed on."""
    op = _op(before)
    op.transition(event)
    assert op.state == after


@pytest.mark.parametrize("event, before", [
    ("read", I),
    ("read", S),
    ("read", 0),
    ("service", W),
    ("service", S),
    ("service", 0),
    ("purge", S),
    ("purge", 0),
    ("queue", W),
    ("queue", I),
    ("queue", S),
    ("give_up", S),
    ("read", W | P),
    ("service", I | G),
])
def test_impossible_transitions_raise_transition_error(event, before):
    """Spec §4.2: a transition the kernel never makes is a bug and raises TransitionError, leaving the state alone."""
    op = _op(before)
    with pytest.raises(TransitionError):
        op.transition(event)
    assert op.state == before


def test_composite_states_occur_during_purge_and_retry():
    """Spec §4.2: composite values such as 9 (purged while waiting) and 25 (purged, given up) occur."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    events = []
    w.k.on_trace = events.append
    w.release()
    trail = [(e.event, e.after) for e in events if e.tag == op.tag]
    assert trail == [("purge", state_names(W | P)), ("give_up", state_names(W | P | G)), ("queue", state_names(W))]


def test_in_progress_given_up_state_is_18():
    """Spec §4.2: an op given up while in progress has state 18 (INPROGR|GIVEN_UP)."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM, flags=OpFlags.INTERRUPTIBLE)
    w.read_op()
    w.signal(op)
    assert op.state == 18


# --- in-progress table ---------------------------------------------------------------------------------


def test_in_progress_bucket_is_tag_mod_hash_table_size():
    """Spec §4.4: bucket = tag mod hash_table_size (509 by default)."""
    w = World()
    assert w.k.in_progress.size == 509
    assert w.k.in_progress.bucket_of(100) == 100
    assert w.k.in_progress.bucket_of(609) == 100
    small = World(hash_table_size=7)
    assert small.k.in_progress.bucket_of(100) == 2


def test_ops_sharing_a_bucket_are_found_by_tag():
    """Spec §4.4: lookup on write scans the bucket for an equal tag."""
    w = World(hash_table_size=7)
    w.client_open()
    ops = [w.submit(OpCode.PARAM) for _ in range(8)]  # tags 100 and 107 share bucket 2
    w.read_all()
    assert w.k.in_progress.bucket_of(ops[0].tag) == w.k.in_progress.bucket_of(ops[7].tag)
    w.reply(ops[7].tag, OpCode.PARAM)
    assert ops[7].result == 0 and ops[0].result is None
    assert w.k.in_progress.find(ops[0].tag) is ops[0]


def test_in_progress_table_is_walked_bucket_by_bucket():
    """Spec §1.6 step 5, §4.4: the in-progress table is purged bucket by bucket, tails appended within a bucket."""
    w = World(hash_table_size=7)
    w.client_open()
    for _ in range(8):  # tags 100..107
        w.submit(OpCode.PARAM)
    w.read_all()
    order = [op.tag for op in w.k.in_progress]
    assert order == sorted(range(100, 108), key=lambda t: (t % 7, t))


def test_lookup_ignores_purged_and_given_up_ops():
    """Spec §1.4 step 6, §4.4: the lookup skips ops that are PURGED or GIVEN_UP."""
    table = InProgressTable(509)
    a, b, c = (Op(tag=t, type=OpCode.PARAM, upcall=bytearray(8528), state=I) for t in (100, 101, 102))
    for op in (a, b, c):
        table.add(op)
    b.state |= P
    c.state |= G
    assert table.find(100) is a
    assert table.find(101) is None
    assert table.find(102) is None

