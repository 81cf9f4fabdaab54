"""Round trips and codec equivalence for pvfs2proto (spec §1.3, §1.4, §2.7, §3).

Values come from the generic declaration walker in ``strategies.py``; every
property here is "what goes on the wire comes back unchanged" or "the fast
codec and the stock-construct reference agree".
"""

from __future__ import annotations

import errno
import struct

import pytest
from construct import Container
from hypothesis import given, settings
from hypothesis import strategies as st

import pvfs2proto
from pvfs2proto import (
    DirEntry,
    EncodeError,
    OpCode,
    decode_downcall,
    decode_read_frame,
    decode_readdir_trailer,
    decode_upcall,
    decode_write_body,
    decode_write_frame,
    decode_write_head,
    encode_downcall,
    encode_read_frame,
    encode_upcall,
    errno_to_status,
    status_to_errno,
)
from pvfs2proto.constants import (
    DOWNCALL_SIZE,
    DOWNCALL_UNION_SIZE,
    FRAME_HEAD_SIZE,
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    READDIR_RESPONSE_SIZE,
    UPCALL_SIZE,
    UPCALL_UNION_SIZE,
)
from pvfs2proto.cstruct import Blob, CString, CStruct, as_plain
from pvfs2proto.debug import ClientDebugKeyword, decode_client_debug_string, encode_client_debug_string
from pvfs2proto.downcall import DOWNCALL_MEMBERS, orangefs_downcall_s
from pvfs2proto.errors import PINT_ERRNO_MAPPING, ProtocolStatus
from pvfs2proto.upcall import UPCALL_MEMBERS, value32_pair, value64_of

from .strategies import (
    S32,
    S64,
    U64_MAX,
    UNKNOWN_OP_TYPES,
    WriteFrameCase,
    all_cstructs,
    downcalls,
    read_frames,
    readdir_cases,
    struct_values,
    upcalls,
    write_frames,
)

ALL_OPS = list(OpCode)
STRUCTS = all_cstructs()
_PLAIN: dict[str, object] = {}

#: Per-op tests run 27 times each; fewer examples per op keep the suite fast.
PER_OP = settings(max_examples=40)


def plain(name: str):
    """as_plain() of a declared struct, built once."""
    if name not in _PLAIN:
        _PLAIN[name] = as_plain(STRUCTS[name])
    return _PLAIN[name]


def not_an_opcode(value: int) -> bool:
    return value not in {int(op) for op in OpCode}


# --- upcalls and downcalls, per op (§3.2, §3.3) ------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
@PER_OP
@given(data=st.data())
def test_upcall_roundtrip(op, data):
    """§3.2: every op's upcall decodes to the value it was encoded from, and re-encodes to the same 8528 bytes."""
    value = data.draw(upcalls(op))
    wire = encode_upcall(value)
    assert len(wire) == UPCALL_SIZE
    decoded = decode_upcall(wire)
    assert decoded == value
    assert encode_upcall(decoded) == wire
    member = UPCALL_MEMBERS.get(op)
    assert list(decoded.req) == [member[0] if member else "raw"]


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
@PER_OP
@given(data=st.data())
def test_downcall_roundtrip(op, data):
    """§3.3: every op's downcall decodes (by its own type and by the op's type) to the value encoded, and re-encodes to the same 8224 bytes."""
    value = data.draw(downcalls(op))
    wire = encode_downcall(value)
    assert len(wire) == DOWNCALL_SIZE
    decoded = decode_downcall(wire)
    assert decoded == value
    assert decode_downcall(wire, op) == value
    assert encode_downcall(decoded) == wire
    member = DOWNCALL_MEMBERS.get(op, ("raw", None))
    assert list(decoded.resp) == ([] if member is None else [member[0]])


@given(value=upcalls(st.sampled_from(UNKNOWN_OP_TYPES) | st.integers(0, 2**32 - 1).filter(not_an_opcode)))
def test_unknown_upcall_type_roundtrips_as_raw(value):
    """§3.2: an upcall of a type the kernel does not define keeps all 8488 union bytes in req.raw."""
    assert list(value.req) == ["raw"] and len(value.req.raw) == UPCALL_UNION_SIZE
    wire = encode_upcall(value)
    assert decode_upcall(wire) == value
    assert wire[UPCALL_SIZE - UPCALL_UNION_SIZE :] == value.req.raw


