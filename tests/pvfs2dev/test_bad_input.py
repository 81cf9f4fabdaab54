"""Malformed input on each of the three sockets (DESIGN.md: "Malformed packets get -EINVAL ... and never take the broker down").

Every test runs against a broker with the minimal client-core and a mounted
filesystem, throws one kind of junk at one channel, checks the answer, and
then checks the broker is still whole: a fresh caller's GETATTR round trip
works, nothing is left in flight, and both slot maps are full.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

import pytest
import trio

import pvfs2proto as proto
from pvfs2ctl.client import ControlClient
from pvfs2proto import IoctlCommand, OpCode
from pvfs2proto.channels import VFS_LENGTH, VFS_REQUEST, DeviceCall, VfsKind
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    PVFS2DEV_USERSPACE_VERSION,
    UPCALL_SIZE,
)

from .live import (
    FS_ID,
    NONBLOCK,
    RawDevice,
    RawVfs,
    assert_getattr_round_trip,
    assert_quiescent,
    control,
    ctl_path,
    getattr_upcall,
    read_upcall,
    status,
    wait_for,
    write_upcall,
)



async def assert_healthy(rundir) -> None:
    """The broker still serves a normal round trip, has nothing in flight and both slot maps full."""
    await assert_getattr_round_trip(rundir)
    s = await assert_quiescent(rundir)
    assert s["open_count"] == 1 and s["daemon_in_service"] is True


def lookup_of_unknown_fs() -> bytes:
    """An op the device read skips forever (fs_id 99 is not mounted): it stays in flight until given up."""
    return proto.encode_upcall({"type": OpCode.LOOKUP, "req": {"lookup": {
        "parent_refn": {"khandle": bytes(16), "fs_id": 99}, "d_name": b"x"}}})


# -- device channel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 4, 7, 8, 12, 23])
async def test_short_device_packet_is_einval(served, rundir, length):
    """DESIGN device channel: a packet shorter than its 24-byte header gets -EINVAL (call and seq echoed when present)."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            packet = struct.pack("<IIqq", DeviceCall.IOCTL, 4242, IoctlCommand.GET_MAGIC, 0)[:length]
            await dev.send_bytes(packet)
            reply = await dev.recv()
            assert reply.result == -errno.EINVAL
            if length >= 8:
                assert (reply.call, reply.seq) == (DeviceCall.IOCTL, 4242)
            # The connection still works.
            assert (await dev.call(DeviceCall.OPEN, NONBLOCK)).result == -errno.EACCES
        await assert_healthy(rundir)


@pytest.mark.parametrize("call", [0, 8, 99, 0x7FFFFFFF, 0xFFFFFFFF])
async def test_unknown_device_call_is_einval(served, rundir, broker, call):
    """DESIGN device channel: an unknown call number gets -EINVAL with call and seq echoed, attached or not."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            reply = await dev.call(call)
            assert reply.result == -errno.EINVAL and reply.payload == b""
            assert (await dev.call(DeviceCall.ATTACH, _signed(broker.device.file.token))).result == 0
            reply = await dev.call(call, 1, 2, b"payload")
            assert reply.result == -errno.EINVAL
        await assert_healthy(rundir)


def _signed(token: int) -> int:
    return token - 2**64 if token >= 2**63 else token


def _head(tag: int, version: int = PVFS2DEV_USERSPACE_VERSION, magic: int = ORANGEFS_DEVREQ_MAGIC) -> bytes:
    return struct.pack("<IIQ", version, magic, tag)


GARBAGE_CALLS = [
    # (call, a0, payload, expected result)
    ("read-short", DeviceCall.READ, 100, b"", -errno.EINVAL),
    ("write-short", DeviceCall.WRITE, 0, os.urandom(100), -errno.EFAULT),
    ("write-version-0", DeviceCall.WRITE, 0, _head(500, version=0) + bytes(8224), -errno.EPROTO),
    ("write-bad-magic", DeviceCall.WRITE, 0, _head(500, magic=0xDEADBEEF) + bytes(8224), -errno.EPROTO),
    ("write-other-version", DeviceCall.WRITE, 0, _head(500, version=20906) + bytes(8224), -errno.EPROTO),
    ("write-unknown-tag", DeviceCall.WRITE, 0, _head(10**12) + os.urandom(8224), MAX_DEV_REQ_DOWNSIZE),
    ("write-3MiB", DeviceCall.WRITE, 0, _head(10**12) + os.urandom(3 << 20), MAX_DEV_REQ_DOWNSIZE - 8224 + (3 << 20)),
    ("ioctl-not-k", DeviceCall.IOCTL, 0x40046A01, b"", -errno.EINVAL),
    ("ioctl-nr-0", DeviceCall.IOCTL, 0x00006B00, b"", -errno.ENOTTY),
    ("ioctl-nr-10", DeviceCall.IOCTL, 0x00006B0A, b"", -errno.ENOTTY),
    ("ioctl-wrong-size-bits", DeviceCall.IOCTL, 0x40086B01, b"", -errno.ENOTTY),
    ("ioctl-map-short", DeviceCall.IOCTL, IoctlCommand.MAP, b"\1\2\3", -errno.EIO),
    ("ioctl-map-again", DeviceCall.IOCTL, IoctlCommand.MAP,
     struct.pack("<Qiii4x", 0, 8192, 4096, 2), -errno.EINVAL),
    ("ioctl-debug-short", DeviceCall.IOCTL, IoctlCommand.DEBUG, b"\0" * 8, -errno.EIO),
    ("ioctl-debug-bad-type", DeviceCall.IOCTL, IoctlCommand.DEBUG, struct.pack("<I4xQ", 7, 0), -errno.EINVAL),
    ("ioctl-client-string-short", DeviceCall.IOCTL, IoctlCommand.CLIENT_STRING, b"x" * 100, -errno.EFAULT),
    ("poll-odd-events", DeviceCall.POLL, 0xFFFF0000, b"", 0),
]


@pytest.mark.parametrize("name,call,a0,payload,expected", GARBAGE_CALLS, ids=[g[0] for g in GARBAGE_CALLS])
async def test_garbage_on_an_attached_device_connection(served, rundir, broker, name, call, a0, payload, expected):
    """Spec §1.3, §1.4, §1.7, §5.1: junk calls on a connection sharing the open device get the kernel's errno and leave the client-core's work alone."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            assert (await dev.call(DeviceCall.ATTACH, _signed(broker.device.file.token))).result == 0
            seq = await dev.send(call, None, a0, 0, payload)  # (a POLL with a zero timeout)
            reply = await dev.recv()
            assert reply.seq == seq
            assert reply.result == expected, proto.errno_name(-reply.result) if reply.result < 0 else reply.result
            assert reply.fds == []
        await wait_for(rundir, lambda s: s["open_count"] == 1)
        await assert_healthy(rundir)


