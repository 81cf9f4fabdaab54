"""The VFS channel (``pvfs2-vfs``) over the real stream socket (DESIGN.md "VFS channel", spec §4, §5.3–§5.4).

A caller submits upcalls as the kernel's VFS would; a hand-written
client-core on the device socket sees what the broker made of them and
decides the downcalls.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

import pvfs2proto as proto
from pvfs2ctl.client import VfsClient
from pvfs2dev.server import Config, Server
from pvfs2proto import IoType, OpCode, OpFlags
from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, VfsKind
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE

from .live import (
    DEVNAME,
    FILE,
    FS_ID,
    HandCore,
    KiB,
    control,
    getattr_upcall,
    mount_by_hand,
    mount_upcall,
    read_upcall,
    readdir_upcall,
    status,
    status_of,
    vfs_path,
    wait_for,
    write_frame,
    write_upcall,
)

INTR = OpFlags.INTERRUPTIBLE


def amt_complete(downcall: bytes) -> int:
    return struct.unpack_from("<q", downcall, 24)[0]


class Store:
    """A client-core's file: FILE_IO writes land here from the slot, reads go back into the slot."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.ios: list[tuple[int, int, int, int]] = []  # (io_type, buf_index, count, offset)

    async def handle(self, core: HandCore, frame) -> None:
        if frame.type != OpCode.FILE_IO:
            await core.auto(frame)
            return
        io = frame.upcall.req.io
        self.ios.append((io.io_type, io.buf_index, io.count, io.offset))
        slot = core.buffers.io_slot(io.buf_index)
        if io.io_type == IoType.WRITE:
            end = io.offset + io.count
            if len(self.data) < end:
                self.data.extend(bytes(end - len(self.data)))
            self.data[io.offset : end] = slot[: io.count]
            amt = io.count
        else:
            amt = max(0, min(io.count, len(self.data) - io.offset))
            slot[:amt] = self.data[io.offset : io.offset + amt]
        assert await core.reply(frame, resp={"io": {"amt_complete": amt}}) == MAX_DEV_REQ_DOWNSIZE


# -- credentials and tags ------------------------------------------------------------------------------------


async def test_root_caller_keeps_its_uid_gid_and_the_broker_stamps_pid(broker, rundir):
    """DESIGN VFS channel: credentials come from SO_PEERCRED — pid and tgid are the peer's; a root peer's own uid/gid fields are kept."""
    assert os.geteuid() == 0, "this test runs as root"
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            upcall = bytearray(getattr_upcall(uid=1234, gid=5678))
            struct.pack_into("<ii", upcall, 12, 4242, 4343)  # pid, tgid claimed by the caller: ignored
            pending = await vfs.send_submit(1, bytes(upcall))
            frame = await core.next_frame()
            up = frame.upcall
            assert (up.uid, up.gid, up.pid, up.tgid) == (1234, 5678, os.getpid(), os.getpid())
            [row] = (await control(rundir, "ops"))["ops"]
            assert (row["uid"], row["gid"], row["pid"], row["tgid"]) == (1234, 5678, os.getpid(), os.getpid())
            await core.auto(frame)
            assert (await pending.wait()).result == 0


