"""Golden struct layouts: sizeof, offsetof and zeroed pads (spec §3.1–§3.6, x86_64).

Every number below is transcribed by hand from the spec's tables; nothing is
computed from the package's declarations.  Each struct is written as a
:class:`Layout`: its size, its named fields (offset, size, C type) and the
ranges the kernel leaves unnamed — pads (``__padN``), compiler holes and
pointers, which the package declares as ``Padding`` and which must travel as
zero bytes (spec §0.3).  Nested structs are expanded by composing the tables
(a kref at offset 24 puts its ``fs_id`` at 24 + 16), exactly as the spec's
"add 40" / "add 56" instructions do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
from construct import Container, ListContainer

from pvfs2proto import downcall as down
from pvfs2proto import frames, ioctl, structs
from pvfs2proto import upcall as up
from pvfs2proto.cstruct import field_size, offsetof

# --- the spec's tables ---------------------------------------------------------------------------

# C types of scalar fields; they decide the all-ones test value of each field.
S32, U32, S64, U64 = "s32", "u32", "s64", "u64"
ENUM = "enum"  # a C enum: 4 bytes, sign not fixed by the spec
OP = "op"  # the op-code ``type`` selecting a union member
PTR = "ptr"  # a *named* pointer the package carries as an integer (MAP's ptr)
KHANDLE = "khandle"


def CHAR(n: int) -> tuple[str, int]:
    """``char[n]``."""
    return ("char", n)


def S32_ARRAY(n: int) -> tuple[str, int]:
    """``__s32[n]``."""
    return ("s32[]", n)


UNION = "union"  # the req/resp union of an upcall/downcall, handled per member


@dataclass(frozen=True)
class Layout:
    """One struct as the spec tabulates it."""

    name: str
    size: int
    fields: tuple[tuple[str, int, int, Any], ...]  # (name, offset, size, type)
    unnamed: tuple[tuple[int, int, str], ...] = field(default=())  # (start, end, what): pads, holes, pointers


# §3.1 building blocks
KREF = Layout(
    "orangefs_object_kref",
    24,
    (("khandle", 0, 16, KHANDLE), ("fs_id", 16, 4, S32)),
    ((20, 24, "__pad1"),),
)

SYS_ATTR = Layout(
    "ORANGEFS_sys_attr_s",
    136,
    (
        ("owner", 0, 4, U32),
        ("group", 4, 4, U32),
        ("perms", 8, 4, U32),
        ("atime", 16, 8, U64),
        ("mtime", 24, 8, U64),
        ("ctime", 32, 8, U64),
        ("size", 40, 8, S64),
        ("dfile_count", 56, 4, S32),
        ("distr_dir_servers_initial", 60, 4, S32),
        ("distr_dir_servers_max", 64, 4, S32),
        ("distr_dir_split_size", 68, 4, S32),
        ("mirror_copies_count", 72, 4, U32),
        ("dirent_count", 96, 8, S64),
        ("objtype", 104, 4, ENUM),
        ("flags", 112, 8, U64),
        ("mask", 120, 4, U32),
        ("blksize", 128, 8, S64),
    ),
    (
        (12, 16, "hole after perms"),
        (48, 56, "link_target pointer"),
        (76, 80, "hole after mirror_copies_count"),
        (80, 88, "dist_name pointer"),
        (88, 96, "dist_params pointer"),
        (108, 112, "hole after objtype"),
        (124, 128, "hole after mask"),
    ),
)

KEYVAL = Layout(
    "ORANGEFS_keyval_pair",
    8456,
    (("key", 0, 256, CHAR(256)), ("key_sz", 256, 4, S32), ("val_sz", 260, 4, S32), ("val", 264, 8192, CHAR(8192))),
)

# §3.2 upcall
UPCALL_HEADER = Layout(
    "orangefs_upcall_s",
    8528,
    (
        ("type", 0, 4, OP),
        ("uid", 4, 4, U32),
        ("gid", 8, 4, U32),
        ("pid", 12, 4, S32),
        ("tgid", 16, 4, S32),
        ("trailer_size", 24, 8, S64),
        ("req", 40, 8488, UNION),
    ),
    ((20, 24, "hole after tgid"), (32, 40, "trailer_buf pointer")),
)
UPCALL_UNION_AT = 40  # "add 40 for offset in the upcall"
UPCALL_UNION_SIZE = 8488

# Param's ``u``: union of ``__s64 value64`` and ``__s32 value32[2]`` (8 bytes).
PARAM_U = Layout("param.u", 8, (("value64", 0, 8, S64),))

# union member name → (package struct name, op code from §2.5, layout)
UPCALL_MEMBERS: dict[str, tuple[str, int, Layout]] = {
    "io": (
        "orangefs_io_request_s",
        0xFF000001,
        Layout(
            "io",
            56,
            (
                ("buf_index", 4, 4, S32),
                ("count", 8, 4, S32),
                ("offset", 16, 8, S64),
                ("refn", 24, 24, KREF),
                ("io_type", 48, 4, ENUM),
                ("readahead_size", 52, 4, S32),
            ),
            ((0, 4, "__pad1"), (12, 16, "__pad2")),
        ),
    ),
    "lookup": (
        "orangefs_lookup_request_s",
        0xFF000002,
        Layout(
            "lookup",
            288,
            (("sym_follow", 0, 4, S32), ("parent_refn", 8, 24, KREF), ("d_name", 32, 256, CHAR(256))),
            ((4, 8, "__pad1"),),
        ),
    ),
    "create": (
        "orangefs_create_request_s",
        0xFF000003,
        Layout(
            "create",
            416,
            (("parent_refn", 0, 24, KREF), ("attributes", 24, 136, SYS_ATTR), ("d_name", 160, 256, CHAR(256))),
        ),
    ),
    "sym": (
        "orangefs_symlink_request_s",
        0xFF000009,
        Layout(
            "sym",
            672,
            (
                ("parent_refn", 0, 24, KREF),
                ("attributes", 24, 136, SYS_ATTR),
                ("entry_name", 160, 256, CHAR(256)),
                ("target", 416, 256, CHAR(256)),
            ),
        ),
    ),
    "getattr": (
        "orangefs_getattr_request_s",
        0xFF000004,
        Layout("getattr", 32, (("refn", 0, 24, KREF), ("mask", 24, 4, U32)), ((28, 32, "__pad1"),)),
    ),
    "setattr": (
        "orangefs_setattr_request_s",
        0xFF000008,
        Layout("setattr", 160, (("refn", 0, 24, KREF), ("attributes", 24, 136, SYS_ATTR))),
    ),
    "remove": (
        "orangefs_remove_request_s",
        0xFF000005,
        Layout("remove", 280, (("parent_refn", 0, 24, KREF), ("d_name", 24, 256, CHAR(256)))),
    ),
    "mkdir": (
        "orangefs_mkdir_request_s",
        0xFF000006,
        Layout(
            "mkdir",
            416,
            (("parent_refn", 0, 24, KREF), ("attributes", 24, 136, SYS_ATTR), ("d_name", 160, 256, CHAR(256))),
        ),
    ),
    "readdir": (
        "orangefs_readdir_request_s",
        0xFF000007,
        Layout(
            "readdir",
            40,
            (
                ("refn", 0, 24, KREF),
                ("token", 24, 8, U64),
                ("max_dirent_count", 32, 4, S32),
                ("buf_index", 36, 4, S32),
            ),
        ),
    ),
    "readdirplus": (
        "orangefs_readdirplus_request_s",
        0xFF00EE03,
        Layout(
            "readdirplus",
            48,
            (
                ("refn", 0, 24, KREF),
                ("token", 24, 8, U64),
                ("max_dirent_count", 32, 4, S32),
                ("mask", 36, 4, U32),
                ("buf_index", 40, 4, S32),
            ),
            ((44, 48, "__pad1"),),
        ),
    ),
    "rename": (
        "orangefs_rename_request_s",
        0xFF00000A,
        Layout(
            "rename",
            560,
            (
                ("old_parent_refn", 0, 24, KREF),
                ("new_parent_refn", 24, 24, KREF),
                ("d_old_name", 48, 256, CHAR(256)),
                ("d_new_name", 304, 256, CHAR(256)),
            ),
        ),
    ),
    "statfs": (
        "orangefs_statfs_request_s",
        0xFF00000B,
        Layout("statfs", 8, (("fs_id", 0, 4, S32),), ((4, 8, "__pad1"),)),
    ),
    "truncate": (
        "orangefs_truncate_request_s",
        0xFF00000C,
        Layout("truncate", 32, (("refn", 0, 24, KREF), ("size", 24, 8, S64))),
    ),
    "ra_cache_flush": (
        "orangefs_ra_cache_flush_request_s",
        0xFF00000D,
        Layout("ra_cache_flush", 24, (("refn", 0, 24, KREF),)),
    ),
    "fs_mount": (
        "orangefs_fs_mount_request_s",
        0xFF00000E,
        Layout("fs_mount", 256, (("orangefs_config_server", 0, 256, CHAR(256)),)),
    ),
    "fs_umount": (
        "orangefs_fs_umount_request_s",
        0xFF00000F,
        Layout(
            "fs_umount",
            264,
            (("id", 0, 4, S32), ("fs_id", 4, 4, S32), ("orangefs_config_server", 8, 256, CHAR(256))),
        ),
    ),
    "getxattr": (
        "orangefs_getxattr_request_s",
        0xFF000010,
        Layout(
            "getxattr",
            288,
            (("refn", 0, 24, KREF), ("key_sz", 24, 4, S32), ("key", 32, 256, CHAR(256))),
            ((28, 32, "__pad1"),),
        ),
    ),
    "setxattr": (
        "orangefs_setxattr_request_s",
        0xFF000011,
        Layout(
            "setxattr",
            8488,
            (("refn", 0, 24, KREF), ("keyval", 24, 8456, KEYVAL), ("flags", 8480, 4, S32)),
            ((8484, 8488, "__pad1"),),
        ),
    ),
    "listxattr": (
        "orangefs_listxattr_request_s",
        0xFF000012,
        Layout(
            "listxattr",
            40,
            (("refn", 0, 24, KREF), ("requested_count", 24, 4, S32), ("token", 32, 8, U64)),
            ((28, 32, "__pad1"),),
        ),
    ),
    "removexattr": (
        "orangefs_removexattr_request_s",
        0xFF000013,
        Layout(
            "removexattr",
            288,
            (("refn", 0, 24, KREF), ("key_sz", 24, 4, S32), ("key", 32, 256, CHAR(256))),
            ((28, 32, "__pad1"),),
        ),
    ),
    "cancel": ("orangefs_op_cancel_s", 0xFF00EE00, Layout("cancel", 8, (("op_tag", 0, 8, U64),))),
    "fsync": ("orangefs_fsync_request_s", 0xFF00EE01, Layout("fsync", 24, (("refn", 0, 24, KREF),))),
    "param": (
        "orangefs_param_request_s",
        0xFF000014,
        Layout(
            "param",
            2064,
            (("type", 0, 4, ENUM), ("op", 4, 4, ENUM), ("u", 8, 8, PARAM_U), ("s_value", 16, 2048, CHAR(2048))),
        ),
    ),
    "perf_count": (
        "orangefs_perf_count_request_s",
        0xFF000015,
        Layout("perf_count", 8, (("type", 0, 4, ENUM),), ((4, 8, "__pad1"),)),
    ),
    "fs_key": (
        "orangefs_fs_key_request_s",
        0xFF00EE02,
        Layout("fs_key", 8, (("fsid", 0, 4, S32),), ((4, 8, "__pad1"),)),
    ),
    "features": (
        "orangefs_features_request_s",
        0xFF00EE05,
        Layout("features", 8, (("features", 0, 8, U64),)),
    ),
}

# §3.3 downcall
DOWNCALL_HEADER = Layout(
    "orangefs_downcall_s",
    8224,
    (("type", 0, 4, OP), ("status", 4, 4, S32), ("trailer_size", 8, 8, S64), ("resp", 24, 8200, UNION)),
    ((16, 24, "trailer_buf pointer"),),
)
DOWNCALL_UNION_AT = 24  # "add 24 for the downcall"
DOWNCALL_UNION_SIZE = 8200


def _refn_only(name: str) -> Layout:
    return Layout(name, 24, (("refn", 0, 24, KREF),))


DOWNCALL_MEMBERS: dict[str, tuple[str, int, Layout]] = {
    "io": ("orangefs_io_response", 0xFF000001, Layout("io", 8, (("amt_complete", 0, 8, S64),))),
    "lookup": ("orangefs_lookup_response", 0xFF000002, _refn_only("lookup")),
    "create": ("orangefs_create_response", 0xFF000003, _refn_only("create")),
    "sym": ("orangefs_symlink_response", 0xFF000009, _refn_only("sym")),
    "getattr": (
        "orangefs_getattr_response",
        0xFF000004,
        Layout("getattr", 392, (("attributes", 0, 136, SYS_ATTR), ("link_target", 136, 256, CHAR(256)))),
    ),
    "mkdir": ("orangefs_mkdir_response", 0xFF000006, _refn_only("mkdir")),
    "statfs": (
        "orangefs_statfs_response",
        0xFF00000B,
        Layout(
            "statfs",
            40,
            (
                ("block_size", 0, 8, S64),
                ("blocks_total", 8, 8, S64),
                ("blocks_avail", 16, 8, S64),
                ("files_total", 24, 8, S64),
                ("files_avail", 32, 8, S64),
            ),
        ),
    ),
    "fs_mount": (
        "orangefs_fs_mount_response",
        0xFF00000E,
        Layout("fs_mount", 24, (("fs_id", 0, 4, S32), ("id", 4, 4, S32), ("root_khandle", 8, 16, KHANDLE))),
    ),
    "getxattr": (
        "orangefs_getxattr_response",
        0xFF000010,
        Layout("getxattr", 8200, (("val_sz", 0, 4, S32), ("val", 8, 8192, CHAR(8192))), ((4, 8, "__pad1"),)),
    ),
    "listxattr": (
        "orangefs_listxattr_response",
        0xFF000012,
        Layout(
            "listxattr",
            4184,
            (
                ("returned_count", 0, 4, S32),
                ("token", 8, 8, U64),
                ("key", 16, 4096, CHAR(4096)),
                ("keylen", 4112, 4, S32),
                ("lengths", 4120, 64, S32_ARRAY(16)),
            ),
            ((4, 8, "__pad1"), (4116, 4120, "__pad2")),
        ),
    ),
    "param": ("orangefs_param_response", 0xFF000014, Layout("param", 8, (("u", 0, 8, PARAM_U),))),
    "perf_count": (
        "orangefs_perf_count_response",
        0xFF000015,
        Layout("perf_count", 4096, (("buffer", 0, 4096, CHAR(4096)),)),
    ),
    "fs_key": (
        "orangefs_fs_key_response",
        0xFF00EE02,
        Layout("fs_key", 4104, (("fs_keylen", 0, 4, S32), ("fs_key", 8, 4096, CHAR(4096))), ((4, 8, "__pad1"),)),
    ),
    "features": ("orangefs_features_response", 0xFF00EE05, Layout("features", 8, (("features", 0, 8, U64),))),
}

# §3.4 readdir trailer header
READDIR_RESPONSE = Layout(
    "orangefs_readdir_response_s",
    24,
    (
        ("token", 0, 8, U64),
        ("directory_version", 8, 8, U64),
        ("orangefs_dirent_outcount", 20, 4, U32),
    ),
    ((16, 20, "__pad2"),),
)

# §1.3 / §1.4 frames (the upcall and downcall inside are checked on their own)
READ_FRAME = Layout(
    "read_frame",
    8544,
    (("version", 0, 4, S32), ("magic", 4, 4, S32), ("tag", 8, 8, U64), ("upcall", 16, 8528, None)),
)
WRITE_FRAME_HEAD = Layout(
    "write_frame_head",
    16,
    (("version", 0, 4, U32), ("magic", 4, 4, U32), ("tag", 8, 8, U64)),
)
WRITE_FRAME = Layout(
    "write_frame",
    8240,
    (("version", 0, 4, U32), ("magic", 4, 4, U32), ("tag", 8, 8, U64), ("downcall", 16, 8224, None)),
)

# §3.5 ioctl argument structs
MAP_DESC = Layout(
    "ORANGEFS_dev_map_desc",
    24,
    (("ptr", 0, 8, PTR), ("total_size", 8, 4, S32), ("size", 12, 4, S32), ("count", 16, 4, S32)),
    ((20, 24, "hole after count"),),
)
MASK_INFO = Layout(
    "dev_mask_info_s",
    16,
    (("mask_type", 0, 4, ENUM), ("mask_value", 8, 8, U64)),
    ((4, 8, "hole after mask_type"),),
)
MASK2_INFO = Layout("dev_mask2_info_s", 16, (("mask1_value", 0, 8, U64), ("mask2_value", 8, 8, U64)))


# --- which package object each table describes -----------------------------------------------------

PLAIN_STRUCTS: list[tuple[Layout, Any]] = [
    (KREF, structs.orangefs_object_kref),
    (SYS_ATTR, structs.ORANGEFS_sys_attr_s),
    (KEYVAL, structs.ORANGEFS_keyval_pair),
    (READDIR_RESPONSE, down.orangefs_readdir_response_s),
    (MAP_DESC, ioctl.ORANGEFS_dev_map_desc),
    (MASK_INFO, ioctl.dev_mask_info_s),
    (MASK2_INFO, ioctl.dev_mask2_info_s),
]
MEMBER_STRUCTS: list[tuple[str, Layout, Any]] = [
    (struct_name, layout, getattr(up, struct_name))
    for member, (struct_name, _op, layout) in UPCALL_MEMBERS.items()
] + [
    (struct_name, layout, getattr(down, struct_name))
    for member, (struct_name, _op, layout) in DOWNCALL_MEMBERS.items()
]
FRAME_STRUCTS: list[tuple[Layout, Any]] = [
    (READ_FRAME, frames.read_frame),
    (WRITE_FRAME_HEAD, frames.write_frame_head),
    (WRITE_FRAME, frames.write_frame),
]
HEADER_STRUCTS: list[tuple[Layout, Any]] = [
    (UPCALL_HEADER, up.orangefs_upcall_s),
    (DOWNCALL_HEADER, down.orangefs_downcall_s),
]


# --- expanding the tables -------------------------------------------------------------------------


def expand_fields(layout: Layout, prefix: str = "", base: int = 0) -> Iterator[tuple[str, int, int]]:
    """(dotted path, offset, size) of every named field, nested structs included."""
    for name, off, size, kind in layout.fields:
        path = prefix + name
        yield path, base + off, size
        if isinstance(kind, Layout):
            yield from expand_fields(kind, path + ".", base + off)


def expand_unnamed(layout: Layout, prefix: str = "", base: int = 0) -> Iterator[tuple[int, int, str]]:
    """(start, end, what) of every pad, hole and pointer, nested structs included."""
    for start, end, what in layout.unnamed:
        yield base + start, base + end, f"{prefix}{what}"
    for name, off, _size, kind in layout.fields:
        if isinstance(kind, Layout):
            yield from expand_unnamed(kind, f"{prefix}{name}.", base + off)


def all_ones(kind: Any) -> Any:
    """A non-zero value filling every byte a field of this C type owns (0xFF-ish)."""
    if kind in (U32,):
        return 0xFFFFFFFF
    if kind in (S32, S64):
        return -1
    if kind in (U64, PTR):
        return 0xFFFFFFFFFFFFFFFF
    if kind == ENUM:
        return 0x7FFFFFFF  # fits a signed and an unsigned 4-byte enum alike
    if kind == KHANDLE:
        return b"\xff" * 16
    if isinstance(kind, tuple) and kind[0] == "char":
        return b"\xff" * (kind[1] - 1)  # leave room for the NUL a C string needs
    if isinstance(kind, tuple) and kind[0] == "s32[]":
        return [-1] * kind[1]
    if isinstance(kind, Layout):
        return {name: all_ones(sub) for name, _off, _size, sub in kind.fields}
    raise AssertionError(f"no test value for {kind!r}")


def plain(value: Any) -> Any:
    """Containers to dicts, ListContainers to lists, char arrays without trailing NULs."""
    if isinstance(value, (Container, dict)):
        return {k: plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (ListContainer, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rstrip(b"\0")
    return value


def full_upcall(member: str) -> tuple[dict, list[tuple[int, int, str]]]:
    """An upcall with every named field non-zero, and the ranges that must stay zero."""
    _struct_name, op, layout = UPCALL_MEMBERS[member]
    value = {name: all_ones(kind) for name, _o, _s, kind in UPCALL_HEADER.fields if kind not in (OP, UNION)}
    value["type"] = op
    value["req"] = {member: all_ones(layout)}
    zero = list(expand_unnamed(UPCALL_HEADER))
    zero += list(expand_unnamed(layout, f"req.{member}.", UPCALL_UNION_AT))
    if layout.size < UPCALL_UNION_SIZE:
        zero.append((UPCALL_UNION_AT + layout.size, UPCALL_UNION_AT + UPCALL_UNION_SIZE, "unused union bytes"))
    return value, zero


def full_downcall(member: str) -> tuple[dict, list[tuple[int, int, str]]]:
    """A downcall with every named field non-zero, and the ranges that must stay zero."""
    _struct_name, op, layout = DOWNCALL_MEMBERS[member]
    value = {name: all_ones(kind) for name, _o, _s, kind in DOWNCALL_HEADER.fields if kind not in (OP, UNION)}
    value["type"] = op
    value["resp"] = {member: all_ones(layout)}
    zero = list(expand_unnamed(DOWNCALL_HEADER))
    zero += list(expand_unnamed(layout, f"resp.{member}.", DOWNCALL_UNION_AT))
    if layout.size < DOWNCALL_UNION_SIZE:
        zero.append(
            (DOWNCALL_UNION_AT + layout.size, DOWNCALL_UNION_AT + DOWNCALL_UNION_SIZE, "unused union bytes")
        )
    return value, zero


def nonzero_ranges(data: bytes, ranges) -> list[str]:
    return [f"{what} [{start}, {end}) = {data[start:end].hex()}" for start, end, what in ranges if any(data[start:end])]


# --- parametrisation tables -----------------------------------------------------------------------------

SIZE_CASES = (
    [pytest.param(layout.size, obj, id=layout.name) for layout, obj in PLAIN_STRUCTS + FRAME_STRUCTS + HEADER_STRUCTS]
    + [pytest.param(layout.size, obj, id=label) for label, layout, obj in MEMBER_STRUCTS]
)

FIELD_CASES = []
for _layout, _obj in PLAIN_STRUCTS + FRAME_STRUCTS:
    for _path, _off, _size in expand_fields(_layout):
        FIELD_CASES.append(pytest.param(_obj, _path, _off, _size, id=f"{_layout.name}.{_path}"))
for _label, _layout, _obj in MEMBER_STRUCTS:
    for _path, _off, _size in expand_fields(_layout):
        FIELD_CASES.append(pytest.param(_obj, _path, _off, _size, id=f"{_label}.{_path}"))
for _layout, _obj in HEADER_STRUCTS:
    for _path, _off, _size in expand_fields(_layout):
        FIELD_CASES.append(pytest.param(_obj, _path, _off, _size, id=f"{_layout.name}.{_path}"))
# Members addressed through the union: offset in the upcall / downcall.
for _member, (_n, _op, _layout) in UPCALL_MEMBERS.items():
    for _path, _off, _size in expand_fields(_layout, f"req.{_member}.", UPCALL_UNION_AT):
        FIELD_CASES.append(pytest.param(up.orangefs_upcall_s, _path, _off, _size, id=f"orangefs_upcall_s.{_path}"))
for _member, (_n, _op, _layout) in DOWNCALL_MEMBERS.items():
    for _path, _off, _size in expand_fields(_layout, f"resp.{_member}.", DOWNCALL_UNION_AT):
        FIELD_CASES.append(
            pytest.param(down.orangefs_downcall_s, _path, _off, _size, id=f"orangefs_downcall_s.{_path}")
        )

# §3.6, transcribed row by row.
READ_FRAME_OFFSETS = {
    "type": 16,
    "uid": 20,
    "gid": 24,
    "pid": 28,
    "tgid": 32,
    "req.io.buf_index": 60,
    "req.io.count": 64,
    "req.io.offset": 72,
    "req.io.refn.khandle": 80,
    "req.io.refn.fs_id": 96,
    "req.io.io_type": 104,
    "req.io.readahead_size": 108,
    "req.lookup.sym_follow": 56,
    "req.lookup.parent_refn": 64,
    "req.lookup.d_name": 88,
    "req.getattr.refn": 56,
    "req.getattr.mask": 80,
    "req.readdir.refn": 56,
    "req.readdir.token": 80,
    "req.readdir.max_dirent_count": 88,
    "req.readdir.buf_index": 92,
    "req.fs_mount.orangefs_config_server": 56,
    "req.cancel.op_tag": 56,
    "req.param.type": 56,
    "req.param.op": 60,
    "req.param.u": 64,
    "req.param.s_value": 72,
}
WRITE_FRAME_OFFSETS = {
    "type": 16,
    "status": 20,
    "trailer_size": 24,
    "resp.io.amt_complete": 40,
    "resp.lookup.refn.khandle": 40,
    "resp.lookup.refn.fs_id": 56,
    "resp.create.refn.khandle": 40,
    "resp.create.refn.fs_id": 56,
    "resp.sym.refn.khandle": 40,
    "resp.sym.refn.fs_id": 56,
    "resp.mkdir.refn.khandle": 40,
    "resp.mkdir.refn.fs_id": 56,
    "resp.getattr.attributes.owner": 40,
    "resp.getattr.attributes.group": 44,
    "resp.getattr.attributes.perms": 48,
    "resp.getattr.attributes.atime": 56,
    "resp.getattr.attributes.mtime": 64,
    "resp.getattr.attributes.ctime": 72,
    "resp.getattr.attributes.size": 80,
    "resp.getattr.attributes.objtype": 144,
    "resp.getattr.attributes.flags": 152,
    "resp.getattr.attributes.mask": 160,
    "resp.getattr.attributes.blksize": 168,
    "resp.getattr.link_target": 176,
    "resp.statfs.block_size": 40,
    "resp.statfs.files_avail": 72,
    "resp.fs_mount.fs_id": 40,
    "resp.fs_mount.id": 44,
    "resp.fs_mount.root_khandle": 48,
    "resp.getxattr.val_sz": 40,
    "resp.getxattr.val": 48,
    "resp.listxattr.returned_count": 40,
    "resp.listxattr.token": 48,
    "resp.listxattr.key": 56,
    "resp.listxattr.lengths": 4160,
    "resp.features.features": 40,
}

ZERO_CASES = [pytest.param(layout, obj, id=layout.name) for layout, obj in PLAIN_STRUCTS if layout.unnamed] + [
    pytest.param(layout, obj, id=label) for label, layout, obj in MEMBER_STRUCTS if list(expand_unnamed(layout))
]
ROUND_TRIP_CASES = [pytest.param(layout, obj, id=layout.name) for layout, obj in PLAIN_STRUCTS] + [
    pytest.param(layout, obj, id=label) for label, layout, obj in MEMBER_STRUCTS
]
ALL_LAYOUTS = (
    [pytest.param(layout, id=layout.name) for layout, _obj in PLAIN_STRUCTS + HEADER_STRUCTS + FRAME_STRUCTS]
    + [pytest.param(layout, id=label) for label, layout, _obj in MEMBER_STRUCTS]
)


# --- sizes ----------------------------------------------------------------------------------------------


def test_khandle_is_16_opaque_bytes():
    """Spec §3.1: struct orangefs_khandle is 16 opaque bytes."""
    assert structs.orangefs_khandle.sizeof() == 16
    assert structs.KHANDLE_SIZE == 16
    assert structs.orangefs_khandle.build(bytes(range(16))) == bytes(range(16))
    assert structs.orangefs_khandle.parse(bytes(range(16))) == bytes(range(16))


@pytest.mark.parametrize(("expected", "obj"), SIZE_CASES)
def test_sizeof_matches_spec(expected, obj):
    """Spec §3.1–§3.5 and §1.3/§1.4: sizeof() of each struct, union member and frame is the spec's number."""
    assert obj.size == expected
    assert obj.sizeof() == expected


