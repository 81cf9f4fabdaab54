"""A minimal client-core: answers every upcall at once, correctly shaped.

It serves no filesystem.  It exists so the broker can be tested and measured
with a peer whose own cost is as small as it can be: each downcall is built
once per op type and only the head (tag) changes per reply.
"""

from __future__ import annotations

import struct

import trio

import pvfs2proto as proto
from pvfs2proto import OpCode
from pvfs2proto.constants import ORANGEFS_DEVREQ_MAGIC, PVFS2DEV_USERSPACE_VERSION

from .device import Device

_HEAD = struct.Struct("<IIQ")
_TAG_TYPE = struct.Struct("<Q I")  # tag at 8, type at 16 of the read frame
_IO_COUNT_AT = 16 + 48
MINIMAL_FS_ID = 7
MINIMAL_ROOT = bytes(range(1, 17))
EMPTY_TRAILER = proto.encode_readdir_trailer([])


def _downcall(op_type: int) -> bytes:
    downcall: dict = {"type": op_type, "status": 0}
    if op_type == OpCode.FS_MOUNT:
        downcall["resp"] = {"fs_mount": {"fs_id": MINIMAL_FS_ID, "id": 1, "root_khandle": MINIMAL_ROOT}}
    elif op_type == OpCode.GETATTR:
        downcall["resp"] = {"getattr": {"attributes": {"objtype": proto.ObjType.DIRECTORY, "perms": 0o755,
                                                        "mask": proto.AttrMask.ALL_NOHINT}}}
    elif op_type == OpCode.READDIR:
        downcall["trailer_size"] = len(EMPTY_TRAILER)
    return proto.encode_downcall(downcall)


_TEMPLATES: dict[int, bytes] = {int(op): _downcall(op) for op in OpCode if op != OpCode.INVALID}


def reply_for(frame: bytes) -> bytes:
    """The write frame answering one read frame: success, type echoed."""
    (tag,) = struct.unpack_from("<Q", frame, 8)
    (op_type,) = struct.unpack_from("<I", frame, 16)
    body = _TEMPLATES.get(op_type)
    head = _HEAD.pack(PVFS2DEV_USERSPACE_VERSION, ORANGEFS_DEVREQ_MAGIC, tag)
    if body is None:
        return head + proto.encode_downcall({"type": op_type, "status": proto.errno_to_status(38)})
    if op_type == OpCode.FILE_IO:
        (count,) = struct.unpack_from("<i", frame, _IO_COUNT_AT)
        body = bytearray(body)
        struct.pack_into("<q", body, 24, count)
        return head + body
    if op_type == OpCode.READDIR:
        return head + body + EMPTY_TRAILER
    return head + body


async def serve_minimal(device: Device, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """POLL, READ until EAGAIN, answer each; until the device channel closes."""
    task_status.started()
    try:
        while True:
            await device.poll()
            while (frame := await device.read()) is not None:
                await device.write(reply_for(frame))
    except BrokenPipeError:
        return
