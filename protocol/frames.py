"""Device frames: what one read and one write of ``/dev/pvfs2-req`` carry (spec §1.3, §1.4).

Read frame (kernel → client-core), exactly ``MAX_DEV_REQ_UPSIZE`` = 8544 bytes::

    s32 version (0)  s32 magic  u64 tag  struct orangefs_upcall_s (8528)

Write frame (client-core → kernel), ``MAX_DEV_REQ_DOWNSIZE`` = 8240 bytes plus a
trailer for READDIR only::

    u32 version (≥ 20903)  u32 magic  u64 tag  struct orangefs_downcall_s (8224)  trailer

The decoders apply the kernel's checks in the kernel's order and raise
:class:`~pvfs2proto.errors.ProtocolError` with the kernel's errno.  A device
write is checked in two halves because the broker must look the tag up in
between (a downcall for an unknown tag is accepted and dropped *before* its
body is examined): :func:`decode_write_head` is checks 1–4 of spec §1.4 and
:func:`decode_write_body` is checks 8–12.  The stateful checks (same version
on every write, tag lookup) belong to the broker.
"""

from __future__ import annotations

import errno
import struct
from typing import Mapping, NamedTuple

from construct import Container, Int32sl, Int32ul, Int64ul

from .constants import (
    DOWNCALL_SIZE,
    FRAME_HEAD_SIZE,
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_KERNEL_PROTO_VERSION,
    ORANGEFS_MINIMUM_USERSPACE_VERSION,
    PVFS2DEV_USERSPACE_VERSION,
    READDIR_RESPONSE_SIZE,
    UPCALL_SIZE,
)
from .cstruct import CStruct
from .downcall import orangefs_downcall_s
from .enums import OpCode, opname
from .errors import ProtocolError
from .upcall import orangefs_upcall_s

__all__ = [
    "read_frame",
    "write_frame_head",
    "write_frame",
    "encode_read_frame",
    "decode_read_frame",
    "encode_write_frame",
    "check_write_head",
    "check_write_body",
    "decode_write_head",
    "decode_write_body",
    "decode_write_frame",
    "encode_upcall",
    "decode_upcall",
    "encode_downcall",
    "decode_downcall",
    "WriteBody",
]

#: The whole read frame (8544 bytes).
read_frame = CStruct(
    "version" / Int32sl,  # ORANGEFS_KERNEL_PROTO_VERSION, 0
    "magic" / Int32sl,
    "tag" / Int64ul,
    "upcall" / orangefs_upcall_s,
)

#: The 16 bytes in front of every downcall.  The version is compared unsigned.
write_frame_head = CStruct(
    "version" / Int32ul,
    "magic" / Int32ul,
    "tag" / Int64ul,
)

#: Head + downcall (8240 bytes); a READDIR trailer follows it on the wire.
write_frame = CStruct(
    "version" / Int32ul,
    "magic" / Int32ul,
    "tag" / Int64ul,
    "downcall" / orangefs_downcall_s,
)

_READDIR = int(OpCode.READDIR)

assert read_frame.size == MAX_DEV_REQ_UPSIZE
assert write_frame.size == MAX_DEV_REQ_DOWNSIZE
assert orangefs_upcall_s.size == UPCALL_SIZE
assert orangefs_downcall_s.size == DOWNCALL_SIZE


# --- read frames --------------------------------------------------------------------------------


def encode_read_frame(
    tag: int,
    upcall: Mapping,
    *,
    version: int = ORANGEFS_KERNEL_PROTO_VERSION,
    magic: int = ORANGEFS_DEVREQ_MAGIC,
) -> bytes:
    """Build the 8544 bytes a device read returns for one op.

    Raises:
        EncodeError: a field of the upcall does not fit.
    """
    return read_frame.pack({"version": version, "magic": magic, "tag": tag, "upcall": upcall})


