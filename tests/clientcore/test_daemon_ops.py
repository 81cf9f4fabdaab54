"""Every op the current kernel sends, answered by the client-core daemon over a MemStore (issue 4, Daemon).

Each test runs the real broker and a :class:`clientcore.daemon.Daemon` in the
test's trio run and calls through the broker's VFS channel, so the upcalls
are the ones the emulated kernel builds and the replies pass the kernel's
downcall checks (spec §1.4) before the test sees them.  Replies are checked
for the result, the OrangeFS-encoded status (spec §2.7) and the
``downcall.type`` echo.
"""

from __future__ import annotations

import errno
import struct

import pytest
import trio

import pvfs2proto as proto
from clientcore.daemon import Daemon
from pvfs2ctl.client import VfsClient
from pvfs2proto import AttrMask, ObjType, OpCode
from pvfs2proto.constants import ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START
from pvfs2proto.downcall import listxattr_keys
from pvfs2proto.readdir import decode_readdir_trailer
from pvfs2proto.structs import mode_to_perms
from clientcore.store import ROOT as ROOT_CREDS

from .daemon_stack import (
    FS_ID,
    ROOT,
    SLOT,
    assert_error,
    assert_ok,
    assert_quiescent,
    call,
    control,
    create_upcall,
    fsync_upcall,
    getattr_upcall,
    getxattr_upcall,
    listxattr_upcall,
    lookup_upcall,
    mkdir_upcall,
    mount_upcall,
    pattern,
    ra_flush_upcall,
    raw_upcall,
    read_upcall,
    readdir_upcall,
    remove_upcall,
    removexattr_upcall,
    rename_upcall,
    setattr_upcall,
    setxattr_upcall,
    start_stack,
    statfs_upcall,
    symlink_upcall,
    truncate_upcall,
    umount_upcall,
    upcall,
    vfs_path,
    write_upcall,
)
from .fake_device import FakeDevice, read_frame
from .memstore import MemStore

TIMEOUT = 15


async def _create(vfs, name: bytes, parent: bytes = ROOT) -> bytes:
    answer = await call(vfs, create_upcall(name, parent))
    assert_ok(answer, OpCode.CREATE)
    return answer.resp.create.refn.khandle


async def _getattr(vfs, handle: bytes, mask: int = AttrMask.ALL_NOHINT):
    answer = await call(vfs, getattr_upcall(handle, mask))
    assert_ok(answer, OpCode.GETATTR)
    return answer.resp.getattr


# -- mount and unmount --------------------------------------------------------------------------------------


async def test_fs_mount_answers_the_stores_fs_id_and_root(nursery, tmp_path):
    """FS_MOUNT is answered with the store's fs_id, a mount id and the root khandle (spec §3.3, §4.13)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path, mount=False)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, mount_upcall())
        assert_ok(answer, OpCode.FS_MOUNT)
        info = answer.resp.fs_mount
        assert info.fs_id == stack.store.fs_id == FS_ID
        assert info.root_khandle == stack.store.root
        assert info.id != 0
        status = await control(tmp_path, "status")
        assert [(m["fs_id"], m["pending"]) for m in status["mounts"]] == [(FS_ID, False)]
        # mount(2) also sent FEATURES: the daemon offers READAHEAD (it serves RA_FLUSH and the knobs).
        assert status["features"] == 1
        await assert_quiescent(tmp_path)


async def test_a_new_daemon_on_the_same_store_hands_out_the_same_fs_id(nursery, tmp_path):
    """A daemon restarted on the same store answers FS_MOUNT with the same fs_id and root (spec §4.12)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path, mount=False)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            first = await call(vfs, mount_upcall())
            assert_ok(first, OpCode.FS_MOUNT)
            assert_ok(await call(vfs, umount_upcall(first.resp.fs_mount.fs_id, first.resp.fs_mount.id)),
                      OpCode.FS_UMOUNT)
        await stack.stop_daemon()
        await stack.start_daemon()
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            second = await call(vfs, mount_upcall())
        assert_ok(second, OpCode.FS_MOUNT)
        assert second.resp.fs_mount.fs_id == first.resp.fs_mount.fs_id == FS_ID
        assert second.resp.fs_mount.root_khandle == first.resp.fs_mount.root_khandle == ROOT


