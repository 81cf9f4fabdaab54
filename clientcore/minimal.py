"""A minimal client-core: answers every upcall at once, correctly shaped.

It serves no filesystem.  It exists so the broker can be tested and measured
with a peer whose own cost is as small as it can be: each downcall is built
once per op type and only the head (tag) changes per reply.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import trio

import pvfs2proto as proto
from pvfs2proto import OpCode
from pvfs2proto.constants import ORANGEFS_DEVREQ_MAGIC, PVFS2DEV_USERSPACE_VERSION

from pvfs2proto.channels import POLLIN, DeviceCall
from pvfs2proto.constants import MAX_DEV_REQ_UPSIZE

from .device import SOCKET_BUFFER, Device, RawChannel, handshake

_HEAD = struct.Struct("<IIQ")
_TAG_TYPE = struct.Struct("<Q I")  # tag at 8, type at 16 of the read frame
_IO_COUNT_AT = 16 + 48
MINIMAL_FS_ID = 7
#: Most READs :func:`answer` keeps outstanding while ops keep coming.
MAX_READS = 8
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


async def answer(path: str | os.PathLike, token: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Answer every upcall at once on a connection ATTACHed to the open file ``token``.

    Reads stay outstanding while ops keep coming: each frame sends its
    downcall, a READ to replace it and, up to :data:`MAX_READS`, one more, so
    a burst of ops is answered with one wake-up per batch on each side.  An
    EAGAIN retires a read; when none is left, a POLL waits for the next op.
    Returns when the broker goes away.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.connect(os.fspath(path))
        sock.setblocking(False)
        channel = RawChannel(sock)
        channel.send(DeviceCall.ATTACH, token if token < 2**63 else token - 2**64)
        _, result, _ = await channel.receive()
        if result < 0:
            raise OSError(-result, f"ATTACH: {os.strerror(-result)}")
        task_status.started()
        channel.send(DeviceCall.READ, MAX_DEV_REQ_UPSIZE)
        reads = 1
        handled = 0
        while True:
            call, result, payload = await channel.receive()
            if call == DeviceCall.READ:
                reads -= 1
                if result > 0:
                    channel.send(DeviceCall.WRITE, payload=reply_for(payload))
                    for _ in range(2 if reads < MAX_READS - 1 else 1):
                        channel.send(DeviceCall.READ, MAX_DEV_REQ_UPSIZE)
                        reads += 1
                elif result != -errno.EAGAIN:
                    raise OSError(-result, f"READ: {os.strerror(-result)}")
                elif reads == 0:
                    channel.send(DeviceCall.POLL, POLLIN, -1)
            elif call == DeviceCall.POLL:
                channel.send(DeviceCall.READ, MAX_DEV_REQ_UPSIZE)
                reads += 1
            elif call == DeviceCall.WRITE and result < 0:
                raise OSError(-result, "the broker refused a minimal downcall")
            handled += 1
            if handled % 64 == 0:
                await trio.lowlevel.checkpoint()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sock.close()


async def run(rundir: str | os.PathLike, desc_count: int = 4, desc_size: int = 4 << 20,
              *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Handshake, answer, and remount from a second connection, as a real client-core would."""
    path = os.path.join(rundir, "pvfs2-req")
    async with Device.connect(path) as device:
        token, buffers = await handshake(device, desc_count=desc_count, desc_size=desc_size)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(answer, path, token)
                async with Device.connect(path) as second:
                    await second.attach(token)
                    await second.ioctl(proto.IoctlCommand.REMOUNT_ALL)
                task_status.started()
                await trio.sleep_forever()
        finally:
            buffers.close()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A client-core that answers every upcall at once.")
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--desc-count", type=int, default=4)
    parser.add_argument("--desc-size", type=int, default=4 << 20)
    args = parser.parse_args()
    try:
        trio.run(run, args.rundir, args.desc_count, args.desc_size)
    except (KeyboardInterrupt, BrokenPipeError, ConnectionError):
        pass


if __name__ == "__main__":
    main()
