"""Extended attributes in the embedded store: limits of spec §2.3, flags and iteration of §4.14, permissions."""

from __future__ import annotations

import errno
import os

import pytest

from pvfs2proto import XattrFlags
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_START,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_MAX_XATTR_VALUELEN,
)

from .storehelp import OTHER, ROOT, USER, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)

START, END = ORANGEFS_ITERATE_START, ORANGEFS_ITERATE_END
CREATE, REPLACE = XattrFlags.CREATE, XattrFlags.REPLACE


@pytest.fixture
def f(store):
    return store.create(USER, store.root, b"f", 0o644).handle


def list_all(store, creds, handle, count=ORANGEFS_MAX_XATTR_LISTLEN):
    pages, token = [], START
    while token != END:
        keys, token = store.listxattr(creds, handle, token, count)
        pages.append(keys)
    return pages


def test_set_get_replace(store, f):
    """A value set is read back; setting again with flags 0 replaces it."""
    store.setxattr(USER, f, b"user.a", b"one", 0)
    assert store.getxattr(USER, f, b"user.a") == b"one"
    store.setxattr(USER, f, b"user.a", b"two", 0)
    assert store.getxattr(USER, f, b"user.a") == b"two"
    store.setxattr(USER, f, b"user.empty", b"", 0)
    assert store.getxattr(USER, f, b"user.empty") == b""


def test_create_flag(store, f):
    """XATTR_CREATE on an existing key is EEXIST and keeps the old value."""
    store.setxattr(USER, f, b"user.a", b"one", CREATE)
    with raises(errno.EEXIST):
        store.setxattr(USER, f, b"user.a", b"two", CREATE)
    assert store.getxattr(USER, f, b"user.a") == b"one"


def test_replace_flag(store, f):
    """XATTR_REPLACE on a missing key is ENOENT; on an existing one it replaces."""
    with raises(errno.ENOENT):
        store.setxattr(USER, f, b"user.a", b"one", REPLACE)
    store.setxattr(USER, f, b"user.a", b"one", 0)
    store.setxattr(USER, f, b"user.a", b"two", REPLACE)
    assert store.getxattr(USER, f, b"user.a") == b"two"


@pytest.mark.parametrize("flags", [CREATE | REPLACE, 4, 0x100])
def test_bad_flags(store, f, flags):
    """Both flags at once, or unknown bits, are EINVAL."""
    with raises(errno.EINVAL):
        store.setxattr(USER, f, b"user.a", b"v", flags)


def test_key_length_limit(store, f):
    """Keys must be shorter than 256 bytes: 255 is accepted, 256 is EINVAL for every xattr op."""
    ok = b"user." + b"k" * 250
    assert len(ok) == 255
    store.setxattr(USER, f, ok, b"v", 0)
    assert store.getxattr(USER, f, ok) == b"v"
    long = ok + b"k"
    for call in (
        lambda: store.setxattr(USER, f, long, b"v", 0),
        lambda: store.getxattr(USER, f, long),
        lambda: store.removexattr(USER, f, long),
    ):
        with raises(errno.EINVAL):
            call()


@pytest.mark.parametrize("key", [b"", b"user.a\0b"])
def test_bad_keys(store, f, key):
    """Empty keys and keys holding NUL are EINVAL."""
    with raises(errno.EINVAL):
        store.setxattr(USER, f, key, b"v", 0)
    with raises(errno.EINVAL):
        store.getxattr(USER, f, key)


def test_value_length_limit(store, f):
    """Values may be 8192 bytes; 8193 is EINVAL."""
    value = os.urandom(ORANGEFS_MAX_XATTR_VALUELEN)
    store.setxattr(USER, f, b"user.big", value, 0)
    assert store.getxattr(USER, f, b"user.big") == value
    with raises(errno.EINVAL):
        store.setxattr(USER, f, b"user.big", value + b"x", 0)
    assert store.getxattr(USER, f, b"user.big") == value


def test_missing(store, f):
    """getxattr and removexattr of a missing key are ENOENT (the daemon sends ENODATA); unknown objects ENOENT."""
    with raises(errno.ENOENT):
        store.getxattr(USER, f, b"user.none")
    with raises(errno.ENOENT):
        store.removexattr(USER, f, b"user.none")
    with raises(errno.ENOENT):
        store.getxattr(USER, os.urandom(16), b"user.a")
    with raises(errno.ENOENT):
        store.setxattr(USER, os.urandom(16), b"user.a", b"v", 0)
    with raises(errno.ENOENT):
        store.listxattr(USER, os.urandom(16), START, 16)


def test_remove(store, f):
    """removexattr deletes the key."""
    store.setxattr(USER, f, b"user.a", b"v", 0)
    store.removexattr(USER, f, b"user.a")
    with raises(errno.ENOENT):
        store.getxattr(USER, f, b"user.a")


