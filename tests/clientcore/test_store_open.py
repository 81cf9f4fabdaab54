"""Opening the embedded store: creation, identity kept across restarts, refusing what is not ours (issue 4)."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from clientcore.store.embedded import APPLICATION_ID, FORMAT_VERSION, STORE_MAGIC, EmbeddedStore
from pvfs2proto import ObjType, XattrFlags

from .storehelp import ROOT, USER, check_invariants, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)


def test_creates_layout(store_path):
    """A first open creates meta.db, the lock file and one directory per target, and a root directory."""
    with EmbeddedStore.open(store_path, targets=3) as s:
        assert sorted(os.listdir(store_path)) == ["lock", "meta.db", "meta.db-wal", "targets"]
        assert sorted(os.listdir(os.path.join(store_path, "targets"))) == ["t0", "t1", "t2"]
        root = s.getattr(ROOT, s.root)
        assert root.objtype == ObjType.DIRECTORY
        assert (root.mode, root.uid, root.gid, root.size, root.nlink) == (0o1777, 0, 0, 0, 2)
        assert len(s.root) == 16
        assert 0 < s.fs_id < 2**31


def test_identity_record(store_path):
    """The identity record names pvfs2dev, the format, fs_id, root, targets and stripe size, and the header says ours."""
    with EmbeddedStore.open(store_path, targets=2, stripe_size=8192) as s:
        fs_id, root = s.fs_id, s.root
    conn = sqlite3.connect(os.path.join(store_path, "meta.db"))
    try:
        info = dict(conn.execute("SELECT key, value FROM store_info"))
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert info["magic"] == STORE_MAGIC == "pvfs2dev-store"
    assert (info["format"], info["fs_id"], info["root"]) == (FORMAT_VERSION, fs_id, root)
    assert (info["targets"], info["stripe_size"], info["clean"]) == (2, 8192, 1)


def test_reopen_keeps_everything(store_path):
    """Reopening gives the same fs_id, root and handles, with names, attributes, xattrs and data intact."""
    with EmbeddedStore.open(store_path) as s:
        fs_id, root = s.fs_id, s.root
        d = s.mkdir(USER, root, b"dir", 0o750)
        f = s.create(USER, d.handle, b"file", 0o640)
        link = s.symlink(USER, root, b"link", b"dir/file")
        s.write(USER, f.handle, 100_000, memoryview(b"hello"))
        s.setxattr(USER, f.handle, b"user.k", b"v", 0)
        before = [s.getattr(ROOT, h) for h in (root, d.handle, f.handle, link.handle)]
    with EmbeddedStore.open(store_path) as s:
        assert (s.fs_id, s.root) == (fs_id, root)
        assert s.lookup(USER, root, b"dir").handle == d.handle
        assert s.lookup(USER, d.handle, b"file").handle == f.handle
        assert [s.getattr(ROOT, h) for h in (root, d.handle, f.handle, link.handle)] == before
        buf = bytearray(10)
        assert s.read(USER, f.handle, 100_000, memoryview(buf)) == 5 and buf[:5] == b"hello"
        assert s.getxattr(USER, f.handle, b"user.k") == b"v"
        check_invariants(s)


def test_fs_ids_differ_between_stores(tmp_path):
    """fs_id is chosen at random per store, so two stores do not share one."""
    ids = set()
    for i in range(4):
        with EmbeddedStore.open(str(tmp_path / f"s{i}")) as s:
            ids.add(s.fs_id)
    assert len(ids) == 4


def test_refuses_foreign_directory(tmp_path):
    """A non-empty directory without meta.db is refused with EINVAL and left untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    with raises(errno.EINVAL) as info:
        EmbeddedStore.open(str(tmp_path))
    assert "not a pvfs2dev store" in str(info.value)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_refuses_a_file(tmp_path):
    """A path naming a regular file is refused with EINVAL."""
    (tmp_path / "f").write_bytes(b"x")
    with raises(errno.EINVAL):
        EmbeddedStore.open(str(tmp_path / "f"))


def test_refuses_foreign_sqlite_database(tmp_path):
    """A meta.db that is some other SQLite database is refused with EINVAL and not modified."""
    db = tmp_path / "meta.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with raises(errno.EINVAL):
        EmbeddedStore.open(str(tmp_path))
    assert db.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["meta.db"]


def test_refuses_garbage_meta_db(tmp_path):
    """A meta.db that is not an SQLite database is refused with EINVAL."""
    (tmp_path / "meta.db").write_bytes(b"\x00" * 4096)
    with raises(errno.EINVAL):
        EmbeddedStore.open(str(tmp_path))


@pytest.mark.parametrize("where", ["user_version", "store_info"])
def test_refuses_newer_format(store_path, where):
    """A store written by a newer format (header or identity record) is refused with EPROTO."""
    EmbeddedStore.open(store_path).close()
    conn = sqlite3.connect(os.path.join(store_path, "meta.db"))
    if where == "user_version":
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    else:
        conn.execute("UPDATE store_info SET value = ? WHERE key = 'format'", (FORMAT_VERSION + 1,))
    conn.commit()
    conn.close()
    with raises(errno.EPROTO) as info:
        EmbeddedStore.open(store_path)
    assert "newer" in str(info.value)