CHILD = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
buf = b""
while len(buf) < 4 or len(buf) < 4 + struct.unpack_from("<I", buf)[0]:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
sys.stdout.write(buf[:28].hex())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a caller as another user")
async def test_non_root_caller_gets_its_peer_uid_and_gid():
    """DESIGN VFS channel: for an unprivileged peer the broker writes SO_PEERCRED's uid, gid and pid into the upcall, whatever the caller put there."""
    base = Path(tempfile.mkdtemp(prefix="pvfs2dev-cred-", dir="/tmp"))
    process = None
    try:
        os.chmod(base, 0o711)
        rundir = base / "run"
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(Server(Config(rundir=rundir)).run)
                os.chmod(rundir, 0o711)  # let the unprivileged caller reach the 0666 socket
                async with HandCore.start(rundir) as core:
                    message = VFS_REQUEST.pack(0, VfsKind.SUBMIT, 77) + getattr_upcall(uid=0, gid=0)
                    process = await trio.lowlevel.open_process(
                        ["/usr/bin/python3", "-I", "-S", "-c", CHILD, str(vfs_path(rundir)),
                         (VFS_LENGTH.pack(len(message)) + message).hex()],
                        stdout=subprocess.PIPE, user=65534, group=65534, extra_groups=[],
                    )
                    frame = await core.next_frame()
                    up = frame.upcall
                    assert (up.uid, up.gid) == (65534, 65534)
                    assert up.pid == up.tgid == process.pid
                    await core.auto(frame)
                    out = b""
                    while chunk := await process.stdout.receive_some():
                        out += chunk
                    assert await process.wait() == 0
                    reply = bytes.fromhex(out.decode())
                    result, tag, req_id = VFS_REPLY.unpack_from(reply, 4)
                    assert (result, tag, req_id) == (0, frame.tag, 77)
                nursery.cancel_scope.cancel()
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        shutil.rmtree(base, ignore_errors=True)


