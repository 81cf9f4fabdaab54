"""Golden byte strings, assembled by hand from the spec's offsets (§1.3, §1.4, §3.2–§3.6).

Each frame is built here with ``struct.pack_into`` at the offsets the spec
tabulates — never with the package's encoders — then compared both ways: the
package's encoder must produce exactly these bytes, and its decoder must read
back the values put in.  Then each is fed one byte short and with trailing
junk, where the kernel's rules say what happens.
"""

from __future__ import annotations

import errno
import struct

import pytest

import pvfs2proto
from pvfs2proto import OpCode, ProtocolError
from pvfs2proto.ioctl import IoctlCommand, decode_ioctl_arg, validate_map_desc

MAGIC = 0x20030529
ITERATE_END = 2147483645
ENOENT_STATUS = -(0x40000000 | 2)  # −1073741826, spec §2.7


# --- a. GETATTR read frame (§1.3, §3.2, §3.6) ------------------------------------------------------------

GETATTR_KHANDLE = bytes(range(16))


def golden_getattr_read_frame() -> bytes:
    frame = bytearray(8544)
    struct.pack_into("<i", frame, 0, 0)  # kernel protocol version
    struct.pack_into("<I", frame, 4, MAGIC)
    struct.pack_into("<Q", frame, 8, 100)  # tag
    struct.pack_into("<I", frame, 16, 0xFF000004)  # upcall.type = GETATTR
    struct.pack_into("<I", frame, 20, 1000)  # uid
    struct.pack_into("<I", frame, 24, 100)  # gid
    struct.pack_into("<i", frame, 28, 4242)  # pid
    struct.pack_into("<i", frame, 32, 4242)  # tgid
    # 36..40 hole, 40..48 trailer_size 0, 48..56 trailer_buf 0
    frame[56:72] = GETATTR_KHANDLE  # req.getattr.refn.khandle
    struct.pack_into("<i", frame, 72, 7)  # req.getattr.refn.fs_id
    struct.pack_into("<I", frame, 80, 0x3710007F)  # req.getattr.mask = ALL_NOHINT
    return bytes(frame)


GETATTR_UPCALL = {
    "type": OpCode.GETATTR,
    "uid": 1000,
    "gid": 100,
    "pid": 4242,
    "tgid": 4242,
    "req": {"getattr": {"refn": {"khandle": GETATTR_KHANDLE, "fs_id": 7}, "mask": 0x3710007F}},
}


def test_golden_getattr_read_frame_is_8544_bytes_with_fields_at_spec_offsets():
    """Spec §1.3/§3.6: the hand-built GETATTR read frame is 8544 bytes with only the spec's fields non-zero."""
    golden = golden_getattr_read_frame()
    assert len(golden) == 8544
    assert golden[:16] == bytes.fromhex("00000000" "29050320" "6400000000000000")
    assert golden[16:36] == bytes.fromhex("040000ff" "e8030000" "64000000" "92100000" "92100000")
    assert golden[36:56] == bytes(20)
    assert golden[84:] == bytes(8544 - 84)


def test_encode_read_frame_gives_golden_getattr_bytes():
    """Spec §1.3/§3.2: encoding the GETATTR upcall with tag 100 gives exactly the golden 8544 bytes."""
    assert pvfs2proto.encode_read_frame(100, GETATTR_UPCALL) == golden_getattr_read_frame()


def test_decode_read_frame_reads_golden_getattr_values():
    """Spec §1.3/§3.2: decoding the golden GETATTR frame gives back version, magic, tag and every upcall field."""
    frame = pvfs2proto.decode_read_frame(golden_getattr_read_frame())
    assert (frame.version, frame.magic, frame.tag) == (0, MAGIC, 100)
    upcall = frame.upcall
    assert upcall.type == 0xFF000004
    assert (upcall.uid, upcall.gid, upcall.pid, upcall.tgid) == (1000, 100, 4242, 4242)
    assert upcall.trailer_size == 0
    assert upcall.req.getattr.refn.khandle == GETATTR_KHANDLE
    assert upcall.req.getattr.refn.fs_id == 7
    assert upcall.req.getattr.mask == 0x3710007F