def test_upcall_is_8528_bytes_with_8488_byte_union():
    """Spec §2.2/§3.2: the upcall is a 40-byte header plus an 8488-byte union (largest member setxattr)."""
    assert up.orangefs_upcall_s.size == 8528
    assert offsetof(up.orangefs_upcall_s, "req") == 40
    assert field_size(up.orangefs_upcall_s, "req") == 8488
    assert up.orangefs_setxattr_request_s.size == 8488


def test_downcall_is_8224_bytes_with_8200_byte_union():
    """Spec §2.2/§3.3: the downcall is a 24-byte header plus an 8200-byte union (largest member getxattr)."""
    assert down.orangefs_downcall_s.size == 8224
    assert offsetof(down.orangefs_downcall_s, "resp") == 24
    assert field_size(down.orangefs_downcall_s, "resp") == 8200
    assert down.orangefs_getxattr_response.size == 8200


def test_read_frame_is_exactly_8544_bytes():
    """Spec §1.3: a read frame is 4 + 4 + 8 + 8528 = 8544 bytes (MAX_DEV_REQ_UPSIZE)."""
    assert frames.read_frame.size == 8544


def test_write_frame_is_exactly_8240_bytes():
    """Spec §1.4: a write frame without trailer is 4 + 4 + 8 + 8224 = 8240 bytes (MAX_DEV_REQ_DOWNSIZE)."""
    assert frames.write_frame.size == 8240
    assert frames.write_frame_head.size == 16


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_spec_table_tiles_the_struct(layout):
    """Spec §3: every byte of each struct is one named field, pad, hole or pointer (checks this transcription)."""
    ranges = sorted(
        [(off, off + size) for _n, off, size, _k in layout.fields] + [(s, e) for s, e, _w in layout.unnamed]
    )
    position = 0
    for start, end in ranges:
        assert start == position, f"gap or overlap at {position} in {layout.name}"
        position = end
    assert position == layout.size
    for _name, _off, size, kind in layout.fields:
        if isinstance(kind, Layout):
            assert kind.size == size


