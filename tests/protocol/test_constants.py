"""Golden constants: every number of spec §1.7, §2.1–§2.8, §4.2–§4.3, transcribed by hand."""

from __future__ import annotations

import errno

import pytest

import pvfs2proto
from pvfs2proto import constants as C
from pvfs2proto import debug
from pvfs2proto.enums import (
    AttrFlags,
    AttrMask,
    DebugMaskType,
    Features,
    IoType,
    ObjType,
    OpCode,
    OpFlags,
    OpState,
    ParamOp,
    ParamRequestType,
    PerfCountType,
    Perm,
    XattrFlags,
    opname,
    state_names,
)
from pvfs2proto.errors import (
    ORANGEFS_ERROR_BIT,
    ORANGEFS_ERROR_CLASS_BITS,
    ORANGEFS_ERROR_NUMBER_BITS,
    ORANGEFS_NON_ERRNO_ERROR_BIT,
    PINT_ERRNO_MAPPING,
    ProtocolError,
    ProtocolStatus,
    errno_to_status,
    status_to_errno,
)
from pvfs2proto.ioctl import IoctlCommand, check_ioctl_command


def _cases(table: dict) -> list:
    return [pytest.param(name, value, id=name) for name, value in table.items()]


# --- §2.1 identity, magic, versions -------------------------------------------------------------------

IDENTITY = {
    "ORANGEFS_DEVREQ_MAGIC": 0x20030529,
    "ORANGEFS_SUPER_MAGIC": 0x20030528,
    "ORANGEFS_KERNEL_PROTO_VERSION": 0,
    "ORANGEFS_MINIMUM_USERSPACE_VERSION": 20903,
    "ORANGEFS_FEATURES_USERSPACE_VERSION": 20906,
    "ORANGEFS_REQDEVICE_NAME": "pvfs2-req",
    "ORANGEFS_DEV_MAGIC": ord("k"),
}


@pytest.mark.parametrize(("name", "value"), _cases(IDENTITY))
def test_identity_constant(name, value):
    """Spec §2.1: magic numbers, versions, device name and ioctl type have the kernel's values."""
    assert getattr(C, name) == value


def test_devreq_magic_decimal_value():
    """Spec §2.1: ORANGEFS_DEVREQ_MAGIC 0x20030529 is 537068841 in decimal."""
    assert C.ORANGEFS_DEVREQ_MAGIC == 537068841


def test_ioctl_type_byte_is_0x6b():
    """Spec §1.7: the ioctl magic type is 'k' (0x6B)."""
    assert C.ORANGEFS_DEV_MAGIC == 0x6B


def test_filesystem_type_name_is_pvfs2():
    """Spec §1.1: the filesystem type registered by the module is "pvfs2"."""
    assert C.ORANGEFS_FS_TYPE == "pvfs2"


@pytest.mark.parametrize(
    ("major", "minor", "sub", "version"), [(2, 9, 8, 20908), (2, 9, 7, 20907), (2, 9, 3, 20903), (2, 9, 6, 20906)]
)
def test_userspace_version_formula(major, minor, sub, version):
    """Spec §2.1/§1.4: PVFS_KERNEL_PROTO_VERSION = major·10000 + minor·100 + sub."""
    assert C.userspace_version(major, minor, sub) == version


def test_own_userspace_version_is_accepted_and_gets_features():
    """Spec §2.1/§7: our client-core's version is at least 20903 (accepted) and 20906 (gets FEATURES)."""
    assert C.PVFS2DEV_USERSPACE_VERSION >= 20906


# --- §2.2 message sizes ------------------------------------------------------------------------------------

SIZES = {
    "UPCALL_SIZE": 8528,
    "DOWNCALL_SIZE": 8224,
    "MAX_DEV_REQ_UPSIZE": 8544,
    "MAX_DEV_REQ_DOWNSIZE": 8240,
    "FRAME_HEAD_SIZE": 16,
    "UPCALL_UNION_SIZE": 8488,
    "DOWNCALL_UNION_SIZE": 8200,
    "READDIR_TRAILER_MAX": 16 * 1024 * 1024,
    "READDIR_RESPONSE_SIZE": 24,
    "READDIR_ENTRY_KHANDLE_SIZE": 16,
}


