"""``struct orangefs_downcall_s`` and its members (downcall.h; spec §3.3), x86_64.

The kernel reads ``resp`` by the type of the *upcall* it is waiting on, not by
``downcall.type`` (which it only uses for the trailer rule, §1.4).  So
:data:`orangefs_downcall_s` selects the member by its own ``type`` — right for
the client-core side, which echoes the op — and the broker decodes with
:func:`pvfs2proto.frames.decode_downcall` giving the op's type explicitly.

Ops whose reply carries no payload (REMOVE, SETATTR, RENAME, TRUNCATE,
RA_FLUSH, FS_UMOUNT, SETXATTR, REMOVEXATTR, FSYNC, CANCEL, READDIR whose
result is the trailer, READDIRPLUS) decode with an empty ``resp``.
"""

from __future__ import annotations

from construct import Array, Int32sl, Int32ul, Int64sl, Int64ul, Padding

from .constants import (
    DOWNCALL_UNION_SIZE,
    FS_KEY_BUF_SIZE,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_MAX_XATTR_VALUELEN,
    ORANGEFS_NAME_MAX,
    PERF_COUNT_BUF_SIZE,
)
from .cstruct import Blob, CString, CStruct, OpUnion
from .enums import OpCode
from .structs import ORANGEFS_sys_attr_s, orangefs_khandle, orangefs_object_kref

orangefs_io_response = CStruct(
    "amt_complete" / Int64sl,
)

orangefs_lookup_response = CStruct(
    "refn" / orangefs_object_kref,
)

orangefs_create_response = CStruct(
    "refn" / orangefs_object_kref,
)

orangefs_symlink_response = CStruct(
    "refn" / orangefs_object_kref,
)

orangefs_getattr_response = CStruct(
    "attributes" / ORANGEFS_sys_attr_s,
    "link_target" / CString(ORANGEFS_NAME_MAX),
)

orangefs_mkdir_response = CStruct(
    "refn" / orangefs_object_kref,
)

orangefs_statfs_response = CStruct(
    "block_size" / Int64sl,
    "blocks_total" / Int64sl,
    "blocks_avail" / Int64sl,
    "files_total" / Int64sl,
    "files_avail" / Int64sl,
)

#: Note the field order: fs_id, id, then the root khandle (not a kref).
orangefs_fs_mount_response = CStruct(
    "fs_id" / Int32sl,
    "id" / Int32sl,
    "root_khandle" / orangefs_khandle,
)

orangefs_getxattr_response = CStruct(
    "val_sz" / Int32sl,
    Padding(4),  # __pad1
    "val" / Blob(ORANGEFS_MAX_XATTR_VALUELEN),
)

#: ``key`` holds up to 16 names back to back, ``lengths[i]`` bytes each
#: (including each name's NUL), so it is opaque here: see :func:`listxattr_keys`.
orangefs_listxattr_response = CStruct(
    "returned_count" / Int32sl,
    Padding(4),  # __pad1
    "token" / Int64ul,
    "key" / Blob(ORANGEFS_MAX_XATTR_LISTLEN * ORANGEFS_NAME_MAX),
    "keylen" / Int32sl,
    Padding(4),  # __pad2
    "lengths" / Array(ORANGEFS_MAX_XATTR_LISTLEN, Int32sl),
)

orangefs_param_response = CStruct(
    "u" / CStruct("value64" / Int64sl),
)

orangefs_perf_count_response = CStruct(
    "buffer" / CString(PERF_COUNT_BUF_SIZE),
)

orangefs_fs_key_response = CStruct(
    "fs_keylen" / Int32sl,
    Padding(4),  # __pad1
    "fs_key" / Blob(FS_KEY_BUF_SIZE),
)

orangefs_features_response = CStruct(
    "features" / Int64ul,
)

#: op type → (union member name, member struct); None = no payload.
DOWNCALL_MEMBERS = {
    OpCode.FILE_IO: ("io", orangefs_io_response),
    OpCode.LOOKUP: ("lookup", orangefs_lookup_response),
    OpCode.CREATE: ("create", orangefs_create_response),
    OpCode.SYMLINK: ("sym", orangefs_symlink_response),
    OpCode.GETATTR: ("getattr", orangefs_getattr_response),
    OpCode.MKDIR: ("mkdir", orangefs_mkdir_response),
    OpCode.STATFS: ("statfs", orangefs_statfs_response),
    OpCode.FS_MOUNT: ("fs_mount", orangefs_fs_mount_response),
    OpCode.GETXATTR: ("getxattr", orangefs_getxattr_response),
    OpCode.LISTXATTR: ("listxattr", orangefs_listxattr_response),
    OpCode.PARAM: ("param", orangefs_param_response),
    OpCode.PERF_COUNT: ("perf_count", orangefs_perf_count_response),
    OpCode.FSKEY: ("fs_key", orangefs_fs_key_response),
    OpCode.FEATURES: ("features", orangefs_features_response),
    OpCode.REMOVE: None,
    OpCode.READDIR: None,
    OpCode.SETATTR: None,
    OpCode.RENAME: None,
    OpCode.TRUNCATE: None,
    OpCode.RA_FLUSH: None,
    OpCode.FS_UMOUNT: None,
    OpCode.SETXATTR: None,
    OpCode.REMOVEXATTR: None,
    OpCode.CANCEL: None,
    OpCode.FSYNC: None,
    OpCode.READDIRPLUS: None,
}

#: ``struct orangefs_downcall_s`` (8224 bytes).
orangefs_downcall_s = CStruct(
    "type" / Int32ul,  # __s32 in C; coded unsigned to match OpCode values
    "status" / Int32sl,  # 0 or an OrangeFS-encoded error (§2.7)
    "trailer_size" / Int64sl,  # READDIR only
    Padding(8),  # trailer_buf: char * — always 0 on the wire
    "resp"
    / OpUnion(
        DOWNCALL_UNION_SIZE,
        "type",
        {
            int(op): (None if member is None else member[0] / member[1])
            for op, member in DOWNCALL_MEMBERS.items()
        },
        default="raw" / Blob(DOWNCALL_UNION_SIZE),
    ),
)

#: ``struct orangefs_readdir_response_s``: the first 24 bytes of a READDIR trailer.
orangefs_readdir_response_s = CStruct(
    "token" / Int64ul,
    "directory_version" / Int64ul,
    Padding(4),  # __pad2
    "orangefs_dirent_outcount" / Int32ul,
)


def listxattr_keys(listxattr) -> list[bytes]:
    """The keys of a LISTXATTR reply: ``lengths[i]`` bytes each, back to back in ``key``.

    Each key keeps the bytes the client sent (normally with its NUL), as the
    kernel hands them to listxattr(2) unchanged.  Only the first
    ``returned_count`` lengths count; the caller checks them against the
    kernel's limits (0..16 keys, each 0..256 bytes) first.
    """
    keys, pos = [], 0
    for length in listxattr.lengths[: max(0, listxattr.returned_count)]:
        keys.append(listxattr.key[pos : pos + length])
        pos += length
    return keys
