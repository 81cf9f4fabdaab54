"""The FUSE front end: a real mount whose VFS calls become the kernel's upcalls (spec §4.13–§4.14).

pyfuse3 runs on trio, so the session runs in the broker's own event loop, as
one task of the server's nursery.  Each FUSE request is handled the way the
OrangeFS kernel module's VFS glue handles the same system call: it builds the
upcalls the kernel would send and submits each through
:func:`pvfs2dev.vfs.perform` — the same ``service_operation`` path, slot
handling and FILE_IO chunking every other caller gets — with a
:class:`~pvfs2dev.vfs.Call` carrying the FUSE request's uid, gid and pid.

Theory of operation
-------------------

*Inodes.*  FUSE names objects by 64-bit inode numbers, OrangeFS by
(fs_id, khandle).  :class:`InodeTable` maps one to the other; the root is
``pyfuse3.ROOT_INODE``.  A new khandle takes ``khandle_to_ino`` (the number the
kernel would show) when that number is free, else the next spare one.  Every
entry handed to FUSE (lookup, create, mkdir, symlink, and each readdirplus
entry) adds one to the inode's lookup count, ``forget`` takes it away, and the
mapping lives exactly as long as the count is above zero, so numbers are
stable while FUSE knows them.

*Caching.*  FUSE's attribute and entry timeouts are the kernel's
``getattr_timeout_msecs`` and ``dcache_timeout_msecs`` (read at every reply,
so ``pvfs2ctl params`` changes take effect at once).  ENOENT on lookup is a
negative entry with the dcache timeout.

*Directories.*  pyfuse3 always asks for readdirplus, and FUSE needs valid
attributes for every entry it links, so each entry READDIR returns gets a
GETATTR (several in flight) — what ``ls -l`` costs on the kernel module.  The
listing is read lazily: READDIR from ITERATE_START, one batch at a time, until
the reply's token is ITERATE_END; a later readdir call resumes at its offset
(the index into the entries read so far, "." and ".." first).

*Data.*  The front end holds file data as the kernel's page cache would
(:class:`FileData`, per khandle, while the file is open).  Writes (FUSE sends
up to 1 MiB each) are gathered into one contiguous range of at most one slot,
written by one gid; a full range goes out as a FILE_IO in the background while
the next fills (two in flight at most, never overlapping), and anything that
needs the data or the size — read, GETATTR, truncate, flush, fsync, release,
unmount, and a SETATTR of the mtime — first waits for every write of the file.
A failed write is reported at the next write, flush (close) or fsync, as
writeback errors are.  Reads that go on sequentially fetch 4 MiB ahead (the
kernel's readahead size) and are served from that window until a write or
truncate changes the file; other reads fetch what was asked.  FILE_IO travels
with uid 0 and the caller's gid, as the kernel sends I/O on a file opened for
it; ``perform`` splits anything larger than a slot.

*Errors.*  Every handler answers ``FUSEError(errno)``: the reply's errno, or
the kernel's own check made before any upcall (ENAMETOOLONG, rename flags →
EINVAL, getxattr on a symlink → EOPNOTSUPP, the POSIX ACL xattrs on a mount
without ``-o acl`` → EOPNOTSUPP).  Anything else escaping a handler would end
the whole session, so it is logged and answered EIO.

*Mount and unmount.*  :meth:`FuseMount.run` sends FS_MOUNT (``perform`` runs
it as mount(2): FS_MOUNT, GETATTR of the root, FEATURES), retrying until a
client-core answers, then mounts FUSE and serves.  :meth:`FuseMount.stop`
ends the session, unmounts (``pyfuse3.close(unmount=True)``: a lazy detach as
root, so no stale mount is left) and sends FS_UMOUNT.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import logging
import os
import stat
import struct
from pathlib import Path
from typing import Iterable

import pyfuse3
import trio

import pvfs2proto as proto
from pvfs2proto import AttrMask, IoType, ObjType, OpCode
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_START,
    ORANGEFS_LOOKUP_LINK_NO_FOLLOW,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
    ORANGEFS_MAX_SERVER_ADDR_LEN,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_MAX_XATTR_NAMELEN,
    ORANGEFS_MAX_XATTR_VALUELEN,
    ORANGEFS_NAME_MAX,
)
from pvfs2proto.downcall import listxattr_keys
from pvfs2proto.structs import khandle_to_ino, mode_to_perms, perms_to_mode, time_from_wire, time_to_wire

from .broker import Broker
from .mounts import DEFAULT_FSNAME
from .vfs import Call, Result, perform

log = logging.getLogger("pvfs2dev.fuse")

#: The widest st_*time_ns pyfuse3 takes (a signed 64-bit count of nanoseconds: about 1678 to 2262).
_NS_LIMIT = (1 << 63) - 1


def _ns(wire_time: int) -> int:
    """A sys_attr time (u64 on the wire, time64_t meant) in nanoseconds, clamped to what a stat can hold."""
    return max(-_NS_LIMIT, min(_NS_LIMIT, time_from_wire(wire_time) * 1_000_000_000))

#: Longest name (bytes) a lookup, create or rename takes; longer → ENAMETOOLONG.
NAME_MAX = ORANGEFS_NAME_MAX - 1
#: listxattr hides these keys (spec §4.14).
HIDDEN_XATTR_PREFIX = b"system.pvfs2."
#: The POSIX ACL xattrs: the VFS answers them itself (EOPNOTSUPP on a mount without ``-o acl``).
POSIX_ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
#: GETATTRs in flight while a readdirplus fills its entries.
GETATTR_WINDOW = 32
#: Read ahead when reading on sequentially (the kernel expands readahead to 4 MiB).
READAHEAD_BYTES = 4 * 1024 * 1024
#: FILE_IO writes a sequential writer keeps in flight.
WRITEBACK_DEPTH = 2
#: Read-ahead windows kept per file.
READAHEAD_WINDOWS = 2
#: How long a stopping session may take to answer its last requests and write back.
STOP_GRACE_SECS = 5.0
#: Seconds between FS_MOUNT attempts while no client-core answers.
MOUNT_RETRY_SECS = 1.0

_IFMT = {ObjType.METAFILE: stat.S_IFREG, ObjType.DIRECTORY: stat.S_IFDIR, ObjType.SYMLINK: stat.S_IFLNK}
_AMT = struct.Struct("<q")
_AMT_AT = 24  # resp.io.amt_complete in a FILE_IO downcall


def _fail(err: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(err)


def handler(fn):
    """Make ``fn`` answer only FUSEError: anything else is logged and becomes EIO.

    Any other exception leaving a pyfuse3 handler ends the session and leaves a
    dead mount ("Transport endpoint is not connected").
    """

    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("FUSE %s%r failed", fn.__name__, args[:2])
            raise _fail(errno.EIO) from None

    return wrapper


def check_name(name: bytes) -> None:
    """The lookup's own check: a name over 255 bytes is ENAMETOOLONG, before any upcall."""
    if len(name) > NAME_MAX:
        raise _fail(errno.ENAMETOOLONG)


