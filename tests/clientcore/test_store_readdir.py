"""readdir in the embedded store: the token loop of spec §3.4, paging, stability, errnos."""

from __future__ import annotations

import errno
import os

import pytest

from clientcore.store.embedded import EmbeddedStore, _id_to_token, _token_to_id
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_NEXT,
    ORANGEFS_ITERATE_START,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
)

from .storehelp import OTHER, ROOT, USER, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)

START, END = ORANGEFS_ITERATE_START, ORANGEFS_ITERATE_END


def read_all(store, creds, handle, max_entries=ORANGEFS_MAX_DIRENT_COUNT_READDIR):
    """The kernel's loop: START, then each returned token, until END; returns the pages."""
    pages, token = [], START
    while token != END:
        entries, token = store.readdir(creds, handle, token, max_entries)
        assert token not in (START, ORANGEFS_ITERATE_NEXT)
        pages.append(entries)
    return pages


@pytest.fixture
def big(store):
    """A directory with 1,200 files."""
    d = store.mkdir(USER, store.root, b"big", 0o755).handle
    handles = {}
    for i in range(1200):
        handles[b"file-%05d" % i] = store.create(USER, d, b"file-%05d" % i, 0o644).handle
    return d, handles


def test_empty_directory(store):
    """An empty directory answers START with no entries and END at once."""
    d = store.mkdir(USER, store.root, b"d", 0o755)
    assert store.readdir(USER, d.handle, START, 512) == ([], END)


def test_paging_1200_entries(store, big):
    """1,200 entries come as pages of 512, 512 and 176, each (name, handle) once, never '.' or '..'."""
    d, handles = big
    pages = read_all(store, USER, d)
    assert [len(p) for p in pages] == [512, 512, 176]
    got = [e for p in pages for e in p]
    assert dict(got) == handles and len(got) == len(handles)
    assert not {b".", b".."} & {name for name, _ in got}


def test_max_entries_is_honoured_and_capped(store, big):
    """A smaller max_entries gives smaller pages; a larger one is capped at 512."""
    d, handles = big
    assert [len(p) for p in read_all(store, USER, d, 100)][:3] == [100, 100, 100]
    assert len(read_all(store, USER, d, 100)) == 12
    entries, _ = store.readdir(USER, d, START, 5000)
    assert len(entries) == ORANGEFS_MAX_DIRENT_COUNT_READDIR


def test_exact_multiple_ends_cleanly(store):
    """With exactly max_entries entries left the page carries END, not a token to an empty page."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    for i in range(10):
        store.create(USER, d, b"%d" % i, 0o644)
    entries, token = store.readdir(USER, d, START, 10)
    assert len(entries) == 10 and token == END
    entries, token = store.readdir(USER, d, START, 5)
    assert len(entries) == 5 and token != END
    entries, token = store.readdir(USER, d, token, 5)
    assert len(entries) == 5 and token == END


def test_stable_under_changes(store, big):
    """Removing entries already returned (including the one a token names) loses nothing and repeats nothing."""
    d, handles = big
    first, token = store.readdir(USER, d, START, 512)
    for name, _ in first:
        store.remove(USER, d, name)  # the token's own entry is gone too
    rest = []
    while token != END:
        entries, token = store.readdir(USER, d, token, 512)
        rest.extend(entries)
    assert sorted(n for n, _ in first + rest) == sorted(handles)


def test_new_entries_appear_at_the_end(store):
    """An entry created during the loop is returned once, after the ones that existed."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    for i in range(6):
        store.create(USER, d, b"%d" % i, 0o644)
    page, token = store.readdir(USER, d, START, 3)
    store.create(USER, d, b"late", 0o644)
    rest, token = store.readdir(USER, d, token, 512)
    assert [n for n, _ in page + rest] == [b"0", b"1", b"2", b"3", b"4", b"5", b"late"]


def test_tokens_survive_reopen(store_path):
    """A token handed out before a restart continues the listing after it."""
    with EmbeddedStore.open(store_path) as s:
        d = s.mkdir(USER, s.root, b"d", 0o755).handle
        for i in range(20):
            s.create(USER, d, b"%02d" % i, 0o644)
        first, token = s.readdir(USER, d, START, 8)
    with EmbeddedStore.open(store_path) as s:
        rest = []
        while token != END:
            entries, token = s.readdir(USER, d, token, 8)
            rest.extend(entries)
    assert [n for n, _ in first + rest] == [b"%02d" % i for i in range(20)]


@pytest.mark.parametrize("token", [ORANGEFS_ITERATE_NEXT, -1, 0, 10**12, 2**64 - 1, "3", None])
def test_garbage_tokens(store, token):
    """A token never handed out (ITERATE_NEXT, beyond any id, negative, not an int) is EINVAL."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    for i in range(3):
        store.create(USER, d, b"%d" % i, 0o644)
    with raises(errno.EINVAL):
        store.readdir(USER, d, token, 512)


def test_end_token(store):
    """Asked to continue from END, readdir returns nothing and END."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    store.create(USER, d, b"x", 0o644)
    assert store.readdir(USER, d, END, 512) == ([], END)


def test_token_encoding_skips_reserved_values():
    """Dirent ids map to tokens that are never START, END or NEXT, and back."""
    for rowid in (1, ORANGEFS_ITERATE_NEXT - 1, ORANGEFS_ITERATE_NEXT, ORANGEFS_ITERATE_NEXT + 1, 2**40):
        token = _id_to_token(rowid)
        assert token not in (START, END, ORANGEFS_ITERATE_NEXT)
        assert _token_to_id(token) == rowid
    for reserved in (START, END, ORANGEFS_ITERATE_NEXT):
        assert _token_to_id(reserved) is None


def test_readdir_errors(store):
    """readdir: ENOENT (unknown), ENOTDIR (a file), EACCES (no read permission; root passes), EINVAL (max < 1)."""
    f = store.create(USER, store.root, b"f", 0o644)
    d = store.mkdir(USER, store.root, b"d", 0o711)
    store.create(USER, d.handle, b"x", 0o644)
    with raises(errno.ENOENT):
        store.readdir(USER, os.urandom(16), START, 512)
    with raises(errno.ENOTDIR):
        store.readdir(USER, f.handle, START, 512)
    with raises(errno.EACCES):
        store.readdir(OTHER, d.handle, START, 512)
    assert len(store.readdir(ROOT, d.handle, START, 512)[0]) == 1
    with raises(errno.EINVAL):
        store.readdir(USER, d.handle, START, 0)


def test_renamed_entry_is_listed_under_its_new_name(store):
    """After a rename the directory lists the new name once and not the old."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    f = store.create(USER, d, b"old", 0o644)
    store.rename(USER, d, b"old", d, b"new")
    assert store.readdir(USER, d, START, 512) == ([(b"new", f.handle)], END)
