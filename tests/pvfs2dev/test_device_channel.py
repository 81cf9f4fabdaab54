"""The device channel (``pvfs2-req``) over the real SOCK_SEQPACKET socket (DESIGN.md "Device channel", spec §1, §5.1).

The kernel rules themselves are pinned sans-IO in test_device_*.py; these
tests check that the socket edge carries them: one packet per syscall, one
reply per packet matched by seq, errnos as ``-errno`` results, fds by
SCM_RIGHTS, and connection loss as release.
"""

from __future__ import annotations

import base64
import errno
import mmap
import os
import struct

import pytest
import trio

import pvfs2proto as proto
from pvfs2ctl.client import VfsClient
from pvfs2proto import IoctlCommand, OpCode
from pvfs2proto.channels import FILE_TOKEN, POLLIN, DeviceCall
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE, MAX_DEV_REQ_UPSIZE, ORANGEFS_DEVREQ_MAGIC
from pvfs2proto.ioctl import ORANGEFS_dev_map_desc

from .live import (
    ROOT,
    DEVNAME,
    FS_ID,
    NONBLOCK,
    HandCore,
    KiB,
    RawDevice,
    control,
    getattr_upcall,
    minimal_core,
    status,
    vfs_path,
    wait_for,
    write_frame,
)

READ, WRITE, POLL, IOCTL, OPEN, CLOSE, ATTACH = (
    DeviceCall.READ, DeviceCall.WRITE, DeviceCall.POLL, DeviceCall.IOCTL, DeviceCall.OPEN, DeviceCall.CLOSE,
    DeviceCall.ATTACH,
)


def map_desc(count: int, size: int) -> bytes:
    return ORANGEFS_dev_map_desc.pack({"ptr": 0, "total_size": count * size, "size": size, "count": count})


def signed64(token: int) -> int:
    return token - 2**64 if token >= 2**63 else token


async def _append(out: list, awaitable) -> None:
    out.append(await awaitable)


async def submit_in_background(nursery, rundir, upcall: bytes, results: list, **kwargs) -> None:
    """Submit ``upcall`` from a VFS caller task; its reply is appended to ``results``."""
    async def caller():
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            results.append(await vfs.submit(upcall, **kwargs))

    nursery.start_soon(caller)


async def test_open_without_o_nonblock_is_einval(broker, rundir):
    """Spec §1.2 / DESIGN OPEN: a device opened without O_NONBLOCK is refused with EINVAL; with it, OPEN returns a u64 token."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            assert (await dev.call(OPEN, os.O_RDWR)).result == -errno.EINVAL
            assert (await status(rundir))["open_count"] == 0
            reply = await dev.call(OPEN, NONBLOCK)
            assert reply.result == 0
            assert len(reply.payload) == FILE_TOKEN.size
            assert (await status(rundir))["open_count"] == 1


async def test_second_opener_is_eacces(broker, rundir):
    """Spec §1.2: one opener at a time — a second OPEN (another connection or the same one) gets EACCES until the first closes."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as first, RawDevice.connect(rundir) as second:
            assert (await first.call(OPEN, NONBLOCK)).result == 0
            assert (await second.call(OPEN, NONBLOCK)).result == -errno.EACCES
            assert (await first.call(OPEN, NONBLOCK)).result == -errno.EACCES
            assert (await first.call(CLOSE)).result == 0
            assert (await second.call(OPEN, NONBLOCK)).result == 0