@pytest.mark.parametrize(("name", "value"), _cases(SIZES))
def test_message_size_constant(name, value):
    """Spec §2.2: the x86_64 message sizes (8528/8224 structs, 8544/8240 frames, 16 MiB trailer cap)."""
    assert getattr(C, name) == value


# --- §2.3 names and buffers -----------------------------------------------------------------------------------

LIMITS = {
    "ORANGEFS_NAME_MAX": 256,
    "ORANGEFS_MAX_SERVER_ADDR_LEN": 256,
    "ORANGEFS_MAX_XATTR_NAMELEN": 256,
    "ORANGEFS_MAX_XATTR_VALUELEN": 8192,
    "ORANGEFS_MAX_XATTR_LISTLEN": 16,
    "ORANGEFS_MAX_DEBUG_STRING_LEN": 0x800,
    "PERF_COUNT_BUF_SIZE": 4096,
    "FS_KEY_BUF_SIZE": 4096,
    "ORANGEFS_MAX_DIRENT_COUNT_READDIR": 512,
    "ORANGEFS_MAX_DIRENT_COUNT_READDIR_OLD": 96,
    "ORANGEFS_READDIR_DEFAULT_DESC_COUNT": 5,
    "ORANGEFS_READDIR_DEFAULT_DESC_SIZE": 128 * 1024,
    "ORANGEFS_BUFMAP_DEFAULT_DESC_SIZE": 4 * 1024 * 1024,
    "ORANGEFS_BUFMAP_TOTAL_LIMIT": 128 * 1024 * 1024,
    "DEBUG_HELP_STRING_SIZE": 4096,
}


@pytest.mark.parametrize(("name", "value"), _cases(LIMITS))
def test_name_and_buffer_limit(name, value):
    """Spec §2.3: name, xattr, debug-string and buffer limits have the kernel's values."""
    assert getattr(C, name) == value


def test_max_debug_string_len_is_2048():
    """Spec §2.3: ORANGEFS_MAX_DEBUG_STRING_LEN is 0x800 = 2048."""
    assert C.ORANGEFS_MAX_DEBUG_STRING_LEN == 2048


def test_userspace_readdir_buffer_is_5_by_128_kib():
    """Spec §2.3: the userspace readdir buffer is 5 × 128 KiB = 655360 bytes."""
    assert C.ORANGEFS_READDIR_DEFAULT_DESC_COUNT * C.ORANGEFS_READDIR_DEFAULT_DESC_SIZE == 655360


def test_io_buffer_default_count_is_a_documented_value():
    """Spec §2.3/§8.4: the default I/O buffer is 5 × 4 MiB (userspace header) or 10 × 4 MiB (kernel doc)."""
    assert C.ORANGEFS_BUFMAP_DEFAULT_DESC_COUNT in (5, 10)
    total = C.ORANGEFS_BUFMAP_DEFAULT_DESC_COUNT * C.ORANGEFS_BUFMAP_DEFAULT_DESC_SIZE
    assert total in (5 * 4 * 1024 * 1024, 41943040)
    assert total < C.ORANGEFS_BUFMAP_TOTAL_LIMIT


# --- §2.4 timeouts, retries, table sizes ---------------------------------------------------------------

TIMEOUTS = {
    "ORANGEFS_DEFAULT_OP_TIMEOUT_SECS": 20,
    "ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS": 900,
    "ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS": 30,
    "ORANGEFS_PURGE_RETRY_COUNT": 5,
    "ORANGEFS_DEFAULT_HASH_TABLE_SIZE": 509,
    "ORANGEFS_CACHE_TIMEOUT_MSECS": 500,
    "ORANGEFS_DCACHE_TIMEOUT_MSECS": 50,
    "ORANGEFS_GETATTR_TIMEOUT_MSECS": 50,
    "ORANGEFS_FIRST_TAG": 100,
}


@pytest.mark.parametrize(("name", "value"), _cases(TIMEOUTS))
def test_timeout_retry_and_table_size(name, value):
    """Spec §2.4: timeouts, purge retry count, hash table size, cache knobs and first tag."""
    assert getattr(C, name) == value