async def test_fs_umount(nursery, tmp_path):
    """FS_UMOUNT of our fs is answered with status 0 and the type echoed (spec §4.13)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        mounts = (await control(tmp_path, "mounts"))["mounts"]
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, umount_upcall(FS_ID, mounts[0]["id"]))
        assert_ok(answer, OpCode.FS_UMOUNT)
        assert (await control(tmp_path, "mounts"))["mounts"] == []
        await assert_quiescent(tmp_path)


# -- names ---------------------------------------------------------------------------------------------------


async def test_lookup_hit_and_enoent(nursery, tmp_path):
    """LOOKUP finds an entry (kref with our fs_id) and answers ENOENT for a missing one (spec §4.13)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"present")
            hit = await call(vfs, lookup_upcall(b"present"))
            assert_ok(hit, OpCode.LOOKUP)
            assert hit.resp.lookup.refn.khandle == handle
            assert hit.resp.lookup.refn.fs_id == FS_ID
            assert_error(await call(vfs, lookup_upcall(b"absent")), OpCode.LOOKUP, errno.ENOENT)


async def test_create_mkdir_and_symlink_make_objects_of_their_type(nursery, tmp_path):
    """CREATE, MKDIR and SYMLINK answer a kref; GETATTR reports METAFILE, DIRECTORY, SYMLINK (spec §2.6, §3.3)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            made = {}
            answer = await call(vfs, create_upcall(b"file", mode=0o640))
            assert_ok(answer, OpCode.CREATE)
            made[ObjType.METAFILE] = answer.resp.create.refn
            answer = await call(vfs, mkdir_upcall(b"dir", mode=0o750))
            assert_ok(answer, OpCode.MKDIR)
            made[ObjType.DIRECTORY] = answer.resp.mkdir.refn
            answer = await call(vfs, symlink_upcall(b"link", b"file"))
            assert_ok(answer, OpCode.SYMLINK)
            made[ObjType.SYMLINK] = answer.resp.sym.refn
            for objtype, refn in made.items():
                assert refn.fs_id == FS_ID
                attrs = (await _getattr(vfs, refn.khandle)).attributes
                assert attrs.objtype == objtype
            assert (await _getattr(vfs, made[ObjType.METAFILE].khandle)).attributes.perms == mode_to_perms(0o640)
            assert (await _getattr(vfs, made[ObjType.DIRECTORY].khandle)).attributes.perms == mode_to_perms(0o750)
            # An existing name is EEXIST.
            assert_error(await call(vfs, create_upcall(b"file")), OpCode.CREATE, errno.EEXIST)


async def test_getattr_with_lnk_target_returns_the_symlink_target(nursery, tmp_path):
    """GETATTR of a symlink with LNK_TARGET in the mask returns the target in link_target (spec §3.3, §4.13)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, symlink_upcall(b"link", b"some/where/else"))
            assert_ok(answer, OpCode.SYMLINK)
            link = answer.resp.sym.refn.khandle
            # The stale check's mask: TYPE | LNK_TARGET.
            reply = await _getattr(vfs, link, 0x01000040)
            assert reply.link_target == b"some/where/else"
            assert reply.attributes.objtype == ObjType.SYMLINK
            assert reply.attributes.mask == 0x01000040
            # Without LNK_TARGET the target is not sent.
            reply = await _getattr(vfs, link, AttrMask.TYPE)
            assert reply.link_target == b""
            assert not reply.attributes.mask & AttrMask.LNK_TARGET