@pytest.mark.parametrize("count", [0, 1, MAX_DEV_REQ_UPSIZE - 1, MAX_DEV_REQ_UPSIZE + 1, 1 << 20, -1])
async def test_read_of_any_size_but_8544_is_einval(broker, rundir, count):
    """Spec §1.3: a device read must ask for exactly MAX_DEV_REQ_UPSIZE (8544) bytes, else EINVAL — even with an op queued."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev, trio.open_nursery() as nursery:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            results: list = []
            await submit_in_background(nursery, rundir, getattr_upcall(), results)
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            assert (await dev.call(READ, count)).result == -errno.EINVAL
            reply = await dev.call(READ, MAX_DEV_REQ_UPSIZE)
            assert reply.result == MAX_DEV_REQ_UPSIZE and len(reply.payload) == MAX_DEV_REQ_UPSIZE
            nursery.cancel_scope.cancel()


async def test_read_is_eagain_when_nothing_is_eligible(broker, rundir):
    """Spec §1.3, §1.5: READ is EAGAIN on an empty list and when only ops of an unknown fs are queued, though POLL then says POLLIN."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev, trio.open_nursery() as nursery:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            assert (await dev.call(READ, MAX_DEV_REQ_UPSIZE)).result == -errno.EAGAIN
            # A LOOKUP of fs_id 99, which nobody mounted: skipped by read, but the list is not empty.
            lookup = proto.encode_upcall({"type": OpCode.LOOKUP, "req": {"lookup": {
                "parent_refn": {"khandle": bytes(16), "fs_id": 99}, "d_name": b"x"}}})
            await submit_in_background(nursery, rundir, lookup, [])
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            assert (await dev.call(POLL, POLLIN, 0)).result == POLLIN
            assert (await dev.call(READ, MAX_DEV_REQ_UPSIZE)).result == -errno.EAGAIN
            nursery.cancel_scope.cancel()


async def test_poll_reports_pollin_only_while_the_request_list_is_non_empty(broker, rundir, autojump_clock):
    """Spec §1.5 / DESIGN POLL: POLLIN exactly while ops are queued; otherwise 0 once the timeout has passed, not earlier."""
    with trio.fail_after(100):
        async with HandCore.start(rundir) as core, trio.open_nursery() as nursery:
            dev = core.device
            t0 = trio.current_time()
            reply = await dev.call(POLL, POLLIN, 5000)
            assert reply.result == 0
            assert trio.current_time() - t0 == pytest.approx(5.0, abs=0.01)

            # A POLL that waits forever is answered as soon as an op is queued.
            results: list = []
            polled: list = []
            t0 = trio.current_time()
            async with trio.open_nursery() as inner:
                inner.start_soon(lambda: _append(polled, dev.call(POLL, POLLIN, -1)))
                await trio.sleep(3)
                await submit_in_background(nursery, rundir, getattr_upcall(), results)
            assert polled[0].result == POLLIN
            assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.01)
            t0 = trio.current_time()
            assert (await dev.call(POLL, POLLIN, 5000)).result == POLLIN
            assert trio.current_time() == t0  # ready: no wait at all

            frame = await core.next_frame()
            # The op is in progress now: the list is empty again.
            t0 = trio.current_time()
            assert (await dev.call(POLL, POLLIN, 2000)).result == 0
            assert trio.current_time() - t0 == pytest.approx(2.0, abs=0.01)
            assert await core.auto(frame) == MAX_DEV_REQ_DOWNSIZE
            with trio.fail_after(5):
                while not results:
                    await trio.sleep(0.01)
            assert results[0].result == 0


async def test_poll_without_pollin_in_events_waits_for_its_timeout(broker, rundir, autojump_clock):
    """DESIGN POLL ("revents or 0 on timeout"), poll(2): events without POLLIN can never be ready, so the reply is 0 after the timeout."""
    with trio.fail_after(100):
        async with RawDevice.connect(rundir) as dev:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            t0 = trio.current_time()
            assert (await dev.call(POLL, 0, 3000)).result == 0
            assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize(
    "call,a0,payload",
    [
        (READ, MAX_DEV_REQ_UPSIZE, b""),
        (WRITE, 0, bytes(MAX_DEV_REQ_DOWNSIZE)),
        (POLL, POLLIN, b""),
        (IOCTL, IoctlCommand.GET_MAGIC, b""),
        (IOCTL, IoctlCommand.MAP, map_desc(2, 4 * KiB)),
        (CLOSE, 0, b""),
    ],
    ids=["read", "write", "poll", "ioctl", "map", "close"],
)
async def test_calls_before_open_are_ebadf(broker, rundir, call, a0, payload):
    """DESIGN device channel: a connection that has neither OPENed nor ATTACHed holds no file, so every syscall on it is EBADF."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            reply = await dev.call(call, a0, 0, payload)
            assert reply.result == -errno.EBADF
            assert reply.fds == []


async def test_attach_needs_the_open_files_token(broker, rundir):
    """DESIGN ATTACH: a wrong token (or no open file) is EBADF; the right one shares the file, which lives until its last connection goes."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as second:
            assert (await second.call(ATTACH, 12345)).result == -errno.EBADF  # nothing is open
            async with RawDevice.connect(rundir) as first:
                reply = await first.call(OPEN, NONBLOCK)
                (token,) = FILE_TOKEN.unpack(reply.payload)
                assert (await second.call(ATTACH, signed64(token ^ 1))).result == -errno.EBADF
                assert (await second.call(IOCTL, IoctlCommand.GET_MAGIC)).result == -errno.EBADF
                assert (await second.call(ATTACH, signed64(token))).result == 0
                magic = await second.call(IOCTL, IoctlCommand.GET_MAGIC)
                assert magic.result == 0 and struct.unpack("<i", magic.payload)[0] == ORANGEFS_DEVREQ_MAGIC
            # The opener is gone; the attached connection still holds the file open.
            await trio.sleep(0.05)
            assert (await status(rundir))["open_count"] == 1
            assert (await second.call(READ, MAX_DEV_REQ_UPSIZE)).result == -errno.EAGAIN
        await wait_for(rundir, lambda s: s["open_count"] == 0)


