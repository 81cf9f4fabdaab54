"""Random packets on all three channels while real work goes on (DESIGN.md: malformed input "never takes the broker down").

Each example starts a broker, the minimal client-core and a mount, then runs
at once: a well-behaved caller doing GETATTRs, and junk senders on the device
channel (optionally attached to the client-core's open file), the VFS channel
and the control channel.  Afterwards every request that should get a reply
got exactly one, the caller's GETATTRs all succeeded, nothing is in flight
and both slot maps are full again.

The junk is generated (packets built field by field with edge values) and
mutated (valid packets after a few random edits: splatted words, flipped
bytes, cuts, inserts); a fourth and fifth sender write raw byte streams to a
VFS and a control connection and then close their side, and must get only
well-formed replies and a clean close.  Budgets follow tests/fuzzing.py:
``pytest --long`` runs the long profile.

The junk is kept to what cannot legitimately wedge the system:
an attached junk connection never CLOSEs the shared file or READs (either
would take the minimal client-core's work from it) and never WRITEs a
downcall for a tag that may be live, POLL timeouts are short, and VFS ops
only name mounted filesystems and never mount or unmount (an op of an
unknown fs waits forever by the kernel's rules).
"""

from __future__ import annotations

import collections
import json
import os
import struct
import tempfile
from pathlib import Path

import trio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pvfs2proto as proto
from pvfs2ctl.client import ControlClient, VfsClient
from pvfs2dev.params import PARAMS
from pvfs2dev.server import Config, Server
from pvfs2proto import OpCode
from pvfs2proto.channels import DEVICE_REQUEST, VFS_LENGTH, VFS_REPLY, VFS_REQUEST, DeviceCall, VfsKind
from pvfs2proto.constants import MAX_DEV_REQ_UPSIZE, ORANGEFS_DEVREQ_MAGIC, PVFS2DEV_USERSPACE_VERSION, UPCALL_SIZE
from pvfs2proto.upcall import FS_ID_OFFSETS

from ..fuzzing import fuzz_settings
from ..protocol.strategies import mutated
from .live import (
    FS_ID,
    KiB,
    RawDevice,
    RawVfs,
    assert_getattr_round_trip,
    assert_quiescent,
    ctl_path,
    file_io_upcall,
    getattr_upcall,
    minimal_core,
    mount,
    readdir_upcall,
    vfs_path,
)

SLOT = 64 * KiB
GOOD_GETATTRS = 8
#: Tags a junk downcall may carry on the shared file: far above any tag a round hands out.
DEAD_TAG = 10**12

pytestmark = [
    pytest.mark.fuzz,
    # A failing example with megabytes of junk would otherwise be reported as this warning, not as itself.
    pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"),
]

# -- device packets ---------------------------------------------------------------------------------------------

IOCTLS = [int(c) for c in proto.IoctlCommand] + [0x40046A01, 0x00006B00, 0x00006B0A, 0xFFFFFFFF]


@st.composite
def device_packets(draw) -> bytes:
    shape = draw(st.sampled_from(["call", "call", "call", "mutated", "short", "random"]))
    if shape == "mutated":
        # A well-formed call after a few edits, aimed mostly at the header's fields.
        good = draw(st.builds(lambda call, seq, a0, a1, payload: DEVICE_REQUEST.pack(call, seq, a0, a1) + payload,
                              st.sampled_from([int(c) for c in DeviceCall]), st.integers(0, 2**32 - 1),
                              st.sampled_from([0, MAX_DEV_REQ_UPSIZE, os.O_RDWR | os.O_NONBLOCK] + IOCTLS),
                              st.integers(0, 50), st.sampled_from([b"", bytes(24), bytes(8248)])))
        return draw(mutated(st.just(good), offsets=(0, 4, 8, 16, 24, 28, 32)))
    if shape == "short":
        return draw(st.binary(min_size=1, max_size=DEVICE_REQUEST.size - 1))
    if shape == "random":
        return draw(st.binary(min_size=DEVICE_REQUEST.size, max_size=300))
    call = draw(st.sampled_from([int(c) for c in DeviceCall] + [0, 8, 0xFFFFFFFF]))
    seq = draw(st.integers(0, 2**32 - 1))
    a0 = draw(st.sampled_from([0, 1, -1, MAX_DEV_REQ_UPSIZE, MAX_DEV_REQ_UPSIZE + 1, os.O_RDWR | os.O_NONBLOCK,
                               2**63 - 1, -(2**63)] + IOCTLS))
    a1 = draw(st.integers(-1, 100))
    payload_shape = draw(st.sampled_from(["none", "random", "downcall"]))
    if payload_shape == "random":
        payload = draw(st.binary(max_size=600))
    elif payload_shape == "downcall":
        version = draw(st.sampled_from([0, 20903, PVFS2DEV_USERSPACE_VERSION, 2**32 - 1]))
        magic = draw(st.sampled_from([ORANGEFS_DEVREQ_MAGIC, 0]))
        tag = draw(st.sampled_from([0, 10**12, 2**64 - 1]))  # never a live tag
        payload = struct.pack("<IIQ", version, magic, tag) + bytes(draw(st.sampled_from([0, 8224, 8224 + 24, 100])))
    else:
        payload = b""
    return DEVICE_REQUEST.pack(call, seq, a0, a1) + payload


