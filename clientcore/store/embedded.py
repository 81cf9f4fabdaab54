"""The embedded store: SQLite metadata and RAID-0 striped data objects in one directory.

On-disk layout
==============

::

    STORE/
      meta.db            SQLite database (WAL journal, locking_mode EXCLUSIVE)
      meta.db-wal        its write-ahead log (exists while the store is open or after a crash)
      lock               flock(2)ed exclusively by the one process that has the store open
      targets/t0 .. tN-1 one directory per target ("server"); data objects live here

``meta.db`` holds:

* ``store_info`` — the format/identity record: ``magic`` = ``"pvfs2dev-store"``,
  ``format`` (also in ``PRAGMA user_version``), ``fs_id`` (random, chosen once),
  ``root`` (the root directory's handle), ``targets`` and ``stripe_size`` (fixed at
  creation), ``clean`` (1 after an orderly close) and ``sync_seq`` (bumped by each
  durable commit).  ``PRAGMA application_id`` is ``0x70766632`` ("pvf2") so a
  foreign SQLite file is recognised from its 100-byte header alone, before
  anything is written to it.
* ``objects`` — one row per file, directory or symlink, keyed by its 16-byte
  random handle: type, mode (incl. set-id and sticky bits), uid, gid, size, atime,
  mtime, ctime (seconds), nlink, symlink target, and ``parent`` (the directory
  holding its one entry; OrangeFS has no hard links).
* ``dirents`` — ``(id, parent, name, child)``; ``id`` is an AUTOINCREMENT rowid,
  so ids are never reused and a readdir token is simply the id of the last entry
  returned.  A directory's size is its entry count; its nlink is 2 + subdirs.
* ``xattrs`` — ``(id, handle, key, value)``; listxattr tokens are ids as above.

A regular file's bytes are striped RAID-0 over the targets in ``stripe_size``
units: stripe ``k`` (file bytes ``[k*S, (k+1)*S)``) lives in target ``k % N``,
in the data object ``targets/t{k % N}/{handle.hex()}`` at offset
``(k // N) * S``.  So each target's share of a file is one contiguous range of
its data object, and an I/O of any size is one ``pwritev``/``preadv`` per target
whose iovecs are slices of the caller's memoryview (no intermediate copies).
Data objects are created on the first write that reaches their target; a
missing object, or a hole in one, reads as zeros.  Reads stop at the size in
``objects``, never at a data object's length.

Transaction discipline
======================

One connection (``check_same_thread=False``) guarded by one lock; every
metadata operation is one ``BEGIN`` … ``COMMIT`` under it.  Commits run with
``synchronous=NORMAL``: they reach the OS before ``commit`` returns (so they
survive the process being killed) and reach the disk at the next WAL sync.
``fsync(handle)`` makes things durable: it ``fdatasync``s the file's data objects,
``fsync``s the target directories of data objects created since the last sync,
then commits a one-row transaction with ``synchronous=FULL``, which syncs the
WAL — and with it every earlier commit, because the WAL is one file and SQLite
recovers exactly a prefix of it.  ``close`` syncs the target directories of any
data objects still unsynced, marks the store clean with the same durable commit
and checkpoints the WAL into ``meta.db``.

A killed process (SIGKILL) loses nothing that was committed or written: both are
in the kernel's page cache.  An OS crash or power loss loses what was not yet
synced: metadata rolls back to an earlier prefix of commits (each still a whole
transaction, so the argument below holds), and data not covered by an fsync may
read as older bytes or zeros.

Data I/O runs outside the metadata lock, under a per-handle lock (striped
over 64 locks) taken by write, truncate and the data-object removal after a
remove or a replacing rename, so those never interleave on one file.  Reads take
no handle lock.

Why a crash leaves a consistent store
=====================================

*Names*: an object's row and its directory entry are inserted in one
transaction, and deleted in one; SQLite's WAL makes each all or nothing, so a
directory entry never points at a missing object and no object is unreachable.
*Data*: data objects are deleted only after the transaction that deleted their
row has committed; a kill in between leaves an orphaned data object, never a
row without its data.  ``clean`` is 0 while the store is open, so the next open
after a crash scans the targets and deletes data objects whose handle has no
row (and syncs the target directories).  *Sizes*: a write does its ``pwritev``
first and then commits the new size; a shrinking truncate commits the new size
first and then cuts the data objects.  A kill in between leaves bytes beyond the
file's size in some data object — invisible, since reads stop at the size — so
before a file grows (write past EOF, extending truncate) the store cuts its data
objects back to the current size unless it knows they hold nothing beyond it
(the in-memory set ``_tidy``, empty after open); old bytes are never
resurrected.  *fsync*: everything an fsync covered was on disk before it
returned, and later operations change it only as POSIX allows (overwrite,
truncate, remove).  *Creation*: a new store is built beside its final name
(``meta.db.new``) and renamed into place; leftovers of an interrupted creation
are recognised and rebuilt.

Semantics worth knowing: reads never write metadata, so atime changes only by
SETATTR (the kernel sends one when it updates atime); handles are 16 random
bytes, checked unique against live objects (a removed handle could only recur
with probability 2**-128); readdir and listxattr tokens are row ids, so they stay
valid across restarts, and one naming a since-removed entry still continues
after it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import sqlite3
import stat
import threading
import time
from typing import Iterator

from pvfs2proto import ObjType, XattrFlags
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_NEXT,
    ORANGEFS_ITERATE_START,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_MAX_XATTR_NAMELEN,
    ORANGEFS_MAX_XATTR_VALUELEN,
    ORANGEFS_NAME_MAX,
)

from .api import Attr, Creds, StatFs, StoreError

__all__ = ["EmbeddedStore", "FORMAT_VERSION", "STORE_MAGIC", "MAX_FILE_SIZE"]

#: The format this code writes and the newest it reads.
FORMAT_VERSION = 1
#: ``store_info.magic``.
STORE_MAGIC = "pvfs2dev-store"
#: ``PRAGMA application_id`` ("pvf2"), checked in the raw SQLite header.
APPLICATION_ID = 0x70766632
#: Largest file size (off_t); the filesystem under the targets may refuse sooner (EFBIG).
MAX_FILE_SIZE = 2**63 - 1
#: Longest name or symlink target (ORANGEFS_NAME_MAX counts the NUL).
NAME_MAX = ORANGEFS_NAME_MAX - 1
#: A non-owner with write permission may set times only this close to now (seconds
#: back, seconds ahead): what the kernel's deferred SETATTR after a write carries,
#: as utimes(NULL) allows; arbitrary times need the owner (utimensat(2)).
NOW_WINDOW = (600, 5)

DB_NAME = "meta.db"
DB_NEW = "meta.db.new"
LOCK_NAME = "lock"
TARGETS_DIR = "targets"
#: What an interrupted creation may leave behind (anything else is not ours).
_CREATION_LEFTOVERS = {DB_NEW, DB_NEW + "-journal", DB_NEW + "-wal", DB_NEW + "-shm", TARGETS_DIR, LOCK_NAME}

_SQLITE_HEADER = b"SQLite format 3\x00"
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
_HANDLE_LOCKS = 64

_FILE = int(ObjType.METAFILE)
_DIR = int(ObjType.DIRECTORY)
_LINK = int(ObjType.SYMLINK)
_OBJTYPES = {_FILE: ObjType.METAFILE, _DIR: ObjType.DIRECTORY, _LINK: ObjType.SYMLINK}

_R, _W, _X = 4, 2, 1
#: Times are SQLite INTEGERs: signed 64-bit seconds.
_TIME_MIN, _TIME_MAX = -(1 << 63), (1 << 63) - 1

_SCHEMA = """
CREATE TABLE store_info (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE objects (
    handle BLOB PRIMARY KEY,
    type INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    target BLOB NOT NULL,
    parent BLOB
) WITHOUT ROWID;
CREATE TABLE dirents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent BLOB NOT NULL,
    name BLOB NOT NULL,
    child BLOB NOT NULL
);
CREATE UNIQUE INDEX dirents_by_name ON dirents (parent, name);
CREATE INDEX dirents_by_parent ON dirents (parent, id);
CREATE TABLE xattrs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle BLOB NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX xattrs_by_key ON xattrs (handle, key);
CREATE INDEX xattrs_by_handle ON xattrs (handle, id);
"""

# Column order of every object row the store reads: the first ten are Attr's.
_COLS = "type, mode, uid, gid, size, atime, mtime, ctime, nlink, target, parent"
_T, _MODE, _UID, _GID, _SIZE, _ATIME, _MTIME, _CTIME, _NLINK, _TARGET, _PARENT = range(11)

_SQL_GET = f"SELECT {_COLS} FROM objects WHERE handle = ?"
_SQL_ENTRY = "SELECT child FROM dirents WHERE parent = ? AND name = ?"
_SQL_LOOKUP = (
    f"SELECT d.child, {', '.join('o.' + c.strip() for c in _COLS.split(','))} "
    "FROM dirents d JOIN objects o ON o.handle = d.child WHERE d.parent = ? AND d.name = ?"
)
_SQL_INSERT_OBJECT = f"INSERT INTO objects (handle, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SQL_INSERT_ENTRY = "INSERT INTO dirents (parent, name, child) VALUES (?, ?, ?)"
_SQL_DELETE_ENTRY = "DELETE FROM dirents WHERE parent = ? AND name = ?"
_SQL_DELETE_OBJECT = "DELETE FROM objects WHERE handle = ?"
_SQL_DELETE_XATTRS = "DELETE FROM xattrs WHERE handle = ?"
_SQL_PARENT_DELTA = (
    "UPDATE objects SET size = size + ?, nlink = nlink + ?, mtime = ?, ctime = ? WHERE handle = ?"
)
_SQL_READDIR = "SELECT id, name, child FROM dirents WHERE parent = ? AND id > ? ORDER BY id LIMIT ?"
_SQL_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = ?"
_SQL_WROTE = "UPDATE objects SET size = max(size, ?), mtime = ?, ctime = ? WHERE handle = ?"
_SQL_RESIZE = "UPDATE objects SET size = ?, mtime = ?, ctime = ? WHERE handle = ?"
_SQL_XGET = "SELECT value FROM xattrs WHERE handle = ? AND key = ?"
_SQL_XLIST = "SELECT id, key FROM xattrs WHERE handle = ? AND id > ? ORDER BY id LIMIT ?"


def _err(code: int, message: str | None = None) -> StoreError:
    return StoreError(code, message or os.strerror(code))


def _as_bytes(value, err: int, what: str) -> bytes:
    """``value`` as bytes (memoryview and bytearray too), or StoreError ``err``."""
    if type(value) is bytes:
        return value
    try:
        return bytes(value)
    except TypeError:
        raise _err(err, f"{what} is not bytes") from None


def _handle(handle) -> bytes:
    """The handle as bytes; anything not 16 bytes names no object (ENOENT)."""
    handle = _as_bytes(handle, errno.ENOENT, "handle")
    if len(handle) != 16:
        raise _err(errno.ENOENT, f"handle of {len(handle)} bytes")
    return handle


def _name(name) -> bytes:
    """Check one directory-entry name: EINVAL (empty, '.', '..', '/', NUL), ENAMETOOLONG (> 255)."""
    name = _as_bytes(name, errno.EINVAL, "name")
    if not name:
        raise _err(errno.EINVAL, "empty name")
    if len(name) > NAME_MAX:
        raise _err(errno.ENAMETOOLONG, f"name of {len(name)} bytes (at most {NAME_MAX})")
    if b"/" in name or b"\0" in name:
        raise _err(errno.EINVAL, "name holds '/' or NUL")
    if name == b"." or name == b"..":
        raise _err(errno.EINVAL, f"name {name!r} is reserved")
    return name


def _xattr_key(key) -> bytes:
    """Check an xattr name: non-empty, no NUL, shorter than ORANGEFS_MAX_XATTR_NAMELEN (EINVAL)."""
    key = _as_bytes(key, errno.EINVAL, "xattr key")
    if not key or b"\0" in key:
        raise _err(errno.EINVAL, "xattr key empty or holding NUL")
    if len(key) >= ORANGEFS_MAX_XATTR_NAMELEN:
        raise _err(errno.EINVAL, f"xattr key of {len(key)} bytes (must be < {ORANGEFS_MAX_XATTR_NAMELEN})")
    return key


def _may(creds: Creds, row, want: int) -> bool:
    """POSIX permission classes: owner bits for the owner, else group bits for the group, else other."""
    uid = creds.uid
    if uid == 0:
        return True
    mode = row[_MODE]
    if uid == row[_UID]:
        bits = mode >> 6
    elif creds.gid == row[_GID]:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _sticky_ok(creds: Creds, dir_row, victim_row) -> bool:
    """In a sticky directory only the entry's owner, the directory's owner or root may unlink or rename."""
    if not dir_row[_MODE] & stat.S_ISVTX or creds.uid == 0:
        return True
    return creds.uid == victim_row[_UID] or creds.uid == dir_row[_UID]


def _id_to_token(rowid: int) -> int:
    # Tokens skip ITERATE_NEXT/END/START (2147483644..2147483646).
    return rowid if rowid < ORANGEFS_ITERATE_NEXT else rowid + 3


def _token_to_id(token: int) -> int | None:
    if token < ORANGEFS_ITERATE_NEXT:
        return token
    if token > ORANGEFS_ITERATE_START:
        return token - 3
    return None


def _sqlite_errno(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return errno.ENOSPC
    return errno.EIO


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EmbeddedStore:
    """A :class:`clientcore.store.api.Store` in one directory: SQLite metadata, striped data objects.

    Open with :meth:`open`; every method is safe to call from several threads.
    """

    fs_id: int
    root: bytes

    # --- opening, creating, closing ------------------------------------------------

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int, info: dict) -> None:
        # Use EmbeddedStore.open(); this only wires an already-checked store.
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._hlocks = [threading.Lock() for _ in range(_HANDLE_LOCKS)]
        self.fs_id = int(info["fs_id"])
        self.root = bytes(info["root"])
        self.targets = int(info["targets"])
        self.stripe_size = int(info["stripe_size"])
        self._target_dirs = [os.path.join(path, TARGETS_DIR, f"t{t}") for t in range(self.targets)]
        self._zeros = memoryview(bytes(self.stripe_size))
        # Files whose data objects are known to hold nothing beyond the size in metadata.
        self._tidy: set[bytes] = set()
        # handle -> targets whose data object was created since the file's last fsync.
        self._new_objects: dict[bytes, set[int]] = {}
        self._new_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        targets: int | None = 4,
        stripe_size: int | None = 65536,
        create: bool = True,
    ) -> "EmbeddedStore":
        """Open the store in directory ``path``, creating it on first use.

        Args:
            path: the store directory; created (with parents) if missing and ``create``.
            targets: number of target directories; must match an existing store
                (``None``: whatever the store has; 4 for a new one).
            stripe_size: bytes per stripe unit, a multiple of 4096; must match an
                existing store (``None``: whatever it has; 65536 for a new one).
            create: make a new store if ``path`` holds none.

        Raises:
            StoreError: EINVAL — ``path`` is not a pvfs2dev store (a file, or a
                non-empty directory without ours), its targets or stripe size
                differ, a target directory is missing, or the arguments are out of
                range; EPROTO — the store has a newer format; ENOENT — no store
                and not ``create``; EBUSY — another process has it open; or the
                errno of a failing system call.
        """
        path = os.path.abspath(os.fspath(path))
        for value, name, low, high in ((targets, "targets", 1, 1024), (stripe_size, "stripe_size", 4096, 2**30)):
            if value is not None and (type(value) is not int or not low <= value <= high):
                raise _err(errno.EINVAL, f"{name}={value!r} out of range [{low}, {high}]")
        if stripe_size is not None and stripe_size % 4096:
            raise _err(errno.EINVAL, f"stripe_size={stripe_size} is not a multiple of 4096")
        try:
            if os.path.lexists(path) and not os.path.isdir(path):
                raise _err(errno.EINVAL, f"not a pvfs2dev store: {path} is not a directory")
            db = os.path.join(path, DB_NAME)
            if not os.path.lexists(db):
                _check_creatable(path)  # refuses a foreign directory before writing anything
                if not create:
                    raise _err(errno.ENOENT, f"no pvfs2dev store at {path}")
                if not os.path.isdir(path):
                    os.makedirs(path)
                    _fsync_dir(os.path.dirname(path))
                lock_fd = _take_lock(path)
                try:
                    if not os.path.lexists(db):  # another process may have won the race
                        _check_creatable(path)
                        _create(path, targets or 4, stripe_size or 65536)
                except BaseException:
                    os.close(lock_fd)
                    raise
            else:
                _check_header(db)
                lock_fd = _take_lock(path)
            try:
                return cls._open_existing(path, lock_fd, targets, stripe_size)
            except BaseException:
                os.close(lock_fd)
                raise
        except StoreError:
            raise
        except sqlite3.Error as exc:
            raise _err(_sqlite_errno(exc), f"store {path}: {exc}") from exc
        except OSError as exc:
            raise _err(exc.errno or errno.EIO, f"store {path}: {exc.strerror or exc}") from exc

    @classmethod
    def _open_existing(cls, path: str, lock_fd: int, targets: int | None, stripe_size: int | None) -> "EmbeddedStore":
        db = os.path.join(path, DB_NAME)
        _check_header(db)
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, cached_statements=256)
        try:
            # Before the first read: in exclusive mode SQLite keeps the WAL index in
            # process memory (no -shm file, no shared-memory locking per transaction).
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > FORMAT_VERSION:
                raise _err(errno.EPROTO, f"store {path} has format {version}, newer than this pvfs2dev ({FORMAT_VERSION})")
            try:
                info = dict(conn.execute("SELECT key, value FROM store_info"))
            except sqlite3.DatabaseError:
                raise _err(errno.EINVAL, f"not a pvfs2dev store: {db} has no identity record") from None
            if info.get("magic") != STORE_MAGIC or version < 1:
                raise _err(errno.EINVAL, f"not a pvfs2dev store: {db} has magic {info.get('magic')!r}")
            if int(info.get("format", 0)) > FORMAT_VERSION:
                raise _err(errno.EPROTO, f"store {path} has format {info['format']}, newer than this pvfs2dev ({FORMAT_VERSION})")
            have = (int(info["targets"]), int(info["stripe_size"]))
            want = (targets if targets is not None else have[0], stripe_size if stripe_size is not None else have[1])
            if have != want:
                raise _err(
                    errno.EINVAL,
                    f"store {path} has targets={have[0]} stripe_size={have[1]}; asked for targets={want[0]} stripe_size={want[1]}",
                )
            for t in range(have[0]):
                if not os.path.isdir(os.path.join(path, TARGETS_DIR, f"t{t}")):
                    raise _err(errno.EINVAL, f"store {path} is missing its target directory targets/t{t}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise _err(errno.EIO, f"store {path}: cannot use WAL journal (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -16384")
            store = cls(path, conn, lock_fd, info)
            if not int(info.get("clean", 0)):
                store._recover()
            with store._lock:
                with store._txn() as c:
                    c.execute("UPDATE store_info SET value = 0 WHERE key = 'clean'")
                store._durable_commit_locked()
            return store
        except BaseException:
            conn.close()
            raise

    def _recover(self) -> None:
        """After an unclean stop: delete orphaned data objects, sync the target directories."""
        live = {h for (h,) in self._conn.execute("SELECT handle FROM objects WHERE type = ?", (_FILE,))}
        for tdir in self._target_dirs:
            with os.scandir(tdir) as it:
                for entry in it:
                    try:
                        handle = bytes.fromhex(entry.name)
                    except ValueError:
                        continue  # not a data object name: not ours to delete
                    if len(handle) == 16 and handle not in live:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
            _fsync_dir(tdir)

    def close(self) -> None:
        """Mark the store cleanly closed (durably), checkpoint the WAL, release the lock.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                # Data objects made since their file's last fsync: make their names durable
                # now, since after a restart nothing remembers they were never synced.
                with self._new_lock:
                    created = set().union(*self._new_objects.values()) if self._new_objects else set()
                    self._new_objects.clear()
                for t in sorted(created):
                    _fsync_dir(self._target_dirs[t])
                with self._txn() as c:
                    c.execute("UPDATE store_info SET value = 1 WHERE key = 'clean'")
                self._durable_commit_locked()
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()
                os.close(self._lock_fd)

    def __enter__(self) -> "EmbeddedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        """One metadata transaction; the caller holds ``self._lock``."""
        c = self._conn
        c.execute("BEGIN")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise _err(_sqlite_errno(exc), f"commit failed: {exc}") from exc

    def _durable_commit_locked(self) -> None:
        """Commit a one-row transaction with synchronous=FULL: syncs the WAL and so every earlier commit."""
        c = self._conn
        c.execute("PRAGMA synchronous = FULL")
        try:
            with self._txn():
                c.execute("UPDATE store_info SET value = value + 1 WHERE key = 'sync_seq'")
        finally:
            c.execute("PRAGMA synchronous = NORMAL")

    def _get(self, c: sqlite3.Connection, handle: bytes):
        row = c.execute(_SQL_GET, (handle,)).fetchone()
        if row is None:
            raise _err(errno.ENOENT, f"no object {handle.hex()}")
        return row

    def _get_dir(self, c: sqlite3.Connection, handle: bytes, creds: Creds, want: int):
        row = self._get(c, handle)
        if row[_T] != _DIR:
            raise _err(errno.ENOTDIR, f"{handle.hex()} is not a directory")
        if not _may(creds, row, want):
            raise _err(errno.EACCES, f"no permission on directory {handle.hex()}")
        return row

    def _attr(self, handle: bytes, row) -> Attr:
        return Attr(
            handle, _OBJTYPES[row[0]], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
            self.stripe_size,
        )

    def _new_handle(self, c: sqlite3.Connection) -> bytes:
        while True:
            handle = os.urandom(16)
            if any(handle) and c.execute("SELECT 1 FROM objects WHERE handle = ?", (handle,)).fetchone() is None:
                return handle

    def _hlock(self, handle: bytes) -> threading.Lock:
        return self._hlocks[hash(handle) % _HANDLE_LOCKS]

    # --- metadata operations --------------------------------------------------------

    def getattr(self, creds: Creds, handle: bytes) -> Attr:
        """Attributes of ``handle``.  Raises StoreError: ENOENT."""
        if type(handle) is not bytes or len(handle) != 16:
            handle = _handle(handle)
        with self._lock:
            row = self._conn.execute(_SQL_GET, (handle,)).fetchone()
        if row is None:
            raise _err(errno.ENOENT, f"no object {handle.hex()}")
        return Attr(
            handle, _OBJTYPES[row[0]], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
            self.stripe_size,
        )

    def lookup(self, creds: Creds, parent: bytes, name: bytes) -> Attr:
        """The object ``name`` in directory ``parent`` (symlinks not followed).

        Raises StoreError: EINVAL/ENAMETOOLONG (bad name), ENOENT (no parent or no
        entry), ENOTDIR (parent not a directory), EACCES (no search permission on parent).
        """
        name = _name(name)
        parent = _handle(parent)
        with self._lock:
            c = self._conn
            prow = c.execute(_SQL_GET, (parent,)).fetchone()
            if prow is None:
                raise _err(errno.ENOENT, f"no object {parent.hex()}")
            if prow[0] != _DIR:
                raise _err(errno.ENOTDIR, f"{parent.hex()} is not a directory")
            if not _may(creds, prow, _X):
                raise _err(errno.EACCES, f"no search permission on {parent.hex()}")
            row = c.execute(_SQL_LOOKUP, (parent, name)).fetchone()
        if row is None:
            raise _err(errno.ENOENT, f"no entry {name!r}")
        return Attr(
            row[0], _OBJTYPES[row[1]], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
            self.stripe_size,
        )

    def _make(self, creds: Creds, parent, name, objtype: int, mode: int, target: bytes = b"") -> Attr:
        name = _name(name)
        parent = _handle(parent)
        now = int(time.time())
        with self._lock, self._txn() as c:
            prow = self._get_dir(c, parent, creds, _X)
            if c.execute(_SQL_ENTRY, (parent, name)).fetchone() is not None:
                raise _err(errno.EEXIST, f"{name!r} exists")
            if not _may(creds, prow, _W | _X):
                raise _err(errno.EACCES, f"no write permission on directory {parent.hex()}")
            mode &= 0o7777
            gid = creds.gid
            if prow[_MODE] & stat.S_ISGID:
                # A set-group-ID directory hands its group down, and its set-gid bit to subdirectories.
                gid = prow[_GID]
                if objtype == _DIR:
                    mode |= stat.S_ISGID
                elif creds.uid != 0 and gid != creds.gid:
                    mode &= ~stat.S_ISGID
            handle = self._new_handle(c)
            nlink = 2 if objtype == _DIR else 1
            size = len(target)
            c.execute(
                _SQL_INSERT_OBJECT,
                (handle, objtype, mode, creds.uid, gid, size, now, now, now, nlink, target, parent),
            )
            c.execute(_SQL_INSERT_ENTRY, (parent, name, handle))
            c.execute(_SQL_PARENT_DELTA, (1, 1 if objtype == _DIR else 0, now, now, parent))
        if objtype == _FILE:
            self._tidy.add(handle)
        return Attr(handle, _OBJTYPES[objtype], mode, creds.uid, gid, size, now, now, now, nlink, target,
                    self.stripe_size)

    def create(self, creds: Creds, parent: bytes, name: bytes, mode: int) -> Attr:
        """A new empty regular file owned by the caller.

        Raises StoreError: EINVAL/ENAMETOOLONG (bad name), ENOENT, ENOTDIR, EACCES
        (no write+search on parent), EEXIST, ENOSPC.
        """
        return self._make(creds, parent, name, _FILE, mode)

    def mkdir(self, creds: Creds, parent: bytes, name: bytes, mode: int) -> Attr:
        """A new empty directory owned by the caller.  Raises StoreError: as :meth:`create`."""
        return self._make(creds, parent, name, _DIR, mode)

    def symlink(self, creds: Creds, parent: bytes, name: bytes, target: bytes) -> Attr:
        """A new symlink (mode 0777) to ``target``.

        Raises StoreError: as :meth:`create`; ENAMETOOLONG (target over 255 bytes),
        EINVAL (empty target or one holding NUL).
        """
        target = bytes(target)
        if len(target) > NAME_MAX:
            raise _err(errno.ENAMETOOLONG, f"symlink target of {len(target)} bytes (at most {NAME_MAX})")
        if not target or b"\0" in target:
            raise _err(errno.EINVAL, "symlink target empty or holding NUL")
        return self._make(creds, parent, name, _LINK, 0o777, target)

    def setattr(
        self,
        creds: Creds,
        handle: bytes,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        atime: int | None = None,
        mtime: int | None = None,
        ctime: int | None = None,
    ) -> Attr:
        """Change mode, owner, group or times; fields left None are kept; ctime becomes now.

        Values equal to the current ones need no permission.  Otherwise: mode — owner
        or root; uid — root (the owner may only "change" it to itself); gid — owner to
        the caller's own gid, or root; times — owner or root, or anyone with write
        permission when every time given is within :data:`NOW_WINDOW` of now.  A
        non-root chmod that sets set-gid on an object of another group drops it.

        Times are signed seconds since the epoch (negative before 1970).

        Raises StoreError: ENOENT, EPERM; EINVAL for a time outside 64 signed bits.
        """
        handle = _handle(handle)
        now = int(time.time())
        with self._lock, self._txn() as c:
            row = list(self._get(c, handle))
            owner = creds.uid == 0 or creds.uid == row[_UID]
            if uid is not None and uid != row[_UID]:
                if creds.uid != 0:
                    raise _err(errno.EPERM, "only root may give an object away")
                row[_UID] = uid
            if gid is not None and gid != row[_GID]:
                if creds.uid != 0 and (not owner or gid != creds.gid):
                    raise _err(errno.EPERM, "only the owner may change the group, and only to its own")
                row[_GID] = gid
            if mode is not None and (mode & 0o7777) != row[_MODE]:
                if not owner:
                    raise _err(errno.EPERM, "only the owner may change the mode")
                mode &= 0o7777
                if creds.uid != 0 and mode & stat.S_ISGID and row[_GID] != creds.gid and row[_T] != _DIR:
                    mode &= ~stat.S_ISGID  # as Linux's setattr_prepare: not in the group
                row[_MODE] = mode
            times = [(i, v) for i, v in ((_ATIME, atime), (_MTIME, mtime), (_CTIME, ctime)) if v is not None]
            if any(not _TIME_MIN <= v <= _TIME_MAX for _, v in times):
                raise _err(errno.EINVAL, "a time outside the signed 64-bit range")
            if times and not owner and any(v != row[i] for i, v in times):
                near = all(now - NOW_WINDOW[0] <= v <= now + NOW_WINDOW[1] for _, v in times)
                if not (near and _may(creds, row, _W)):
                    raise _err(errno.EPERM, "only the owner may set times other than now")
            for i, v in times:
                row[i] = v
            if ctime is None:
                row[_CTIME] = now
            c.execute(
                "UPDATE objects SET mode = ?, uid = ?, gid = ?, atime = ?, mtime = ?, ctime = ? WHERE handle = ?",
                (row[_MODE], row[_UID], row[_GID], row[_ATIME], row[_MTIME], row[_CTIME], handle),
            )
        return self._attr(handle, row)

    def _delete_object(self, c: sqlite3.Connection, handle: bytes) -> None:
        c.execute(_SQL_DELETE_OBJECT, (handle,))
        c.execute(_SQL_DELETE_XATTRS, (handle,))

    def remove(self, creds: Creds, parent: bytes, name: bytes) -> None:
        """Remove a file, symlink or empty directory (REMOVE serves unlink and rmdir).

        Raises StoreError: EINVAL/ENAMETOOLONG, ENOENT, ENOTDIR (parent), EACCES (no
        write+search on parent), EPERM (sticky parent, caller owns neither entry nor
        parent), ENOTEMPTY.
        """
        name = _name(name)
        parent = _handle(parent)
        now = int(time.time())
        with self._lock, self._txn() as c:
            prow = self._get_dir(c, parent, creds, _X)
            entry = c.execute(_SQL_ENTRY, (parent, name)).fetchone()
            if entry is None:
                raise _err(errno.ENOENT, f"no entry {name!r}")
            if not _may(creds, prow, _W | _X):
                raise _err(errno.EACCES, f"no write permission on directory {parent.hex()}")
            victim = entry[0]
            vrow = self._get(c, victim)
            if not _sticky_ok(creds, prow, vrow):
                raise _err(errno.EPERM, "sticky directory: not the owner")
            is_dir = vrow[_T] == _DIR
            if is_dir and vrow[_SIZE]:
                raise _err(errno.ENOTEMPTY, f"directory {name!r} is not empty")
            c.execute(_SQL_DELETE_ENTRY, (parent, name))
            self._delete_object(c, victim)
            c.execute(_SQL_PARENT_DELTA, (-1, -1 if is_dir else 0, now, now, parent))
        if vrow[_T] == _FILE:
            self._drop_data(victim)

    def rename(self, creds: Creds, old_parent: bytes, old_name: bytes, new_parent: bytes, new_name: bytes) -> None:
        """Move an entry, replacing an existing target as rename(2) does.

        Raises StoreError: EINVAL/ENAMETOOLONG (bad name), ENOENT, ENOTDIR (a parent
        is not a directory, or a directory would replace a non-directory), EISDIR (a
        non-directory would replace a directory), ENOTEMPTY (replaced directory not
        empty), EINVAL (a directory moved into itself), EACCES (no write+search on a
        parent), EPERM (sticky parent, not the owner).
        """
        old_name = _name(old_name)
        new_name = _name(new_name)
        op = _handle(old_parent)
        np = _handle(new_parent)
        now = int(time.time())
        victim = None
        with self._lock, self._txn() as c:
            oprow = self._get_dir(c, op, creds, _X)
            nprow = oprow if np == op else self._get_dir(c, np, creds, _X)
            entry = c.execute(_SQL_ENTRY, (op, old_name)).fetchone()
            if entry is None:
                raise _err(errno.ENOENT, f"no entry {old_name!r}")
            if not _may(creds, oprow, _W | _X) or not _may(creds, nprow, _W | _X):
                raise _err(errno.EACCES, "no write permission on a parent directory")
            src = entry[0]
            srow = self._get(c, src)
            if not _sticky_ok(creds, oprow, srow):
                raise _err(errno.EPERM, "sticky directory: not the owner of the source")
            dst_entry = c.execute(_SQL_ENTRY, (np, new_name)).fetchone()
            if dst_entry is not None and dst_entry[0] == src:
                return  # the same entry: nothing to do
            src_dir = srow[_T] == _DIR
            if src_dir and np != op:
                walk = np
                while walk is not None:  # is the new parent inside the directory being moved?
                    if walk == src:
                        raise _err(errno.EINVAL, "cannot move a directory into itself")
                    up = c.execute("SELECT parent FROM objects WHERE handle = ?", (walk,)).fetchone()
                    walk = up[0] if up else None
            delta = {op: [0, 0], np: [0, 0]}
            if dst_entry is not None:
                dst = dst_entry[0]
                drow = self._get(c, dst)
                dst_dir = drow[_T] == _DIR
                if src_dir and not dst_dir:
                    raise _err(errno.ENOTDIR, f"{new_name!r} is not a directory")
                if not src_dir and dst_dir:
                    raise _err(errno.EISDIR, f"{new_name!r} is a directory")
                if not _sticky_ok(creds, nprow, drow):
                    raise _err(errno.EPERM, "sticky directory: not the owner of the target")
                if dst_dir and drow[_SIZE]:
                    raise _err(errno.ENOTEMPTY, f"directory {new_name!r} is not empty")
                c.execute(_SQL_DELETE_ENTRY, (np, new_name))
                self._delete_object(c, dst)
                delta[np][0] -= 1
                delta[np][1] -= 1 if dst_dir else 0
                victim = (dst, drow[_T])
            c.execute(_SQL_DELETE_ENTRY, (op, old_name))
            c.execute(_SQL_INSERT_ENTRY, (np, new_name, src))
            c.execute("UPDATE objects SET parent = ?, ctime = ? WHERE handle = ?", (np, now, src))
            delta[op][0] -= 1
            delta[np][0] += 1
            if src_dir:
                delta[op][1] -= 1
                delta[np][1] += 1
            for h, (dsize, dlink) in delta.items():
                c.execute(_SQL_PARENT_DELTA, (dsize, dlink, now, now, h))
        if victim is not None and victim[1] == _FILE:
            self._drop_data(victim[0])

    def readdir(self, creds: Creds, handle: bytes, token: int, max_entries: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """Up to ``max_entries`` (at most 512) ``(name, handle)`` pairs after ``token``.

        Entries come in creation order (a renamed entry counts as new); ``next_token``
        is ORANGEFS_ITERATE_END after the last one.  Tokens are dirent ids, valid for
        any directory and across restarts.

        Raises StoreError: ENOENT, ENOTDIR, EACCES (no read permission), EINVAL (a token
        never given out, or ``max_entries`` < 1).
        """
        handle = _handle(handle)
        if type(max_entries) is not int or max_entries < 1:
            raise _err(errno.EINVAL, f"max_entries={max_entries!r}")
        limit = min(max_entries, ORANGEFS_MAX_DIRENT_COUNT_READDIR)
        with self._lock:
            c = self._conn
            self._get_dir(c, handle, creds, _R)
            after = self._cursor(c, "dirents", token)
            if after is None:
                return [], ORANGEFS_ITERATE_END
            rows = c.execute(_SQL_READDIR, (handle, after, limit + 1)).fetchall()
        if len(rows) > limit:
            del rows[limit:]
            next_token = _id_to_token(rows[-1][0])
        else:
            next_token = ORANGEFS_ITERATE_END
        return [(name, child) for _, name, child in rows], next_token

    def _cursor(self, c: sqlite3.Connection, table: str, token) -> int | None:
        """The row id a token continues after: 0 for START, None for END; EINVAL for anything never given."""
        if type(token) is not int:
            raise _err(errno.EINVAL, f"token {token!r}")
        if token == ORANGEFS_ITERATE_START:
            return 0
        if token == ORANGEFS_ITERATE_END:
            return None
        rowid = _token_to_id(token) if token > 0 else None
        if rowid is not None:
            seq = c.execute(_SQL_SEQ, (table,)).fetchone()
            if seq is not None and rowid <= seq[0]:
                return rowid
        raise _err(errno.EINVAL, f"token {token} was never given out")

    def statfs(self) -> StatFs:
        """Space of the filesystem holding the store, in stripe-size blocks; files from its inodes."""
        st = os.statvfs(self.path)
        bs = self.stripe_size
        if st.f_files:
            files_total, files_avail = st.f_files, st.f_favail
        else:  # filesystems without an inode count (btrfs, ...): one object per free block
            with self._lock:
                (used,) = self._conn.execute("SELECT count(*) FROM objects").fetchone()
            files_avail = st.f_bavail * st.f_frsize // bs
            files_total = used + files_avail
        return StatFs(bs, st.f_blocks * st.f_frsize // bs, st.f_bavail * st.f_frsize // bs, files_total, files_avail)

    # --- file data --------------------------------------------------------------------

    def _data_path(self, handle: bytes, t: int) -> str:
        return f"{self._target_dirs[t]}/{handle.hex()}"

    def _local_len(self, t: int, size: int) -> int:
        """Bytes of target ``t``'s data object that hold file bytes below ``size``."""
        stripe = self.stripe_size
        k, rem = divmod(size, stripe)
        rounds, r = divmod(k, self.targets)
        if t < r:
            return (rounds + 1) * stripe
        if t == r:
            return rounds * stripe + rem
        return rounds * stripe

    def _layout(self, offset: int, length: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """``(target, local offset, [(start, end) in the buffer, ...])`` per target touched.

        Each target's pieces are contiguous in its data object, so one vectored
        call per target moves them.
        """
        stripe = self.stripe_size
        n = self.targets
        end = offset + length
        k0 = offset // stripe
        k1 = (end - 1) // stripe
        out = []
        for first in range(k0, min(k0 + n, k1 + 1)):
            local = (first // n) * stripe + (offset - first * stripe if first == k0 else 0)
            spans = []
            for k in range(first, k1 + 1, n):
                a = k * stripe
                b = a + stripe
                spans.append(((a if a > offset else offset) - offset, (b if b < end else end) - offset))
            out.append((first % n, local, spans))
        return out

    def _open_data(self, handle: bytes, t: int) -> int:
        """Open target ``t``'s data object for writing, creating it if needed (and noting that)."""
        path = self._data_path(handle, t)
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        with self._new_lock:
            self._new_objects.setdefault(handle, set()).add(t)
        return fd

    def _trim(self, handle: bytes, size: int) -> None:
        """Cut every data object back to what file bytes below ``size`` need."""
        for t in range(self.targets):
            path = self._data_path(handle, t)
            try:
                have = os.stat(path).st_size
            except FileNotFoundError:
                continue
            keep = self._local_len(t, size)
            if have > keep:
                os.truncate(path, keep)

    def _drop_data(self, handle: bytes) -> None:
        """Delete a removed file's data objects (after the commit that removed its row)."""
        with self._hlock(handle):
            for t in range(self.targets):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._data_path(handle, t))
            self._tidy.discard(handle)
            with self._new_lock:
                self._new_objects.pop(handle, None)

    def _file_row(self, creds: Creds, handle: bytes, want: int):
        with self._lock:
            row = self._conn.execute(_SQL_GET, (handle,)).fetchone()
        if row is None:
            raise _err(errno.ENOENT, f"no object {handle.hex()}")
        if row[_T] != _FILE:
            if row[_T] == _DIR:
                raise _err(errno.EISDIR, f"{handle.hex()} is a directory")
            raise _err(errno.EINVAL, f"{handle.hex()} is not a regular file")
        if not _may(creds, row, want):
            raise _err(errno.EACCES, f"no {'write' if want == _W else 'read'} permission on {handle.hex()}")
        return row

    @staticmethod
    def _bytes_view(buffer, writable: bool) -> memoryview:
        mv = buffer if type(buffer) is memoryview else memoryview(buffer)
        if mv.format != "B" or mv.ndim != 1:
            if not mv.c_contiguous:
                raise _err(errno.EINVAL, "buffer is not contiguous")
            mv = mv.cast("B")
        if writable and mv.readonly:
            raise _err(errno.EINVAL, "read buffer is read-only")
        return mv

    def read(self, creds: Creds, handle: bytes, offset: int, buffer: memoryview) -> int:
        """Read file bytes at ``offset`` into ``buffer`` (preadv into slices of it, no copies).

        Returns the bytes read, short at end of file; holes read as zeros.

        Raises StoreError: ENOENT, EISDIR, EINVAL (negative offset, symlink, read-only
        or non-contiguous buffer), EACCES (no read permission), EIO.
        """
        handle = _handle(handle)
        mv = self._bytes_view(buffer, True)
        if type(offset) is not int or offset < 0:
            raise _err(errno.EINVAL, f"offset {offset!r}")
        row = self._file_row(creds, handle, _R)
        size = row[_SIZE]
        if offset >= size or not len(mv):
            return 0
        count = min(len(mv), size - offset)
        try:
            for t, local, spans in self._layout(offset, count):
                self._read_target(handle, t, local, mv, spans)
        except OSError as exc:
            raise _err(exc.errno or errno.EIO, f"reading {handle.hex()}: {exc.strerror}") from exc
        return count

    def _read_target(self, handle: bytes, t: int, local: int, mv: memoryview, spans) -> None:
        try:
            fd = os.open(self._data_path(handle, t), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            got = 0
        else:
            try:
                got = _preadv_all(fd, [mv[a:b] for a, b in spans], local)
            finally:
                os.close(fd)
        # Whatever the data object does not hold (it is shorter, or missing) is a hole.
        zeros = self._zeros
        for a, b in spans:
            if got >= b - a:
                got -= b - a
                continue
            a += got
            got = 0
            mv[a:b] = zeros[: b - a]

    def write(self, creds: Creds, handle: bytes, offset: int, data: memoryview) -> int:
        """Write ``data`` at ``offset`` (pwritev of slices of it), then commit size and mtime.

        Returns ``len(data)``.

        Raises StoreError: ENOENT, EISDIR, EINVAL (negative offset, symlink,
        non-contiguous data), EFBIG (past :data:`MAX_FILE_SIZE` or the filesystem's
        limit), ENOSPC, EACCES (no write permission), EIO.
        """
        handle = _handle(handle)
        mv = self._bytes_view(data, False)
        if type(offset) is not int or offset < 0:
            raise _err(errno.EINVAL, f"offset {offset!r}")
        count = len(mv)
        end = offset + count
        if end > MAX_FILE_SIZE:
            raise _err(errno.EFBIG, f"write ends at {end}, past {MAX_FILE_SIZE}")
        with self._hlock(handle):
            row = self._file_row(creds, handle, _W)
            if not count:
                return 0
            try:
                if end > row[_SIZE] and handle not in self._tidy:
                    self._trim(handle, row[_SIZE])
                    self._tidy.add(handle)
                for t, local, spans in self._layout(offset, count):
                    fd = self._open_data(handle, t)
                    try:
                        _pwritev_all(fd, [mv[a:b] for a, b in spans], local)
                    finally:
                        os.close(fd)
            except OSError as exc:
                # Some bytes past the size may have landed; trim before the next growth.
                self._tidy.discard(handle)
                code = exc.errno or errno.EIO
                raise _err(code, f"writing {handle.hex()}: {exc.strerror}") from exc
            now = int(time.time())
            with self._lock, self._txn() as c:
                c.execute(_SQL_WROTE, (end, now, now, handle))
        return count

    def truncate(self, creds: Creds, handle: bytes, size: int) -> None:
        """Set the file's size: shrinking frees the data beyond it, growing adds a hole.

        Raises StoreError: ENOENT, EISDIR, EINVAL (negative size, not a regular file),
        EFBIG, EACCES (no write permission), EIO.
        """
        handle = _handle(handle)
        if type(size) is not int or size < 0:
            raise _err(errno.EINVAL, f"size {size!r}")
        if size > MAX_FILE_SIZE:
            raise _err(errno.EFBIG, f"size {size} past {MAX_FILE_SIZE}")
        with self._hlock(handle):
            row = self._file_row(creds, handle, _W)
            old = row[_SIZE]
            now = int(time.time())
            try:
                if size > old and handle not in self._tidy:
                    self._trim(handle, old)  # bytes a crash left past the old size must not reappear
                    self._tidy.add(handle)
                with self._lock, self._txn() as c:
                    c.execute(_SQL_RESIZE, (size, now, now, handle))
                if size < old:
                    self._tidy.discard(handle)
                    self._trim(handle, size)
                    self._tidy.add(handle)
            except OSError as exc:
                raise _err(exc.errno or errno.EIO, f"truncating {handle.hex()}: {exc.strerror}") from exc

    def fsync(self, handle: bytes) -> None:
        """Make the file's data and all metadata committed so far durable before returning.

        Raises StoreError: ENOENT, EIO.
        """
        handle = _handle(handle)
        with self._lock:
            row = self._get(self._conn, handle)
        try:
            if row[_T] == _FILE:
                for t in range(self.targets):
                    try:
                        fd = os.open(self._data_path(handle, t), os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        continue
                    try:
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                with self._new_lock:
                    created = self._new_objects.pop(handle, ())
                for t in sorted(created):
                    _fsync_dir(self._target_dirs[t])
        except OSError as exc:
            raise _err(exc.errno or errno.EIO, f"syncing {handle.hex()}: {exc.strerror}") from exc
        with self._lock:
            try:
                self._durable_commit_locked()
            except sqlite3.Error as exc:
                raise _err(_sqlite_errno(exc), f"syncing metadata: {exc}") from exc

    # --- extended attributes ----------------------------------------------------------

    def getxattr(self, creds: Creds, handle: bytes, key: bytes) -> bytes:
        """The value of ``key``.

        Raises StoreError: ENOENT (no object, or no such attribute — the daemon reports
        ENODATA), EINVAL (bad key), EACCES (no read permission; ``system.*`` is readable by all).
        """
        handle = _handle(handle)
        key = _xattr_key(key)
        with self._lock:
            c = self._conn
            row = self._get(c, handle)
            if not key.startswith(b"system.") and not _may(creds, row, _R):
                raise _err(errno.EACCES, f"no read permission on {handle.hex()}")
            value = c.execute(_SQL_XGET, (handle, key)).fetchone()
        if value is None:
            raise _err(errno.ENOENT, f"no attribute {key!r}")
        return value[0]

    def _may_set_xattr(self, creds: Creds, row, key: bytes) -> None:
        if creds.uid == 0:
            return
        if key.startswith(b"trusted."):
            raise _err(errno.EPERM, "trusted.* attributes need root")
        if creds.uid == row[_UID]:
            return
        if key.startswith(b"system.") or not _may(creds, row, _W):
            raise _err(errno.EPERM, "only the owner, or a writer for user attributes, may change attributes")

    def setxattr(self, creds: Creds, handle: bytes, key: bytes, value: bytes, flags: int) -> None:
        """Set ``key`` to ``value``; XattrFlags.CREATE: must not exist, REPLACE: must exist.

        Who may: root; the owner (not ``trusted.*``); anyone with write permission
        for other namespaces than ``system.*`` and ``trusted.*``.

        Raises StoreError: ENOENT (no object; REPLACE of a missing key), EEXIST (CREATE of
        an existing key), EINVAL (key of 256 bytes or more, value over 8192 bytes, unknown
        or contradictory flags), EPERM.
        """
        handle = _handle(handle)
        key = _xattr_key(key)
        value = bytes(value)
        if len(value) > ORANGEFS_MAX_XATTR_VALUELEN:
            raise _err(errno.EINVAL, f"xattr value of {len(value)} bytes (at most {ORANGEFS_MAX_XATTR_VALUELEN})")
        flags = int(flags)
        create, replace = int(XattrFlags.CREATE), int(XattrFlags.REPLACE)
        if flags & ~(create | replace) or flags == create | replace:
            raise _err(errno.EINVAL, f"xattr flags {flags:#x}")
        now = int(time.time())
        with self._lock, self._txn() as c:
            row = self._get(c, handle)
            self._may_set_xattr(creds, row, key)
            have = c.execute("SELECT id FROM xattrs WHERE handle = ? AND key = ?", (handle, key)).fetchone()
            if have is not None:
                if flags & create:
                    raise _err(errno.EEXIST, f"attribute {key!r} exists")
                c.execute("UPDATE xattrs SET value = ? WHERE id = ?", (value, have[0]))
            else:
                if flags & replace:
                    raise _err(errno.ENOENT, f"no attribute {key!r}")
                c.execute("INSERT INTO xattrs (handle, key, value) VALUES (?, ?, ?)", (handle, key, value))
            c.execute("UPDATE objects SET ctime = ? WHERE handle = ?", (now, handle))

    def listxattr(self, creds: Creds, handle: bytes, token: int, count: int) -> tuple[list[bytes], int]:
        """Up to ``count`` (at most 16) keys after ``token``; ORANGEFS_ITERATE_END after the last.

        ``count`` 0 returns no keys and ``token`` unchanged (the kernel's size probe
        wants the total: call with 16 until ITERATE_END).

        Raises StoreError: ENOENT, EINVAL (a token never given out, negative count).
        """
        handle = _handle(handle)
        if type(count) is not int or count < 0:
            raise _err(errno.EINVAL, f"count={count!r}")
        limit = min(count, ORANGEFS_MAX_XATTR_LISTLEN)
        with self._lock:
            c = self._conn
            self._get(c, handle)
            after = self._cursor(c, "xattrs", token)
            if after is None:
                return [], ORANGEFS_ITERATE_END
            if not limit:
                return [], token
            rows = c.execute(_SQL_XLIST, (handle, after, limit + 1)).fetchall()
        if len(rows) > limit:
            del rows[limit:]
            next_token = _id_to_token(rows[-1][0])
        else:
            next_token = ORANGEFS_ITERATE_END
        return [key for _, key in rows], next_token

    def removexattr(self, creds: Creds, handle: bytes, key: bytes) -> None:
        """Remove ``key``.  Raises StoreError: ENOENT (no object or no such key), EINVAL, EPERM."""
        handle = _handle(handle)
        key = _xattr_key(key)
        now = int(time.time())
        with self._lock, self._txn() as c:
            row = self._get(c, handle)
            self._may_set_xattr(creds, row, key)
            if not c.execute("DELETE FROM xattrs WHERE handle = ? AND key = ?", (handle, key)).rowcount:
                raise _err(errno.ENOENT, f"no attribute {key!r}")
            c.execute("UPDATE objects SET ctime = ? WHERE handle = ?", (now, handle))


# --- vectored I/O ---------------------------------------------------------------------


def _pwritev_all(fd: int, bufs: list[memoryview], offset: int) -> None:
    """pwritev until every byte is written (regular files rarely write short)."""
    while bufs:
        chunk = bufs[:_IOV_MAX]
        want = sum(len(b) for b in chunk)
        done = os.pwritev(fd, chunk, offset)
        offset += done
        if done == want:
            del bufs[: len(chunk)]
            continue
        while done >= len(bufs[0]):
            done -= len(bufs.pop(0))
        bufs[0] = bufs[0][done:]


def _preadv_all(fd: int, bufs: list[memoryview], offset: int) -> int:
    """preadv until the buffers are full or end of file; returns the bytes read."""
    total = 0
    while bufs:
        chunk = bufs[:_IOV_MAX]
        want = sum(len(b) for b in chunk)
        got = os.preadv(fd, chunk, offset)
        if got == 0:
            break
        total += got
        offset += got
        if got == want:
            del bufs[: len(chunk)]
            continue
        while got >= len(bufs[0]):
            got -= len(bufs.pop(0))
        bufs[0] = bufs[0][got:]
    return total


# --- creating and recognising store directories ------------------------------------


def _check_header(db: str) -> None:
    """Refuse (EINVAL) a meta.db that is not an SQLite database with our application id."""
    try:
        with open(db, "rb") as f:
            head = f.read(100)
    except IsADirectoryError:
        raise _err(errno.EINVAL, f"not a pvfs2dev store: {db} is a directory") from None
    if len(head) < 100 or not head.startswith(_SQLITE_HEADER):
        raise _err(errno.EINVAL, f"not a pvfs2dev store: {db} is not an SQLite database")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != APPLICATION_ID:
        raise _err(errno.EINVAL, f"not a pvfs2dev store: {db} has application id {app_id:#x}")


def _check_creatable(path: str) -> None:
    """Refuse (EINVAL) to create a store in a directory holding anything but our own leftovers."""
    if not os.path.isdir(path):
        return
    entries = set(os.listdir(path))
    stray = entries - _CREATION_LEFTOVERS
    if stray:
        raise _err(
            errno.EINVAL, f"not a pvfs2dev store: {path} is not empty and has no {DB_NAME} (holds {sorted(stray)[0]!r})"
        )
    tdir = os.path.join(path, TARGETS_DIR)
    if TARGETS_DIR in entries:
        if not os.path.isdir(tdir):
            raise _err(errno.EINVAL, f"not a pvfs2dev store: {tdir} is not a directory")
        for name in os.listdir(tdir):
            sub = os.path.join(tdir, name)
            if not (name[:1] == "t" and name[1:].isdigit() and os.path.isdir(sub) and not os.listdir(sub)):
                raise _err(errno.EINVAL, f"not a pvfs2dev store: {tdir} holds {name!r}")


def _take_lock(path: str) -> int:
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _err(errno.EBUSY, f"store {path} is in use by another process") from None
    return fd


def _create(path: str, targets: int, stripe_size: int) -> None:
    """Build a new store: targets first, then meta.db.new, renamed to meta.db as the commit point."""
    for leftover in (DB_NEW, DB_NEW + "-journal", DB_NEW + "-wal", DB_NEW + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, leftover))
    tdir = os.path.join(path, TARGETS_DIR)
    if os.path.isdir(tdir):
        for name in os.listdir(tdir):
            os.rmdir(os.path.join(tdir, name))  # _check_creatable saw only empty t<N> directories
    os.makedirs(tdir, exist_ok=True)
    for t in range(targets):
        os.mkdir(os.path.join(tdir, f"t{t}"))
        _fsync_dir(os.path.join(tdir, f"t{t}"))
    _fsync_dir(tdir)
    _fsync_dir(path)

    new = os.path.join(path, DB_NEW)
    conn = sqlite3.connect(new, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        root = os.urandom(16)
        now = int(time.time())
        info = {
            "magic": STORE_MAGIC,
            "format": FORMAT_VERSION,
            "fs_id": secrets.randbelow(2**31 - 2) + 1,  # a positive __s32; 0 fails the mount
            "root": root,
            "targets": targets,
            "stripe_size": stripe_size,
            "created": now,
            "clean": 1,
            "sync_seq": 0,
        }
        conn.executemany("INSERT INTO store_info (key, value) VALUES (?, ?)", info.items())
        # The root: world-writable with the sticky bit, as the kernel shows OrangeFS's root (spec §2.6).
        conn.execute(
            _SQL_INSERT_OBJECT,
            (root, _DIR, 0o1777, 0, 0, 0, now, now, now, 2, b"", None),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    fd = os.open(new, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(new, os.path.join(path, DB_NAME))
    _fsync_dir(path)