async def test_fds_sent_on_the_device_channel_are_refused_and_closed(served, rundir):
    """DESIGN device channel: a packet carrying file descriptors gets -EINVAL and the broker closes the fds it received."""
    with trio.fail_after(10):
        r, w = os.pipe()
        try:
            fcntl.fcntl(r, fcntl.F_SETFL, os.O_NONBLOCK)
            async with RawDevice.connect(rundir) as dev:
                seq = await dev.send(DeviceCall.IOCTL, None, IoctlCommand.GET_MAGIC, fds=[w, w])
                os.close(w)
                w = -1
                reply = await dev.recv()
                assert (reply.seq, reply.result) == (seq, -errno.EINVAL)
                # The broker held the only other copies of the write end: closed, so the read end is at EOF.
                assert os.read(r, 1) == b""
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        await assert_healthy(rundir)


async def test_zero_length_device_packet_does_not_hurt_others(served, rundir):
    """DESIGN device channel: whatever an empty packet does to its own connection, the broker and the client-core carry on."""
    with trio.fail_after(10):
        async with RawDevice.connect(rundir) as dev:
            await dev.send_bytes(b"")
        await assert_healthy(rundir)


# -- VFS channel --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15])
async def test_short_vfs_message_is_einval(served, rundir, length):
    """DESIGN VFS channel: a message shorter than its 16-byte head gets -EINVAL (req_id 0, it could not be read); the connection stays open."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            await vfs.send_message(b"\xab" * length)
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (-errno.EINVAL, 0)
            await vfs.submit(2, getattr_upcall())
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (0, 2)
        await assert_healthy(rundir)


@pytest.mark.parametrize("kind", [2, 3, 0xFFFFFFFF])
async def test_unknown_vfs_kind_is_einval_with_req_id_echoed(served, rundir, kind):
    """DESIGN VFS channel: a request of an unknown kind gets -EINVAL with its req_id."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            await vfs.send_message(VFS_REQUEST.pack(0, kind, 0x1122334455667788) + getattr_upcall())
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (-errno.EINVAL, 0x1122334455667788)
        await assert_healthy(rundir)


