"""``struct orangefs_upcall_s`` and its members (upcall.h; spec §3.2), x86_64.

A decoded upcall reads like the C: ``up.type``, ``up.req.io.count``,
``up.req.lookup.d_name``.  ``type`` is an ``__s32`` in the kernel; it is coded
unsigned here so values equal :class:`~pvfs2proto.enums.OpCode` members
(0xFF000001 …) — the bytes are identical.  Upcalls of a type the kernel does not
define decode with ``req.raw`` holding the 8488 union bytes as they are.
"""

from __future__ import annotations

from construct import Int32sl, Int32ul, Int64sl, Int64ul, Padding

from .constants import (
    ORANGEFS_MAX_DEBUG_STRING_LEN,
    ORANGEFS_MAX_SERVER_ADDR_LEN,
    ORANGEFS_NAME_MAX,
    UPCALL_UNION_SIZE,
)
from .cstruct import Blob, CString, CStruct, OpUnion
from .enums import OpCode
from .structs import ORANGEFS_keyval_pair, ORANGEFS_sys_attr_s, orangefs_object_kref

# --- members of the req union ----------------------------------------------------------

orangefs_io_request_s = CStruct(
    Padding(4),  # __pad1 (async_vfs_io in 2015-era headers)
    "buf_index" / Int32sl,
    "count" / Int32sl,
    Padding(4),  # __pad2
    "offset" / Int64sl,
    "refn" / orangefs_object_kref,
    "io_type" / Int32ul,  # enum ORANGEFS_io_type
    "readahead_size" / Int32sl,
)

orangefs_lookup_request_s = CStruct(
    "sym_follow" / Int32sl,
    Padding(4),  # __pad1
    "parent_refn" / orangefs_object_kref,
    "d_name" / CString(ORANGEFS_NAME_MAX),
)

orangefs_create_request_s = CStruct(
    "parent_refn" / orangefs_object_kref,
    "attributes" / ORANGEFS_sys_attr_s,
    "d_name" / CString(ORANGEFS_NAME_MAX),
)

orangefs_symlink_request_s = CStruct(
    "parent_refn" / orangefs_object_kref,
    "attributes" / ORANGEFS_sys_attr_s,
    "entry_name" / CString(ORANGEFS_NAME_MAX),
    "target" / CString(ORANGEFS_NAME_MAX),
)

orangefs_getattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "mask" / Int32ul,
    Padding(4),  # __pad1
)

orangefs_setattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "attributes" / ORANGEFS_sys_attr_s,
)

orangefs_remove_request_s = CStruct(
    "parent_refn" / orangefs_object_kref,
    "d_name" / CString(ORANGEFS_NAME_MAX),
)

orangefs_mkdir_request_s = CStruct(
    "parent_refn" / orangefs_object_kref,
    "attributes" / ORANGEFS_sys_attr_s,
    "d_name" / CString(ORANGEFS_NAME_MAX),
)

orangefs_readdir_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "token" / Int64ul,
    "max_dirent_count" / Int32sl,
    "buf_index" / Int32sl,
)

orangefs_readdirplus_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "token" / Int64ul,
    "max_dirent_count" / Int32sl,
    "mask" / Int32ul,
    "buf_index" / Int32sl,
    Padding(4),  # __pad1
)

orangefs_rename_request_s = CStruct(
    "old_parent_refn" / orangefs_object_kref,
    "new_parent_refn" / orangefs_object_kref,
    "d_old_name" / CString(ORANGEFS_NAME_MAX),
    "d_new_name" / CString(ORANGEFS_NAME_MAX),
)

orangefs_statfs_request_s = CStruct(
    "fs_id" / Int32sl,
    Padding(4),  # __pad1
)

orangefs_truncate_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "size" / Int64sl,
)

orangefs_ra_cache_flush_request_s = CStruct(
    "refn" / orangefs_object_kref,
)

orangefs_fs_mount_request_s = CStruct(
    "orangefs_config_server" / CString(ORANGEFS_MAX_SERVER_ADDR_LEN),
)