# --- §2.5 operation codes ------------------------------------------------------------------------------------

OPCODES = {
    "INVALID": (0xFF000000, "OP_UNKNOWN?"),
    "FILE_IO": (0xFF000001, "OP_FILE_IO"),
    "LOOKUP": (0xFF000002, "OP_LOOKUP"),
    "CREATE": (0xFF000003, "OP_CREATE"),
    "GETATTR": (0xFF000004, "OP_GETATTR"),
    "REMOVE": (0xFF000005, "OP_REMOVE"),
    "MKDIR": (0xFF000006, "OP_MKDIR"),
    "READDIR": (0xFF000007, "OP_READDIR"),
    "SETATTR": (0xFF000008, "OP_SETATTR"),
    "SYMLINK": (0xFF000009, "OP_SYMLINK"),
    "RENAME": (0xFF00000A, "OP_RENAME"),
    "STATFS": (0xFF00000B, "OP_STATFS"),
    "TRUNCATE": (0xFF00000C, "OP_TRUNCATE"),
    "RA_FLUSH": (0xFF00000D, "OP_RA_FLUSH"),
    "FS_MOUNT": (0xFF00000E, "OP_FS_MOUNT"),
    "FS_UMOUNT": (0xFF00000F, "OP_FS_UMOUNT"),
    "GETXATTR": (0xFF000010, "OP_GETXATTR"),
    "SETXATTR": (0xFF000011, "OP_SETXATTR"),
    "LISTXATTR": (0xFF000012, "OP_LISTXATTR"),
    "REMOVEXATTR": (0xFF000013, "OP_REMOVEXATTR"),
    "PARAM": (0xFF000014, "OP_PARAM"),
    "PERF_COUNT": (0xFF000015, "OP_PERF_COUNT"),
    "CANCEL": (0xFF00EE00, "OP_CANCEL"),
    "FSYNC": (0xFF00EE01, "OP_FSYNC"),
    "FSKEY": (0xFF00EE02, "OP_FSKEY"),
    "READDIRPLUS": (0xFF00EE03, "OP_READDIRPLUS"),
    "FEATURES": (0xFF00EE05, "OP_FEATURES"),
}


@pytest.mark.parametrize(("name", "value_and_string"), _cases(OPCODES))
def test_op_code_value(name, value_and_string):
    """Spec §2.5: ORANGEFS_VFS_OP_<name> has the kernel's value."""
    assert OpCode[name] == value_and_string[0]
    assert OpCode[name].kernel_name == f"ORANGEFS_VFS_OP_{name}"


@pytest.mark.parametrize(("name", "value_and_string"), _cases(OPCODES))
def test_op_code_opname_string(name, value_and_string):
    """Spec §2.5: get_opname_string() prints the op as in the table (INVALID has no string: OP_UNKNOWN?)."""
    value, string = value_and_string
    assert opname(value) == string
    assert OpCode(value).opname == string


def test_op_code_set_is_exactly_the_spec_table():
    """Spec §2.5: the op codes are exactly the 27 listed values, nothing more."""
    assert {op.name: int(op) for op in OpCode} == {name: vs[0] for name, vs in OPCODES.items()}


@pytest.mark.parametrize(
    "value", [0xFF00EE04, 0xFF000016, 0, 1, 0xFFFFFFFF, 0xFF00EE06, 0x00000001], ids=lambda v: f"{v:#010x}"
)
def test_unlisted_op_type_prints_op_unknown(value):
    """Spec §2.5: any type not in the table (including the FILE_IOX gap 0xFF00EE04) prints as "OP_UNKNOWN?"."""
    assert opname(value) == "OP_UNKNOWN?"


# --- §1.7 ioctl command values -----------------------------------------------------------------------------------

IOCTLS = {
    "GET_MAGIC": 0x40046B01,
    "GET_MAX_UPSIZE": 0x40046B02,
    "GET_MAX_DOWNSIZE": 0x40046B03,
    "MAP": 0x00006B04,
    "REMOUNT_ALL": 0x00006B05,
    "DEBUG": 0x80046B06,
    "UPSTREAM": 0x40046B07,
    "CLIENT_MASK": 0x40106B08,
    "CLIENT_STRING": 0x40086B09,
}