def sanitise(packet: bytes, attached: bool) -> bytes:
    """Keep a junk packet from wedging the system (see the module docstring)."""
    if len(packet) < DEVICE_REQUEST.size:
        return packet
    call, seq, a0, a1 = DEVICE_REQUEST.unpack_from(packet)
    if call == DeviceCall.POLL:
        a1 = min(max(a1, 0), 100)
    if attached and (call == DeviceCall.CLOSE or (call == DeviceCall.READ and a0 == MAX_DEV_REQ_UPSIZE)):
        call = 99
    payload = bytearray(packet[DEVICE_REQUEST.size :])
    if attached and call == DeviceCall.WRITE and len(payload) >= 16:
        (tag,) = struct.unpack_from("<Q", payload, 8)
        if tag < DEAD_TAG:  # a live GETATTR's tag: the junk would answer the good caller's op
            struct.pack_into("<Q", payload, 8, DEAD_TAG + tag)
    return DEVICE_REQUEST.pack(call, seq, a0, a1) + bytes(payload)


# -- VFS messages -------------------------------------------------------------------------------------------------

NO_FS_TYPES = [0, 0xFF000000, 0x12345678, OpCode.PARAM, OpCode.PERF_COUNT, OpCode.FEATURES, OpCode.FSKEY,
               OpCode.READDIRPLUS, OpCode.CANCEL]


@st.composite
def upcalls(draw) -> tuple[bytes, bytes]:
    """(upcall, data) of a SUBMIT: well-formed or not, but never of an unmounted filesystem."""
    shape = draw(st.sampled_from(["getattr", "statfs", "readdir", "io", "io", "no-fs", "short"]))
    if shape == "getattr":
        return getattr_upcall(draw(st.sampled_from([0, FS_ID, 12345]))), b""
    if shape == "statfs":
        return proto.encode_upcall({"type": OpCode.STATFS, "req": {"statfs": {"fs_id": FS_ID}}}), b""
    if shape == "readdir":
        return readdir_upcall(), b""
    if shape == "io":
        io_type = draw(st.sampled_from([1, 1, 2, 2, 0, 3]))
        count = draw(st.integers(-1, 3 * SLOT + 100))
        offset = draw(st.sampled_from([0, 1, 4096, -1, 2**40]))
        data_shape = draw(st.sampled_from(["exact", "exact", "none", "other"]))
        if data_shape == "exact" and io_type == 2 and count >= 0:
            data = bytes([count & 0xFF]) * count
        elif data_shape == "other":
            data = b"d" * draw(st.integers(1, 5000))
        else:
            data = b""
        return file_io_upcall(io_type, count, offset), data
    if shape == "no-fs":
        body = bytearray(draw(st.binary(min_size=UPCALL_SIZE, max_size=UPCALL_SIZE)))
        struct.pack_into("<I", body, 0, draw(st.sampled_from(NO_FS_TYPES)))
        return bytes(body), b""
    return draw(st.binary(max_size=UPCALL_SIZE - 1)), b""


def tamed(body: bytes) -> bytes:
    """A mutated VFS message made safe to send (module docstring): its op names the mounted fs, never mounts."""
    start = VFS_REQUEST.size
    if len(body) < start + UPCALL_SIZE:
        return body
    message = bytearray(body)
    (op_type,) = struct.unpack_from("<I", message, start)
    if op_type in (OpCode.FS_MOUNT, OpCode.FS_UMOUNT):
        op_type = int(OpCode.GETATTR)
        struct.pack_into("<I", message, start, op_type)
    if op_type in FS_ID_OFFSETS:
        struct.pack_into("<i", message, start + FS_ID_OFFSETS[op_type], FS_ID)
    return bytes(message)


