"""Answering upcalls from a store: one handler per op type (spec §4.13, §3).

:class:`OpHandlers` turns a decoded upcall into a downcall (and, for READDIR,
a trailer) by calling the store with the credentials the kernel put in the
upcall.  Handlers raise only :class:`~clientcore.store.StoreError` or
:class:`OpError`; :meth:`OpHandlers.answer` turns either into an
OrangeFS-encoded status, so no input can take the daemon down.  Anything else
escaping a handler is a bug.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import time
from typing import Callable

import pvfs2proto as proto
from pvfs2proto import AttrMask, Features, IoType, ObjType, OpCode, ParamOp, ParamRequestType
from pvfs2proto.constants import (
    READDIR_RESPONSE_SIZE,
    ORANGEFS_ITERATE_END,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_NAME_MAX,
)
from pvfs2proto.readdir import entry_size
from pvfs2proto.structs import mode_to_perms, perms_to_mode, time_from_wire, time_to_wire

from .store import Attr, Creds, Store, StoreError

log = logging.getLogger("clientcore")


class OpError(OSError):
    """An upcall the client-core refuses (bad fields); ``.errno`` goes in the status."""


# What a GETATTR can fill in, by object type.
_COMMON = int(AttrMask.COMMON_ALL | AttrMask.SIZE | AttrMask.BLKSIZE)
_AVAILABLE = {
    ObjType.METAFILE: _COMMON | int(AttrMask.DFILE_COUNT),
    ObjType.DIRECTORY: _COMMON | int(AttrMask.DIRENT_COUNT),
    ObjType.SYMLINK: _COMMON | int(AttrMask.LNK_TARGET),
}

#: PARAM knobs the daemon keeps (spec §6.1) and their starting values.
DEFAULT_PARAMS: dict[int, int] = {
    ParamOp.ACACHE_TIMEOUT_MSECS: 60000, ParamOp.ACACHE_HARD_LIMIT: 10240,
    ParamOp.ACACHE_SOFT_LIMIT: 5120, ParamOp.ACACHE_RECLAIM_PERCENTAGE: 25,
    ParamOp.NCACHE_TIMEOUT_MSECS: 60000, ParamOp.NCACHE_HARD_LIMIT: 10240,
    ParamOp.NCACHE_SOFT_LIMIT: 5120, ParamOp.NCACHE_RECLAIM_PERCENTAGE: 25,
    ParamOp.CAPCACHE_TIMEOUT_SECS: 600, ParamOp.CAPCACHE_HARD_LIMIT: 1024,
    ParamOp.CAPCACHE_SOFT_LIMIT: 512, ParamOp.CAPCACHE_RECLAIM_PERCENTAGE: 25,
    ParamOp.CCACHE_TIMEOUT_SECS: 600, ParamOp.CCACHE_HARD_LIMIT: 1024,
    ParamOp.CCACHE_SOFT_LIMIT: 512, ParamOp.CCACHE_RECLAIM_PERCENTAGE: 25,
    ParamOp.PERF_TIME_INTERVAL_SECS: 10, ParamOp.PERF_HISTORY_SIZE: 6, ParamOp.PERF_RESET: 0,
    ParamOp.READAHEAD_SIZE: 4 * 1024 * 1024, ParamOp.READAHEAD_COUNT: 8,
    ParamOp.READAHEAD_COUNT_SIZE: proto.upcall.value64_of(8, 4 * 1024 * 1024), ParamOp.READAHEAD_READCNT: 0,
    ParamOp.CLIENT_DEBUG: 0,
}


@dataclasses.dataclass
class Reply:
    """A downcall to encode: its resp member (or none), status, and a trailer."""

    resp: dict | None = None
    status: int = 0
    trailer: bytes = b""


def _name(raw: bytes, what: str = "name") -> bytes:
    """A name from an upcall: at most 255 bytes, no '/' (the NUL ended it already)."""
    if len(raw) >= ORANGEFS_NAME_MAX:
        raise OpError(errno.ENAMETOOLONG, f"{what} of {len(raw)} bytes (no NUL within 256)")
    if not raw or b"/" in raw:
        raise OpError(errno.EINVAL, f"{what} {raw[:40]!r} is empty or holds '/'")
    return raw


def sys_attr(attr: Attr, requested: int, dfile_count: int) -> dict:
    """An ``ORANGEFS_sys_attr_s`` value for ``attr``, with only the requested fields valid."""
    mask = requested & _AVAILABLE.get(attr.objtype, _COMMON)
    return {
        "owner": attr.uid,
        "group": attr.gid,
        "perms": mode_to_perms(attr.mode),
        "atime": time_to_wire(attr.atime),
        "mtime": time_to_wire(attr.mtime),
        "ctime": time_to_wire(attr.ctime),
        "size": attr.size if mask & AttrMask.SIZE else 0,
        "dfile_count": dfile_count if attr.objtype == ObjType.METAFILE else 0,
        "dirent_count": attr.size if attr.objtype == ObjType.DIRECTORY else 0,
        "objtype": attr.objtype,
        "mask": mask,
        "blksize": attr.blksize,
    }


class OpHandlers:
    """The op dispatch table over one store."""

    def __init__(self, store: Store, *, dfile_count: int = 1) -> None:
        self.store = store
        self.dfile_count = dfile_count
        self.params: dict[int, int] = dict(DEFAULT_PARAMS)
        self.client_debug_masks = "0 0"
        self.counts: dict[str, int] = {}
        self.mount_ids = 0
        self.handlers: dict[int, Callable] = {
            OpCode.FS_MOUNT: self.fs_mount, OpCode.FS_UMOUNT: self.fs_umount,
            OpCode.LOOKUP: self.lookup, OpCode.CREATE: self.create, OpCode.MKDIR: self.mkdir,
            OpCode.SYMLINK: self.symlink, OpCode.GETATTR: self.getattr, OpCode.SETATTR: self.setattr,
            OpCode.REMOVE: self.remove, OpCode.RENAME: self.rename, OpCode.STATFS: self.statfs,
            OpCode.TRUNCATE: self.truncate, OpCode.FSYNC: self.fsync, OpCode.RA_FLUSH: self.ra_flush,
            OpCode.GETXATTR: self.getxattr, OpCode.SETXATTR: self.setxattr,
            OpCode.LISTXATTR: self.listxattr, OpCode.REMOVEXATTR: self.removexattr,
            OpCode.PARAM: self.param, OpCode.PERF_COUNT: self.perf_count, OpCode.FEATURES: self.features,
        }

    # -- entry point ------------------------------------------------------------------------

    def answer(self, upcall, call: Callable[[], Reply] | None = None) -> Reply:
        """Run the handler for ``upcall`` and catch every refusal into a status.

        A refusal (StoreError, OpError) is answered with its errno; any other
        exception is a bug of ours: logged as "internal error" and answered EIO.
        """
        name = proto.opname(upcall.type)
        self.counts[name] = self.counts.get(name, 0) + 1
        try:
            if call is not None:
                return call()
            handler = self.handlers.get(upcall.type)
            if handler is None:
                # READDIRPLUS and FSKEY are defined but never sent; anything else is garbage.
                known = upcall.type in (OpCode.READDIRPLUS, OpCode.FSKEY)
                raise OpError(errno.ENOSYS if known else errno.EINVAL, f"no handler for {name}")
            return handler(upcall, Creds(upcall.uid, upcall.gid))
        except (StoreError, OpError) as exc:
            err = exc.errno or errno.EINVAL
            level = logging.DEBUG if isinstance(exc, StoreError) else logging.WARNING
            log.log(level, "%s from uid %d: %s", name, upcall.uid, exc)
            return Reply(status=status_of(err))
        except Exception:
            # A bug of ours, not the caller's: the daemon must not die on an upcall
            # (the kernel would purge every op in flight), so the op gets EIO and
            # the traceback goes to the log, where the fuzz tests look for it.
            log.exception("internal error answering %s from uid %d", name, upcall.uid)
            return Reply(status=status_of(errno.EIO))

    # -- the filesystem -------------------------------------------------------------------------

    def _ref(self, kref) -> bytes:
        if kref.fs_id != self.store.fs_id:
            raise OpError(errno.EINVAL, f"fs_id {kref.fs_id} is not ours ({self.store.fs_id})")
        return kref.khandle

    def _kref(self, handle: bytes) -> dict:
        return {"khandle": handle, "fs_id": self.store.fs_id}

    def fs_mount(self, up, creds) -> Reply:
        # The same fs_id every time, across restarts (spec §4.12); a fresh id per mount.
        self.mount_ids += 1
        return Reply({"fs_mount": {"fs_id": self.store.fs_id, "id": self.mount_ids,
                                   "root_khandle": self.store.root}})

    def fs_umount(self, up, creds) -> Reply:
        if up.req.fs_umount.fs_id != self.store.fs_id:
            raise OpError(errno.EINVAL, "unmount of a filesystem that is not ours")
        return Reply()

    def lookup(self, up, creds) -> Reply:
        req = up.req.lookup
        attr = self.store.lookup(creds, self._ref(req.parent_refn), _name(req.d_name))
        return Reply({"lookup": {"refn": self._kref(attr.handle)}})

    def create(self, up, creds) -> Reply:
        req = up.req.create
        attr = self.store.create(creds, self._ref(req.parent_refn), _name(req.d_name),
                                 perms_to_mode(req.attributes.perms))
        return Reply({"create": {"refn": self._kref(attr.handle)}})

    def mkdir(self, up, creds) -> Reply:
        req = up.req.mkdir
        attr = self.store.mkdir(creds, self._ref(req.parent_refn), _name(req.d_name),
                                perms_to_mode(req.attributes.perms))
        return Reply({"mkdir": {"refn": self._kref(attr.handle)}})

    def symlink(self, up, creds) -> Reply:
        req = up.req.sym
        target = req.target
        if len(target) >= ORANGEFS_NAME_MAX:
            raise OpError(errno.ENAMETOOLONG, "symlink target longer than 255 bytes")
        attr = self.store.symlink(creds, self._ref(req.parent_refn), _name(req.entry_name), target)
        return Reply({"sym": {"refn": self._kref(attr.handle)}})

    def getattr(self, up, creds) -> Reply:
        req = up.req.getattr
        attr = self.store.getattr(creds, self._ref(req.refn))
        link = attr.target if req.mask & AttrMask.LNK_TARGET and attr.objtype == ObjType.SYMLINK else b""
        return Reply({"getattr": {"attributes": sys_attr(attr, req.mask, self.dfile_count), "link_target": link}})

    def setattr(self, up, creds) -> Reply:
        req = up.req.setattr
        a, mask = req.attributes, req.attributes.mask
        changes = {}
        if mask & AttrMask.PERM:
            changes["mode"] = perms_to_mode(a.perms)
        if mask & AttrMask.UID:
            changes["uid"] = a.owner
        if mask & AttrMask.GID:
            changes["gid"] = a.group
        if mask & AttrMask.ATIME:
            changes["atime"] = time_from_wire(a.atime) if mask & AttrMask.ATIME_SET else int(time.time())
        if mask & AttrMask.MTIME:
            changes["mtime"] = time_from_wire(a.mtime) if mask & AttrMask.MTIME_SET else int(time.time())
        if mask & AttrMask.CTIME:
            changes["ctime"] = time_from_wire(a.ctime) or int(time.time())
        self.store.setattr(creds, self._ref(req.refn), **changes)
        return Reply()

    def remove(self, up, creds) -> Reply:
        req = up.req.remove
        self.store.remove(creds, self._ref(req.parent_refn), _name(req.d_name))
        return Reply()

    def rename(self, up, creds) -> Reply:
        req = up.req.rename
        self.store.rename(creds, self._ref(req.old_parent_refn), _name(req.d_old_name),
                          self._ref(req.new_parent_refn), _name(req.d_new_name))
        return Reply()

    def statfs(self, up, creds) -> Reply:
        if up.req.statfs.fs_id != self.store.fs_id:
            raise OpError(errno.EINVAL, "statfs of a filesystem that is not ours")
        s = self.store.statfs()
        return Reply({"statfs": dataclasses.asdict(s)})

    def truncate(self, up, creds) -> Reply:
        req = up.req.truncate
        self.store.truncate(creds, self._ref(req.refn), req.size)
        return Reply()

    def fsync(self, up, creds) -> Reply:
        self.store.fsync(self._ref(up.req.fsync.refn))
        return Reply()

    def ra_flush(self, up, creds) -> Reply:
        self._ref(up.req.ra_cache_flush.refn)  # no readahead cache to flush; the handle must be ours
        return Reply()

    def readdir(self, up, creds, slot: memoryview) -> Reply:
        """READDIR: entries encoded into the readdir slot, then sent as the trailer."""
        req = up.req.readdir
        # 512 entries of 255-byte names (143 KiB) would not fit a 128 KiB slot:
        # ask for no more than the slot holds at the longest name.
        fits = (len(slot) - READDIR_RESPONSE_SIZE) // entry_size(ORANGEFS_NAME_MAX - 1)
        count = min(max(req.max_dirent_count, 0), ORANGEFS_MAX_DIRENT_COUNT_READDIR, fits)
        entries, token = self.store.readdir(creds, self._ref(req.refn), req.token, count)
        trailer = proto.encode_readdir_trailer(entries, token)
        if len(trailer) > len(slot):
            raise OpError(errno.ENOBUFS, f"readdir result of {len(trailer)} bytes exceeds the readdir slot")
        slot[: len(trailer)] = trailer
        return Reply(trailer=bytes(slot[: len(trailer)]))

    # -- xattrs (spec §4.14) ----------------------------------------------------------------------

    def getxattr(self, up, creds) -> Reply:
        req = up.req.getxattr
        value = self.store.getxattr(creds, self._ref(req.refn), req.key)
        return Reply({"getxattr": {"val_sz": len(value), "val": value}})

    def setxattr(self, up, creds) -> Reply:
        req = up.req.setxattr
        kv = req.keyval
        if not 0 <= kv.val_sz <= len(kv.val):
            raise OpError(errno.EINVAL, f"val_sz {kv.val_sz} outside the value field")
        self.store.setxattr(creds, self._ref(req.refn), kv.key, kv.val[: kv.val_sz], req.flags)
        return Reply()

    def listxattr(self, up, creds) -> Reply:
        req = up.req.listxattr
        count = min(max(req.requested_count, 0), ORANGEFS_MAX_XATTR_LISTLEN)
        if count == 0:
            # A size probe: report how many keys there are, without them.
            handle, total, token = self._ref(req.refn), 0, proto.ORANGEFS_ITERATE_START
            while token != ORANGEFS_ITERATE_END:
                batch, token = self.store.listxattr(creds, handle, token, ORANGEFS_MAX_XATTR_LISTLEN)
                total += len(batch)
            return Reply({"listxattr": {"returned_count": total, "token": ORANGEFS_ITERATE_END}})
        keys, token = self.store.listxattr(creds, self._ref(req.refn), req.token, count)
        # Each key goes out with its NUL, as the kernel hands the bytes on unchanged.
        with_nul = [k + b"\0" for k in keys]
        lengths = [len(k) for k in with_nul] + [0] * (ORANGEFS_MAX_XATTR_LISTLEN - len(keys))
        return Reply({"listxattr": {"returned_count": len(keys), "token": token, "key": b"".join(with_nul),
                                    "keylen": sum(lengths), "lengths": lengths}})

    def removexattr(self, up, creds) -> Reply:
        req = up.req.removexattr
        self.store.removexattr(creds, self._ref(req.refn), req.key)
        return Reply()

    # -- the daemon's own knobs ---------------------------------------------------------------------

    def param(self, up, creds) -> Reply:
        req = up.req.param
        if req.op == ParamOp.TWO_MASK_VALUES:
            if req.type == ParamRequestType.SET:
                self.client_debug_masks = req.s_value.decode(errors="replace").strip()
            return Reply({"param": {"u": {"value64": 0}}})
        if req.op not in self.params:
            raise OpError(errno.EINVAL, f"unknown PARAM op {req.op}")
        if req.type == ParamRequestType.SET:
            self.params[req.op] = req.u.value64
            if req.op == ParamOp.PERF_RESET and req.u.value64:
                self.counts.clear()
            return Reply({"param": {"u": {"value64": req.u.value64}}})
        if req.type == ParamRequestType.GET:
            return Reply({"param": {"u": {"value64": self.params[req.op]}}})
        raise OpError(errno.EINVAL, f"PARAM type {req.type} is neither SET nor GET")

    def perf_count(self, up, creds) -> Reply:
        kind = up.req.perf_count.type
        if kind not in (1, 2, 3):
            raise OpError(errno.EINVAL, f"unknown PERF_COUNT type {kind}")
        lines = [f"{name} {count}" for name, count in sorted(self.counts.items())]
        text = ("\n".join(lines) + "\n").encode()[: proto.PERF_COUNT_BUF_SIZE - 1]
        return Reply({"perf_count": {"buffer": text}})

    def features(self, up, creds) -> Reply:
        # RA_FLUSH and the readahead knobs are served, so offer readahead.
        return Reply({"features": {"features": int(Features.READAHEAD)}})

    # -- FILE_IO (the data path; the daemon runs it in a worker thread) --------------------------------

    def file_io_target(self, up) -> tuple[bytes, int, int, int, int]:
        """Check a FILE_IO upcall; returns (handle, buf_index, count, offset, io_type)."""
        req = up.req.io
        if req.io_type not in (IoType.READ, IoType.WRITE):
            raise OpError(errno.EINVAL, f"io_type {req.io_type}")
        if req.count < 0 or req.offset < 0:
            raise OpError(errno.EINVAL, f"count {req.count} / offset {req.offset}")
        return self._ref(req.refn), req.buf_index, req.count, req.offset, req.io_type


def status_of(err: int) -> int:
    """The downcall status for an errno; one the kernel cannot decode goes as EINVAL."""
    if proto.errors.is_encodable_errno(err):
        return proto.errno_to_status(err)
    return proto.errno_to_status(errno.EINVAL)
