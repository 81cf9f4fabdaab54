"""Names in the embedded store: lookup, create, mkdir, symlink, remove, rename — results, errnos, permissions."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from pvfs2proto import ObjType

from .storehelp import OTHER, PEER, ROOT, USER, check_invariants, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)

BAD_NAMES = [
    (b"", errno.EINVAL),
    (b"a/b", errno.EINVAL),
    (b"a\0b", errno.EINVAL),
    (b".", errno.EINVAL),
    (b"..", errno.EINVAL),
    (b"x" * 256, errno.ENAMETOOLONG),
]


@pytest.fixture
def home(store):
    """A directory 0755 owned by USER in the store's root."""
    return store.mkdir(USER, store.root, b"home", 0o755).handle


def data_objects(store, handle):
    return [t for t in range(store.targets) if os.path.exists(store._data_path(handle, t))]


# --- create, mkdir, symlink ---------------------------------------------------------------


def test_create_attributes(store, home):
    """create makes an empty regular file owned by the caller, with the mode given and nlink 1."""
    a = store.create(USER, home, b"f", 0o100640)
    assert a.objtype == ObjType.METAFILE
    assert (a.mode, a.uid, a.gid, a.size, a.nlink, a.target) == (0o640, 1000, 1000, 0, 1, b"")
    assert a.atime == a.mtime == a.ctime > 0
    assert a.blksize == store.stripe_size
    assert store.getattr(USER, a.handle) == a
    assert store.lookup(USER, home, b"f") == a


def test_create_updates_parent(store, home):
    """A new entry adds one to the directory's size (its entry count) and sets its mtime."""
    before = store.getattr(USER, home)
    store.create(USER, home, b"f", 0o644)
    after = store.getattr(USER, home)
    assert (after.size, after.nlink) == (before.size + 1, before.nlink)
    assert after.mtime >= before.mtime


def test_mkdir_attributes_and_parent_nlink(store, home):
    """A new directory has nlink 2 and size 0, and adds one to its parent's nlink."""
    d = store.mkdir(USER, home, b"d", 0o700)
    assert d.objtype == ObjType.DIRECTORY
    assert (d.mode, d.size, d.nlink) == (0o700, 0, 2)
    parent = store.getattr(USER, home)
    assert (parent.size, parent.nlink) == (1, 3)
    check_invariants(store)


def test_symlink_attributes(store, home):
    """A symlink keeps its target, reports its length as size, and has mode 0777."""
    a = store.symlink(USER, home, b"l", b"../somewhere/else")
    assert a.objtype == ObjType.SYMLINK
    assert (a.mode, a.size, a.target, a.nlink) == (0o777, 17, b"../somewhere/else", 1)
    assert store.getattr(USER, a.handle).target == b"../somewhere/else"


def test_symlink_target_limits(store, home):
    """A symlink target may be 255 bytes; 256 is ENAMETOOLONG; empty or NUL-holding is EINVAL."""
    assert store.symlink(USER, home, b"ok", b"t" * 255).size == 255
    with raises(errno.ENAMETOOLONG):
        store.symlink(USER, home, b"long", b"t" * 256)
    with raises(errno.EINVAL):
        store.symlink(USER, home, b"empty", b"")
    with raises(errno.EINVAL):
        store.symlink(USER, home, b"nul", b"a\0b")


@pytest.mark.parametrize("make", ["create", "mkdir", "symlink"])
def test_make_errors(store, home, make):
    """create, mkdir and symlink: EEXIST, ENOENT (no parent), ENOTDIR (parent a file), EACCES (no write)."""
    def do(creds, parent, name):
        if make == "symlink":
            return store.symlink(creds, parent, name, b"target")
        return getattr(store, make)(creds, parent, name, 0o755)

    f = store.create(USER, home, b"exists", 0o644)
    with raises(errno.EEXIST):
        do(USER, home, b"exists")
    with raises(errno.ENOENT):
        do(USER, os.urandom(16), b"x")
    with raises(errno.ENOENT):
        do(USER, b"short", b"x")
    with raises(errno.ENOTDIR):
        do(USER, f.handle, b"x")
    with raises(errno.EACCES):
        do(OTHER, home, b"x")  # home is 0755 owned by USER
    assert do(ROOT, home, b"by-root").uid == 0  # root bypasses the check


@pytest.mark.parametrize("name,code", BAD_NAMES)
def test_make_rejects_bad_names(store, home, name, code):
    """Names must be 1..255 bytes without '/' or NUL and not '.' or '..'."""
    with raises(code):
        store.create(USER, home, name, 0o644)
    with raises(code):
        store.mkdir(USER, home, name, 0o755)
    with raises(code):
        store.lookup(USER, home, name)


