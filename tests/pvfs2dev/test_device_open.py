"""Opening /dev/pvfs2-req (spec §1.2, with the release interplay of §1.6)."""

import errno
import os

import pytest

from .harness import DeviceError, OpCode, World


def test_open_without_o_nonblock_is_einval():
    """Spec §1.2: a file not opened with O_NONBLOCK gets EINVAL."""
    w = World()
    with pytest.raises(DeviceError) as exc:
        w.client_open(os.O_RDWR)
    assert exc.value.errno == errno.EINVAL
    assert w.k.open_count == 0
    assert not w.k.daemon_in_service


def test_open_with_o_nonblock_puts_the_daemon_in_service():
    """Spec §1.2: a successful open makes the open count 1, i.e. the daemon is in service."""
    w = World()
    assert w.client_open(os.O_RDWR | os.O_NONBLOCK) is True
    assert w.k.open_count == 1
    assert w.k.daemon_in_service


def test_second_open_is_eacces():
    """Spec §1.2: single opener only; opening while the count is not 0 is EACCES."""
    w = World()
    w.client_open()
    with pytest.raises(DeviceError) as exc:
        w.client_open()
    assert exc.value.errno == errno.EACCES
    assert w.k.open_count == 1


def test_o_nonblock_check_comes_before_the_single_opener_check():
    """Spec §1.2: the checks run in order, so a blocking open of an open device is EINVAL, not EACCES."""
    w = World()
    w.client_open()
    with pytest.raises(DeviceError) as exc:
        w.client_open(os.O_RDWR)
    assert exc.value.errno == errno.EINVAL


def test_open_after_a_finished_release_succeeds():
    """Spec §1.6 step 7: release sets the open count back to 0, so a new client-core may open."""
    w = World()
    w.client_open()
    w.release()
    assert w.k.open_count == 0
    assert w.client_open() is True
    assert w.k.daemon_in_service


def test_open_during_a_release_blocks_until_the_release_has_finished():
    """Spec §1.2: an open racing a close blocks on the device mutex until the purge has finished, then succeeds."""
    w = World()
    w.client_open()
    w.map_buffer()
    slot = w.get_slot()
    w.release()  # waits for the slot (§1.6 step 6)
    assert w.client_open() is False  # would block
    assert w.k.open_count == -1
    w.put_slot(slot)
    assert w.releases_done == 1
    assert w.client_open() is True
    assert w.k.open_count == 1


def test_open_without_o_nonblock_during_a_release_is_still_einval():
    """Spec §1.2: the O_NONBLOCK check precedes the device mutex the release holds."""
    w = World()
    w.client_open()
    w.map_buffer()
    slot = w.get_slot()
    w.release()
    with pytest.raises(DeviceError) as exc:
        w.client_open(os.O_RDWR)
    assert exc.value.errno == errno.EINVAL
    w.put_slot(slot)


def test_daemon_counts_as_absent_while_a_release_runs():
    """Spec §1.2: during release the count is -1, so "daemon in service" (count == 1) is false."""
    w = World()
    w.client_open()
    w.map_buffer()
    slot = w.get_slot()
    w.release()
    assert w.k.open_count == -1
    assert not w.k.daemon_in_service
    # An op submitted now is queued as if no daemon were there: it gets op_timeout_secs (§4.5 step 4).
    op = w.submit(OpCode.STATFS, fs_id=0)
    assert op.deadline == pytest.approx(w.now + 20)
    w.put_slot(slot)


def test_open_count_gates_daemon_in_service_for_new_ops():
    """Spec §1.2, §4.5 step 4: with the device open an op's wait has no timeout."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    assert op.deadline is None
    assert w.k.next_deadline() is None


def test_nonblock_flag_alone_is_enough():
    """Spec §1.2: only O_NONBLOCK is checked; the access mode is not (the client uses O_RDWR|O_NONBLOCK)."""
    w = World()
    assert w.client_open(os.O_RDONLY | os.O_NONBLOCK) is True