async def test_tags_start_at_100_and_increase(broker, rundir):
    """Spec §4.4: the first op gets tag 100 and every new op the next one; the reply carries the op's tag."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            tags = []
            for i in range(3):
                pending = await vfs.send_submit(i + 1, getattr_upcall())
                frame = await core.next_frame()
                await core.auto(frame)
                reply = await pending.wait()
                assert reply.tag == frame.tag
                tags.append(reply.tag)
            # Several in flight at once: still one new tag each, in submission order.
            pendings = [await vfs.send_submit(10 + i, getattr_upcall()) for i in range(3)]
            frames = [await core.next_frame() for _ in range(3)]
            for frame in frames:
                await core.auto(frame)
            replies = [await p.wait() for p in pendings]
            tags += [r.tag for r in replies]
            assert [f.tag for f in frames] == tags[3:]
            assert tags == [100, 101, 102, 103, 104, 105]


# -- FILE_IO and READDIR through the shared buffers ------------------------------------------------------------


async def test_file_io_write_then_read_round_trips_through_the_shared_buffer(broker, rundir):
    """Spec §5.3: a write's data is copied into the I/O slot before the upcall is read, a read's data is copied out of the slot by amt_complete."""
    store = Store()
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            async with core.serving(store.handle):
                data = os.urandom(10_000)
                reply = await vfs.submit(write_upcall(len(data), 5000), data)
                assert reply.result == 0
                assert amt_complete(reply.downcall) == len(data)
                assert reply.data == b""
                assert bytes(store.data[5000:]) == data
                reply = await vfs.submit(read_upcall(len(data), 5000))
                assert reply.result == 0
                assert amt_complete(reply.downcall) == len(data)
                assert reply.data == data
                [(w_type, w_slot, w_count, w_off), (r_type, r_slot, r_count, r_off)] = store.ios
                assert (w_type, w_count, w_off) == (IoType.WRITE, len(data), 5000)
                assert (r_type, r_count, r_off) == (IoType.READ, len(data), 5000)
                assert 0 <= w_slot < 4 and 0 <= r_slot < 4
                frame = next(f for f in core.seen if f.type == OpCode.FILE_IO)
                assert frame.upcall.req.io.refn.fs_id == FS_ID and frame.upcall.req.io.refn.khandle == FILE
                stats = await control(rundir, "stats")
                assert (stats["reads"], stats["writes"]) == (1, 1)


async def test_file_io_larger_than_a_slot_is_split_into_slot_size_chunks(broker, rundir):
    """Spec §5.3 / DESIGN: FILE_IO larger than one slot goes as slot-size chunks at consecutive offsets, each one upcall."""
    slot = 64 * KiB
    store = Store()
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=4, size=slot) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            async with core.serving(store.handle):
                data = os.urandom(2 * slot + slot // 2)
                reply = await vfs.submit(write_upcall(len(data), 1000), data)
                assert reply.result == 0 and amt_complete(reply.downcall) == len(data)
                chunks = [(t, count, off) for t, _, count, off in store.ios]
                assert chunks == [(IoType.WRITE, slot, 1000), (IoType.WRITE, slot, 1000 + slot),
                                  (IoType.WRITE, slot // 2, 1000 + 2 * slot)]
                store.ios.clear()
                reply = await vfs.submit(read_upcall(len(data), 1000))
                assert reply.result == 0 and reply.data == data
                assert [(count, off) for _, _, count, off in store.ios] == [
                    (slot, 1000), (slot, 1000 + slot), (slot // 2, 1000 + 2 * slot)]


async def test_short_read_stops_the_chunk_loop(broker, rundir):
    """Spec §4.13 (O_DIRECT), §5.3: a chunk that moves less than its count ends the call; the caller gets what was moved."""
    slot = 64 * KiB
    store = Store(os.urandom(slot + 4464))
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=4, size=slot) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            async with core.serving(store.handle):
                reply = await vfs.submit(read_upcall(3 * slot, 0))
                assert reply.result == 0
                assert amt_complete(reply.downcall) == slot + 4464
                assert reply.data == bytes(store.data)
                assert [(count, off) for _, _, count, off in store.ios] == [(slot, 0), (slot, slot)]
                await assert_slots_free(rundir)


async def assert_slots_free(rundir) -> None:
    maps = await wait_for(rundir, lambda s: all(m["c"] == m["count"] for m in s["buffers"]))
    assert all(not m["busy"] for m in maps["buffers"])


async def test_readdir_reply_carries_the_trailer(broker, rundir):
    """Spec §3.4, §5.4 / DESIGN reply: READDIR holds a readdir slot (buf_index) while in flight and its reply data is the trailer."""
    entries = [(b"alpha", bytes(range(16))), (b"a-much-longer-name.txt", bytes(range(16, 32)))]
    trailer = proto.encode_readdir_trailer(entries)
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            pending = await vfs.send_submit(5, readdir_upcall())
            frame = await core.next_frame()
            assert frame.type == OpCode.READDIR
            index = frame.upcall.req.readdir.buf_index
            readdir_map = (await status(rundir))["buffers"][1]
            assert readdir_map["busy"] == [index] and readdir_map["c"] == readdir_map["count"] - 1
            assert await core.reply(frame, trailer=trailer) == MAX_DEV_REQ_DOWNSIZE + len(trailer)
            reply = await pending.wait()
            assert reply.result == 0
            assert reply.data == trailer
            assert proto.decode_downcall(reply.downcall).trailer_size == len(trailer)
            assert proto.decode_readdir_trailer(reply.data).entries == entries
            await assert_slots_free(rundir)


# -- signals, give-ups, timeouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("read_first", [False, True], ids=["waiting", "in-progress"])
async def test_interrupt_of_an_interruptible_op_is_eintr(broker, rundir, read_first):
    """Spec §4.3, §4.6, §4.9 / DESIGN INTERRUPT: a signal ends an INTERRUPTIBLE wait with EINTR and the op is given up (a late downcall is dropped)."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(9, getattr_upcall(), flags=INTR)
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            frame = await core.next_frame() if read_first else None
            await vfs.interrupt(9)
            reply = await pending.wait()
            assert reply.result == -errno.EINTR
            s = await status(rundir)
            assert (s["request_list"], s["in_progress"], s["ops_by_state"]) == (0, 0, {})
            if frame is not None:
                assert await core.auto(frame) == MAX_DEV_REQ_DOWNSIZE  # unknown tag now: accepted, dropped
            else:
                await core.no_frame(0.05)


