"""Upcall builders: the 8528 bytes the kernel's VFS code would submit for each call.

Each builder takes what the kernel fills for that op (spec §3.2 and §4.13) and
returns :func:`pvfs2proto.encode_upcall`'s bytes; the dict shapes are the ones
``pvfs2ctl fs`` submits (``pvfs2ctl.vfsops``).  Fields left out encode as zero,
as in the kernel's zero-allocated ops; the broker fills tag, pid and tgid,
and uid/gid from the caller's credentials (a root caller keeps its own, so
the builders put the caller's euid/egid there, as the kernel puts fsuid/fsgid).

Handles are 16-byte khandles; names and targets may be ``str`` or ``bytes``.
"""

from __future__ import annotations

import os

import pvfs2proto as proto
from pvfs2dev.mounts import DEFAULT_FSNAME
from pvfs2proto import AttrMask, IoType, OpCode
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_START,
    ORANGEFS_LOOKUP_LINK_FOLLOW,
    ORANGEFS_LOOKUP_LINK_NO_FOLLOW,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
)
from pvfs2proto.structs import mode_to_perms
from pvfs2proto.upcall import UPCALL_MEMBERS


def _raw(name: str | bytes) -> bytes:
    return os.fsencode(name)


def kref(fs_id: int, handle: bytes) -> dict:
    """``struct orangefs_object_kref``: a khandle on a filesystem."""
    return {"khandle": bytes(handle), "fs_id": fs_id}


def upcall(op: int, /, *, uid: int | None = None, gid: int | None = None, **fields) -> bytes:
    """Any upcall: ``fields`` fill the op's member of the ``req`` union (its kernel name).

    Raises:
        pvfs2proto.EncodeError: a field does not fit.
        KeyError: an op type with no request member.
    """
    up: dict = {"type": int(op), "uid": os.geteuid() if uid is None else uid,
                "gid": os.getegid() if gid is None else gid}
    if fields:
        up["req"] = {UPCALL_MEMBERS[OpCode(op)][0]: fields}
    return proto.encode_upcall(up)


def new_attrs(mode: int) -> dict:
    """The attributes ``orangefs_create``/``mkdir``/``symlink`` send: owner, group, perms, mask ALL_SETABLE."""
    return {"owner": os.geteuid(), "group": os.getegid(), "perms": mode_to_perms(mode),
            "mask": int(AttrMask.ALL_SETABLE)}


def fs_mount_upcall(device: str | bytes = DEFAULT_FSNAME) -> bytes:
    """FS_MOUNT of ``device`` (the config server string mount(8) was given)."""
    return upcall(OpCode.FS_MOUNT, orangefs_config_server=_raw(device))


def fs_umount_upcall(fs_id: int, mount_id: int, device: str | bytes = DEFAULT_FSNAME) -> bytes:
    """FS_UMOUNT of the mount ``mount_id`` of ``fs_id``."""
    return upcall(OpCode.FS_UMOUNT, id=mount_id, fs_id=fs_id, orangefs_config_server=_raw(device))


def getattr_upcall(fs_id: int, handle: bytes, mask: int = AttrMask.ALL_NOHINT) -> bytes:
    """GETATTR (``orangefs_inode_getattr`` asks ALL_NOHINT, or ALL_NOHINT|SIZE for a size)."""
    return upcall(OpCode.GETATTR, refn=kref(fs_id, handle), mask=int(mask))


def setattr_upcall(fs_id: int, handle: bytes, attributes: dict) -> bytes:
    """SETATTR with ``attributes`` (an ``ORANGEFS_sys_attr_s`` dict: perms, owner, mask, ...)."""
    return upcall(OpCode.SETATTR, refn=kref(fs_id, handle), attributes=attributes)


def lookup_upcall(fs_id: int, parent: bytes, name: str | bytes, *, follow: bool = False) -> bytes:
    """LOOKUP ``name`` in ``parent`` (the kernel never follows: ``sym_follow`` 0)."""
    return upcall(OpCode.LOOKUP, parent_refn=kref(fs_id, parent), d_name=_raw(name),
                  sym_follow=ORANGEFS_LOOKUP_LINK_FOLLOW if follow else ORANGEFS_LOOKUP_LINK_NO_FOLLOW)


def create_upcall(fs_id: int, parent: bytes, name: str | bytes, mode: int = 0o644) -> bytes:
    """CREATE a regular file."""
    return upcall(OpCode.CREATE, parent_refn=kref(fs_id, parent), attributes=new_attrs(mode), d_name=_raw(name))


