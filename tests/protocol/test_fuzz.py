"""Fuzzing the decoders, the write-check order, and the encoders' refusals (spec §1.3, §1.4, §1.7, §3.4, §5.1).

Every decoder faces bytes from the peer: it may return or raise
``ProtocolError`` with the errno the spec names, and nothing else.  Where the
spec gives the rule completely (the read and write checks, the ioctl gate, the
MAP geometry, the current readdir walk) the tests also compare the decoder
with a small model of that rule written from the spec.
"""

from __future__ import annotations

import errno
import struct
from typing import Callable

import pytest
from construct import Container
from hypothesis import given
from hypothesis import strategies as st

from pvfs2proto import (
    DirEntry,
    EncodeError,
    IoctlCommand,
    OpCode,
    ProtocolError,
    check_ioctl_command,
    decode_downcall,
    decode_ioctl_arg,
    decode_read_frame,
    decode_readdir_trailer,
    decode_upcall,
    decode_write_body,
    decode_write_frame,
    decode_write_head,
    encode_downcall,
    encode_read_frame,
    encode_readdir_trailer,
    encode_upcall,
    encode_write_frame,
    validate_map_desc,
)
from pvfs2proto.constants import (
    DOWNCALL_SIZE,
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_MINIMUM_USERSPACE_VERSION,
    PAGE_SIZE,
    READDIR_TRAILER_MAX,
    UPCALL_SIZE,
)
from pvfs2proto.debug import ClientDebugKeyword, decode_client_debug_string, encode_client_debug_string
from pvfs2proto.downcall import orangefs_downcall_s
from pvfs2proto.ioctl import ORANGEFS_dev_map_desc, dev_mask2_info_s, dev_mask_info_s
from pvfs2proto.upcall import orangefs_upcall_s

from ..fuzzing import fuzz_settings
from .strategies import (
    READ_FRAME_OFFSETS,
    S32,
    U32_MAX,
    U64_MAX,
    WRITE_FRAME_OFFSETS,
    all_cstructs,
    broken_values,
    downcalls,
    error_statuses,
    mutated,
    near_size_bytes,
    op_types,
    read_frames,
    readdir_trailers,
    upcalls,
    valid_read_frame_bytes,
    valid_write_frame_bytes,
    write_frames,
)

pytestmark = pytest.mark.fuzz

READDIR = int(OpCode.READDIR)
SIZES = (MAX_DEV_REQ_DOWNSIZE, MAX_DEV_REQ_UPSIZE, UPCALL_SIZE, DOWNCALL_SIZE)

#: Peer bytes: anything short, anything near a frame size, valid frames edited.
peer_bytes = st.one_of(
    st.binary(max_size=300),
    near_size_bytes(*SIZES),
    mutated(valid_write_frame_bytes(), WRITE_FRAME_OFFSETS),
    mutated(valid_read_frame_bytes(), READ_FRAME_OFFSETS),
)
write_bytes = st.one_of(
    st.binary(max_size=64),
    near_size_bytes(MAX_DEV_REQ_DOWNSIZE, MAX_DEV_REQ_DOWNSIZE + 24),
    mutated(valid_write_frame_bytes(), WRITE_FRAME_OFFSETS),
    mutated(write_frames(OpCode.READDIR, status=0).map(lambda c: c.encode()), WRITE_FRAME_OFFSETS),
)
read_bytes = st.one_of(
    st.binary(max_size=64),
    near_size_bytes(MAX_DEV_REQ_UPSIZE),
    mutated(valid_read_frame_bytes(), READ_FRAME_OFFSETS),
)


def outcome(fn: Callable, *args, allowed: set[int], **kwargs):
    """Run a decoder: its result, or the errno of its ProtocolError (which must be one of ``allowed``).

    Any other exception propagates and fails the test.
    """
    try:
        return fn(*args, **kwargs)
    except ProtocolError as exc:
        assert isinstance(exc, OSError)
        assert exc.errno in allowed, f"{fn.__name__} raised {exc!r}, errno not in {sorted(allowed)}"
        return exc


def errno_of(fn: Callable, *args, **kwargs) -> int | None:
    """The errno a decoder raises, or None if it returns."""
    try:
        fn(*args, **kwargs)
    except ProtocolError as exc:
        return exc.errno
    return None


# --- models of the spec's checks -------------------------------------------------------------------


def spec_write_head_errno(data: bytes) -> int | None:
    """§1.4 checks 1–4."""
    if len(data) < MAX_DEV_REQ_DOWNSIZE:
        return errno.EFAULT
    version, magic = struct.unpack_from("<II", data)
    if version < ORANGEFS_MINIMUM_USERSPACE_VERSION:
        return errno.EPROTO
    if magic != ORANGEFS_DEVREQ_MAGIC:
        return errno.EPROTO
    return None