@given(value=downcalls(st.sampled_from(UNKNOWN_OP_TYPES) | st.integers(0, 2**32 - 1).filter(not_an_opcode)))
def test_unknown_downcall_type_roundtrips_as_raw(value):
    """§3.3: a downcall of an unknown type keeps all 8200 union bytes in resp.raw."""
    assert list(value.resp) == ["raw"] and len(value.resp.raw) == DOWNCALL_UNION_SIZE
    wire = encode_downcall(value)
    assert decode_downcall(wire) == value
    assert wire[DOWNCALL_SIZE - DOWNCALL_UNION_SIZE :] == value.resp.raw


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
@settings(max_examples=10)
@given(data=st.data())
def test_downcall_resp_is_read_by_the_op_type(op, data):
    """§3.3: decoding with an explicit op type reads resp as that op's member, whatever downcall.type says."""
    value = data.draw(downcalls())
    wire = encode_downcall(value)
    expected = orangefs_downcall_s.unpack_case(op, wire)
    decoded = decode_downcall(wire, op)
    assert decoded == expected
    member = DOWNCALL_MEMBERS.get(op, ("raw", None))
    assert list(decoded.resp) == ([] if member is None else [member[0]])
    assert decoded.type == value.type and decoded.status == value.status


# --- the fast codec equals the stock-construct reference (§0.3, §3) ----------------------------------


@pytest.mark.parametrize("name", sorted(STRUCTS))
@settings(max_examples=25)
@given(data=st.data())
def test_fast_codec_equals_reference_on_values(name, data):
    """§3: for generated values, CStruct.pack equals as_plain(struct).build and CStruct.unpack equals as_plain(struct).parse."""
    sc, ref = STRUCTS[name], plain(name)
    value = data.draw(struct_values(sc))
    wire = sc.pack(value)
    assert wire == ref.build(value)
    assert len(wire) == sc.size == ref.sizeof()
    assert sc.unpack(wire) == ref.parse(wire) == value


@pytest.mark.parametrize("name", sorted(STRUCTS))
@settings(max_examples=25)
@given(data=st.data())
def test_fast_codec_equals_reference_on_bytes(name, data):
    """§0.3, §3: on arbitrary bytes both codecs decode the same value, pads ignored, and re-encode it the same way."""
    # A char[n] string with no NUL decodes to all n bytes, which neither codec
    # encodes again (the NUL must fit): then both must refuse it alike.
    sc, ref = STRUCTS[name], plain(name)
    head = data.draw(st.binary(min_size=min(sc.size, 8), max_size=min(sc.size, 64)))
    fill = data.draw(st.integers(0, 255))
    wire = (head + bytes([fill]) * sc.size)[: sc.size]
    decoded = sc.unpack(wire)
    assert decoded == ref.parse(wire)
    try:
        rebuilt = sc.pack(decoded)
    except EncodeError:
        with pytest.raises(EncodeError):
            ref.build(decoded)
    else:
        assert rebuilt == ref.build(decoded)


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
@settings(max_examples=5)
@given(data=st.data())
def test_unpack_case_equals_reference_member(op, data):
    """§3.3: unpack_case(op, bytes) gives the reference codec's member for op at the union's offset."""
    wire = encode_downcall(data.draw(downcalls()))
    decoded = orangefs_downcall_s.unpack_case(op, wire)
    member = DOWNCALL_MEMBERS.get(op, ("raw", Blob(DOWNCALL_UNION_SIZE)))
    if member is None:
        assert decoded.resp == Container()
    else:
        name, sc = member
        start = DOWNCALL_SIZE - DOWNCALL_UNION_SIZE
        reference = as_plain(sc).parse(wire[start : start + sc.sizeof()])
        assert decoded.resp[name] == reference


# --- small codec semantics (§0.3) -------------------------------------------------------------------