@pytest.mark.parametrize("mask", [
    AttrMask.ALL_NOHINT,  # stat asking for the size: 0x3710007F
    AttrMask.ALL_NOHINT & ~AttrMask.SIZE,  # permission check: 0x3700007F
    AttrMask.TYPE | AttrMask.LNK_TARGET,  # dentry revalidate: 0x01000040
    AttrMask.UID | AttrMask.GID,
])
async def test_getattr_respects_the_mask(nursery, tmp_path, mask):
    """GETATTR answers a mask within the one requested, and the size only when SIZE was asked (issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"sized")
            data = pattern(5000)
            assert_ok(await call(vfs, write_upcall(handle, len(data)), data), OpCode.FILE_IO)
            attrs = (await _getattr(vfs, handle, int(mask))).attributes
        assert attrs.mask & ~int(mask) == 0, f"reply mask {attrs.mask:#x} not within {int(mask):#x}"
        if mask & AttrMask.SIZE:
            assert attrs.mask & AttrMask.SIZE and attrs.size == 5000
        else:
            assert not attrs.mask & AttrMask.SIZE and attrs.size == 0
        if mask & AttrMask.TYPE:
            assert attrs.mask & AttrMask.TYPE and attrs.objtype == ObjType.METAFILE


async def test_setattr_changes_perms_owner_and_times(nursery, tmp_path):
    """SETATTR applies the masked perms, uid, gid, atime and mtime; GETATTR shows them (spec §4.13)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"f")
            mask = (AttrMask.PERM | AttrMask.UID | AttrMask.GID | AttrMask.ATIME | AttrMask.MTIME
                    | AttrMask.ATIME_SET | AttrMask.MTIME_SET)
            attributes = {"owner": 1234, "group": 567, "perms": mode_to_perms(0o600), "atime": 1_000_000,
                          "mtime": 2_000_000, "mask": int(mask)}
            assert_ok(await call(vfs, setattr_upcall(handle, attributes)), OpCode.SETATTR)
            attrs = (await _getattr(vfs, handle)).attributes
            assert (attrs.owner, attrs.group, attrs.perms) == (1234, 567, mode_to_perms(0o600))
            assert (attrs.atime, attrs.mtime) == (1_000_000, 2_000_000)
            # Only the masked fields change: PERM alone leaves owner and times.
            attributes = {"owner": 1, "group": 1, "perms": mode_to_perms(0o644), "atime": 5, "mtime": 5,
                          "mask": int(AttrMask.PERM)}
            assert_ok(await call(vfs, setattr_upcall(handle, attributes)), OpCode.SETATTR)
            attrs = (await _getattr(vfs, handle)).attributes
            assert (attrs.owner, attrs.group, attrs.perms) == (1234, 567, mode_to_perms(0o644))
            assert (attrs.atime, attrs.mtime) == (1_000_000, 2_000_000)
            # A handle that does not exist is ENOENT.
            assert_error(await call(vfs, setattr_upcall(b"\x77" * 16, attributes)), OpCode.SETATTR, errno.ENOENT)


