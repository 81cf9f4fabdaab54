"""Framing of pvfs2dev's own sockets (shared/DESIGN.md), around the kernel's frames.

Device channel (``pvfs2-req``, SOCK_SEQPACKET): every device syscall is one
request packet and gets one reply packet::

    request  u32 call | u32 seq | i64 a0 | i64 a1 | payload
    reply    u32 call | u32 seq | i64 result | payload     (result < 0 is -errno)

VFS channel (``pvfs2-vfs``, SOCK_STREAM, each message after a u32 LE length)::

    request  u32 flags | u32 kind | u64 req_id | (SUBMIT) upcall (8528) | write data
    reply    i32 result | u32 pad | u64 tag | u64 req_id | downcall (8224) | read data or trailer
"""

from __future__ import annotations

import enum
import struct

from construct import Int32sl, Int32ul, Int64sl, Int64ul, Padding

from .cstruct import CStruct


class DeviceCall(enum.IntEnum):
    """The device syscalls a client-core makes, one packet each."""

    OPEN = 1
    READ = 2
    WRITE = 3
    POLL = 4
    IOCTL = 5
    CLOSE = 6
    ATTACH = 7


#: Device channel request head (24 bytes).
device_request = CStruct(
    "call" / Int32ul,
    "seq" / Int32ul,
    "a0" / Int64sl,
    "a1" / Int64sl,
)

#: Device channel reply head (16 bytes).
device_reply = CStruct(
    "call" / Int32ul,
    "seq" / Int32ul,
    "result" / Int64sl,
)

DEVICE_REQUEST_SIZE = device_request.size
DEVICE_REPLY_SIZE = device_reply.size

# Plain struct forms of the same layouts for the per-packet hot path.
DEVICE_REQUEST = struct.Struct("<IIqq")
DEVICE_REPLY = struct.Struct("<IIq")
assert DEVICE_REQUEST.size == DEVICE_REQUEST_SIZE and DEVICE_REPLY.size == DEVICE_REPLY_SIZE

#: poll(2) bits the device reports; it only ever reports POLLIN (spec §1.5).
POLLIN = 0x0001
#: ``OPEN``'s token is a u64 payload of the reply.
FILE_TOKEN = struct.Struct("<Q")


class VfsKind(enum.IntEnum):
    """What a VFS channel request asks for."""

    SUBMIT = 0
    INTERRUPT = 1


class SignalKind(enum.IntEnum):
    """``flags`` of an INTERRUPT: which signal the waiting caller gets.

    An ordinary signal only ends INTERRUPTIBLE waits; a fatal one (SIGKILL)
    ends every wait except a WRITEBACK one, as in the kernel (spec §4.5).
    """

    SIGNAL = 0
    FATAL = 1


#: VFS channel request head (16 bytes), after the u32 length prefix.
vfs_request = CStruct(
    "flags" / Int32ul,
    "kind" / Int32ul,
    "req_id" / Int64ul,
)

#: VFS channel reply head (24 bytes), after the u32 length prefix.
vfs_reply = CStruct(
    "result" / Int32sl,
    Padding(4),
    "tag" / Int64ul,
    "req_id" / Int64ul,
)

VFS_REQUEST = struct.Struct("<IIQ")
VFS_REPLY = struct.Struct("<i4xQQ")
VFS_LENGTH = struct.Struct("<I")
assert VFS_REQUEST.size == vfs_request.size and VFS_REPLY.size == vfs_reply.size