def test_missing_fields_encode_as_zero():
    """§0.3, §1.3: a value with no fields encodes as the zero-filled struct (pads, holes, pointers all zero)."""
    for name, sc in STRUCTS.items():
        assert sc.pack({}) == bytes(sc.size), name
        assert sc.pack({}) == plain(name).build(plain(name).parse(bytes(sc.size))), name


@given(value=st.binary(max_size=40))
def test_blob_zero_pads_and_cstring_stops_at_nul(value):
    """§3.1: a Blob encodes a shorter value zero-padded and decodes all n bytes; a CString decodes the bytes before the first NUL."""
    blob = CStruct("b" / Blob(48))
    assert blob.unpack(blob.pack({"b": value})).b == value.ljust(48, b"\0")
    cstr = CStruct("s" / CString(48))
    assert cstr.unpack(value.ljust(48, b"\0")).s == value.split(b"\0", 1)[0]


# --- read frames (§1.3) -------------------------------------------------------------------------


@given(frame=read_frames())
def test_read_frame_roundtrip(frame):
    """§1.3: a read frame of version 0 and the magic decodes to its tag and upcall and re-encodes to the same 8544 bytes."""
    wire = encode_read_frame(frame.tag, frame.upcall)
    assert len(wire) == MAX_DEV_REQ_UPSIZE
    decoded = decode_read_frame(wire)
    assert decoded == frame
    assert decoded.version == 0 and decoded.magic == ORANGEFS_DEVREQ_MAGIC
    assert wire[FRAME_HEAD_SIZE:] == encode_upcall(frame.upcall)
    assert encode_read_frame(decoded.tag, decoded.upcall) == wire


@given(frame=read_frames(), version=st.integers(1, S32[1]))
def test_read_frame_accepts_own_userspace_version(frame, version):
    """§1.3: the client-core accepts version 0 or its own version, and refuses any other with EPROTO."""
    wire = encode_read_frame(frame.tag, frame.upcall, version=version)
    assert decode_read_frame(wire, userspace_version=version).upcall == frame.upcall
    with pytest.raises(pvfs2proto.ProtocolError) as info:
        decode_read_frame(wire)
    assert info.value.errno == errno.EPROTO


# --- write frames (§1.4) ---------------------------------------------------------------------------


def check_write_roundtrip(case: WriteFrameCase) -> None:
    wire = case.encode()
    assert len(wire) == MAX_DEV_REQ_DOWNSIZE + len(case.trailer)
    head, body = decode_write_frame(wire, case.downcall.type)
    assert (head.version, head.magic, head.tag) == (case.version, ORANGEFS_DEVREQ_MAGIC, case.tag)
    assert body.downcall == case.downcall
    assert body.trailer == (case.trailer or None)
    assert decode_write_head(wire) == head
    assert decode_write_body(wire) == body
    assert wire[FRAME_HEAD_SIZE:MAX_DEV_REQ_DOWNSIZE] == encode_downcall(case.downcall)
    rebuilt = pvfs2proto.encode_write_frame(head.tag, body.downcall, body.trailer or b"", version=head.version)
    assert rebuilt == wire


@given(case=write_frames())
def test_write_frame_roundtrip(case):
    """§1.4: a valid device write decodes to its head, downcall and trailer, and re-encodes to the same bytes."""
    check_write_roundtrip(case)


@settings(max_examples=60)
@given(case=write_frames(OpCode.READDIR, status=0))
def test_readdir_write_frame_roundtrip(case):
    """§1.4, §3.4: a successful READDIR write carries its encode_readdir_trailer trailer, which decodes back to the entries."""
    check_write_roundtrip(case)
    _, body = decode_write_frame(case.encode())
    assert body.downcall.trailer_size == len(body.trailer) >= READDIR_RESPONSE_SIZE
    assert decode_readdir_trailer(body.trailer) == decode_readdir_trailer(body.trailer, strict=True)


@given(case=write_frames(), op=st.sampled_from(ALL_OPS))
def test_write_body_reads_resp_as_the_op_type(case, op):
    """§1.4, §3.3: decode_write_body(data, op) reads resp as op's member (the kernel reads resp by the upcall it answers)."""
    wire = case.encode()
    body = decode_write_body(wire, op)
    assert body.downcall == orangefs_downcall_s.unpack_case(op, wire, FRAME_HEAD_SIZE)
    assert body.trailer == (case.trailer or None)


