"""The client-core daemon's start-up, observed from a fake device (spec §1.7, §5.6; issue 4, Daemon).

:class:`~tests.clientcore.fake_device.FakeDevice` is a bare SOCK_SEQPACKET
listener at ``tmp_path/pvfs2-req`` that answers each device call as the
kernel would and records the calls in arrival order, per connection.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest
import trio

import pvfs2proto as proto
from clientcore.daemon import EXIT_DEVICE_LOST, EXIT_PROTOCOL, EXIT_STARTUP, Daemon, serve
from clientcore.device import Device, handshake
from pvfs2proto import OpCode
from pvfs2proto.constants import ORANGEFS_DEVREQ_MAGIC
from pvfs2proto.debug import decode_client_debug_string

from pvfs2ctl.client import VfsClient
from pvfs2dev.server import Config, Server

from .daemon_stack import getattr_upcall, mount_upcall, wait_for
from .fake_device import TOKEN, FakeDevice, read_frame
from .memstore import MemStore

TIMEOUT = 10
STARTUP = ["OPEN", "GET_MAGIC", "GET_MAX_UPSIZE", "GET_MAX_DOWNSIZE", "DEBUG", "UPSTREAM", "CLIENT_MASK",
           "CLIENT_STRING", "MAP"]


async def _run_daemon(daemon: Daemon, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await daemon.run(task_status=task_status)


async def test_start_up_follows_the_real_client_cores_order(nursery, tmp_path):
    """OPEN(O_RDWR|O_NONBLOCK), the informational ioctls, CLIENT_STRING, MAP, then the reader loop on an ATTACHed
    connection and REMOUNT_ALL from another while the loop runs (spec §1.7, §4.12 step 3)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path, answer_polls=False, poll_timeouts=False).serve)
        scope = trio.CancelScope()
        await nursery.start(_run_daemon, Daemon(MemStore(), tmp_path, desc_count=4, desc_size=1 << 20), scope)
        # The loop settles in a POLL that the fake never answers; REMOUNT_ALL was answered 0.
        await fake.wait_for(lambda f: "REMOUNT_ALL" in f.names() and "POLL" in f.names())
        scope.cancel()

    calls = fake.calls
    first = [c for c in calls if c.conn == 0]
    assert [c.name for c in first] == STARTUP
    opened = first[0]
    assert opened.a0 == os.O_RDWR | os.O_NONBLOCK
    # Nothing on any other connection before MAP was answered.
    assert all(c.order > first[-1].order for c in calls if c.conn != 0)

    # DEBUG sets the kernel mask (type 0); CLIENT_MASK is {mask1 = 0, mask2}; CLIENT_STRING is 2048 bytes of lines.
    by_name = {c.name: c for c in first}
    mask_type, _ = struct.unpack("<I4xQ", by_name["DEBUG"].payload[:16])
    assert mask_type == proto.DebugMaskType.KERNEL_MASK
    mask1, _ = struct.unpack("<QQ", by_name["CLIENT_MASK"].payload[:16])
    assert mask1 == 0
    client_string = by_name["CLIENT_STRING"].payload
    assert len(client_string) == proto.ORANGEFS_MAX_DEBUG_STRING_LEN
    assert decode_client_debug_string(client_string)
    desc = fake.map_desc
    assert (desc.total_size, desc.size, desc.count) == (4 << 20, 1 << 20, 4)

    # The reader: ATTACH with the OPEN token, then READs (EAGAIN) and a POLL; nothing else.
    others = sorted({c.conn for c in calls if c.conn != 0})
    per_conn = {conn: [c for c in calls if c.conn == conn] for conn in others}
    readers = [conn for conn, cs in per_conn.items() if any(c.name == "READ" for c in cs)]
    remounters = [conn for conn, cs in per_conn.items() if any(c.name == "REMOUNT_ALL" for c in cs)]
    assert len(readers) == 1 and len(remounters) == 1 and readers != remounters, per_conn
    reader = per_conn[readers[0]]
    assert reader[0].name == "ATTACH" and reader[0].a0 & 0xFFFFFFFFFFFFFFFF == TOKEN
    assert {c.name for c in reader[1:]} == {"READ", "POLL"}
    assert reader[1].name == "READ"
    assert all(c.a0 == proto.MAX_DEV_REQ_UPSIZE for c in reader if c.name == "READ")
    # It polls only after a READ found nothing.
    assert reader[-1].name == "POLL"

    remounter = per_conn[remounters[0]]
    assert [c.name for c in remounter] == ["ATTACH", "REMOUNT_ALL"]
    assert remounter[0].a0 & 0xFFFFFFFFFFFFFFFF == TOKEN
    # REMOUNT_ALL comes while the loop runs: after the reader's ATTACH and first READ.
    assert remounter[1].order > reader[1].order


