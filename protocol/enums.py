"""Enumerations and bit sets of the OrangeFS kernel interface (spec §2.5–§2.6, §4.2–§4.3).

Names are the kernel's with the common prefix dropped (``ORANGEFS_VFS_OP_FILE_IO``
is ``OpCode.FILE_IO``); the full kernel name is kept in each docstring or
comment so a grep for either finds it.  All are ``IntEnum``/``IntFlag`` so they
compare equal to the raw integers that arrive on the wire.
"""

from __future__ import annotations

import enum
import functools


class OpCode(enum.IntEnum):
    """``ORANGEFS_VFS_OP_*``: the ``type`` of every upcall and downcall (§2.5).

    The C field is an ``__s32``; we keep the unsigned spelling (0xFF000001…)
    because that is how the kernel writes the constants.  The bytes are the
    same either way.
    """

    INVALID = 0xFF000000
    FILE_IO = 0xFF000001
    LOOKUP = 0xFF000002
    CREATE = 0xFF000003
    GETATTR = 0xFF000004
    REMOVE = 0xFF000005
    MKDIR = 0xFF000006
    READDIR = 0xFF000007
    SETATTR = 0xFF000008
    SYMLINK = 0xFF000009
    RENAME = 0xFF00000A
    STATFS = 0xFF00000B
    TRUNCATE = 0xFF00000C
    RA_FLUSH = 0xFF00000D
    FS_MOUNT = 0xFF00000E
    FS_UMOUNT = 0xFF00000F
    GETXATTR = 0xFF000010
    SETXATTR = 0xFF000011
    LISTXATTR = 0xFF000012
    REMOVEXATTR = 0xFF000013
    PARAM = 0xFF000014
    PERF_COUNT = 0xFF000015
    CANCEL = 0xFF00EE00
    FSYNC = 0xFF00EE01
    FSKEY = 0xFF00EE02
    READDIRPLUS = 0xFF00EE03
    FEATURES = 0xFF00EE05

    @property
    def opname(self) -> str:
        """``get_opname_string()``: what the kernel prints for this op."""
        return opname(self)

    @property
    def kernel_name(self) -> str:
        """The C macro name, e.g. ``ORANGEFS_VFS_OP_FILE_IO``."""
        return f"ORANGEFS_VFS_OP_{self.name}"


def opname(op_type: int) -> str:
    """``get_opname_string()`` for any type value: ``OP_FILE_IO`` …, ``OP_UNKNOWN?``.

    INVALID has no string in the kernel either; like every unlisted value it
    prints as ``OP_UNKNOWN?``.
    """
    try:
        op = OpCode(op_type)
    except ValueError:
        return "OP_UNKNOWN?"
    if op is OpCode.INVALID:
        return "OP_UNKNOWN?"
    return f"OP_{op.name}"


class IoType(enum.IntEnum):
    """``enum ORANGEFS_io_type``."""

    READ = 1
    WRITE = 2


class ObjType(enum.IntEnum):
    """``enum orangefs_ds_type``; inodes may only be METAFILE, DIRECTORY or SYMLINK."""

    NONE = 0
    METAFILE = 1
    DATAFILE = 2
    DIRECTORY = 4
    SYMLINK = 8
    DIRDATA = 16
    INTERNAL = 32


class AttrMask(enum.IntFlag):
    """``ORANGEFS_ATTR_SYS_*``: which sys_attr fields are valid or wanted."""

    UID = 0x1
    GID = 0x2
    PERM = 0x4
    ATIME = 0x8
    CTIME = 0x10
    MTIME = 0x20
    TYPE = 0x40
    ATIME_SET = 0x80
    MTIME_SET = 0x100
    SIZE = 0x100000
    LNK_TARGET = 0x1000000
    DFILE_COUNT = 0x2000000
    DIRENT_COUNT = 0x4000000
    BLKSIZE = 0x10000000
    MIRROR_COPIES_COUNT = 0x20000000

    # The composites the kernel actually sends (§2.6).
    COMMON_ALL = 0x7F
    ALL_SETABLE = 0x3F
    ALL_NOHINT = 0x3710007F
    ALL_NOHINT_NOSIZE = 0x3700007F
    TYPE_AND_LNK_TARGET = 0x01000040


class Perm(enum.IntFlag):
    """``ORANGEFS_*_EXECUTE/WRITE/READ``, ``G_SGID``, ``U_SUID``: the ``perms`` field.

    Not the same bit positions as a mode for the set-id bits; there is no sticky
    bit.  Use :func:`pvfs2proto.attrs.mode_to_perms` and its inverse.
    """

    O_EXECUTE = 0x1
    O_WRITE = 0x2
    O_READ = 0x4
    G_EXECUTE = 0x8
    G_WRITE = 0x10
    G_READ = 0x20
    U_EXECUTE = 0x40
    U_WRITE = 0x80
    U_READ = 0x100
    G_SGID = 0x400
    U_SUID = 0x800