def test_longest_name(store, home):
    """A 255-byte name is accepted and found again."""
    name = b"n" * 255
    a = store.create(USER, home, name, 0o644)
    assert store.lookup(USER, home, name).handle == a.handle


def test_names_are_bytes(store, home):
    """Names are opaque bytes: non-UTF-8 names round-trip and differ from each other."""
    a = store.create(USER, home, b"\xff\xfe", 0o644)
    b = store.create(USER, home, b"\xff\xfd", 0o644)
    assert store.lookup(USER, home, b"\xff\xfe").handle == a.handle != b.handle


def test_exists_before_write_permission(store, home):
    """EEXIST wins over EACCES when the name exists (as Linux's may_create)."""
    store.create(USER, home, b"f", 0o644)
    with raises(errno.EEXIST):
        store.create(OTHER, home, b"f", 0o644)


def test_create_needs_search_too(store):
    """Write without search permission on the directory is not enough to create (EACCES)."""
    d = store.mkdir(USER, store.root, b"wonly", 0o722)
    with raises(errno.EACCES):
        store.create(OTHER, d.handle, b"f", 0o644)
    store.setattr(USER, d.handle, mode=0o733)
    assert store.create(OTHER, d.handle, b"f", 0o644).uid == OTHER.uid


def test_group_write_permission(store):
    """A group member gets the group's bits: write+search via g+wx lets PEER create, OTHER not."""
    d = store.mkdir(USER, store.root, b"shared", 0o770)
    assert store.create(PEER, d.handle, b"p", 0o644).uid == PEER.uid
    with raises(errno.EACCES):
        store.create(OTHER, d.handle, b"o", 0o644)


def test_owner_bits_exclude_group_bits(store):
    """The owner class is used alone: an owner without write bits is refused even if the group may write."""
    d = store.mkdir(USER, store.root, b"d", 0o570)
    with raises(errno.EACCES):
        store.create(USER, d.handle, b"f", 0o644)
    assert store.create(PEER, d.handle, b"f", 0o644)


def test_setgid_directory_hands_down_group(store):
    """In a set-gid directory new objects take its group, and new subdirectories its set-gid bit."""
    d = store.mkdir(ROOT, store.root, b"proj", 0o2777)
    store.setattr(ROOT, d.handle, gid=500)
    f = store.create(USER, d.handle, b"f", 0o2755)
    sub = store.mkdir(USER, d.handle, b"sub", 0o755)
    assert f.gid == sub.gid == 500
    assert sub.mode == 0o2755
    assert f.mode == 0o755  # USER is not in group 500: set-gid dropped
    assert store.create(ROOT, d.handle, b"r", 0o2755).mode == 0o2755


def test_handles_are_unique(store, home):
    """Handles are 16 bytes and never repeat, even after objects are removed."""
    seen = {store.root, home}
    for i in range(200):
        a = store.create(USER, home, b"f", 0o644)
        assert len(a.handle) == 16 and a.handle not in seen
        seen.add(a.handle)
        store.remove(USER, home, b"f")


# --- lookup ---------------------------------------------------------------------------------


def test_lookup_errors(store, home):
    """lookup: ENOENT (no entry, no parent), ENOTDIR (parent not a directory)."""
    f = store.create(USER, home, b"f", 0o644)
    with raises(errno.ENOENT):
        store.lookup(USER, home, b"missing")
    with raises(errno.ENOENT):
        store.lookup(USER, os.urandom(16), b"f")
    with raises(errno.ENOTDIR):
        store.lookup(USER, f.handle, b"x")


def test_lookup_needs_search_permission(store):
    """lookup needs search (x) on the directory, not read: 0711 works for others, 0700 is EACCES; root passes."""
    d = store.mkdir(USER, store.root, b"d", 0o711)
    store.create(USER, d.handle, b"f", 0o644)
    assert store.lookup(OTHER, d.handle, b"f")
    store.setattr(USER, d.handle, mode=0o766)
    with raises(errno.EACCES):
        store.lookup(OTHER, d.handle, b"f")
    with raises(errno.EACCES):
        store.lookup(OTHER, d.handle, b"missing")  # EACCES before ENOENT
    assert store.lookup(ROOT, d.handle, b"f")


def test_getattr_errors(store):
    """getattr of an unknown handle, or of something not 16 bytes, is ENOENT."""
    with raises(errno.ENOENT):
        store.getattr(USER, os.urandom(16))
    with raises(errno.ENOENT):
        store.getattr(USER, b"\x01" * 15)


# --- remove ---------------------------------------------------------------------------------