def spec_write_body_errno(data: bytes) -> int | None:
    """§1.4 checks 8–11, plus the emulator's 24-byte minimum READDIR trailer (§2.2)."""
    if len(data) < MAX_DEV_REQ_DOWNSIZE:
        return errno.EFAULT
    dtype, status, trailer_size = struct.unpack_from("<Iiq", data, 16)
    if status != 0:
        return None
    if MAX_DEV_REQ_DOWNSIZE + trailer_size != len(data):
        return errno.EFAULT
    if dtype != READDIR:
        return errno.EFAULT if trailer_size != 0 else None
    if trailer_size < 24:
        return errno.EFAULT
    return None


def spec_read_errno(data: bytes, userspace_version: int | None = None) -> int | None:
    """§1.3: exactly 8544 bytes (EINVAL); the magic and version 0 or ours (EPROTO)."""
    if len(data) != MAX_DEV_REQ_UPSIZE:
        return errno.EINVAL
    version, magic = struct.unpack_from("<ii", data)
    if magic != ORANGEFS_DEVREQ_MAGIC or version not in (0, userspace_version):
        return errno.EPROTO
    return None


def kernel_fill_from_part(body: bytes) -> list[DirEntry]:
    """§3.4, current dir.c fill_from_part: walk entries, skip a malformed one 8 bytes at a time.

    Where padlen wraps (len ≥ 2**32 - 5) the kernel would read past the part;
    the emulator skips such an entry as malformed (man/pvfs2-req.4).
    """
    entries, i, plen = [], 0, len(body)
    while i < plen:
        if plen < i + 4:
            break
        (length,) = struct.unpack_from("<I", body, i)
        raw = 4 + length + 1  # size_t arithmetic
        padlen = (raw + (8 - raw % 8) % 8) & 0xFFFFFFFF  # stored in a __u32
        if plen < i + padlen + 16 or i + 4 + length >= plen or body[i + 4 + length] != 0:
            i += 8
            continue
        entries.append(DirEntry(body[i + 4 : i + 4 + length], body[i + padlen : i + padlen + 16]))
        i += padlen + 16
        i += (8 - i % 8) % 8
    return entries


#: §1.7: the nine command values, from the spec's table.
SPEC_IOCTLS = {
    0x40046B01: "GET_MAGIC",
    0x40046B02: "GET_MAX_UPSIZE",
    0x40046B03: "GET_MAX_DOWNSIZE",
    0x00006B04: "MAP",
    0x00006B05: "REMOUNT_ALL",
    0x80046B06: "DEBUG",
    0x40046B07: "UPSTREAM",
    0x40106B08: "CLIENT_MASK",
    0x40086B09: "CLIENT_STRING",
}


def spec_ioctl_errno(cmd: int) -> int | None:
    """§1.7: type byte not 'k' → EINVAL; nr 0 or ≥ 10 → ENOTTY; no exact match → ENOTTY."""
    if (cmd >> 8) & 0xFF != ord("k"):
        return errno.EINVAL
    if cmd & 0xFF == 0 or cmd & 0xFF >= 10:
        return errno.ENOTTY
    if cmd not in SPEC_IOCTLS:
        return errno.ENOTTY
    return None


def spec_map_rule(desc) -> int | None:
    """§5.1: the index (1-5) of the first geometry rule ``desc`` breaks, None if it passes."""
    if desc.total_size < 0 or desc.size < 0 or desc.count < 0:
        return 1
    if desc.ptr % PAGE_SIZE:
        return 2
    if (desc.ptr + desc.total_size) % PAGE_SIZE:
        return 3
    if desc.total_size != desc.size * desc.count:
        return 4
    if desc.size % PAGE_SIZE:
        return 5
    return None


# --- every decoder, arbitrary bytes ------------------------------------------------------------------


@given(data=peer_bytes)
def test_decode_read_frame_fuzz(data):
    """§1.3: decode_read_frame raises only ProtocolError EINVAL (length ≠ 8544) or EPROTO (magic, version), exactly when the spec says."""
    result = outcome(decode_read_frame, data, allowed={errno.EINVAL, errno.EPROTO})
    expected = spec_read_errno(data)
    assert (result.errno if isinstance(result, ProtocolError) else None) == expected


@given(data=read_bytes)
def test_decode_read_frame_fuzz_focused(data):
    """§1.3: on edited valid read frames decode_read_frame follows the spec's length/magic/version rule."""
    result = outcome(decode_read_frame, data, allowed={errno.EINVAL, errno.EPROTO})
    assert (result.errno if isinstance(result, ProtocolError) else None) == spec_read_errno(data)
    if not isinstance(result, ProtocolError):
        assert result.upcall == orangefs_upcall_s.unpack(data, 16)