@pytest.mark.parametrize(("name", "value"), _cases(IOCTLS))
def test_ioctl_command_value(name, value):
    """Spec §1.7: ORANGEFS_DEV_<name> has this exact 32-bit value on x86_64."""
    assert IoctlCommand[name] == value
    assert IoctlCommand[name].kernel_name == f"ORANGEFS_DEV_{name}"
    assert check_ioctl_command(value) is IoctlCommand[name]


def test_ioctl_commands_are_exactly_nine():
    """Spec §1.7: there are exactly nine commands, numbers 1–9, and ORANGEFS_DEV_MAXNR is 10."""
    assert {c.name: int(c) for c in IoctlCommand} == IOCTLS
    assert sorted(int(c) & 0xFF for c in IoctlCommand) == list(range(1, 10))
    assert C.ORANGEFS_DEV_MAXNR == 10


@pytest.mark.parametrize(
    ("cmd", "err"),
    [
        pytest.param(0x40046A01, errno.EINVAL, id="type-not-k"),
        pytest.param(0x00006B00, errno.ENOTTY, id="nr-0"),
        pytest.param(0x00006B0A, errno.ENOTTY, id="nr-10"),
        pytest.param(0x40046B09, errno.ENOTTY, id="client-string-32bit"),
        pytest.param(0x00006B01, errno.ENOTTY, id="get-magic-wrong-direction"),
    ],
)
def test_ioctl_command_validation(cmd, err):
    """Spec §1.7: a type byte other than 'k' is EINVAL; nr 0 or ≥ 10 or an inexact value is ENOIOCTLCMD (ENOTTY)."""
    with pytest.raises(ProtocolError) as info:
        check_ioctl_command(cmd)
    assert info.value.errno == err


# --- §2.6 enumerations and bit sets ---------------------------------------------------------------------------------


def test_io_type_values():
    """Spec §2.6: enum ORANGEFS_io_type READ = 1, WRITE = 2."""
    assert {m.name: int(m) for m in IoType} == {"READ": 1, "WRITE": 2}


def test_object_type_values():
    """Spec §2.6: enum orangefs_ds_type NONE 0, METAFILE 1, DATAFILE 2, DIRECTORY 4, SYMLINK 8, DIRDATA 16, INTERNAL 32."""
    assert {m.name: int(m) for m in ObjType} == {
        "NONE": 0,
        "METAFILE": 1,
        "DATAFILE": 2,
        "DIRECTORY": 4,
        "SYMLINK": 8,
        "DIRDATA": 16,
        "INTERNAL": 32,
    }


ATTR_BITS = {
    "UID": (0, 0x1),
    "GID": (1, 0x2),
    "PERM": (2, 0x4),
    "ATIME": (3, 0x8),
    "CTIME": (4, 0x10),
    "MTIME": (5, 0x20),
    "TYPE": (6, 0x40),
    "ATIME_SET": (7, 0x80),
    "MTIME_SET": (8, 0x100),
    "SIZE": (20, 0x100000),
    "LNK_TARGET": (24, 0x1000000),
    "DFILE_COUNT": (25, 0x2000000),
    "DIRENT_COUNT": (26, 0x4000000),
    "BLKSIZE": (28, 0x10000000),
    "MIRROR_COPIES_COUNT": (29, 0x20000000),
}


@pytest.mark.parametrize(("name", "bit_and_value"), _cases(ATTR_BITS))
def test_attr_mask_bit(name, bit_and_value):
    """Spec §2.6: ORANGEFS_ATTR_SYS_<name> is this bit."""
    bit, value = bit_and_value
    assert AttrMask[name] == value == 1 << bit


COMPOSITE_MASKS = {
    "COMMON_ALL": 0x7F,
    "ALL_SETABLE": 0x3F,
    "ALL_NOHINT": 0x3710007F,
    "ALL_NOHINT_NOSIZE": 0x3700007F,
    "TYPE_AND_LNK_TARGET": 0x01000040,
}


