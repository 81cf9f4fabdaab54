"""setattr and statfs in the embedded store: who may change what, and what the numbers say."""

from __future__ import annotations

import errno
import os
import time

import pytest

from clientcore.store.embedded import NOW_WINDOW

from .storehelp import OTHER, PEER, ROOT, USER, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)


@pytest.fixture
def f(store):
    """A file 0644 owned by USER (uid 1000, gid 1000)."""
    return store.create(USER, store.root, b"f", 0o644)


def test_chmod_by_owner(store, f):
    """The owner may change the mode, set-id and sticky bits included; ctime moves."""
    a = store.setattr(USER, f.handle, mode=0o4750)
    assert a.mode == 0o4750
    assert store.getattr(USER, f.handle).mode == 0o4750
    assert a.ctime >= f.ctime


def test_chmod_by_others(store, f):
    """chmod by a non-owner is EPERM, even for a group member; root may."""
    with raises(errno.EPERM):
        store.setattr(OTHER, f.handle, mode=0o777)
    with raises(errno.EPERM):
        store.setattr(PEER, f.handle, mode=0o777)
    assert store.setattr(ROOT, f.handle, mode=0o600).mode == 0o600


def test_chmod_drops_setgid_outside_group(store):
    """A non-root owner setting set-gid on a file of a group it is not in loses the bit (as Linux)."""
    g = store.create(USER, store.root, b"g", 0o644)
    store.setattr(ROOT, g.handle, gid=77)
    assert store.setattr(USER, g.handle, mode=0o2755).mode == 0o755
    assert store.setattr(ROOT, g.handle, mode=0o2755).mode == 0o2755


def test_chown(store, f):
    """Giving a file to another uid needs root (EPERM for the owner too); root may."""
    with raises(errno.EPERM):
        store.setattr(USER, f.handle, uid=1001)
    with raises(errno.EPERM):
        store.setattr(OTHER, f.handle, uid=1001)
    a = store.setattr(ROOT, f.handle, uid=1001)
    assert a.uid == 1001
    assert store.getattr(ROOT, f.handle).uid == 1001


def test_chown_to_self_is_allowed(store, f):
    """An owner "changing" the uid to its own is a no-op, not EPERM."""
    assert store.setattr(USER, f.handle, uid=USER.uid).uid == USER.uid


def test_chgrp(store, f):
    """The owner may change the group only to its own gid; a non-owner never; root to any."""
    store.setattr(ROOT, f.handle, gid=5)
    assert store.setattr(USER, f.handle, gid=USER.gid).gid == USER.gid
    with raises(errno.EPERM):
        store.setattr(USER, f.handle, gid=5)
    with raises(errno.EPERM):
        store.setattr(OTHER, f.handle, gid=OTHER.gid)
    assert store.setattr(ROOT, f.handle, gid=5).gid == 5


def test_owner_sets_any_times(store, f):
    """The owner may set atime and mtime to arbitrary values; ctime becomes now unless given."""
    a = store.setattr(USER, f.handle, atime=1, mtime=2)
    assert (a.atime, a.mtime) == (1, 2)
    assert a.ctime >= int(time.time()) - 2
    a = store.setattr(ROOT, f.handle, atime=3, mtime=4, ctime=5)
    assert (a.atime, a.mtime, a.ctime) == (3, 4, 5)
    assert store.getattr(USER, f.handle).mtime == 4


def test_non_owner_times(store):
    """A non-owner with write permission may set times to now (a writeback after a write), not to arbitrary values."""
    g = store.create(USER, store.root, b"shared", 0o666)
    now = int(time.time())
    assert store.setattr(OTHER, g.handle, mtime=now, atime=now).mtime == now
    with raises(errno.EPERM):
        store.setattr(OTHER, g.handle, mtime=12345)
    with raises(errno.EPERM):
        store.setattr(OTHER, g.handle, mtime=now + NOW_WINDOW[1] + 60)
    store.setattr(USER, g.handle, mode=0o644)
    with raises(errno.EPERM):
        store.setattr(OTHER, g.handle, mtime=now - 1)  # no write permission any more


def test_unchanged_values_need_no_permission(store, f):
    """A SETATTR carrying the current mode, owner and group changes nothing and is allowed to anyone."""
    cur = store.getattr(USER, f.handle)
    a = store.setattr(OTHER, f.handle, mode=cur.mode, uid=cur.uid, gid=cur.gid)
    assert (a.mode, a.uid, a.gid) == (cur.mode, cur.uid, cur.gid)


def test_setattr_unknown_handle(store):
    """setattr of an unknown handle is ENOENT."""
    with raises(errno.ENOENT):
        store.setattr(ROOT, os.urandom(16), mode=0o644)


def test_setattr_directory_and_symlink(store):
    """Directories and symlinks take setattr like files."""
    d = store.mkdir(USER, store.root, b"d", 0o755)
    link = store.symlink(USER, store.root, b"l", b"d")
    assert store.setattr(USER, d.handle, mode=0o1770).mode == 0o1770
    assert store.setattr(USER, link.handle, mtime=9).mtime == 9


def test_statfs(store):
    """statfs reports stripe-size blocks of the filesystem holding the store, and its inode counts."""
    s = store.statfs()
    st = os.statvfs(store.path)
    assert s.block_size == store.stripe_size
    assert s.blocks_total == st.f_blocks * st.f_frsize // store.stripe_size
    assert 0 <= s.blocks_avail <= s.blocks_total
    assert 0 <= s.files_avail <= s.files_total
    assert s.files_total > 0