async def test_duplicate_req_id_is_einval_and_the_first_request_is_untouched(served, rundir):
    """DESIGN VFS channel (req_id pairs replies with requests): a SUBMIT reusing an in-flight req_id gets -EINVAL; the first keeps waiting."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            await vfs.submit(5, lookup_of_unknown_fs())
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            await vfs.submit(5, getattr_upcall())
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (-errno.EINVAL, 5)
            [row] = (await control(rundir, "ops"))["ops"]
            assert row["op"] == "OP_LOOKUP"
            await vfs.send_message(VFS_REQUEST.pack(1, VfsKind.INTERRUPT, 5))  # fatal
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (-errno.EINTR, 5)
            # Once it is answered the req_id is free again.
            await vfs.submit(5, getattr_upcall())
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (0, 5)
        await assert_healthy(rundir)


BAD_SUBMITS = [
    ("upcall-short", getattr_upcall()[:100], b""),
    ("upcall-one-byte-short", getattr_upcall()[:-1], b""),
    ("data-on-getattr", getattr_upcall(), b"data"),
    ("write-data-length-mismatch", write_upcall(4096, 0), b"x" * 100),
    ("read-with-data", read_upcall(4096, 0), b"x" * 4096),
    ("io-type-7", proto.encode_upcall({"type": OpCode.FILE_IO, "req": {"io": {
        "count": 10, "io_type": 7, "refn": {"khandle": bytes(16), "fs_id": FS_ID}}}}), b""),
    ("io-negative-count", read_upcall(-5, 0), b""),
    ("io-negative-offset", read_upcall(5, -4096), b""),
    ("cancel-from-a-caller", proto.encode_upcall({"type": OpCode.CANCEL, "req": {"cancel": {"op_tag": 100}}}), b""),
    ("umount-of-unmounted-fs", proto.encode_upcall({"type": OpCode.FS_UMOUNT, "req": {"fs_umount": {
        "id": 1, "fs_id": 1234, "orangefs_config_server": b"tcp://x:1/y"}}}), b""),
]


@pytest.mark.parametrize("name,upcall,data", BAD_SUBMITS, ids=[b[0] for b in BAD_SUBMITS])
async def test_bad_submit_is_einval_with_req_id_echoed(served, rundir, name, upcall, data):
    """DESIGN VFS channel, spec §5.3: a SUBMIT whose upcall is not 8528 bytes or whose data does not fit the op gets -EINVAL and its req_id."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            await vfs.submit(77, upcall, data)
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (-errno.EINVAL, 77)
        await assert_healthy(rundir)


async def test_garbage_upcall_of_the_right_size_gets_a_reply(served, rundir):
    """DESIGN VFS channel: an 8528-byte upcall of an op type the kernel never sends still goes through service_operation and is answered (here ENOSYS by the client-core)."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            upcall = bytearray(os.urandom(UPCALL_SIZE))
            struct.pack_into("<I", upcall, 0, 0x7E57)
            await vfs.submit(9, bytes(upcall))
            reply = await vfs.recv()
            assert reply.req_id == 9
            assert reply.result == -errno.ENOSYS
        await assert_healthy(rundir)


@pytest.mark.parametrize("length", [0xFFFFFFFF, (1 << 30) + 2 * UPCALL_SIZE])
async def test_huge_vfs_length_closes_that_connection_only(served, rundir, length):
    """DESIGN VFS channel: a length no request can have closes that connection (its calls given up); other callers carry on."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as bystander, RawVfs.connect(rundir) as vfs:
            await vfs.submit(1, lookup_of_unknown_fs())
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            await vfs.stream.send_all(VFS_LENGTH.pack(length) + b"\0" * 64)
            with pytest.raises(EOFError):
                await vfs.recv()
            await bystander.submit(3, getattr_upcall())
            assert (await bystander.recv()).result == 0
        await assert_healthy(rundir)


async def test_interrupt_for_an_unknown_req_id_is_ignored(served, rundir):
    """DESIGN VFS channel: INTERRUPT acts on the SUBMIT with that req_id; with none in flight it does nothing and gets no reply."""
    with trio.fail_after(10):
        async with RawVfs.connect(rundir) as vfs:
            await vfs.send_message(VFS_REQUEST.pack(1, VfsKind.INTERRUPT, 12345))
            await vfs.submit(6, getattr_upcall())
            reply = await vfs.recv()
            assert (reply.result, reply.req_id) == (0, 6)
        await assert_healthy(rundir)


# -- control channel ---------------------------------------------------------------------------------------------------


async def test_overlong_control_line_closes_that_connection_only(served, rundir):
    """DESIGN control channel (one JSON object per line; the broker reads lines of up to 64 KiB): a longer line closes that connection only."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            await ctl.stream.send_all(b"x" * (200 * 1024))
            with pytest.raises((ConnectionResetError, trio.BrokenResourceError)):  # EOF, or RST for the unread rest
                await ctl.receive()
        assert (await status(rundir))["ok"] is True
        await assert_healthy(rundir)


@pytest.mark.parametrize("line", [os.urandom(300).replace(b"\n", b" "), b"{\"cmd\": \"status\"" + b"]" * 50, b"\0" * 10])
async def test_garbage_control_line_is_einval(served, rundir, line):
    """DESIGN control channel: a line that is not a JSON object gets EINVAL and the connection stays usable."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            await ctl.stream.send_all(line + b"\n")
            reply = await ctl.receive()
            assert reply["ok"] is False and reply["errno"] == errno.EINVAL
            assert (await ctl.request("status"))["ok"] is True
        await assert_healthy(rundir)