@given(data=st.one_of(peer_bytes, write_bytes))
def test_decode_write_head_fuzz(data):
    """§1.4 checks 1–4: decode_write_head raises only EFAULT (short) or EPROTO (version, magic), exactly when the spec says."""
    result = outcome(decode_write_head, data, allowed={errno.EFAULT, errno.EPROTO})
    assert (result.errno if isinstance(result, ProtocolError) else None) == spec_write_head_errno(data)


@given(data=st.one_of(peer_bytes, write_bytes), op=st.none() | op_types())
def test_decode_write_body_fuzz(data, op):
    """§1.4 checks 8–11: decode_write_body raises only EFAULT, exactly when the spec's size and trailer rules say."""
    result = outcome(decode_write_body, data, op, allowed={errno.EFAULT})
    assert (result.errno if isinstance(result, ProtocolError) else None) == spec_write_body_errno(data)
    if not isinstance(result, ProtocolError):
        status, trailer_size = struct.unpack_from("<iq", data, 20)
        if status == 0 and trailer_size:
            assert result.trailer == data[MAX_DEV_REQ_DOWNSIZE:]
        else:
            assert result.trailer is None


@given(data=write_bytes, op=st.none() | op_types())
def test_decode_write_frame_fuzz(data, op):
    """§1.4: decode_write_frame raises only EFAULT or EPROTO, the first failing check in the spec's order."""
    result = outcome(decode_write_frame, data, op, allowed={errno.EFAULT, errno.EPROTO})
    expected = spec_write_head_errno(data) or spec_write_body_errno(data)
    assert (result.errno if isinstance(result, ProtocolError) else None) == expected


@given(data=st.one_of(peer_bytes, near_size_bytes(UPCALL_SIZE, spread=2)))
def test_decode_upcall_fuzz(data):
    """§3.2: decode_upcall raises only EINVAL (not 8528 bytes) and decodes any 8528 bytes."""
    result = outcome(decode_upcall, data, allowed={errno.EINVAL})
    assert isinstance(result, ProtocolError) == (len(data) != UPCALL_SIZE)


@given(data=st.one_of(peer_bytes, near_size_bytes(DOWNCALL_SIZE, spread=2)), op=st.none() | op_types())
def test_decode_downcall_fuzz(data, op):
    """§3.3: decode_downcall raises only EFAULT (not 8224 bytes) and decodes any 8224 bytes as any op."""
    result = outcome(decode_downcall, data, op, allowed={errno.EFAULT})
    assert isinstance(result, ProtocolError) == (len(data) != DOWNCALL_SIZE)


trailer_bytes = st.one_of(
    st.binary(max_size=400),
    mutated(readdir_trailers(max_size=5), (0, 16, 20, 24, 28, 32)),
)


@given(data=trailer_bytes, strict=st.booleans())
def test_decode_readdir_trailer_fuzz(data, strict):
    """§3.4: decode_readdir_trailer raises only EFAULT (under 24 bytes) or EIO (over 16 MiB), and in strict mode EINVAL."""
    allowed = {errno.EFAULT, errno.EIO} | ({errno.EINVAL} if strict else set())
    result = outcome(decode_readdir_trailer, data, strict=strict, allowed=allowed)
    if len(data) < 24:
        assert isinstance(result, ProtocolError) and result.errno == errno.EFAULT
    elif not strict:
        assert not isinstance(result, ProtocolError)


@given(data=trailer_bytes.filter(lambda b: len(b) >= 24))
def test_current_readdir_decoder_matches_kernel_walk(data):
    """§3.4: the current decoder returns exactly the entries the kernel's byte walk (fill_from_part) emits."""
    decoded = decode_readdir_trailer(data)
    assert decoded.entries == kernel_fill_from_part(data[24:])
    assert decoded.outcount == struct.unpack_from("<I", data, 20)[0]


@given(data=trailer_bytes)
def test_strict_readdir_decoder_agrees_when_it_accepts(data):
    """§3.4: whenever the strict (older-kernel) decoder accepts a trailer, it returns outcount entries, the same the current decoder finds."""
    strict = outcome(decode_readdir_trailer, data, strict=True, allowed={errno.EFAULT, errno.EIO, errno.EINVAL})
    if not isinstance(strict, ProtocolError):
        assert len(strict.entries) == strict.outcount
        assert strict.entries == decode_readdir_trailer(data).entries


def test_readdir_trailer_size_limit():
    """§2.2, §3.4: a trailer of exactly 16 MiB is decoded, one byte more is EIO."""
    body = READDIR_TRAILER_MAX - 24
    padlen = body - 16
    name = b"n" * (padlen - 5)
    trailer = bytes(24) + struct.pack("<I", len(name)) + name + b"\0" + b"K" * 16
    assert len(trailer) == READDIR_TRAILER_MAX
    assert decode_readdir_trailer(trailer).entries == [DirEntry(name, b"K" * 16)]
    for strict in (False, True):
        with pytest.raises(ProtocolError) as info:
            decode_readdir_trailer(trailer + b"\0", strict=strict)
        assert info.value.errno == errno.EIO