async def test_close_on_an_attached_connection_closes_the_file_for_all(broker, rundir):
    """DESIGN CLOSE / ATTACH: the connections share one open file, so CLOSE from any of them releases it and the others' calls become EBADF."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as first, RawDevice.connect(rundir) as second:
            (token,) = FILE_TOKEN.unpack((await first.call(OPEN, NONBLOCK)).payload)
            assert (await second.call(ATTACH, signed64(token))).result == 0
            assert (await second.call(CLOSE)).result == 0
            assert (await first.call(READ, MAX_DEV_REQ_UPSIZE)).result == -errno.EBADF
            assert (await second.call(READ, MAX_DEV_REQ_UPSIZE)).result == -errno.EBADF
            s = await wait_for(rundir, lambda s: s["open_count"] == 0)
            assert (await control(rundir, "stats"))["device_releases"] == 1
            assert s["daemon_in_service"] is False
            assert (await first.call(OPEN, NONBLOCK)).result == 0


@pytest.mark.parametrize("how", ["close", "disconnect"])
async def test_release_purges_and_the_caller_is_served_by_the_next_client_core(broker, rundir, nursery, how):
    """Spec §1.6, §4.11 / DESIGN "a connection that drops is a close": CLOSE or connection loss releases the device; the read op is purged and its non-slot caller retries it (same tag, attempts 1) until the next client-core serves it."""
    with trio.fail_after(15):
        results: list = []
        await submit_in_background(nursery, rundir, getattr_upcall(), results)
        async with HandCore.start(rundir) as core:
            frame = await core.next_frame()
            assert frame.type == OpCode.GETATTR
            [row] = (await control(rundir, "ops"))["ops"]
            assert row["tag"] == frame.tag and row["where"] == f"bucket:{frame.tag % 509}"
            if how == "close":
                await core.device.close()
        s = await wait_for(rundir, lambda s: s["open_count"] == 0)
        assert s["daemon_in_service"] is False
        assert s["userspace_version"] == 0
        [row] = (await control(rundir, "ops"))["ops"]
        assert row["tag"] == frame.tag
        assert row["attempts"] == 1
        assert row["where"] == "request:0"
        assert row["state"] == proto.OpState.WAITING
        stats = await control(rundir, "stats")
        assert stats["purged"] == 1 and stats["device_releases"] == 1
        assert not results  # still waiting, for the next client-core

        scope = await nursery.start(minimal_core, rundir)
        while not results:
            await trio.sleep(0.01)
        assert results[0].result == 0
        assert results[0].tag == frame.tag
        scope.cancel()


async def test_open_during_a_release_waits_for_it_to_finish(broker, rundir, autojump_clock):
    """Spec §1.2, §1.6 step 6: release waits for every slot to come back; an OPEN meanwhile is answered only once it has finished."""
    with trio.fail_after(100):
        async with HandCore.start(rundir) as core:
            # A submitter still holding an I/O slot when the client-core goes away
            # (the kernel's release sleeps until it returns the slot).
            slot = broker.kernel.io_slots.get(trio.current_time())
            assert slot == 0
            await core.device.close()
        s = await wait_for(rundir, lambda s: s["open_count"] == -1)
        assert s["daemon_in_service"] is False
        async with RawDevice.connect(rundir) as dev:
            seq = await dev.send(OPEN, a0=NONBLOCK)
            with trio.move_on_after(60):
                await dev.recv()
                pytest.fail("OPEN was answered while the release was still running")
            assert (await status(rundir))["open_count"] == -1
            # Another opener that gives up waiting (its connection goes) must not end up holding the device.
            async with RawDevice.connect(rundir) as quitter:
                await quitter.send(OPEN, a0=NONBLOCK)
                await trio.sleep(1)
            await trio.sleep(1)
            broker.kernel.io_slots.put(slot, trio.current_time())  # the submitter returns its slot
            reply = await dev.recv()
            assert (reply.seq, reply.result) == (seq, 0)
            s = await status(rundir)
            assert s["open_count"] == 1 and s["daemon_in_service"] is True


async def test_map_hands_over_two_shared_buffers(broker, rundir):
    """Spec §5.1, §7 / DESIGN MAP: MAP replies with exactly two fds (io-buffer, readdir-buffer) sized by the geometry, sharing bytes with the broker."""
    count, size = 3, 64 * KiB
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            reply = await dev.call(IOCTL, IoctlCommand.MAP, 0, map_desc(count, size))
            assert reply.result == 0
            assert len(reply.fds) == 2
            io_fd, readdir_fd = reply.fds
            try:
                assert os.fstat(io_fd).st_size == count * size
                assert os.fstat(readdir_fd).st_size == 5 * 128 * KiB
                io = mmap.mmap(io_fd, count * size)
                readdir = mmap.mmap(readdir_fd, 5 * 128 * KiB)
                try:
                    # Client-core → broker: what we write into slot 2 is what the broker sees there.
                    io[2 * size : 2 * size + 16] = b"client-core wrote"[:16]
                    dump = await control(rundir, "buffers", dump=2, length=16)
                    assert base64.b64decode(dump["dump"]) == b"client-core wrote"[:16]
                    # Broker → client-core, both buffers.
                    broker.broker.buffers.io.slot(1)[:6] = b"broker"
                    assert io[size : size + 6] == b"broker"
                    broker.broker.buffers.readdir.slot(4)[:7] = b"readdir"
                    assert readdir[4 * 128 * KiB : 4 * 128 * KiB + 7] == b"readdir"
                finally:
                    io.close()
                    readdir.close()
            finally:
                os.close(io_fd)
                os.close(readdir_fd)
            maps = (await status(rundir))["buffers"]
            assert [(m["name"], m["count"], m["c"], m["slot_size"]) for m in maps] == [
                ("io", count, count, size), ("readdir", 5, 5, 128 * KiB)]


async def test_second_map_is_einval(broker, rundir):
    """Spec §5.1: MAP while a buffer is registered is EINVAL (no fds), and the first buffer stays installed."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            first = await dev.call(IOCTL, IoctlCommand.MAP, 0, map_desc(2, 8 * KiB))
            for fd in first.fds:
                os.close(fd)
            assert first.result == 0
            second = await dev.call(IOCTL, IoctlCommand.MAP, 0, map_desc(4, 4 * KiB))
            assert second.result == -errno.EINVAL
            assert second.fds == []
            io = (await status(rundir))["buffers"][0]
            assert (io["count"], io["slot_size"]) == (2, 8 * KiB)


