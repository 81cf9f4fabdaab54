"""Numbers of the OrangeFS kernel interface, with the kernel's names.

Every value here is a fact read from the kernel headers (``protocol.h``,
``orangefs-dev-proto.h``, ``orangefs-kernel.h``) or the userspace
``pint-dev-shared.h``, as tabulated in spec §2.  The sizes that follow from
struct layouts (``MAX_DEV_REQ_UPSIZE`` and friends) are *also* derived from the
construct declarations in :mod:`pvfs2proto.frames`; the tests pin the two
against each other so a mis-declared struct cannot hide.
"""

from __future__ import annotations

# --- §2.1 identity, magic, versions ------------------------------------------

#: ``ORANGEFS_DEVREQ_MAGIC``: second word of every read and write frame.
ORANGEFS_DEVREQ_MAGIC = 0x20030529
#: ``ORANGEFS_SUPER_MAGIC``: statfs ``f_type`` of a mounted OrangeFS.
ORANGEFS_SUPER_MAGIC = 0x20030528
#: ``ORANGEFS_KERNEL_PROTO_VERSION``: what the upstream kernel puts in every
#: read frame ("upstream kernel module").
ORANGEFS_KERNEL_PROTO_VERSION = 0
#: ``ORANGEFS_MINIMUM_USERSPACE_VERSION``: downcall writes below it get EPROTO.
ORANGEFS_MINIMUM_USERSPACE_VERSION = 20903
#: A userspace version at or above this makes the kernel send FEATURES
#: (OrangeFS 2.9.6, super.c).
ORANGEFS_FEATURES_USERSPACE_VERSION = 20906
#: The version our own client-core writes: OrangeFS "2.10.0" by the userspace
#: formula major*10000 + minor*100 + sub (pint-dev-shared.h).
PVFS2DEV_USERSPACE_VERSION = 21000


def userspace_version(major: int, minor: int, sub: int) -> int:
    """``PVFS_KERNEL_PROTO_VERSION`` for an OrangeFS release, e.g. 2.9.8 → 20908."""
    return major * 10000 + minor * 100 + sub


#: ``ORANGEFS_REQDEVICE_NAME``: the character device (and our socket) name.
ORANGEFS_REQDEVICE_NAME = "pvfs2-req"
#: Filesystem type name registered by the module.
ORANGEFS_FS_TYPE = "pvfs2"

# --- §2.2 message sizes (x86_64) ---------------------------------------------

#: sizeof(struct orangefs_upcall_s)
UPCALL_SIZE = 8528
#: sizeof(struct orangefs_downcall_s)
DOWNCALL_SIZE = 8224
#: version + magic + tag in front of every read and write frame.
FRAME_HEAD_SIZE = 16
#: ``MAX_DEV_REQ_UPSIZE``: a device read must ask for exactly this many bytes.
MAX_DEV_REQ_UPSIZE = FRAME_HEAD_SIZE + UPCALL_SIZE  # 8544
#: ``MAX_DEV_REQ_DOWNSIZE``: a successful non-readdir downcall write is exactly
#: this long; anything shorter is EFAULT.
MAX_DEV_REQ_DOWNSIZE = FRAME_HEAD_SIZE + DOWNCALL_SIZE  # 8240
#: Size of the upcall union (``req``) and downcall union (``resp``).
UPCALL_UNION_SIZE = 8488
DOWNCALL_UNION_SIZE = 8200
#: Largest READDIR trailer the current kernel accepts (inclusive); larger makes
#: the readdir fail with EIO (dir.c).
READDIR_TRAILER_MAX = 1 << 24
#: sizeof(struct orangefs_readdir_response_s); the emulator refuses a
#: successful READDIR trailer shorter than this (the kernel has no lower bound).
READDIR_RESPONSE_SIZE = 24
#: Bytes of khandle after each readdir entry name.
READDIR_ENTRY_KHANDLE_SIZE = 16

# --- §2.3 names and buffers ----------------------------------------------------

