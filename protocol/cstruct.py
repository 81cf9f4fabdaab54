"""Fixed-layout C structs as construct declarations, coded in one ``struct`` call.

Why this exists: construct's own ``.compile()`` gets a full read frame (16-byte
head + 8528-byte upcall) to about 42,000 encode+decode round trips a second on
our 2-core machines, because every nested ``Struct`` builds a context
``Container`` and every field is a separate ``pack``.  The kernel structs are
plain C: every field has a fixed width and offset.  So a :class:`CStruct` is a
``construct.Struct`` (same declaration, same ``sizeof``, same ``Container``
values, usable inside any construct) whose ``_parse``/``_build`` flatten the
whole tree — nested structs, pads, char arrays and at most one op-type union —
into a single ``struct.Struct`` format per union case, and run generated code
that maps the flat tuple to nested Containers and back.

The declarations stay the single source of truth: :func:`as_plain` turns any
CStruct tree back into stock construct classes, and the tests check that both
give the same bytes and the same values.

Field kinds a CStruct may hold (anything else is refused at declaration time):

* ``FormatField`` little-endian integers (``Int32ul``, ``Int64sl`` …);
* ``Padding(n)``: pads and compiler holes; encode as zero, ignored on decode;
* ``Bytes(n)``: exactly n bytes (khandles);
* :class:`CString` ``(n)``: ``char[n]`` holding a NUL-terminated string;
* :class:`Blob` ``(n)``: ``char[n]`` of opaque bytes whose length lives elsewhere;
* ``Array(k, FormatField)``;
* nested ``Struct``/``CStruct``;
* one :class:`OpUnion`, selected by an integer field declared before it in the
  same struct.

Encoding is forgiving in one C-like way: a field missing from the value encodes
as zero, as in the kernel's zero-allocated ops.  Everything else is strict and
raises :class:`~pvfs2proto.errors.EncodeError`.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterator, Mapping

from construct import (
    Array,
    Bytes,
    Construct,
    Container,
    FormatField,
    ListContainer,
    Padded,
    Pass,
    Renamed,
    Struct,
    stream_read,
    stream_write,
)

from .errors import EncodeError

__all__ = ["CString", "Blob", "OpUnion", "CStruct", "as_plain", "offsetof", "field_size"]


# --- char arrays ----------------------------------------------------------------


def decode_cstring(raw: bytes) -> bytes:
    """The C string in a char array: the bytes before the first NUL (all, if none)."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def encode_cstring(value: Any, length: int, name: str) -> bytes:
    """Check a value for a ``char[length]`` string field (the NUL must fit)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{name}: expected bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) >= length:
        raise EncodeError(f"{name}: {len(value)} bytes do not fit char[{length}] with its NUL")
    if b"\0" in value:
        raise EncodeError(f"{name}: string contains a NUL byte")
    return value


def encode_blob(value: Any, length: int, name: str) -> bytes:
    """Check a value for an opaque ``char[length]`` (shorter values are zero-padded)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{name}: expected bytes, got {type(value).__name__}")
    if len(value) > length:
        raise EncodeError(f"{name}: {len(value)} bytes do not fit char[{length}]")
    return bytes(value)


def encode_exact(value: Any, length: int, name: str) -> bytes:
    """Check a value for a fixed ``u8[length]`` such as a khandle."""
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != length:
        raise EncodeError(f"{name}: expected exactly {length} bytes, got {value!r:.60}")
    return bytes(value)


def encode_array(value: Any, count: int, name: str) -> Any:
    if value is None or value == 0:
        return (0,) * count
    if len(value) != count:
        raise EncodeError(f"{name}: expected {count} items, got {len(value)}")
    return value


