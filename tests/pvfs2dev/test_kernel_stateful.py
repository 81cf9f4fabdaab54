"""A stateful fuzz of the kernel core: callers, a client-core and a clock in random order (issue 7; STYLE.md §7).

:class:`KernelMachine` is a Hypothesis ``RuleBasedStateMachine`` driving one
:class:`pvfs2dev.kernel.Kernel` through the test harness's :class:`World`,
without I/O and without trio: the core is synchronous and reports wake-ups
through ``Op.wake`` and ``SlotWaiter.wake``, so each simulated caller is
plain state here (:class:`Caller`), woken by those hooks and resumed later by
a rule, as a woken task runs some time after its wake-up.  What a caller
does after each wait mirrors ``pvfs2dev/vfs.py`` (file.c, dir.c): FILE_IO and
READDIR hold a slot, retake one after a purge and put it back; a FILE_IO that
fails after the client-core read it becomes a CANCEL, which keeps the slot.

Rules (each cites its spec section in its docstring):

* callers submit metadata ops (GETATTR and others on mounted, unknown or no
  filesystems, FS_MOUNT, FS_UMOUNT), FILE_IO and READDIR, with mixes of the
  INTERRUPTIBLE, PRIORITY and WRITEBACK flags; woken callers resume;
  callers get ordinary and fatal signals (any waiter, or one whose op is in
  progress), optionally running at once;
* the client-core opens the device (with and without O_NONBLOCK), reads
  (good and bad sizes), writes good downcalls (status 0 or an error, short
  FILE_IO transfers), bad ones (short, bad magic, old or changed version,
  wrong length, misplaced trailer, amt_complete out of range) and stray
  ones (tags not in progress), MAPs buffers (good and bad geometries, twice),
  issues REMOUNT_ALL (PRIORITY|NO_MUTEX FS_MOUNT and FEATURES), serves like
  a healthy client-core, crashes (release), goes down with its callers
  (shutdown), restarts (open, MAP, remount) and crash-loops (up to six
  purges, so EIO);
* the clock jumps past op and slot timeouts and ``expire`` runs.

The kernel's knobs (op and slot timeouts, hash table size, readdir and I/O
slot counts) are drawn per example.

Invariants, after every step: a tag lives in one place at most and is never
reused (§4.1, §4.4); an op completes at most once, with a result its wait
outcome allows, and is unlinked once complete (§4.5, §4.6); each slot map's
counter matches its bitmap and every busy slot has exactly one holder, a
live caller or CANCEL (§5.2, §4.10); without a daemon nothing is in
progress or purged and every queued op has a deadline, and a release can
only be waiting for a caller that still holds a slot (§1.6, §4.11); the
request mutex is held exactly while a REMOUNT_ALL runs (§4.5, §4.12); poll
matches the request list (§1.5); no deadline is overdue (§4.11, §5.2).  The
teardown winds everything down — fatal signals and a healthy client-core,
then a crash and time — and checks that every caller and every REMOUNT_ALL
finished, nothing is in flight and both slot maps are whole.

Settings (tests/fuzzing.py): in CI 200 derandomized examples of up to 100
steps each, about 8 s on the 2-core machine; ``--long`` searches deeper —
2000 examples of up to 200 steps from a fresh seed, about 2½ minutes::

    .venv/bin/pytest tests/pvfs2dev/test_kernel_stateful.py --long

Every shrunk failure becomes a plain test in ``test_kernel_regressions.py``.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct

import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pvfs2proto as proto
from pvfs2proto import IoType, OpState
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    MAX_DEV_REQ_UPSIZE,
    ORANGEFS_DEVREQ_MAGIC,
    ORANGEFS_KERNEL_PROTO_VERSION,
    ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS,
    ORANGEFS_PURGE_RETRY_COUNT,
)

from pvfs2dev.bufmap import SlotMap, SlotWaiter
from pvfs2dev.op import WAIT_INTERRUPTED, WAIT_PURGED, WAIT_SERVICED, WAIT_TIMED_OUT, Op

from ..fuzzing import budget, fuzz_settings
from .harness import NONBLOCK, DeviceError, OpCode, OpFlags, World

MOUNTED = (7, 8)
UNKNOWN_FS = 99
MAX_ACTIVE_CALLERS = 8
INTR, PRIO, WB = int(OpFlags.INTERRUPTIBLE), int(OpFlags.PRIORITY), int(OpFlags.WRITEBACK)
FLAGS = st.sampled_from([INTR, 0, INTR, PRIO, INTR | PRIO, WB, WB | INTR])
#: (op type, fs_id or None) a metadata caller may send.  GETATTR of an
#: unknown fs passes the read filter; LOOKUP of one is skipped forever (§1.3).
META_OPS = [
    (OpCode.GETATTR, 7),
    (OpCode.GETATTR, 8),
    (OpCode.GETATTR, UNKNOWN_FS),
    (OpCode.PARAM, None),
    (OpCode.STATFS, 7),
    (OpCode.SETATTR, 8),
    (OpCode.FS_UMOUNT, 7),
    (OpCode.FS_MOUNT, None),
    (OpCode.LOOKUP, UNKNOWN_FS),
]
#: Errors a client-core may answer with; each survives the status encoding (§2.7).
REPLY_ERRORS = [errno.ENOENT, errno.EIO, errno.EACCES, errno.EINTR, errno.EAGAIN]
IO_COUNT_AT = 48  # req.io.count in the upcall (§3.6)
INDEX = st.integers(0, 2**16)
READDIR_TRAILER = proto.encode_readdir_trailer([(b"a", bytes(16))])


@dataclasses.dataclass(eq=False)
class Caller:
    """One task blocked in the kernel on behalf of a filesystem call (spec §4.5, §5.3, §5.4).

    ``state``: "slot_wait" (in ``wait_for_free``), "op_wait" (in
    service_operation), "runnable" (woken, not yet resumed) or "done".
    """

    ident: int
    kind: str  # "meta", "io" or "readdir"
    op: Op
    slots: SlotMap | None
    state: str = "new"
    #: The slot index this caller holds (not one handed to a CANCEL).
    slot: int | None = None
    waiter: SlotWaiter | None = None
    #: What woke it: "op" or "slot".
    woken_by: str | None = None
    #: The op result seen at the wake-up (it must not change afterwards).
    result: int | None = None
    #: Whether its interrupted FILE_IO was turned into a CANCEL (which took the slot).
    cancel: bool = False
    #: A signal ended its wait for the request mutex (the op never queued).
    mutex_interrupted: bool = False

    @property
    def active(self) -> bool:
        return self.state != "done"


class KernelMachine(RuleBasedStateMachine):
    """Random callers, client-core and clock around one kernel core; see the module docstring."""

    @initialize(
        op_timeout=st.sampled_from([20, 20, 5, 0]),
        slot_timeout=st.sampled_from([900, 45, 10]),
        hash_table_size=st.sampled_from([509, 1, 3]),
        readdir_slots=st.integers(1, 5),
        io_slots=st.sampled_from([4, 2, 1, 0]),
    )
    def setup(self, op_timeout, slot_timeout, hash_table_size, readdir_slots, io_slots):
        """A kernel with two filesystems mounted and, unless ``io_slots`` is 0, a client-core with a buffer."""
        self.w = World(
            op_timeout_secs=op_timeout,
            slot_timeout_secs=slot_timeout,
            hash_table_size=hash_table_size,
            readdir_slots=readdir_slots,
        )
        self.k = self.w.k
        for i, fs_id in enumerate(MOUNTED):
            self.w.mount(fs_id, i + 1)
        self.callers: list[Caller] = []
        #: Every op ever seen, by tag: a second object with the same tag is a bug.
        self.ops_by_tag: dict[int, Op] = {}
        #: Results REMOUNT_ALL reported, one list per ioctl.
        self.remounts: list[list[int]] = []
        if io_slots:
            self.w.start_client(count=io_slots, size=4096)

    # ============================================================ helpers

    @property
    def now(self) -> float:
        return self.w.now

    def _active(self, *states: str) -> list[Caller]:
        return [c for c in self.callers if c.state in states]

    @staticmethod
    def _pick(items: list, index: int):
        return items[index % len(items)]

    def _new_caller(self, kind: str, op: Op, slots: SlotMap | None) -> Caller:
        caller = Caller(len(self.callers), kind, op, slots)
        op.owner = caller
        self.callers.append(caller)
        self._register(op)
        return caller

    def _register(self, op: Op) -> None:
        # Spec §4.4: tags are unique; a tag is never handed to two ops.
        seen = self.ops_by_tag.setdefault(op.tag, op)
        assert seen is op, f"tag {op.tag} is used by {seen!r} and {op!r}"

    def _take_slot(self, caller: Caller) -> None:
        """``orangefs_bufmap_get``, then service_operation once a slot is held (spec §5.2–§5.4)."""
        got = caller.slots.get(self.now)
        if isinstance(got, int):
            caller.slot = got
            self._service(caller)
            return
        caller.waiter = got
        caller.state = "slot_wait"
        got.wake = lambda: self._slot_woken(caller)

    def _slot_woken(self, caller: Caller) -> None:
        assert caller.state == "slot_wait", f"caller {caller.ident} woken from a slot wait twice"
        result = caller.waiter.result
        assert result is not None
        # Spec §5.2: a slot, or ETIMEDOUT / EINTR.
        assert result >= 0 or result in (-errno.ETIMEDOUT, -errno.EINTR), result
        if result >= 0:
            caller.slot = result
        caller.state, caller.woken_by = "runnable", "slot"

    def _service(self, caller: Caller) -> None:
        op = caller.op
        if caller.slot is not None:
            self.k.set_slot(op, caller.slot)
        caller.state, caller.result, caller.woken_by, caller.mutex_interrupted = "op_wait", None, None, False
        op.wake = lambda: self._op_woken(caller)
        daemon = self.k.daemon_in_service
        self.k.service(op, self.now)
        if op.linked == "request":
            # Spec §4.4: PRIORITY ops at the head of the request list, the rest at the tail.
            queued = list(self.k.requests)
            assert (queued[0] if op.flags & PRIO else queued[-1]) is op
            # Spec §4.5 step 4: an infinite wait with a daemon, op_timeout_secs without (a fresh call, also a retry).
            if daemon:
                assert op.deadline is None, (op, op.deadline)
            else:
                assert op.deadline == self.now + self.k.params["op_timeout_secs"], (op, op.deadline)

    def _op_woken(self, caller: Caller) -> None:
        """The op's submitter is woken with its result (spec §4.5 steps 7–10, §4.6)."""
        op = caller.op
        # Spec §4.5: service_operation returns once; a second wake-up is a double completion.
        assert caller.state == "op_wait", f"{op!r} completed twice (caller was {caller.state})"
        assert op.result is not None, f"{op!r} woken without a result"
        outcome = op.wait_outcome
        if caller.mutex_interrupted:
            # Spec §4.5 step 3: "the op was never queued" — no wait, so
            # wait_outcome may still be a retried round's.
            assert op.result == -errno.EINTR
        elif outcome == WAIT_SERVICED:
            assert op.serviced
            (status,) = struct.unpack_from("<i", op.downcall, 4)
            assert op.result == -proto.status_to_errno(status)
        elif outcome == WAIT_INTERRUPTED:
            assert op.result == -errno.EINTR
        elif outcome == WAIT_TIMED_OUT:
            assert op.result == -errno.ETIMEDOUT
        else:
            assert outcome == WAIT_PURGED
            # Spec §4.6, §4.11: EAGAIN under five purges (only slot ops see it,
            # the others go round again inside service_operation), EIO after.
            if op.result == -errno.EAGAIN:
                assert caller.kind != "meta", f"{op!r}: a non-slot op returned EAGAIN from a purge"
                assert 1 <= op.attempts <= ORANGEFS_PURGE_RETRY_COUNT
            else:
                assert op.result == -errno.EIO and op.attempts == ORANGEFS_PURGE_RETRY_COUNT, (op, op.result)
        assert op.linked is None and op.deadline is None
        caller.state, caller.woken_by, caller.result = "runnable", "op", op.result

    def _signal(self, caller: Caller, *, fatal: bool) -> bool:
        """Deliver a signal to a waiting caller (spec §4.9, §5.2); whether its wait ended."""
        if caller.state == "slot_wait":
            # Slot waits are interruptible by any signal (bufmap.c).
            return caller.slots.cancel_wait(caller.waiter, errno.EINTR)
        caller.mutex_interrupted = caller.op.linked == "mutex"
        ended = self.k.signal(caller.op, self.now, fatal=fatal)
        caller.mutex_interrupted = caller.mutex_interrupted and ended
        return ended

    def _finish(self, caller: Caller) -> None:
        caller.state = "done"

    def _resume(self, caller: Caller) -> None:
        """What the woken task does next (vfs.py: file.c ``wait_for_direct_io``, dir.c, or plain return)."""
        assert caller.state == "runnable"
        if caller.woken_by == "slot":
            result, caller.waiter = caller.waiter.result, None
            if result < 0:
                self._finish(caller)
            else:
                self._service(caller)
            return
        op, result = caller.op, caller.result
        assert op.result == result, f"{op!r}: result changed from {result} to {op.result} after the wake-up"
        if caller.kind == "meta":
            self._finish(caller)
            return
        slot, caller.slot = caller.slot, None
        if result == -errno.EAGAIN and op.purged:
            # Spec §4.11, §5.3 step 4, §5.4: return the slot, take a new one, resubmit.
            caller.slots.put(slot, self.now)
            self._take_slot(caller)
            return
        # Spec §4.10 steps 1–2: a failed FILE_IO the client-core had read becomes a CANCEL, if a daemon is there.
        expect_cancel = self.k.daemon_in_service and bool(op.state & OpState.INPROGR)
        if caller.kind == "io" and result < 0 and self.k.cancel_io(op, self.now):
            assert expect_cancel, op
            # Step 3: at the head of the request list, keeping the slot until its downcall or a purge.
            caller.cancel = True
            cancel = next(iter(self.k.requests.head()))
            assert cancel.is_cancel and cancel.slot == slot and cancel.tag > op.tag
            assert struct.unpack_from("<Q", cancel.upcall, 40)[0] == op.tag
            self._register(cancel)
        else:
            assert caller.kind != "io" or result >= 0 or not expect_cancel, op
            caller.slots.put(slot, self.now)
        self._finish(caller)

    def _resume_all(self) -> None:
        while runnable := self._active("runnable"):
            for caller in runnable:
                self._resume(caller)

    def _valid_reply(self, op: Op, err: int | None, amt: int | None = None) -> bytes:
        """A downcall the kernel accepts for ``op`` (spec §1.4, §3.3, §3.4)."""
        if err is not None:
            return self.w.frame(op.tag, op.type, err=err)
        if op.type == OpCode.FILE_IO:
            (count,) = struct.unpack_from("<i", op.upcall, IO_COUNT_AT)
            return self.w.frame(op.tag, op.type, amt_complete=count if amt is None else min(amt, count))
        if op.type == OpCode.READDIR:
            return self.w.frame(op.tag, op.type, trailer=READDIR_TRAILER)
        if op.type == OpCode.FS_MOUNT:
            return self.w.frame(op.tag, op.type, fs_id=7, id=op.tag % 1000)
        if op.type == OpCode.FEATURES:
            return self.w.frame(op.tag, op.type, features=op.tag)
        return self.w.frame(op.tag, op.type)

    def _write_reply(self, op: Op, err: int | None, amt: int | None = None) -> None:
        """Write a good downcall for an op in progress and check it completed (spec §1.4 step 13, §4.10)."""
        assert self.k.in_progress.find(op.tag) is op
        data = self._valid_reply(op, err, amt)
        assert self.w.write(data) == len(data)
        assert op.linked is None
        if op.is_cancel:
            assert op.tag not in self.k.live
        else:
            # The caller was woken with the normalised status (spec §2.7).
            assert op.result == (0 if err is None else -err), (op, op.result, err)

    def _snapshot(self):
        return (
            [op.tag for op in self.k.requests],
            sorted(op.tag for op in self.k.in_progress),
            {tag: (op.state, op.result) for tag, op in self.k.live.items()},
        )

    def _expected_read(self) -> Op | None:
        """Spec §1.3 selection rules, from the head: the op a device read must hand out."""
        for op in self.k.requests:
            if op.purged or op.given_up:
                continue
            if op.fs_id:
                mount = self.k.mount_by_fs_id(op.fs_id)
                if mount is not None and mount.pending:
                    continue
                if mount is None and op.type not in (OpCode.FS_MOUNT, OpCode.GETATTR, OpCode.FS_UMOUNT):
                    continue
            return op
        return None

    def _serve(self, limit: int = 1000) -> None:
        """A healthy client-core: read what is eligible and answer it well, until nothing moves or ``limit`` ops."""
        for _ in range(100):
            moved = False
            while self.k.open_count == 1 and self._expected_read() is not None and limit > 0:
                frame = self.w.read_op()
                op = self.k.in_progress.find(frame.tag)
                self._write_reply(op, None)
                moved, limit = True, limit - 1
            if self._active("runnable"):
                self._resume_all()
                moved = True
            if not moved:
                return
        raise AssertionError("a healthy client-core never caught up")

    # ============================================================ VFS side

    @precondition(lambda self: len(self._active("slot_wait", "op_wait", "runnable")) < MAX_ACTIVE_CALLERS)
    @rule(which=st.sampled_from(META_OPS), flags=FLAGS)
    def submit_meta(self, which, flags):
        """Spec §4.5, §4.7, §4.13: a metadata op through one service_operation."""
        op_type, fs_id = which
        caller = self._new_caller("meta", self.w.new(op_type, fs_id=fs_id, flags=flags), None)
        self._service(caller)

    @precondition(lambda self: len(self._active("slot_wait", "op_wait", "runnable")) < MAX_ACTIVE_CALLERS)
    @rule(
        fs_id=st.sampled_from([7, 8, 0]),
        count=st.integers(0, 8192),
        io_type=st.sampled_from([IoType.READ, IoType.WRITE]),
        flags=FLAGS,
    )
    def submit_io(self, fs_id, count, io_type, flags):
        """Spec §5.3: FILE_IO takes an I/O slot (waiting if none), then one service_operation."""
        op = self.w.new(OpCode.FILE_IO, fs_id=fs_id, count=count, io_type=io_type, flags=flags)
        caller = self._new_caller("io", op, self.k.io_slots)
        self._take_slot(caller)

    @precondition(lambda self: len(self._active("slot_wait", "op_wait", "runnable")) < MAX_ACTIVE_CALLERS)
    @rule(fs_id=st.sampled_from([7, 8, 0]), flags=FLAGS)
    def submit_readdir(self, fs_id, flags):
        """Spec §5.4: READDIR takes a readdir slot for the op's duration."""
        op = self.w.new(OpCode.READDIR, fs_id=fs_id, flags=flags)
        caller = self._new_caller("readdir", op, self.k.readdir_slots)
        self._take_slot(caller)

    @precondition(lambda self: self._active("runnable"))
    @rule(index=INDEX)
    def resume(self, index):
        """Spec §4.5 step 10, §4.10, §4.11: a woken caller runs: returns, retries or cancels."""
        self._resume(self._pick(self._active("runnable"), index))

    @precondition(lambda self: self._active("runnable"))
    @rule()
    def resume_all(self):
        """Spec §1.6 step 6: the woken callers run and hand their slots back."""
        self._resume_all()

    @precondition(lambda self: self._active("slot_wait", "op_wait"))
    @rule(index=INDEX, fatal=st.booleans(), run=st.booleans())
    def interrupt(self, index, fatal, run):
        """Spec §4.3, §4.9, §5.2: a signal ends a slot wait always, an op wait by its flags.

        With ``run`` the interrupted caller runs at once.
        """
        self._interrupt(self._pick(self._active("slot_wait", "op_wait"), index), fatal, run)

    @precondition(lambda self: any(c.op.linked == "inprogress" for c in self._active("op_wait")))
    @rule(index=INDEX, fatal=st.booleans(), run=st.booleans())
    def interrupt_in_progress(self, index, fatal, run):
        """Spec §4.9, §4.10: a signal to a caller whose op the client-core has read; a FILE_IO may become a CANCEL."""
        read = [c for c in self._active("op_wait") if c.op.linked == "inprogress"]
        self._interrupt(self._pick(read, index), fatal, run)

    def _interrupt(self, caller: Caller, fatal: bool, run: bool) -> None:
        self._interrupt_one(caller, fatal)
        if run and caller.state == "runnable":
            self._resume(caller)

    def _interrupt_one(self, caller: Caller, fatal: bool) -> None:
        if caller.state == "slot_wait":
            assert self._signal(caller, fatal=fatal)
            assert caller.state == "runnable" and caller.waiter.result == -errno.EINTR
            return
        op = caller.op
        if op.linked == "mutex":
            expected = fatal or bool(op.flags & INTR)
        else:
            assert op.linked in ("request", "inprogress"), op.linked
            expected = not op.flags & WB and (fatal or bool(op.flags & INTR))
        assert self._signal(caller, fatal=fatal) == expected, (op, op.flags, fatal)
        if expected:
            assert caller.state == "runnable" and op.result == -errno.EINTR
            assert op.given_up or op.linked is None
        else:
            assert caller.state == "op_wait"

    # ============================================================ client-core side

    @rule(nonblock=st.booleans())
    def client_open(self, nonblock):
        """Spec §1.2: EINVAL without O_NONBLOCK, EACCES when open, blocked while a release runs."""
        before = self.k.open_count
        try:
            opened = self.w.client_open(NONBLOCK if nonblock else os.O_RDWR)
        except DeviceError as exc:
            assert exc.errno == (errno.EACCES if nonblock else errno.EINVAL), exc
            assert nonblock is False or before == 1
            return
        assert nonblock
        assert opened == (before == 0), (opened, before)
        assert self.k.open_count == (1 if before == 0 else before)

    @precondition(lambda self: self.k.open_count == 1 and self.k.requests)
    @rule(reads=st.integers(1, 3), good_size=st.booleans())
    def client_read(self, reads, good_size):
        """Spec §1.3: one upcall per read, the first eligible op from the head; EAGAIN if none, EINVAL if mis-sized."""
        for _ in range(reads):
            if not self._read_one(good_size):
                return

    def _read_one(self, good_size: bool = True) -> bool:
        expected = self._expected_read()
        try:
            raw = self.w.read_raw(MAX_DEV_REQ_UPSIZE if good_size else MAX_DEV_REQ_UPSIZE - 1)
        except DeviceError as exc:
            assert exc.errno == (errno.EAGAIN if good_size else errno.EINVAL)
            assert not good_size or expected is None
            return False
        assert good_size and expected is not None
        version, magic, tag = struct.unpack_from("<iiQ", raw)
        assert (version, magic, tag) == (ORANGEFS_KERNEL_PROTO_VERSION, ORANGEFS_DEVREQ_MAGIC, expected.tag)
        assert raw[16:] == expected.upcall
        assert expected.linked == "inprogress" and expected.state == OpState.INPROGR
        return True

    @precondition(lambda self: len(self.k.in_progress) > 0)
    @rule(index=INDEX, err=st.sampled_from([None, None, None] + REPLY_ERRORS), amt=st.none() | st.integers(0, 8192))
    def client_reply(self, index, err, amt):
        """Spec §1.4, §4.10: a good downcall completes its op (or frees its CANCEL and slot)."""
        op = self._pick(list(self.k.in_progress), index)
        self._write_reply(op, err, amt)

    @precondition(lambda self: len(self.k.in_progress) > 0)
    @rule(
        index=INDEX,
        kind=st.sampled_from(["short", "bad_magic", "old_version", "changed_version", "length", "trailer", "amt"]),
        junk=st.integers(-(2**63), 2**63 - 1),
    )
    def client_reply_bad(self, index, kind, junk):
        """Spec §1.4: a malformed downcall fails the write; past the head checks it also fails its op with EFAULT."""
        op = self._pick(list(self.k.in_progress), index)
        if kind == "amt" and op.type != OpCode.FILE_IO:
            kind = "length"
        if kind == "changed_version" and not self.k.userspace_version:
            kind = "old_version"
        good = self._valid_reply(op, None)
        if kind == "short":
            data, err = good[: junk % MAX_DEV_REQ_DOWNSIZE], errno.EFAULT  # step 1
        elif kind == "bad_magic":
            data, err = self.w.frame(op.tag, op.type, magic=junk % 2**32 or 1), errno.EPROTO  # step 4
            if junk % 2**32 == ORANGEFS_DEVREQ_MAGIC:
                data = self.w.frame(op.tag, op.type, magic=0)
        elif kind == "old_version":
            data, err = self.w.frame(op.tag, op.type, version=junk % 20903), errno.EPROTO  # step 3
        elif kind == "changed_version":
            data, err = self.w.frame(op.tag, op.type, version=self.k.userspace_version + 1), errno.EPROTO  # step 5
        elif kind == "length":
            data, err = good + bytes(1 + junk % 64), errno.EFAULT  # step 9
        elif kind == "trailer":
            # Steps 10–11: a trailer on anything but READDIR, none on a READDIR.
            trailer = b"" if op.type == OpCode.READDIR else READDIR_TRAILER
            data, err = self.w.frame(op.tag, op.type, trailer=trailer), errno.EFAULT
        else:
            (count,) = struct.unpack_from("<i", op.upcall, IO_COUNT_AT)
            amt = junk if junk < 0 or junk > count else count + 1
            data, err = self.w.frame(op.tag, op.type, amt_complete=amt), errno.EFAULT
        consumed = kind in ("length", "trailer", "amt")
        before = self._snapshot()
        try:
            self.w.write(data)
        except OSError as exc:
            assert exc.errno == err, (kind, exc)
        else:
            raise AssertionError(f"{kind} downcall for {op!r} was accepted")
        if not consumed:
            # Checks 1–5 fail before the tag lookup: nothing changes.
            assert self._snapshot() == before
            assert self.k.in_progress.find(op.tag) is op
        elif op.is_cancel:
            # Spec §1.4 step 13: the op is completed all the same; a CANCEL is freed.
            assert op.linked is None and op.tag not in self.k.live
        else:
            assert op.linked is None and op.result == -errno.EFAULT

    @precondition(lambda self: self.k.open_count == 1)
    @rule(index=INDEX, fresh=st.booleans())
    def client_reply_stray(self, index, fresh):
        """Spec §1.4 step 6, §4.8: a downcall for a tag not in progress is accepted and dropped."""
        stray = [op for op in self.ops_by_tag.values() if op.linked != "inprogress"]
        if fresh or not stray:
            tag, op_type = self.k._next_tag + 1000 + index, OpCode.GETATTR
        else:
            op = self._pick(stray, index)
            tag, op_type = op.tag, op.type
        data = self.w.frame(tag, op_type)
        before = self._snapshot()
        assert self.w.write(data) == len(data)
        assert self._snapshot() == before

    @precondition(lambda self: self.k.open_count == 1)
    @rule(count=st.integers(1, 4), good=st.booleans())
    def client_map(self, count, good):
        """Spec §5.1: MAP installs both slot maps once; a bad geometry or a second MAP is EINVAL."""
        mapped = self.k.bufmap is not None
        desc = self.w.map_desc(count, 4096 if good else 4095)
        try:
            installed = self.k.dev_map(desc)
        except OSError as exc:
            assert exc.errno == errno.EINVAL
            assert mapped or not good
            return
        assert good and not mapped
        self.k.install_bufmap(installed, self.now)
        assert self.k.io_slots.count == count and self.k.readdir_slots.count == self.k.readdir_slot_count

    @precondition(lambda self: self.k.open_count == 1 and all(self.remounts))
    @rule()
    def client_remount(self):
        """Spec §4.12: REMOUNT_ALL sends PRIORITY|NO_MUTEX FS_MOUNT (and FEATURES) per mount under the mutex.

        One at a time, as the client-core's remount thread does (a second
        one would only wait for the mutex behind the first).
        """
        results: list[int] = []
        self.remounts.append(results)
        self.k.remount_all(self.now, results.append)
        if self.k.mounts and not results:
            head = next(iter(self.k.requests.head()))
            assert head.type == OpCode.FS_MOUNT and head.flags == PRIO | int(OpFlags.NO_MUTEX), head

    @precondition(lambda self: self.k.open_count == 0)
    @rule(count=st.integers(1, 4))
    def client_restart(self, count):
        """Spec §4.12 steps 2–3: a new client-core opens the device, maps a buffer and asks for REMOUNT_ALL."""
        assert self.w.client_open()
        self.client_map(count, True)
        if all(self.remounts):
            self.client_remount()

    @precondition(lambda self: self.k.open_count == 1)
    @rule(limit=st.integers(1, 4) | st.just(1000))
    def client_serve(self, limit):
        """Spec §1.3, §1.4: a healthy client-core reads and answers up to ``limit`` ops (all it may, with 1000)."""
        self._serve(limit)

    @precondition(lambda self: self.k.open_count == 1)
    @rule()
    def client_release(self):
        """Spec §1.6: the client-core crashes; everything in flight is purged and its submitter woken."""
        slot_ops = [c.op for c in self._active("op_wait") if c.kind != "meta" and c.op.linked != "mutex"]
        self.w.release()
        assert self.k.open_count in (-1, 0)
        assert len(self.k.in_progress) == 0
        assert not any(op.is_cancel for op in self.k.live.values())
        for op in slot_ops:
            # Spec §4.11: FILE_IO and READDIR return EAGAIN (or EIO) to their caller.
            assert op.result in (-errno.EAGAIN, -errno.EIO) and op.purged

    @precondition(lambda self: self.k.open_count == 1)
    @rule(read_first=st.booleans())
    def shutdown(self, read_first):
        """Spec §1.6, §4.9, §4.10 step 2: every caller is killed and the client-core exits before they run.

        With ``read_first`` the client-core has read all it could.  The killed
        FILE_IOs it had read run with no daemon in service, so they put their
        slots back instead of sending CANCELs.
        """
        while read_first and self._read_one():
            pass
        for caller in self._active("slot_wait", "op_wait"):
            self._signal(caller, fatal=True)
        self.client_release()

    @precondition(lambda self: self.k.open_count == 0)
    @rule(times=st.integers(1, 6), remap=st.booleans(), read=st.booleans())
    def client_crash_loop(self, times, remap, read):
        """Spec §1.6, §4.6, §4.11: a client-core that crashes on start, again and again, before time moves.

        Each round opens the device, maybe maps a buffer and reads what it
        can, then releases; the woken callers run at once.  A queued op is
        purged each round: EAGAIN and a retry five times, EIO the sixth.
        """
        for _ in range(times):
            assert self.w.client_open()
            if remap:
                self.client_map(2, True)
            while read and self._read_one():
                pass
            self.client_release()
            self._resume_all()
            if self.k.open_count != 0:
                # A caller granted a slot just before the crash submitted its
                # op; the release waits for that slot until the op times out.
                break

    # ============================================================ time

    @rule(seconds=st.sampled_from([0.5, 1, 4.5, 5, 10, 19.5, 20, 29.5, 30, 45, 100, 900]))
    def advance(self, seconds):
        """Spec §4.11, §5.2: op and slot waits end ETIMEDOUT at their deadlines."""
        self.w.advance(seconds)
        deadline = self.k.next_deadline()
        assert deadline is None or deadline > self.now

    # ============================================================ invariants

    @invariant()
    def a_tag_lives_in_one_place(self):
        """Spec §4.1, §4.4: an op is on the request list or in one in-progress bucket, never both, never twice."""
        for op in list(self.k.live.values()) + list(self.k.requests) + list(self.k.in_progress):
            self._register(op)
        requests = list(self.k.requests)
        in_progress = list(self.k.in_progress)
        assert len(in_progress) == len(self.k.in_progress)
        tags = [op.tag for op in requests] + [op.tag for op in in_progress]
        assert len(tags) == len(set(tags)), f"a tag is in two places: {sorted(tags)}"
        for op in requests:
            assert op.linked == "request" and op.state == OpState.WAITING, op
        for op in in_progress:
            assert op.linked == "inprogress" and op.state == OpState.INPROGR, op
            assert self.k.in_progress.find(op.tag) is op
        mutex_waiters = [w for w in self.k._mutex_waiters if isinstance(w, Op)]
        where = {id(op): "request" for op in requests}
        where.update((id(op), "inprogress") for op in in_progress)
        where.update((id(op), "mutex") for op in mutex_waiters)
        assert len(where) == len(requests) + len(in_progress) + len(mutex_waiters), "an op is linked twice"
        for op in self.ops_by_tag.values():
            # An op is linked exactly where it says (no lost, stale or doubled links).
            assert op.linked == where.get(id(op)), (op, op.linked, where.get(id(op)))

    @invariant()
    def an_op_completes_once(self):
        """Spec §4.5, §4.6: a completed op is unlinked, out of the live table, and keeps its result."""
        for op in self.ops_by_tag.values():
            if op.result is not None:
                assert op.linked is None and op.deadline is None, op
                assert self.k.live.get(op.tag) is not op, f"{op!r} completed but still live"
        for op in self.k.live.values():
            assert op.result is None, op
        for caller in self.callers:
            if caller.woken_by == "op" and caller.state in ("runnable", "done"):
                assert caller.op.result == caller.result, f"{caller.op!r}: result changed after completion"
            if caller.state == "op_wait":
                assert caller.op.result is None

    @invariant()
    def slot_maps_add_up(self):
        """Spec §5.2, §4.10: c matches the bitmap; each busy slot has one holder, a live caller or CANCEL."""
        cancels = [op for op in self.k.live.values() if op.is_cancel]
        for slots in (self.k.io_slots, self.k.readdir_slots):
            busy = [i for i, b in enumerate(slots.busy) if b]
            if slots.c >= 0:
                assert len(slots.busy) == slots.count and slots.c == slots.count - len(busy), slots.statistics()
            elif slots.c == -1:
                assert not busy and slots.count == 0, slots.statistics()
            else:
                assert -(slots.c + 1) == len(busy), slots.statistics()
            # A waiter next to a free slot is a lost wake-up.
            assert not (slots.c > 0 and slots.waiters), slots.statistics()
            holders = [c.slot for c in self.callers if c.slots is slots and c.slot is not None]
            for caller in self.callers:
                if caller.slot is not None:
                    assert caller.active, f"finished caller {caller.ident} still holds slot {caller.slot}"
            if slots is self.k.io_slots:
                holders += [op.slot for op in cancels]
            assert sorted(holders) == busy, (slots.name, sorted(holders), busy)
            waiting = {id(c.waiter) for c in self._active("slot_wait") if c.slots is slots}
            assert waiting == set(slots.waiters), slots.name
            for waiter in slots.waiters.values():
                # The overall budget; with no buffer at all at most 30 s per
                # sleep.  (A map that is only dying wakes nobody, so a sleep
                # begun before the release keeps its budget.)
                assert waiter.deadline <= waiter.budget_end
                if slots.c == -1:
                    assert waiter.deadline <= self.now + ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS, (waiter, self.now)
                elif slots.c >= 0:
                    assert waiter.deadline == waiter.budget_end, (waiter, self.now)
        for caller in self._active("op_wait"):
            # An op in flight names the slot its caller holds (spec §5.3 step 2, §5.4).
            if caller.slots is not None:
                assert caller.slot is not None and caller.op.slot == caller.slot, (caller.op, caller.slot)

    @invariant()
    def release_leaves_nothing_in_flight(self):
        """Spec §1.6: without a daemon nothing is in progress or purged; the release ends when the slots are back."""
        k = self.k
        assert k.open_count in (-1, 0, 1)
        if k.open_count != 1:
            assert len(k.in_progress) == 0
            assert not any(op.is_cancel or op.purged for op in k.requests)
            # Spec §4.11: without a daemon every queued op has a deadline.
            assert all(op.deadline is not None for op in k.requests)
        if k.open_count == -1:
            # Step 6: the release waits for slots, so some caller still holds
            # one (woken and not yet run, or blocked on the request mutex, or
            # queued with a deadline); a CANCEL never does, the purge freed it.
            assert any(c.slot is not None for c in self.callers if c.active), "release stuck with no slot holder"
        if k.open_count == 0:
            assert k.bufmap is None and k.userspace_version == 0
            assert k.io_slots.c == -1 and k.readdir_slots.c == -1
        assert self.w.releases_done == k.stats.device_releases - (k.open_count == -1)

    @invariant()
    def mutex_only_for_remount(self):
        """Spec §4.5 step 3, §4.12: the request mutex is held exactly while a REMOUNT_ALL runs; each reports once."""
        running = [r for r in self.remounts if not r]
        assert all(len(r) <= 1 for r in self.remounts)
        assert self.k._mutex_held == bool(running)
        if not self.k._mutex_held:
            assert not self.k._mutex_waiters

    @invariant()
    def poll_matches_the_request_list(self):
        """Spec §1.5: POLLIN exactly while the request list is non-empty."""
        assert self.k.dev_poll() == bool(self.k.requests)

    @invariant()
    def nothing_overdue(self):
        """Spec §4.11, §5.2: every deadline is in the future and next_deadline covers it."""
        deadline = self.k.next_deadline()
        assert deadline is None or deadline > self.now
        pending = [op.deadline for op in self.k.requests if op.deadline is not None]
        pending += [op.deadline for op in self.k.in_progress if op.deadline is not None]
        for slots in (self.k.io_slots, self.k.readdir_slots):
            pending += [w.deadline for w in slots.waiters.values()]
        if pending:
            assert deadline is not None and deadline <= min(pending)

    # ============================================================ the end

    def teardown(self):
        """Spec §1.6, §4.11, §5.2: wind down and check that everyone finished and the slot maps are whole."""
        if not hasattr(self, "k"):
            return
        k = self.k
        # First as a healthy system: fatal signals, a client-core answering all.
        for caller in self._active("slot_wait", "op_wait"):
            self._signal(caller, fatal=True)
        if k.open_count == 1:
            self._serve()
            if not any(c.active for c in self.callers) and not k.live and not self.k._mutex_held:
                # After all callers finish both slot maps are full again.
                for slots in (k.io_slots, k.readdir_slots):
                    assert slots.c == (slots.count if slots.installed else -1), slots.statistics()
        # Then the hard way: a crash, and time for every wait to run out.
        for _ in range(50):
            self._resume_all()
            for caller in self._active("slot_wait", "op_wait"):
                self._signal(caller, fatal=True)
            self._resume_all()
            if k.open_count == 1:
                k.dev_release(self.now)
            self._resume_all()
            if not any(c.active for c in self.callers) and not k.live and not k._mutex_held:
                break
            self.w.advance(1000)
        assert not [c for c in self.callers if c.active], "callers never finished"
        assert not k.live and not k.requests and len(k.in_progress) == 0
        assert not k._mutex_held and not k._mutex_waiters
        assert all(len(r) == 1 for r in self.remounts), self.remounts
        assert k.open_count == 0
        for slots in (k.io_slots, k.readdir_slots):
            assert slots.c == -1 and not slots.waiters, slots.statistics()


KernelMachine.TestCase.settings = fuzz_settings(
    200, 2000,
    stateful_step_count=budget(100, 200),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    report_multiple_bugs=False,
)
TestKernelStateful = KernelMachine.TestCase
TestKernelStateful.pytestmark = pytest.mark.fuzz