def mkdir_upcall(fs_id: int, parent: bytes, name: str | bytes, mode: int = 0o755) -> bytes:
    """MKDIR."""
    return upcall(OpCode.MKDIR, parent_refn=kref(fs_id, parent), attributes=new_attrs(mode), d_name=_raw(name))


def symlink_upcall(fs_id: int, parent: bytes, name: str | bytes, target: str | bytes) -> bytes:
    """SYMLINK (mode 0755, as the kernel sends)."""
    return upcall(OpCode.SYMLINK, parent_refn=kref(fs_id, parent), attributes=new_attrs(0o755),
                  entry_name=_raw(name), target=_raw(target))


def remove_upcall(fs_id: int, parent: bytes, name: str | bytes) -> bytes:
    """REMOVE (unlink and rmdir both; the VFS checks the type first)."""
    return upcall(OpCode.REMOVE, parent_refn=kref(fs_id, parent), d_name=_raw(name))


def rename_upcall(fs_id: int, old_parent: bytes, old_name: str | bytes, new_parent: bytes,
                  new_name: str | bytes) -> bytes:
    """RENAME (no flags: the kernel refuses any before the upcall)."""
    return upcall(OpCode.RENAME, old_parent_refn=kref(fs_id, old_parent), new_parent_refn=kref(fs_id, new_parent),
                  d_old_name=_raw(old_name), d_new_name=_raw(new_name))


def truncate_upcall(fs_id: int, handle: bytes, size: int) -> bytes:
    """TRUNCATE to ``size``."""
    return upcall(OpCode.TRUNCATE, refn=kref(fs_id, handle), size=size)


def file_io_upcall(fs_id: int, handle: bytes, io_type: int, count: int, offset: int = 0) -> bytes:
    """FILE_IO of ``count`` bytes at ``offset``; the broker fills ``buf_index`` with the slot it takes."""
    return upcall(OpCode.FILE_IO, refn=kref(fs_id, handle), io_type=int(io_type), count=count, offset=offset,
                  buf_index=0, readahead_size=0)


def write_upcall(fs_id: int, handle: bytes, count: int, offset: int = 0) -> bytes:
    """FILE_IO write; submit it with ``count`` bytes of data."""
    return file_io_upcall(fs_id, handle, IoType.WRITE, count, offset)


def read_upcall(fs_id: int, handle: bytes, count: int, offset: int = 0) -> bytes:
    """FILE_IO read; the reply carries the bytes read."""
    return file_io_upcall(fs_id, handle, IoType.READ, count, offset)


def readdir_upcall(fs_id: int, handle: bytes, token: int = ORANGEFS_ITERATE_START,
                   count: int = ORANGEFS_MAX_DIRENT_COUNT_READDIR) -> bytes:
    """READDIR from ``token``; the reply carries the trailer (spec §3.4)."""
    return upcall(OpCode.READDIR, refn=kref(fs_id, handle), token=token, max_dirent_count=count, buf_index=0)


def statfs_upcall(fs_id: int) -> bytes:
    """STATFS of ``fs_id``."""
    return upcall(OpCode.STATFS, fs_id=fs_id)


def fsync_upcall(fs_id: int, handle: bytes) -> bytes:
    """FSYNC."""
    return upcall(OpCode.FSYNC, refn=kref(fs_id, handle))


def getxattr_upcall(fs_id: int, handle: bytes, key: str | bytes) -> bytes:
    """GETXATTR (``key_sz`` counts the NUL)."""
    key = _raw(key)
    return upcall(OpCode.GETXATTR, refn=kref(fs_id, handle), key=key, key_sz=len(key) + 1)


def setxattr_upcall(fs_id: int, handle: bytes, key: str | bytes, value: bytes, flags: int = 0) -> bytes:
    """SETXATTR (``flags``: XattrFlags CREATE or REPLACE)."""
    key = _raw(key)
    return upcall(OpCode.SETXATTR, refn=kref(fs_id, handle), flags=int(flags),
                  keyval={"key": key, "key_sz": len(key) + 1, "val": value, "val_sz": len(value)})


__all__ = [
    "create_upcall", "file_io_upcall", "fs_mount_upcall", "fs_umount_upcall", "fsync_upcall", "getattr_upcall",
    "getxattr_upcall", "kref", "lookup_upcall", "mkdir_upcall", "new_attrs", "read_upcall", "readdir_upcall",
    "remove_upcall", "rename_upcall", "setattr_upcall", "setxattr_upcall", "statfs_upcall", "symlink_upcall",
    "truncate_upcall", "upcall", "write_upcall",
]
