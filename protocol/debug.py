"""Debug keyword masks (spec §2.8, §6.2) and the CLIENT_STRING format (§1.7).

The kernel's own debug output is selected by a 16-bit gossip mask with one
keyword per bit.  The client-core announces *its* keywords with the
CLIENT_STRING ioctl: a 2048-byte buffer of lines ``"keyword mask1 mask2\\n"``
with the masks in hex.
"""

from __future__ import annotations

import errno
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


def encode_client_debug_string(keywords: Iterable[ClientDebugKeyword]) -> bytes:
    """Build the 2048-byte CLIENT_STRING argument.

    Raises:
        EncodeError: a keyword is empty or holds whitespace, or the text does
            not fit in 2047 bytes (the kernel forces the last byte to NUL).
    """
    lines = []
    for kw in keywords:
        if not kw.keyword or any(c.isspace() for c in kw.keyword):
            raise EncodeError(f"client debug keyword {kw.keyword!r} must be one word")
        lines.append(f"{kw.keyword} {kw.mask1:x} {kw.mask2:x}\n")
    text = "".join(lines).encode("ascii")
    if len(text) >= ORANGEFS_MAX_DEBUG_STRING_LEN:
        raise EncodeError(f"client debug string of {len(text)} bytes does not fit {ORANGEFS_MAX_DEBUG_STRING_LEN - 1}")
    return text.ljust(ORANGEFS_MAX_DEBUG_STRING_LEN, b"\0")


def decode_client_debug_string(buffer: bytes) -> list[ClientDebugKeyword]:
    """Parse a CLIENT_STRING buffer as ``orangefs_prepare_cdm_array`` does.

    Only newline-terminated lines before the first NUL count; each is
    ``keyword mask1 mask2`` in hex (a missing or bad mask reads as 0, as
    sscanf leaves it).

    Raises:
        ProtocolError: EINVAL if there is no line at all.
    """
    text = buffer[: ORANGEFS_MAX_DEBUG_STRING_LEN - 1].split(b"\0", 1)[0].decode("latin-1")
    keywords = []
    for line in text.split("\n")[:-1]:  # the piece after the last "\n" is not a line
        fields = line.split()
        if not fields:
            continue
        masks = []
        for field in fields[1:3]:
            try:
                masks.append(int(field, 16) & 0xFFFFFFFFFFFFFFFF)
            except ValueError:
                masks.append(0)
        masks += [0] * (2 - len(masks))
        keywords.append(ClientDebugKeyword(fields[0], masks[0], masks[1]))
    if not keywords:
        raise ProtocolError(errno.EINVAL, "client debug string holds no keyword lines")
    return keywords
