"""Registering the shared buffer with ioctl MAP (spec §5.1)."""

import errno

import pytest

from .harness import MiB, World


def _map_errno(w, **kw):
    with pytest.raises(OSError) as exc:
        w.k.dev_map(w.map_desc(**kw))
    return exc.value.errno


def test_map_installs_the_io_map_and_five_readdir_slots():
    """Spec §5.1: on success the kernel installs an I/O map of `count` slots and a readdir map of 5."""
    w = World()
    w.client_open()
    w.map_buffer(count=3, size=4 * MiB)
    assert w.k.io_slots.c == 3
    assert w.k.readdir_slots.c == 5


@pytest.mark.parametrize("field", ["total_size", "size", "count"])
def test_map_negative_geometry_is_einval(field):
    """Spec §5.1: total_size, size or count negative → EINVAL."""
    w = World()
    w.client_open()
    kw = {"count": 4, "size": 4096, "total_size": 4 * 4096}
    kw[field] = -kw[field]
    assert _map_errno(w, **kw) == errno.EINVAL


def test_map_unaligned_pointer_is_einval():
    """Spec §5.1: ptr not page aligned → EINVAL."""
    w = World()
    w.client_open()
    assert _map_errno(w, ptr=0x7F0000000010) == errno.EINVAL


def test_map_unaligned_end_is_einval():
    """Spec §5.1: ptr + total_size not page aligned → EINVAL."""
    w = World()
    w.client_open()
    assert _map_errno(w, count=1, size=4096, total_size=4096 + 100) == errno.EINVAL


def test_map_total_size_must_equal_size_times_count():
    """Spec §5.1: total_size ≠ size × count → EINVAL."""
    w = World()
    w.client_open()
    assert _map_errno(w, count=4, size=4096, total_size=8 * 4096) == errno.EINVAL


def test_map_slot_size_must_be_a_page_multiple():
    """Spec §5.1: size not a multiple of PAGE_SIZE (4096) → EINVAL (even when total_size is page aligned)."""
    w = World()
    w.client_open()
    assert _map_errno(w, count=2, size=6144) == errno.EINVAL


def test_second_map_is_einval():
    """Spec §5.1: a buffer is already registered → EINVAL, and the first map stays."""
    w = World()
    w.client_open()
    w.map_buffer(count=4)
    assert _map_errno(w, count=2) == errno.EINVAL
    assert w.k.io_slots.count == 4


def test_map_unreadable_argument_is_eio():
    """Spec §1.7: MAP → EIO if the 24-byte struct cannot be read."""
    w = World()
    w.client_open()
    with pytest.raises(OSError) as exc:
        w.k.dev_map(w.map_desc()[:16])
    assert exc.value.errno == errno.EIO


def test_map_does_not_require_a_power_of_two_slot_size():
    """Spec §5.1: the kernel does not check for a power-of-two slot size (userspace does)."""
    w = World()
    w.client_open()
    w.map_buffer(count=2, size=3 * 4096)
    assert w.k.io_slots.c == 2


def test_map_does_not_cap_the_total_size():
    """Spec §5.1: no maximum total is checked by the kernel (userspace enforces < 128 MiB)."""
    w = World()
    w.client_open()
    w.map_buffer(count=64, size=4 * MiB)  # 256 MiB
    assert w.k.io_slots.c == 64


def test_map_accepts_a_single_slot():
    """Spec §5.1: no minimum count beyond non-negative is checked."""
    w = World()
    w.client_open()
    w.map_buffer(count=1, size=4096)
    assert w.k.io_slots.c == 1


def test_map_is_allowed_again_after_a_finished_release():
    """Spec §1.6 step 6, §4.12 step 2: release frees the buffer, so the next client-core can MAP a new one."""
    w = World()
    w.start_client(count=2)
    w.release()
    assert w.releases_done == 1
    assert w.k.io_slots.c == -1 and w.k.readdir_slots.c == -1
    w.client_open()
    w.map_buffer(count=8)
    assert w.k.io_slots.c == 8
    assert w.k.readdir_slots.c == 5