@pytest.mark.parametrize("length", [8543, 8545, 0, 8528, 8544 * 2])
def test_read_frame_of_wrong_length_is_einval(length):
    """Spec §1.3: a read whose length is not exactly 8544 (one byte short, one byte of junk, …) is EINVAL."""
    golden = golden_getattr_read_frame()
    data = golden[:length] if length <= 8544 else golden + b"\xa5" * (length - 8544)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_read_frame(data)
    assert info.value.errno == errno.EINVAL


def test_read_frame_with_wrong_magic_is_eproto():
    """Spec §1.3: the client checks the read frame's magic against 0x20030529 (refused as EPROTO)."""
    data = bytearray(golden_getattr_read_frame())
    struct.pack_into("<I", data, 4, MAGIC + 1)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_read_frame(bytes(data))
    assert info.value.errno == errno.EPROTO


# --- b. LOOKUP downcall, ENOENT (§1.4, §2.7, §3.3) ----------------------------------------------------------


def golden_lookup_enoent_write_frame() -> bytes:
    frame = bytearray(8240)
    struct.pack_into("<I", frame, 0, 21000)  # userspace version
    struct.pack_into("<I", frame, 4, MAGIC)
    struct.pack_into("<Q", frame, 8, 101)  # tag
    struct.pack_into("<I", frame, 16, 0xFF000002)  # downcall.type = LOOKUP
    struct.pack_into("<i", frame, 20, ENOENT_STATUS)  # downcall.status
    struct.pack_into("<q", frame, 24, 0)  # trailer_size
    return bytes(frame)


LOOKUP_ENOENT_DOWNCALL = {"type": OpCode.LOOKUP, "status": ENOENT_STATUS}


def test_golden_lookup_write_frame_is_exactly_8240_bytes():
    """Spec §1.4: a non-READDIR downcall write is exactly 16 + 8224 = 8240 bytes."""
    golden = golden_lookup_enoent_write_frame()
    assert len(golden) == 8240
    assert golden[:24] == bytes.fromhex("08520000" "29050320" "6500000000000000" "020000ff" "feffffbf")
    assert golden[24:] == bytes(8240 - 24)


def test_enoent_status_is_minus_1073741826():
    """Spec §2.7: ENOENT travels as −(0x40000000 | 2) = −1073741826 and normalises back to ENOENT."""
    assert ENOENT_STATUS == -1073741826
    assert pvfs2proto.status_to_errno(ENOENT_STATUS) == errno.ENOENT
    assert pvfs2proto.errno_to_status(errno.ENOENT) == ENOENT_STATUS


def test_encode_write_frame_gives_golden_lookup_bytes():
    """Spec §1.4/§3.3: encoding the LOOKUP ENOENT downcall with version 21000 and tag 101 gives the golden bytes."""
    encoded = pvfs2proto.encode_write_frame(101, LOOKUP_ENOENT_DOWNCALL, version=21000)
    assert encoded == golden_lookup_enoent_write_frame()


def test_decode_write_frame_reads_golden_lookup_values():
    """Spec §1.4/§3.3: decoding the golden LOOKUP frame gives head, type, status, trailer_size 0 and no trailer."""
    head, body = pvfs2proto.decode_write_frame(golden_lookup_enoent_write_frame(), OpCode.LOOKUP)
    assert (head.version, head.magic, head.tag) == (21000, MAGIC, 101)
    assert body.downcall.type == 0xFF000002
    assert body.downcall.status == -1073741826
    assert body.downcall.trailer_size == 0
    assert body.trailer is None
    assert body.downcall.resp.lookup.refn.khandle == bytes(16)
    assert body.downcall.resp.lookup.refn.fs_id == 0
    assert pvfs2proto.status_to_errno(body.downcall.status) == errno.ENOENT