# --- ioctls (§1.7, §3.5, §5.1) -------------------------------------------------------------------------

IOCTL_ARG_STRUCT = {
    IoctlCommand.MAP: ORANGEFS_dev_map_desc,
    IoctlCommand.DEBUG: dev_mask_info_s,
    IoctlCommand.CLIENT_MASK: dev_mask2_info_s,
}
IOCTL_ARG_ERRNO = {
    IoctlCommand.MAP: (24, errno.EIO),
    IoctlCommand.DEBUG: (16, errno.EIO),
    IoctlCommand.CLIENT_MASK: (16, errno.EIO),
    IoctlCommand.CLIENT_STRING: (2048, errno.EFAULT),
}


@pytest.mark.parametrize("cmd", list(IoctlCommand), ids=lambda c: c.name)
@fuzz_settings(60)
@given(data=st.one_of(st.binary(max_size=40), near_size_bytes(4, 16, 24, 2048, spread=2)))
def test_decode_ioctl_arg_fuzz(cmd, data):
    """§1.7, §3.5: an ioctl argument shorter than the kernel copies is EIO (EFAULT for CLIENT_STRING); anything longer decodes."""
    size, fault = IOCTL_ARG_ERRNO.get(cmd, (0, None))
    result = outcome(decode_ioctl_arg, cmd, data, allowed={fault} if fault else set())
    if len(data) < size:
        assert isinstance(result, ProtocolError) and result.errno == fault
    elif cmd is IoctlCommand.CLIENT_STRING:
        assert result == data[:2047] + b"\0"
    elif size:
        assert result == IOCTL_ARG_STRUCT[cmd].unpack(data)
    else:
        assert result is None


def k_commands():
    """'k' commands with any direction, size and number (the exact nine among them)."""
    return st.one_of(
        st.sampled_from(sorted(SPEC_IOCTLS)),
        st.builds(
            lambda d, size, nr: d << 30 | size << 16 | ord("k") << 8 | nr,
            st.integers(0, 3),
            st.sampled_from([0, 4, 8, 16, 24]) | st.integers(0, 0x3FFF),
            st.integers(0, 255),
        ),
    )


@given(cmd=st.one_of(st.integers(0, U32_MAX), k_commands()))
def test_check_ioctl_command_fuzz(cmd):
    """§1.7: check_ioctl_command gives EINVAL for a type byte ≠ 'k', ENOTTY for nr 0/≥10 or no exact match, else the command."""
    result = outcome(check_ioctl_command, cmd, allowed={errno.EINVAL, errno.ENOTTY})
    expected = spec_ioctl_errno(cmd)
    if expected is None:
        assert result == cmd and result.name == SPEC_IOCTLS[cmd]
    else:
        assert isinstance(result, ProtocolError) and result.errno == expected


@given(cmd=st.integers(min_value=-(2**40), max_value=2**40))
def test_check_ioctl_command_any_int(cmd):
    """§1.7: check_ioctl_command raises nothing but ProtocolError EINVAL/ENOTTY for any int."""
    outcome(check_ioctl_command, cmd, allowed={errno.EINVAL, errno.ENOTTY})


def test_check_ioctl_command_rules():
    """§1.7: the nine exact values pass; 'k' nr 0 and 10 are ENOTTY; a right nr with wrong size or direction is ENOTTY; type 'j' is EINVAL."""
    for value, name in SPEC_IOCTLS.items():
        assert check_ioctl_command(value) is IoctlCommand[name]
    cases = {
        0x00006B00: errno.ENOTTY,  # nr 0
        0x40046B0A: errno.ENOTTY,  # nr 10
        0x40046BFF: errno.ENOTTY,  # nr 255
        0x40046B04: errno.ENOTTY,  # MAP number with _IOW size 4
        0x80046B01: errno.ENOTTY,  # GET_MAGIC number, read direction
        0x40046B06: errno.ENOTTY,  # DEBUG number, write direction
        0x80106B06: errno.ENOTTY,  # DEBUG number, the 16 bytes the kernel really reads
        0x40046B09: errno.ENOTTY,  # CLIENT_STRING from a 32-bit client
        0x40086A09: errno.EINVAL,  # type 'j'
        0x00000000: errno.EINVAL,
        0x40046C01: errno.EINVAL,  # type 'l', nr 1
    }
    for value, expected in cases.items():
        with pytest.raises(ProtocolError) as info:
            check_ioctl_command(value)
        assert info.value.errno == expected, hex(value)