def decode_read_frame(data, *, userspace_version: int | None = None) -> Container:
    """Decode a device read, with the client-core's checks (pint-dev.c).

    Args:
        data: what the read returned.
        userspace_version: also accept this version besides the kernel's 0, as
            the userspace library does.

    Returns:
        ``Container(version, magic, tag, upcall)``.

    Raises:
        ProtocolError: EINVAL if the length is not 8544 (the kernel refuses any
            other read size); EPROTO for a wrong magic or version.
    """
    if len(data) != MAX_DEV_REQ_UPSIZE:
        raise ProtocolError(
            errno.EINVAL, f"read frame is {len(data)} bytes, must be {MAX_DEV_REQ_UPSIZE}"
        )
    frame = read_frame.unpack(data)
    if frame.magic != ORANGEFS_DEVREQ_MAGIC:
        raise ProtocolError(errno.EPROTO, f"read frame magic {frame.magic:#x}, expected {ORANGEFS_DEVREQ_MAGIC:#x}")
    if frame.version != ORANGEFS_KERNEL_PROTO_VERSION and frame.version != userspace_version:
        raise ProtocolError(errno.EPROTO, f"read frame version {frame.version} is neither 0 nor ours")
    return frame


# --- write frames ---------------------------------------------------------------------------------


def encode_write_frame(
    tag: int,
    downcall: Mapping,
    trailer: bytes = b"",
    *,
    version: int = PVFS2DEV_USERSPACE_VERSION,
    magic: int = ORANGEFS_DEVREQ_MAGIC,
) -> bytes:
    """Build one device write: head, downcall and (READDIR only) the trailer.

    ``downcall.trailer_size`` is set to ``len(trailer)`` unless the downcall
    names one itself (fault injection may want it wrong).

    Raises:
        EncodeError: a field of the downcall does not fit.
    """
    if "trailer_size" not in downcall:
        downcall = {**downcall, "trailer_size": len(trailer)}
    head_and_downcall = write_frame.pack({"version": version, "magic": magic, "tag": tag, "downcall": downcall})
    return head_and_downcall + bytes(trailer) if trailer else head_and_downcall


_WRITE_HEAD = struct.Struct("<IIQ")
_DOWNCALL_HEAD = struct.Struct("<Iiq")  # type, status, trailer_size at offset 16


def check_write_head(data) -> int:
    """Checks 1–4 of a device write on the bare bytes; returns the head's tag.

    The same rules as :func:`decode_write_head`, without building a value
    (the broker's hot path).  Also returns nothing else: the version is
    ``struct.unpack_from("<I", data)[0]`` for whoever records it.

    Raises:
        ProtocolError: EFAULT if shorter than 8240 bytes; EPROTO for a version
            below 20903 (unsigned) or a wrong magic.
    """
    if len(data) < MAX_DEV_REQ_DOWNSIZE:
        raise ProtocolError(
            errno.EFAULT, f"downcall write is {len(data)} bytes, at least {MAX_DEV_REQ_DOWNSIZE} needed"
        )
    version, magic, tag = _WRITE_HEAD.unpack_from(data)
    if version < ORANGEFS_MINIMUM_USERSPACE_VERSION:
        raise ProtocolError(
            errno.EPROTO, f"userspace version {version} is below the minimum {ORANGEFS_MINIMUM_USERSPACE_VERSION}"
        )
    if magic != ORANGEFS_DEVREQ_MAGIC:
        raise ProtocolError(errno.EPROTO, f"downcall magic {magic:#x}, expected {ORANGEFS_DEVREQ_MAGIC:#x}")
    return tag


def decode_write_head(data) -> Container:
    """Checks 1–4 of a device write (``orangefs_devreq_write_iter``).

    Returns:
        ``Container(version, magic, tag)``.

    Raises:
        ProtocolError: EFAULT if shorter than 8240 bytes; EPROTO if the version
            is below 20903 (unsigned compare: 0 fails) or the magic is wrong.
    """
    check_write_head(data)
    return write_frame_head.unpack(data)


class WriteBody(NamedTuple):
    """A validated downcall and its READDIR trailer (None when there is none)."""

    downcall: Container
    trailer: bytes | None