@pytest.mark.parametrize("length", [8239, 16, 0])
def test_write_frame_shorter_than_8240_is_efault(length):
    """Spec §1.4 check 1: a write shorter than MAX_DEV_REQ_DOWNSIZE (8240) is EFAULT."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(golden_lookup_enoent_write_frame()[:length], OpCode.LOOKUP)
    assert info.value.errno == errno.EFAULT


@pytest.mark.parametrize("junk", [b"\x00", b"\xa5" * 7, b"\xa5" * 24])
def test_failed_downcall_ignores_extra_bytes(junk):
    """Spec §1.4 check 8: with status ≠ 0 the trailer and size checks are skipped and extra bytes are ignored."""
    head, body = pvfs2proto.decode_write_frame(golden_lookup_enoent_write_frame() + junk, OpCode.LOOKUP)
    assert head.tag == 101
    assert body.downcall.status == ENOENT_STATUS
    assert body.trailer is None


def golden_lookup_success_write_frame() -> bytes:
    frame = bytearray(golden_lookup_enoent_write_frame())
    struct.pack_into("<i", frame, 20, 0)  # status 0
    frame[40:56] = bytes(range(0x10, 0x20))  # resp.lookup.refn.khandle
    struct.pack_into("<i", frame, 56, 7)  # resp.lookup.refn.fs_id
    return bytes(frame)


def test_encode_and_decode_golden_successful_lookup():
    """Spec §3.3/§3.6: a successful LOOKUP carries refn.khandle at frame offset 40 and refn.fs_id at 56."""
    downcall = {
        "type": OpCode.LOOKUP,
        "status": 0,
        "resp": {"lookup": {"refn": {"khandle": bytes(range(0x10, 0x20)), "fs_id": 7}}},
    }
    golden = golden_lookup_success_write_frame()
    assert pvfs2proto.encode_write_frame(101, downcall, version=21000) == golden
    _head, body = pvfs2proto.decode_write_frame(golden, OpCode.LOOKUP)
    assert body.downcall.resp.lookup.refn.khandle == bytes(range(0x10, 0x20))
    assert body.downcall.resp.lookup.refn.fs_id == 7


@pytest.mark.parametrize("junk", [b"\x00", b"\xa5" * 8, b"\xa5" * 24])
def test_successful_non_readdir_downcall_with_extra_bytes_is_efault(junk):
    """Spec §1.4 check 9: with status 0 a non-READDIR write must be exactly 8240 bytes; extra bytes are EFAULT."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(golden_lookup_success_write_frame() + junk, OpCode.LOOKUP)
    assert info.value.errno == errno.EFAULT


def test_successful_non_readdir_downcall_with_consistent_trailer_is_efault():
    """Spec §1.4 check 10: a non-READDIR downcall with trailer_size ≠ 0 is EFAULT even when the length matches."""
    data = bytearray(golden_lookup_success_write_frame() + bytes(24))
    struct.pack_into("<q", data, 24, 24)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(bytes(data), OpCode.LOOKUP)
    assert info.value.errno == errno.EFAULT


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        pytest.param(20903, True, id="minimum-20903"),
        pytest.param(21000, True, id="21000"),
        pytest.param(0xFFFFFFFF, True, id="0xffffffff-unsigned-compare"),
        pytest.param(20902, False, id="20902"),
        pytest.param(0, False, id="zero"),
    ],
)
def test_write_frame_version_is_compared_unsigned_against_20903(version, ok):
    """Spec §1.4 check 3: head.version below 20903 (unsigned compare, so 0 fails) is EPROTO."""
    data = bytearray(golden_lookup_enoent_write_frame())
    struct.pack_into("<I", data, 0, version)
    if ok:
        head, _body = pvfs2proto.decode_write_frame(bytes(data), OpCode.LOOKUP)
        assert head.version == version
    else:
        with pytest.raises(ProtocolError) as info:
            pvfs2proto.decode_write_frame(bytes(data), OpCode.LOOKUP)
        assert info.value.errno == errno.EPROTO


def test_write_frame_with_wrong_magic_is_eproto():
    """Spec §1.4 check 4: head.magic other than 0x20030529 is EPROTO."""
    data = bytearray(golden_lookup_enoent_write_frame())
    struct.pack_into("<I", data, 4, 0x20030528)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(bytes(data), OpCode.LOOKUP)
    assert info.value.errno == errno.EPROTO