# --- offsets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("obj", "path", "offset", "size"), FIELD_CASES)
def test_field_offset_matches_spec(obj, path, offset, size):
    """Spec §3.1–§3.5: the field sits at the spec's offset within its struct."""
    assert offsetof(obj, path) == offset


@pytest.mark.parametrize(("obj", "path", "offset", "size"), FIELD_CASES)
def test_field_size_matches_spec(obj, path, offset, size):
    """Spec §3.1–§3.5: the field has the spec's size."""
    assert field_size(obj, path) == size


@pytest.mark.parametrize(("path", "offset"), list(READ_FRAME_OFFSETS.items()), ids=list(READ_FRAME_OFFSETS))
def test_read_frame_absolute_offset(path, offset):
    """Spec §3.6: the upcall field sits at this absolute offset of the 8544-byte read frame (union at 56)."""
    assert offsetof(frames.read_frame, f"upcall.{path}") == offset


@pytest.mark.parametrize(("path", "offset"), list(WRITE_FRAME_OFFSETS.items()), ids=list(WRITE_FRAME_OFFSETS))
def test_write_frame_absolute_offset(path, offset):
    """Spec §3.6: the downcall field sits at this absolute offset of the write frame (union at 40)."""
    assert offsetof(frames.write_frame, f"downcall.{path}") == offset