def vfs_shape(body: bytes) -> tuple[str, int]:
    """(what, req_id) the broker makes of a message, by the VFS channel's rules (vfs_server.py)."""
    if len(body) < VFS_REQUEST.size:
        return "short", 0
    _, kind, req_id = VFS_REQUEST.unpack_from(body)
    if kind == VfsKind.INTERRUPT:
        return "interrupt", req_id
    if kind == VfsKind.SUBMIT and len(body) >= VFS_REQUEST.size + UPCALL_SIZE:
        return "submit", req_id
    return "badkind", req_id


@st.composite
def vfs_messages(draw) -> tuple[str, int, bytes]:
    """(what, req_id, message body) — what: submit, interrupt, short or badkind."""
    what = draw(st.sampled_from(["submit", "submit", "submit", "mutated", "interrupt", "short", "badkind"]))
    req_id = draw(st.integers(1, 12))
    if what == "mutated":
        upcall, data = draw(upcalls())
        good = VFS_REQUEST.pack(draw(st.sampled_from([0, 1, 3])), VfsKind.SUBMIT, req_id) + upcall + data
        body = tamed(draw(mutated(st.just(good), offsets=(0, 4, 8, 16, 20, 24, 56, 64))))
        return (*vfs_shape(body), body)
    if what == "submit":
        flags = draw(st.sampled_from([0, 1, 2, 3, 8, 32, 0xFFFFFFFF]))
        upcall, data = draw(upcalls())
        return what, req_id, VFS_REQUEST.pack(flags, VfsKind.SUBMIT, req_id) + upcall + data
    if what == "interrupt":
        return what, req_id, VFS_REQUEST.pack(draw(st.integers(0, 1)), VfsKind.INTERRUPT, req_id)
    if what == "short":
        return what, 0, draw(st.binary(max_size=VFS_REQUEST.size - 1))
    return what, req_id, VFS_REQUEST.pack(0, draw(st.integers(2, 2**32 - 1)), req_id) + draw(st.binary(max_size=64))


# -- control lines --------------------------------------------------------------------------------------------------

CTL_COMMANDS = ["status", "ops", "buffers", "mounts", "stats", "params", "debug", "perf", "nope", ""]


@st.composite
def control_lines(draw) -> bytes:
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    if shape == 1:
        good = json.dumps({"cmd": draw(st.sampled_from(CTL_COMMANDS[:-2])), "name": "op_timeout_secs"}).encode()
        return draw(mutated(st.just(good))).replace(b"\n", b" ")
    request = {"cmd": draw(st.sampled_from(CTL_COMMANDS))}
    for field, values in (
        ("name", st.sampled_from(sorted(PARAMS) + ["nope", ""])),
        ("value", st.one_of(st.integers(-5, 2000).map(str), st.text(max_size=12), st.integers(), st.none())),
        ("dump", st.one_of(st.integers(-2, 5), st.text(max_size=3))),
        ("length", st.integers(-10, 100)),
        ("which", st.sampled_from(["kernel", "client", "x"])),
        ("type", st.sampled_from(["acache", "ncache", "capcache", "x"])),
    ):
        if draw(st.booleans()):
            request[field] = draw(values)
    return json.dumps(request).encode()


# -- raw byte streams ----------------------------------------------------------------------------------------------


