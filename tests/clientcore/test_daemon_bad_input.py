"""Malformed upcalls get an encoded error reply, are logged, and the daemon keeps serving (issue 4, Bad input).

Most tests feed the daemon crafted read frames through the fake device
(:mod:`tests.clientcore.fake_device`), since the real broker would never
send a FILE_IO with a ``buf_index`` outside the buffer, a READDIR with a
readdir slot outside 0..4 or an op of a filesystem that is not mounted; the
fake keeps the daemon's write for each tag, so the whole downcall frame can
be checked (spec §1.4: version, magic, tag, type echoed, status encoded per
§2.7, pads and pointers zero).  One test goes through the real broker.
"""

from __future__ import annotations

import errno
import logging
import random
import struct

import pytest
import trio

import pvfs2proto as proto
from clientcore.daemon import Daemon
from pvfs2ctl.client import VfsClient
from pvfs2proto import AttrMask, IoType, OpCode
from pvfs2proto.constants import (
    DOWNCALL_SIZE,
    MAX_DEV_REQ_DOWNSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    PVFS2DEV_USERSPACE_VERSION,
    UPCALL_SIZE,
)

from .daemon_stack import (
    FS_ID,
    ROOT,
    SLOT,
    SLOTS,
    assert_error,
    assert_ok,
    call,
    create_upcall,
    file_io_upcall,
    getattr_upcall,
    lookup_upcall,
    mkdir_upcall,
    raw_upcall,
    readdir_upcall,
    remove_upcall,
    rename_upcall,
    setxattr_upcall,
    start_stack,
    statfs_upcall,
    status_of,
    symlink_upcall,
    umount_upcall,
    upcall,
    vfs_path,
)
from .fake_device import FakeDevice, read_frame
from .memstore import MemStore

TIMEOUT = 10
OTHER_FS = 999
LONG = b"n" * 256  # fills the 256-byte name field: no NUL in it

# Offsets in the upcall (spec §3.2: the union starts at 40).
LOOKUP_NAME = 40 + 32
CREATE_NAME = 40 + 160
SYMLINK_NAME = 40 + 160
SYMLINK_TARGET = 40 + 416
REMOVE_NAME = 40 + 24
RENAME_NEW = 40 + 304


def patched(up: bytes, offset: int, raw: bytes) -> bytes:
    body = bytearray(up)
    body[offset : offset + len(raw)] = raw
    assert len(body) == UPCALL_SIZE
    return bytes(body)


class Core:
    """The daemon over a MemStore, fed by the fake device; tags count up from 1000."""

    def __init__(self, fake: FakeDevice, daemon: Daemon) -> None:
        self.fake = fake
        self.daemon = daemon
        self.tag = 1000

    async def ask(self, up: bytes, **frame_fields) -> tuple[object, bytes]:
        """Queue one upcall; return the daemon's downcall (decoded as the upcall's type) and the raw write."""
        self.tag += 1
        self.fake.queue(read_frame(self.tag, up, **frame_fields))
        written = await self.fake.downcall(self.tag)
        (op_type,) = struct.unpack_from("<I", up, 0)
        head = proto.decode_write_head(written)
        assert (head.version, head.magic, head.tag) == (PVFS2DEV_USERSPACE_VERSION, ORANGEFS_DEVREQ_MAGIC, self.tag)
        known = op_type in {int(op) for op in OpCode}
        downcall = proto.decode_downcall(written[16 : 16 + DOWNCALL_SIZE], op_type if known else None)
        assert downcall.type == op_type, f"downcall.type {downcall.type:#x} does not echo {op_type:#x}"
        assert written[32:40] == bytes(8), "trailer_buf must be 0"
        return downcall, written

    async def refused(self, up: bytes, err: int) -> None:
        """The upcall gets an error reply: status = the encoded errno, nothing else in the downcall."""
        downcall, written = await self.ask(up)
        assert downcall.status == status_of(err), (
            f"status {downcall.status:#x} ({_decode_status(downcall.status)}), expected {errno.errorcode[err]}"
        )
        assert len(written) == MAX_DEV_REQ_DOWNSIZE
        assert downcall.trailer_size == 0
        assert written[40:] == bytes(MAX_DEV_REQ_DOWNSIZE - 40), "an error reply carries no resp bytes"

    async def still_serves(self) -> None:
        downcall, _ = await self.ask(getattr_upcall())
        assert downcall.status == 0
        assert downcall.resp.getattr.attributes.objtype == proto.ObjType.DIRECTORY