async def test_ordinary_signal_leaves_a_non_interruptible_wait_and_a_fatal_one_ends_it(broker, rundir):
    """Spec §4.3, §4.5 step 6 / channels.SignalKind: without INTERRUPTIBLE only a fatal signal ends the wait (EINTR)."""
    with trio.fail_after(10):
        async with HandCore.start(rundir), VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(3, getattr_upcall())
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            await vfs.interrupt(3)
            await trio.sleep(0.1)
            assert not pending.event.is_set()
            assert (await status(rundir))["request_list"] == 1
            await vfs.interrupt(3, fatal=True)
            assert (await pending.wait()).result == -errno.EINTR
            assert (await status(rundir))["ops_by_state"] == {}


@pytest.mark.parametrize("io_type", [IoType.READ, IoType.WRITE], ids=["read", "write"])
async def test_interrupted_file_io_the_core_read_becomes_a_cancel_holding_the_slot(broker, rundir, io_type):
    """Spec §4.10 / §5.3 step 5: an interrupted FILE_IO the client-core had read sends CANCEL(op_tag = its tag); its slot stays busy until the CANCEL is answered."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            if io_type == IoType.READ:
                pending = await vfs.send_submit(1, read_upcall(4096, 0), flags=INTR)
            else:
                pending = await vfs.send_submit(1, write_upcall(4096, 0), b"w" * 4096, flags=INTR)
            io = await core.next_frame()
            assert io.type == OpCode.FILE_IO
            slot = io.upcall.req.io.buf_index
            assert (await status(rundir))["buffers"][0]["busy"] == [slot]

            await vfs.interrupt(1)
            reply = await pending.wait()
            if io_type == IoType.READ:
                assert reply.result == -errno.EINTR
            else:  # an interrupted write the client-core had read counts as written
                assert reply.result == 0 and amt_complete(reply.downcall) == 4096
            io_map = (await status(rundir))["buffers"][0]
            assert io_map["busy"] == [slot] and io_map["c"] == io_map["count"] - 1

            cancel = await core.next_frame()
            assert cancel.type == OpCode.CANCEL
            assert cancel.upcall.req.cancel.op_tag == io.tag
            assert cancel.tag > io.tag
            [row] = (await control(rundir, "ops"))["ops"]
            assert row["tag"] == cancel.tag and row["cancel"] is True and row["slot"] == slot
            # The I/O's own late downcall is accepted and dropped; the slot is still held.
            assert await core.reply(io, resp={"io": {"amt_complete": 4096}}) == MAX_DEV_REQ_DOWNSIZE
            assert (await status(rundir))["buffers"][0]["busy"] == [slot]
            assert await core.reply(cancel) == MAX_DEV_REQ_DOWNSIZE
            s = await status(rundir)
            assert s["buffers"][0]["busy"] == [] and s["buffers"][0]["c"] == s["buffers"][0]["count"]
            assert s["ops_by_state"] == {}
            assert (await control(rundir, "stats"))["cancels_sent"] == 1


@pytest.mark.parametrize("read_first", [False, True], ids=["waiting", "in-progress"])
async def test_caller_that_disconnects_gives_its_op_up(broker, rundir, read_first):
    """DESIGN VFS channel ("a connection that closes ... has given up"), spec §4.9: the op leaves the request list / in-progress table."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core:
            async with VfsClient.connect(vfs_path(rundir)) as vfs:
                await vfs.send_submit(1, getattr_upcall())
                await wait_for(rundir, lambda r: len(r["ops"]) == 1, cmd="ops")
                frame = await core.next_frame() if read_first else None
                where = (await control(rundir, "ops"))["ops"][0]["where"]
                assert where.startswith("bucket:" if read_first else "request:")
            s = await wait_for(rundir, lambda s: not s["ops_by_state"])
            assert (s["request_list"], s["in_progress"]) == (0, 0)
            assert (await control(rundir, "ops"))["ops"] == []
            if frame is not None:
                assert await core.auto(frame) == MAX_DEV_REQ_DOWNSIZE
            else:
                await core.no_frame(0.05)


