"""Writing one downcall to the device (spec §1.4, §4.8)."""

import errno

import pytest

import pvfs2proto as proto
from pvfs2proto import OpState, ProtocolError

from .harness import DeviceError, OpCode, World, status_of


def _in_progress(op_type=OpCode.PARAM, **fields):
    """A world with the client-core open and one op of ``op_type`` read (in progress)."""
    w = World()
    w.client_open()
    op = w.submit(op_type, **fields)
    frame = w.read_op()
    assert frame.tag == op.tag
    return w, op


def _readdir_trailer():
    return proto.encode_readdir_trailer([(b"a", bytes(16))])


def test_write_returns_the_total_byte_count_and_services_the_op():
    """Spec §1.4 step 13: a good downcall marks the op SERVICED, wakes the submitter and returns the length."""
    w, op = _in_progress()
    assert w.reply(op.tag, OpCode.PARAM, value64=5) == 8240
    assert op.state == OpState.SERVICED
    assert op.result == 0
    assert w.wakes(op) == 1


@pytest.mark.parametrize("length", [0, 16, 8239])
def test_write_shorter_than_8240_is_efault_and_consumes_nothing(length):
    """Spec §1.4 step 1: total length below MAX_DEV_REQ_DOWNSIZE → EFAULT, nothing consumed."""
    w, op = _in_progress()
    data = w.frame(op.tag, OpCode.PARAM)[:length]
    with pytest.raises(OSError) as exc:
        w.write(data)
    assert exc.value.errno == errno.EFAULT
    assert op.result is None and op.state == OpState.INPROGR
    assert w.reply(op.tag, OpCode.PARAM) == 8240
    assert op.result == 0


def test_short_write_is_checked_before_the_version():
    """Spec §1.4: check 1 (length) precedes check 3 (version)."""
    w, op = _in_progress()
    with pytest.raises(OSError) as exc:
        w.write(w.frame(op.tag, OpCode.PARAM, version=1)[:100])
    assert exc.value.errno == errno.EFAULT


@pytest.mark.parametrize("version", [0, 1, 20902])
def test_userspace_version_below_20903_is_eproto(version):
    """Spec §1.4 step 3: head.version < ORANGEFS_MINIMUM_USERSPACE_VERSION (20903) → EPROTO; the op is untouched."""
    w, op = _in_progress()
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.PARAM, version=version)
    assert exc.value.errno == errno.EPROTO
    assert op.result is None and op.state == OpState.INPROGR


def test_userspace_version_20903_is_accepted():
    """Spec §1.4 step 3, §2.1: the minimum version itself passes."""
    w, op = _in_progress()
    assert w.reply(op.tag, OpCode.PARAM, version=20903) == 8240
    assert op.result == 0


def test_userspace_version_is_compared_unsigned():
    """Spec §1.4 step 3: the version compare is unsigned, so 0xFFFFFFFF (−1 as s32) is not below 20903."""
    w, op = _in_progress()
    assert w.reply(op.tag, OpCode.PARAM, version=0xFFFFFFFF) == 8240
    assert op.result == 0


def test_wrong_magic_is_eproto():
    """Spec §1.4 step 4: head.magic ≠ 0x20030529 → EPROTO; the op stays in progress."""
    w, op = _in_progress()
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.PARAM, magic=0x20030528)
    assert exc.value.errno == errno.EPROTO
    assert op.state == OpState.INPROGR
    assert w.reply(op.tag, OpCode.PARAM) == 8240


def test_first_good_write_records_the_userspace_version():
    """Spec §1.4 step 5: the first write passing checks 1–4 records head.version."""
    w, op = _in_progress()
    assert w.k.userspace_version == 0
    w.reply(op.tag, OpCode.PARAM, version=20907)
    assert w.k.userspace_version == 20907


def test_version_is_recorded_even_for_an_unknown_tag():
    """Spec §1.4 step 5: the version is recorded before the tag lookup, so a write for an unknown tag records it."""
    w = World()
    w.client_open()
    assert w.reply(123456, OpCode.PARAM, version=20905) == 8240
    assert w.k.userspace_version == 20905


