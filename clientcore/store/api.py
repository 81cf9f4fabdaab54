"""What the client-core needs from a store: the interface every store implements.

The daemon decodes an upcall, calls one method here with the caller's
credentials, and encodes the answer; a store never sees wire formats.  Every
method raises only :class:`StoreError` (an OSError whose errno the daemon
encodes into the downcall status), and checks permissions as an OrangeFS
server would: owner-only chmod/chown, write+search on a directory to create or
remove in it, the sticky bit, search on every directory walked; uid 0 passes
every check.

Handles are 16 bytes (the kernel's khandle) and stay valid across restarts;
so does ``fs_id``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from pvfs2proto import ObjType


class StoreError(OSError):
    """A store operation failed; ``.errno`` says why (ENOENT, EACCES, ENOTEMPTY, ...)."""


@dataclasses.dataclass(frozen=True)
class Creds:
    """Who is asking: the uid and gid the kernel put in the upcall."""

    uid: int
    gid: int


ROOT = Creds(0, 0)


@dataclasses.dataclass
class Attr:
    """One object's attributes, as GETATTR reports them."""

    handle: bytes  # 16 bytes
    objtype: ObjType  # METAFILE, DIRECTORY or SYMLINK
    mode: int  # permission bits incl. set-id and sticky (0o7777)
    uid: int
    gid: int
    size: int  # bytes for files, target length for symlinks, entries for directories
    atime: int  # seconds
    mtime: int
    ctime: int
    nlink: int
    target: bytes = b""  # symlink target
    blksize: int = 65536


@dataclasses.dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks_total: int
    blocks_avail: int
    files_total: int
    files_avail: int


#: readdir / listxattr tokens: the kernel starts at ORANGEFS_ITERATE_START and
#: stops at ORANGEFS_ITERATE_END; anything in between is the store's own cursor.


class Store(Protocol):
    """The operations the client-core serves (spec §4.13), by the store's own names.

    Errnos each method may raise are listed; others are bugs.
    """

    fs_id: int
    root: bytes

    def close(self) -> None: ...

    def getattr(self, creds: Creds, handle: bytes) -> Attr:
        """ENOENT (no such handle)."""

    def lookup(self, creds: Creds, parent: bytes, name: bytes) -> Attr:
        """ENOENT, ENOTDIR, EACCES (no search on parent), ENAMETOOLONG, EINVAL (empty, '/', NUL)."""

    def create(self, creds: Creds, parent: bytes, name: bytes, mode: int) -> Attr:
        """EEXIST, ENOENT, ENOTDIR, EACCES, ENAMETOOLONG, EINVAL, ENOSPC."""

    def mkdir(self, creds: Creds, parent: bytes, name: bytes, mode: int) -> Attr:
        """As create."""

    def symlink(self, creds: Creds, parent: bytes, name: bytes, target: bytes) -> Attr:
        """As create; ENAMETOOLONG for a target over 255 bytes."""

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
        """ENOENT, EPERM (chmod/chown by a non-owner, chown to another uid by non-root)."""

    def remove(self, creds: Creds, parent: bytes, name: bytes) -> None:
        """ENOENT, ENOTDIR, ENOTEMPTY, EACCES, EPERM (sticky directory, not the owner)."""

    def rename(self, creds: Creds, old_parent: bytes, old_name: bytes, new_parent: bytes, new_name: bytes) -> None:
        """Replaces an existing target like rename(2): ENOENT, ENOTDIR, EISDIR, ENOTEMPTY,
        EINVAL (a directory into itself), EACCES, EPERM (sticky)."""

    def readdir(self, creds: Creds, handle: bytes, token: int, max_entries: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """``(entries, next_token)`` with at most ``max_entries`` (name, handle) pairs,
        without "." and ".."; ``next_token`` is ORANGEFS_ITERATE_END after the last.
        ENOENT, ENOTDIR, EACCES (no read), EINVAL (a token it never gave)."""

    def statfs(self) -> StatFs: ...

    def truncate(self, creds: Creds, handle: bytes, size: int) -> None:
        """ENOENT, EISDIR, EINVAL (negative), EFBIG, EACCES."""

    def read(self, creds: Creds, handle: bytes, offset: int, buffer: memoryview) -> int:
        """Read into ``buffer`` (a slot of the shared buffer) without an intermediate copy;
        returns the bytes read, short at end of file.  ENOENT, EISDIR, EINVAL, EACCES."""

    def write(self, creds: Creds, handle: bytes, offset: int, data: memoryview) -> int:
        """Write ``data`` (from the shared buffer) at ``offset``; returns len(data).
        ENOENT, EISDIR, EINVAL, EFBIG, ENOSPC, EACCES."""

    def fsync(self, handle: bytes) -> None:
        """Make the file's data and metadata durable before returning.  ENOENT."""

    def getxattr(self, creds: Creds, handle: bytes, key: bytes) -> bytes:
        """ENOENT (no such attribute — the kernel turns it into ENODATA), EINVAL, EACCES."""

    def setxattr(self, creds: Creds, handle: bytes, key: bytes, value: bytes, flags: int) -> None:
        """flags: XattrFlags.CREATE / REPLACE.  EEXIST, ENOENT, EINVAL (key ≥ 256, value > 8192), EPERM."""

    def listxattr(self, creds: Creds, handle: bytes, token: int, count: int) -> tuple[list[bytes], int]:
        """``(keys, next_token)``, at most ``count`` keys; ORANGEFS_ITERATE_END after the last."""

    def removexattr(self, creds: Creds, handle: bytes, key: bytes) -> None:
        """ENOENT, EPERM."""
