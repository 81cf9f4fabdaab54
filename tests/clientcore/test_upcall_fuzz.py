"""Generated upcalls against the client-core on its embedded store (issue 7, Fuzzing; issue 4, Bad input).

The fake device (:mod:`tests.clientcore.fake_device`) plays the kernel and
feeds the daemon upcalls no broker would send.  Each upcall is one of

* **plausible**: a real op (LOOKUP, CREATE, MKDIR, SYMLINK, REMOVE, RENAME,
  GETATTR, SETATTR, TRUNCATE, FILE_IO, FSYNC, READDIR, the xattr ops,
  STATFS) on handles the daemon handed out earlier, the root, or made-up
  ones, with names and numbers near the edges;
* **structured**: any op type with random union bytes, naming our fs half
  the time;
* **mutated**: a plausible upcall after a few edits (splatted words, flipped
  bytes) in its fields.

Every upcall must get exactly one downcall that passes the kernel's write
checks (spec §1.4: version, magic and tag echoed, the type echoed, a
success or an errno encoded per §2.7, no resp bytes after an error, the
READDIR trailer whole); the daemon must stay up, still serve and log no
"internal error" (a bug it caught and answered EIO); and when it stops, the
store must pass its structural check (no dangling entry, counts right, no
orphaned data object).

Two drivers share the generator: a hypothesis test on an in-process daemon
(shrinks to the shortest failing sequence), and a soak of the real
``clientcore`` process, stopped with SIGTERM at the end.  Budgets follow
tests/fuzzing.py (``--long``).  A failure either finds becomes a plain test
at the bottom of this file.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Protocol, Sequence

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import pvfs2proto as proto
from clientcore.daemon import Daemon
from clientcore.store import ROOT as ROOT_CREDS
from clientcore.store.embedded import EmbeddedStore
from pvfs2proto import AttrMask, IoType, OpCode, ProtocolError
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_ITERATE_START,
    PVFS2DEV_USERSPACE_VERSION,
    UPCALL_SIZE,
)
from pvfs2proto.structs import time_from_wire
from pvfs2proto.upcall import FS_ID_OFFSETS

from ..fuzzing import budget, fuzz_settings
from . import daemon_stack as up
from .fake_device import FakeDevice, read_frame
from .storehelp import check_invariants

pytestmark = pytest.mark.fuzz

SLOTS = 4
SLOT = 64 * 1024
REPLY_TIMEOUT = 20.0
#: Op types a structured upcall may carry: every one but CANCEL, whose answer follows its target's.
STRUCTURED_TYPES = [int(op) for op in OpCode if op != OpCode.CANCEL] + [0, 0xFF000099]
NAMES = [b"a", b"b", b"c", b"dir", b"f", b"n" * 255, b".", b"..", b"", b"a/b", b"\xff\xfe", b" "]
XATTR_KEYS = [b"user.a", b"user.b", b"trusted.t", b"security.s", b"system.posix_acl_access", b"user." + b"k" * 250,
              b"", b"nonamespace"]
EDGE_SIZES = [0, 1, 4095, 4096, 65535, 65536, 65537, 1 << 20, (1 << 31) - 1, 1 << 40, (1 << 63) - 1]
KNOWN = frozenset(int(op) for op in OpCode)
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


# -- one generator, two sources of choices ---------------------------------------------------------------------


class Choose(Protocol):
    def integer(self, low: int, high: int) -> int: ...
    def pick(self, items: Sequence): ...
    def blob(self, size: int) -> bytes: ...


@dataclasses.dataclass
class DrawChoose:
    """Choices drawn by hypothesis (shrinkable)."""

    data: st.DataObject

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def pick(self, items: Sequence):
        return self.data.draw(st.sampled_from(items))

    def blob(self, size: int) -> bytes:
        return self.data.draw(st.binary(min_size=size, max_size=size))


@dataclasses.dataclass
class RandomChoose:
    """Choices from a seeded random.Random (the soak)."""

    rng: random.Random

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, items: Sequence):
        return items[self.rng.randrange(len(items))]

    def blob(self, size: int) -> bytes:
        return self.rng.randbytes(size)


@dataclasses.dataclass
class Namespace:
    """What the generator has learned: the fs, its root and every handle the daemon handed out."""

    fs_id: int
    root: bytes
    handles: list[bytes] = dataclasses.field(default_factory=list)

    def handle(self, c: Choose) -> bytes:
        shape = c.integer(0, 9)
        if shape == 0:
            return c.blob(16)
        if shape == 1:
            return bytes(16)
        return c.pick([self.root, *self.handles[-32:]])


def plausible(c: Choose, ns: Namespace) -> bytes:
    """A real op on the namespace, its numbers and names near the edges."""
    fs, h = ns.fs_id, ns.handle
    name = c.pick(NAMES[:5]) if c.integer(0, 3) else c.pick(NAMES)
    op = c.pick(["lookup", "create", "create", "mkdir", "symlink", "remove", "rename", "getattr", "setattr",
                 "truncate", "write", "write", "read", "fsync", "readdir", "getxattr", "setxattr", "listxattr",
                 "removexattr", "statfs"])
    if op == "lookup":
        return up.lookup_upcall(name, h(c), fs)
    if op == "create":
        return up.create_upcall(name, h(c), c.pick([0o644, 0o600, 0o7777, 0]), fs)
    if op == "mkdir":
        return up.mkdir_upcall(name, h(c), c.pick([0o755, 0o700, 0o1777, 0]), fs)
    if op == "symlink":
        return up.symlink_upcall(name, c.pick([b"a", b"/etc/passwd", b"", b"t" * 255]), h(c), fs)
    if op == "remove":
        return up.remove_upcall(name, h(c), fs)
    if op == "rename":
        return up.upcall(OpCode.RENAME, "rename", old_parent_refn=up.kref(h(c), fs),
                         new_parent_refn=up.kref(h(c), fs), d_old_name=name, d_new_name=c.pick(NAMES))
    if op == "getattr":
        return up.getattr_upcall(h(c), c.pick([AttrMask.ALL_NOHINT, 0, 0xFFFFFFFF]), fs)
    if op == "setattr":
        attrs = {"owner": c.pick([0, 1000, 0xFFFFFFFF]), "group": c.pick([0, 1000]),
                 "perms": c.pick([0o644, 0o7777, 0xFFFFFFFF]), "atime": c.pick([0, 1, 2**63]),
                 "mtime": c.pick([0, 1_700_000_000]), "size": c.pick(EDGE_SIZES),
                 "mask": c.pick([AttrMask.ALL_SETABLE, 0, 0xFFFFFFFF, 1, 2, 4, 8, 16, 32])}
        return up.setattr_upcall(h(c), attrs, fs)
    if op == "truncate":
        return up.upcall(OpCode.TRUNCATE, "truncate", refn=up.kref(h(c), fs), size=c.pick(EDGE_SIZES))
    if op in ("write", "read"):
        io_type = IoType.WRITE if op == "write" else IoType.READ
        count = c.pick([0, 1, 4096, SLOT - 1, SLOT]) if c.integer(0, 3) else c.integer(0, SLOT)
        offset = c.pick(EDGE_SIZES) if c.integer(0, 2) == 0 else c.integer(0, 4 * SLOT)
        return up.file_io_upcall(h(c), io_type, count, offset, buf_index=c.integer(0, SLOTS - 1), fs_id=fs)
    if op == "fsync":
        return up.upcall(OpCode.FSYNC, "fsync", refn=up.kref(h(c), fs))
    if op == "readdir":
        return up.upcall(OpCode.READDIR, "readdir", refn=up.kref(h(c), fs),
                         token=c.pick([ORANGEFS_ITERATE_START, 0, 1, 3, 2**40, 2**64 - 1]),
                         max_dirent_count=c.pick([512, 1, 0, 100]), buf_index=c.integer(0, 4))
    key = c.pick(XATTR_KEYS)
    if op == "getxattr":
        return up.upcall(OpCode.GETXATTR, "getxattr", refn=up.kref(h(c), fs), key_sz=len(key) + 1, key=key)
    if op == "setxattr":
        value = c.pick([b"", b"v", b"x" * 8192])
        keyval = {"key": key, "key_sz": len(key) + 1, "val_sz": len(value), "val": value}
        return up.upcall(OpCode.SETXATTR, "setxattr", refn=up.kref(h(c), fs), keyval=keyval,
                         flags=c.pick([0, 1, 2, 3]))
    if op == "listxattr":
        return up.upcall(OpCode.LISTXATTR, "listxattr", refn=up.kref(h(c), fs), requested_count=c.pick([16, 1, 0]),
                         token=c.pick([ORANGEFS_ITERATE_START, 1, 2**63]))
    if op == "removexattr":
        return up.upcall(OpCode.REMOVEXATTR, "removexattr", refn=up.kref(h(c), fs), key_sz=len(key) + 1, key=key)
    return up.statfs_upcall(fs)


def structured(c: Choose, ns: Namespace) -> bytes:
    """Any op type, random union bytes, our fs_id where the type has one half the time."""
    op_type = c.pick(STRUCTURED_TYPES)
    body = bytearray(up.raw_upcall(op_type, c.blob(c.pick([0, 64, 600, UPCALL_SIZE - 40]))))
    if op_type in FS_ID_OFFSETS and c.integer(0, 1):
        struct.pack_into("<i", body, FS_ID_OFFSETS[op_type], ns.fs_id)
    return bytes(body)


def mutated(c: Choose, ns: Namespace) -> bytes:
    """A plausible upcall after one to four edits in its first 700 bytes (where every field but names lives)."""
    body = bytearray(plausible(c, ns))
    (op_type,) = struct.unpack_from("<I", body, 0)
    for _ in range(c.integer(1, 4)):
        at = c.integer(8, 700)
        kind = c.integer(0, 2)
        if kind == 0:
            body[at] ^= c.integer(1, 255)
        elif kind == 1:
            struct.pack_into("<I", body, at & ~3, c.pick(INTERESTING))
        else:
            struct.pack_into("<q", body, at & ~7, c.pick([-1, 0, 2**62, -(2**63), 2**63 - 1]))
    struct.pack_into("<I", body, 0, op_type)  # the type stays: an unknown type is the structured case's job
    return bytes(body)


def next_upcall(c: Choose, ns: Namespace) -> bytes:
    shape = c.integer(0, 9)
    if shape < 6:
        return plausible(c, ns)
    if shape < 8:
        return mutated(c, ns)
    return structured(c, ns)


# -- checking what the daemon wrote ------------------------------------------------------------------------------


def check_downcall(tag: int, upcall: bytes, written: bytes, ns: Namespace) -> None:
    """The write passes the kernel's checks for its op (spec §1.4, §2.7); handles it hands out join ``ns``."""
    (op_type,) = struct.unpack_from("<I", upcall, 0)
    what = f"{proto.opname(op_type)} (tag {tag})"
    head = proto.decode_write_head(written)
    assert (head.version, head.magic, head.tag) == (PVFS2DEV_USERSPACE_VERSION, ORANGEFS_DEVREQ_MAGIC, tag), what
    known = op_type in KNOWN
    try:
        body = proto.decode_write_body(written, op_type if known else None)
    except ProtocolError as exc:
        raise AssertionError(f"{what}: the kernel would refuse this write: {exc}") from None
    downcall = body.downcall
    assert downcall.type == op_type, f"{what}: type {downcall.type:#x} not echoed"
    assert written[32:40] == bytes(8), f"{what}: trailer_buf must be 0"
    if downcall.status != 0:
        err = proto.status_to_errno(downcall.status)
        assert downcall.status == up.status_of(err), f"{what}: status {downcall.status:#x} is not an encoded errno"
        assert len(written) == MAX_DEV_REQ_DOWNSIZE and downcall.trailer_size == 0, what
        assert written[40:] == bytes(MAX_DEV_REQ_DOWNSIZE - 40), f"{what}: an error reply carries resp bytes"
        return
    if op_type == OpCode.READDIR:
        proto.decode_readdir_trailer(body.trailer)
    else:
        assert len(written) == MAX_DEV_REQ_DOWNSIZE and downcall.trailer_size == 0, what
    member = {OpCode.CREATE: "create", OpCode.MKDIR: "mkdir", OpCode.SYMLINK: "sym", OpCode.LOOKUP: "lookup"}
    if op_type in member:
        ref = getattr(downcall.resp, member[op_type]).refn
        assert ref.fs_id == ns.fs_id, f"{what}: fs_id {ref.fs_id}"
        if ref.khandle not in ns.handles and ref.khandle != ns.root:
            ns.handles.append(ref.khandle)