# -- inodes -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Inode:
    """What the front end knows of one object FUSE holds a number for."""

    ino: int
    khandle: bytes
    lookups: int = 0
    objtype: int = 0
    link_target: bytes = b""


class InodeTable:
    """FUSE inode numbers ⇄ khandles, kept while FUSE's lookup count is above zero."""

    #: Numbers handed out when ``khandle_to_ino`` is taken (or 0/1): the top half.
    SPARE_BASE = 1 << 63

    def __init__(self, root_khandle: bytes) -> None:
        self.root = Inode(pyfuse3.ROOT_INODE, root_khandle, lookups=1, objtype=ObjType.DIRECTORY)
        self.by_ino: dict[int, Inode] = {self.root.ino: self.root}
        self.by_khandle: dict[bytes, Inode] = {root_khandle: self.root}
        self._spare = itertools.count(self.SPARE_BASE)

    def __len__(self) -> int:
        return len(self.by_ino)

    def get(self, ino: int) -> Inode:
        """The inode FUSE calls ``ino``; ESTALE if FUSE forgot it (it never should)."""
        node = self.by_ino.get(ino)
        if node is None:
            raise _fail(errno.ESTALE)
        return node

    def number_for(self, khandle: bytes) -> int:
        """The number ``khandle`` has, or would get now (readdir's d_ino before any lookup)."""
        node = self.by_khandle.get(khandle)
        if node is not None:
            return node.ino
        hint = khandle_to_ino(khandle)
        if hint > pyfuse3.ROOT_INODE and hint not in self.by_ino:
            return hint
        return -1

    def add(self, khandle: bytes, objtype: int) -> Inode:
        """Count one more lookup of ``khandle`` (creating its mapping if new)."""
        node = self.by_khandle.get(khandle)
        if node is None:
            ino = self.number_for(khandle)
            while ino < 0 or ino in self.by_ino:
                ino = next(self._spare)
            node = Inode(ino, khandle)
            self.by_ino[ino] = node
            self.by_khandle[khandle] = node
        node.lookups += 1
        node.objtype = objtype
        return node

    def forget(self, ino: int, count: int) -> None:
        node = self.by_ino.get(ino)
        if node is None or node is self.root:
            return
        node.lookups -= count
        if node.lookups <= 0:
            del self.by_ino[ino]
            if self.by_khandle.get(node.khandle) is node:
                del self.by_khandle[node.khandle]


# -- open files and directories ----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class OpenFile:
    node: Inode
    flags: int
    uid: int
    gid: int
    pid: int


@dataclasses.dataclass(eq=False)
class OpenDir:
    node: Inode
    parent_ino: int
    uid: int
    gid: int
    pid: int
    #: (name, khandle) in READDIR order, as far as read.
    entries: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    token: int = ORANGEFS_ITERATE_START
    done: bool = False
    #: Attributes fetched for entries not handed out yet (entry index → Attrs, None if gone).
    attrs: dict[int, "Attrs | None"] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Attrs:
    """One GETATTR reply."""

    sys: object  # the decoded ORANGEFS_sys_attr_s
    link_target: bytes


@dataclasses.dataclass(eq=False)
class Window:
    """File data read ahead: ``data`` is the file from ``start``; ``eof``: the file ended inside it."""

    start: int
    data: bytes
    eof: bool

    @property
    def end(self) -> int:
        return self.start + len(self.data)


@dataclasses.dataclass(eq=False)
class FileData:
    """One file's data held in the front end, as the kernel's page cache holds it.

    ``dirty`` is written data not sent yet: one contiguous range from
    ``dirty_start``, written by ``dirty_gid``, at most one slot (writeback groups
    contiguous dirty pages of the same uid/gid up to one slot, spec §4.13).
    ``windows`` is data read ahead; ``generation`` changes whenever the file's
    data changes here, so a read that started before a write never installs
    what it read.  ``error`` is a failed writeback, reported at the next
    write, flush or fsync, as the kernel reports writeback errors.
    """

    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)
    dirty: bytearray | None = None
    dirty_start: int = 0
    dirty_gid: int = 0
    dirty_pid: int = 0
    windows: list[Window] = dataclasses.field(default_factory=list)
    #: Reads in flight: (start, end, done).
    fetching: list[tuple[int, int, trio.Event]] = dataclasses.field(default_factory=list)
    generation: int = 0
    last_end: int = -1
    error: int = 0
    opens: int = 0
    #: Where the last range sent ends.
    sent_end: int = -1
    #: Writebacks in flight, oldest first.
    inflight: list[trio.Event] = dataclasses.field(default_factory=list)

    @property
    def dirty_end(self) -> int:
        return self.dirty_start + len(self.dirty or b"")

    def invalidate(self) -> None:
        self.windows.clear()
        self.generation += 1

    def cached(self, off: int, size: int) -> bytes | None:
        """The bytes at ``off`` if a window holds all of them (or holds up to the end of the file)."""
        for w in self.windows:
            if w.start <= off < w.end or (w.eof and off == w.end):
                piece = w.data[off - w.start : off - w.start + size]
                if len(piece) == size or w.eof:
                    return piece
        return None


# -- the operations ------------------------------------------------------------------------------------------