#: ``ORANGEFS_NAME_MAX``: size of every name and symlink-target field; names
#: may be at most 255 bytes (ENAMETOOLONG above).
ORANGEFS_NAME_MAX = 256
#: ``ORANGEFS_MAX_SERVER_ADDR_LEN``: the mount device string field.
ORANGEFS_MAX_SERVER_ADDR_LEN = 256
#: ``ORANGEFS_MAX_XATTR_NAMELEN``: xattr names must be shorter (EINVAL).
ORANGEFS_MAX_XATTR_NAMELEN = 256
#: ``ORANGEFS_MAX_XATTR_VALUELEN``: larger setxattr values are EINVAL.
ORANGEFS_MAX_XATTR_VALUELEN = 8192
#: ``ORANGEFS_MAX_XATTR_LISTLEN``: keys per LISTXATTR round trip.
ORANGEFS_MAX_XATTR_LISTLEN = 16
#: ``ORANGEFS_MAX_DEBUG_STRING_LEN``: PARAM s_value, CLIENT_STRING buffer.
ORANGEFS_MAX_DEBUG_STRING_LEN = 0x800
#: ``PERF_COUNT_BUF_SIZE`` and ``FS_KEY_BUF_SIZE``.
PERF_COUNT_BUF_SIZE = 4096
FS_KEY_BUF_SIZE = 4096
#: ``ORANGEFS_MAX_DIRENT_COUNT_READDIR`` (96 in v4.6–≈4.14 kernels).
ORANGEFS_MAX_DIRENT_COUNT_READDIR = 512
ORANGEFS_MAX_DIRENT_COUNT_READDIR_OLD = 96
#: ``ORANGEFS_READDIR_DEFAULT_DESC_COUNT``: readdir slots, all released kernels.
ORANGEFS_READDIR_DEFAULT_DESC_COUNT = 5
#: Userspace readdir buffer slot size (pint-dev-shared.h): 5 x 128 KiB.
ORANGEFS_READDIR_DEFAULT_DESC_SIZE = 128 * 1024
#: Userspace I/O buffer defaults; the kernel documentation says 10 x 4 MiB.
ORANGEFS_BUFMAP_DEFAULT_DESC_COUNT = 10
ORANGEFS_BUFMAP_DEFAULT_DESC_SIZE = 4 * 1024 * 1024
#: The userspace library refuses an I/O buffer of this total size or more.
ORANGEFS_BUFMAP_TOTAL_LIMIT = 128 * 1024 * 1024
#: ``DEBUG_HELP_STRING_SIZE`` (debugfs debug-help).
DEBUG_HELP_STRING_SIZE = 4096
#: PAGE_SIZE on x86_64; MAP geometry is checked against it.
PAGE_SIZE = 4096
#: Kernel readahead asks for up to this much in one FILE_IO (inode.c).
ORANGEFS_READAHEAD_MAX = 4 * 1024 * 1024

# --- §2.4 timeouts, retries, table sizes ---------------------------------------

#: ``ORANGEFS_DEFAULT_OP_TIMEOUT_SECS``
ORANGEFS_DEFAULT_OP_TIMEOUT_SECS = 20
#: ``ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS``
ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS = 900
#: ``ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS``: longest wait for a buffer to appear.
ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS = 30
#: ``ORANGEFS_PURGE_RETRY_COUNT``: purges 1-5 give EAGAIN, the 6th EIO.
ORANGEFS_PURGE_RETRY_COUNT = 5
#: ``hash_table_size`` module parameter default: in-progress buckets.
ORANGEFS_DEFAULT_HASH_TABLE_SIZE = 509
#: Module parameter defaults for the cache knobs (milliseconds).
ORANGEFS_CACHE_TIMEOUT_MSECS = 500
ORANGEFS_DCACHE_TIMEOUT_MSECS = 50
ORANGEFS_GETATTR_TIMEOUT_MSECS = 50
#: First tag handed out (orangefs-cache.c); a wrap to 0 restarts here.
ORANGEFS_FIRST_TAG = 100

# --- §2.6 iteration tokens, lookup, fs_id --------------------------------------

#: ``ORANGEFS_ITERATE_START`` (= ``ORANGEFS_READDIR_START``)
ORANGEFS_ITERATE_START = 2147483646
#: ``ORANGEFS_ITERATE_END`` (= ``ORANGEFS_READDIR_END``)
ORANGEFS_ITERATE_END = 2147483645
#: ``ORANGEFS_ITERATE_NEXT``: older readdir only.
ORANGEFS_ITERATE_NEXT = 2147483644
#: ``ORANGEFS_LOOKUP_LINK_NO_FOLLOW``: the only sym_follow the kernel sends.
ORANGEFS_LOOKUP_LINK_NO_FOLLOW = 0
ORANGEFS_LOOKUP_LINK_FOLLOW = 1
#: ``ORANGEFS_FS_ID_NULL``: a mount reply carrying it fails the mount (EINVAL).
ORANGEFS_FS_ID_NULL = 0

# --- §1.7 ioctl numbering -------------------------------------------------------

#: ioctl type byte ('k').
ORANGEFS_DEV_MAGIC = ord("k")
#: ``ORANGEFS_DEV_MAXNR``: numbers 1..9 exist, 0 and >= 10 are ENOTTY.
ORANGEFS_DEV_MAXNR = 10