async def test_remove_file_empty_dir_and_enotempty(nursery, tmp_path):
    """REMOVE unlinks a file and an empty directory, and answers ENOTEMPTY for a non-empty one (issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            await _create(vfs, b"file")
            answer = await call(vfs, mkdir_upcall(b"full"))
            assert_ok(answer, OpCode.MKDIR)
            full = answer.resp.mkdir.refn.khandle
            await _create(vfs, b"inside", full)
            assert_ok(await call(vfs, mkdir_upcall(b"empty")), OpCode.MKDIR)

            assert_ok(await call(vfs, remove_upcall(b"file")), OpCode.REMOVE)
            assert_error(await call(vfs, lookup_upcall(b"file")), OpCode.LOOKUP, errno.ENOENT)
            assert_error(await call(vfs, remove_upcall(b"full")), OpCode.REMOVE, errno.ENOTEMPTY)
            assert_ok(await call(vfs, lookup_upcall(b"full")), OpCode.LOOKUP)
            assert_ok(await call(vfs, remove_upcall(b"empty")), OpCode.REMOVE)
            assert_error(await call(vfs, remove_upcall(b"empty")), OpCode.REMOVE, errno.ENOENT)


async def test_rename_moves_and_replaces(nursery, tmp_path):
    """RENAME moves an entry, across directories too, and replaces an existing target (issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            a = await _create(vfs, b"a")
            await _create(vfs, b"c")
            answer = await call(vfs, mkdir_upcall(b"d"))
            d = answer.resp.mkdir.refn.khandle

            assert_ok(await call(vfs, rename_upcall(b"a", b"b")), OpCode.RENAME)
            assert_error(await call(vfs, lookup_upcall(b"a")), OpCode.LOOKUP, errno.ENOENT)
            assert (await call(vfs, lookup_upcall(b"b"))).resp.lookup.refn.khandle == a

            assert_ok(await call(vfs, rename_upcall(b"b", b"c")), OpCode.RENAME)
            assert (await call(vfs, lookup_upcall(b"c"))).resp.lookup.refn.khandle == a
            assert_error(await call(vfs, lookup_upcall(b"b")), OpCode.LOOKUP, errno.ENOENT)

            assert_ok(await call(vfs, rename_upcall(b"c", b"moved", ROOT, d)), OpCode.RENAME)
            assert (await call(vfs, lookup_upcall(b"moved", d))).resp.lookup.refn.khandle == a
            assert_error(await call(vfs, rename_upcall(b"nothing", b"x")), OpCode.RENAME, errno.ENOENT)


async def test_statfs(nursery, tmp_path):
    """STATFS of our fs_id answers the store's block and file counts (spec §3.3, §4.13)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, statfs_upcall())
        assert_ok(answer, OpCode.STATFS)
        s, want = answer.resp.statfs, stack.store.statfs()
        assert (s.block_size, s.blocks_total, s.blocks_avail, s.files_total, s.files_avail) == (
            want.block_size, want.blocks_total, want.blocks_avail, want.files_total, want.files_avail)


async def test_truncate(nursery, tmp_path):
    """TRUNCATE shortens and extends a file; GETATTR and reads see the new size (spec §4.13)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"t")
            data = pattern(1000)
            assert_ok(await call(vfs, write_upcall(handle, len(data)), data), OpCode.FILE_IO)
            assert_ok(await call(vfs, truncate_upcall(handle, 10)), OpCode.TRUNCATE)
            assert (await _getattr(vfs, handle)).attributes.size == 10
            answer = await call(vfs, read_upcall(handle, 100))
            assert answer.data == data[:10]
            assert_ok(await call(vfs, truncate_upcall(handle, 50)), OpCode.TRUNCATE)
            assert (await _getattr(vfs, handle)).attributes.size == 50
            answer = await call(vfs, read_upcall(handle, 100))
            assert answer.data == data[:10] + bytes(40)


# -- data ------------------------------------------------------------------------------------------------------