def map_descs():
    """MAP descriptors near the valid region: page-aligned or not, total = size × count or not."""
    page = st.integers(0, 2**20).map(lambda n: n * PAGE_SIZE)
    nudge = st.one_of(st.just(0), st.just(0), st.integers(-PAGE_SIZE, PAGE_SIZE))
    return st.builds(
        lambda ptr, dp, size, ds, count, dt: Container(
            ptr=(ptr + dp) % 2**64, size=size + ds, count=count, total_size=(size + ds) * count + dt
        ),
        page,
        nudge,
        st.integers(0, 2048).map(lambda n: n * PAGE_SIZE),
        nudge,
        st.integers(-2, 64),
        nudge,
    ).filter(lambda d: S32[0] <= d.size <= S32[1] and S32[0] <= d.total_size <= S32[1])


@given(desc=st.one_of(map_descs(), st.binary(min_size=24, max_size=24).map(ORANGEFS_dev_map_desc.unpack)))
def test_validate_map_desc_fuzz(desc):
    """§5.1: validate_map_desc raises only ProtocolError EINVAL, exactly when one of the spec's geometry rules fails."""
    wire = ORANGEFS_dev_map_desc.pack(desc)
    desc = decode_ioctl_arg(IoctlCommand.MAP, wire)
    result = outcome(validate_map_desc, desc, allowed={errno.EINVAL})
    assert isinstance(result, ProtocolError) == (spec_map_rule(desc) is not None)