def test_remove_file(store, home):
    """remove deletes the entry, the object and its data objects, and shrinks the directory."""
    f = store.create(USER, home, b"f", 0o644)
    store.write(USER, f.handle, 0, memoryview(os.urandom(300_000)))
    assert data_objects(store, f.handle) == [0, 1, 2, 3]
    store.remove(USER, home, b"f")
    with raises(errno.ENOENT):
        store.lookup(USER, home, b"f")
    with raises(errno.ENOENT):
        store.getattr(USER, f.handle)
    assert data_objects(store, f.handle) == []
    assert store.getattr(USER, home).size == 0
    check_invariants(store)


def test_remove_directory_and_symlink(store, home):
    """remove serves rmdir (empty directories, parent nlink drops) and symlinks."""
    store.mkdir(USER, home, b"d", 0o755)
    store.symlink(USER, home, b"l", b"d")
    assert store.getattr(USER, home).nlink == 3
    store.remove(USER, home, b"d")
    store.remove(USER, home, b"l")
    parent = store.getattr(USER, home)
    assert (parent.size, parent.nlink) == (0, 2)
    check_invariants(store)


def test_remove_errors(store, home):
    """remove: ENOENT, ENOTDIR (parent a file), ENOTEMPTY, EACCES (no write on parent)."""
    d = store.mkdir(USER, home, b"d", 0o755)
    f = store.create(USER, d.handle, b"f", 0o644)
    with raises(errno.ENOENT):
        store.remove(USER, home, b"missing")
    with raises(errno.ENOTDIR):
        store.remove(USER, f.handle, b"x")
    with raises(errno.ENOTEMPTY):
        store.remove(USER, home, b"d")
    with raises(errno.EACCES):
        store.remove(OTHER, d.handle, b"f")
    with raises(errno.ENOENT):
        store.remove(USER, os.urandom(16), b"f")
    store.remove(ROOT, d.handle, b"f")
    store.remove(USER, home, b"d")


@pytest.mark.parametrize("name,code", BAD_NAMES)
def test_remove_rejects_bad_names(store, home, name, code):
    """remove checks names as create does."""
    with raises(code):
        store.remove(USER, home, name)


def test_sticky_directory_remove(store):
    """In a sticky directory only the entry's owner, the directory's owner or root may remove it (EPERM)."""
    d = store.mkdir(USER, store.root, b"tmp", 0o1777)
    for name in (b"a", b"b", b"c"):
        store.create(OTHER, d.handle, name, 0o666)
    with raises(errno.EPERM):
        store.remove(PEER, d.handle, b"a")
    store.remove(OTHER, d.handle, b"a")  # the entry's owner
    store.remove(USER, d.handle, b"b")  # the directory's owner
    store.remove(ROOT, d.handle, b"c")
    assert store.getattr(ROOT, d.handle).size == 0


def test_root_directory_is_sticky(store):
    """The root is 1777: anyone may create in it, but not remove another user's entry."""
    store.create(USER, store.root, b"mine", 0o644)
    with raises(errno.EPERM):
        store.remove(OTHER, store.root, b"mine")
    with raises(errno.EPERM):
        store.rename(OTHER, store.root, b"mine", store.root, b"theirs")


# --- rename ---------------------------------------------------------------------------------


def test_rename_within_directory(store, home):
    """rename moves the entry to the new name, keeping the handle; the directory size is unchanged."""
    f = store.create(USER, home, b"old", 0o644)
    store.rename(USER, home, b"old", home, b"new")
    assert store.lookup(USER, home, b"new").handle == f.handle
    with raises(errno.ENOENT):
        store.lookup(USER, home, b"old")
    assert store.getattr(USER, home).size == 1
    check_invariants(store)


def test_rename_directory_across_parents(store, home):
    """Moving a directory moves one nlink from the old parent to the new one."""
    a = store.mkdir(USER, home, b"a", 0o755).handle
    b = store.mkdir(USER, home, b"b", 0o755).handle
    sub = store.mkdir(USER, a, b"sub", 0o755)
    store.create(USER, sub.handle, b"inside", 0o644)
    store.rename(USER, a, b"sub", b, b"moved")
    assert store.getattr(USER, a).nlink == 2 and store.getattr(USER, a).size == 0
    assert store.getattr(USER, b).nlink == 3 and store.getattr(USER, b).size == 1
    assert store.lookup(USER, store.lookup(USER, b, b"moved").handle, b"inside")
    check_invariants(store)


def test_rename_replaces_file(store, home):
    """rename over an existing file replaces it: the old object and its data objects are gone."""
    src = store.create(USER, home, b"src", 0o644)
    dst = store.create(USER, home, b"dst", 0o644)
    store.write(USER, dst.handle, 0, memoryview(b"old data"))
    store.setxattr(USER, dst.handle, b"user.x", b"1", 0)
    store.rename(USER, home, b"src", home, b"dst")
    assert store.lookup(USER, home, b"dst").handle == src.handle
    with raises(errno.ENOENT):
        store.getattr(USER, dst.handle)
    assert data_objects(store, dst.handle) == []
    assert store.getattr(USER, home).size == 1
    check_invariants(store)