async def test_file_io_write_then_read_with_a_short_read_at_eof(nursery, tmp_path):
    """FILE_IO writes and reads through the I/O slot; a read past EOF is short (issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"data")
            data = pattern(10_000, 1)
            answer = await call(vfs, write_upcall(handle, len(data)), data)
            assert_ok(answer, OpCode.FILE_IO)
            assert answer.resp.io.amt_complete == len(data)
            # Past the end: short.
            answer = await call(vfs, read_upcall(handle, 65536))
            assert_ok(answer, OpCode.FILE_IO)
            assert answer.resp.io.amt_complete == len(data)
            assert answer.data == data
            answer = await call(vfs, read_upcall(handle, 100, 9_950))
            assert answer.resp.io.amt_complete == 50 and answer.data == data[9_950:]
            # At or beyond the end: nothing.
            answer = await call(vfs, read_upcall(handle, 100, 20_000))
            assert_ok(answer, OpCode.FILE_IO)
            assert answer.resp.io.amt_complete == 0 and answer.data == b""
            # A write at an offset leaves a hole of zeros.
            assert_ok(await call(vfs, write_upcall(handle, 4, 12_000), b"tail"), OpCode.FILE_IO)
            answer = await call(vfs, read_upcall(handle, 3000, 10_000))
            assert answer.data == bytes(2000) + b"tail"
        await assert_quiescent(tmp_path)


async def test_file_io_larger_than_a_slot_is_split_and_round_trips(nursery, tmp_path):
    """A 2.5-slot write and read go in slot-size FILE_IOs and the data round-trips (spec §5.3)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"big")
            data = pattern(5 * SLOT // 2, 2)
            before = stack.daemon.handlers.counts.get("OP_FILE_IO", 0)
            answer = await call(vfs, write_upcall(handle, len(data)), data)
            assert_ok(answer, OpCode.FILE_IO)
            assert answer.resp.io.amt_complete == len(data)
            assert stack.daemon.handlers.counts["OP_FILE_IO"] - before == 3
            assert bytes(stack.store.data[handle]) == data
            answer = await call(vfs, read_upcall(handle, 3 * SLOT))
            assert answer.resp.io.amt_complete == len(data)
            assert answer.data == data
        await assert_quiescent(tmp_path)


async def test_fsync(nursery, tmp_path):
    """FSYNC of a file is answered with status 0 once written; of a missing handle, ENOENT (spec §4.13)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"synced")
            assert_ok(await call(vfs, write_upcall(handle, 3), b"abc"), OpCode.FILE_IO)
            assert_ok(await call(vfs, fsync_upcall(handle)), OpCode.FSYNC)
            assert bytes(stack.store.data[handle]) == b"abc"
            assert_error(await call(vfs, fsync_upcall(b"\x55" * 16)), OpCode.FSYNC, errno.ENOENT)


# -- xattrs ------------------------------------------------------------------------------------------------------


async def test_xattrs_set_get_list_remove(nursery, tmp_path):
    """SETXATTR/GETXATTR/LISTXATTR/REMOVEXATTR round-trip; list keys carry their NUL; a probe counts (spec §4.14)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"x")
            assert_error(await call(vfs, getxattr_upcall(handle, b"user.none")), OpCode.GETXATTR, errno.ENOENT)
            values = {b"user.a": b"1", b"user.bb": b"value two", b"user.big": pattern(8192, 3)}
            for key, value in values.items():
                assert_ok(await call(vfs, setxattr_upcall(handle, key, value)), OpCode.SETXATTR)
            for key, value in values.items():
                answer = await call(vfs, getxattr_upcall(handle, key))
                assert_ok(answer, OpCode.GETXATTR)
                got = answer.resp.getxattr
                assert got.val[: got.val_sz] == value
            # Size probe: the count of keys, no keys.
            probe = await call(vfs, listxattr_upcall(handle, 0))
            assert_ok(probe, OpCode.LISTXATTR)
            assert probe.resp.listxattr.returned_count == 3
            # A full list: each key with its NUL, lengths including it.
            answer = await call(vfs, listxattr_upcall(handle, 16))
            assert_ok(answer, OpCode.LISTXATTR)
            listing = answer.resp.listxattr
            assert listing.token == ORANGEFS_ITERATE_END
            keys = listxattr_keys(listing)
            assert sorted(keys) == sorted(k + b"\0" for k in values)
            assert listing.lengths[:3] == [len(k) for k in keys]
            assert listing.keylen == sum(len(k) for k in keys)
            # Remove one; it is gone from get and list.
            assert_ok(await call(vfs, removexattr_upcall(handle, b"user.bb")), OpCode.REMOVEXATTR)
            assert_error(await call(vfs, getxattr_upcall(handle, b"user.bb")), OpCode.GETXATTR, errno.ENOENT)
            assert_error(await call(vfs, removexattr_upcall(handle, b"user.bb")), OpCode.REMOVEXATTR, errno.ENOENT)
            answer = await call(vfs, listxattr_upcall(handle, 16))
            assert sorted(listxattr_keys(answer.resp.listxattr)) == [b"user.a\0", b"user.big\0"]