@pytest.mark.parametrize(("name", "value"), _cases(COMPOSITE_MASKS))
def test_composite_attr_mask(name, value):
    """Spec §2.6: the composite masks the kernel sends (COMMON_ALL 0x7F … ALL_NOHINT 0x3710007F)."""
    assert AttrMask[name] == value


def test_all_nohint_is_common_all_plus_size_and_hints():
    """Spec §2.6: ALL_NOHINT = COMMON_ALL | SIZE | LNK_TARGET | DFILE_COUNT | DIRENT_COUNT | BLKSIZE | MIRROR_COPIES_COUNT."""
    assert 0x7F | 0x100000 | 0x1000000 | 0x2000000 | 0x4000000 | 0x10000000 | 0x20000000 == AttrMask.ALL_NOHINT
    assert AttrMask.ALL_NOHINT & ~AttrMask.SIZE == AttrMask.ALL_NOHINT_NOSIZE


PERM_BITS = {
    "O_EXECUTE": 0x1,
    "O_WRITE": 0x2,
    "O_READ": 0x4,
    "G_EXECUTE": 0x8,
    "G_WRITE": 0x10,
    "G_READ": 0x20,
    "U_EXECUTE": 0x40,
    "U_WRITE": 0x80,
    "U_READ": 0x100,
    "G_SGID": 0x400,
    "U_SUID": 0x800,
}


@pytest.mark.parametrize(("name", "value"), _cases(PERM_BITS))
def test_permission_bit(name, value):
    """Spec §2.6: the perms field bit for <name> (no sticky bit)."""
    assert Perm[name] == value


def test_permission_bits_are_exactly_the_table():
    """Spec §2.6: there are exactly eleven permission bits and no sticky bit (0x200)."""
    assert {m.name: int(m) for m in Perm} == PERM_BITS
    assert not any(int(m) & 0x200 for m in Perm)


def test_attribute_flags():
    """Spec §2.6: FS_IMMUTABLE_FL 0x10, FS_APPEND_FL 0x20, FS_NOATIME_FL 0x80, ORANGEFS_MIRROR_FL 0x01000000."""
    assert (AttrFlags.IMMUTABLE, AttrFlags.APPEND, AttrFlags.NOATIME, AttrFlags.MIRROR) == (0x10, 0x20, 0x80, 0x01000000)


def test_xattr_flags():
    """Spec §2.6: ORANGEFS_XATTR_CREATE = 1, ORANGEFS_XATTR_REPLACE = 2."""
    assert (XattrFlags.CREATE, XattrFlags.REPLACE) == (1, 2)


def test_lookup_link_no_follow_is_zero():
    """Spec §2.6: ORANGEFS_LOOKUP_LINK_NO_FOLLOW = 0, the only sym_follow the kernel sends."""
    assert C.ORANGEFS_LOOKUP_LINK_NO_FOLLOW == 0


TOKENS = {
    "ORANGEFS_ITERATE_START": 2147483646,
    "ORANGEFS_ITERATE_END": 2147483645,
    "ORANGEFS_ITERATE_NEXT": 2147483644,
}


@pytest.mark.parametrize(("name", "value"), _cases(TOKENS))
def test_iteration_token(name, value):
    """Spec §2.6: iteration tokens START = INT32_MAX−1, END = INT32_MAX−2, NEXT = INT32_MAX−3."""
    assert getattr(C, name) == value


def test_iteration_tokens_relative_to_int32_max():
    """Spec §2.6: the tokens are INT32_MAX − 1, − 2 and − 3."""
    int32_max = 2**31 - 1
    assert (C.ORANGEFS_ITERATE_START, C.ORANGEFS_ITERATE_END, C.ORANGEFS_ITERATE_NEXT) == (
        int32_max - 1,
        int32_max - 2,
        int32_max - 3,
    )


def test_fs_id_null_is_zero():
    """Spec §2.6: ORANGEFS_FS_ID_NULL = 0."""
    assert C.ORANGEFS_FS_ID_NULL == 0


def test_param_request_type():
    """Spec §2.6: enum orangefs_param_request_type SET = 1, GET = 2."""
    assert {m.name: int(m) for m in ParamRequestType} == {"SET": 1, "GET": 2}


