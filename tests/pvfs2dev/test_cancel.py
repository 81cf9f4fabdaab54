"""Cancellation of interrupted I/O (spec §4.10, with §1.4 and §1.6)."""

import errno

import pytest

from pvfs2proto import OpFlags, OpState

from .harness import DeviceError, OpCode, World

INTR = OpFlags.INTERRUPTIBLE


def _interrupted_io(count=4):
    """A daemon has read a FILE_IO holding slot 0; its caller was interrupted; the I/O is now a CANCEL."""
    w = World()
    w.start_client(count=count)
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    io_frame = w.read_op()
    assert w.signal(io)
    assert io.result == -errno.EINTR
    assert w.k.cancel_io(io, w.now) is True
    return w, io, io_frame, slot


def test_interrupted_in_progress_io_becomes_a_cancel():
    """Spec §4.10: a FILE_IO that fails after the daemon read it is turned into a CANCEL carrying the I/O's tag in op_tag."""
    w, io, _, _ = _interrupted_io()
    frame = w.read_op()
    assert frame.upcall.type == OpCode.CANCEL
    assert frame.upcall.req.cancel.op_tag == io.tag


def test_cancel_gets_a_new_tag():
    """Spec §4.4, §4.10 step 1: a new tag is assigned when the op is converted into a cancel."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    w.read_op()
    other = w.new(OpCode.PARAM)  # takes the next tag
    w.signal(io)
    w.k.cancel_io(io, w.now)
    frame = w.read_op()
    assert frame.tag == other.tag + 1
    assert frame.tag != io.tag


def test_cancel_upcall_is_zeroed_but_for_type_and_op_tag():
    """Spec §1.3, §4.10 step 1: the upcall is zeroed; only type and cancel.op_tag are set (no creds, no slot index)."""
    w = World()
    w.start_client()
    w.get_slot()
    slot = w.get_slot()  # slot 1, so buf_index would be non-zero if copied
    io = w.submit_io(slot, flags=INTR, uid=1000, gid=100, pid=42, tgid=42, count=8192, offset=4096)
    w.read_op()
    w.signal(io)
    w.k.cancel_io(io, w.now)
    raw = w.read_raw()
    upcall = raw[16:]
    assert int.from_bytes(upcall[0:4], "little") == OpCode.CANCEL
    assert int.from_bytes(upcall[40:48], "little") == io.tag
    assert upcall[4:40] == bytes(36)
    assert upcall[48:] == bytes(len(upcall) - 48)


def test_cancel_is_queued_at_the_head():
    """Spec §4.4, §4.10 step 3: the CANCEL is linked at the head of the request list, ahead of waiting ops."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    w.read_op()
    queued = [w.submit(OpCode.PARAM) for _ in range(2)]
    w.signal(io)
    w.k.cancel_io(io, w.now)
    order = [f.upcall.type for f in w.read_all()]
    assert order == [OpCode.CANCEL, OpCode.PARAM, OpCode.PARAM]
    assert all(op.state == OpState.INPROGR for op in queued)


def test_cancel_does_not_wake_pollers():
    """Spec §1.5, §4.10 step 3: queueing a cancel does not wake the request-list wait queue."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    w.read_op()
    before = w.poll_wakes
    w.signal(io)
    w.k.cancel_io(io, w.now)
    assert w.poll_wakes == before
    assert w.k.dev_poll() is True


def test_cancel_keeps_the_io_slot_until_answered():
    """Spec §4.10 steps 3–4: the I/O caller returns without releasing the slot; the CANCEL's downcall frees it."""
    w, io, _, slot = _interrupted_io(count=1)
    assert w.k.io_slots.c == 0
    waiter = w.get_slot()
    assert not isinstance(waiter, int)
    frame = w.read_op()
    assert w.k.io_slots.c == 0 and waiter.result is None
    assert w.answer(frame) == 8240
    assert waiter.result == slot


def test_reply_to_the_original_io_tag_is_discarded():
    """Spec §4.10, §7: a later reply for the original I/O tag matches nothing; it neither frees the slot nor fails."""
    w, io, io_frame, _ = _interrupted_io(count=1)
    assert w.answer(io_frame, amt_complete=4096) == 8240
    assert w.k.io_slots.c == 0
    assert io.result == -errno.EINTR