async def test_listxattr_continues_by_token_in_batches_of_requested_count(nursery, tmp_path):
    """LISTXATTR gives at most requested_count keys and a token to go on from until ITERATE_END (spec §4.14)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"many")
            keys = [b"user.k%02d" % i for i in range(20)]
            for key in keys:
                assert_ok(await call(vfs, setxattr_upcall(handle, key, b"v")), OpCode.SETXATTR)
            seen, token, rounds = [], ORANGEFS_ITERATE_START, 0
            while token != ORANGEFS_ITERATE_END:
                answer = await call(vfs, listxattr_upcall(handle, 16, token))
                assert_ok(answer, OpCode.LISTXATTR)
                assert 0 <= answer.resp.listxattr.returned_count <= 16
                seen += listxattr_keys(answer.resp.listxattr)
                token = answer.resp.listxattr.token
                rounds += 1
            assert rounds == 2
            assert seen == [k + b"\0" for k in keys]


# -- the daemon's knobs ------------------------------------------------------------------------------------------


async def test_param_get_and_set_round_trip_through_the_control_channel(nursery, tmp_path):
    """PARAM GET/SET of acache/hard_limit and the readahead knobs are kept by the daemon (spec §6.1)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        reply = await control(tmp_path, "params", name="acache/hard_limit")
        assert reply["ok"], reply
        assert reply["value"] == "10240\n"
        reply = await control(tmp_path, "params", name="acache/hard_limit", value="777")
        assert reply["ok"] and reply["value"] == "777\n", reply
        assert (await control(tmp_path, "params", name="acache/hard_limit"))["value"] == "777\n"
        # Readahead knobs need the READAHEAD feature, which the daemon's FEATURES reply offered at mount.
        reply = await control(tmp_path, "params", name="readahead_size", value="65536")
        assert reply["ok"] and reply["value"] == "65536\n", reply
        reply = await control(tmp_path, "params", name="readahead_count_size", value="3 131072")
        assert reply["ok"] and reply["value"] == "3 131072\n", reply
        # A knob the daemon does not keep: the upcall fails, sysfs says EINVAL.
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, upcall(OpCode.PARAM, "param", type=2, op=99))
        assert_error(answer, OpCode.PARAM, errno.EINVAL)
        await assert_quiescent(tmp_path)


async def test_perf_count_through_the_control_channel(nursery, tmp_path):
    """PERF_COUNT answers a NUL-terminated text of counters (spec §3.3, §6.1)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            for _ in range(3):
                assert_ok(await call(vfs, getattr_upcall()), OpCode.GETATTR)
        for kind in ("acache", "ncache", "capcache"):
            reply = await control(tmp_path, "perf", type=kind)
            assert reply["ok"], reply
            assert reply["text"].strip(), reply
        assert "OP_GETATTR" in reply["text"]
        assert "OP_FS_MOUNT" in reply["text"]


async def test_ra_flush(nursery, tmp_path):
    """RA_FLUSH of one of our files is answered with status 0 (spec §4.13, §5.5)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            handle = await _create(vfs, b"ra")
            assert_ok(await call(vfs, ra_flush_upcall(handle)), OpCode.RA_FLUSH)


# -- directories ---------------------------------------------------------------------------------------------------


async def test_readdir_continues_by_token_with_at_most_512_entries(nursery, tmp_path):
    """READDIR returns ≤ 512 entries a reply in the trailer, continuing by token until ITERATE_END (spec §3.4)."""
    with trio.fail_after(TIMEOUT):
        stack = await start_stack(nursery, tmp_path)
        names = [b"entry-%04d" % i for i in range(700)]
        handles = {}
        for name in names:
            handles[name] = stack.store.create(ROOT_CREDS, ROOT, name, 0o644).handle
        seen, token, replies = [], ORANGEFS_ITERATE_START, 0
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            while token != ORANGEFS_ITERATE_END:
                # Asking for more than 512 still gets at most 512.
                answer = await call(vfs, readdir_upcall(ROOT, token, count=1000))
                assert answer.result == 0, answer.result
                assert answer.downcall.type == OpCode.READDIR and answer.downcall.status == 0
                assert answer.downcall.trailer_size == len(answer.data) >= 24
                trailer = decode_readdir_trailer(answer.data, strict=True)
                assert len(trailer.entries) <= 512
                assert trailer.outcount == len(trailer.entries)
                seen += [(e.name, e.khandle) for e in trailer.entries]
                token = trailer.token
                replies += 1
            assert replies == 2
            assert sorted(seen) == sorted(handles.items())
            # An empty directory: a 24-byte trailer with ITERATE_END.
            answer = await call(vfs, mkdir_upcall(b"empty"))
            empty = answer.resp.mkdir.refn.khandle
            answer = await call(vfs, readdir_upcall(empty))
            assert answer.result == 0 and len(answer.data) == 24
            assert decode_readdir_trailer(answer.data).token == ORANGEFS_ITERATE_END
        await assert_quiescent(tmp_path)


