"""Hypothesis strategies for pvfs2proto values, built by walking the declarations.

The one generic entry point is :func:`values`: given any construct the package
declares (a :class:`~pvfs2proto.cstruct.CStruct`, a nested ``Struct``, a field),
it returns a strategy for a *valid* value of it — one the fast codec can
encode and that decodes back to itself:

* ``FormatField``: any integer in the range its ``fmtstr`` allows;
* ``Padding``: skipped (pads, holes and pointers are not in the values);
* ``Bytes(n)``: exactly n bytes (khandles);
* ``CString(n)``: bytes without NUL, at most n - 1 of them;
* ``Blob(n)``: exactly n bytes (decode returns all n, so a shorter value would
  not survive the round trip);
* ``Array(k, FormatField)``: k integers;
* nested ``Struct``/``CStruct``: a ``Container`` of its fields;
* ``OpUnion``: ``Container(member=...)`` for the member the sibling selector
  picks, ``Container()`` for a member-less case.

Long char arrays are drawn as ``head + fill * k + tail`` (random head and tail
of up to 16 bytes, one fill byte repeated): every length up to the full field
and non-zero bytes at its very end, at a fraction of the entropy of
``binary(min_size=8192)``.

Field strategies can be replaced by dotted path: ``values(orangefs_upcall_s,
{"type": st.just(OpCode.LOOKUP)})``.  The op-specific helpers (:func:`upcalls`,
:func:`downcalls`, :func:`read_frames`, :func:`write_frames`) are thin layers
over that.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping, NamedTuple

from construct import Array, Bytes, Construct, Container, FormatField, ListContainer, Padded, Pass, Renamed, Struct
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import pvfs2proto
from pvfs2proto.constants import (
    FRAME_HEAD_SIZE,
    MAX_DEV_REQ_DOWNSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_START,
    ORANGEFS_KERNEL_PROTO_VERSION,
    ORANGEFS_MINIMUM_USERSPACE_VERSION,
    PVFS2DEV_USERSPACE_VERSION,
    READDIR_RESPONSE_SIZE,
)
from pvfs2proto.cstruct import Blob, CString, CStruct, OpUnion
from pvfs2proto.downcall import DOWNCALL_MEMBERS, orangefs_downcall_s, orangefs_readdir_response_s
from pvfs2proto.enums import OpCode
from pvfs2proto.errors import PINT_ERRNO_MAPPING, ProtocolStatus, errno_to_status
from pvfs2proto.frames import read_frame, write_frame, write_frame_head
from pvfs2proto.ioctl import ORANGEFS_dev_map_desc, dev_mask2_info_s, dev_mask_info_s, ioctl_int_arg
from pvfs2proto.readdir import encode_readdir_trailer
from pvfs2proto.structs import ORANGEFS_keyval_pair, ORANGEFS_sys_attr_s, orangefs_object_kref
from pvfs2proto.upcall import UPCALL_MEMBERS, orangefs_upcall_s

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
S32 = (-(2**31), 2**31 - 1)
S64 = (-(2**63), 2**63 - 1)

Path = tuple[str, ...]

# --- the generic walker -------------------------------------------------------------------


def is_padding(sc: Construct) -> bool:
    """``Padding(n)`` is ``Padded(n, Pass)`` in construct 2.10."""
    return isinstance(sc, Padded) and sc.subcon is Pass


def int_range(field: FormatField) -> tuple[int, int]:
    """The inclusive range of integers a ``FormatField`` can carry, from its fmtstr."""
    code = field.fmtstr[-1]
    if code not in "bBhHiIlLqQnN":
        raise TypeError(f"not an integer field: {field.fmtstr!r}")
    bits = 8 * struct.calcsize(field.fmtstr)
    if code.islower():
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def integers_for(field: FormatField) -> SearchStrategy[int]:
    lo, hi = int_range(field)
    return st.integers(lo, hi)


def filled_bytes(min_len: int, max_len: int, *, allow_nul: bool) -> SearchStrategy[bytes]:
    """``head + fill * k + tail``: any length in [min_len, max_len], cheap to draw."""
    low = 0 if allow_nul else 1

    def fix(data: bytes) -> bytes:
        return data if allow_nul else data.replace(b"\0", b"\x01")

    @st.composite
    def build(draw) -> bytes:
        length = draw(st.integers(min_len, max_len))
        head = fix(draw(st.binary(max_size=min(length, 16))))
        tail = fix(draw(st.binary(max_size=min(length - len(head), 16))))
        fill = draw(st.integers(low, 255))
        return head + bytes([fill]) * (length - len(head) - len(tail)) + tail

    return build()


def cstring_values(length: int) -> SearchStrategy[bytes]:
    """Valid contents of a ``char[length]`` string: no NUL, at most length - 1 bytes."""
    return filled_bytes(0, length - 1, allow_nul=False)


def blob_values(length: int) -> SearchStrategy[bytes]:
    """Valid contents of an opaque ``char[length]``: exactly length bytes."""
    return filled_bytes(length, length, allow_nul=True)


def struct_fields(sc: Struct) -> list[tuple[str, Construct]]:
    """The named fields of a struct, pads dropped."""
    fields = []
    for sub in sc.subcons:
        if is_padding(sub):
            continue
        if not isinstance(sub, Renamed) or not sub.name:
            raise TypeError(f"unnamed field {sub!r}")
        fields.append((sub.name, sub.subcon))
    return fields


def _as_strategy(value: Any) -> SearchStrategy:
    return value if isinstance(value, SearchStrategy) else st.just(value)


#: id(construct) → (construct, strategy); holding the construct keeps its id from being reused.
_MEMO: dict[int, tuple[Construct, SearchStrategy]] = {}


def values(sc: Construct, overrides: Mapping[str, Any] | None = None) -> SearchStrategy:
    """A strategy for valid values of ``sc``, found by walking its declaration.

    Args:
        sc: any construct the package declares.
        overrides: dotted path (relative to ``sc``) → strategy or fixed value
            for that field, e.g. ``{"upcall.type": OpCode.READDIR}``.
    """
    normalized = {tuple(k.split(".")): _as_strategy(v) for k, v in (overrides or {}).items()}
    return _walk(sc, (), normalized)


def _walk(sc: Construct, path: Path, overrides: Mapping[Path, SearchStrategy]) -> SearchStrategy:
    if path in overrides:
        return overrides[path]
    below = {k: v for k, v in overrides.items() if k[: len(path)] == path}
    if not below and id(sc) in _MEMO:
        return _MEMO[id(sc)][1]
    strategy = _build(sc, path, below)
    if not below:
        _MEMO[id(sc)] = (sc, strategy)
    return strategy


def _build(sc: Construct, path: Path, overrides: Mapping[Path, SearchStrategy]) -> SearchStrategy:
    if isinstance(sc, Renamed):
        return _walk(sc.subcon, path, overrides)
    if isinstance(sc, FormatField):
        return integers_for(sc)
    if isinstance(sc, CString):
        return cstring_values(sc.length)
    if isinstance(sc, Blob):
        return blob_values(sc.length)
    if isinstance(sc, Bytes) and isinstance(sc.length, int):
        return st.binary(min_size=sc.length, max_size=sc.length)
    if isinstance(sc, Array) and isinstance(sc.count, int) and isinstance(sc.subcon, FormatField):
        return st.lists(integers_for(sc.subcon), min_size=sc.count, max_size=sc.count).map(ListContainer)
    if isinstance(sc, Struct):
        return _struct(sc, path, overrides)
    raise TypeError(f"{'.'.join(path) or 'value'}: no strategy for {type(sc).__name__}")


def _struct(sc: Struct, path: Path, overrides: Mapping[Path, SearchStrategy]) -> SearchStrategy:
    fields = struct_fields(sc)
    if not any(isinstance(inner, OpUnion) for _, inner in fields):
        return st.fixed_dictionaries(
            {name: _walk(inner, path + (name,), overrides) for name, inner in fields}
        ).map(Container)

    # A union needs the value already drawn for its selector: draw in order.
    plain = {
        name: _walk(inner, path + (name,), overrides) for name, inner in fields if not isinstance(inner, OpUnion)
    }

    @st.composite
    def build(draw) -> Container:
        value = Container()
        for name, inner in fields:
            if isinstance(inner, OpUnion):
                member = inner.member(value[inner.selector])
                if member is None:
                    value[name] = Container()
                else:
                    member_path = path + (name, member.name)
                    value[name] = Container({member.name: draw(_walk(member.subcon, member_path, overrides))})
            else:
                value[name] = draw(plain[name])
        return value

    return build()


# --- op types, statuses ---------------------------------------------------------------------

#: Op codes the kernel never sends, for the ``raw`` union members.
UNKNOWN_OP_TYPES = (0, 1, 0xFF000016, 0xFF00EE04, 0xFF00EE06, 0xFFFFFFFF, 0x7FFFFFFF)


def op_types() -> SearchStrategy[int]:
    """Any op type: mostly OpCode members, sometimes any other u32 (decoded as ``raw``)."""
    return st.one_of(
        st.sampled_from([int(op) for op in OpCode]),
        st.sampled_from(UNKNOWN_OP_TYPES),
        st.integers(0, U32_MAX),
    )


def _op(op: int | SearchStrategy[int] | None) -> SearchStrategy[int]:
    """None → any op type; a strategy as is; a value fixed."""
    if op is None:
        return op_types()
    if isinstance(op, SearchStrategy):
        return op
    return st.just(int(op))


def error_statuses() -> SearchStrategy[int]:
    """Non-zero downcall statuses: encoded errnos, protocol errors, and any other s32."""
    return st.one_of(
        st.sampled_from([errno_to_status(err) for err in PINT_ERRNO_MAPPING[1:]]),
        st.sampled_from(
            [-v for k, v in vars(ProtocolStatus).items() if k.startswith("E") and isinstance(v, int)]
        ),
        st.integers(*S32).filter(bool),
    )


def statuses() -> SearchStrategy[int]:
    """0 (success, half the time) or an error status."""
    return st.one_of(st.just(0), error_statuses())


# --- upcalls, downcalls, frames -------------------------------------------------------------


def upcalls(op: int | None = None) -> SearchStrategy[Container]:
    """Valid ``orangefs_upcall_s`` values; ``op`` fixes the type (else any, unknown ones included)."""
    return values(orangefs_upcall_s, {"type": _op(op)})


def downcalls(op: int | None = None, status: Any = None) -> SearchStrategy[Container]:
    """Valid ``orangefs_downcall_s`` values; ``op`` fixes the type, ``status`` the status."""
    overrides: dict[str, Any] = {"type": _op(op)}
    if status is not None:
        overrides["status"] = status
    return values(orangefs_downcall_s, overrides)


def read_frames(op: int | None = None) -> SearchStrategy[Container]:
    """Read-frame values the client-core accepts: version 0, the magic, any tag."""
    return values(
        read_frame,
        {"version": ORANGEFS_KERNEL_PROTO_VERSION, "magic": ORANGEFS_DEVREQ_MAGIC, "upcall.type": _op(op)},
    )


def any_read_frames() -> SearchStrategy[Container]:
    """read_frame values with any version and magic (for codec-equivalence tests)."""
    return values(read_frame, {"upcall.type": op_types()})


def any_write_frames() -> SearchStrategy[Container]:
    """write_frame (head + downcall) values with any field values."""
    return values(write_frame, {"downcall.type": op_types()})


def userspace_versions() -> SearchStrategy[int]:
    """Versions that pass check 3 of §1.4 (unsigned ≥ 20903)."""
    return st.one_of(
        st.sampled_from([ORANGEFS_MINIMUM_USERSPACE_VERSION, 20906, 20907, PVFS2DEV_USERSPACE_VERSION, U32_MAX]),
        st.integers(ORANGEFS_MINIMUM_USERSPACE_VERSION, U32_MAX),
    )


def khandles() -> SearchStrategy[bytes]:
    return st.binary(min_size=16, max_size=16)


def entry_names() -> SearchStrategy[bytes]:
    """Names a READDIR entry may carry: 1..255 bytes, no NUL."""
    return st.one_of(
        st.binary(min_size=1, max_size=24).map(lambda b: b.replace(b"\0", b"/")),
        filled_bytes(1, 255, allow_nul=False),
    )


def readdir_entries(max_size: int = 12) -> SearchStrategy[list[tuple[bytes, bytes]]]:
    """Entry lists for :func:`encode_readdir_trailer`."""
    return st.lists(st.tuples(entry_names(), khandles()), max_size=max_size)


def readdir_tokens() -> SearchStrategy[int]:
    return st.one_of(st.sampled_from([ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START, 0]), st.integers(0, U64_MAX))


class ReaddirCase(NamedTuple):
    entries: list[tuple[bytes, bytes]]
    token: int
    directory_version: int

    def encode(self) -> bytes:
        return encode_readdir_trailer(self.entries, self.token, self.directory_version)


def readdir_cases(max_size: int = 12) -> SearchStrategy[ReaddirCase]:
    return st.builds(ReaddirCase, readdir_entries(max_size), readdir_tokens(), st.integers(0, U64_MAX))


def readdir_trailers(max_size: int = 12) -> SearchStrategy[bytes]:
    """Valid READDIR trailers (what both kernels accept)."""
    return readdir_cases(max_size).map(ReaddirCase.encode)


class WriteFrameCase(NamedTuple):
    """One valid device write: everything :func:`encode_write_frame` takes."""

    tag: int
    version: int
    downcall: Container
    trailer: bytes

    def encode(self) -> bytes:
        return pvfs2proto.encode_write_frame(self.tag, self.downcall, self.trailer, version=self.version)


@st.composite
def write_frames(draw, op: int | None = None, status: Any = None) -> WriteFrameCase:
    """Device writes that pass every check of spec §1.4.

    A successful READDIR carries a trailer from :func:`encode_readdir_trailer`
    and its trailer_size; any other successful downcall has trailer_size 0 and
    no trailer; a failed one (status ≠ 0) keeps whatever trailer_size it drew
    and has no trailer bytes.
    """
    downcall = draw(downcalls(op, statuses() if status is None else status))
    trailer = b""
    if downcall.status == 0:
        if downcall.type == OpCode.READDIR:
            trailer = draw(readdir_trailers(max_size=6))
        downcall.trailer_size = len(trailer)
    return WriteFrameCase(draw(st.integers(0, U64_MAX)), draw(userspace_versions()), downcall, trailer)


# --- every struct the package declares --------------------------------------------------------


def all_cstructs() -> dict[str, CStruct]:
    """Every CStruct: frames, upcall, downcall, each union member, building blocks, ioctl args."""
    found: dict[str, CStruct] = {
        "read_frame": read_frame,
        "write_frame": write_frame,
        "write_frame_head": write_frame_head,
        "orangefs_upcall_s": orangefs_upcall_s,
        "orangefs_downcall_s": orangefs_downcall_s,
        "orangefs_readdir_response_s": orangefs_readdir_response_s,
        "orangefs_object_kref": orangefs_object_kref,
        "ORANGEFS_sys_attr_s": ORANGEFS_sys_attr_s,
        "ORANGEFS_keyval_pair": ORANGEFS_keyval_pair,
        "ORANGEFS_dev_map_desc": ORANGEFS_dev_map_desc,
        "dev_mask_info_s": dev_mask_info_s,
        "dev_mask2_info_s": dev_mask2_info_s,
        "ioctl_int_arg": ioctl_int_arg,
    }
    for op, (name, member) in UPCALL_MEMBERS.items():
        found[f"upcall.req.{name}"] = member
    for op, entry in DOWNCALL_MEMBERS.items():
        if entry is not None:
            found[f"downcall.resp.{entry[0]}"] = entry[1]
    return found


def struct_values(sc: CStruct) -> SearchStrategy[Container]:
    """Values of any CStruct; a union selector called ``type`` is biased to real op codes."""
    overrides: dict[str, Any] = {}
    for name, inner in struct_fields(sc):
        if isinstance(inner, OpUnion):
            overrides[inner.selector] = op_types()
        elif isinstance(inner, Struct):
            for sub_name, sub_inner in struct_fields(inner):
                if isinstance(sub_inner, OpUnion):
                    overrides[f"{name}.{sub_inner.selector}"] = op_types()
    return values(sc, overrides)


# --- leaves, and breaking one ----------------------------------------------------------------


def leaves(sc: Construct, value: Any, path: Path = ()) -> list[tuple[Path, Construct]]:
    """Every leaf field of a value (with its construct), following the live union member."""
    if isinstance(sc, Renamed):
        return leaves(sc.subcon, value, path)
    if isinstance(sc, Struct):
        out = []
        for name, inner in struct_fields(sc):
            if isinstance(inner, OpUnion):
                member = inner.member(value[inner.selector])
                if member is not None:
                    out += leaves(member.subcon, value[name][member.name], path + (name, member.name))
            else:
                out += leaves(inner, value[name], path + (name,))
        return out
    return [(path, sc)]


def bad_leaf_values(sc: Construct) -> SearchStrategy[Any]:
    """Values that do not fit a leaf field: the encoder must refuse them with EncodeError."""
    if isinstance(sc, FormatField):
        lo, hi = int_range(sc)
        return st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1))
    if isinstance(sc, CString):
        too_long = filled_bytes(sc.length, sc.length + 8, allow_nul=False)
        with_nul = st.tuples(st.binary(max_size=8), st.binary(max_size=8)).map(lambda t: t[0] + b"\0" + t[1])
        return st.one_of(too_long, with_nul)
    if isinstance(sc, Blob):
        return filled_bytes(sc.length + 1, sc.length + 8, allow_nul=True)
    if isinstance(sc, Bytes):
        return st.binary(max_size=sc.length + 8).filter(lambda b: len(b) != sc.length)
    if isinstance(sc, Array):
        return st.lists(integers_for(sc.subcon), max_size=sc.count + 2).filter(
            lambda xs: len(xs) != sc.count
        )
    raise TypeError(f"no bad values for {type(sc).__name__}")


def set_path(value: Any, path: Path, new: Any) -> None:
    for name in path[:-1]:
        value = value[name]
    value[path[-1]] = new


def get_path(value: Any, path: Path) -> Any:
    for name in path:
        value = value[name]
    return value


@st.composite
def broken_values(draw, sc: CStruct, base: SearchStrategy | None = None) -> tuple[Container, Path]:
    """A valid value of ``sc`` with exactly one leaf replaced by one that does not fit."""
    value = draw(base if base is not None else struct_values(sc))
    path, leaf = draw(st.sampled_from(leaves(sc, value)))
    set_path(value, path, draw(bad_leaf_values(leaf)))
    return value, path


# --- bytes for fuzzing ---------------------------------------------------------------------------


def near_size_bytes(*sizes: int, spread: int = 3) -> SearchStrategy[bytes]:
    """Bytes whose length is within ``spread`` of one of ``sizes`` (random head, fill, tail)."""

    @st.composite
    def build(draw) -> bytes:
        size = draw(st.sampled_from(sizes))
        length = max(0, size + draw(st.integers(-spread, spread)))
        return draw(filled_bytes(length, length, allow_nul=True))

    return build()


#: Interesting values to splat into a field when mutating.
INTERESTING_U32 = (
    0,
    1,
    7,
    8,
    23,
    24,
    ORANGEFS_MINIMUM_USERSPACE_VERSION - 1,
    ORANGEFS_MINIMUM_USERSPACE_VERSION,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_DEVREQ_MAGIC ^ 1,
    int(OpCode.READDIR),
    int(OpCode.LOOKUP),
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFB,
    0xFFFFFFFF,
)

#: Offsets in a write frame where the checks look.
WRITE_FRAME_OFFSETS = (
    0,  # version
    4,  # magic
    8,  # tag
    FRAME_HEAD_SIZE + 0,  # downcall.type
    FRAME_HEAD_SIZE + 4,  # downcall.status
    FRAME_HEAD_SIZE + 8,  # downcall.trailer_size (low word)
    FRAME_HEAD_SIZE + 12,  # downcall.trailer_size (high word)
    MAX_DEV_REQ_DOWNSIZE,  # trailer token
    MAX_DEV_REQ_DOWNSIZE + 20,  # trailer outcount
    MAX_DEV_REQ_DOWNSIZE + READDIR_RESPONSE_SIZE,  # first entry's len
)

#: Offsets in a read frame where the checks look.
READ_FRAME_OFFSETS = (0, 4, 8, FRAME_HEAD_SIZE)


@st.composite
def mutated(draw, base: SearchStrategy[bytes], offsets: tuple[int, ...] = (), max_steps: int = 4) -> bytes:
    """``base`` bytes after a few random edits: splat a word, flip a byte, cut, append, insert."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(["u32", "u64", "xor", "truncate", "append", "delete", "insert"]))
        at = draw(st.one_of(st.sampled_from(offsets or (0,)), st.integers(0, max(len(data), 1))))
        if kind == "u32":
            word = draw(st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, U32_MAX)))
            data[at : at + 4] = word.to_bytes(4, "little")
        elif kind == "u64":
            word = draw(st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, U64_MAX)))
            if draw(st.booleans()):
                word = (-word) & U64_MAX
            data[at : at + 8] = word.to_bytes(8, "little")
        elif kind == "xor":
            if at < len(data):
                data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def valid_write_frame_bytes() -> SearchStrategy[bytes]:
    return write_frames().map(WriteFrameCase.encode)


def valid_read_frame_bytes() -> SearchStrategy[bytes]:
    return read_frames().map(lambda v: pvfs2proto.encode_read_frame(v.tag, v.upcall))