PARAM_OPS = {
    1: "ACACHE_TIMEOUT_MSECS",
    2: "ACACHE_HARD_LIMIT",
    3: "ACACHE_SOFT_LIMIT",
    4: "ACACHE_RECLAIM_PERCENTAGE",
    5: "PERF_TIME_INTERVAL_SECS",
    6: "PERF_HISTORY_SIZE",
    7: "PERF_RESET",
    8: "NCACHE_TIMEOUT_MSECS",
    9: "NCACHE_HARD_LIMIT",
    10: "NCACHE_SOFT_LIMIT",
    11: "NCACHE_RECLAIM_PERCENTAGE",
    12: "STATIC_ACACHE_TIMEOUT_MSECS",
    13: "STATIC_ACACHE_HARD_LIMIT",
    14: "STATIC_ACACHE_SOFT_LIMIT",
    15: "STATIC_ACACHE_RECLAIM_PERCENTAGE",
    16: "CLIENT_DEBUG",
    17: "CCACHE_TIMEOUT_SECS",
    18: "CCACHE_HARD_LIMIT",
    19: "CCACHE_SOFT_LIMIT",
    20: "CCACHE_RECLAIM_PERCENTAGE",
    21: "CAPCACHE_TIMEOUT_SECS",
    22: "CAPCACHE_HARD_LIMIT",
    23: "CAPCACHE_SOFT_LIMIT",
    24: "CAPCACHE_RECLAIM_PERCENTAGE",
    25: "TWO_MASK_VALUES",
    26: "READAHEAD_SIZE",
    27: "READAHEAD_COUNT",
    28: "READAHEAD_COUNT_SIZE",
    29: "READAHEAD_READCNT",
}


@pytest.mark.parametrize(("value", "name"), [pytest.param(v, n, id=f"{v}-{n}") for v, n in PARAM_OPS.items()])
def test_param_request_op(value, name):
    """Spec §2.6: enum orangefs_param_request_op value <n> is <name>."""
    assert ParamOp(value).name == name
    assert ParamOp[name] == value


def test_param_request_ops_are_exactly_1_to_29():
    """Spec §2.6: the param ops are exactly the values 1–29."""
    assert sorted(int(m) for m in ParamOp) == list(range(1, 30))


def test_perf_count_request_type():
    """Spec §2.6: perf-count request type ACACHE = 1, NCACHE = 2, CAPCACHE = 3."""
    assert {m.name: int(m) for m in PerfCountType} == {"ACACHE": 1, "NCACHE": 2, "CAPCACHE": 3}


def test_features_readahead_bit():
    """Spec §2.6: ORANGEFS_FEATURE_READAHEAD = 1 in the u64 features bitmask."""
    assert Features.READAHEAD == 1
    assert [int(m) for m in Features] == [1]


def test_debug_mask_type():
    """Spec §2.6: dev_mask_info_s.mask_type KERNEL_MASK = 0, CLIENT_MASK = 1."""
    assert {m.name: int(m) for m in DebugMaskType} == {"KERNEL_MASK": 0, "CLIENT_MASK": 1}


# --- §4.2 op states, §4.3 service_operation flags ---------------------------------------------------------------------


def test_op_state_values():
    """Spec §4.2: op states UNKNOWN 0, WAITING 1, INPROGR 2, SERVICED 4, PURGED 8, GIVEN_UP 16."""
    assert {m.name: int(m) for m in OpState.__members__.values()} == {
        "UNKNOWN": 0,
        "WAITING": 1,
        "INPROGR": 2,
        "SERVICED": 4,
        "PURGED": 8,
        "GIVEN_UP": 16,
    }


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (0, "unknown"),
        (1, "waiting"),
        (2, "inprogr"),
        (4, "serviced"),
        (8, "purged"),
        (16, "given_up"),
        (9, "waiting|purged"),
        (10, "inprogr|purged"),
        (17, "waiting|given_up"),
        (18, "inprogr|given_up"),
        (25, "waiting|purged|given_up"),
        (26, "inprogr|purged|given_up"),
    ],
)
def test_state_names_rendering(state, text):
    """Spec §4.2: PURGED and GIVEN_UP are OR-ed onto a state, so composites such as 18 render as "inprogr|given_up"."""
    assert state_names(state) == text