orangefs_fs_umount_request_s = CStruct(
    "id" / Int32sl,
    "fs_id" / Int32sl,
    "orangefs_config_server" / CString(ORANGEFS_MAX_SERVER_ADDR_LEN),
)

orangefs_getxattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "key_sz" / Int32sl,
    Padding(4),  # __pad1
    "key" / CString(ORANGEFS_NAME_MAX),
)

orangefs_setxattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "keyval" / ORANGEFS_keyval_pair,
    "flags" / Int32sl,
    Padding(4),  # __pad1
)

orangefs_listxattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "requested_count" / Int32sl,
    Padding(4),  # __pad1
    "token" / Int64ul,
)

orangefs_removexattr_request_s = CStruct(
    "refn" / orangefs_object_kref,
    "key_sz" / Int32sl,
    Padding(4),  # __pad1
    "key" / CString(ORANGEFS_NAME_MAX),
)

orangefs_op_cancel_s = CStruct(
    "op_tag" / Int64ul,
)

orangefs_fsync_request_s = CStruct(
    "refn" / orangefs_object_kref,
)

#: ``u`` is a C union of ``__s64 value64`` and ``__s32 value32[2]``; it is coded
#: as value64 and :func:`value32_pair` / :func:`value64_of` give the other view.
orangefs_param_request_s = CStruct(
    "type" / Int32ul,  # enum orangefs_param_request_type
    "op" / Int32ul,  # enum orangefs_param_request_op
    "u" / CStruct("value64" / Int64sl),
    "s_value" / CString(ORANGEFS_MAX_DEBUG_STRING_LEN),
)

orangefs_perf_count_request_s = CStruct(
    "type" / Int32ul,  # ORANGEFS_PERF_COUNT_REQUEST_*
    Padding(4),  # __pad1
)

orangefs_fs_key_request_s = CStruct(
    "fsid" / Int32sl,
    Padding(4),  # __pad1
)

orangefs_features_request_s = CStruct(
    "features" / Int64ul,
)

#: op type → (union member name, member struct), as the kernel fills ``req``.
UPCALL_MEMBERS = {
    OpCode.FILE_IO: ("io", orangefs_io_request_s),
    OpCode.LOOKUP: ("lookup", orangefs_lookup_request_s),
    OpCode.CREATE: ("create", orangefs_create_request_s),
    OpCode.GETATTR: ("getattr", orangefs_getattr_request_s),
    OpCode.REMOVE: ("remove", orangefs_remove_request_s),
    OpCode.MKDIR: ("mkdir", orangefs_mkdir_request_s),
    OpCode.READDIR: ("readdir", orangefs_readdir_request_s),
    OpCode.SETATTR: ("setattr", orangefs_setattr_request_s),
    OpCode.SYMLINK: ("sym", orangefs_symlink_request_s),
    OpCode.RENAME: ("rename", orangefs_rename_request_s),
    OpCode.STATFS: ("statfs", orangefs_statfs_request_s),
    OpCode.TRUNCATE: ("truncate", orangefs_truncate_request_s),
    OpCode.RA_FLUSH: ("ra_cache_flush", orangefs_ra_cache_flush_request_s),
    OpCode.FS_MOUNT: ("fs_mount", orangefs_fs_mount_request_s),
    OpCode.FS_UMOUNT: ("fs_umount", orangefs_fs_umount_request_s),
    OpCode.GETXATTR: ("getxattr", orangefs_getxattr_request_s),
    OpCode.SETXATTR: ("setxattr", orangefs_setxattr_request_s),
    OpCode.LISTXATTR: ("listxattr", orangefs_listxattr_request_s),
    OpCode.REMOVEXATTR: ("removexattr", orangefs_removexattr_request_s),
    OpCode.PARAM: ("param", orangefs_param_request_s),
    OpCode.PERF_COUNT: ("perf_count", orangefs_perf_count_request_s),
    OpCode.CANCEL: ("cancel", orangefs_op_cancel_s),
    OpCode.FSYNC: ("fsync", orangefs_fsync_request_s),
    OpCode.FSKEY: ("fs_key", orangefs_fs_key_request_s),
    OpCode.READDIRPLUS: ("readdirplus", orangefs_readdirplus_request_s),
    OpCode.FEATURES: ("features", orangefs_features_request_s),
}