async def test_without_a_client_core_ops_time_out_after_op_timeout_secs(broker, rundir, autojump_clock):
    """Spec §2.4, §4.5 step 4, §4.11: an op queued with no client-core open fails with ETIMEDOUT after op_timeout_secs (20 s, or the knob's value)."""
    with trio.fail_after(100):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            t0 = trio.current_time()
            reply = await vfs.submit(getattr_upcall())
            assert reply.result == -errno.ETIMEDOUT
            assert trio.current_time() - t0 == pytest.approx(20.0, abs=0.01)
            assert (await control(rundir, "params", name="op_timeout_secs", value="3"))["ok"]
            t0 = trio.current_time()
            reply = await vfs.submit(getattr_upcall())
            assert reply.result == -errno.ETIMEDOUT
            assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.01)
            s = await status(rundir)
            assert (s["request_list"], s["ops_by_state"]) == (0, {})
            assert (await control(rundir, "stats"))["timed_out"] == 2


BAD_DOWNCALLS = {
    # A non-READDIR success with a (well-formed) trailer: check 10 of §1.4.
    "getattr-with-trailer": lambda tag: write_frame(
        tag, {"type": OpCode.GETATTR, "status": 0}, proto.encode_readdir_trailer([])),
    # Length disagrees with trailer_size: check 9.
    "trailer-size-mismatch": lambda tag: write_frame(
        tag, {"type": OpCode.GETATTR, "status": 0, "trailer_size": 8}),
    # Status 0, but 4 extra bytes and no trailer_size.
    "too-long": lambda tag: write_frame(tag, {"type": OpCode.GETATTR, "status": 0}) + b"junk",
}


@pytest.mark.parametrize("bad", sorted(BAD_DOWNCALLS))
async def test_bad_downcall_fails_the_write_and_the_caller_with_efault(broker, rundir, bad):
    """Spec §1.4 checks 9–10 / DESIGN fidelity rules: a malformed successful downcall fails the client-core's write with EFAULT and the waiting call with EFAULT."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(1, getattr_upcall())
            frame = await core.next_frame()
            assert await core.write(BAD_DOWNCALLS[bad](frame.tag)) == -errno.EFAULT
            reply = await pending.wait()
            assert reply.result == -errno.EFAULT
            assert reply.tag == frame.tag
            assert proto.decode_downcall(reply.downcall).status == status_of(errno.EFAULT)
            assert (await status(rundir))["ops_by_state"] == {}


async def test_readdir_success_without_a_trailer_is_efault(broker, rundir):
    """Spec §1.4 check 11: a successful READDIR downcall with no trailer fails the write and the caller with EFAULT, and the readdir slot comes back."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            pending = await vfs.send_submit(1, readdir_upcall())
            frame = await core.next_frame()
            assert await core.reply(frame) == -errno.EFAULT
            assert (await pending.wait()).result == -errno.EFAULT
            await assert_slots_free(rundir)