async def test_remount_all_is_answered_out_of_order_after_its_upcalls(broker, rundir, served):
    """Spec §4.12, §1.7 / DESIGN: after a restart REMOUNT_ALL blocks until its FS_MOUNT and FEATURES are answered, other calls on the connection are answered meanwhile, and its reply comes last, matched by seq."""
    with trio.fail_after(15):
        served.cancel()  # the minimal client-core dies: the mount becomes pending
        s = await wait_for(rundir, lambda s: s["open_count"] == 0)
        assert s["mounts"][0]["pending"] is True

        async with RawDevice.connect(rundir) as dev, trio.open_nursery() as nursery:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            mapped = await dev.call(IOCTL, IoctlCommand.MAP, 0, map_desc(2, 64 * KiB))
            for fd in mapped.fds:
                os.close(fd)
            remount_seq = await dev.send(IOCTL, a0=IoctlCommand.REMOUNT_ALL)
            # A normal op submitted now waits for the request mutex REMOUNT_ALL holds.
            results: list = []
            await submit_in_background(nursery, rundir, getattr_upcall(), results)
            await wait_for(rundir, lambda s: s["ops_by_state"].get("mutex") == 1)

            magic = await dev.call(IOCTL, IoctlCommand.GET_MAGIC)  # answered before REMOUNT_ALL
            assert magic.result == 0
            frame = await dev.call(READ, MAX_DEV_REQ_UPSIZE)
            up = proto.decode_read_frame(frame.payload)
            assert up.upcall.type == OpCode.FS_MOUNT
            assert up.upcall.req.fs_mount.orangefs_config_server == DEVNAME
            answer = write_frame(up.tag, {"type": OpCode.FS_MOUNT, "status": 0,
                                          "resp": {"fs_mount": {"fs_id": FS_ID, "id": 2, "root_khandle": bytes(16)}}})
            assert (await dev.call(WRITE, payload=answer)).result == len(answer)

            frame = await dev.call(READ, MAX_DEV_REQ_UPSIZE)
            up = proto.decode_read_frame(frame.payload)
            assert up.upcall.type == OpCode.FEATURES
            answer = write_frame(up.tag, {"type": OpCode.FEATURES, "status": 0, "resp": {"features": {"features": 1}}})
            write_seq = await dev.send(WRITE, payload=answer)
            replies = {}
            for _ in range(2):
                reply = await dev.recv()
                replies[reply.seq] = reply
            assert set(replies) == {write_seq, remount_seq}
            assert replies[write_seq].result == len(answer)
            assert replies[remount_seq].call == IOCTL and replies[remount_seq].result == 0

            s = await status(rundir)
            assert s["mounts"] == [{"fs_id": FS_ID, "id": 2, "devname": DEVNAME.decode(), "root": ROOT.hex(), "pending": False, "mountpoint": None}]
            assert s["features"] == 1
            # The held-off GETATTR is queued now and can be served.
            frame = await dev.call(READ, MAX_DEV_REQ_UPSIZE)
            up = proto.decode_read_frame(frame.payload)
            assert up.upcall.type == OpCode.GETATTR
            answer = write_frame(up.tag, {"type": OpCode.GETATTR, "status": 0})
            assert (await dev.call(WRITE, payload=answer)).result == len(answer)
            while not results:
                await trio.sleep(0.01)
            assert results[0].result == 0