def test_a_write_failing_the_head_checks_records_no_version():
    """Spec §1.4 step 5: only a write that passes checks 1–4 records the version."""
    w, op = _in_progress()
    with pytest.raises(OSError):
        w.reply(op.tag, OpCode.PARAM, version=20907, magic=1)
    assert w.k.userspace_version == 0
    assert w.reply(op.tag, OpCode.PARAM, version=20908) == 8240
    assert w.k.userspace_version == 20908


def test_a_later_write_with_a_different_version_is_eproto():
    """Spec §1.4 step 5: once recorded, any write with a different version → EPROTO and the op is not answered."""
    w = World()
    w.client_open()
    w.reply(1, OpCode.PARAM, version=20907)  # unknown tag; records 20907
    op = w.submit(OpCode.PARAM)
    w.read_op()
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.PARAM, version=20908)
    assert exc.value.errno == errno.EPROTO
    assert op.result is None
    assert w.reply(op.tag, OpCode.PARAM, version=20907) == 8240
    assert op.result == 0


def test_version_change_is_refused_before_the_tag_lookup():
    """Spec §1.4 steps 5–6: the version rule applies before the tag lookup, so an unknown tag with a new version is EPROTO."""
    w = World()
    w.client_open()
    w.reply(1, OpCode.PARAM, version=20907)
    with pytest.raises(OSError) as exc:
        w.reply(2, OpCode.PARAM, version=20906)
    assert exc.value.errno == errno.EPROTO


def test_write_for_an_unknown_tag_succeeds_and_is_discarded():
    """Spec §1.4 step 6, §4.8: no op with that tag in progress → the write returns its full length, data discarded."""
    w, op = _in_progress()
    assert w.reply(op.tag + 1000, OpCode.PARAM, err=errno.EIO) == 8240
    assert op.result is None and op.state == OpState.INPROGR


def test_write_for_an_op_not_yet_read_is_discarded():
    """Spec §4.8: only the in-progress table is searched; a downcall for a still-WAITING op is dropped."""
    w = World()
    w.client_open()
    op = w.submit(OpCode.PARAM)
    assert w.reply(op.tag, OpCode.PARAM) == 8240
    assert op.result is None and op.state == OpState.WAITING
    assert w.read_op().tag == op.tag


def test_second_answer_to_the_same_tag_is_discarded():
    """Spec §4.8: an already-answered op is no longer in progress, so a second downcall is accepted and dropped."""
    w, op = _in_progress()
    w.reply(op.tag, OpCode.PARAM, value64=1)
    assert w.reply(op.tag, OpCode.PARAM, err=errno.EIO) == 8240
    assert op.result == 0
    assert w.wakes(op) == 1


def test_failed_status_skips_the_size_and_trailer_checks():
    """Spec §1.4 step 8: status ≠ 0 goes straight to completion; extra bytes are ignored."""
    w, op = _in_progress()
    data = w.frame(op.tag, OpCode.PARAM, err=errno.ENOENT) + b"\xAA" * 100
    assert w.write(data) == len(data)
    assert op.result == -errno.ENOENT


def test_failed_status_with_a_bogus_trailer_size_is_accepted():
    """Spec §1.4 step 8: trailer and sizes are not checked when status ≠ 0."""
    w, op = _in_progress()
    data = w.frame(op.tag, OpCode.PARAM, err=errno.EACCES, downcall_extra={"trailer_size": 4096})
    assert w.write(data) == 8240
    assert op.result == -errno.EACCES


def test_length_not_matching_trailer_size_is_efault_and_fails_the_caller():
    """Spec §1.4 step 9: 16 + 8224 + trailer_size ≠ total → EFAULT for the write and EFAULT for the waiting call."""
    w, op = _in_progress()
    data = w.frame(op.tag, OpCode.PARAM) + b"\0" * 8
    with pytest.raises(OSError) as exc:
        w.write(data)
    assert exc.value.errno == errno.EFAULT
    assert op.result == -errno.EFAULT
    assert op.state & OpState.SERVICED
    assert w.k.in_progress.find(op.tag) is None