# -- ops the kernel does not send ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op_type", [OpCode.READDIRPLUS, OpCode.FSKEY])
async def test_readdirplus_and_fskey_get_enosys(nursery, tmp_path, op_type):
    """READDIRPLUS and FSKEY get a well-formed ENOSYS-encoded reply with the type echoed (issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            answer = await call(vfs, raw_upcall(op_type))
            assert_error(answer, op_type, errno.ENOSYS)
            assert_ok(await call(vfs, getattr_upcall()), OpCode.GETATTR)


async def test_an_unknown_op_type_gets_einval(nursery, tmp_path):
    """An upcall of a type no kernel defines gets an EINVAL-encoded reply with the type echoed (issue 4, Bad input)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            for op_type in (0xFF000099, 0xFF00EE04, 0x12345678):
                answer = await call(vfs, raw_upcall(op_type, b"\xaa" * 64))
                assert_error(answer, op_type, errno.EINVAL)
            assert_ok(await call(vfs, getattr_upcall()), OpCode.GETATTR)
        await assert_quiescent(tmp_path)


async def test_the_daemon_answers_many_ops_at_once(nursery, tmp_path):
    """64 GETATTRs in flight at once are all answered, each with its own tag (issue 4, Daemon: reader loop)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            pending = [await vfs.send_submit(vfs.next_id(), getattr_upcall()) for _ in range(64)]
            replies = [await p.wait() for p in pending]
        assert all(r.result == 0 for r in replies)
        assert len({r.tag for r in replies}) == 64
        await assert_quiescent(tmp_path)



async def test_new_objects_belong_to_the_uid_and_gid_in_the_upcall(nursery, tmp_path):
    """The daemon calls the store with the uid/gid the kernel put in the upcall (spec §3.2; issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            up = bytearray(create_upcall(b"mine"))
            struct.pack_into("<II", up, 4, 1000, 100)
            answer = await call(vfs, bytes(up))
            assert_ok(answer, OpCode.CREATE)
            attrs = (await _getattr(vfs, answer.resp.create.refn.khandle)).attributes
        assert (attrs.owner, attrs.group) == (1000, 100)


# -- through the fake device: slots the broker would pick -------------------------------------------------------


async def _fake_core(nursery, tmp_path, **kwargs) -> FakeDevice:
    fake = await nursery.start(FakeDevice(tmp_path).serve)
    kwargs.setdefault("desc_count", 4)
    kwargs.setdefault("desc_size", SLOT)
    await nursery.start(Daemon(MemStore(), tmp_path, **kwargs).run)
    return fake


async def _ask(fake: FakeDevice, tag: int, up: bytes):
    fake.queue(read_frame(tag, up))
    written = await fake.downcall(tag)
    (op_type,) = struct.unpack_from("<I", up, 0)
    head, body = proto.decode_write_frame(written, op_type)
    assert head.tag == tag and body.downcall.type == op_type
    return body, written


async def test_file_io_moves_data_through_the_slot_named_by_buf_index(nursery, tmp_path):
    """A FILE_IO write takes its data from slot buf_index and a read deposits it in its slot (spec §5.3)."""
    with trio.fail_after(TIMEOUT):
        fake = await _fake_core(nursery, tmp_path)
        body, _ = await _ask(fake, 200, create_upcall(b"f"))
        handle = body.downcall.resp.create.refn.khandle
        data = pattern(300_000, 7)
        fake.io[2 * SLOT : 2 * SLOT + len(data)] = data
        body, _ = await _ask(fake, 201, write_upcall(handle, len(data), 100, buf_index=2))
        assert body.downcall.status == 0 and body.downcall.resp.io.amt_complete == len(data)
        body, _ = await _ask(fake, 202, read_upcall(handle, SLOT, 100, buf_index=3))
        assert body.downcall.status == 0 and body.downcall.resp.io.amt_complete == len(data)
        assert fake.io[3 * SLOT : 3 * SLOT + len(data)] == data
        # The read touched only its own slot.
        assert fake.io[0:SLOT] == bytes(SLOT) and fake.io[SLOT : 2 * SLOT] == bytes(SLOT)


async def test_readdir_results_are_deposited_in_the_readdir_slot_and_sent_as_the_trailer(nursery, tmp_path):
    """READDIR encodes its entries in readdir slot buf_index and sends the same bytes as the trailer (spec §3.4,
    §5.4; issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        fake = await _fake_core(nursery, tmp_path)
        for i, name in enumerate([b"one", b"two", b"three"]):
            body, _ = await _ask(fake, 300 + i, create_upcall(name))
            assert body.downcall.status == 0
        body, written = await _ask(fake, 310, readdir_upcall(ROOT, buf_index=3, count=2))
        assert body.downcall.status == 0
        trailer = body.trailer
        assert body.downcall.trailer_size == len(trailer) == len(written) - 8240
        slot = len(fake.readdir) // 5
        assert fake.readdir[3 * slot : 3 * slot + len(trailer)] == trailer
        decoded = decode_readdir_trailer(trailer, strict=True)
        assert len(decoded.entries) == 2 and decoded.token != ORANGEFS_ITERATE_END
        body, _ = await _ask(fake, 311, readdir_upcall(ROOT, decoded.token, buf_index=4))
        rest = decode_readdir_trailer(body.trailer, strict=True)
        assert rest.token == ORANGEFS_ITERATE_END
        assert sorted(e.name for e in decoded.entries + rest.entries) == [b"one", b"three", b"two"]


async def test_replies_carry_zero_pads_and_pointers(nursery, tmp_path):
    """Successful downcalls have version 21000, the magic, type echoed, and zero holes, pointers and unused union
    bytes (spec §1.4, §3.1, §7; issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        fake = await _fake_core(nursery, tmp_path)
        body, written = await _ask(fake, 400, symlink_upcall(b"l", b"target"))
        assert body.downcall.status == 0
        link = body.downcall.resp.sym.refn.khandle
        assert written[40 + 24 :] == bytes(len(written) - 64)  # kref: handle, fs_id, then a zero pad
        assert written[60:64] == bytes(4)
        body, written = await _ask(fake, 401, getattr_upcall(link, AttrMask.ALL_NOHINT | AttrMask.LNK_TARGET))
        assert body.downcall.status == 0 and body.downcall.resp.getattr.link_target == b"target"
        version, magic = struct.unpack_from("<II", written, 0)
        assert (version, magic) == (proto.PVFS2DEV_USERSPACE_VERSION, proto.ORANGEFS_DEVREQ_MAGIC)
        attrs = 40
        for start, end in ((12, 16), (48, 56), (76, 96), (108, 112), (124, 128)):  # holes and pointers
            assert written[attrs + start : attrs + end] == bytes(end - start), (start, end)
        target_end = attrs + 136 + len(b"target")
        assert written[target_end:] == bytes(len(written) - target_end)
        body, written = await _ask(fake, 402, mount_upcall())
        assert written[40 + 24 :] == bytes(len(written) - 64)
        assert len(written) == proto.MAX_DEV_REQ_DOWNSIZE