def test_write_frame_statfs_fields_are_consecutive_s64():
    """Spec §3.3/§3.6: statfs block_size … files_avail are five s64 at write-frame offsets 40 … 72."""
    names = ["block_size", "blocks_total", "blocks_avail", "files_total", "files_avail"]
    assert [offsetof(frames.write_frame, f"downcall.resp.statfs.{n}") for n in names] == [40, 48, 56, 64, 72]


def test_readdir_trailer_starts_at_write_frame_offset_8240():
    """Spec §1.4/§3.6: the READDIR trailer follows the downcall at write-frame offset 8240."""
    data = frames.encode_write_frame(5, {"type": 0xFF000007, "status": 0}, b"T" * 24)
    assert len(data) == 8240 + 24
    assert data[8240:] == b"T" * 24


def test_param_u_value32_view_is_the_two_halves_of_value64():
    """Spec §3.2/§3.3: param.u is a union of s64 value64 and s32 value32[2], so value32[0] is bytes 0-3 and value32[1] bytes 4-7."""
    # The package carries u as value64 only; its helpers give the value32 view.
    assert up.value32_pair(0x00000002_FFFFFFFF) == (-1, 2)
    assert up.value64_of(-1, 2) == 0x00000002_FFFFFFFF
    raw = up.orangefs_param_request_s.pack({"u": {"value64": up.value64_of(7, -3)}})
    assert raw[8:12] == (7).to_bytes(4, "little", signed=True)
    assert raw[12:16] == (-3).to_bytes(4, "little", signed=True)