def _decode_status(status: int) -> str:
    if status == 0:
        return "success"
    return proto.errno_name(proto.status_to_errno(status))


async def _start(nursery, tmp_path) -> Core:
    fake = await nursery.start(FakeDevice(tmp_path).serve)
    daemon = Daemon(MemStore(), tmp_path, desc_count=SLOTS, desc_size=SLOT)
    await nursery.start(daemon.run)
    return Core(fake, daemon)


BAD = {
    # Names holding '/' (EINVAL).
    "lookup name with slash": (lookup_upcall(b"a/b"), errno.EINVAL),
    "create name with slash": (create_upcall(b"dir/file"), errno.EINVAL),
    "mkdir name with slash": (mkdir_upcall(b"/"), errno.EINVAL),
    "symlink name with slash": (symlink_upcall(b"x/y", b"target"), errno.EINVAL),
    "remove name with slash": (remove_upcall(b"../etc"), errno.EINVAL),
    "rename new name with slash": (rename_upcall(b"a", b"b/c"), errno.EINVAL),
    # Names over 255 bytes: no NUL in the 256-byte field (ENAMETOOLONG).
    "lookup name without NUL": (patched(lookup_upcall(b"x"), LOOKUP_NAME, LONG), errno.ENAMETOOLONG),
    "create name without NUL": (patched(create_upcall(b"x"), CREATE_NAME, LONG), errno.ENAMETOOLONG),
    "symlink name without NUL": (patched(symlink_upcall(b"x", b"t"), SYMLINK_NAME, LONG), errno.ENAMETOOLONG),
    "symlink target without NUL": (patched(symlink_upcall(b"x", b"t"), SYMLINK_TARGET, LONG), errno.ENAMETOOLONG),
    "remove name without NUL": (patched(remove_upcall(b"x"), REMOVE_NAME, LONG), errno.ENAMETOOLONG),
    "rename new name without NUL": (patched(rename_upcall(b"a", b"b"), RENAME_NEW, LONG), errno.ENAMETOOLONG),
    # An fs_id that is not ours (EINVAL).
    "getattr of another fs": (getattr_upcall(ROOT, AttrMask.ALL_NOHINT, OTHER_FS), errno.EINVAL),
    "lookup in another fs": (lookup_upcall(b"x", ROOT, OTHER_FS), errno.EINVAL),
    "create in another fs": (create_upcall(b"x", ROOT, fs_id=OTHER_FS), errno.EINVAL),
    "statfs of another fs": (statfs_upcall(OTHER_FS), errno.EINVAL),
    "umount of another fs": (umount_upcall(OTHER_FS), errno.EINVAL),
    "file_io in another fs": (file_io_upcall(ROOT, IoType.READ, 10, fs_id=OTHER_FS), errno.EINVAL),
    # FILE_IO outside the I/O buffer or past the limits (EINVAL).
    "file_io buf_index = slot count": (file_io_upcall(ROOT, IoType.READ, 10, buf_index=SLOTS), errno.EINVAL),
    "file_io buf_index far out": (file_io_upcall(ROOT, IoType.WRITE, 10, buf_index=1 << 30), errno.EINVAL),
    "file_io buf_index negative": (file_io_upcall(ROOT, IoType.READ, 10, buf_index=-1), errno.EINVAL),
    "file_io count over the slot": (file_io_upcall(ROOT, IoType.WRITE, SLOT + 1), errno.EINVAL),
    "file_io count negative": (file_io_upcall(ROOT, IoType.READ, -5), errno.EINVAL),
    "file_io offset negative": (file_io_upcall(ROOT, IoType.READ, 10, -1), errno.EINVAL),
    "file_io io_type 3": (file_io_upcall(ROOT, 3, 10), errno.EINVAL),
    # READDIR with a readdir slot outside 0..4 (EINVAL).
    "readdir buf_index 5": (readdir_upcall(ROOT, buf_index=5), errno.EINVAL),
    "readdir buf_index -1": (readdir_upcall(ROOT, buf_index=-1), errno.EINVAL),
    # SETXATTR whose val_sz is larger than the value field, or negative (EINVAL).
    "setxattr val_sz 8193": (setxattr_upcall(ROOT, b"user.k", b"v", val_sz=8193), errno.EINVAL),
    "setxattr val_sz negative": (setxattr_upcall(ROOT, b"user.k", b"v", val_sz=-1), errno.EINVAL),
    # Other garbage fields and types.
    "param type neither set nor get": (upcall(OpCode.PARAM, "param", type=7, op=2), errno.EINVAL),
    "param op unknown": (upcall(OpCode.PARAM, "param", type=2, op=1000), errno.EINVAL),
    "perf_count type unknown": (upcall(OpCode.PERF_COUNT, "perf_count", type=42), errno.EINVAL),
    "unknown op type": (raw_upcall(0xFF000099, b"\xff" * 200), errno.EINVAL),
    "invalid op type": (raw_upcall(OpCode.INVALID), errno.EINVAL),
    "readdirplus": (raw_upcall(OpCode.READDIRPLUS), errno.ENOSYS),
    "fskey": (raw_upcall(OpCode.FSKEY), errno.ENOSYS),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_malformed_upcall_gets_an_encoded_error_and_the_daemon_goes_on(nursery, tmp_path, caplog, case):
    """A malformed upcall is answered with its errno OrangeFS-encoded and logged; a GETATTR after it still works
    (issue 4, Bad input; spec §2.7)."""
    up, err = BAD[case]
    with trio.fail_after(TIMEOUT):
        core = await _start(nursery, tmp_path)
        with caplog.at_level(logging.WARNING, logger="clientcore"):
            await core.refused(up, err)
        await core.still_serves()
    if err != errno.ENOSYS:
        assert any(r.name.startswith("clientcore") and r.levelno >= logging.WARNING for r in caplog.records), (
            "the refusal was not logged"
        )


async def test_the_daemon_survives_a_stream_of_garbage_upcalls(nursery, tmp_path):
    """Upcalls of every type with random union bytes (half of them naming our fs_id) all get a reply with the
    type echoed and a valid status, and the daemon keeps serving (issue 4, Bad input)."""
    rng = random.Random(20261121)
    types = [int(op) for op in OpCode if op not in (OpCode.CANCEL,)]
    fs_id_at = proto.upcall.FS_ID_OFFSETS
    with trio.fail_after(30):
        core = await _start(nursery, tmp_path)
        for i in range(300):
            op_type = types[i % len(types)]
            union = rng.randbytes(UPCALL_SIZE - 40)
            up = bytearray(raw_upcall(op_type, union))
            if i % 2 and op_type in fs_id_at:
                struct.pack_into("<i", up, fs_id_at[op_type], FS_ID)
            downcall, written = await core.ask(bytes(up))
            if downcall.status != 0:
                err = proto.status_to_errno(downcall.status)
                assert downcall.status == status_of(err), f"{proto.opname(op_type)}: status {downcall.status:#x}"
                assert len(written) == MAX_DEV_REQ_DOWNSIZE
            elif op_type != OpCode.READDIR:
                assert len(written) == MAX_DEV_REQ_DOWNSIZE and downcall.trailer_size == 0
        await core.still_serves()


async def test_bad_names_through_the_broker(nursery, tmp_path):
    """Through the real broker: a name with '/' gets EINVAL and a 256-byte name without NUL ENAMETOOLONG, and
    the daemon goes on serving (issue 4, Bad input; spec §2.3)."""
    with trio.fail_after(TIMEOUT):
        await start_stack(nursery, tmp_path)
        async with VfsClient.connect(vfs_path(tmp_path)) as vfs:
            assert_error(await call(vfs, lookup_upcall(b"a/b")), OpCode.LOOKUP, errno.EINVAL)
            assert_error(await call(vfs, create_upcall(b"/abs")), OpCode.CREATE, errno.EINVAL)
            long_lookup = patched(lookup_upcall(b"x"), LOOKUP_NAME, LONG)
            assert_error(await call(vfs, long_lookup), OpCode.LOOKUP, errno.ENAMETOOLONG)
            long_create = patched(create_upcall(b"x"), CREATE_NAME, LONG)
            assert_error(await call(vfs, long_create), OpCode.CREATE, errno.ENAMETOOLONG)
            # 255 bytes is the longest name that fits with its NUL: accepted.
            assert_ok(await call(vfs, create_upcall(b"m" * 255)), OpCode.CREATE)
            assert_ok(await call(vfs, lookup_upcall(b"m" * 255)), OpCode.LOOKUP)
            # A foreign fs_id on GETATTR passes the broker's read filter and reaches the daemon.
            answer = await call(vfs, getattr_upcall(ROOT, AttrMask.ALL_NOHINT, OTHER_FS))
            assert_error(answer, OpCode.GETATTR, errno.EINVAL)
            assert_ok(await call(vfs, getattr_upcall()), OpCode.GETATTR)