async def test_a_wrong_magic_from_get_magic_fails_start_up(nursery, tmp_path):
    """A GET_MAGIC answer other than 0x20030529 stops start-up before MAP with exit status 1 (spec §1.7; issue 4)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path, magic=ORANGEFS_DEVREQ_MAGIC ^ 0xFF).serve)
        status = await serve(MemStore(), str(tmp_path), desc_count=4, desc_size=1 << 20, max_inflight=8)
    assert status == EXIT_STARTUP
    assert fake.names() == ["OPEN", "GET_MAGIC"]


async def test_handshake_raises_on_a_wrong_magic(nursery, tmp_path):
    """handshake() refuses a device whose GET_MAGIC is not ORANGEFS_DEVREQ_MAGIC with EPROTO (spec §1.7)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path, magic=0x12345678).serve)
        async with Device.connect(tmp_path / "pvfs2-req") as device:
            with pytest.raises(OSError) as info:
                await handshake(device, desc_count=4, desc_size=1 << 20)
    assert info.value.errno == errno.EPROTO
    assert "MAP" not in fake.names()


@pytest.mark.parametrize(("count", "size"), [
    (4, 3 << 19),  # 1.5 MiB: not a power of two
    (4, 1000),  # not a power of two
    (3, 1024),  # a power of two, but the total (3072) is not a page multiple
    (32, 4 << 20),  # exactly 128 MiB: the total must be under it
    (64, 4 << 20),  # 256 MiB
    (0, 1 << 20),  # no slots
])
async def test_geometry_checks_refuse_before_anything_is_sent(nursery, tmp_path, count, size):
    """A slot size that is not a power of two, or a total not a page multiple under 128 MiB, raises ValueError
    before any call reaches the device (spec §5.6; issue 4, Daemon)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path).serve)
        async with Device.connect(tmp_path / "pvfs2-req") as device:
            with pytest.raises(ValueError):
                await handshake(device, desc_count=count, desc_size=size)
            await trio.sleep(0.05)
    assert fake.calls == []


async def test_geometry_just_under_the_limit_is_accepted(nursery, tmp_path):
    """31 slots of 4 MiB (124 MiB, a power-of-two slot) pass the geometry checks and are MAPped (spec §5.6)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path).serve)
        async with Device.connect(tmp_path / "pvfs2-req") as device:
            _, buffers = await handshake(device, desc_count=31, desc_size=4 << 20)
            buffers.close()
    assert fake.names() == STARTUP
    assert (fake.map_desc.count, fake.map_desc.size) == (31, 4 << 20)


@pytest.mark.parametrize("bad", [
    {"magic": 0x20030528},  # the superblock magic, one off
    {"magic": 0},
    {"version": 7},  # neither the kernel's 0 nor ours
])
async def test_a_read_frame_with_a_bad_magic_or_version_exits_244(nursery, tmp_path, bad):
    """An upcall frame with a wrong magic or version is protocol-fatal: serve() returns 244 (spec §1.3; issue 4,
    Watchdog)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path).serve)
        fake.queue(read_frame(100, getattr_upcall(), **bad))
        status = await serve(MemStore(), str(tmp_path), desc_count=4, desc_size=1 << 20, max_inflight=8)
    assert status == EXIT_PROTOCOL == 244
    assert 100 not in fake.downcalls


async def test_serve_returns_75_when_the_broker_closes_the_device(nursery, tmp_path):
    """When the broker goes away under a running daemon, serve() returns 75, "the broker closed the device"
    (clientcore(1) EXIT STATUS; issue 4, Watchdog: exit statuses documented, restarted to reconnect)."""
    with trio.fail_after(TIMEOUT):
        broker = trio.CancelScope()

        async def run_broker(*, task_status=trio.TASK_STATUS_IGNORED):
            with broker:
                await Server(Config(rundir=tmp_path)).run(task_status=task_status)

        await nursery.start(run_broker)
        result = []

        async def run_serve():
            result.append(await serve(MemStore(), str(tmp_path), desc_count=4, desc_size=1 << 20, max_inflight=8))

        async with trio.open_nursery() as inner:
            inner.start_soon(run_serve)
            await wait_for(tmp_path, lambda s: s["daemon_in_service"])
            # Serving: a mount goes through the daemon's reader loop.
            async with VfsClient.connect(tmp_path / "pvfs2-vfs") as vfs:
                assert (await vfs.submit(mount_upcall())).result == 0
            broker.cancel()
    assert result == [EXIT_DEVICE_LOST] == [75]


async def test_a_good_frame_is_answered_after_start_up(nursery, tmp_path):
    """With the fake device, a GETATTR of the root is read and answered: version 21000, magic, tag, type echoed
    (spec §1.4)."""
    with trio.fail_after(TIMEOUT):
        fake = await nursery.start(FakeDevice(tmp_path).serve)
        scope = trio.CancelScope()
        await nursery.start(_run_daemon, Daemon(MemStore(), tmp_path, desc_count=4, desc_size=1 << 20), scope)
        fake.queue(read_frame(4711, getattr_upcall()))
        written = await fake.downcall(4711)
        scope.cancel()
    head, body = proto.decode_write_frame(written, OpCode.GETATTR)
    assert (head.version, head.magic, head.tag) == (proto.PVFS2DEV_USERSPACE_VERSION, ORANGEFS_DEVREQ_MAGIC, 4711)
    assert body.downcall.type == OpCode.GETATTR and body.downcall.status == 0
    assert len(written) == proto.MAX_DEV_REQ_DOWNSIZE