# --- pads, holes and pointers encode as zero ------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "obj"), ZERO_CASES)
def test_pads_holes_and_pointers_encode_as_zero(layout, obj):
    """Spec §0.3/§3: with every named field non-zero, every pad, hole and pointer of the struct is still zero bytes."""
    data = obj.pack(all_ones(layout))
    assert len(data) == layout.size
    assert nonzero_ranges(data, expand_unnamed(layout)) == []


@pytest.mark.parametrize("member", list(UPCALL_MEMBERS))
def test_upcall_pads_holes_pointers_and_unused_union_bytes_are_zero(member):
    """Spec §0.3/§1.3/§3.2: an upcall's hole, trailer_buf, member pads and the union bytes past the member are zero."""
    value, zero = full_upcall(member)
    data = up.orangefs_upcall_s.pack(value)
    assert len(data) == 8528
    assert nonzero_ranges(data, zero) == []


@pytest.mark.parametrize("member", list(DOWNCALL_MEMBERS))
def test_downcall_pads_pointers_and_unused_union_bytes_are_zero(member):
    """Spec §0.3/§1.4/§3.3: a downcall's trailer_buf, member pads and the union bytes past the member are zero."""
    value, zero = full_downcall(member)
    data = down.orangefs_downcall_s.pack(value)
    assert len(data) == 8224
    assert nonzero_ranges(data, zero) == []


