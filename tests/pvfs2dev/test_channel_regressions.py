"""Failures the channel fuzz (test_channel_fuzz.py) shrank, kept as plain tests (tests/fuzzing.py).

Each runs in every profile, whatever the fuzzer's seed happens to reach.
"""

from __future__ import annotations

import errno

import trio

from pvfs2dev.server import Config, Server

from pvfs2ctl.client import VfsClient
from pvfs2proto import IoType
from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE

from .live import (
    MiB,
    RawDevice,
    assert_getattr_round_trip,
    assert_quiescent,
    file_io_upcall,
    minimal_core,
    mount,
    vfs_path,
)
from .test_channel_fuzz import SLOT, check_vfs_replies, one_round


async def test_an_empty_device_packet_gets_einval_and_the_connection_stays(tmp_path):
    """DESIGN.md, device channel: a malformed packet gets -EINVAL.  An empty packet reads as 0 bytes, like a
    close, on SOCK_SEQPACKET; the broker tells them apart and must not drop the connection (found by the
    long channel fuzz: ``device_junk=[b'']``)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(Server(Config(rundir=tmp_path)).run)
        async with RawDevice.connect(tmp_path) as dev:
            await dev.send_bytes(b"")
            with trio.fail_after(10):
                reply = await dev.recv()
            assert (reply.call, reply.seq, reply.result) == (0, 0, -errno.EINVAL)
            with trio.fail_after(10):
                again = await dev.call(6)  # CLOSE of a never-opened connection: answered, so still connected
            assert again.seq > 0
        nursery.cancel_scope.cancel()


def test_shrunk_round_with_one_empty_device_packet():
    """The long channel fuzz's shrunk example, as it was found: one empty packet on an unattached connection."""
    trio.run(one_round, [b""], False, [], [], b"", b"")


async def test_an_empty_packet_on_the_attached_file_leaves_the_client_core_serving(tmp_path):
    """The same empty packet on a connection attached to the client-core's open file: the file stays open and
    ops are still served."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(Server(Config(rundir=tmp_path)).run)
        await nursery.start(minimal_core, tmp_path, 4, SLOT)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            await mount(vfs)
        async with RawDevice.connect(tmp_path) as dev:
            token = server.device.file.token
            assert (await dev.call(7, token - 2**64 if token >= 2**63 else token)).result == 0
            await dev.send_bytes(b"")
            with trio.fail_after(10):
                assert (await dev.recv()).result == -errno.EINVAL
        await assert_getattr_round_trip(tmp_path)
        assert server.device.file is not None
        nursery.cancel_scope.cancel()


async def test_replies_queued_before_a_half_close_go_out_whole(tmp_path):
    """DESIGN.md, VFS channel: one reply per request.  A peer that shuts down its sending side right after a
    big FILE_IO read still gets the whole reply, then the close (found by the long channel fuzz: a mutated
    stream whose 16 MiB read reply was cut off mid-frame when the broker saw end of input)."""
    count = 16 * MiB
    async with trio.open_nursery() as nursery:
        await nursery.start(Server(Config(rundir=tmp_path)).run)
        await nursery.start(minimal_core, tmp_path, 4, SLOT)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            await mount(vfs)
        message = VFS_REQUEST.pack(0, VfsKind.SUBMIT, 5) + file_io_upcall(IoType.READ, count)
        with trio.fail_after(60):
            stream = await trio.open_unix_socket(str(vfs_path(tmp_path)))
            async with stream:
                await stream.send_all(VFS_LENGTH.pack(len(message)) + message)
                raw = bytearray(await stream.receive_some(4096))  # the reply is on its way, most of it queued
                await stream.send_eof()
                while chunk := await stream.receive_some(1 << 20):
                    raw += chunk
        check_vfs_replies(bytes(raw))
        (length,) = VFS_LENGTH.unpack_from(raw)
        result, _tag, req_id = VFS_REPLY.unpack_from(raw, 4)
        assert (req_id, result, len(raw)) == (5, 0, 4 + length)
        assert length == VFS_REPLY.size + DOWNCALL_SIZE + count  # the read data, all of it
        await assert_quiescent(tmp_path)
        nursery.cancel_scope.cancel()
