"""Client-core restart and ioctl REMOUNT_ALL (spec §4.12, §1.7)."""

import errno

from pvfs2proto import OpFlags

from .harness import DEVNAME, OpCode, World


def _restarted(*fs_ids, version=None):
    """Mounts ``fs_ids``; a first client-core came and went (mounts pending); a second one is open."""
    w = World()
    if version is not None:
        w.version = version
    for i, fs_id in enumerate(fs_ids or (7,)):
        w.mount(fs_id, i + 1, DEVNAME + b"%d" % fs_id)
    w.client_open()
    w.release()
    w.client_open()
    assert all(m.pending for m in w.k.mounts)
    return w


def _finish(w, *, mount_err=None, features_err=None, features=1, fs_id=None, mount_id=50):
    """Answer the FS_MOUNT at the head and, if one follows, its FEATURES."""
    frame = w.read_op()
    assert frame.upcall.type == OpCode.FS_MOUNT
    if mount_err:
        w.answer(frame, err=mount_err)
    else:
        w.answer(frame, fs_id=fs_id if fs_id is not None else 1, id=mount_id)
    if w.queued_types()[:1] == [OpCode.FEATURES]:
        frame = w.read_op()
        if features_err:
            w.answer(frame, err=features_err)
        else:
            w.answer(frame, features=features)


def test_remount_sends_fs_mount_with_the_original_device_string():
    """Spec §4.12 step 3: REMOUNT_ALL sends FS_MOUNT with each superblock's original device string."""
    w = _restarted(7)
    w.remount()
    frame = w.read_op()
    assert frame.upcall.type == OpCode.FS_MOUNT
    assert frame.upcall.req.fs_mount.orangefs_config_server == DEVNAME + b"7"


def test_remount_ops_are_priority_and_skip_the_mutex():
    """Spec §4.3, §4.12: remount's FS_MOUNT and FEATURES use PRIORITY|NO_MUTEX."""
    w = _restarted(7)
    w.remount()
    (mount_op,) = w.queued()
    assert mount_op.flags & OpFlags.PRIORITY and mount_op.flags & OpFlags.NO_MUTEX
    w.answer(w.read_op(), fs_id=7, id=3)
    (features_op,) = w.queued()
    assert features_op.type == OpCode.FEATURES
    assert features_op.flags & OpFlags.PRIORITY and features_op.flags & OpFlags.NO_MUTEX


def test_remount_fs_mount_goes_ahead_of_ops_already_queued():
    """Spec §4.3: the remount's FS_MOUNT is a PRIORITY op, linked at the head of the request list."""
    w = World()
    w.mount(7)
    w.client_open()
    queued = w.submit(OpCode.PARAM)
    w.remount()
    assert w.queued_types() == [OpCode.FS_MOUNT, OpCode.PARAM]
    assert w.queued()[1] is queued


def test_remount_walks_every_mount_in_order():
    """Spec §4.12 step 3: one FS_MOUNT (+FEATURES) per superblock, in mount order; done reports 0."""
    w = _restarted(7, 8, 9)
    w.remount()
    seen = []
    for _ in range(3):
        frame = w.read_op()
        seen.append(frame.upcall.req.fs_mount.orangefs_config_server)
        w.answer(frame, fs_id=1, id=1)
        w.answer(w.read_op(), features=0)
    assert seen == [DEVNAME + b"7", DEVNAME + b"8", DEVNAME + b"9"]
    assert w.remount_results == [0]
    assert not any(m.pending for m in w.k.mounts)


def test_remount_with_no_mounts_reports_zero_at_once():
    """Spec §1.7: REMOUNT_ALL returns 0 if no superblock reported failure (none at all here)."""
    w = World()
    w.client_open()
    w.remount()
    assert w.remount_results == [0]
    assert w.queued() == []


def test_successful_remount_clears_mount_pending():
    """Spec §4.12 step 3: on FS_MOUNT success the mount pending flag is cleared."""
    w = _restarted(7)
    w.remount()
    _finish(w)
    assert not w.k.mounts[0].pending
    assert w.remount_results == [0]


def test_remount_keeps_fs_id_and_stores_the_new_id():
    """Spec §4.12 step 3: the returned id is stored; fs_id is not updated."""
    w = _restarted(7)
    w.remount()
    _finish(w, fs_id=99, mount_id=42)
    m = w.k.mounts[0]
    assert (m.fs_id, m.id) == (7, 42)


def test_features_is_sent_at_userspace_version_20906():
    """Spec §2.1, §4.12: FEATURES follows FS_MOUNT when the recorded userspace version is ≥ 20906."""
    w = _restarted(7, version=20906)
    w.remount()
    w.answer(w.read_op(), fs_id=7, id=2)
    assert w.k.userspace_version == 20906  # recorded by the FS_MOUNT downcall itself
    assert w.queued_types() == [OpCode.FEATURES]
    frame = w.read_op()
    assert frame.upcall.req.features.features == 0
    w.answer(frame, features=1)
    assert w.k.features == 1
    assert w.remount_results == [0]