# --- READDIR trailers (§3.4) ---------------------------------------------------------------------------


@given(case=readdir_cases())
def test_readdir_trailer_roundtrip(case):
    """§3.4: encode_readdir_trailer output decodes to the same token, version, outcount and entries under both the current and the strict decoder."""
    trailer = case.encode()
    expected = [DirEntry(name, khandle) for name, khandle in case.entries]
    for strict in (False, True):
        decoded = decode_readdir_trailer(trailer, strict=strict)
        assert decoded.token == case.token
        assert decoded.directory_version == case.directory_version
        assert decoded.outcount == len(case.entries)
        assert decoded.entries == expected
    assert decode_readdir_trailer(trailer) == decode_readdir_trailer(trailer, strict=True)


@given(case=readdir_cases())
def test_readdir_trailer_layout(case):
    """§3.4: trailer_size = 24 + Σ(roundup8(4 + len + 1) + 16), every entry 8-aligned after byte 24, pads zero."""
    trailer = case.encode()
    i = READDIR_RESPONSE_SIZE
    for name, khandle in case.entries:
        assert (i - READDIR_RESPONSE_SIZE) % 8 == 0
        padlen = (4 + len(name) + 1 + 7) // 8 * 8
        assert struct.unpack_from("<I", trailer, i)[0] == len(name)
        assert trailer[i + 4 : i + 4 + len(name)] == name
        assert trailer[i + 4 + len(name) : i + padlen] == bytes(padlen - 4 - len(name))
        assert trailer[i + padlen : i + padlen + 16] == khandle
        i += padlen + 16
    assert i == len(trailer)
    assert trailer[16:20] == bytes(4)


@given(case=readdir_cases(), junk=st.binary(max_size=200))
def test_current_readdir_decoder_keeps_entries_before_appended_bytes(case, junk):
    """§3.4: the current-kernel decoder ignores outcount; bytes appended after valid entries never hide them or raise."""
    decoded = decode_readdir_trailer(case.encode() + junk)
    expected = [DirEntry(name, khandle) for name, khandle in case.entries]
    assert decoded.entries[: len(expected)] == expected
    assert all(len(entry.khandle) == 16 for entry in decoded.entries)


@given(head=st.binary(min_size=24, max_size=24), body=st.binary(max_size=600))
def test_current_readdir_decoder_never_raises_after_header(head, body):
    """§3.4: with a 24-byte header present, the current-kernel decoder returns entries for any following bytes and never raises."""
    decoded = decode_readdir_trailer(head + body)
    assert decoded.outcount == struct.unpack_from("<I", head, 20)[0]
    for entry in decoded.entries:
        assert b"\0" not in entry.name and len(entry.khandle) == 16


@given(case=readdir_cases(max_size=4), data=st.data())
def test_current_readdir_decoder_never_raises_on_changed_bytes(case, data):
    """§3.4: changing any bytes after the 24-byte header of a valid trailer never makes the current-kernel decoder raise."""
    trailer = bytearray(case.encode())
    for _ in range(data.draw(st.integers(1, 6))):
        if len(trailer) > READDIR_RESPONSE_SIZE:
            at = data.draw(st.integers(READDIR_RESPONSE_SIZE, len(trailer) - 1))
            trailer[at] = data.draw(st.integers(0, 255))
    decoded = decode_readdir_trailer(bytes(trailer))
    assert all(isinstance(e, DirEntry) and len(e.khandle) == 16 for e in decoded.entries)


# --- errno ⇄ status (§2.7) ----------------------------------------------------------------------------

