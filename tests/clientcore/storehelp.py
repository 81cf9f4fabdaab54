"""Shared pieces of the embedded-store tests: fixtures, callers, an errno check, invariants.

Import the fixtures into a test module with
``from .storehelp import store_fixture, store_path_fixture  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import errno
import os

import pytest

from clientcore.store.api import ROOT, Creds, StoreError
from clientcore.store.embedded import EmbeddedStore

USER = Creds(1000, 1000)
OTHER = Creds(1001, 1001)
#: Same group as USER, different user.
PEER = Creds(1002, 1000)
__all__ = ["ROOT", "USER", "OTHER", "PEER", "raises", "check_invariants", "store_fixture", "store_path_fixture"]


@contextlib.contextmanager
def raises(code: int):
    """Expect a StoreError with exactly this errno."""
    with pytest.raises(StoreError) as info:
        yield info
    got = info.value.errno
    assert got == code, f"expected {errno.errorcode[code]}, got {errno.errorcode.get(got, got)}: {info.value}"


# Fixtures under other module-level names than the ones tests ask for, so importing
# them does not shadow the test arguments (pyflakes F811).
@pytest.fixture(name="store_path")
def store_path_fixture(tmp_path):
    """Where a test's store lives (not created)."""
    return str(tmp_path / "store")


@pytest.fixture(name="store")
def store_fixture(store_path):
    """A fresh store with the default geometry (4 targets, 64 KiB stripes), closed after the test."""
    s = EmbeddedStore.open(store_path)
    yield s
    s.close()


def check_invariants(s: EmbeddedStore) -> None:
    """The store's structural rules: no dangling entries, one entry per object, counts, no orphaned data."""
    with s._lock:
        c = s._conn
        dangling = c.execute(
            "SELECT d.name FROM dirents d LEFT JOIN objects o ON o.handle = d.child WHERE o.handle IS NULL"
        ).fetchall()
        assert dangling == [], f"directory entries without an object: {dangling}"
        unreachable = c.execute(
            "SELECT o.handle FROM objects o LEFT JOIN dirents d ON d.child = o.handle "
            "WHERE d.child IS NULL AND o.handle != ?",
            (s.root,),
        ).fetchall()
        assert unreachable == [], "objects without a directory entry"
        twice = c.execute("SELECT child FROM dirents GROUP BY child HAVING count(*) > 1").fetchall()
        assert twice == [], "an object with two entries"
        wrong_parent = c.execute(
            "SELECT o.handle FROM objects o JOIN dirents d ON d.child = o.handle WHERE o.parent IS NOT d.parent"
        ).fetchall()
        assert wrong_parent == [], "objects.parent disagrees with the entry"
        for handle, size, nlink in c.execute("SELECT handle, size, nlink FROM objects WHERE type = 4").fetchall():
            (entries,) = c.execute("SELECT count(*) FROM dirents WHERE parent = ?", (handle,)).fetchone()
            (subdirs,) = c.execute(
                "SELECT count(*) FROM dirents d JOIN objects o ON o.handle = d.child WHERE d.parent = ? AND o.type = 4",
                (handle,),
            ).fetchone()
            assert size == entries, f"directory {handle.hex()} size {size} but {entries} entries"
            assert nlink == 2 + subdirs, f"directory {handle.hex()} nlink {nlink} but {subdirs} subdirectories"
        files = {h for (h,) in c.execute("SELECT handle FROM objects WHERE type = 1")}
    for tdir in s._target_dirs:
        for name in os.listdir(tdir):
            assert bytes.fromhex(name) in files, f"orphaned data object {tdir}/{name}"