def test_short_write_is_efault_before_version_check():
    """Spec §1.4: the length check (1, EFAULT) comes before the version check (3, EPROTO)."""
    data = bytearray(golden_lookup_enoent_write_frame()[:8239])
    struct.pack_into("<I", data, 0, 0)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(bytes(data), OpCode.LOOKUP)
    assert info.value.errno == errno.EFAULT


def test_read_frame_version_is_zero_or_the_clients_own():
    """Spec §1.3: the userspace client accepts read-frame version 0 or its own version, nothing else."""
    data = bytearray(golden_getattr_read_frame())
    struct.pack_into("<i", data, 0, 21000)
    assert pvfs2proto.decode_read_frame(bytes(data), userspace_version=21000).version == 21000
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_read_frame(bytes(data))
    assert info.value.errno == errno.EPROTO


# --- c. READDIR trailer (§3.4) ------------------------------------------------------------------------------------

KHANDLE_A = bytes(range(0x00, 0x10))
KHANDLE_HELLO = bytes(range(0x20, 0x30))
KHANDLE_LONG = bytes(range(0xF0, 0x100))
LONG_NAME = bytes(ord("a") + i % 26 for i in range(200))  # 200 lower-case letters
ENTRIES = [(b"a", KHANDLE_A), (b"hello", KHANDLE_HELLO), (LONG_NAME, KHANDLE_LONG)]


def golden_readdir_trailer() -> bytes:
    header = struct.pack("<QQII", ITERATE_END, 0, 0, 3)  # token, directory_version, __pad2, outcount
    # "a": 4 + 1 + 1 = 6, padded to 8
    entry_a = struct.pack("<I", 1) + b"a" + b"\0" + bytes(2) + KHANDLE_A
    # "hello": 4 + 5 + 1 = 10, padded to 16
    entry_hello = struct.pack("<I", 5) + b"hello" + b"\0" + bytes(6) + KHANDLE_HELLO
    # 200 bytes: 4 + 200 + 1 = 205, padded to 208
    entry_long = struct.pack("<I", 200) + LONG_NAME + b"\0" + bytes(3) + KHANDLE_LONG
    return header + entry_a + entry_hello + entry_long


def test_golden_readdir_trailer_layout():
    """Spec §3.4: trailer = 24-byte header + entries of roundup8(4 + len + 1) + 16 bytes (24 + 24 + 32 + 224 = 304)."""
    golden = golden_readdir_trailer()
    assert len(golden) == 304
    assert golden[24:48] == bytes.fromhex("01000000" "61000000") + KHANDLE_A
    assert golden[48:80] == bytes.fromhex("05000000" "68656c6c6f000000" "00000000") + KHANDLE_HELLO
    assert golden[80:84] == bytes.fromhex("c8000000")
    assert golden[284:288] == bytes(4)  # NUL + 3 pad bytes after the 200-byte name
    assert golden[288:304] == KHANDLE_LONG


def test_encode_readdir_trailer_gives_golden_bytes():
    """Spec §3.4: encoding the three entries with token ITERATE_END gives exactly the golden trailer."""
    assert pvfs2proto.encode_readdir_trailer(ENTRIES, token=ITERATE_END) == golden_readdir_trailer()
    assert pvfs2proto.encode_readdir_trailer(ENTRIES) == golden_readdir_trailer()


@pytest.mark.parametrize("strict", [False, True], ids=["current", "strict"])
def test_decode_readdir_trailer_reads_golden_entries(strict):
    """Spec §3.4: both the current walk and the older strict decode read the golden trailer's three entries."""
    response = pvfs2proto.decode_readdir_trailer(golden_readdir_trailer(), strict=strict)
    assert response.token == ITERATE_END
    assert response.directory_version == 0
    assert response.outcount == 3
    assert [(e.name, e.khandle) for e in response.entries] == ENTRIES


def test_decode_readdir_trailer_default_is_the_current_walk():
    """Spec §3.4: the default decode of the golden trailer equals the non-strict one."""
    default = pvfs2proto.decode_readdir_trailer(golden_readdir_trailer())
    assert default == pvfs2proto.decode_readdir_trailer(golden_readdir_trailer(), strict=False)