def test_list_paging(store, f):
    """40 keys list as 16, 16 and 8, each once, ending with END; count is capped at 16."""
    keys = [b"user.k%02d" % i for i in range(40)]
    for k in keys:
        store.setxattr(USER, f, k, b"v", 0)
    pages = list_all(store, USER, f)
    assert [len(p) for p in pages] == [16, 16, 8]
    assert [k for p in pages for k in p] == keys
    assert len(store.listxattr(USER, f, START, 100)[0]) == ORANGEFS_MAX_XATTR_LISTLEN
    assert [len(p) for p in list_all(store, USER, f, 7)] == [7] * 5 + [5]


def test_list_empty_and_probe(store, f):
    """No keys lists as nothing and END; a count-0 probe returns no keys and the token unchanged."""
    assert store.listxattr(USER, f, START, 16) == ([], END)
    store.setxattr(USER, f, b"user.a", b"v", 0)
    assert store.listxattr(USER, f, START, 0) == ([], START)
    assert store.listxattr(USER, f, END, 16) == ([], END)


def test_list_keeps_position_on_replace(store, f):
    """Replacing a value keeps the key where it was in the listing."""
    for k in (b"user.a", b"user.b", b"user.c"):
        store.setxattr(USER, f, k, b"1", 0)
    store.setxattr(USER, f, b"user.a", b"2", REPLACE)
    assert list_all(store, USER, f) == [[b"user.a", b"user.b", b"user.c"]]


@pytest.mark.parametrize("token", [0, -5, 10**12, 2147483644, "x"])
def test_list_garbage_token(store, f, token):
    """A listxattr token never handed out is EINVAL."""
    store.setxattr(USER, f, b"user.a", b"v", 0)
    with raises(errno.EINVAL):
        store.listxattr(USER, f, token, 16)


def test_list_negative_count(store, f):
    """A negative count is EINVAL."""
    with raises(errno.EINVAL):
        store.listxattr(USER, f, START, -1)


def test_permissions(store, f):
    """Changing xattrs: owner and root yes; another user without write permission EPERM; reading needs read."""
    with raises(errno.EPERM):
        store.setxattr(OTHER, f, b"user.a", b"v", 0)
    store.setxattr(USER, f, b"user.a", b"v", 0)
    with raises(errno.EPERM):
        store.removexattr(OTHER, f, b"user.a")
    assert store.getxattr(OTHER, f, b"user.a") == b"v"  # 0644: others may read
    store.setattr(USER, f, mode=0o600)
    with raises(errno.EACCES):
        store.getxattr(OTHER, f, b"user.a")
    store.setxattr(ROOT, f, b"user.b", b"v", 0)
    store.removexattr(ROOT, f, b"user.a")


def test_writer_may_set_user_attributes(store):
    """Write permission lets a non-owner set user.* attributes, but not system.* ones."""
    g = store.create(USER, store.root, b"g", 0o666).handle
    store.setxattr(OTHER, g, b"user.tag", b"1", 0)
    with raises(errno.EPERM):
        store.setxattr(OTHER, g, b"system.posix_acl_access", b"\x02\0\0\0", 0)


def test_trusted_needs_root(store, f):
    """trusted.* attributes are root's only (EPERM even for the owner)."""
    with raises(errno.EPERM):
        store.setxattr(USER, f, b"trusted.x", b"v", 0)
    store.setxattr(ROOT, f, b"trusted.x", b"v", 0)


def test_system_attributes_readable_by_all(store, f):
    """system.* (POSIX ACLs) can be read without read permission, as permission checks need them."""
    store.setxattr(USER, f, b"system.posix_acl_access", b"acl", 0)
    store.setattr(USER, f, mode=0o600)
    assert store.getxattr(OTHER, f, b"system.posix_acl_access") == b"acl"


def test_removed_object_loses_xattrs(store, f):
    """Removing a file removes its attributes too."""
    store.setxattr(USER, f, b"user.a", b"v", 0)
    store.remove(USER, store.root, b"f")
    with store._lock:
        assert store._conn.execute("SELECT count(*) FROM xattrs").fetchone()[0] == 0


def test_directories_and_symlinks_have_xattrs(store):
    """Directories and symlinks carry attributes too (the kernel refuses getxattr on symlinks itself)."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    link = store.symlink(USER, store.root, b"l", b"d").handle
    store.setxattr(USER, d, b"user.d", b"1", 0)
    store.setxattr(USER, link, b"user.l", b"2", 0)
    assert store.getxattr(USER, d, b"user.d") == b"1"
    assert store.listxattr(USER, link, START, 16) == ([b"user.l"], END)