class Feeder:
    """Upcalls in, checked downcalls out, through the fake device; tags count up from 1000."""

    def __init__(self, fake: FakeDevice, ns: Namespace) -> None:
        self.fake, self.ns, self.tag = fake, ns, 1000
        self.sent = 0

    async def ask(self, upcall: bytes) -> bytes:
        self.tag += 1
        self.sent += 1
        self.fake.queue(read_frame(self.tag, upcall))
        try:
            written = await self.fake.downcall(self.tag, timeout=REPLY_TIMEOUT)
        except trio.TooSlowError:
            (op_type,) = struct.unpack_from("<I", upcall, 0)
            raise AssertionError(f"no downcall in {REPLY_TIMEOUT:.0f} s for upcall {self.sent}, {proto.opname(op_type)}: "
                                 f"{proto.decode_upcall(upcall) if op_type in KNOWN else upcall[:64].hex()}") from None
        check_downcall(self.tag, upcall, written, self.ns)
        return written

    async def still_serves(self) -> None:
        written = await self.ask(up.getattr_upcall(self.ns.root, AttrMask.ALL_NOHINT, self.ns.fs_id))
        downcall = proto.decode_write_body(written, OpCode.GETATTR).downcall
        assert downcall.status == 0, proto.errno_name(proto.status_to_errno(downcall.status))