def test_validate_map_desc_rules_in_order():
    """§5.1: each rule, reached with every earlier rule passing, is EINVAL: negative fields, ptr alignment, end alignment, total = size × count, size % 4096."""
    P = PAGE_SIZE

    def desc(ptr, total_size, size, count):
        return Container(ptr=ptr, total_size=total_size, size=size, count=count)

    rule_cases = {
        1: [desc(0, -P, P, 1), desc(0, P, -P, 1), desc(0, P, P, -1), desc(1, -1, -1, -1)],
        2: [desc(P + 1, P, P, 1), desc(P - 8, 2 * P, P, 2), desc(2**64 - 1, P, P, 1)],
        3: [desc(P, P + 1, P, 1), desc(16 * P, 3 * P // 2, P // 2, 3), desc(0, 1, 1, 1)],
        4: [desc(0, 3 * P, P, 2), desc(P, 0, P, 1), desc(P, 2 * P, 2 * P, 0)],
        5: [desc(0, P, P // 2, 2), desc(P, 2 * P, P // 4, 8), desc(0, 3 * P, 3 * P // 2, 2)],
    }
    for rule, cases in rule_cases.items():
        for d in cases:
            assert spec_map_rule(d) == rule, (rule, d)
            assert errno_of(validate_map_desc, d) == errno.EINVAL, (rule, d)
    for d in [desc(0x7F0000000000, 40 * P, 4 * P, 10), desc(P, P, P, 1), desc(0, 0, 0, 0), desc(0, 0, P, 0)]:
        assert spec_map_rule(d) is None
        assert validate_map_desc(d) is None


client_strings = st.one_of(
    st.binary(max_size=300),
    near_size_bytes(2048, spread=2),
    st.lists(
        st.tuples(st.binary(max_size=12), st.sampled_from([b" ", b"\t", b"  "]), st.binary(max_size=18)).map(
            lambda t: t[0] + t[1] + t[2]
        ),
        max_size=8,
    ).map(lambda lines: b"\n".join(lines) + b"\n"),
)


@given(buffer=client_strings)
def test_decode_client_debug_string_fuzz(buffer):
    """§1.7: the CLIENT_STRING parser raises only EINVAL, and only when the string (up to its NUL, within 2047 bytes) has no line."""
    result = outcome(decode_client_debug_string, buffer, allowed={errno.EINVAL})
    text = buffer[:2047].split(b"\0", 1)[0]
    assert isinstance(result, ProtocolError) == (b"\n" not in text)
    if not isinstance(result, ProtocolError):
        assert all(0 <= kw.mask1 <= U64_MAX and 0 <= kw.mask2 <= U64_MAX for kw in result)


# --- the write checks, in the spec's order (§1.4) --------------------------------------------------------


def frame(
    version=21000, magic=ORANGEFS_DEVREQ_MAGIC, tag=7, type_=int(OpCode.LOOKUP), status=0, trailer_size=0, trailer=b""
):
    """A write frame from raw field values (no encoder checks in the way)."""
    head = struct.pack("<IIQ", version & U32_MAX, magic & U32_MAX, tag)
    call = struct.pack("<Iiq", type_, status, trailer_size).ljust(DOWNCALL_SIZE, b"\0")
    return head + call + trailer


ALL_DECODE_WRITE = (decode_write_head, decode_write_frame, decode_write_body)


@given(
    length=st.integers(0, MAX_DEV_REQ_DOWNSIZE - 1),
    version=st.integers(0, U32_MAX),
    magic=st.integers(0, U32_MAX),
)
def test_short_write_is_efault_first(length, version, magic):
    """§1.4 check 1: a write shorter than 8240 bytes is EFAULT even when its version and magic are also bad."""
    data = frame(version=version, magic=magic)[:length]
    for fn in ALL_DECODE_WRITE:
        assert errno_of(fn, data) == errno.EFAULT


@given(
    version=st.integers(0, ORANGEFS_MINIMUM_USERSPACE_VERSION - 1),
    magic=st.integers(0, U32_MAX),
    extra=st.binary(max_size=40),
)
def test_low_version_is_eproto(version, magic, extra):
    """§1.4 check 3: a long-enough write with version < 20903 is EPROTO, whatever the magic and the rest."""
    data = frame(version=version, magic=magic) + extra
    assert errno_of(decode_write_head, data) == errno.EPROTO
    assert errno_of(decode_write_frame, data) == errno.EPROTO


@given(version=st.integers(ORANGEFS_MINIMUM_USERSPACE_VERSION, U32_MAX))
def test_version_compared_unsigned(version):
    """§1.4 check 3: the version is compared unsigned, so 0x80000000..0xFFFFFFFF pass like 20903..."""
    head = decode_write_head(frame(version=version))
    assert head.version == version
    assert decode_write_head(frame(version=0xFFFFFFFF)).version == 0xFFFFFFFF


@given(
    version=st.integers(ORANGEFS_MINIMUM_USERSPACE_VERSION, U32_MAX),
    magic=st.integers(0, U32_MAX).filter(lambda m: m != ORANGEFS_DEVREQ_MAGIC),
)
def test_bad_magic_is_eproto(version, magic):
    """§1.4 check 4: with a good version, a magic other than 0x20030529 is EPROTO."""
    assert errno_of(decode_write_head, frame(version=version, magic=magic)) == errno.EPROTO
    assert errno_of(decode_write_frame, frame(version=version, magic=magic)) == errno.EPROTO


@given(
    type_=op_types(),
    status=error_statuses(),
    trailer_size=st.integers(-(2**63), 2**63 - 1),
    extra=st.binary(max_size=64),
)
def test_failed_downcall_skips_trailer_checks(type_, status, trailer_size, extra):
    """§1.4 check 8: a downcall with status ≠ 0 skips the size and trailer checks; extra bytes are ignored."""
    data = frame(type_=type_, status=status, trailer_size=trailer_size, trailer=extra)
    head, body = decode_write_frame(data)
    assert body.trailer is None
    assert (body.downcall.type, body.downcall.status, body.downcall.trailer_size) == (type_, status, trailer_size)


@given(type_=op_types(), trailer_size=st.integers(-(2**63), 2**63 - 1), extra=st.binary(max_size=64))
def test_trailer_size_mismatch_is_efault(type_, trailer_size, extra):
    """§1.4 check 9: with status 0, a total length other than 16 + 8224 + trailer_size is EFAULT."""
    data = frame(type_=type_, trailer_size=trailer_size, trailer=extra)
    if trailer_size == len(extra):
        return
    assert errno_of(decode_write_body, data) == errno.EFAULT
    assert errno_of(decode_write_frame, data) == errno.EFAULT


@given(type_=op_types().filter(lambda t: t != READDIR), trailer=st.binary(min_size=1, max_size=64))
def test_non_readdir_trailer_is_efault(type_, trailer):
    """§1.4 check 10: a successful non-READDIR downcall carrying a trailer (even a consistent one) is EFAULT."""
    data = frame(type_=type_, trailer_size=len(trailer), trailer=trailer)
    assert errno_of(decode_write_frame, data) == errno.EFAULT


def test_readdir_without_trailer_is_efault():
    """§1.4 check 11: a successful READDIR downcall with trailer_size 0 is EFAULT."""
    assert errno_of(decode_write_frame, frame(type_=READDIR)) == errno.EFAULT
    assert errno_of(decode_write_body, frame(type_=READDIR), READDIR) == errno.EFAULT


@pytest.mark.parametrize("size", range(1, 25))
def test_readdir_short_trailer_is_efault(size):
    """§1.4, §2.2: a successful READDIR trailer of 1–23 bytes is EFAULT (emulator rule); 24 bytes is accepted."""
    data = frame(type_=READDIR, trailer_size=size, trailer=b"\x01" * size)
    if size < 24:
        assert errno_of(decode_write_frame, data) == errno.EFAULT
    else:
        assert decode_write_frame(data)[1].trailer == b"\x01" * 24


def test_trailer_rule_keyed_on_downcall_type():
    """§1.4: the trailer rule follows downcall.type, not the type of the op being answered."""
    trailer = encode_readdir_trailer([(b"a", bytes(16))])
    readdir = frame(type_=READDIR, trailer_size=len(trailer), trailer=trailer)
    assert decode_write_body(readdir, int(OpCode.LOOKUP)).trailer == trailer
    lookup = frame(type_=int(OpCode.LOOKUP), trailer_size=len(trailer), trailer=trailer)
    assert errno_of(decode_write_body, lookup, READDIR) == errno.EFAULT


# --- valid frames: whole, truncated, with junk (§1.3, §1.4) --------------------------------------------------


@fuzz_settings(6)
@given(case=st.one_of(write_frames(), write_frames(OpCode.READDIR, status=0)))
def test_every_prefix_of_a_valid_write(case):
    """§1.4: every prefix of a valid write shorter than 8240 is EFAULT; longer partial READDIR writes are EFAULT; the whole write passes."""
    wire = case.encode()
    for length in range(len(wire) + 1):
        prefix = wire[:length]
        if length < MAX_DEV_REQ_DOWNSIZE:
            for fn in ALL_DECODE_WRITE:
                assert errno_of(fn, prefix) == errno.EFAULT, (fn.__name__, length)
        elif length < len(wire):
            assert errno_of(decode_write_frame, prefix) == errno.EFAULT, length
        else:
            assert errno_of(decode_write_frame, prefix) is None


@given(case=write_frames(), junk=st.binary(min_size=1, max_size=100))
def test_valid_write_with_trailing_junk(case, junk):
    """§1.4 checks 8–9: junk after a valid write is EFAULT when status is 0 and ignored when status ≠ 0."""
    data = case.encode() + junk
    if case.downcall.status == 0:
        assert errno_of(decode_write_frame, data) == errno.EFAULT
    else:
        _, body = decode_write_frame(data)
        assert body.downcall == case.downcall and body.trailer is None


@fuzz_settings(6)
@given(frame_=read_frames())
def test_every_prefix_of_a_valid_read(frame_):
    """§1.3: a read frame of any length other than exactly 8544 is EINVAL, every prefix included."""
    wire = encode_read_frame(frame_.tag, frame_.upcall)
    for length in range(len(wire)):
        assert errno_of(decode_read_frame, wire[:length]) == errno.EINVAL, length
    assert decode_read_frame(wire) == frame_


@given(frame_=read_frames(), junk=st.binary(min_size=1, max_size=100))
def test_valid_read_with_trailing_junk(frame_, junk):
    """§1.3: a read frame with bytes appended is EINVAL (the length must be exactly 8544)."""
    assert errno_of(decode_read_frame, encode_read_frame(frame_.tag, frame_.upcall) + junk) == errno.EINVAL


@fuzz_settings(25)
@given(value=upcalls(), cut=st.integers(0, UPCALL_SIZE - 1), junk=st.binary(min_size=1, max_size=16))
def test_bare_upcall_truncated_or_padded(value, cut, junk):
    """§3.2: a bare upcall cut short or with bytes appended is EINVAL."""
    wire = encode_upcall(value)
    assert errno_of(decode_upcall, wire[:cut]) == errno.EINVAL
    assert errno_of(decode_upcall, wire + junk) == errno.EINVAL


@fuzz_settings(25)
@given(value=downcalls(), cut=st.integers(0, DOWNCALL_SIZE - 1), junk=st.binary(min_size=1, max_size=16))
def test_bare_downcall_truncated_or_padded(value, cut, junk):
    """§3.3: a bare downcall cut short or with bytes appended is EFAULT."""
    wire = encode_downcall(value)
    assert errno_of(decode_downcall, wire[:cut]) == errno.EFAULT
    assert errno_of(decode_downcall, wire + junk) == errno.EFAULT


# --- encoders refuse what does not fit (§0.3, §3) ---------------------------------------------------------


def raises_encode_error(fn: Callable, *args, **kwargs) -> EncodeError:
    """Call an encoder that must refuse its input: EncodeError, nothing else, nothing returned."""
    try:
        result = fn(*args, **kwargs)
    except EncodeError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the point is to name the wrong exception
        pytest.fail(f"{fn.__name__} raised {type(exc).__name__}: {exc} instead of EncodeError")
    pytest.fail(f"{fn.__name__} accepted a value that does not fit and returned {result!r:.80}")


@pytest.mark.parametrize("name", sorted(all_cstructs()))
@fuzz_settings(30)
@given(data=st.data())
def test_pack_refuses_one_bad_field(name, data):
    """§3: a value with one field out of its C range (negative u32, too-long or NUL-holding name, wrong khandle length, oversized blob) raises EncodeError."""
    sc = all_cstructs()[name]
    value, path = data.draw(broken_values(sc))
    raises_encode_error(sc.pack, value)


@fuzz_settings(60)
@given(data=st.data())
def test_frame_encoders_refuse_bad_fields(data):
    """§1.3, §1.4: encode_upcall/downcall/read_frame/write_frame raise EncodeError for a broken field, a bad tag or a bad head word."""
    up, _ = data.draw(broken_values(orangefs_upcall_s, upcalls()))
    down, _ = data.draw(broken_values(orangefs_downcall_s, downcalls()))
    raises_encode_error(encode_upcall, up)
    raises_encode_error(encode_downcall, down)
    raises_encode_error(encode_read_frame, 1, up)
    raises_encode_error(encode_write_frame, 1, down)
    good_up, good_down = data.draw(upcalls()), data.draw(downcalls())
    bad_u64 = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)))
    bad_u32 = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
    bad_s32 = data.draw(st.one_of(st.integers(max_value=S32[0] - 1), st.integers(min_value=S32[1] + 1)))
    raises_encode_error(encode_read_frame, bad_u64, good_up)
    raises_encode_error(encode_read_frame, 1, good_up, version=bad_s32)
    raises_encode_error(encode_read_frame, 1, good_up, magic=bad_s32)
    raises_encode_error(encode_write_frame, bad_u64, good_down)
    raises_encode_error(encode_write_frame, 1, good_down, version=bad_u32)
    raises_encode_error(encode_write_frame, 1, good_down, magic=bad_u32)


@pytest.mark.parametrize(
    "entries",
    [
        [(b"", bytes(16))],
        [(b"x" * 256, bytes(16))],
        [(b"x" * 1000, bytes(16))],
        [(b"a\0b", bytes(16))],
        [(b"\0", bytes(16))],
        [(b"ok", bytes(15))],
        [(b"ok", bytes(17))],
        [(b"ok", b"")],
        [(b"ok", bytes(16)), (b"bad\0", bytes(16))],
    ],
    ids=["empty", "256", "1000", "nul", "only-nul", "kh15", "kh17", "kh0", "second-bad"],
)
def test_readdir_encoder_refuses_bad_entries(entries):
    """§3.4: encode_readdir_trailer refuses an empty, >255-byte or NUL-holding name or a khandle that is not 16 bytes with EncodeError."""
    raises_encode_error(encode_readdir_trailer, entries)


@given(
    name=st.one_of(
        st.binary(min_size=256, max_size=300),
        st.tuples(st.binary(max_size=20), st.binary(max_size=20)).map(lambda t: t[0] + b"\0" + t[1]),
        st.just(b""),
    ),
    khandle=st.binary(max_size=32),
)
def test_readdir_encoder_refuses_bad_names_fuzz(name, khandle):
    """§3.4: any name that is empty, over 255 bytes or holds a NUL is refused with EncodeError, whatever the khandle."""
    raises_encode_error(encode_readdir_trailer, [(name, khandle)])


@given(
    token=st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)),
    version=st.integers(0, U64_MAX),
)
def test_readdir_encoder_refuses_bad_header(token, version):
    """§3.4: a token or directory_version outside u64 is refused with EncodeError."""
    raises_encode_error(encode_readdir_trailer, [], token, version)
    raises_encode_error(encode_readdir_trailer, [], 0, token)