def test_read_frame_hole_and_trailer_buf_are_zero():
    """Spec §1.3/§3.2/§3.6: in a read frame the upcall hole (36-40) and trailer_buf (48-56) are zero."""
    value, _zero = full_upcall("getattr")
    data = frames.encode_read_frame(0xFFFFFFFFFFFFFFFF, value)
    assert data[36:40] == bytes(4)
    assert data[48:56] == bytes(8)


def test_write_frame_trailer_buf_is_zero():
    """Spec §1.4/§3.6: in a write frame trailer_buf (offset 32, 8 bytes) is always sent as 0."""
    value, _zero = full_downcall("getattr")
    value["trailer_size"] = 0
    data = frames.encode_write_frame(0xFFFFFFFFFFFFFFFF, value)
    assert data[32:40] == bytes(8)


# --- every named field owns its bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "obj"), ROUND_TRIP_CASES)
def test_all_ones_value_round_trips(layout, obj):
    """Spec §3: a value with every named field at its all-ones pattern decodes back unchanged (width and sign per the spec)."""
    value = all_ones(layout)
    assert plain(obj.unpack(obj.pack(value))) == plain(value)


@pytest.mark.parametrize(("layout", "obj"), ROUND_TRIP_CASES)
def test_named_fields_fill_their_spec_bytes(layout, obj):
    """Spec §3: with every named field all-ones, every scalar field's own byte range (per the spec) is all 0xFF."""
    data = obj.pack(all_ones(layout))
    bad = []
    for path, off, size in expand_fields(layout):
        kind = _kind_of(layout, path)
        if kind in (U32, S32, U64, S64, PTR, KHANDLE) or (isinstance(kind, tuple) and kind[0] == "s32[]"):
            if data[off : off + size] != b"\xff" * size:
                bad.append(f"{path} [{off}, {off + size})")
        elif kind == ENUM:
            if data[off : off + size] != b"\xff\xff\xff\x7f":
                bad.append(f"{path} [{off}, {off + size})")
    assert bad == []