# -- driver 1: hypothesis on an in-process daemon --------------------------------------------------------------


class InternalErrors(logging.Handler):
    """Collects the daemon's "internal error" records: bugs it survived by answering EIO."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("internal error"):
            self.seen.append(self.format(record))


async def in_process_round(tmp: Path, data: st.DataObject, steps: int) -> None:
    store = EmbeddedStore.open(tmp / "store")
    errors = InternalErrors()
    logging.getLogger("clientcore").addHandler(errors)
    try:
        ns = Namespace(store.fs_id, store.root)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                fake = await nursery.start(FakeDevice(tmp).serve)
                daemon = Daemon(store, tmp, desc_count=SLOTS, desc_size=SLOT)
                await nursery.start(daemon.run)
                feeder = Feeder(fake, ns)
                choose = DrawChoose(data)
                for _ in range(steps):
                    await feeder.ask(next_upcall(choose, ns))
                await feeder.still_serves()
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("clientcore").removeHandler(errors)
        store.close()
    assert not errors.seen, "the daemon caught a bug of its own:\n" + errors.seen[0]
    reopened = EmbeddedStore.open(tmp / "store")
    try:
        check_invariants(reopened)
    finally:
        reopened.close()


@fuzz_settings(60, 1500)
@given(data=st.data())
def test_generated_upcalls_get_valid_downcalls_and_leave_the_store_whole(tmp_path_factory, data):
    """Issue 7 Fuzzing, spec §1.4 and §2.7: every generated upcall gets one downcall the kernel accepts, the
    daemon still serves, and the store passes its structural check afterwards."""
    steps = data.draw(st.integers(1, 60), label="steps")
    trio.run(in_process_round, tmp_path_factory.mktemp("upfuzz"), data, steps)


# -- driver 2: a soak of the real clientcore process -----------------------------------------------------------


async def soak(tmp: Path, seed: int, count: int) -> int:
    """``count`` generated upcalls into a real ``clientcore``; returns its exit status after SIGTERM."""
    store_dir = tmp / "store"
    probe = EmbeddedStore.open(store_dir)  # made here to learn the fs_id and root the process will serve
    ns = Namespace(probe.fs_id, probe.root)
    probe.close()
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(FakeDevice(tmp).serve)
        with (tmp / "clientcore.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clientcore.daemon", "--rundir", str(tmp), "--store", str(store_dir),
                 "--desc-count", str(SLOTS), "--desc-size", str(SLOT), "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            feeder = Feeder(fake, ns)
            choose = RandomChoose(random.Random(seed))
            for i in range(count):
                await feeder.ask(next_upcall(choose, ns))
                if i % 500 == 0:
                    assert proc.poll() is None, f"clientcore died after upcall {i}: {_tail(tmp)}"
            await feeder.still_serves()
            assert proc.poll() is None, f"clientcore died: {_tail(tmp)}"
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                while proc.poll() is None:
                    await trio.sleep(0.02)
            return proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            nursery.cancel_scope.cancel()


def _tail(tmp: Path, size: int = 3000) -> str:
    return (tmp / "clientcore.err").read_text(errors="replace")[-size:]


def test_the_clientcore_process_survives_a_soak_of_generated_upcalls(tmp_path):
    """Issue 7 Fuzzing: the real ``clientcore`` answers every one of a seeded stream of generated upcalls
    (3,000 in CI, 100,000 under --long) with a valid downcall, stays up, exits 0 on SIGTERM, and leaves its
    store whole."""
    count = budget(3_000, 100_000)
    seed = 20261121 if count == 3_000 else random.SystemRandom().randrange(2**32)
    status = trio.run(soak, tmp_path, seed, count)
    assert status == 0, f"clientcore exited {status} (seed {seed}): {_tail(tmp_path)}"
    assert "internal error" not in _tail(tmp_path, 10**7), f"the daemon caught a bug of its own (seed {seed})"
    store = EmbeddedStore.open(tmp_path / "store")
    try:
        check_invariants(store)
    finally:
        store.close()


# -- regressions: what the fuzzers found, as plain tests ------------------------------------------------------


async def _embedded_core(nursery, tmp: Path, store=None) -> tuple[Feeder, EmbeddedStore]:
    store = store or EmbeddedStore.open(tmp / "store")
    fake = await nursery.start(FakeDevice(tmp).serve)
    await nursery.start(Daemon(store, tmp, desc_count=SLOTS, desc_size=SLOT).run)
    return Feeder(fake, Namespace(store.fs_id, store.root)), store


def _status(written: bytes, op_type: int) -> int:
    return proto.decode_write_body(written, op_type).downcall.status


async def test_setattr_times_are_time64_before_1970_and_round_trip(nursery, tmp_path):
    """Spec §3.1 (sys_attr atime/mtime/ctime, u64): the kernel carries a time64_t in them, so 2**63 and up
    are times before 1970.  Found by the soak: SETATTR of atime 2**63 crashed the client-core process with
    OverflowError from SQLite; now it is stored as -2**63 and a GETATTR gives the same 64 bits back."""
    feeder, store = await _embedded_core(nursery, tmp_path)
    try:
        for wire in (2**63, 2**64 - 1, (-86400 * 365) & (2**64 - 1), 1_700_000_000):
            attrs = {"atime": wire, "mtime": wire,
                     "mask": AttrMask.ATIME | AttrMask.ATIME_SET | AttrMask.MTIME | AttrMask.MTIME_SET}
            assert _status(await feeder.ask(up.setattr_upcall(store.root, attrs, store.fs_id)), OpCode.SETATTR) == 0
            written = await feeder.ask(up.getattr_upcall(store.root, AttrMask.ALL_NOHINT, store.fs_id))
            got = proto.decode_write_body(written, OpCode.GETATTR).downcall.resp.getattr.attributes
            assert (got.atime, got.mtime) == (wire, wire)
            assert store.getattr(ROOT_CREDS, store.root).atime == time_from_wire(wire)
    finally:
        nursery.cancel_scope.cancel()
        store.close()


async def test_a_bug_in_a_handler_is_answered_eio_logged_and_survived(nursery, tmp_path, caplog):
    """Daemons never die on input: an exception that is not a refusal (a bug of ours) answers the op EIO,
    logs "internal error" with the traceback, and the next op is served."""

    class Broken(EmbeddedStore):
        def statfs(self):
            raise RuntimeError("planted")

    feeder, store = await _embedded_core(nursery, tmp_path, Broken.open(tmp_path / "store"))
    try:
        with caplog.at_level(logging.ERROR, logger="clientcore"):
            written = await feeder.ask(up.statfs_upcall(store.fs_id))
        assert _status(written, OpCode.STATFS) == up.status_of(errno.EIO)
        assert any(r.getMessage().startswith("internal error") and r.exc_info for r in caplog.records)
        await feeder.still_serves()
    finally:
        nursery.cancel_scope.cancel()
        store.close()