def test_features_is_not_sent_below_userspace_version_20906():
    """Spec §2.1, §4.12: with a recorded version below 20906 no FEATURES upcall is sent."""
    w = _restarted(7, version=20905)
    w.remount()
    w.answer(w.read_op(), fs_id=7, id=2)
    assert w.queued() == []
    assert w.remount_results == [0]
    assert not w.k.mounts[0].pending


def test_failed_features_reply_stores_zero_features():
    """Spec §4.12 step 3: the FEATURES bitmask is stored, 0 on failure."""
    w = _restarted(7)
    w.remount()
    _finish(w, features=1)
    assert w.k.features == 1
    w.release()
    w.client_open()
    w.remount()
    _finish(w, features_err=errno.ENOSYS)
    assert w.k.features == 0


def test_features_status_replaces_a_failed_fs_mount_status():
    """Spec §4.12: FEATURES is sent even when FS_MOUNT failed, and its success makes the remount report success."""
    w = _restarted(7, 8)
    w.remount()
    _finish(w, mount_err=errno.ENOENT)  # FEATURES answered OK
    assert w.k.mounts[0].pending  # the filesystem simply stays pending
    assert w.remount_results == []  # not stopped: goes on to the next mount
    _finish(w)
    assert w.remount_results == [0]
    assert w.k.mounts[0].pending and not w.k.mounts[1].pending


def test_failed_features_fails_the_remount_and_stops():
    """Spec §1.7, §4.12: the status of the last upcall of the first failing superblock is returned; later ones are skipped."""
    w = _restarted(7, 8)
    w.remount()
    _finish(w, features_err=errno.EIO)
    assert w.remount_results == [-errno.EIO]
    assert not w.k.mounts[0].pending  # its FS_MOUNT did succeed
    assert w.k.mounts[1].pending
    assert w.queued() == []


def test_failed_fs_mount_without_features_fails_the_remount():
    """Spec §4.12 step 3: below 20906 the FS_MOUNT status is final; an error stops REMOUNT_ALL with it."""
    w = _restarted(7, 8, version=20903)
    w.remount()
    _finish(w, mount_err=errno.ENOENT)
    assert w.remount_results == [-errno.ENOENT]
    assert w.queued() == []
    assert all(m.pending for m in w.k.mounts)


def test_ops_of_pending_mounts_are_read_only_after_remount():
    """Spec §4.12 step 4: while mount pending is set, read skips that filesystem's ops; they stay queued until remounted."""
    w = World()
    w.mount(7)
    w.client_open()
    op = w.submit(OpCode.GETATTR, fs_id=7)
    w.read_op()
    w.release()  # purged, retried, now queued again
    w.client_open()
    assert w.read_all() == []
    assert w.queued() == [op]
    w.remount()
    _finish(w, fs_id=7)
    frame = w.read_op()
    assert frame.tag == op.tag


def test_normal_submissions_are_held_off_during_remount_and_queued_after():
    """Spec §4.5 step 3, §4.12 step 3: REMOUNT_ALL holds the request mutex, so new ops are queued only once it is done."""
    w = _restarted(7)
    w.remount()
    late = w.submit(OpCode.PARAM)
    assert late not in w.queued()
    w.answer(w.read_op(), fs_id=7, id=2)
    assert late not in w.queued()  # still held off while FEATURES is outstanding
    w.answer(w.read_op(), features=1)
    assert w.remount_results == [0]
    assert w.queued() == [late]
    assert w.read_op().tag == late.tag


def test_ops_held_off_by_remount_keep_their_submission_order():
    """Spec §4.4, §4.5 step 3: ops waiting for the mutex are queued at the tail in the order they arrived."""
    w = _restarted(7)
    w.remount()
    ops = [w.submit(OpCode.PARAM) for _ in range(3)]
    _finish(w, fs_id=7)
    assert w.queued() == ops


def test_ops_held_off_by_remount_wait_without_timeout():
    """Spec §4.5 step 4: the timeout is chosen when the op is queued; with the daemon open it is infinite."""
    w = _restarted(7)
    w.remount()
    op = w.submit(OpCode.PARAM)
    w.advance(100)
    _finish(w, fs_id=7)
    w.advance(1000)
    assert op.result is None
    assert op in w.queued()


def test_remount_fs_mount_is_read_even_though_the_mount_is_pending():
    """Spec §4.7: FS_MOUNT has no fs_id, so the pending flag of its own filesystem does not hold it back."""
    w = _restarted(7)
    w.remount()
    assert w.read_op().upcall.type == OpCode.FS_MOUNT
