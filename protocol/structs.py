"""Building blocks shared by upcalls and downcalls (spec §3.1), x86_64 layout.

Python names are the kernel's struct names.  Pads the kernel names (``__pad1``)
and holes the compiler inserts are both ``Padding`` with a comment: they
encode as zero and are ignored on decode, like every pointer field (pointers
mean nothing across the device boundary; spec §0.3).
"""

from __future__ import annotations

from construct import Bytes, Int32sl, Int32ul, Int64sl, Int64ul, Padding

from .constants import ORANGEFS_MAX_XATTR_VALUELEN, ORANGEFS_NAME_MAX
from .cstruct import Blob, CString, CStruct

#: Size of ``struct orangefs_khandle``: 16 opaque bytes.
KHANDLE_SIZE = 16

#: ``struct orangefs_khandle`` (16 bytes, align 8): opaque ``u8 u[16]``.
orangefs_khandle = Bytes(KHANDLE_SIZE)

#: ``struct orangefs_object_kref`` (24 bytes).
orangefs_object_kref = CStruct(
    "khandle" / orangefs_khandle,
    "fs_id" / Int32sl,
    Padding(4),  # __pad1
)

#: ``struct ORANGEFS_sys_attr_s`` (136 bytes).
ORANGEFS_sys_attr_s = CStruct(
    "owner" / Int32ul,
    "group" / Int32ul,
    "perms" / Int32ul,
    Padding(4),  # hole
    "atime" / Int64ul,
    "mtime" / Int64ul,
    "ctime" / Int64ul,
    "size" / Int64sl,
    Padding(8),  # link_target: char * — the target travels in getattr's own field
    "dfile_count" / Int32sl,
    "distr_dir_servers_initial" / Int32sl,
    "distr_dir_servers_max" / Int32sl,
    "distr_dir_split_size" / Int32sl,
    "mirror_copies_count" / Int32ul,
    Padding(4),  # hole
    Padding(8),  # dist_name: char *
    Padding(8),  # dist_params: char *
    "dirent_count" / Int64sl,
    "objtype" / Int32sl,  # enum orangefs_ds_type
    Padding(4),  # hole
    "flags" / Int64ul,
    "mask" / Int32ul,
    Padding(4),  # hole
    "blksize" / Int64sl,
)

#: ``struct ORANGEFS_keyval_pair`` (8456 bytes, align 4).
ORANGEFS_keyval_pair = CStruct(
    "key" / CString(ORANGEFS_NAME_MAX),
    "key_sz" / Int32sl,
    "val_sz" / Int32sl,
    "val" / Blob(ORANGEFS_MAX_XATTR_VALUELEN),
)


def khandle_to_ino(khandle: bytes) -> int:
    """``orangefs_khandle_to_ino``: the inode number the kernel derives from a khandle.

    XOR-folds the 16 bytes to 8: ino byte k = u[k] ^ u[k+4] and byte 4+k =
    u[12+k] ^ u[8+k] for k = 0..3, read as a little-endian u64.
    """
    u = khandle
    low = bytes(u[k] ^ u[k + 4] for k in range(4))
    high = bytes(u[12 + k] ^ u[8 + k] for k in range(4))
    return int.from_bytes(low + high, "little")


def khandle_key(khandle: bytes) -> int:
    """Sort key of a khandle: the kernel compares them as 16-byte little-endian numbers."""
    return int.from_bytes(khandle, "little")


# The perms word shares the mode's bit positions for rwx and the two set-id
# bits (S_ISGID 0o2000 = G_SGID 0x400, S_ISUID 0o4000 = U_SUID 0x800); the
# sticky bit has no place in it (ORANGEFS_util_translate_mode / orangefs_inode_perms).
_PERMS_BITS = 0o6777


def mode_to_perms(mode: int) -> int:
    """``ORANGEFS_util_translate_mode``: mode bits → the sys_attr ``perms`` word (no sticky bit)."""
    return mode & _PERMS_BITS


def perms_to_mode(perms: int) -> int:
    """``orangefs_inode_perms``: the sys_attr ``perms`` word → mode permission bits."""
    return perms & _PERMS_BITS


# The sys_attr times are __u64 on the wire, but both ends mean a signed
# 64-bit count of seconds: the kernel casts its time64_t tv_sec in and out
# (orangefs_inode_setattr, orangefs_inode_getattr) and the server keeps a
# PVFS_time (int64_t).  So 2**63 and above are times before 1970.
_U64 = (1 << 64) - 1


def time_from_wire(value: int) -> int:
    """A sys_attr time field (u64) → seconds since the epoch, negative before 1970."""
    value &= _U64
    return value - (1 << 64) if value >> 63 else value


def time_to_wire(seconds: int) -> int:
    """Seconds since the epoch (a signed 64-bit value) → the sys_attr u64 field."""
    return seconds & _U64