class Operations(pyfuse3.Operations):
    """The kernel's VFS glue for one mounted filesystem, as pyfuse3 request handlers."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, front: "FuseMount") -> None:
        super().__init__()
        self.front = front
        self.broker: Broker = front.broker
        self.fs_id = 0
        self.mount_id = 0
        self.inodes = InodeTable(bytes(16))
        self.files: dict[int, OpenFile | OpenDir] = {}
        self._fh = itertools.count(1)
        #: Calls in flight (for shutdown: they are interrupted as the processes are killed).
        self.calls: set[Call] = set()
        #: khandle → the file's dirty and read-ahead data.
        self.data: dict[bytes, FileData] = {}
        #: Where background writebacks run (the session's; None: they run inline).
        self.nursery: trio.Nursery | None = None

    def mounted(self, fs_id: int, mount_id: int, root_khandle: bytes) -> None:
        self.fs_id, self.mount_id = fs_id, mount_id
        self.inodes = InodeTable(root_khandle)

    # -- plumbing -------------------------------------------------------------------------------------

    @property
    def _attr_timeout(self) -> float:
        return self.broker.kernel.params.get("getattr_timeout_msecs", 0) / 1000.0

    @property
    def _entry_timeout(self) -> float:
        return self.broker.kernel.params.get("dcache_timeout_msecs", 0) / 1000.0

    def _call(self, uid: int, gid: int, pid: int, flags: int = 0) -> Call:
        return Call(self.broker, uid=uid, gid=gid, pid=pid, tgid=pid, flags=flags)

    def _ctx_call(self, ctx, flags: int = 0) -> Call:
        return self._call(ctx.uid, ctx.gid, ctx.pid, flags)

    def _refn(self, node: Inode) -> dict:
        return {"khandle": node.khandle, "fs_id": self.fs_id}

    async def _perform(self, call: Call, upcall: bytes, data: bytes | memoryview = b"") -> Result:
        self.calls.add(call)
        try:
            return await perform(call, upcall, data)
        finally:
            self.calls.discard(call)

    async def _op(self, call: Call, op: OpCode, member: str, req: dict):
        """One upcall; the downcall decoded as ``op``'s.  Raises FUSEError with the reply's errno."""
        result = await self._perform(call, proto.encode_upcall({"type": op, "req": {member: req}}))
        if result.release is not None:
            result.release()
        if result.result < 0:
            raise _fail(-result.result)
        return proto.decode_downcall(result.downcall, op)

    async def _getattr(self, call: Call, khandle: bytes, mask: int = AttrMask.ALL_NOHINT) -> Attrs:
        data = self.data.get(khandle)
        if data is not None and (data.dirty or data.inflight):
            # The size GETATTR reports must include what was written.
            await self._writeback(data, khandle)
        down = await self._op(call, OpCode.GETATTR, "getattr",
                              {"refn": {"khandle": khandle, "fs_id": self.fs_id}, "mask": int(mask)})
        attrs = down.resp.getattr.attributes
        if attrs.objtype not in _IFMT:
            # orangefs_inode_getattr: any other type makes the inode bad.
            raise _fail(errno.ESTALE)
        return Attrs(attrs, bytes(down.resp.getattr.link_target))

    def _entry(self, node: Inode, attrs: Attrs) -> pyfuse3.EntryAttributes:
        """FUSE attributes as ``orangefs_inode_getattr`` fills the inode."""
        a = attrs.sys
        node.objtype = a.objtype
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = node.ino
        entry.generation = 0
        entry.entry_timeout = self._entry_timeout
        entry.attr_timeout = self._attr_timeout
        mode = _IFMT[a.objtype] | perms_to_mode(a.perms)
        if node.ino == pyfuse3.ROOT_INODE:
            # The kernel shows the root directory with the sticky bit (spec §2.6).
            mode |= stat.S_ISVTX
        entry.st_mode = mode
        entry.st_nlink = 1
        entry.st_uid = a.owner
        entry.st_gid = a.group
        entry.st_rdev = 0
        if a.objtype == ObjType.DIRECTORY:
            size = 4096  # PAGE_SIZE
        elif a.objtype == ObjType.SYMLINK:
            node.link_target = attrs.link_target
            size = len(attrs.link_target)
        else:
            size = max(0, a.size)
        entry.st_size = size
        blksize = a.blksize if a.blksize > 0 and a.blksize & (a.blksize - 1) == 0 else 4096
        entry.st_blksize = min(blksize, 1 << 30)
        entry.st_blocks = (size + 511) // 512
        entry.st_atime_ns = _ns(a.atime)
        entry.st_mtime_ns = _ns(a.mtime)
        entry.st_ctime_ns = _ns(a.ctime)
        return entry

    async def _new_entry(self, call: Call, khandle: bytes) -> pyfuse3.EntryAttributes:
        """GETATTR of an object just looked up or made, and one more lookup of it for FUSE."""
        attrs = await self._getattr(call, khandle)
        return self._entry(self.inodes.add(khandle, attrs.sys.objtype), attrs)

    def _new_attrs(self, ctx, mode: int) -> dict:
        # orangefs_create/mkdir/symlink: owner/group = fsuid/fsgid, perms from the
        # mode, times 0, mask ALL_SETABLE.
        return {"owner": ctx.uid, "group": ctx.gid, "perms": mode_to_perms(mode & ~ctx.umask),
                "mask": int(AttrMask.ALL_SETABLE)}

    def _new_fh(self, record: OpenFile | OpenDir) -> int:
        fh = next(self._fh)
        self.files[fh] = record
        return fh

    def _file(self, fh: int) -> OpenFile:
        record = self.files.get(fh)
        if not isinstance(record, OpenFile):
            raise _fail(errno.EBADF)
        return record

    # -- names ----------------------------------------------------------------------------------------

    @handler
    async def lookup(self, parent_inode, name, ctx):
        """LOOKUP, then GETATTR of the object; ENOENT is a negative entry (``orangefs_lookup``)."""
        check_name(name)
        parent = self.inodes.get(parent_inode)
        call = self._ctx_call(ctx)
        try:
            down = await self._op(call, OpCode.LOOKUP, "lookup", {
                "sym_follow": ORANGEFS_LOOKUP_LINK_NO_FOLLOW, "parent_refn": self._refn(parent), "d_name": name})
        except pyfuse3.FUSEError as exc:
            if exc.errno != errno.ENOENT:
                raise
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0
            negative.entry_timeout = self._entry_timeout
            return negative
        return await self._new_entry(call, bytes(down.resp.lookup.refn.khandle))

    @handler
    async def forget(self, inode_list):
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @handler
    async def getattr(self, inode, ctx):
        """GETATTR with the size mask, every time (stat asking for size, spec §4.13)."""
        node = self.inodes.get(inode)
        return self._entry(node, await self._getattr(self._ctx_call(ctx), node.khandle))

    @handler
    async def setattr(self, inode, attr, fields, fh, ctx):
        """truncate → TRUNCATE; chmod/chown/utimens → SETATTR with the mask of the changed fields."""
        node = self.inodes.get(inode)
        call = self._ctx_call(ctx)
        if fields.update_size:
            if node.objtype == ObjType.DIRECTORY:
                raise _fail(errno.EISDIR)
            if node.objtype != ObjType.METAFILE:
                raise _fail(errno.EINVAL)
            if attr.st_size < 0:
                raise _fail(errno.EINVAL)
            await self._truncate(call, node, attr.st_size)
        mask = 0
        values = {}
        if fields.update_mode:
            mode = attr.st_mode & 0o7777
            if mode & stat.S_ISUID:
                raise _fail(errno.EINVAL)  # setuid via chmod (spec §2.6)
            if mode & stat.S_ISVTX and node.ino != pyfuse3.ROOT_INODE:
                raise _fail(errno.EINVAL)  # no sticky bit but the root's
            values["perms"] = mode_to_perms(mode)
            mask |= AttrMask.PERM
        if fields.update_uid:
            values["owner"] = attr.st_uid
            mask |= AttrMask.UID
        if fields.update_gid:
            values["group"] = attr.st_gid
            mask |= AttrMask.GID
        if fields.update_atime:
            values["atime"] = time_to_wire(attr.st_atime_ns // 1_000_000_000)
            mask |= AttrMask.ATIME | AttrMask.ATIME_SET
        if fields.update_mtime:
            values["mtime"] = time_to_wire(attr.st_mtime_ns // 1_000_000_000)
            mask |= AttrMask.MTIME | AttrMask.MTIME_SET
            # Written data still held here goes out first: its FILE_IO stamps the
            # mtime when it lands, which would undo the time set now (cp -a writes,
            # then sets the source's times, then closes).  The kernel keeps the
            # time in the inode and its page writeback never changes it.
            data = self.data.get(node.khandle)
            if data is not None and (data.dirty or data.inflight):
                await self._writeback(data, node.khandle)
        if mask or fields.update_ctime:
            mask |= AttrMask.CTIME
            values["mask"] = int(mask)
            # Sent at inode writeback in the kernel: uninterruptible, as the changer.
            await self._op(self._ctx_call(ctx, proto.OpFlags.WRITEBACK), OpCode.SETATTR, "setattr",
                           {"refn": self._refn(node), "attributes": values})
        return self._entry(node, await self._getattr(call, node.khandle))

    @handler
    async def readlink(self, inode, ctx):
        """The target GETATTR reports (LNK_TARGET is in the mask)."""
        node = self.inodes.get(inode)
        attrs = await self._getattr(self._ctx_call(ctx), node.khandle)
        if attrs.sys.objtype != ObjType.SYMLINK:
            raise _fail(errno.EINVAL)
        node.link_target = attrs.link_target
        return attrs.link_target

    @handler
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        """OrangeFS has no mknod: the VFS answers EPERM."""
        check_name(name)
        raise _fail(errno.EPERM)

    @handler
    async def link(self, inode, new_parent_inode, new_name, ctx):
        """OrangeFS has no hard links: the VFS answers EPERM."""
        check_name(new_name)
        raise _fail(errno.EPERM)

    @handler
    async def mkdir(self, parent_inode, name, mode, ctx):
        """MKDIR, then GETATTR of the new directory."""
        check_name(name)
        parent = self.inodes.get(parent_inode)
        call = self._ctx_call(ctx)
        down = await self._op(call, OpCode.MKDIR, "mkdir", {
            "parent_refn": self._refn(parent), "attributes": self._new_attrs(ctx, mode), "d_name": name})
        return await self._new_entry(call, bytes(down.resp.mkdir.refn.khandle))

    @handler
    async def symlink(self, parent_inode, name, target, ctx):
        """SYMLINK (mode 0755, target ≤ 255 bytes), then GETATTR of the link."""
        check_name(name)
        if len(target) > NAME_MAX:
            raise _fail(errno.ENAMETOOLONG)
        parent = self.inodes.get(parent_inode)
        call = self._ctx_call(ctx)
        attributes = {"owner": ctx.uid, "group": ctx.gid, "perms": mode_to_perms(0o755),
                      "mask": int(AttrMask.ALL_SETABLE)}
        down = await self._op(call, OpCode.SYMLINK, "sym", {
            "parent_refn": self._refn(parent), "attributes": attributes, "entry_name": name, "target": target})
        return await self._new_entry(call, bytes(down.resp.sym.refn.khandle))

    async def _remove(self, parent_inode, name, ctx) -> None:
        check_name(name)
        parent = self.inodes.get(parent_inode)
        await self._op(self._ctx_call(ctx), OpCode.REMOVE, "remove",
                       {"parent_refn": self._refn(parent), "d_name": name})

    @handler
    async def unlink(self, parent_inode, name, ctx):
        """REMOVE (the VFS checked the type)."""
        await self._remove(parent_inode, name, ctx)

    @handler
    async def rmdir(self, parent_inode, name, ctx):
        """REMOVE (the VFS checked the type)."""
        await self._remove(parent_inode, name, ctx)

    @handler
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        """RENAME; any rename flags are EINVAL before the upcall, as ``orangefs_rename`` does."""
        if flags:
            raise _fail(errno.EINVAL)
        check_name(name_old)
        check_name(name_new)
        old_parent = self.inodes.get(parent_inode_old)
        new_parent = self.inodes.get(parent_inode_new)
        await self._op(self._ctx_call(ctx), OpCode.RENAME, "rename", {
            "old_parent_refn": self._refn(old_parent), "new_parent_refn": self._refn(new_parent),
            "d_old_name": name_old, "d_new_name": name_new})

    # -- files ----------------------------------------------------------------------------------------

    def _gather_limit(self) -> int:
        """How much written data one FILE_IO carries: one slot (or 4 MiB before any MAP)."""
        buffers = self.broker.buffers
        return buffers.io.slot_size if buffers is not None else READAHEAD_BYTES

    def _data_of(self, khandle: bytes) -> FileData:
        data = self.data.get(khandle)
        if data is None:
            data = self.data[khandle] = FileData()
        return data

    @staticmethod
    def _raise_error(data: FileData) -> None:
        if data.error:
            err, data.error = data.error, 0
            raise _fail(err)

    def _io_upcall(self, khandle: bytes, io_type: int, offset: int, count: int) -> bytes:
        return proto.encode_upcall({"type": OpCode.FILE_IO, "req": {"io": {
            "buf_index": 0, "count": count, "offset": offset, "refn": {"khandle": khandle, "fs_id": self.fs_id},
            "io_type": int(io_type), "readahead_size": 0}}})

    async def _write_io(self, khandle: bytes, gid: int, pid: int, offset: int, buf) -> int:
        """One FILE_IO write (``perform`` splits it by slot size); returns the bytes written or -errno."""
        # I/O on a file opened for it goes with uid 0 and the writer's gid (spec §4.13).
        call = self._call(0, gid, pid)
        result = await self._perform(call, self._io_upcall(khandle, IoType.WRITE, offset, len(buf)), buf)
        if result.release is not None:
            result.release()
        if result.result < 0:
            return result.result
        (amt,) = _AMT.unpack_from(result.downcall, _AMT_AT)
        if not 0 <= amt <= len(buf):
            return -errno.EIO
        return amt

    async def _writeback(self, data: FileData, khandle: bytes) -> None:
        async with data.lock:
            await self._writeback_locked(data, khandle)

    async def _writeback_locked(self, data: FileData, khandle: bytes) -> None:
        """Send the dirty range and wait until every write of the file is done (failures in ``data.error``)."""
        await self._start_writeback(data, khandle)
        while data.inflight:
            await data.inflight[0].wait()

    async def _start_writeback(self, data: FileData, khandle: bytes) -> None:
        """Send the dirty range as one FILE_IO write, in the background when the session has a nursery."""
        buf, start, gid, pid = data.dirty, data.dirty_start, data.dirty_gid, data.dirty_pid
        data.dirty = None
        if not buf:
            return
        data.sent_end = start + len(buf)
        done = trio.Event()
        data.inflight.append(done)

        async def send() -> None:
            try:
                amt = await self._write_io(khandle, gid, pid, start, buf)
                if amt < 0:
                    data.error = -amt
                elif amt < len(buf):
                    data.error = errno.EIO  # a client-core writes less only when it fails
            except Exception:
                log.exception("writeback of %s", khandle.hex())
                data.error = errno.EIO
            finally:
                data.invalidate()
                data.inflight.remove(done)
                done.set()

        if self.nursery is not None:
            self.nursery.start_soon(send)
        else:
            await send()  # no session nursery (handlers called directly): inline

    async def _truncate(self, call: Call, node: Inode, size: int) -> None:
        """TRUNCATE, after the dirty data is written (the data below ``size`` must stay)."""
        data = self.data.get(node.khandle)
        if data is None:
            await self._op(call, OpCode.TRUNCATE, "truncate", {"refn": self._refn(node), "size": size})
            return
        async with data.lock:
            if size == 0:
                data.dirty = None  # all of it is cut off anyway
            await self._writeback_locked(data, node.khandle)
            data.invalidate()
            await self._op(call, OpCode.TRUNCATE, "truncate", {"refn": self._refn(node), "size": size})
            data.invalidate()

    def _opened(self, node: Inode, flags: int, ctx) -> pyfuse3.FileInfo:
        data = self._data_of(node.khandle)
        data.opens += 1
        # A fresh open sees fresh data (FUSE drops its page cache at open too).
        data.invalidate()
        data.last_end = -1
        fh = self._new_fh(OpenFile(node, flags, ctx.uid, ctx.gid, ctx.pid))
        return pyfuse3.FileInfo(fh=fh)

    @handler
    async def open(self, inode, flags, ctx):
        """No upcall, but O_TRUNC (FUSE's atomic truncate) → TRUNCATE to 0."""
        node = self.inodes.get(inode)
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            await self._truncate(self._ctx_call(ctx), node, 0)
        return self._opened(node, flags, ctx)

    @handler
    async def create(self, parent_inode, name, mode, flags, ctx):
        """CREATE, then GETATTR of the new file."""
        check_name(name)
        parent = self.inodes.get(parent_inode)
        call = self._ctx_call(ctx)
        down = await self._op(call, OpCode.CREATE, "create", {
            "parent_refn": self._refn(parent), "attributes": self._new_attrs(ctx, mode), "d_name": name})
        entry = await self._new_entry(call, bytes(down.resp.create.refn.khandle))
        return self._opened(self.inodes.get(entry.st_ino), flags, ctx), entry

    async def _read_io(self, record: OpenFile, off: int, count: int) -> bytes:
        call = self._call(0, record.gid, record.pid)
        result = await self._perform(call, self._io_upcall(record.node.khandle, IoType.READ, off, count))
        try:
            if result.result < 0:
                raise _fail(-result.result)
            (amt,) = _AMT.unpack_from(result.downcall, _AMT_AT)
            if not 0 <= amt <= count or amt > len(result.data):
                raise _fail(errno.EIO)
            return bytes(result.data[:amt])
        finally:
            if result.release is not None:
                result.release()

    @handler
    async def read(self, fh, off, size):
        """Buffered read: FILE_IO of 4 MiB read ahead when reading on sequentially, else of ``size``.

        A short reply is the end of the file.  Written data not sent yet goes first.
        """
        record = self._file(fh)
        if size <= 0:
            return b""
        khandle = record.node.khandle
        data = self._data_of(khandle)
        if data.dirty or data.inflight:
            await self._writeback(data, khandle)
        while True:
            piece = data.cached(off, size)
            if piece is not None:
                data.last_end = off + len(piece)
                return piece
            # A read ahead in flight that covers ``off``: wait for it rather than read twice.
            pending = next((event for start, end, event in data.fetching if start <= off < end), None)
            if pending is None:
                break
            await pending.wait()
        sequential = off == data.last_end or off == 0
        count = max(size, READAHEAD_BYTES) if sequential else size
        generation = data.generation
        fetch = (off, off + count, trio.Event())
        data.fetching.append(fetch)
        try:
            got = await self._read_io(record, off, count)
        finally:
            data.fetching.remove(fetch)
            fetch[2].set()
        if count > size and data.generation == generation:
            data.windows.append(Window(off, got, len(got) < count))
            del data.windows[:-READAHEAD_WINDOWS]
        data.last_end = off + min(size, len(got))
        return got[:size]

    @handler
    async def write(self, fh, off, buf):
        """Buffered write: gathered into one contiguous slot-size range, sent when it cannot grow.

        The range goes out (FILE_IO) when full, when a write does not continue
        it, and before anything that reads the data or the size (read,
        getattr, truncate, flush, fsync, release).
        """
        record = self._file(fh)
        n = len(buf)
        if not n:
            return 0
        khandle = record.node.khandle
        data = self._data_of(khandle)
        limit = self._gather_limit()
        async with data.lock:
            self._raise_error(data)
            data.invalidate()
            if data.dirty is not None and (off != data.dirty_end or data.dirty_gid != record.gid
                                           or len(data.dirty) + n > limit):
                await self._writeback_locked(data, khandle)
                self._raise_error(data)
            if data.dirty is None and data.inflight and off != data.sent_end:
                # A new range only goes out beside writes in flight when it continues them.
                await self._writeback_locked(data, khandle)
                self._raise_error(data)
            if data.dirty is None and n >= limit:
                amt = await self._write_io(khandle, record.gid, record.pid, off, buf)
                data.invalidate()
                if amt <= 0:
                    raise _fail(-amt if amt < 0 else errno.EIO)
                return amt
            if data.dirty is None:
                data.dirty = bytearray(buf)
                data.dirty_start, data.dirty_gid, data.dirty_pid = off, record.gid, record.pid
            else:
                data.dirty += buf
            if len(data.dirty) >= limit:
                # A full slot goes out while the next one fills: a sequential
                # writer keeps up to WRITEBACK_DEPTH FILE_IOs in flight, of
                # ranges that never overlap (a write that does not continue the
                # range waits for all of them first, above).
                while len(data.inflight) >= WRITEBACK_DEPTH:
                    await data.inflight[0].wait()
                await self._start_writeback(data, khandle)
                self._raise_error(data)
        return n

    async def _sync(self, record: OpenFile) -> None:
        data = self.data.get(record.node.khandle)
        if data is not None:
            await self._writeback(data, record.node.khandle)
            self._raise_error(data)

    @handler
    async def flush(self, fh):
        """Close: writes of dirty data only (no FSYNC); a failed writeback is reported here."""
        await self._sync(self._file(fh))

    @handler
    async def fsync(self, fh, datasync):
        """Writes of dirty data, then FSYNC."""
        record = self._file(fh)
        await self._sync(record)
        await self._op(self._call(record.uid, record.gid, record.pid), OpCode.FSYNC, "fsync",
                       {"refn": self._refn(record.node)})

    @handler
    async def release(self, fh):
        record = self.files.pop(fh, None)
        if not isinstance(record, OpenFile):
            return
        khandle = record.node.khandle
        data = self.data.get(khandle)
        if data is None:
            return
        try:
            await self._writeback(data, khandle)
            if data.error:
                log.warning("writeback of %s failed: %s", khandle.hex(), os.strerror(data.error))
        finally:
            data.opens -= 1
            if data.opens <= 0 and not data.dirty and self.data.get(khandle) is data:
                del self.data[khandle]

    async def writeback_all(self) -> None:
        """Send every file's written data still held (the session is ending)."""
        for khandle, data in list(self.data.items()):
            if data.dirty or data.inflight:
                await self._writeback(data, khandle)
                if data.error:
                    log.warning("writeback of %s failed: %s", khandle.hex(), os.strerror(data.error))

    # -- directories ----------------------------------------------------------------------------------

    @handler
    async def opendir(self, inode, ctx):
        node = self.inodes.get(inode)
        if node.objtype not in (0, ObjType.DIRECTORY):
            raise _fail(errno.ENOTDIR)
        return self._new_fh(OpenDir(node, pyfuse3.ROOT_INODE, ctx.uid, ctx.gid, ctx.pid))

    async def _read_more(self, record: OpenDir) -> None:
        """One READDIR from the listing's token (spec §3.4)."""
        call = self._call(record.uid, record.gid, record.pid)
        upcall = proto.encode_upcall({"type": OpCode.READDIR, "req": {"readdir": {
            "refn": self._refn(record.node), "token": record.token,
            "max_dirent_count": ORANGEFS_MAX_DIRENT_COUNT_READDIR, "buf_index": 0}}})
        result = await self._perform(call, upcall)
        if result.result < 0:
            raise _fail(-result.result)
        try:
            response = proto.decode_readdir_trailer(result.data)
        except proto.ProtocolError as exc:
            raise _fail(getattr(exc, "errno", None) or errno.EIO) from None
        record.entries.extend((bytes(e.name), bytes(e.khandle)) for e in response.entries)
        if response.token == ORANGEFS_ITERATE_END:
            record.done = True
        elif response.token == record.token and not response.entries:
            raise _fail(errno.EIO)  # no progress: a client-core bug, not a loop forever
        else:
            record.token = response.token

    async def _attrs_of(self, call: Call, handles: list[bytes]) -> list[Attrs | None]:
        """GETATTR of each handle, several in flight; a failed one is None."""
        results: list[Attrs | None] = [None] * len(handles)
        limiter = trio.CapacityLimiter(GETATTR_WINDOW)

        async def one(i: int, handle: bytes) -> None:
            async with limiter:
                try:
                    results[i] = await self._getattr(call, handle)
                except pyfuse3.FUSEError:
                    pass

        async with trio.open_nursery() as nursery:
            for i, handle in enumerate(handles):
                nursery.start_soon(one, i, handle)
        return results

    @handler
    async def readdir(self, fh, start_id, token):
        """The READDIR loop, "." and ".." first; ``start_id`` is the index to resume at."""
        record = self.files.get(fh)
        if not isinstance(record, OpenDir):
            raise _fail(errno.EBADF)
        pos = start_id
        if pos == 0:
            # (Re)starting: rewinddir sees the directory as it is now.
            record.entries.clear()
            record.attrs.clear()
            record.token, record.done = ORANGEFS_ITERATE_START, False
        if pos < 2:
            for i, (name, ino) in enumerate(((b".", record.node.ino), (b"..", record.parent_ino))):
                if i < pos:
                    continue
                dot = pyfuse3.EntryAttributes()
                dot.st_ino = ino
                dot.st_mode = stat.S_IFDIR
                dot.entry_timeout = dot.attr_timeout = 0
                if not pyfuse3.readdir_reply(token, name, dot, i + 1):
                    return
            pos = 2
        call = self._call(record.uid, record.gid, record.pid)
        while True:
            index = pos - 2
            while index >= len(record.entries) and not record.done:
                await self._read_more(record)
            batch = range(index, min(index + GETATTR_WINDOW, len(record.entries)))
            if not batch:
                return
            # Attributes fetched for entries that did not fit last time are used now.
            missing = [i for i in batch if i not in record.attrs]
            if missing:
                got = await self._attrs_of(call, [record.entries[i][1] for i in missing])
                record.attrs.update(zip(missing, got))
            for i in batch:
                name, khandle = record.entries[i]
                attrs = record.attrs.pop(i, None)
                pos += 1
                if attrs is None:
                    continue  # gone since READDIR listed it
                # readdirplus links the entry: one lookup, taken back if it does not fit.
                node = self.inodes.add(khandle, attrs.sys.objtype)
                if not pyfuse3.readdir_reply(token, name, self._entry(node, attrs), pos):
                    self.inodes.forget(node.ino, 1)
                    record.attrs[i] = attrs
                    return

    @handler
    async def releasedir(self, fh):
        self.files.pop(fh, None)

    @handler
    async def fsyncdir(self, fh, datasync):
        pass

    # -- the filesystem -------------------------------------------------------------------------------

    @handler
    async def statfs(self, ctx):
        """STATFS, mapped as ``orangefs_statfs`` fills ``struct kstatfs``."""
        down = await self._op(self._ctx_call(ctx), OpCode.STATFS, "statfs", {"fs_id": self.fs_id})
        s = down.resp.statfs
        out = pyfuse3.StatvfsData()
        out.f_bsize = out.f_frsize = max(0, s.block_size)
        out.f_blocks = max(0, s.blocks_total)
        out.f_bfree = out.f_bavail = max(0, s.blocks_avail)
        out.f_files = max(0, s.files_total)
        out.f_ffree = out.f_favail = max(0, s.files_avail)
        out.f_namemax = NAME_MAX
        return out

    # -- xattrs (spec §4.14) --------------------------------------------------------------------------

    @staticmethod
    def _check_xattr_name(name: bytes) -> None:
        if not name or len(name) >= ORANGEFS_MAX_XATTR_NAMELEN:
            raise _fail(errno.ERANGE)
        if name in POSIX_ACL_XATTRS:
            # The kernel module mounted without -o acl has no SB_POSIXACL, so the
            # VFS refuses these with EOPNOTSUPP before the filesystem sees them.
            # FUSE passes them on to a daemon without FUSE_POSIX_ACL; stored as
            # plain xattrs they would swallow the mode an ACL carries (cp -a sets
            # the mode with fsetxattr(system.posix_acl_access) when that works,
            # and falls back to fchmod on EOPNOTSUPP).
            raise _fail(errno.EOPNOTSUPP)

    @handler
    async def getxattr(self, inode, name, ctx):
        """GETXATTR (key_sz = strlen+1); ENOENT → ENODATA; a symlink → EOPNOTSUPP with no upcall.

        pyfuse3 answers the size probe (size 0) and ERANGE for a small buffer from the value.
        """
        node = self.inodes.get(inode)
        self._check_xattr_name(name)
        if node.objtype == ObjType.SYMLINK:
            raise _fail(errno.EOPNOTSUPP)
        try:
            down = await self._op(self._ctx_call(ctx), OpCode.GETXATTR, "getxattr",
                                  {"refn": self._refn(node), "key_sz": len(name) + 1, "key": name})
        except pyfuse3.FUSEError as exc:
            if exc.errno == errno.ENOENT:
                raise _fail(errno.ENODATA) from None
            raise
        reply = down.resp.getxattr
        if not 0 <= reply.val_sz <= ORANGEFS_MAX_XATTR_VALUELEN:
            raise _fail(errno.EIO)
        return bytes(reply.val[: reply.val_sz])

    @handler
    async def setxattr(self, inode, name, value, ctx):
        """SETXATTR; an empty value is REMOVEXATTR (a NULL value of size 0 in the kernel)."""
        node = self.inodes.get(inode)
        self._check_xattr_name(name)
        if len(value) > ORANGEFS_MAX_XATTR_VALUELEN:
            raise _fail(errno.EINVAL)
        call = self._ctx_call(ctx)
        if not value:
            try:
                await self._op(call, OpCode.REMOVEXATTR, "removexattr",
                               {"refn": self._refn(node), "key_sz": len(name) + 1, "key": name})
            except pyfuse3.FUSEError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            return
        await self._op(call, OpCode.SETXATTR, "setxattr", {
            "refn": self._refn(node),
            "keyval": {"key": name, "key_sz": len(name) + 1, "val_sz": len(value), "val": value},
            "flags": 0})

    @handler
    async def listxattr(self, inode, ctx):
        """LISTXATTR 16 at a time from ITERATE_START to ITERATE_END; ``system.pvfs2.*`` hidden."""
        node = self.inodes.get(inode)
        call = self._ctx_call(ctx)
        keys: list[bytes] = []
        token = ORANGEFS_ITERATE_START
        while True:
            down = await self._op(call, OpCode.LISTXATTR, "listxattr", {
                "refn": self._refn(node), "requested_count": ORANGEFS_MAX_XATTR_LISTLEN, "token": token})
            reply = down.resp.listxattr
            if not 0 <= reply.returned_count <= ORANGEFS_MAX_XATTR_LISTLEN or any(
                not 0 <= n <= ORANGEFS_NAME_MAX for n in reply.lengths[: reply.returned_count]
            ):
                raise _fail(errno.EIO)
            for key in listxattr_keys(reply):
                key = bytes(key).split(b"\0", 1)[0]
                if key and not key.startswith(HIDDEN_XATTR_PREFIX):
                    keys.append(key)
            if reply.token == ORANGEFS_ITERATE_END:
                return keys
            if reply.token == token:
                raise _fail(errno.EIO)
            token = reply.token

    @handler
    async def removexattr(self, inode, name, ctx):
        """REMOVEXATTR; removexattr(2) wants REPLACE semantics, so a missing key is ENODATA."""
        node = self.inodes.get(inode)
        self._check_xattr_name(name)
        try:
            await self._op(self._ctx_call(ctx), OpCode.REMOVEXATTR, "removexattr",
                           {"refn": self._refn(node), "key_sz": len(name) + 1, "key": name})
        except pyfuse3.FUSEError as exc:
            if exc.errno == errno.ENOENT:
                raise _fail(errno.ENODATA) from None
            raise


# -- the session ---------------------------------------------------------------------------------------------


class MountError(OSError):
    """The FUSE mount could not be set up."""


def fuse_options(fsname: str, options: Iterable[str]) -> set[str]:
    """The options pyfuse3.init gets: fsname and subtype, then the user's (``-o a,b`` splits)."""
    out = {f"fsname={fsname}", "subtype=pvfs2"}
    for option in options:
        out.update(o.strip() for o in option.split(",") if o.strip())
    return out


class FuseMount:
    """One FUSE mount served in the broker's trio loop (pyfuse3 allows one per process)."""

    def __init__(self, broker: Broker, mountpoint: Path, *, fsname: str = DEFAULT_FSNAME,
                 options: Iterable[str] = ()) -> None:
        raw = os.fsencode(fsname)
        if not raw or len(raw) >= ORANGEFS_MAX_SERVER_ADDR_LEN or b"\0" in raw or b"," in raw:
            raise MountError(errno.EINVAL, f"bad device string {fsname!r}")
        self.broker = broker
        self.mountpoint = Path(mountpoint)
        self.fsname = fsname
        self.options = fuse_options(fsname, options)
        self.ops = Operations(self)
        self.fs_mounted = False
        self.session = False
        self.serving = False
        self.finished = trio.Event()
        self._scope: trio.CancelScope | None = None

    async def run(self, *, retry: bool = True, on_mounted=lambda: None) -> None:
        """FS_MOUNT, mount FUSE, call ``on_mounted``, serve until stopped or unmounted.

        Args:
            retry: send FS_MOUNT again every second until a client-core
                answers; otherwise one attempt, as mount(2).

        Raises:
            MountError: the FS_MOUNT's errno (without ``retry``), or EIO if
                FUSE refused the mount.
        """
        try:
            with trio.CancelScope() as self._scope:
                await self._fs_mount(retry)
                try:
                    pyfuse3.init(self.ops, str(self.mountpoint), self.options)
                except RuntimeError as exc:
                    raise MountError(errno.EIO, f"cannot mount FUSE on {self.mountpoint}: {exc}") from None
                self.session = True
                log.info("mounted %s on %s (fs_id %d)", self.fsname, self.mountpoint, self.ops.fs_id)
                on_mounted()
                self.serving = True
                async with trio.open_nursery() as nursery:
                    self.ops.nursery = nursery
                    await pyfuse3.main(min_tasks=4, max_tasks=128)
                    # The session is over: written data still held goes out
                    # before the unmount, as umount syncs the page cache.
                    self.serving = False
                    await self.ops.writeback_all()
                self.ops.nursery = None
                log.info("FUSE session on %s ended", self.mountpoint)
        finally:
            self.serving = False
            with trio.CancelScope(shield=True):
                if self.session:
                    self.session = False
                    try:
                        pyfuse3.close(unmount=True)
                    except Exception:
                        log.exception("unmounting %s", self.mountpoint)
                if self.fs_mounted:
                    with trio.move_on_after(5):
                        await self._fs_umount()
                self.finished.set()

    async def stop(self) -> None:
        """End the session: callers in flight are interrupted, FUSE unmounts, FS_UMOUNT goes out."""
        if self._scope is None:
            self.finished.set()
            return
        if self.serving:
            try:
                pyfuse3.terminate()
            except Exception:
                log.exception("ending the FUSE session")
        # As the processes of a system going down are killed: calls waiting end
        # (EINTR), so the session can answer them and finish.
        serving = self.serving
        for call in list(self.ops.calls):
            call.interrupt(fatal=True)
        with trio.move_on_after(STOP_GRACE_SECS if serving else 0.5):
            if serving:
                await self.finished.wait()
            else:  # still mounting: let the FS_MOUNT return before giving up on it
                while self.ops.calls:
                    await trio.sleep(0.01)
        self._scope.cancel()
        await self.finished.wait()

    async def _fs_mount(self, retry: bool) -> None:
        upcall = proto.encode_upcall({"type": OpCode.FS_MOUNT,
                                      "req": {"fs_mount": {"orangefs_config_server": os.fsencode(self.fsname)}}})
        call = Call(self.broker, uid=os.geteuid(), gid=os.getegid(), pid=os.getpid(), tgid=os.getpid())
        while True:
            result = await self.ops._perform(call, upcall)
            if result.result == 0:
                break
            if not retry:
                raise MountError(-result.result, f"FS_MOUNT of {self.fsname} failed: {os.strerror(-result.result)}")
            log.warning("FS_MOUNT of %s failed: %s; retrying", self.fsname, os.strerror(-result.result))
            await trio.sleep(MOUNT_RETRY_SECS)
        info = proto.decode_downcall(result.downcall, OpCode.FS_MOUNT).resp.fs_mount
        self.ops.mounted(info.fs_id, info.id, bytes(info.root_khandle))
        self.fs_mounted = True

    async def _fs_umount(self) -> None:
        self.fs_mounted = False
        upcall = proto.encode_upcall({"type": OpCode.FS_UMOUNT, "req": {"fs_umount": {
            "id": self.ops.mount_id, "fs_id": self.ops.fs_id,
            "orangefs_config_server": os.fsencode(self.fsname)}}})
        call = Call(self.broker, uid=os.geteuid(), gid=os.getegid(), pid=os.getpid(), tgid=os.getpid())
        result = await perform(call, upcall)
        if result.result < 0:
            log.warning("FS_UMOUNT of %s: %s", self.fsname, os.strerror(-result.result))
        else:
            log.info("unmounted %s (fs_id %d)", self.fsname, self.ops.fs_id)


__all__ = ["DEFAULT_FSNAME", "FuseMount", "InodeTable", "MountError", "Operations", "fuse_options", "handler"]