@pytest.mark.parametrize(
    "entries",
    [[("name", bytes(16))], [(b"ok", 5)], [(b"ok", None)], [(b"ok", "k" * 16)], [(None, bytes(16))]],
    ids=["str-name", "int-khandle", "none-khandle", "str-khandle", "none-name"],
)
def test_readdir_encoder_wrong_types_raise_encode_error(entries):
    """§3.4, errors.py contract: encoders raise only EncodeError, also for values of the wrong type."""
    raises_encode_error(encode_readdir_trailer, entries)


@pytest.mark.parametrize(
    "keywords",
    [
        [ClientDebugKeyword("a", -1, 0)],
        [ClientDebugKeyword("a", 0, -5)],
        [ClientDebugKeyword("a", 2**64, 0)],
        [ClientDebugKeyword("caf\u00e9", 1, 2)],
        [ClientDebugKeyword("a\0b", 1, 2)],
        [ClientDebugKeyword("", 1, 2)],
        [ClientDebugKeyword("a b", 1, 2)],
        [ClientDebugKeyword("x" * 3000, 1, 2)],
    ],
    ids=["neg-mask1", "neg-mask2", "mask-2**64", "non-ascii", "nul", "empty", "space", "too-long"],
)
def test_client_debug_encoder_refuses_unfit_values(keywords):
    """§1.7: CLIENT_STRING masks are u64 (%llx) and keywords one NUL-free word in 2047 bytes; anything else raises EncodeError."""
    raises_encode_error(encode_client_debug_string, keywords)