@st.composite
def vfs_streams(draw) -> bytes:
    """Bytes for a VFS connection, framing included: random, or valid frames with their length words edited."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    frames = b"".join(VFS_LENGTH.pack(len(body)) + body for _, _, body in draw(st.lists(vfs_messages(), max_size=3)))
    return draw(mutated(st.just(frames), offsets=(0, 1, 2, 3)))


def check_vfs_replies(raw: bytes) -> None:
    """Everything a junk VFS stream got back is whole replies, each an error or a result, nothing torn."""
    pos = 0
    while pos < len(raw):
        assert len(raw) - pos >= VFS_LENGTH.size, f"a torn length word at byte {pos}"
        (length,) = VFS_LENGTH.unpack_from(raw, pos)
        assert length >= VFS_REPLY.size and pos + 4 + length <= len(raw), f"a torn reply at byte {pos}"
        result, _tag, _req_id = VFS_REPLY.unpack_from(raw, pos + 4)
        assert result <= 0 or length > VFS_REPLY.size, result
        pos += 4 + length


def check_control_replies(raw: bytes) -> None:
    """Everything a junk control stream got back is whole JSON lines with ``ok`` (and an errno when false)."""
    assert not raw or raw.endswith(b"\n"), "a torn control reply"
    for line in raw.splitlines():
        reply = json.loads(line)
        assert isinstance(reply.get("ok"), bool), reply
        if reply["ok"] is False:
            assert isinstance(reply["errno"], int), reply


async def stream_junk(path: Path, junk: bytes) -> bytes:
    """Write ``junk`` on a fresh connection, close our side, and read until the broker closes its side."""
    stream = await trio.open_unix_socket(os.fspath(path))
    async with stream:
        try:
            await stream.send_all(junk)
            await stream.send_eof()
        except trio.BrokenResourceError:
            return b""  # the broker already closed on an earlier byte: a clean disconnect
        got = bytearray()
        while True:
            try:
                chunk = await stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)


# -- the round --------------------------------------------------------------------------------------------------------


async def one_round(device_junk, attached, vfs_junk, control_junk, vfs_stream=b"", control_stream=b"") -> None:
    with tempfile.TemporaryDirectory(prefix="pvfs2fuzz-") as tmp:
        rundir = Path(tmp)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(Server(Config(rundir=rundir)).run)
                await nursery.start(minimal_core, rundir, 4, SLOT)
                async with VfsClient.connect(vfs_path(rundir)) as vfs:
                    await mount(vfs)

                async def good_caller():
                    async with VfsClient.connect(vfs_path(rundir)) as vfs:
                        for _ in range(GOOD_GETATTRS):
                            reply = await vfs.submit(getattr_upcall())
                            assert reply.result == 0, proto.errno_name(-reply.result)

                async def device_sender():
                    async with RawDevice.connect(rundir) as dev:
                        if attached:
                            token = server.device.file.token
                            assert (await dev.call(DeviceCall.ATTACH, token - 2**64 if token >= 2**63 else token)
                                    ).result == 0
                        for packet in device_junk:
                            await dev.send_bytes(sanitise(packet, attached))
                        for _ in device_junk:  # one reply per packet
                            reply = await dev.recv()
                            for fd in reply.fds:
                                os.close(fd)

                async def vfs_sender():
                    expected = collections.Counter()
                    async with RawVfs.connect(rundir) as raw:
                        for what, req_id, body in vfs_junk:
                            await raw.send_message(body)
                            if what in ("submit", "badkind"):
                                expected[req_id] += 1
                            elif what == "short":
                                expected[0] += 1
                        got = collections.Counter()
                        for _ in range(sum(expected.values())):
                            got[(await raw.recv()).req_id] += 1
                        assert got == expected

                async def control_sender():
                    async with ControlClient.connect(ctl_path(rundir)) as ctl:
                        for line in control_junk:
                            await ctl.stream.send_all(line + b"\n")
                            reply = await ctl.receive()
                            assert isinstance(reply.get("ok"), bool)
                            if reply["ok"] is False:
                                assert isinstance(reply["errno"], int)
                        assert (await ctl.request("status"))["ok"] is True

                async def vfs_streamer():
                    check_vfs_replies(await stream_junk(vfs_path(rundir), vfs_stream))

                async def control_streamer():
                    check_control_replies(await stream_junk(ctl_path(rundir), control_stream))

                async with trio.open_nursery() as actors:
                    for actor in (good_caller, device_sender, vfs_sender, control_sender, vfs_streamer,
                                  control_streamer):
                        actors.start_soon(actor)

                s = await assert_quiescent(rundir)
                assert s["open_count"] == 1
                await assert_getattr_round_trip(rundir)
                nursery.cancel_scope.cancel()


@fuzz_settings(150, 5000)
@given(
    device_junk=st.lists(device_packets(), max_size=10),
    attached=st.booleans(),
    vfs_junk=st.lists(vfs_messages(), max_size=10),
    control_junk=st.lists(control_lines(), max_size=6),
    vfs_stream=vfs_streams(),
    control_stream=st.binary(max_size=300),
)
def test_random_packets_on_all_channels_leave_the_broker_whole(device_junk, attached, vfs_junk, control_junk,
                                                               vfs_stream, control_stream):
    """DESIGN.md device/VFS/control channels: random packets get one reply each (or close only their own connection) while ops keep being served, and leave nothing in flight and both slot maps full."""
    trio.run(one_round, device_junk, attached, vfs_junk, control_junk, vfs_stream, control_stream)