def test_empty_directory_trailer_is_24_bytes():
    """Spec §3.4: an empty directory is a 24-byte trailer with token ITERATE_END and outcount 0."""
    golden = struct.pack("<QQII", ITERATE_END, 0, 0, 0)
    assert pvfs2proto.encode_readdir_trailer([]) == golden
    for strict in (False, True):
        response = pvfs2proto.decode_readdir_trailer(golden, strict=strict)
        assert (response.token, response.outcount, response.entries) == (ITERATE_END, 0, [])


def test_strict_decode_of_trailer_one_byte_short_is_einval():
    """Spec §3.4: older kernels fail the readdir with EINVAL when the last entry runs past the trailer."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_readdir_trailer(golden_readdir_trailer()[:-1], strict=True)
    assert info.value.errno == errno.EINVAL


def test_current_decode_of_trailer_one_byte_short_skips_the_truncated_entry():
    """Spec §3.4: the current kernel skips an entry that does not fit (8-byte steps) and keeps the earlier ones."""
    response = pvfs2proto.decode_readdir_trailer(golden_readdir_trailer()[:-1])
    assert [(e.name, e.khandle) for e in response.entries] == ENTRIES[:2]


def test_strict_decode_of_trailer_with_trailing_junk_is_einval():
    """Spec §3.4: older kernels require the decoded bytes to equal trailer_size exactly, so trailing junk is EINVAL."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_readdir_trailer(golden_readdir_trailer() + b"\x00", strict=True)
    assert info.value.errno == errno.EINVAL


def test_current_decode_of_trailer_with_trailing_junk_keeps_all_entries():
    """Spec §3.4: the current kernel ignores outcount and stops when fewer than 4 bytes remain, so junk is dropped."""
    response = pvfs2proto.decode_readdir_trailer(golden_readdir_trailer() + b"\x00")
    assert [(e.name, e.khandle) for e in response.entries] == ENTRIES


def test_strict_decode_with_wrong_outcount_is_einval():
    """Spec §3.4: older kernels decode exactly outcount entries, so a count one too high is EINVAL."""
    data = bytearray(golden_readdir_trailer())
    struct.pack_into("<I", data, 20, 4)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_readdir_trailer(bytes(data), strict=True)
    assert info.value.errno == errno.EINVAL
    assert len(pvfs2proto.decode_readdir_trailer(bytes(data)).entries) == 3  # the current kernel ignores it


# --- d. READDIR write frame (§1.4, §3.4, §3.6) -----------------------------------------------------------------------


def golden_readdir_write_frame() -> bytes:
    trailer = golden_readdir_trailer()
    frame = bytearray(8240)
    struct.pack_into("<I", frame, 0, 21000)
    struct.pack_into("<I", frame, 4, MAGIC)
    struct.pack_into("<Q", frame, 8, 102)
    struct.pack_into("<I", frame, 16, 0xFF000007)  # downcall.type = READDIR
    struct.pack_into("<i", frame, 20, 0)  # status
    struct.pack_into("<q", frame, 24, len(trailer))  # trailer_size
    return bytes(frame) + trailer


def test_golden_readdir_write_frame_is_8240_plus_trailer():
    """Spec §1.4: a successful READDIR write is 16 + 8224 + trailer_size bytes, the trailer at offset 8240."""
    golden = golden_readdir_write_frame()
    assert len(golden) == 8240 + 304
    assert golden[24:32] == struct.pack("<q", 304)
    assert golden[8240:] == golden_readdir_trailer()


def test_encode_write_frame_gives_golden_readdir_bytes():
    """Spec §1.4/§3.4: encoding the READDIR downcall with its trailer gives the golden bytes (trailer_size set)."""
    encoded = pvfs2proto.encode_write_frame(
        102, {"type": OpCode.READDIR, "status": 0}, golden_readdir_trailer(), version=21000
    )
    assert encoded == golden_readdir_write_frame()