#: ``struct orangefs_upcall_s`` (8528 bytes).
orangefs_upcall_s = CStruct(
    "type" / Int32ul,  # __s32 in C; see module docstring
    "uid" / Int32ul,
    "gid" / Int32ul,
    "pid" / Int32sl,
    "tgid" / Int32sl,
    Padding(4),  # hole
    "trailer_size" / Int64sl,  # always 0: upcall trailers are unused
    Padding(8),  # trailer_buf: char *
    "req"
    / OpUnion(
        UPCALL_UNION_SIZE,
        "type",
        {int(op): name / member for op, (name, member) in UPCALL_MEMBERS.items()},
        default="raw" / Blob(UPCALL_UNION_SIZE),
    ),
)


def value32_pair(value64: int) -> tuple[int, int]:
    """The ``value32[0], value32[1]`` view of a PARAM ``u.value64`` (little endian)."""
    raw = (value64 & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    return int.from_bytes(raw[:4], "little", signed=True), int.from_bytes(raw[4:], "little", signed=True)


def value64_of(value32_0: int, value32_1: int) -> int:
    """The ``u.value64`` that carries ``value32[0], value32[1]``."""
    raw = (value32_0 & 0xFFFFFFFF).to_bytes(4, "little") + (value32_1 & 0xFFFFFFFF).to_bytes(4, "little")
    return int.from_bytes(raw, "little", signed=True)


# §4.7: which field holds the fs_id the device read filters on.
_FS_ID_PATHS: dict[int, tuple[str, ...]] = {
    OpCode.FILE_IO: ("io", "refn"),
    OpCode.LOOKUP: ("lookup", "parent_refn"),
    OpCode.CREATE: ("create", "parent_refn"),
    OpCode.REMOVE: ("remove", "parent_refn"),
    OpCode.MKDIR: ("mkdir", "parent_refn"),
    OpCode.SYMLINK: ("sym", "parent_refn"),
    OpCode.GETATTR: ("getattr", "refn"),
    OpCode.READDIR: ("readdir", "refn"),
    OpCode.SETATTR: ("setattr", "refn"),
    OpCode.TRUNCATE: ("truncate", "refn"),
    OpCode.RA_FLUSH: ("ra_cache_flush", "refn"),
    OpCode.GETXATTR: ("getxattr", "refn"),
    OpCode.SETXATTR: ("setxattr", "refn"),
    OpCode.LISTXATTR: ("listxattr", "refn"),
    OpCode.REMOVEXATTR: ("removexattr", "refn"),
    OpCode.FSYNC: ("fsync", "refn"),
    OpCode.RENAME: ("rename", "old_parent_refn"),
    OpCode.STATFS: ("statfs",),
    OpCode.FS_UMOUNT: ("fs_umount",),
}


def _fs_id_offsets() -> dict[int, int]:
    from .cstruct import offsetof

    offsets = {}
    for op, path in _FS_ID_PATHS.items():
        member = UPCALL_MEMBERS[op][0]
        offsets[op] = offsetof(orangefs_upcall_s, ".".join(("req", member) + path[1:] + ("fs_id",)))
    return offsets


#: op type → byte offset of its fs_id in the upcall (§4.7), for reading it
#: straight out of upcall bytes without decoding them.
FS_ID_OFFSETS: dict[int, int] = _fs_id_offsets()


def upcall_fs_id(upcall) -> int:
    """``fsid_of_op``: the fs_id an upcall belongs to, 0 if none (spec §4.7).

    FS_MOUNT, PARAM, PERF_COUNT, CANCEL, FSKEY, READDIRPLUS and FEATURES
    belong to no filesystem and are never filtered by the device read.
    """
    path = _FS_ID_PATHS.get(upcall.type)
    if path is None:
        return 0
    node = upcall.req
    for name in path:
        node = node[name]
    return node["fs_id"]
