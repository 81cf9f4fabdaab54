"""Reading one upcall from the device (spec §1.3, §4.7)."""

import errno

import pytest

import pvfs2proto as proto
from pvfs2proto import OpState

from .harness import DeviceError, OpCode, World


def _open_world(**kw):
    w = World(**kw)
    w.client_open()
    return w


@pytest.mark.parametrize("count", [0, 1, 8240, 8528, 8543, 8545, 16384])
def test_read_size_must_be_exactly_8544(count):
    """Spec §1.3: any read size other than MAX_DEV_REQ_UPSIZE (8544) is EINVAL."""
    w = _open_world()
    w.submit(OpCode.PARAM)
    with pytest.raises(DeviceError) as exc:
        w.read_raw(count)
    assert exc.value.errno == errno.EINVAL
    assert len(w.queued()) == 1  # nothing was taken


def test_read_size_is_checked_before_the_empty_list():
    """Spec §1.3: the size precondition precedes the empty-list test, so a bad size on an empty list is EINVAL."""
    w = _open_world()
    with pytest.raises(DeviceError) as exc:
        w.read_raw(4096)
    assert exc.value.errno == errno.EINVAL


def test_read_of_an_empty_request_list_is_eagain():
    """Spec §1.3: request list empty → EAGAIN."""
    w = _open_world()
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_read_frame_carries_version_0_magic_tag_and_full_upcall():
    """Spec §1.3: the frame is s32 version 0, s32 magic 0x20030529, u64 tag, then the 8528-byte upcall."""
    w = _open_world()
    op = w.submit(OpCode.PARAM, type=2, op=5)
    raw = w.read_raw()
    assert len(raw) == 8544
    assert int.from_bytes(raw[0:4], "little", signed=True) == 0
    assert int.from_bytes(raw[4:8], "little") == 0x20030529
    assert int.from_bytes(raw[8:16], "little") == op.tag
    assert raw[16:] == bytes(op.upcall)
    frame = proto.decode_read_frame(raw)
    assert frame.upcall.type == OpCode.PARAM
    assert frame.upcall.req.param.op == 5


def test_read_frame_has_the_callers_credentials():
    """Spec §3.2, §4.5 step 1: uid/gid/pid/tgid of the caller are in the upcall header (frame offsets 20–32)."""
    w = _open_world()
    w.submit(OpCode.STATFS, fs_id=0, uid=1000, gid=100, pid=4242, tgid=4240)
    raw = w.read_raw()
    assert int.from_bytes(raw[20:24], "little") == 1000
    assert int.from_bytes(raw[24:28], "little") == 100
    assert int.from_bytes(raw[28:32], "little") == 4242
    assert int.from_bytes(raw[32:36], "little") == 4240


def test_each_read_returns_one_upcall_in_fifo_order():
    """Spec §1.3, §4.4: each read returns exactly one op, taken from the head of the FIFO request list."""
    w = _open_world()
    ops = [w.submit(OpCode.PARAM) for _ in range(3)]
    assert [w.read_op().tag for _ in range(3)] == [op.tag for op in ops]
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_read_moves_the_op_to_the_in_progress_table():
    """Spec §1.3 rule 4: the op is unlinked from the request list, marked IN-PROGRESS and put in its tag's bucket."""
    w = _open_world()
    op = w.submit(OpCode.PARAM)
    w.read_op()
    assert op.state == OpState.INPROGR
    assert op not in w.queued()
    assert w.k.in_progress.find(op.tag) is op


def test_an_op_is_read_only_once():
    """Spec §1.3: a read op is no longer on the request list, so the next read finds nothing."""
    w = _open_world()
    w.submit(OpCode.PARAM)
    w.read_op()
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_ops_of_a_mount_pending_filesystem_are_skipped():
    """Spec §1.3 rule 2: an op whose fs is mounted but mount-pending is skipped and stays queued."""
    w = _open_world()
    w.mount(7).pending = True
    op = w.submit(OpCode.LOOKUP, fs_id=7, d_name=b"a")
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN
    assert w.queued() == [op]


def test_getattr_of_a_mount_pending_filesystem_is_skipped_too():
    """Spec §1.3 rule 2: the FS_MOUNT/GETATTR/FS_UMOUNT exemption is for unknown fs only, not for pending ones."""
    w = _open_world()
    w.mount(7).pending = True
    w.submit(OpCode.GETATTR, fs_id=7)
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


def test_skipped_ops_do_not_block_later_eligible_ones():
    """Spec §1.3: selection walks from the head and takes the first op that survives the filters."""
    w = _open_world()
    w.mount(7).pending = True
    w.mount(8)
    blocked = w.submit(OpCode.LOOKUP, fs_id=7, d_name=b"a")
    ready = w.submit(OpCode.LOOKUP, fs_id=8, d_name=b"b")
    assert w.read_op().tag == ready.tag
    assert w.queued() == [blocked]