SPEC_ERRNO_TABLE = (
    0, errno.EPERM, errno.ENOENT, errno.EINTR, errno.EIO, errno.ENXIO, errno.EBADF, errno.EAGAIN,
    errno.ENOMEM, errno.EFAULT, errno.EBUSY, errno.EEXIST, errno.ENODEV, errno.ENOTDIR, errno.EISDIR,
    errno.EINVAL, errno.EMFILE, errno.EFBIG, errno.ENOSPC, errno.EROFS, errno.EMLINK, errno.EPIPE,
    errno.EDEADLK, errno.ENAMETOOLONG, errno.ENOLCK, errno.ENOSYS, errno.ENOTEMPTY, errno.ELOOP,
    errno.EWOULDBLOCK, errno.ENOMSG, errno.EUNATCH, errno.EBADR, errno.EDEADLOCK, errno.ENODATA,
    errno.ETIME, errno.ENONET, errno.EREMOTE, errno.ECOMM, errno.EPROTO, errno.EBADMSG, errno.EOVERFLOW,
    errno.ERESTART, errno.EMSGSIZE, errno.EPROTOTYPE, errno.ENOPROTOOPT, errno.EPROTONOSUPPORT,
    errno.EOPNOTSUPP, errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ENETDOWN, errno.ENETUNREACH,
    errno.ENETRESET, errno.ENOBUFS, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.EHOSTDOWN,
    errno.EHOSTUNREACH, errno.EALREADY, errno.EACCES, errno.ECONNRESET, errno.ERANGE,
)  # fmt: skip


def test_errno_table_matches_spec():
    """§2.7: PINT_ERRNO_MAPPING is the spec's 61-slot table (index 0 → 0)."""
    assert tuple(PINT_ERRNO_MAPPING) == SPEC_ERRNO_TABLE


@pytest.mark.parametrize("index", range(1, 61))
def test_errno_to_status_roundtrip(index):
    """§2.7: every errno in the table encodes as -(0x40000000 | index of its first slot) and normalises back to itself."""
    err = PINT_ERRNO_MAPPING[index]
    status = errno_to_status(err)
    assert status < 0 and -status & 0x40000000 and -status & 0x20000000 == 0
    assert PINT_ERRNO_MAPPING[-status & 0x7F] == err
    assert status_to_errno(status) == err


def test_errno_to_status_examples():
    """§2.7: ENOENT is sent as -1073741826, EFAULT as -0x40000009, ENOMEM as -0x40000008, success as 0."""
    assert errno_to_status(errno.ENOENT) == -1073741826
    assert errno_to_status(errno.EFAULT) == -0x40000009
    assert errno_to_status(errno.ENOMEM) == -0x40000008
    assert errno_to_status(0) == 0 and status_to_errno(0) == 0


@pytest.mark.parametrize("index", range(61))
def test_status_index_normalises_to_table_entry(index):
    """§2.7 rule 4: status -(0x40000000 | index) normalises to table[index] for every index 0..60."""
    assert status_to_errno(-(0x40000000 | index)) == SPEC_ERRNO_TABLE[index]


@given(index=st.integers(0, 60), cls=st.integers(0, 7))
def test_status_class_bits_ignored(index, cls):
    """§2.7: the error-class bits 7–9 do not change the errno an encoded status normalises to."""
    assert status_to_errno(-(0x40000000 | cls << 7 | index)) == SPEC_ERRNO_TABLE[index]


@given(index=st.integers(0, 60), cls=st.integers(0, 7))
def test_positive_status_is_inverted(index, cls):
    """§2.7 rule 2, §1.4: a positive status is treated as the negated (inverted) error."""
    status = 0x40000000 | cls << 7 | index
    assert status_to_errno(status) == status_to_errno(-status) == SPEC_ERRNO_TABLE[index]


@given(err=st.integers(1, 0x3FFFFFFF).filter(lambda v: not v & 0x60000000), sign=st.sampled_from([-1, 1]))
def test_plain_errno_is_einval(err, sign):
    """§2.7 rule 5, §1.4: a status without bits 29/30 (a plain -errno such as -2) normalises to EINVAL."""
    assert status_to_errno(sign * err) == errno.EINVAL


def test_plain_errno_examples():
    """§1.4: -2 (plain -ENOENT) and INT_MIN are EINVAL, not ENOENT."""
    assert status_to_errno(-errno.ENOENT) == errno.EINVAL
    assert status_to_errno(S32[0]) == errno.EINVAL


