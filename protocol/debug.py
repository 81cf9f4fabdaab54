"""Debug keyword masks (spec §2.8, §6.2) and the CLIENT_STRING format (§1.7).

The kernel's own debug output is selected by a 16-bit gossip mask with one
keyword per bit.  The client-core announces *its* keywords with the
CLIENT_STRING ioctl: a 2048-byte buffer of lines ``"keyword mask1 mask2\\n"``
with the masks in hex.
"""

from __future__ import annotations

import errno
import re
from typing import Iterable, NamedTuple

from .constants import ORANGEFS_MAX_DEBUG_STRING_LEN
from .errors import EncodeError, ProtocolError

#: Kernel gossip keywords in the kernel's table order (orangefs-debug.h).
KERNEL_DEBUG_KEYWORDS: dict[str, int] = {
    "super": 1 << 0,
    "inode": 1 << 1,
    "file": 1 << 2,
    "dir": 1 << 3,
    "utils": 1 << 4,
    "wait": 1 << 5,
    "acl": 1 << 6,
    "dcache": 1 << 7,
    "dev": 1 << 8,
    "name": 1 << 9,
    "bufmap": 1 << 10,
    "cache": 1 << 11,
    "debugfs": 1 << 12,
    "xattr": 1 << 13,
    "init": 1 << 14,
    "sysfs": 1 << 15,
}
#: ``GOSSIP_MAX_NR``
GOSSIP_MAX_NR = 16
GOSSIP_NO_DEBUG = 0
GOSSIP_MAX_DEBUG = (1 << GOSSIP_MAX_NR) - 1
#: ``ORANGEFS_VERBOSE`` / ``ORANGEFS_ALL`` / the "none" keyword.
DEBUG_VERBOSE, DEBUG_ALL, DEBUG_NONE = "verbose", "all", "none"


def kernel_mask_to_keywords(mask: int) -> str:
    """The kernel-debug file's text for a mask: ``none``, ``all`` or ``dev,bufmap``."""
    mask &= GOSSIP_MAX_DEBUG
    if mask == GOSSIP_NO_DEBUG:
        return DEBUG_NONE
    if mask == GOSSIP_MAX_DEBUG:
        return DEBUG_ALL
    return ",".join(name for name, bit in KERNEL_DEBUG_KEYWORDS.items() if mask & bit)


def kernel_keywords_to_mask(text: str) -> int:
    """Parse a comma-separated kernel keyword list as the debugfs write does.

    ``none`` clears, ``all`` sets every bit; unknown words are ignored.
    """
    mask = 0
    for word in text.strip().split(","):
        word = word.strip()
        if word == DEBUG_NONE:
            return GOSSIP_NO_DEBUG
        if word == DEBUG_ALL:
            return GOSSIP_MAX_DEBUG
        mask |= KERNEL_DEBUG_KEYWORDS.get(word, 0)
    return mask


class ClientDebugKeyword(NamedTuple):
    """One line of the CLIENT_STRING buffer."""

    keyword: str
    mask1: int
    mask2: int


_U64 = (1 << 64) - 1
# The kernel's isspace() (lib/ctype.c): C whitespace plus Latin-1 NBSP.
_KERNEL_SPACE = frozenset(b" \t\n\v\f\r\xa0")
_HEX = re.compile(rb"(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")


def encode_client_debug_string(keywords: Iterable[ClientDebugKeyword]) -> bytes:
    """Build the 2048-byte CLIENT_STRING argument.

    Raises:
        EncodeError: a keyword is not one word of printable ASCII, a mask is
            not a u64, or the text does not fit in 2047 bytes (the kernel
            forces the last byte to NUL).
    """
    lines = []
    for kw in keywords:
        if not kw.keyword or not all("!" <= c <= "~" for c in kw.keyword):
            raise EncodeError(f"client debug keyword {kw.keyword!r} must be one word of printable ASCII")
        for mask in (kw.mask1, kw.mask2):
            if not isinstance(mask, int) or not 0 <= mask <= _U64:
                raise EncodeError(f"client debug keyword {kw.keyword}: mask {mask!r} is not a u64")
        lines.append(f"{kw.keyword} {kw.mask1:x} {kw.mask2:x}\n")
    text = "".join(lines).encode("ascii")
    if len(text) >= ORANGEFS_MAX_DEBUG_STRING_LEN:
        raise EncodeError(f"client debug string of {len(text)} bytes does not fit {ORANGEFS_MAX_DEBUG_STRING_LEN - 1}")
    return text.ljust(ORANGEFS_MAX_DEBUG_STRING_LEN, b"\0")


def _skip_space(line: bytes, pos: int) -> int:
    while pos < len(line) and line[pos] in _KERNEL_SPACE:
        pos += 1
    return pos


def _scan_line(line: bytes) -> ClientDebugKeyword:
    """``sscanf(line, "%s %llx %llx")`` as the kernel's vsscanf reads it.

    A conversion that finds nothing stops the scan and leaves the rest 0 (the
    kernel's array is zero-allocated): ``%llx`` takes no sign, an optional
    ``0x`` and hex digits up to the first other character.
    """
    start = _skip_space(line, 0)
    end = start
    while end < len(line) and line[end] not in _KERNEL_SPACE:
        end += 1
    masks = [0, 0]
    pos = end
    if end > start:
        for k in range(2):
            pos = _skip_space(line, pos)
            match = _HEX.match(line, pos)
            if match is None:
                break
            masks[k] = int(match.group(1), 16) & _U64
            pos = match.end()
    return ClientDebugKeyword(line[start:end].decode("latin-1"), masks[0], masks[1])


def decode_client_debug_string(buffer: bytes) -> list[ClientDebugKeyword]:
    """Parse a CLIENT_STRING buffer as ``orangefs_prepare_cdm_array`` does.

    Every newline-terminated line before the first NUL is one element, blank
    ones included (they give an empty keyword); the piece after the last
    newline is not a line.

    Raises:
        ProtocolError: EINVAL if there is no newline at all.
    """
    text = bytes(buffer[: ORANGEFS_MAX_DEBUG_STRING_LEN - 1]).split(b"\0", 1)[0]
    lines = text.split(b"\n")[:-1]
    if not lines:
        raise ProtocolError(errno.EINVAL, "client debug string holds no keyword lines")
    return [_scan_line(line) for line in lines]
