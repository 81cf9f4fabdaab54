"""Byte-level recording at the device edge (issue 7): ``{"cmd": "trace", "record": true}`` on the control channel.

A hand-driven client-core reads and writes exact bytes; the record stream must
carry those very bytes (the read frame, the whole write with its result), the
FILE_IO slot bytes (a write's data at READ time, a read's data at WRITE time),
MAP geometry, and must cost nothing (no recorder) when nobody records.
"""

from __future__ import annotations

import errno

import pytest
import trio

import pvfs2proto as proto
from pvfs2ctl.client import ControlClient, VfsClient
from pvfs2dev.recorder import FORMAT, FORMAT_VERSION, Lost, Record, RecordStream, decode_frame, encode_frame
from pvfs2proto import OpCode

from .live import MiB, HandCore, ctl_path, getattr_upcall, mount_by_hand, read_upcall, readdir_upcall, vfs_path, write_upcall


async def start_recording(ctl: ControlClient) -> dict:
    reply = await ctl.request("trace", record=True)
    assert reply["ok"] is True and reply["trace"] == "started", reply
    return reply["record"]


async def next_record(ctl: ControlClient, event: str, op: str | None = None) -> dict:
    """The next record line of ``event`` (and ``op``, if given): transitions and other records are skipped."""
    while True:
        line = await ctl.receive()
        if "before" not in line and line.get("event") == event and op in (None, line.get("op")):
            return line


async def no_recorder(server) -> None:
    """Wait until the broker has no recorder (the server notices a reader's close at once)."""
    while server.broker.recorder is not None:
        await trio.sleep(0.01)


async def test_header_and_the_exact_bytes_of_an_upcall_and_its_downcall(broker, rundir):
    """The reply carries the header (format, version, broker version, geometry); then the read frame and the
    whole write come back byte for byte, with the write's result, the tag and the op name."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=4, size=MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs, \
                ControlClient.connect(ctl_path(rundir)) as ctl:
            header = await start_recording(ctl)
            assert header["format"] == FORMAT and header["version"] == FORMAT_VERSION
            assert header["broker"] and isinstance(header["wall"], float)
            assert header["io_slots"] == {"count": 4, "size": MiB}
            assert header["readdir_slots"]["count"] == 5 and header["mounts"] == []
            pending = await vfs.send_submit(1, getattr_upcall())
            frame = await core.next_frame()
            written = proto.encode_write_frame(frame.tag, {"type": OpCode.GETATTR, "status": 0, "resp": {
                "getattr": {"attributes": {"size": 4096, "objtype": 4}, "link_target": b""}}})
            assert await core.write(written) == len(written)
            assert (await pending.wait()).result == 0

            up = await next_record(ctl, "upcall")
            assert (up["tag"], up["op"]) == (frame.tag, "OP_GETATTR")
            assert decode_frame(up) == frame.raw and "data" not in up and up["t"] >= 0
            down = await next_record(ctl, "downcall")
            assert (down["tag"], down["op"], down["result"]) == (frame.tag, "OP_GETATTR", len(written))
            assert decode_frame(down) == written and down["t"] >= up["t"]
        await no_recorder(broker)  # the reader left: nothing records any more


async def test_file_io_slot_bytes_are_recorded(broker, rundir):
    """A write's slot bytes [0, count) are recorded with its upcall; a read's [0, amt_complete) with its downcall."""
    payload = bytes(range(256)) * 40
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=4, size=MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs, \
                ControlClient.connect(ctl_path(rundir)) as ctl:
            await mount_by_hand(core, vfs)
            await start_recording(ctl)
            pending = await vfs.send_submit(1, write_upcall(len(payload)), payload)
            frame = await core.next_frame()
            await core.auto(frame)
            assert (await pending.wait()).result == 0
            up = await next_record(ctl, "upcall")
            assert decode_frame(up) == frame.raw
            assert decode_frame({"frame": up["data"], "size": len(payload)}) == payload
            assert "data" not in await next_record(ctl, "downcall")

            pending = await vfs.send_submit(2, read_upcall(8192))
            frame = await core.next_frame()
            slot = frame.upcall.req.io.buf_index
            core.buffers.io_slot(slot)[:8192] = payload[:8192]
            written = proto.encode_write_frame(frame.tag, {"type": OpCode.FILE_IO, "resp": {"io": {"amt_complete": 5000}}})
            assert await core.write(written) == len(written)
            assert (await pending.wait()).data == payload[:5000]
            assert "data" not in await next_record(ctl, "upcall")
            down = await next_record(ctl, "downcall")
            assert decode_frame({"frame": down["data"], "size": 5000}) == payload[:5000]


async def test_a_rejected_downcall_is_recorded_with_its_errno(broker, rundir):
    """A short write is recorded as written (8239 bytes) with result -EFAULT; the caller's op is still waiting."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs, \
                ControlClient.connect(ctl_path(rundir)) as ctl:
            await start_recording(ctl)
            pending = await vfs.send_submit(1, getattr_upcall())
            frame = await core.next_frame()
            short = proto.encode_write_frame(frame.tag, {"type": OpCode.GETATTR})[:-1]
            assert await core.write(short) == -errno.EFAULT
            down = await next_record(ctl, "downcall")
            assert down["result"] == -errno.EFAULT and decode_frame(down) == short and down["size"] == len(short)
            await core.auto(frame)
            assert (await pending.wait()).result == 0