def test_cancel_reply_content_is_ignored():
    """Spec §3.3, §4.10 step 4: any downcall content for the cancel's tag completes it (here an error status)."""
    w, io, _, _ = _interrupted_io(count=1)
    frame = w.read_op()
    assert w.reply(frame.tag, OpCode.CANCEL, err=errno.EINTR) == 8240
    assert w.k.io_slots.c == 1


def test_malformed_cancel_reply_still_frees_the_slot():
    """Spec §1.4 steps 9 and 13: a body check failing after the tag lookup still completes the op — for a cancel, frees it."""
    w, io, _, _ = _interrupted_io(count=1)
    frame = w.read_op()
    with pytest.raises(OSError) as exc:
        w.reply(frame.tag, OpCode.CANCEL, trailer=b"\0" * 32)
    assert exc.value.errno == errno.EFAULT
    assert w.k.io_slots.c == 1


def test_cancel_reply_with_a_bad_head_leaves_the_slot_stuck():
    """Spec §4.10 step 4: the cancel's downcall must still pass the length, version and magic checks, else the cancel stays."""
    w, io, _, _ = _interrupted_io(count=1)
    frame = w.read_op()
    for bad in (dict(magic=0), dict(version=20902)):
        with pytest.raises(OSError) as exc:
            w.reply(frame.tag, OpCode.CANCEL, **bad)
        assert exc.value.errno == errno.EPROTO
    with pytest.raises(OSError) as exc:
        w.write(w.frame(frame.tag, OpCode.CANCEL)[:8000])
    assert exc.value.errno == errno.EFAULT
    assert w.k.io_slots.c == 0
    assert w.answer(frame) == 8240
    assert w.k.io_slots.c == 1


def test_cancel_waiting_on_the_request_list_is_freed_by_release():
    """Spec §1.6 step 4: a waiting CANCEL is unlinked and freed on release, releasing its I/O slot."""
    w, io, _, _ = _interrupted_io()
    w.release()
    assert w.k.io_slots.c == -1
    assert w.releases_done == 1
    assert w.queued() == []


def test_cancel_in_progress_is_freed_by_release():
    """Spec §1.6 step 5: the in-progress table is purged the same way, so a read but unanswered CANCEL is freed too."""
    w, io, _, _ = _interrupted_io()
    w.read_op()
    w.release()
    assert w.releases_done == 1
    assert len(w.k.in_progress) == 0


def test_cancel_is_not_retried_after_release():
    """Spec §1.6 step 4: a purged CANCEL is freed, not re-queued; the next daemon never sees it."""
    w, io, _, _ = _interrupted_io()
    w.release()
    w.client_open()
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_io_interrupted_while_still_waiting_is_not_cancelled():
    """Spec §4.10: only an op that reached INPROGR becomes a CANCEL; otherwise the I/O path frees its slot itself."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    w.signal(io)
    assert w.k.cancel_io(io, w.now) is False
    assert w.queued() == []


def test_io_that_timed_out_in_progress_is_cancelled():
    """Spec §4.10: any error after the daemon read the I/O (here ETIMEDOUT of an op queued without a daemon) leads to a CANCEL."""
    w = World()
    w.mount(7)
    io = w.submit_io(None, fs_id=0)  # queued before any daemon: 20 s timeout
    w.start_client()
    w.read_op()
    w.advance(20)
    assert io.result == -errno.ETIMEDOUT
    assert w.k.cancel_io(io, w.now) is True
    assert w.queued_types() == [OpCode.CANCEL]


def test_no_cancel_is_sent_without_a_daemon():
    """Spec §4.10 step 2: if the daemon is not in service, nothing is sent and the I/O path frees the slot."""
    w = World()
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR)
    w.read_op()
    w.signal(io)
    w.release()  # waits for the slot the I/O caller still holds
    assert w.k.cancel_io(io, w.now) is False
    assert w.queued() == []
    w.put_slot(slot)
    assert w.releases_done == 1


def test_cancel_is_never_filtered_by_mount_state():
    """Spec §4.7: CANCEL carries no fs_id, so it is read even when the I/O's filesystem is mount pending."""
    w = World()
    m = w.mount(7)
    w.start_client()
    slot = w.get_slot()
    io = w.submit_io(slot, flags=INTR, fs_id=7)
    w.read_op()
    w.signal(io)
    w.k.cancel_io(io, w.now)
    m.pending = True
    assert w.read_op().upcall.type == OpCode.CANCEL