def test_decode_write_frame_reads_golden_readdir_trailer():
    """Spec §1.4 check 12: a successful READDIR write yields its trailer, which decodes to the three entries."""
    head, body = pvfs2proto.decode_write_frame(golden_readdir_write_frame(), OpCode.READDIR)
    assert (head.version, head.magic, head.tag) == (21000, MAGIC, 102)
    assert body.downcall.type == 0xFF000007
    assert body.downcall.status == 0
    assert body.downcall.trailer_size == 304
    assert body.trailer == golden_readdir_trailer()
    response = pvfs2proto.decode_readdir_trailer(body.trailer)
    assert [(e.name, e.khandle) for e in response.entries] == ENTRIES


def test_decode_write_frame_without_op_type_uses_downcall_type():
    """Spec §1.4: the trailer rule is keyed on downcall.type, so the READDIR frame decodes without the op type."""
    _head, body = pvfs2proto.decode_write_frame(golden_readdir_write_frame())
    assert body.trailer == golden_readdir_trailer()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda g: g[:-1], id="one-byte-short"),
        pytest.param(lambda g: g + b"\x00", id="one-byte-junk"),
        pytest.param(lambda g: g + b"\xa5" * 8, id="eight-bytes-junk"),
        pytest.param(lambda g: g[:8240], id="trailer-missing"),
    ],
)
def test_readdir_write_frame_length_must_equal_8240_plus_trailer_size(data):
    """Spec §1.4 check 9: with status 0 the write length must equal 16 + 8224 + trailer_size, else EFAULT."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(data(golden_readdir_write_frame()), OpCode.READDIR)
    assert info.value.errno == errno.EFAULT


def test_successful_readdir_without_trailer_is_efault():
    """Spec §1.4 check 11: a successful READDIR with trailer_size 0 is EFAULT."""
    frame = bytearray(golden_readdir_write_frame()[:8240])
    struct.pack_into("<q", frame, 24, 0)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(bytes(frame), OpCode.READDIR)
    assert info.value.errno == errno.EFAULT


def test_failed_readdir_ignores_trailer_and_extra_bytes():
    """Spec §1.4 check 8: a READDIR with status ≠ 0 skips the trailer checks; its bytes are ignored."""
    frame = bytearray(golden_readdir_write_frame() + b"\xa5")
    struct.pack_into("<i", frame, 20, ENOENT_STATUS)
    _head, body = pvfs2proto.decode_write_frame(bytes(frame), OpCode.READDIR)
    assert body.downcall.status == ENOENT_STATUS
    assert body.trailer is None


@pytest.mark.parametrize("size", [1, 8, 23])
def test_successful_readdir_with_trailer_shorter_than_header_is_efault(size):
    """Spec §2.2/§3.4: the emulator refuses a successful READDIR whose trailer is under 24 bytes (EFAULT)."""
    frame = bytearray(golden_readdir_write_frame()[: 8240 + size])
    struct.pack_into("<q", frame, 24, size)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_write_frame(bytes(frame), OpCode.READDIR)
    assert info.value.errno == errno.EFAULT


def test_readdir_trailer_over_16_mib_is_eio():
    """Spec §2.2: a readdir trailer larger than 16 MiB (1 << 24) makes the readdir fail with EIO."""
    trailer = golden_readdir_trailer() + bytes((1 << 24) + 1 - 304)
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_readdir_trailer(trailer)
    assert info.value.errno == errno.EIO


def test_readdir_trailer_shorter_than_header_is_refused():
    """Spec §2.2: the emulator requires at least the 24-byte header in a readdir trailer."""
    with pytest.raises(ProtocolError) as info:
        pvfs2proto.decode_readdir_trailer(golden_readdir_trailer()[:23])
    assert info.value.errno == errno.EFAULT


# --- e. MAP ioctl argument (§1.7, §3.5, §5.1) ---------------------------------------------------------------------------

MAP_PTR = 0x7F0000000000
MAP_SIZE = 4 * 1024 * 1024
MAP_COUNT = 5


def golden_map_desc() -> bytes:
    # ptr @0 (8), total_size @8, size @12, count @16, hole @20 (4)
    return struct.pack("<QiiiI", MAP_PTR, MAP_SIZE * MAP_COUNT, MAP_SIZE, MAP_COUNT, 0)


def test_golden_map_desc_is_24_bytes():
    """Spec §3.5: struct ORANGEFS_dev_map_desc is 24 bytes: ptr, total_size, size, count, hole."""
    golden = golden_map_desc()
    assert len(golden) == 24
    assert golden == bytes.fromhex("00000000007f0000" "00004001" "00004000" "05000000" "00000000")


def test_decode_map_ioctl_arg_reads_golden_values():
    """Spec §1.7/§3.5: MAP's 24-byte argument decodes to ptr, total_size, size and count."""
    desc = decode_ioctl_arg(IoctlCommand.MAP, golden_map_desc())
    assert (desc.ptr, desc.total_size, desc.size, desc.count) == (MAP_PTR, 20971520, 4194304, 5)
    validate_map_desc(desc)  # a valid geometry (§5.1): no exception