def check_write_body(data) -> tuple[int, memoryview | None]:
    """Checks 8–12 of a device write on the bare bytes (the broker's hot path).

    Returns:
        (downcall status, the READDIR trailer or None).  A failed downcall
        (status ≠ 0) gets no trailer or size check; extra bytes are ignored.

    Raises:
        ProtocolError: as :func:`decode_write_body`.
    """
    if len(data) < MAX_DEV_REQ_DOWNSIZE:
        raise ProtocolError(errno.EFAULT, f"downcall write is {len(data)} bytes, at least {MAX_DEV_REQ_DOWNSIZE} needed")
    op_type, status, trailer_size = _DOWNCALL_HEAD.unpack_from(data, FRAME_HEAD_SIZE)
    if status != 0:
        return status, None
    if FRAME_HEAD_SIZE + DOWNCALL_SIZE + trailer_size != len(data):
        raise ProtocolError(
            errno.EFAULT,
            f"write is {len(data)} bytes but 16 + 8224 + trailer_size {trailer_size} = "
            f"{MAX_DEV_REQ_DOWNSIZE + trailer_size}",
        )
    if op_type != _READDIR:
        if trailer_size != 0:
            raise ProtocolError(errno.EFAULT, f"{opname(op_type)} downcall carries a {trailer_size}-byte trailer")
        return 0, None
    if trailer_size == 0:
        raise ProtocolError(errno.EFAULT, "successful READDIR downcall has no trailer")
    if trailer_size < READDIR_RESPONSE_SIZE:
        raise ProtocolError(
            errno.EFAULT, f"READDIR trailer of {trailer_size} bytes is shorter than its {READDIR_RESPONSE_SIZE}-byte header"
        )
    return 0, memoryview(data)[MAX_DEV_REQ_DOWNSIZE:]


def decode_write_body(data, op_type: int | None = None) -> WriteBody:
    """Checks 8–12 of a device write, after the broker has found the op.

    Args:
        data: the whole write (head included), at least 8240 bytes — call
            :func:`decode_write_head` first.
        op_type: the type of the upcall this answers; ``resp`` is decoded as
            that op's member, as the kernel does.  Defaults to downcall.type.

    Returns:
        The downcall, and the trailer for a successful READDIR.  A failed
        downcall (status ≠ 0) is returned without any trailer or size check,
        extra bytes ignored.

    Raises:
        ProtocolError: EFAULT when the total length is not 16 + 8224 +
            trailer_size, when a non-READDIR downcall has a trailer, or a
            READDIR downcall has none or one shorter than the 24-byte header
            (the last is our rule; the kernel would parse past its end).
    """
    _, trailer = check_write_body(data)
    if op_type is None:
        downcall = orangefs_downcall_s.unpack(data, FRAME_HEAD_SIZE)
    else:
        downcall = orangefs_downcall_s.unpack_case(op_type, data, FRAME_HEAD_SIZE)
    return WriteBody(downcall, None if trailer is None else bytes(trailer))


def decode_write_frame(data, op_type: int | None = None) -> tuple[Container, WriteBody]:
    """Both halves of the write checks, in order, for a write whose op is known.

    Raises:
        ProtocolError: as :func:`decode_write_head` then :func:`decode_write_body`.
    """
    head = decode_write_head(data)
    return head, decode_write_body(data, op_type)


# --- bare upcalls and downcalls (the VFS channel carries these) -----------------------------------------


def encode_upcall(upcall: Mapping) -> bytes:
    """The 8528 bytes of one ``orangefs_upcall_s``.

    Raises:
        EncodeError: a field does not fit.
    """
    return orangefs_upcall_s.pack(upcall)


def decode_upcall(data) -> Container:
    """Decode one ``orangefs_upcall_s``.

    Raises:
        ProtocolError: EINVAL if ``data`` is not exactly 8528 bytes.
    """
    if len(data) != UPCALL_SIZE:
        raise ProtocolError(errno.EINVAL, f"upcall is {len(data)} bytes, must be {UPCALL_SIZE}")
    return orangefs_upcall_s.unpack(data)


def encode_downcall(downcall: Mapping) -> bytes:
    """The 8224 bytes of one ``orangefs_downcall_s``.

    Raises:
        EncodeError: a field does not fit.
    """
    return orangefs_downcall_s.pack(downcall)


def decode_downcall(data, op_type: int | None = None) -> Container:
    """Decode one ``orangefs_downcall_s``, ``resp`` as ``op_type``'s member.

    Raises:
        ProtocolError: EFAULT if ``data`` is not exactly 8224 bytes.
    """
    if len(data) != DOWNCALL_SIZE:
        raise ProtocolError(errno.EFAULT, f"downcall is {len(data)} bytes, must be {DOWNCALL_SIZE}")
    if op_type is None:
        return orangefs_downcall_s.unpack(data)
    return orangefs_downcall_s.unpack_case(op_type, data)
