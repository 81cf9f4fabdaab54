"""Plain cases for defects the property tests found that no other test names (test_fuzz.py has the rest)."""

from __future__ import annotations

import errno

import pytest

from pvfs2proto import ProtocolError
from pvfs2proto.debug import ClientDebugKeyword, decode_client_debug_string
from pvfs2proto.ioctl import CLIENT_STRING_ARG_SIZE, IoctlCommand, decode_ioctl_arg


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"kw zz 5\n", ("kw", 0, 0)),  # a failed %llx stops the scan
        (b"kw 12zz 5\n", ("kw", 0x12, 0)),  # %llx stops at the first non-hex digit
        (b"kw 1_0 2\n", ("kw", 1, 0)),
        (b"kw -1 2\n", ("kw", 0, 0)),  # %llx takes no sign
        (b"kw 0x1f 0X2\n", ("kw", 0x1F, 2)),  # an optional 0x prefix
        (b"a\x1cb 1 2\n", ("a\x1cb", 1, 2)),  # \x1c is not a kernel space
        (b"kw\xa01 2\n", ("kw", 1, 2)),  # NBSP is one (lib/ctype.c)
        (b"\n", ("", 0, 0)),  # a blank line is still an element
    ],
)
def test_client_string_lines_scan_like_kernel_sscanf(line, expected):
    """Spec §1.7: CLIENT_STRING lines are read with the kernel's sscanf("%s %llx %llx")."""
    assert decode_client_debug_string(line) == [ClientDebugKeyword(*expected)]


def test_client_string_counts_blank_lines():
    """Spec §1.7: every newline before the NUL makes an element, blank or not."""
    assert len(decode_client_debug_string(b"a 1 2\n\n")) == 2


def test_client_string_without_newline_is_einval():
    """Spec §1.7: a CLIENT_STRING with no lines is EINVAL."""
    with pytest.raises(ProtocolError) as info:
        decode_client_debug_string(b"a 1 2")
    assert info.value.errno == errno.EINVAL


def test_ioctl_arg_accepts_a_plain_int_command():
    """Spec §1.7: the command is matched by value, so a plain int works like the enum."""
    arg = b"x" * CLIENT_STRING_ARG_SIZE
    assert decode_ioctl_arg(int(IoctlCommand.CLIENT_STRING), arg) == b"x" * (CLIENT_STRING_ARG_SIZE - 1) + b"\0"
    with pytest.raises(ProtocolError) as info:
        decode_ioctl_arg(int(IoctlCommand.CLIENT_STRING), b"")
    assert info.value.errno == errno.EFAULT