def _kind_of(layout: Layout, path: str) -> Any:
    head, _, rest = path.partition(".")
    for name, _off, _size, kind in layout.fields:
        if name == head:
            return _kind_of(kind, rest) if rest else kind
    raise KeyError(path)


@pytest.mark.parametrize("member", list(UPCALL_MEMBERS))
def test_upcall_with_member_round_trips(member):
    """Spec §3.2: an upcall decodes its union by type, giving back every named field of the member."""
    value, _zero = full_upcall(member)
    decoded = up.orangefs_upcall_s.unpack(up.orangefs_upcall_s.pack(value))
    assert plain(decoded) == plain(value)


@pytest.mark.parametrize("member", list(DOWNCALL_MEMBERS))
def test_downcall_with_member_round_trips(member):
    """Spec §3.3: a downcall decodes its union by type, giving back every named field of the member."""
    value, _zero = full_downcall(member)
    decoded = down.orangefs_downcall_s.unpack(down.orangefs_downcall_s.pack(value))
    assert plain(decoded) == plain(value)


def test_sys_attr_times_are_time64_in_a_u64():
    """§3.1 sys_attr atime/mtime/ctime are u64 on the wire, but the kernel casts its time64_t in and out (and
    the server keeps an int64 PVFS_time): 2**63 and up are times before 1970, and both directions invert."""
    time_from_wire, time_to_wire = structs.time_from_wire, structs.time_to_wire
    for seconds in (0, 1, 1_700_000_000, -1, -315619200, -(2**63), 2**63 - 1):
        assert 0 <= time_to_wire(seconds) < 2**64
        assert time_from_wire(time_to_wire(seconds)) == seconds
    assert time_from_wire(2**64 - 1) == -1 and time_from_wire(2**63) == -(2**63)