class AttrFlags(enum.IntFlag):
    """The sys_attr ``flags`` word (inode flags, §2.6)."""

    IMMUTABLE = 0x10  # FS_IMMUTABLE_FL
    APPEND = 0x20  # FS_APPEND_FL
    NOATIME = 0x80  # FS_NOATIME_FL
    MIRROR = 0x01000000  # ORANGEFS_MIRROR_FL


class XattrFlags(enum.IntFlag):
    """``ORANGEFS_XATTR_CREATE`` / ``ORANGEFS_XATTR_REPLACE`` (setxattr.flags)."""

    CREATE = 1
    REPLACE = 2


class OpFlags(enum.IntFlag):
    """``service_operation`` flags (§4.3)."""

    INTERRUPTIBLE = 1  # ORANGEFS_OP_INTERRUPTIBLE
    PRIORITY = 2  # ORANGEFS_OP_PRIORITY: head of the request list
    CANCELLATION = 4  # ORANGEFS_OP_CANCELLATION: defined, not acted on
    NO_MUTEX = 8  # ORANGEFS_OP_NO_MUTEX (v4.6: ORANGEFS_OP_NO_SEMAPHORE)
    ASYNC = 16  # ORANGEFS_OP_ASYNC: ignored by current kernels
    WRITEBACK = 32  # ORANGEFS_OP_WRITEBACK: uninterruptible wait


class OpState(enum.IntFlag):
    """``OP_VFS_STATE_*`` (§4.2).

    WAITING, INPROGR and SERVICED replace each other; PURGED and GIVEN_UP are
    OR-ed onto whatever is there, so test with ``&``.
    """

    UNKNOWN = 0
    WAITING = 1
    INPROGR = 2
    SERVICED = 4
    PURGED = 8
    GIVEN_UP = 16


@functools.lru_cache(maxsize=256)
def state_names(state: int) -> str:
    """Render op state bits the way pvfs2ctl shows them, e.g. ``inprogr|given_up``."""
    if state == 0:
        return "unknown"
    names = [flag.name.lower() for flag in OpState if flag and state & flag]
    rest = state & ~sum(OpState)
    if rest:
        names.append(hex(rest))
    return "|".join(names)


class Features(enum.IntFlag):
    """``ORANGEFS_FEATURE_*`` (FEATURES downcall)."""

    READAHEAD = 1


class ParamRequestType(enum.IntEnum):
    """``enum orangefs_param_request_type``."""

    SET = 1
    GET = 2


class ParamOp(enum.IntEnum):
    """``enum orangefs_param_request_op`` (PARAM upcall ``op``)."""

    ACACHE_TIMEOUT_MSECS = 1
    ACACHE_HARD_LIMIT = 2
    ACACHE_SOFT_LIMIT = 3
    ACACHE_RECLAIM_PERCENTAGE = 4
    PERF_TIME_INTERVAL_SECS = 5
    PERF_HISTORY_SIZE = 6
    PERF_RESET = 7
    NCACHE_TIMEOUT_MSECS = 8
    NCACHE_HARD_LIMIT = 9
    NCACHE_SOFT_LIMIT = 10
    NCACHE_RECLAIM_PERCENTAGE = 11
    STATIC_ACACHE_TIMEOUT_MSECS = 12
    STATIC_ACACHE_HARD_LIMIT = 13
    STATIC_ACACHE_SOFT_LIMIT = 14
    STATIC_ACACHE_RECLAIM_PERCENTAGE = 15
    CLIENT_DEBUG = 16
    CCACHE_TIMEOUT_SECS = 17
    CCACHE_HARD_LIMIT = 18
    CCACHE_SOFT_LIMIT = 19
    CCACHE_RECLAIM_PERCENTAGE = 20
    CAPCACHE_TIMEOUT_SECS = 21
    CAPCACHE_HARD_LIMIT = 22
    CAPCACHE_SOFT_LIMIT = 23
    CAPCACHE_RECLAIM_PERCENTAGE = 24
    TWO_MASK_VALUES = 25
    READAHEAD_SIZE = 26
    READAHEAD_COUNT = 27
    READAHEAD_COUNT_SIZE = 28
    READAHEAD_READCNT = 29


class PerfCountType(enum.IntEnum):
    """``ORANGEFS_PERF_COUNT_REQUEST_*``."""

    ACACHE = 1
    NCACHE = 2
    CAPCACHE = 3


class DebugMaskType(enum.IntEnum):
    """``dev_mask_info_s.mask_type``."""

    KERNEL_MASK = 0
    CLIENT_MASK = 1