@pytest.mark.parametrize("op_type", [OpCode.LOOKUP, OpCode.CREATE, OpCode.REMOVE, OpCode.MKDIR, OpCode.SYMLINK,
                                     OpCode.READDIR, OpCode.SETATTR, OpCode.TRUNCATE, OpCode.RA_FLUSH,
                                     OpCode.GETXATTR, OpCode.SETXATTR, OpCode.LISTXATTR, OpCode.REMOVEXATTR,
                                     OpCode.FSYNC, OpCode.RENAME, OpCode.STATFS, OpCode.FILE_IO])
def test_ops_of_an_unknown_filesystem_are_skipped(op_type):
    """Spec §1.3 rule 2, §4.7: a non-zero fs_id that no mount has makes the op ineligible."""
    w = _open_world()
    w.mount(7)
    w.submit(op_type, fs_id=99)
    with pytest.raises(DeviceError) as exc:
        w.read_raw()
    assert exc.value.errno == errno.EAGAIN


@pytest.mark.parametrize("op_type", [OpCode.FS_MOUNT, OpCode.GETATTR, OpCode.FS_UMOUNT])
def test_mount_getattr_and_umount_of_an_unknown_filesystem_are_read(op_type):
    """Spec §1.3 rule 2: FS_MOUNT, GETATTR (root inode during mount) and FS_UMOUNT are exempt from the unknown-fs skip."""
    w = _open_world()
    fs_id = None if op_type == OpCode.FS_MOUNT else 99
    op = w.submit(op_type, fs_id=fs_id) if fs_id else w.submit(op_type)
    assert w.read_op().tag == op.tag


@pytest.mark.parametrize("op_type", [OpCode.PARAM, OpCode.PERF_COUNT, OpCode.FEATURES, OpCode.FS_MOUNT])
def test_ops_without_an_fs_id_are_never_filtered(op_type):
    """Spec §4.7: FS_MOUNT, PARAM, PERF_COUNT, FEATURES, ... carry fs_id 0 and are never filtered, even with all mounts pending."""
    w = _open_world()
    w.mount(7).pending = True
    op = w.submit(op_type)
    assert w.read_op().tag == op.tag


def test_skipping_an_op_of_an_unknown_filesystem_is_logged_as_an_error():
    """Spec §1.3 rule 2: skipped ops of an unknown fs are logged as errors."""
    w = _open_world()
    logged = []
    w.k.on_log = lambda level, message: logged.append((level, message))
    op = w.submit(OpCode.LOOKUP, fs_id=99)
    with pytest.raises(DeviceError):
        w.read_raw()
    assert any(level == "error" and str(op.tag) in message for level, message in logged)


def test_rename_is_filtered_by_its_old_parent():
    """Spec §4.7: RENAME's fs_id is old_parent_refn.fs_id, not new_parent_refn's."""
    w = _open_world()
    w.mount(7)
    w.submit(OpCode.RENAME, old_parent_refn={"fs_id": 99}, new_parent_refn={"fs_id": 7})
    with pytest.raises(DeviceError):
        w.read_raw()
    ok = w.submit(OpCode.RENAME, old_parent_refn={"fs_id": 7}, new_parent_refn={"fs_id": 99})
    assert w.read_op().tag == ok.tag


def test_statfs_is_filtered_by_its_own_fs_id_field():
    """Spec §4.7: STATFS takes its fs_id from statfs.fs_id."""
    w = _open_world()
    w.mount(7).pending = True
    w.submit(OpCode.STATFS, fs_id=7)
    with pytest.raises(DeviceError):
        w.read_raw()


def test_fs_umount_is_filtered_by_its_fs_id_when_pending():
    """Spec §4.7, §1.3: FS_UMOUNT's fs_id is fs_umount.fs_id; a pending mount still holds it back."""
    w = _open_world()
    w.mount(7).pending = True
    w.submit(OpCode.FS_UMOUNT, fs_id=7)
    with pytest.raises(DeviceError):
        w.read_raw()


def test_read_with_only_ineligible_ops_is_eagain_and_leaves_them_queued():
    """Spec §1.3: no eligible op on the list → EAGAIN, and the skipped ops stay queued."""
    w = _open_world()
    w.mount(7).pending = True
    ops = [w.submit(OpCode.GETATTR, fs_id=7) for _ in range(3)]
    for _ in range(2):
        with pytest.raises(DeviceError) as exc:
            w.read_raw()
        assert exc.value.errno == errno.EAGAIN
    assert w.queued() == ops
    assert all(op.state == OpState.WAITING for op in ops)
