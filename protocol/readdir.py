"""The READDIR trailer (spec §3.4): a 24-byte header, then packed entries.

Each entry, starting 8-aligned relative to byte 24 of the trailer::

    u32 len | name (len bytes) | NUL | zero pad to roundup8(4 + len + 1) | khandle (16)

:func:`encode_readdir_trailer` writes what both the current and the older
(strict) kernels accept.  :func:`decode_readdir_trailer` reads as the current
kernel does (``fill_from_part``: walk the bytes, skip a malformed entry in
8-byte steps, ignore the outcount), or with ``strict=True`` as v4.6–≈4.14
kernels did (exactly ``outcount`` entries, 1 ≤ len ≤ 256, every byte used).
"""

from __future__ import annotations

import errno
import struct
from typing import Iterable, NamedTuple

from .constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_NAME_MAX,
    READDIR_ENTRY_KHANDLE_SIZE,
    READDIR_RESPONSE_SIZE,
    READDIR_TRAILER_MAX,
)
from .cstruct import encode_cstring, encode_exact
from .downcall import orangefs_readdir_response_s
from .errors import EncodeError, ProtocolError

__all__ = ["DirEntry", "ReaddirResponse", "encode_readdir_trailer", "decode_readdir_trailer", "entry_size"]

_U32 = struct.Struct("<I")


class DirEntry(NamedTuple):
    name: bytes
    khandle: bytes


class ReaddirResponse(NamedTuple):
    token: int
    directory_version: int
    outcount: int
    entries: list[DirEntry]


def _roundup8(n: int) -> int:
    return (n + 7) & ~7


def entry_size(name_len: int) -> int:
    """Bytes one entry with a ``name_len``-byte name takes in the trailer."""
    return _roundup8(4 + name_len + 1) + READDIR_ENTRY_KHANDLE_SIZE


def encode_readdir_trailer(
    entries: Iterable[tuple[bytes, bytes]],
    token: int = ORANGEFS_ITERATE_END,
    directory_version: int = 0,
) -> bytes:
    """Encode a READDIR result as the downcall trailer.

    Args:
        entries: ``(name, khandle)`` pairs; never "." or "..", the kernel adds them.
        token: where the next READDIR continues, or ``ORANGEFS_ITERATE_END``.
        directory_version: ignored by every kernel; sent as given.

    Raises:
        EncodeError: a name is empty, longer than 255 bytes or holds a NUL; a
            khandle is not 16 bytes.
    """
    parts: list[bytes] = []
    count = 0
    for name, khandle in entries:
        name = encode_cstring(name, ORANGEFS_NAME_MAX, "readdir entry name")
        if not name:
            raise EncodeError("readdir entry name must not be empty")
        khandle = encode_exact(khandle, READDIR_ENTRY_KHANDLE_SIZE, f"readdir entry {name[:40]!r} khandle")
        padded = _roundup8(4 + len(name) + 1)
        parts.append(_U32.pack(len(name)) + name.ljust(padded - 4, b"\0") + bytes(khandle))
        count += 1
    head = orangefs_readdir_response_s.pack(
        {"token": token, "directory_version": directory_version, "orangefs_dirent_outcount": count}
    )
    return head + b"".join(parts)


def decode_readdir_trailer(trailer, *, strict: bool = False) -> ReaddirResponse:
    """Decode a READDIR trailer into entries, as a kernel would.

    Raises:
        ProtocolError: EIO if longer than 16 MiB (current dir.c); EFAULT if
            shorter than the 24-byte header (our rule, see spec §2.2); with
            ``strict``, EINVAL for anything the older kernels refused.
    """
    size = len(trailer)
    if size > READDIR_TRAILER_MAX:
        raise ProtocolError(errno.EIO, f"readdir trailer of {size} bytes exceeds {READDIR_TRAILER_MAX}")
    if size < READDIR_RESPONSE_SIZE:
        raise ProtocolError(errno.EFAULT, f"readdir trailer of {size} bytes has no 24-byte header")
    head = orangefs_readdir_response_s.unpack(trailer)
    body = memoryview(trailer)[READDIR_RESPONSE_SIZE:]
    if strict:
        entries = _decode_strict(body, head.orangefs_dirent_outcount)
    else:
        entries = _decode_current(body)
    return ReaddirResponse(head.token, head.directory_version, head.orangefs_dirent_outcount, entries)


def _decode_current(body: memoryview) -> list[DirEntry]:
    """``fill_from_part``: walk the entries, skipping malformed ones 8 bytes at a time."""
    entries: list[DirEntry] = []
    plen = len(body)
    i = 0
    while i < plen:
        if plen < i + 4:
            break
        (length,) = _U32.unpack_from(body, i)
        # The kernel computes padlen in u32 arithmetic; a huge len wraps.
        padlen = _roundup8((4 + length + 1) & 0xFFFFFFFF) & 0xFFFFFFFF
        name_end = i + 4 + length
        # Where padlen wrapped the kernel would read past the part; we treat
        # a name that does not fit as malformed instead (man/pvfs2-req.4).
        if plen < i + padlen + READDIR_ENTRY_KHANDLE_SIZE or name_end >= plen or body[name_end] != 0:
            i += 8
            continue
        khandle_at = i + padlen
        entries.append(
            DirEntry(bytes(body[i + 4 : name_end]), bytes(body[khandle_at : khandle_at + READDIR_ENTRY_KHANDLE_SIZE]))
        )
        i = _roundup8(khandle_at + READDIR_ENTRY_KHANDLE_SIZE)
    return entries


def _decode_strict(body: memoryview, outcount: int) -> list[DirEntry]:
    """``decode_dirents`` of v4.6–≈4.14: exact count, every byte accounted for."""
    entries: list[DirEntry] = []
    i = 0
    plen = len(body)
    for n in range(outcount):
        if plen - i < 24:
            raise ProtocolError(errno.EINVAL, f"readdir entry {n}: {plen - i} bytes left, need at least 24")
        (length,) = _U32.unpack_from(body, i)
        if not 1 <= length <= ORANGEFS_NAME_MAX:
            raise ProtocolError(errno.EINVAL, f"readdir entry {n}: name length {length} not in 1..256")
        padlen = _roundup8(4 + length + 1)
        if i + padlen + READDIR_ENTRY_KHANDLE_SIZE > plen:
            raise ProtocolError(errno.EINVAL, f"readdir entry {n} runs past the trailer")
        if body[i + 4 + length] != 0:
            raise ProtocolError(errno.EINVAL, f"readdir entry {n}: name is not NUL-terminated")
        entries.append(
            DirEntry(bytes(body[i + 4 : i + 4 + length]), bytes(body[i + padlen : i + padlen + READDIR_ENTRY_KHANDLE_SIZE]))
        )
        i += padlen + READDIR_ENTRY_KHANDLE_SIZE
    if i != plen:
        raise ProtocolError(
            errno.EINVAL, f"readdir trailer decoded {READDIR_RESPONSE_SIZE + i} of {READDIR_RESPONSE_SIZE + plen} bytes"
        )
    return entries