def test_service_operation_flags():
    """Spec §4.3: INTERRUPTIBLE 1, PRIORITY 2, CANCELLATION 4, NO_MUTEX 8, ASYNC 16, WRITEBACK 32."""
    assert {m.name: int(m) for m in OpFlags} == {
        "INTERRUPTIBLE": 1,
        "PRIORITY": 2,
        "CANCELLATION": 4,
        "NO_MUTEX": 8,
        "ASYNC": 16,
        "WRITEBACK": 32,
    }


# --- §2.7 error encoding -----------------------------------------------------------------------------------------------


def test_error_bit_layout():
    """Spec §2.7: ERROR_BIT is bit 30, NON_ERRNO_ERROR_BIT bit 29, class bits 0x380, number bits 0x7F."""
    assert ORANGEFS_ERROR_BIT == 0x40000000
    assert ORANGEFS_NON_ERRNO_ERROR_BIT == 0x20000000
    assert ORANGEFS_ERROR_CLASS_BITS == 0x380
    assert ORANGEFS_ERROR_NUMBER_BITS == 0x7F


PROTOCOL_ERRORS = {
    "ECANCEL": 0x60000001,
    "EDEVINIT": 0x60000002,
    "EDETAIL": 0x60000003,
    "EHOSTNTFD": 0x60000004,
    "EADDRNTFD": 0x60000005,
    "ENORECVR": 0x60000006,
    "ETRYAGAIN": 0x60000007,
    "ENOTPVFS": 0x60000008,
    "ESECURITY": 0x60000009,
}


@pytest.mark.parametrize(("name", "value"), _cases(PROTOCOL_ERRORS))
def test_protocol_error_code(name, value):
    """Spec §2.7: ORANGEFS_<name> protocol error has this absolute value."""
    assert getattr(ProtocolStatus, name) == value


@pytest.mark.parametrize(("name", "value"), _cases(PROTOCOL_ERRORS))
def test_protocol_error_normalises(name, value):
    """Spec §2.7 rule 3: a negated ECANCEL becomes ETIMEDOUT, every other protocol error EINVAL."""
    expected = errno.ETIMEDOUT if name == "ECANCEL" else errno.EINVAL
    assert status_to_errno(-value) == expected


ERRNO_TABLE = [
    "0", "EPERM", "ENOENT", "EINTR", "EIO", "ENXIO", "EBADF", "EAGAIN", "ENOMEM", "EFAULT",  # 0-9
    "EBUSY", "EEXIST", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL", "EMFILE", "EFBIG", "ENOSPC", "EROFS",  # 10-19
    "EMLINK", "EPIPE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "EWOULDBLOCK",  # 20-28
    "ENOMSG", "EUNATCH", "EBADR", "EDEADLOCK", "ENODATA", "ETIME", "ENONET", "EREMOTE", "ECOMM",  # 29-37
    "EPROTO", "EBADMSG", "EOVERFLOW", "ERESTART", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT",  # 38-44
    "EPROTONOSUPPORT", "EOPNOTSUPP", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH",  # 45-50
    "ENETRESET", "ENOBUFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY",  # 51-57
    "EACCES", "ECONNRESET", "ERANGE",  # 58-60
]  # fmt: skip


def _errno_value(name: str) -> int:
    return 0 if name == "0" else getattr(errno, name)


def test_errno_table_has_61_entries():
    """Spec §2.7: PINT_errno_mapping has 61 entries (indices 0–60)."""
    assert len(ERRNO_TABLE) == 61
    assert len(PINT_ERRNO_MAPPING) == 61


@pytest.mark.parametrize(
    ("index", "name"), [pytest.param(i, n, id=f"{i}-{n}") for i, n in enumerate(ERRNO_TABLE)]
)
def test_errno_table_entry(index, name):
    """Spec §2.7: PINT_errno_mapping[index] is this errno, and −(ERROR_BIT | index) normalises to it."""
    assert PINT_ERRNO_MAPPING[index] == _errno_value(name)
    assert status_to_errno(-(0x40000000 | index)) == _errno_value(name)