async def test_map_is_recorded_and_a_readdir_trailer_travels_in_the_frame(broker, rundir):
    """A MAP during the recording is a "map" line with the geometry; a READDIR write keeps its trailer apart."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            header = await start_recording(ctl)
            assert header["io_slots"] is None  # no client-core yet
            async with HandCore.start(rundir, count=2, size=MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
                assert {k: v for k, v in (await next_record(ctl, "map")).items() if k in ("count", "size")} == \
                    {"count": 2, "size": MiB}
                await mount_by_hand(core, vfs)
                pending = await vfs.send_submit(1, readdir_upcall())
                frame = await core.next_frame()
                trailer = proto.encode_readdir_trailer([(b"a", bytes(range(16)))])
                written = proto.encode_write_frame(frame.tag, {"type": OpCode.READDIR, "trailer_size": len(trailer)},
                                                   trailer)
                assert await core.write(written) == len(written)
                assert (await pending.wait()).data == trailer
                down = await next_record(ctl, "downcall", "OP_READDIR")
                assert "trailer" in down and down["size"] == proto.MAX_DEV_REQ_DOWNSIZE and decode_frame(down) == written


async def test_no_recorder_unless_someone_records(broker, rundir):
    """The device edge pays one attribute check when nobody records: broker.recorder is None until a recording
    reader comes, and again once it goes; a plain trace reader does not make one."""
    assert broker.broker.recorder is None
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as plain:
            assert (await plain.request("trace"))["ok"] is True
            assert broker.broker.recorder is None
            async with ControlClient.connect(ctl_path(rundir)) as ctl:
                await start_recording(ctl)
                assert broker.broker.recorder is not None
        await no_recorder(broker)


async def test_record_must_be_a_boolean(broker, rundir):
    """A trace request whose record field is not true or false gets EINVAL."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            reply = await ctl.request("trace", record="yes")
            assert reply["ok"] is False and reply["errno"] == errno.EINVAL


def test_a_reader_that_falls_behind_loses_records_and_is_told():
    """RecordStream drops what does not fit its byte budget or channel, then says how many with a Lost marker."""
    send, receive = trio.open_memory_channel(2)
    stream = RecordStream(send, budget=10_000)
    big = Record("upcall", 1.0, 100, int(OpCode.GETATTR), bytes(8544))
    stream.offer(big)
    stream.offer(big)  # over the byte budget
    stream.offer(big)
    assert stream.lost == 2 and stream.queued == 8544
    got = receive.receive_nowait()
    stream.taken(got)
    assert stream.queued == 0
    stream.offer(big)
    lost = receive.receive_nowait()
    assert isinstance(lost, Lost) and lost.as_dict(0.0)["count"] == 2
    assert receive.receive_nowait() is big and stream.lost == 0


@pytest.mark.parametrize("frame", [bytes(8544), b"\x01" + bytes(100), bytes(range(256)) * 40])
def test_frames_round_trip_without_their_trailing_zeros(frame):
    """encode_frame leaves the trailing zeros out and says the size; decode_frame restores the bytes."""
    entry = encode_frame(frame, trailer_at=None)
    assert decode_frame(entry) == frame
    assert len(entry["frame"]) <= (len(frame.rstrip(b"\0")) + 2) // 3 * 4