@given(number=st.integers(0, 0x7F), cls=st.integers(0, 7), high=st.booleans())
def test_protocol_errors(number, cls, high):
    """§2.7 rule 3: a status with bit 29 set is ETIMEDOUT if it is ECANCEL (class bits ignored) and EINVAL otherwise."""
    value = 0x20000000 | (0x40000000 if high else 0) | cls << 7 | number
    expected = errno.ETIMEDOUT if value & ~0x380 == ProtocolStatus.ECANCEL else errno.EINVAL
    assert status_to_errno(-value) == expected
    assert status_to_errno(value) == expected


def test_protocol_error_constants():
    """§2.7: ECANCEL..ESECURITY are 0x60000001..0x60000009; sent negated, ECANCEL → ETIMEDOUT, the rest → EINVAL."""
    names = "ECANCEL EDEVINIT EDETAIL EHOSTNTFD EADDRNTFD ENORECVR ETRYAGAIN ENOTPVFS ESECURITY".split()
    for i, name in enumerate(names, start=1):
        value = getattr(ProtocolStatus, name)
        assert value == 0x60000000 | i
        assert status_to_errno(-value) == (errno.ETIMEDOUT if name == "ECANCEL" else errno.EINVAL)


@given(index=st.integers(61, 0x7F), cls=st.integers(0, 7), extra=st.integers(0, 2**19 - 1))
def test_index_past_table_is_einval(index, cls, extra):
    """§2.7 rule 4: an encoded index ≥ 61 (bits 10–28 count as index too) normalises to EINVAL."""
    assert status_to_errno(-(0x40000000 | cls << 7 | index)) == errno.EINVAL
    assert status_to_errno(-(0x40000000 | extra << 10 | index)) == errno.EINVAL


@given(status=st.integers(*S32))
def test_status_to_errno_total(status):
    """§2.7: every s32 status normalises to 0 (only for 0 and -0x40000000) or a positive errno, never raising."""
    result = status_to_errno(status)
    assert result >= 0
    assert (result == 0) == (status in (0, -0x40000000, 0x40000000) or abs(status) & ~0x380 == 0x40000000)


@pytest.mark.parametrize("err", [errno.ESTALE, errno.EXDEV, errno.ENOTTY, errno.EDQUOT, 4095, -1])
def test_errno_without_slot_raises_encode_error(err):
    """§2.7: errno_to_status refuses an errno with no slot in the table (ESTALE, EXDEV, ...) with EncodeError."""
    with pytest.raises(EncodeError):
        errno_to_status(err)


# --- PARAM value32 view (§3.2) -------------------------------------------------------------------------


@given(v=st.integers(*S64))
def test_param_value32_view(v):
    """§3.2: PARAM u.value32[0..1] is the little-endian split of u.value64, and value64_of inverts value32_pair."""
    pair = value32_pair(v)
    assert pair == struct.unpack("<ii", struct.pack("<q", v))
    assert value64_of(*pair) == v


@given(a=st.integers(*S32), b=st.integers(*S32))
def test_param_value64_from_pair(a, b):
    """§3.2: value32_pair(value64_of(a, b)) == (a, b) for any two s32, and the upcall bytes carry them in order."""
    assert value32_pair(value64_of(a, b)) == (a, b)
    wire = encode_upcall({"type": OpCode.PARAM, "req": {"param": {"u": {"value64": value64_of(a, b)}}}})
    offset = UPCALL_SIZE - UPCALL_UNION_SIZE + 8
    assert struct.unpack_from("<ii", wire, offset) == (a, b)


# --- CLIENT_STRING text (§1.7) ------------------------------------------------------------------------

keywords = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
client_keywords = st.builds(ClientDebugKeyword, keywords, st.integers(0, U64_MAX), st.integers(0, U64_MAX))


@given(kws=st.lists(client_keywords, min_size=1, max_size=30))
def test_client_debug_string_roundtrip(kws):
    """§1.7: a CLIENT_STRING buffer of "keyword mask1 mask2\\n" lines decodes to the same keywords and masks."""
    try:
        buffer = encode_client_debug_string(kws)
    except EncodeError:
        return  # too long for 2047 bytes
    assert len(buffer) == 2048 and buffer[-1] == 0
    assert decode_client_debug_string(buffer) == kws