def test_encoded_enoent_example():
    """Spec §2.7: "no such file" is sent as −(0x40000000 | 2) = −1073741826."""
    assert errno_to_status(errno.ENOENT) == -1073741826
    assert status_to_errno(-1073741826) == errno.ENOENT


def test_efault_and_enomem_encodings():
    """Spec §1.4: EFAULT-encoded is −(ERROR_BIT | 9) = −0x40000009 and ENOMEM-encoded −(ERROR_BIT | 8)."""
    assert errno_to_status(errno.EFAULT) == -0x40000009
    assert errno_to_status(errno.ENOMEM) == -(0x40000000 | 8)


@pytest.mark.parametrize(
    ("status", "err"),
    [
        pytest.param(0, 0, id="zero-success"),
        pytest.param(0x40000002, errno.ENOENT, id="positive-is-negated"),
        pytest.param(-2, errno.EINVAL, id="plain-errno-not-understood"),
        pytest.param(-(0x40000000 | 61), errno.EINVAL, id="index-61-past-table"),
        pytest.param(-(0x40000000 | 0x7F), errno.EINVAL, id="index-127-past-table"),
        pytest.param(-(0x40000000 | 0x380 | 2), errno.ENOENT, id="class-bits-ignored"),
        pytest.param(-(0x40000000 | 0x100 | 13), errno.ENOTDIR, id="class-bit-8-ignored"),
    ],
)
def test_status_normalisation_rules(status, err):
    """Spec §2.7: orangefs_normalize_to_errno — 0 success, positive negated, class bits ignored, index ≥ 61 and plain errnos EINVAL."""
    assert status_to_errno(status) == err


# --- §2.8 kernel debug keywords -------------------------------------------------------------------------------------

DEBUG_KEYWORDS = {
    "super": 1 << 0,
    "inode": 1 << 1,
    "file": 1 << 2,
    "dir": 1 << 3,
    "utils": 1 << 4,
    "wait": 1 << 5,
    "acl": 1 << 6,
    "dcache": 1 << 7,
    "dev": 1 << 8,
    "name": 1 << 9,
    "bufmap": 1 << 10,
    "cache": 1 << 11,
    "debugfs": 1 << 12,
    "xattr": 1 << 13,
    "init": 1 << 14,
    "sysfs": 1 << 15,
}


@pytest.mark.parametrize(("name", "value"), _cases(DEBUG_KEYWORDS))
def test_kernel_debug_keyword_mask(name, value):
    """Spec §2.8: kernel gossip keyword <name> is this bit."""
    assert debug.KERNEL_DEBUG_KEYWORDS[name] == value
    assert debug.kernel_keywords_to_mask(name) == value
    assert debug.kernel_mask_to_keywords(value) == name


def test_kernel_debug_keywords_are_exactly_sixteen_in_order():
    """Spec §2.8: sixteen keywords super … sysfs, in bit order; GOSSIP_MAX_NR = 16."""
    assert list(debug.KERNEL_DEBUG_KEYWORDS.items()) == list(DEBUG_KEYWORDS.items())
    assert debug.GOSSIP_MAX_NR == 16


def test_kernel_debug_none_and_all():
    """Spec §2.8: "none" is mask 0 and "all" is 0xFFFF."""
    assert debug.GOSSIP_NO_DEBUG == 0
    assert debug.GOSSIP_MAX_DEBUG == 0xFFFF
    assert debug.kernel_keywords_to_mask("none") == 0
    assert debug.kernel_keywords_to_mask("all") == 0xFFFF
    assert debug.kernel_mask_to_keywords(0) == "none"
    assert debug.kernel_mask_to_keywords(0xFFFF) == "all"


def test_package_reexports_the_spec_names():
    """Spec §2: the package's top level exposes the constants and enums under the kernel's names."""
    assert pvfs2proto.ORANGEFS_DEVREQ_MAGIC == 0x20030529
    assert pvfs2proto.MAX_DEV_REQ_UPSIZE == 8544
    assert pvfs2proto.MAX_DEV_REQ_DOWNSIZE == 8240
    assert pvfs2proto.OpCode is OpCode
    assert pvfs2proto.IoctlCommand is IoctlCommand