@pytest.mark.parametrize("offset,expected", [(0, -errno.EINTR), (4096, 0)], ids=["offset-0", "offset-4096"])
async def test_file_io_interrupted_while_waiting_is_eintr_only_at_offset_0(broker, rundir, offset, expected):
    """Spec §4.10 (last paragraph), §5.3 step 5: a FILE_IO chunk interrupted before the client-core read it returns EINTR at file offset 0 and 0 elsewhere; no CANCEL, the slot is released."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            pending = await vfs.send_submit(1, read_upcall(4096, offset), flags=INTR)
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            await vfs.interrupt(1)
            reply = await pending.wait()
            assert reply.result == expected
            if expected == 0:
                assert amt_complete(reply.downcall) == 0 and reply.data == b""
            await core.no_frame(0.05)  # no CANCEL: the client-core never had it
            await assert_slots_free(rundir)
            assert (await control(rundir, "stats"))["cancels_sent"] == 0


async def test_purged_file_io_is_resubmitted_with_its_data_to_the_next_client_core(broker, rundir):
    """Spec §4.11, §5.3 step 4: a FILE_IO write purged by a release gives its slot back, takes one from the next client-core's buffer, recopies its data and resubmits the same op."""
    data = os.urandom(8192)
    with trio.fail_after(15):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            async with HandCore.start(rundir) as first:
                await mount_by_hand(first, vfs)
                pending = await vfs.send_submit(1, write_upcall(len(data), 0), data)
                io = await first.next_frame()
                assert bytes(first.buffers.io_slot(io.upcall.req.io.buf_index)[: len(data)]) == data
            # The first client-core died with the write in progress: purged, slot returned, release done.
            await wait_for(rundir, lambda s: s["open_count"] == 0)
            async with HandCore.start(rundir, count=2, size=64 * KiB) as second:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(second.device.ioctl, proto.IoctlCommand.REMOUNT_ALL)
                    for op_type in (OpCode.FS_MOUNT, OpCode.FEATURES):
                        frame = await second.next_frame()
                        assert frame.type == op_type
                        await second.auto(frame)
                again = await second.next_frame()
                assert again.type == OpCode.FILE_IO
                assert again.tag == io.tag
                slot = again.upcall.req.io.buf_index
                assert bytes(second.buffers.io_slot(slot)[: len(data)]) == data
                assert await second.reply(again, resp={"io": {"amt_complete": len(data)}}) == MAX_DEV_REQ_DOWNSIZE
                reply = await pending.wait()
                assert reply.result == 0 and amt_complete(reply.downcall) == len(data)
                assert (await control(rundir, "ops"))["ops"] == []


@pytest.mark.parametrize("io_type", [IoType.READ, IoType.WRITE], ids=["read", "write"])
async def test_negative_amt_complete_is_not_a_success_and_leaks_no_slot_bytes(broker, rundir, io_type):
    """Spec §5.3 step 6: "reads copy amt_complete bytes out of the slot; the result of the call is amt_complete" — a negative amt_complete cannot be reported as success, nor hand the caller slot bytes."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            for slot in range(4):
                core.buffers.io_slot(slot)[:16] = b"someone-else's!!"
            if io_type == IoType.READ:
                pending = await vfs.send_submit(1, read_upcall(4096, 0))
            else:
                pending = await vfs.send_submit(1, write_upcall(4096, 0), b"w" * 4096)
            frame = await core.next_frame()
            await core.reply(frame, resp={"io": {"amt_complete": -5}})
            reply = await pending.wait()
            assert reply.data == b"", f"{len(reply.data)} bytes of slot contents handed to the caller"
            assert reply.result < 0, f"result {reply.result}, amt_complete {amt_complete(reply.downcall)}"
            await assert_slots_free(rundir)


async def test_caller_that_disconnects_during_a_read_file_io_causes_a_cancel(broker, rundir):
    """Spec §4.9, §4.10 / DESIGN ("a connection that closes ... a killed process"): a caller gone with a FILE_IO the client-core had read is a fatal signal, so a CANCEL follows and holds the slot until answered."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core:
            async with VfsClient.connect(vfs_path(rundir)) as vfs:
                await mount_by_hand(core, vfs)
                await vfs.send_submit(1, read_upcall(4096, 0))
                io = await core.next_frame()
            cancel = await core.next_frame()
            assert cancel.type == OpCode.CANCEL and cancel.upcall.req.cancel.op_tag == io.tag
            assert (await status(rundir))["buffers"][0]["busy"] == [io.upcall.req.io.buf_index]
            await core.reply(cancel)
            await assert_slots_free(rundir)