async def test_replies_are_matched_by_seq(broker, rundir):
    """DESIGN device channel: each reply echoes its request's call and seq (any u32); a waiting POLL is overtaken by later calls."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev, trio.open_nursery() as nursery:
            assert (await dev.call(OPEN, NONBLOCK)).result == 0
            await dev.send(POLL, 1000, POLLIN, -1)
            await dev.send(IOCTL, 7, IoctlCommand.GET_MAGIC)
            await dev.send(IOCTL, 0xFFFFFFFF, IoctlCommand.GET_MAX_UPSIZE)
            await dev.send(READ, 0, MAX_DEV_REQ_UPSIZE)
            first, second, third = await dev.recv(), await dev.recv(), await dev.recv()
            assert (first.call, first.seq, first.result) == (IOCTL, 7, 0)
            assert struct.unpack("<i", first.payload)[0] == ORANGEFS_DEVREQ_MAGIC
            assert (second.call, second.seq, second.result) == (IOCTL, 0xFFFFFFFF, 0)
            assert struct.unpack("<i", second.payload)[0] == MAX_DEV_REQ_UPSIZE
            assert (third.call, third.seq, third.result) == (READ, 0, -errno.EAGAIN)
            await submit_in_background(nursery, rundir, getattr_upcall(), [])
            poll = await dev.recv()
            assert (poll.call, poll.seq, poll.result) == (POLL, 1000, POLLIN)
            nursery.cancel_scope.cancel()