def test_rename_replaces_empty_directory(store, home):
    """A directory may replace an empty directory; nlinks stay right."""
    store.mkdir(USER, home, b"a", 0o755)
    victim = store.mkdir(USER, home, b"b", 0o755)
    store.rename(USER, home, b"a", home, b"b")
    with raises(errno.ENOENT):
        store.getattr(USER, victim.handle)
    parent = store.getattr(USER, home)
    assert (parent.size, parent.nlink) == (1, 3)
    check_invariants(store)


def test_rename_type_errors(store, home):
    """Directory over file is ENOTDIR, file over directory EISDIR, over a non-empty directory ENOTEMPTY."""
    store.mkdir(USER, home, b"dir", 0o755)
    store.create(USER, home, b"file", 0o644)
    full = store.mkdir(USER, home, b"full", 0o755)
    store.create(USER, full.handle, b"x", 0o644)
    store.mkdir(USER, home, b"dir2", 0o755)
    with raises(errno.ENOTDIR):
        store.rename(USER, home, b"dir", home, b"file")
    with raises(errno.EISDIR):
        store.rename(USER, home, b"file", home, b"dir")
    with raises(errno.ENOTEMPTY):
        store.rename(USER, home, b"dir2", home, b"full")
    check_invariants(store)


def test_rename_into_itself(store, home):
    """Moving a directory into itself or below itself is EINVAL."""
    a = store.mkdir(USER, home, b"a", 0o755)
    b = store.mkdir(USER, a.handle, b"b", 0o755)
    with raises(errno.EINVAL):
        store.rename(USER, home, b"a", a.handle, b"a2")
    with raises(errno.EINVAL):
        store.rename(USER, home, b"a", b.handle, b"a2")
    check_invariants(store)


def test_rename_errors(store, home):
    """rename: ENOENT (no source, no parent), ENOTDIR (a parent is a file), EACCES (no write on either parent)."""
    f = store.create(USER, home, b"f", 0o644)
    theirs = store.mkdir(OTHER, store.root, b"theirs", 0o755)
    with raises(errno.ENOENT):
        store.rename(USER, home, b"missing", home, b"x")
    with raises(errno.ENOENT):
        store.rename(USER, os.urandom(16), b"f", home, b"x")
    with raises(errno.ENOTDIR):
        store.rename(USER, home, b"f", f.handle, b"x")
    with raises(errno.EACCES):
        store.rename(USER, home, b"f", theirs.handle, b"x")
    with raises(errno.EACCES):
        store.rename(OTHER, home, b"f", theirs.handle, b"x")
    store.rename(ROOT, home, b"f", theirs.handle, b"x")
    assert store.lookup(ROOT, theirs.handle, b"x").handle == f.handle
    check_invariants(store)


@pytest.mark.parametrize("name,code", BAD_NAMES)
def test_rename_rejects_bad_names(store, home, name, code):
    """rename checks both names as create does."""
    store.create(USER, home, b"f", 0o644)
    with raises(code):
        store.rename(USER, home, b"f", home, name)
    with raises(code):
        store.rename(USER, home, name, home, b"g")


def test_rename_sticky_target(store):
    """Replacing an entry in a sticky directory needs ownership of that entry (or of the directory)."""
    d = store.mkdir(ROOT, store.root, b"tmp", 0o1777)
    store.create(OTHER, d.handle, b"theirs", 0o666)
    store.create(USER, d.handle, b"mine", 0o666)
    with raises(errno.EPERM):
        store.rename(USER, d.handle, b"mine", d.handle, b"theirs")
    store.rename(ROOT, d.handle, b"mine", d.handle, b"theirs")
    assert store.lookup(USER, d.handle, b"theirs").uid == USER.uid


def test_rename_to_itself_is_a_no_op(store, home):
    """Renaming an entry onto itself changes nothing."""
    f = store.create(USER, home, b"f", 0o644)
    store.rename(USER, home, b"f", home, b"f")
    assert store.lookup(USER, home, b"f").handle == f.handle
    check_invariants(store)


def test_mode_keeps_special_bits(store, home):
    """Modes keep set-uid, set-gid and sticky bits and drop file-type bits."""
    a = store.create(USER, home, b"f", stat.S_IFREG | 0o7755)
    assert a.mode == 0o7755
    d = store.mkdir(USER, home, b"d", stat.S_IFDIR | 0o1755)
    assert d.mode == 0o1755