async def test_slot_wait_is_interrupted_by_any_signal(broker, rundir):
    """Spec §5.2: a caller waiting for a free slot waits interruptibly — even an ordinary signal on a non-INTERRUPTIBLE call ends it with EINTR."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=1, size=64 * KiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            first = await vfs.send_submit(1, read_upcall(100, 0))
            io = await core.next_frame()
            second = await vfs.send_submit(2, read_upcall(100, 0))
            await wait_for(rundir, lambda s: s["buffers"][0]["waiters"] == 1)
            await vfs.interrupt(2)
            assert (await second.wait()).result == -errno.EINTR
            assert (await status(rundir))["buffers"][0]["waiters"] == 0
            await core.reply(io, resp={"io": {"amt_complete": 100}})
            assert (await first.wait()).result == 0
            await assert_slots_free(rundir)


async def test_slot_wait_times_out_after_slot_timeout_secs(broker, rundir, autojump_clock):
    """Spec §2.4, §5.2: with every slot busy a caller waits at most slot_timeout_secs (here set to 7 over the control channel), then ETIMEDOUT."""
    with trio.fail_after(100):
        async with HandCore.start(rundir, count=1, size=64 * KiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            assert (await control(rundir, "params", name="slot_timeout_secs", value="7"))["ok"]
            first = await vfs.send_submit(1, read_upcall(100, 0))
            io = await core.next_frame()
            t0 = trio.current_time()
            reply = await vfs.submit(read_upcall(100, 0))
            assert reply.result == -errno.ETIMEDOUT
            assert trio.current_time() - t0 == pytest.approx(7.0, abs=0.01)
            await core.reply(io, resp={"io": {"amt_complete": 100}})
            assert (await first.wait()).result == 0


@pytest.mark.parametrize("op", ["file_io", "readdir"])
async def test_without_a_shared_buffer_slot_ops_wait_30s_then_time_out(broker, rundir, autojump_clock, op):
    """Spec §2.4, §5.2, §5.4: with no buffer mapped, FILE_IO and READDIR wait for one at most 30 s (ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS), then ETIMEDOUT."""
    upcall = read_upcall(100, 0) if op == "file_io" else readdir_upcall()
    with trio.fail_after(100):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            t0 = trio.current_time()
            reply = await vfs.submit(upcall)
            assert reply.result == -errno.ETIMEDOUT
            assert trio.current_time() - t0 == pytest.approx(30.0, abs=0.01)
            assert (await status(rundir))["ops_by_state"] == {}


async def test_map_wakes_callers_waiting_for_a_buffer(broker, rundir, autojump_clock):
    """Spec §4.12 step 2, §5.2: a FILE_IO waiting for a buffer gets a slot as soon as a client-core's MAP installs one (within the 30 s)."""
    with trio.fail_after(100):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            # fs_id 0: belongs to no filesystem, so the device read does not filter it.
            pending = await vfs.send_submit(1, read_upcall(100, 0, fs_id=0))
            await trio.sleep(20)
            assert (await status(rundir))["buffers"][0]["waiters"] == 1
            async with HandCore.start(rundir) as core:
                io = await core.next_frame()
                assert io.type == OpCode.FILE_IO and io.upcall.req.io.count == 100
                await core.reply(io, resp={"io": {"amt_complete": 100}})
                reply = await pending.wait()
                assert reply.result == 0 and len(reply.data) == 100


# -- mount(2) and umount(2) through the VFS channel -------------------------------------------------------------------


def fs_mount_reply(frame, fs_id: int = FS_ID, mount_id: int = 1, version: int | None = None) -> bytes:
    kwargs = {} if version is None else {"version": version}
    return write_frame(frame.tag, {"type": OpCode.FS_MOUNT, "status": 0, "resp": {"fs_mount": {
        "fs_id": fs_id, "id": mount_id, "root_khandle": bytes(range(16))}}}, **kwargs)