def test_non_readdir_downcall_with_a_trailer_is_efault():
    """Spec §1.4 step 10: downcall.type ≠ READDIR with trailer_size ≠ 0 → EFAULT (caller gets EFAULT too)."""
    w, op = _in_progress()
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.PARAM, trailer=b"x" * 24)
    assert exc.value.errno == errno.EFAULT
    assert op.result == -errno.EFAULT


def test_readdir_success_without_a_trailer_is_efault():
    """Spec §1.4 step 11: a successful READDIR downcall with trailer_size 0 → EFAULT."""
    w, op = _in_progress(OpCode.READDIR, fs_id=0)
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.READDIR)
    assert exc.value.errno == errno.EFAULT
    assert op.result == -errno.EFAULT


def test_readdir_trailer_shorter_than_its_header_is_efault():
    """Spec §2.2, §3.4: the emulator refuses a successful READDIR whose trailer is under 24 bytes (EFAULT)."""
    w, op = _in_progress(OpCode.READDIR, fs_id=0)
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.READDIR, trailer=b"\0" * 23)
    assert exc.value.errno == errno.EFAULT
    assert op.result == -errno.EFAULT


def test_readdir_with_a_trailer_is_accepted_and_the_trailer_kept():
    """Spec §1.4 step 12: a READDIR downcall's trailer is copied in for the caller."""
    w, op = _in_progress(OpCode.READDIR, fs_id=0)
    trailer = _readdir_trailer()
    assert w.reply(op.tag, OpCode.READDIR, trailer=trailer) == 8240 + len(trailer)
    assert op.result == 0
    assert op.trailer == trailer


def test_trailer_rule_is_keyed_on_the_downcall_type():
    """Spec §1.4 notes: the trailer rule follows downcall.type, so a READDIR echoed as another type with a trailer is EFAULT."""
    w, op = _in_progress(OpCode.READDIR, fs_id=0)
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.GETATTR, trailer=_readdir_trailer())
    assert exc.value.errno == errno.EFAULT


def test_trailer_is_accepted_when_the_downcall_claims_readdir():
    """Spec §1.4 notes: the check reads downcall.type, not the upcall's type, so type READDIR with a trailer passes."""
    w, op = _in_progress(OpCode.PARAM)
    trailer = _readdir_trailer()
    assert w.reply(op.tag, OpCode.READDIR, trailer=trailer) == 8240 + len(trailer)
    assert op.result == 0


def test_file_io_amt_complete_above_count_is_efault():
    """Spec §4.13: the emulator rejects amt_complete > count with EFAULT (the caller gets EFAULT)."""
    w = World()
    w.client_open()
    op = w.submit_io(count=4096, fs_id=0)
    w.read_op()
    with pytest.raises(OSError) as exc:
        w.reply(op.tag, OpCode.FILE_IO, amt_complete=4097)
    assert exc.value.errno == errno.EFAULT
    assert op.result == -errno.EFAULT


def test_file_io_short_transfer_is_accepted():
    """Spec §5.3 step 6: amt_complete ≤ count is a (possibly short) transfer, not an error."""
    w = World()
    w.client_open()
    op = w.submit_io(count=4096, fs_id=0)
    w.read_op()
    assert w.reply(op.tag, OpCode.FILE_IO, amt_complete=100) == 8240
    assert op.result == 0


def test_write_for_a_given_up_op_is_discarded():
    """Spec §1.4 step 6, §4.8: ops already GIVEN_UP are ignored by the lookup; the write still succeeds."""
    w, op = _in_progress(OpCode.PARAM, flags=1)
    assert w.signal(op)
    assert op.result == -errno.EINTR
    assert w.reply(op.tag, OpCode.PARAM) == 8240
    assert op.result == -errno.EINTR


def test_malformed_downcall_leaves_an_efault_encoded_status():
    """Spec §1.4 notes: a malformed downcall's status becomes −(ORANGEFS_ERROR_BIT | 9), which the caller sees as EFAULT."""
    w, op = _in_progress()
    with pytest.raises((ProtocolError, DeviceError)) as exc:
        w.reply(op.tag, OpCode.PARAM, trailer=b"\0" * 8)
    assert exc.value.errno == errno.EFAULT
    assert int.from_bytes(op.downcall[4:8], "little", signed=True) == -0x40000009 == status_of(errno.EFAULT)
    assert op.result == -errno.EFAULT