def test_encode_map_desc_gives_golden_bytes():
    """Spec §3.5: packing the MAP descriptor gives exactly the golden 24 bytes (hole zero)."""
    value = {"ptr": MAP_PTR, "total_size": MAP_SIZE * MAP_COUNT, "size": MAP_SIZE, "count": MAP_COUNT}
    assert pvfs2proto.ioctl.ORANGEFS_dev_map_desc.pack(value) == golden_map_desc()


def test_map_ioctl_arg_one_byte_short_is_eio():
    """Spec §1.7: MAP returns EIO if its 24-byte struct cannot be read."""
    with pytest.raises(ProtocolError) as info:
        decode_ioctl_arg(IoctlCommand.MAP, golden_map_desc()[:-1])
    assert info.value.errno == errno.EIO


def test_map_ioctl_arg_ignores_bytes_past_the_struct():
    """Spec §1.7/§3.5: the kernel copies exactly sizeof(struct ORANGEFS_dev_map_desc) = 24 bytes; later bytes are not read."""
    desc = decode_ioctl_arg(IoctlCommand.MAP, golden_map_desc() + b"\xa5" * 8)
    assert (desc.ptr, desc.total_size, desc.size, desc.count) == (MAP_PTR, 20971520, 4194304, 5)


def test_debug_ioctl_arg_golden_bytes():
    """Spec §1.7/§3.5: DEBUG reads a 16-byte dev_mask_info_s: mask_type @0, hole @4, mask_value @8."""
    golden = struct.pack("<IIQ", 1, 0, 0x0123456789ABCDEF)
    arg = decode_ioctl_arg(IoctlCommand.DEBUG, golden)
    assert (arg.mask_type, arg.mask_value) == (1, 0x0123456789ABCDEF)
    assert pvfs2proto.ioctl.dev_mask_info_s.pack({"mask_type": 1, "mask_value": 0x0123456789ABCDEF}) == golden
    with pytest.raises(ProtocolError) as info:
        decode_ioctl_arg(IoctlCommand.DEBUG, golden[:-1])
    assert info.value.errno == errno.EIO


def test_client_mask_ioctl_arg_golden_bytes():
    """Spec §1.7/§3.5: CLIENT_MASK reads a 16-byte dev_mask2_info_s: mask1_value @0, mask2_value @8."""
    golden = struct.pack("<QQ", 0, 0xFFFF0000FFFF0000)
    arg = decode_ioctl_arg(IoctlCommand.CLIENT_MASK, golden)
    assert (arg.mask1_value, arg.mask2_value) == (0, 0xFFFF0000FFFF0000)
    with pytest.raises(ProtocolError) as info:
        decode_ioctl_arg(IoctlCommand.CLIENT_MASK, golden[:-1])
    assert info.value.errno == errno.EIO


def test_client_string_ioctl_arg_is_2048_bytes_with_forced_nul():
    """Spec §1.7: CLIENT_STRING reads exactly 2048 bytes and forces the last to NUL; fewer is EFAULT (current kernel)."""
    golden = b"x" * 2048
    assert decode_ioctl_arg(IoctlCommand.CLIENT_STRING, golden) == b"x" * 2047 + b"\0"
    with pytest.raises(ProtocolError) as info:
        decode_ioctl_arg(IoctlCommand.CLIENT_STRING, golden[:-1])
    assert info.value.errno == errno.EFAULT