async def test_mount_sends_fs_mount_root_getattr_and_features(broker, rundir):
    """Spec §4.13 (mount): FS_MOUNT with the device string, GETATTR of the returned root with the size mask, FEATURES; the fs joins the mount list."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(1, mount_upcall(b"tcp://h:3334/fs"))
            frame = await core.next_frame()
            assert frame.type == OpCode.FS_MOUNT
            assert frame.upcall.req.fs_mount.orangefs_config_server == b"tcp://h:3334/fs"
            assert await core.write(fs_mount_reply(frame, fs_id=42, mount_id=3)) == MAX_DEV_REQ_DOWNSIZE
            root = await core.next_frame()
            assert root.type == OpCode.GETATTR
            assert root.upcall.req.getattr.refn.fs_id == 42
            assert root.upcall.req.getattr.refn.khandle == bytes(range(16))
            assert root.upcall.req.getattr.mask == proto.AttrMask.ALL_NOHINT
            await core.auto(root)
            features = await core.next_frame()
            assert features.type == OpCode.FEATURES
            await core.reply(features, resp={"features": {"features": 1}})
            reply = await pending.wait()
            assert reply.result == 0
            assert reply.tag == frame.tag
            s = await status(rundir)
            assert s["mounts"] == [{"fs_id": 42, "id": 3, "devname": "tcp://h:3334/fs",
                                    "root": bytes(range(16)).hex(), "pending": False, "mountpoint": None}]
            assert s["features"] == 1


async def test_mount_by_an_old_client_core_sends_no_features(broker, rundir):
    """Spec §2.1, §4.13: FEATURES is sent at mount only when the recorded userspace version is at least 20906."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(1, mount_upcall())
            frame = await core.next_frame()
            assert await core.write(fs_mount_reply(frame, version=20905)) == MAX_DEV_REQ_DOWNSIZE
            root = await core.next_frame()
            assert await core.write(write_frame(root.tag, {"type": OpCode.GETATTR, "status": 0},
                                                version=20905)) == MAX_DEV_REQ_DOWNSIZE
            assert (await pending.wait()).result == 0
            await core.no_frame(0.05)
            s = await status(rundir)
            assert s["userspace_version"] == 20905 and len(s["mounts"]) == 1


async def test_mount_with_fs_id_0_is_einval(broker, rundir):
    """Spec §2.6, §4.13: a FS_MOUNT reply with fs_id 0 (ORANGEFS_FS_ID_NULL) fails the mount with EINVAL; nothing is mounted."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(1, mount_upcall())
            frame = await core.next_frame()
            await core.write(fs_mount_reply(frame, fs_id=0))
            assert (await pending.wait()).result == -errno.EINVAL
            assert (await status(rundir))["mounts"] == []
            await core.no_frame(0.05)


async def test_mount_whose_root_getattr_fails_sends_fs_umount(broker, rundir):
    """Spec §4.13: when the mount fails after the client-core mounted it (root GETATTR fails), the kernel sends FS_UMOUNT; the caller gets the error."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            pending = await vfs.send_submit(1, mount_upcall())
            frame = await core.next_frame()
            await core.write(fs_mount_reply(frame, mount_id=9))
            root = await core.next_frame()
            await core.reply(root, status=status_of(errno.EACCES))
            umount = await core.next_frame()
            assert umount.type == OpCode.FS_UMOUNT
            req = umount.upcall.req.fs_umount
            assert (req.id, req.fs_id, req.orangefs_config_server) == (9, FS_ID, DEVNAME)
            await core.auto(umount)
            assert (await pending.wait()).result == -errno.EACCES
            assert (await status(rundir))["mounts"] == []


async def test_umount_sends_fs_umount_and_without_a_client_core_does_not_wait(broker, rundir, autojump_clock):
    """Spec §4.5 step 4, §4.11, §4.13 (umount): FS_UMOUNT carries id, fs_id and device string and the fs leaves the list; with no client-core it is not queued for op_timeout_secs."""
    with trio.fail_after(100):
        async with VfsClient.connect(vfs_path(rundir)) as vfs:
            async with HandCore.start(rundir) as core:
                await mount_by_hand(core, vfs)
            await wait_for(rundir, lambda s: s["open_count"] == 0)
            umount = proto.encode_upcall({"type": OpCode.FS_UMOUNT, "req": {"fs_umount": {
                "id": 1, "fs_id": FS_ID, "orangefs_config_server": DEVNAME}}})
            t0 = trio.current_time()
            reply = await vfs.submit(umount)
            assert trio.current_time() == t0
            assert reply.result in (0, -errno.ETIMEDOUT)  # umount(2) only logs FS_UMOUNT's failure
            assert (await status(rundir))["mounts"] == []
