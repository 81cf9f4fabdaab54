"""The device ioctls other than MAP and REMOUNT_ALL (spec §1.7, §3.5)."""

import errno
import struct

import pytest

from pvfs2proto.debug import ClientDebugKeyword, encode_client_debug_string
from pvfs2proto.ioctl import dev_mask2_info_s, dev_mask_info_s

from .harness import IoctlCommand, World


def _ioctl(cmd, arg=b""):
    w = World()
    w.client_open()
    return w, w.ioctl(cmd, arg)


def _errno_of(cmd, arg=b""):
    w = World()
    w.client_open()
    with pytest.raises(OSError) as exc:
        w.ioctl(cmd, arg)
    return exc.value.errno


def test_command_values_match_the_x86_64_encodings():
    """Spec §1.7: the numeric command values are the table's, whatever the direction bits claim."""
    assert IoctlCommand.GET_MAGIC == 0x40046B01
    assert IoctlCommand.GET_MAX_UPSIZE == 0x40046B02
    assert IoctlCommand.GET_MAX_DOWNSIZE == 0x40046B03
    assert IoctlCommand.MAP == 0x00006B04
    assert IoctlCommand.REMOUNT_ALL == 0x00006B05
    assert IoctlCommand.DEBUG == 0x80046B06
    assert IoctlCommand.UPSTREAM == 0x40046B07
    assert IoctlCommand.CLIENT_MASK == 0x40106B08
    assert IoctlCommand.CLIENT_STRING == 0x40086B09


def test_get_magic_stores_the_devreq_magic():
    """Spec §1.7: GET_MAGIC stores 0x20030529."""
    _, (ret, out) = _ioctl(0x40046B01)
    assert ret == 0 and struct.unpack("<i", out) == (0x20030529,)


def test_get_max_upsize_stores_8544():
    """Spec §1.7: GET_MAX_UPSIZE stores MAX_DEV_REQ_UPSIZE, 8544."""
    _, (ret, out) = _ioctl(0x40046B02)
    assert ret == 0 and struct.unpack("<i", out) == (8544,)


def test_get_max_downsize_stores_8240():
    """Spec §1.7: GET_MAX_DOWNSIZE stores MAX_DEV_REQ_DOWNSIZE, 8240."""
    _, (ret, out) = _ioctl(0x40046B03)
    assert ret == 0 and struct.unpack("<i", out) == (8240,)


def test_upstream_stores_1():
    """Spec §1.7: UPSTREAM stores 1 ("this is the upstream module")."""
    _, (ret, out) = _ioctl(0x40046B07)
    assert ret == 0 and struct.unpack("<i", out) == (1,)


def test_ioctl_of_another_type_byte_is_einval():
    """Spec §1.7: a command whose type byte is not 'k' → EINVAL."""
    assert _errno_of(0x40046A01) == errno.EINVAL


@pytest.mark.parametrize("nr", [0, 10, 11, 0xFF])
def test_ioctl_number_0_or_at_least_10_is_enotty(nr):
    """Spec §1.7: number 0 or ≥ ORANGEFS_DEV_MAXNR (10) → ENOIOCTLCMD, seen by the user as ENOTTY."""
    assert _errno_of(0x00006B00 | nr) == errno.ENOTTY


def test_type_byte_is_checked_before_the_number():
    """Spec §1.7: the type check comes first, so a bad type with a bad number is EINVAL."""
    assert _errno_of(0x00006A00) == errno.EINVAL


@pytest.mark.parametrize("cmd", [0x40046B09, 0x80046B01, 0x00006B01, 0x40086B02])
def test_ioctl_must_match_the_full_32_bit_value(cmd):
    """Spec §1.7: after the type/number checks the whole value must match exactly (e.g. a 32-bit CLIENT_STRING), else ENOTTY."""
    assert _errno_of(cmd) == errno.ENOTTY


def test_debug_kernel_mask_sets_the_kernel_debug_mask():
    """Spec §1.7: DEBUG type 0 (KERNEL_MASK) sets the kernel debug mask."""
    w, (ret, _) = _ioctl(0x80046B06, dev_mask_info_s.pack({"mask_type": 0, "mask_value": 0x0101}))
    assert ret == 0
    assert w.k.kernel_debug_mask == 0x0101


def test_debug_client_mask_type_is_accepted_without_touching_the_kernel_mask():
    """Spec §1.7: DEBUG type 1 (CLIENT_MASK) only re-renders the client keyword string."""
    w, (ret, _) = _ioctl(0x80046B06, dev_mask_info_s.pack({"mask_type": 1, "mask_value": 0xFF}))
    assert ret == 0
    assert w.k.kernel_debug_mask == 0


def test_debug_with_another_mask_type_is_einval():
    """Spec §1.7: DEBUG with a mask type other than 0 or 1 → EINVAL."""
    assert _errno_of(0x80046B06, dev_mask_info_s.pack({"mask_type": 2, "mask_value": 1})) == errno.EINVAL


def test_debug_reads_16_bytes_and_a_shorter_argument_is_eio():
    """Spec §1.7: DEBUG reads a 16-byte dev_mask_info_s (not the declared 4); an unreadable struct → EIO."""
    assert _errno_of(0x80046B06, b"\0" * 4) == errno.EIO


def test_client_mask_stores_both_masks():
    """Spec §1.7: CLIENT_MASK stores mask1 and mask2 from a 16-byte dev_mask2_info_s."""
    w, (ret, _) = _ioctl(0x40106B08, dev_mask2_info_s.pack({"mask1_value": 0, "mask2_value": 0xDEADBEEF}))
    assert ret == 0
    assert w.k.client_debug_masks == (0, 0xDEADBEEF)


def test_client_mask_short_argument_is_eio():
    """Spec §1.7: CLIENT_MASK with an unreadable argument → EIO."""
    assert _errno_of(0x40106B08, b"\0" * 8) == errno.EIO


def test_client_string_short_buffer_is_efault():
    """Spec §1.7: CLIENT_STRING reads exactly 2048 bytes; a fault is EFAULT in current kernels."""
    assert _errno_of(0x40086B09, b"x\n") == errno.EFAULT


def test_client_string_without_lines_is_einval():
    """Spec §1.7: a CLIENT_STRING with no keyword lines → EINVAL."""
    assert _errno_of(0x40086B09, b"just text".ljust(2048, b"\0")) == errno.EINVAL


def test_client_string_builds_the_keyword_list_only_the_first_time():
    """Spec §1.7: CLIENT_STRING parses "keyword mask1 mask2" lines and builds the debugfs files the first time only."""
    w = World()
    w.client_open()
    first = encode_client_debug_string([ClientDebugKeyword("io", 1, 0), ClientDebugKeyword("all", 0xFF, 0xF)])
    assert w.ioctl(0x40086B09, first)[0] == 0
    assert [kw.keyword for kw in w.k.client_debug_keywords] == ["io", "all"]
    second = encode_client_debug_string([ClientDebugKeyword("other", 2, 0)])
    assert w.ioctl(0x40086B09, second)[0] == 0
    assert [kw.keyword for kw in w.k.client_debug_keywords] == ["io", "all"]


def test_client_string_forces_the_last_byte_to_nul():
    """Spec §1.7: the kernel forces byte 2047 to NUL, so a full buffer without a terminator still parses."""
    w = World()
    w.client_open()
    arg = (b"kw 1 2\n" * 300)[:2048]
    assert len(arg) == 2048
    assert w.ioctl(0x40086B09, arg)[0] == 0
    assert all(kw.keyword == "kw" for kw in w.k.client_debug_keywords)