class _CharArray(Construct):
    """A ``char[length]`` field; subclasses say how its bytes read and check."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    @staticmethod
    def decode(raw: bytes) -> bytes:
        return raw

    @staticmethod
    def encode(value: Any, length: int, name: str) -> bytes:
        raise NotImplementedError

    def _parse(self, stream, context, path):
        return self.decode(stream_read(stream, self.length, path))

    def _build(self, obj, stream, context, path):
        data = self.encode(obj, self.length, path)
        stream_write(stream, data.ljust(self.length, b"\0"), self.length, path)
        return obj

    def _sizeof(self, context, path):
        return self.length


class CString(_CharArray):
    """``char[length]`` holding a NUL-terminated string (names, targets, keys).

    Parses to the bytes before the first NUL (the whole field if there is none);
    builds from bytes of at most ``length - 1`` without NUL, zero-padded.
    """

    decode = staticmethod(decode_cstring)
    encode = staticmethod(encode_cstring)


class Blob(_CharArray):
    """``char[length]`` of opaque bytes whose real length is carried elsewhere.

    Parses to all ``length`` bytes, as they are (use ``val[:val_sz]``); builds
    from at most ``length`` bytes, zero-padded.
    """

    encode = staticmethod(encode_blob)


class OpUnion(Construct):
    """A C union whose live member is chosen by an op-type field before it.

    Args:
        size: sizeof the union (its largest member).
        selector: name of the sibling integer field that picks the member.
        cases: selector value → ``"member" / Struct`` (a Renamed construct), or
            ``None`` for values whose union carries nothing.
        default: ``"member" / construct`` used for any other value.

    Values are ``Container(member=...)``, or ``Container()`` for a ``None`` case,
    mirroring C's ``upcall.req.io.count``.
    """

    def __init__(
        self,
        size: int,
        selector: str,
        cases: Mapping[int, Renamed | None],
        default: Renamed,
    ) -> None:
        super().__init__()
        self.size = size
        self.selector = selector
        self.cases = dict(cases)
        self.default = default
        for key, member in list(self.cases.items()) + [(None, default)]:
            if member is None:
                continue
            if not isinstance(member, Renamed) or not member.name:
                raise TypeError(f"OpUnion case {key!r} must be a named construct")
            if member.subcon.sizeof() > size:
                raise TypeError(f"OpUnion case {member.name} is larger than the union")

    def member(self, key: int) -> Renamed | None:
        return self.cases[key] if key in self.cases else self.default

    def _parse(self, stream, context, path):
        member = self.member(context[self.selector])
        raw = stream_read(stream, self.size, path)
        if member is None:
            return Container()
        return Container({member.name: member.subcon.parse(raw[: member.subcon.sizeof()])})

    def _build(self, obj, stream, context, path):
        member = self.member(context[self.selector])
        data = b""
        if member is not None:
            data = member.subcon.build(obj[member.name])
        stream_write(stream, data.ljust(self.size, b"\0"), self.size, path)
        return obj

    def _sizeof(self, context, path):
        return self.size


# --- the flattening compiler ----------------------------------------------------------


def _is_padding(sc: Construct) -> bool:
    return isinstance(sc, Padded) and sc.subcon is Pass


def _subcons(sc: Construct) -> list[Construct]:
    if isinstance(sc, Struct):
        return sc.subcons
    raise TypeError(f"not a struct: {sc!r}")


class _Codec:
    """One flat layout: a struct.Struct and the generated parse/build functions."""

    __slots__ = ("struct", "parse", "build")

    def __init__(self, st: struct.Struct, parse: Callable, build: Callable) -> None:
        self.struct = st
        self.parse = parse
        self.build = build


class _Generator:
    """Walks one struct tree for one union choice and emits Python source."""

    def __init__(self, union_key: int | None) -> None:
        self.union_key = union_key
        self.fmt: list[str] = []
        self.nvalues = 0
        self.build_lines: list[str] = []
        self.build_args: list[str] = []
        self.nlocals = 0
        self.offset = 0
        # Recorded for the union's selector: path → byte offset of each int field.
        self.int_offsets: dict[tuple[str, ...], tuple[int, str]] = {}
        self.union: tuple[tuple[str, ...], OpUnion] | None = None

    def _local(self, expr: str) -> str:
        self.nlocals += 1
        name = f"o{self.nlocals}"
        self.build_lines.append(f"    {name} = {expr} or _EMPTY")
        return name

    def _emit(self, code: str, size: int, nvalues: int) -> int:
        self.fmt.append(code)
        self.offset += size
        first = self.nvalues
        self.nvalues += nvalues
        return first

    def _pad(self, size: int) -> None:
        if size:
            self._emit(f"{size}x", size, 0)

    def struct_expr(self, sc: Construct, obj: str, path: tuple[str, ...]) -> str:
        """Emit the fields of a struct; return the parse expression for it."""
        items: list[str] = []
        for sub in _subcons(sc):
            if _is_padding(sub):
                self._pad(sub.length)
                continue
            if not isinstance(sub, Renamed) or not sub.name:
                raise TypeError(f"{'.'.join(path) or 'struct'}: unnamed field {sub!r}")
            name, inner = sub.name, sub.subcon
            items.append(f"{name}={self.field_expr(inner, obj, path + (name,))}")
        return f"Container({', '.join(items)})"

    def field_expr(self, sc: Construct, obj: str, path: tuple[str, ...]) -> str:
        name = path[-1]
        label = ".".join(path)
        get = f"{obj}.get({name!r})"
        if isinstance(sc, FormatField):
            if sc.fmtstr[0] != "<":
                raise TypeError(f"{label}: only little-endian fields")
            self.int_offsets[path] = (self.offset, sc.fmtstr)
            i = self._emit(sc.fmtstr[1:], sc.length, 1)
            self.build_args.append(f"{get} or 0")
            return f"v[{i}]"
        if isinstance(sc, CString):
            i = self._emit(f"{sc.length}s", sc.length, 1)
            self.build_args.append(f"_cstr({obj}.get({name!r}, b''), {sc.length}, {label!r})")
            return f"_dcstr(v[{i}])"
        if isinstance(sc, Blob):
            i = self._emit(f"{sc.length}s", sc.length, 1)
            self.build_args.append(f"_blob({obj}.get({name!r}, b''), {sc.length}, {label!r})")
            return f"v[{i}]"
        if isinstance(sc, Bytes) and isinstance(sc.length, int):
            i = self._emit(f"{sc.length}s", sc.length, 1)
            self.build_args.append(
                f"_exact({obj}.get({name!r}, {bytes(sc.length)!r}), {sc.length}, {label!r})"
            )
            return f"v[{i}]"
        if isinstance(sc, Array) and isinstance(sc.count, int) and isinstance(sc.subcon, FormatField):
            count, fmtstr = sc.count, sc.subcon.fmtstr
            i = self._emit(fmtstr[1:] * count, sc.subcon.length * count, count)
            self.build_args.append(f"*_array({get}, {count}, {label!r})")
            return f"ListContainer(v[{i}:{i + count}])"
        if isinstance(sc, Struct):
            local = self._local(get)
            return self.struct_expr(sc, local, path)
        if isinstance(sc, OpUnion):
            return self.union_expr(sc, obj, path)
        raise TypeError(f"{label}: {type(sc).__name__} has no fixed C layout")

    def union_expr(self, sc: OpUnion, obj: str, path: tuple[str, ...]) -> str:
        if self.union is not None:
            raise TypeError(f"{'.'.join(path)}: only one OpUnion per CStruct")
        selector = path[:-1] + (sc.selector,)
        if selector not in self.int_offsets:
            raise TypeError(f"{'.'.join(path)}: selector {sc.selector!r} must precede the union")
        self.union = (selector, sc)
        member = sc.member(self.union_key) if self.union_key is not None else sc.default
        start = self.offset
        if member is None:
            expr = "Container()"
        else:
            local = self._local(f"{obj}.get({path[-1]!r})")
            inner = self.field_expr(member.subcon, local, path + (member.name,))
            expr = f"Container({member.name}={inner})"
        self._pad(sc.size - (self.offset - start))
        return expr

    def compile(self, root: Struct) -> _Codec:
        parse_expr = self.struct_expr(root, "obj", ())
        st = struct.Struct("<" + "".join(self.fmt))
        source = (
            "def parse(data, offset=0):\n"
            "    v = _unpack_from(data, offset)\n"
            f"    return {parse_expr}\n"
            "def build(obj):\n"
            + "".join(line + "\n" for line in self.build_lines)
            + f"    return _pack({', '.join(self.build_args)})\n"
        )
        namespace: dict[str, Any] = {
            "Container": Container,
            "ListContainer": ListContainer,
            "_EMPTY": Container(),
            "_dcstr": decode_cstring,
            "_cstr": encode_cstring,
            "_blob": encode_blob,
            "_exact": encode_exact,
            "_array": encode_array,
            "_unpack_from": st.unpack_from,
            "_pack": st.pack,
        }
        exec(compile(source, f"<CStruct {getattr(root, 'name', None) or 'anonymous'}>", "exec"), namespace)
        return _Codec(st, namespace["parse"], namespace["build"])


class CStruct(Struct):
    """A ``construct.Struct`` of fixed C layout, parsed and built in one ``struct`` call.

    Use it like ``Struct``.  For hot paths call :meth:`unpack` / :meth:`pack`
    directly: they skip construct's stream and context machinery.
    """

    def __init__(self, *subcons, **subconskw) -> None:
        super().__init__(*subcons, **subconskw)
        probe = _Generator(None)
        default_codec = probe.compile(self)
        self._size = default_codec.struct.size
        self._default = default_codec
        self._cases: dict[int, _Codec] = {}
        self._selector: tuple[int, struct.Struct] | None = None
        self._selector_path: tuple[str, ...] = ()
        if probe.union is not None:
            path, union = probe.union
            offset, fmtstr = probe.int_offsets[path]
            self._selector = (offset, struct.Struct(fmtstr))
            self._selector_path = path
            for key in union.cases:
                codec = _Generator(key).compile(self)
                if codec.struct.size != self._size:
                    raise TypeError(f"union case {key:#x} changes the struct size")
                self._cases[key] = codec

    # -- fast direct API -------------------------------------------------------------

    @property
    def size(self) -> int:
        """sizeof() of the struct, known without a context."""
        return self._size

    def _codec_for_bytes(self, data, offset: int) -> _Codec:
        if self._selector is None:
            return self._default
        sel_offset, sel_struct = self._selector
        key = sel_struct.unpack_from(data, offset + sel_offset)[0]
        return self._cases.get(key, self._default)

    def unpack(self, data, offset: int = 0) -> Container:
        """Decode ``self.size`` bytes at ``offset`` of ``data`` (bytes-like).

        Raises ``struct.error`` if fewer bytes are there; callers that face the
        peer check lengths first and raise ProtocolError themselves.
        """
        return self._codec_for_bytes(data, offset).parse(data, offset)

    def unpack_case(self, key: int, data, offset: int = 0) -> Container:
        """Decode like :meth:`unpack` but pick the union member for ``key``.

        The kernel reads a downcall's ``resp`` by the type of the op it answers,
        whatever ``downcall.type`` says; this is how the broker does the same.
        """
        return self._cases.get(key, self._default).parse(data, offset)

    def _codec_for_value(self, obj: Mapping) -> _Codec:
        if self._selector is None:
            return self._default
        value: Any = obj
        for name in self._selector_path:
            value = value.get(name) if value else None
        return self._cases.get(value or 0, self._default)

    def pack(self, obj: Mapping) -> bytes:
        """Encode a value to exactly ``self.size`` bytes.

        Raises:
            EncodeError: a field does not fit its C type.
        """
        try:
            return self._codec_for_value(obj).build(obj)
        except EncodeError:
            raise
        except (struct.error, TypeError, AttributeError, KeyError, ValueError) as exc:
            raise EncodeError(str(exc)) from exc

    # -- construct protocol --------------------------------------------------------------

    def _parse(self, stream, context, path):
        return self.unpack(stream_read(stream, self._size, path))

    def _build(self, obj, stream, context, path):
        stream_write(stream, self.pack(obj), self._size, path)
        return obj

    def _sizeof(self, context, path):
        return self._size

    def _emitparse(self, code):
        # Let construct's compiler call our generated code rather than emit its own.
        raise NotImplementedError

    def _emitbuild(self, code):
        raise NotImplementedError


# --- introspection --------------------------------------------------------------------


def as_plain(sc: Construct) -> Construct:
    """The same declaration in stock construct classes (reference codec for tests)."""
    if isinstance(sc, Renamed):
        return Renamed(as_plain(sc.subcon), newname=sc.name)
    if isinstance(sc, CStruct):
        return Struct(*[as_plain(s) for s in sc.subcons])
    if isinstance(sc, OpUnion):
        return OpUnion(
            sc.size,
            sc.selector,
            {k: (None if v is None else as_plain(v)) for k, v in sc.cases.items()},
            as_plain(sc.default),
        )
    if isinstance(sc, Struct):
        return Struct(*[as_plain(s) for s in sc.subcons])
    return sc


def _walk(sc: Construct, dotted: str) -> Iterator[tuple[int, Construct]]:
    """Yield (offset, construct) down a dotted path; union members by name."""
    offset = 0
    target: Construct = sc
    for name in dotted.split("."):
        if isinstance(target, OpUnion):
            members = [m for m in list(target.cases.values()) + [target.default] if m is not None]
            found = next((m for m in members if m.name == name), None)
            if found is None:
                raise KeyError(f"{dotted}: union has no member {name!r}")
            target = found.subcon
            continue
        pos = 0
        for sub in _subcons(target):
            if getattr(sub, "name", None) == name:
                offset += pos
                target = sub.subcon
                break
            pos += sub.sizeof()
        else:
            raise KeyError(f"{dotted}: no field {name!r}")
    yield offset, target


def offsetof(sc: Construct, dotted: str) -> int:
    """``offsetof()`` of a field given as a dotted path (``"req.io.count"``)."""
    return next(_walk(sc, dotted))[0]


def field_size(sc: Construct, dotted: str) -> int:
    """``sizeof()`` of a field given as a dotted path."""
    return next(_walk(sc, dotted))[1].sizeof()