def test_refuses_wrong_magic(store_path):
    """Our application id but another magic in the identity record is refused with EINVAL."""
    EmbeddedStore.open(store_path).close()
    conn = sqlite3.connect(os.path.join(store_path, "meta.db"))
    conn.execute("UPDATE store_info SET value = 'something-else' WHERE key = 'magic'")
    conn.commit()
    conn.close()
    with raises(errno.EINVAL):
        EmbeddedStore.open(store_path)


@pytest.mark.parametrize("kwargs", [{"targets": 8}, {"stripe_size": 131072}, {"targets": 2, "stripe_size": 4096}])
def test_refuses_other_geometry(store_path, kwargs):
    """Targets and stripe size are fixed at creation: a reopen asking for others is refused with EINVAL."""
    EmbeddedStore.open(store_path).close()
    with raises(errno.EINVAL) as info:
        EmbeddedStore.open(store_path, **kwargs)
    assert "targets=4 stripe_size=65536" in str(info.value)


def test_none_geometry_takes_the_stores(store_path):
    """targets=None and stripe_size=None accept whatever the existing store has."""
    EmbeddedStore.open(store_path, targets=3, stripe_size=8192).close()
    with EmbeddedStore.open(store_path, targets=None, stripe_size=None) as s:
        assert (s.targets, s.stripe_size) == (3, 8192)


@pytest.mark.parametrize("kwargs", [{"targets": 0}, {"stripe_size": 1000}, {"stripe_size": 6000}, {"targets": "4"}])
def test_bad_geometry_arguments(store_path, kwargs):
    """Targets outside 1..1024 and stripe sizes that are not multiples of 4096 are EINVAL."""
    with raises(errno.EINVAL):
        EmbeddedStore.open(store_path, **kwargs)
    assert not os.path.exists(store_path)


def test_missing_target_directory(store_path):
    """A store whose target directory vanished is refused with EINVAL rather than serving holes."""
    EmbeddedStore.open(store_path).close()
    os.rmdir(os.path.join(store_path, "targets", "t2"))
    with raises(errno.EINVAL) as info:
        EmbeddedStore.open(store_path)
    assert "t2" in str(info.value)


def test_create_false(store_path):
    """With create=False a missing store is ENOENT and nothing is created."""
    with raises(errno.ENOENT):
        EmbeddedStore.open(store_path, create=False)
    assert not os.path.exists(store_path)


def test_second_open_is_busy(store):
    """One process at a time: a second open of an open store is EBUSY."""
    with raises(errno.EBUSY):
        EmbeddedStore.open(store.path)


def test_empty_directory_becomes_a_store(tmp_path):
    """An existing empty directory is made into a store."""
    with EmbeddedStore.open(str(tmp_path)) as s:
        assert s.getattr(ROOT, s.root).objtype == ObjType.DIRECTORY


def test_interrupted_creation_is_rebuilt(tmp_path):
    """What a creation killed before its final rename leaves (meta.db.new, empty targets) is rebuilt, not refused."""
    (tmp_path / "targets" / "t0").mkdir(parents=True)
    (tmp_path / "meta.db.new").write_bytes(b"half")
    (tmp_path / "lock").write_bytes(b"")
    with EmbeddedStore.open(str(tmp_path), targets=2) as s:
        assert s.targets == 2
    assert sorted(os.listdir(tmp_path / "targets")) == ["t0", "t1"]
    assert not (tmp_path / "meta.db.new").exists()


def test_unclean_open_removes_orphaned_data(store_path):
    """After an unclean stop, data objects whose file has no row are deleted on open; live ones stay."""
    with EmbeddedStore.open(store_path) as s:
        f = s.create(USER, s.root, b"f", 0o644)
        s.write(USER, f.handle, 0, memoryview(b"x" * 300_000))
    orphan = os.path.join(store_path, "targets", "t1", "ab" * 16)
    with open(orphan, "wb") as fh:
        fh.write(b"stale")
    conn = sqlite3.connect(os.path.join(store_path, "meta.db"))
    conn.execute("UPDATE store_info SET value = 0 WHERE key = 'clean'")
    conn.commit()
    conn.close()
    with EmbeddedStore.open(store_path) as s:
        assert not os.path.exists(orphan)
        buf = bytearray(300_000)
        assert s.read(USER, f.handle, 0, memoryview(buf)) == 300_000 and buf == b"x" * 300_000
        check_invariants(s)


def test_close_is_idempotent_and_marks_clean(store_path):
    """close() may be called twice; it leaves clean=1 so the next open skips the orphan scan."""
    s = EmbeddedStore.open(store_path)
    s.setxattr(ROOT, s.root, b"user.a", b"1", XattrFlags.CREATE)
    s.close()
    s.close()
    conn = sqlite3.connect(os.path.join(store_path, "meta.db"))
    assert conn.execute("SELECT value FROM store_info WHERE key = 'clean'").fetchone()[0] == 1
    conn.close()
