"""Fault injection: a client-core that misbehaves on purpose, in the ways real ones do.

``clientcore --fault SPEC`` (repeatable) makes the daemon delay, drop or
corrupt the answers to chosen upcalls, or crash, so the kernel's failure paths
(spec §1.4, §4.1–§4.4, §5) can be provoked at will and watched with
``pvfs2ctl ops`` and ``trace``.  The grammar, one fault per SPEC:

==========================  ===================================================  ===========================
SPEC                        what the client-core does                            the kernel path it drives
==========================  ===================================================  ===========================
``delay:OP:TIME[:P]``       answers OP after TIME (``200ms``, ``1.5s``, ``2``)   op timeouts, interrupts
                                                                                  while in progress, CANCEL
``drop:OP[:P]``             reads OP and never answers it                        an in-progress op waiting
                                                                                  until the daemon goes
                                                                                  away, then the purge
``corrupt:OP[:KIND[:P]]``   answers OP with a bad downcall (KIND below)          the write checks of §1.4
``crash-after:N``           dies (SIGKILL, no close) on reading upcall N          release, purge, retry and
                                                                                  remount after a restart
``stall-readdir``           never answers READDIR (``drop:READDIR``)             readdir slot exhaustion
==========================  ===================================================  ===========================

OP is an op name as the kernel spells it without ``ORANGEFS_VFS_OP_``
(GETATTR, FILE_IO, LOOKUP, ...) or ``*`` for every op but CANCEL.  P is the
probability (0 < P ≤ 1, default 1) that one upcall of that type is hit; the
draws come from one ``random.Random(--fault-seed)``, so a run is
reproducible.  KIND (spec §1.4 "Processing, in order"):

* ``trailer`` (default): trailer_size disagrees with the length written.
  Check 9: the write fails EFAULT *and* the waiting caller gets EFAULT.
  (A reply whose status is an error skips that check, as in the kernel.)
* ``magic``: a wrong magic.  Check 4: the write fails EPROTO and the op is
  not completed — it waits as a dropped one does.
* ``short``: fewer than 8240 bytes.  Check 1: EFAULT, nothing consumed, the
  op is not completed.
* ``tag``: the answer names a tag nobody waits for.  Check 6: the write
  "succeeds" and is discarded; the op is not completed.

The first fault that matches an upcall decides (SPECs are tried in order).
CANCEL upcalls are never faulted: they are the kernel's own clean-up.
"""

from __future__ import annotations

import dataclasses
import random
import re
import struct
from typing import Iterable

from pvfs2proto import OpCode
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE

#: What the daemon does with one upcall.
ANSWER, DELAY, DROP, CORRUPT, CRASH = "answer", "delay", "drop", "corrupt", "crash"
CORRUPT_KINDS = ("trailer", "magic", "short", "tag")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")
_HEAD = struct.Struct("<IIQ")  # proto_ver, magic, tag
_TRAILER_SIZE_AT = 16 + 8  # downcall.trailer_size in the frame: after the head, type and status


class FaultSpecError(ValueError):
    """A --fault SPEC that does not parse; the message is one line for a person."""


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str  # DELAY, DROP, CORRUPT or CRASH
    op: int | None = None  # None: every op
    probability: float = 1.0
    delay: float = 0.0
    corrupt: str = "trailer"
    after: int = 0  # CRASH: the upcall number that kills the daemon

    def matches(self, op_type: int) -> bool:
        return self.op is None or self.op == op_type


@dataclasses.dataclass(frozen=True)
class Action:
    what: str
    delay: float = 0.0
    corrupt: str = ""


ANSWER_NORMALLY = Action(ANSWER)


def _op(text: str, spec: str) -> int | None:
    if text == "*":
        return None
    name = text.upper().removeprefix("ORANGEFS_VFS_OP_")
    try:
        op = OpCode[name]
    except KeyError:
        raise FaultSpecError(f"{spec!r}: unknown op {text!r} (GETATTR, FILE_IO, LOOKUP, ... or *)") from None
    if op == OpCode.CANCEL:
        raise FaultSpecError(f"{spec!r}: CANCEL cannot be faulted (it is the kernel's own clean-up)")
    return int(op)


def _probability(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise FaultSpecError(f"{spec!r}: probability {text!r} must be in (0, 1]")
    return value


def _duration(text: str, spec: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise FaultSpecError(f"{spec!r}: {text!r} is not a time such as 200ms or 1.5s")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def parse_fault(spec: str) -> Fault:
    """One SPEC (see the module docstring) as a :class:`Fault`.

    Raises:
        FaultSpecError: with a one-line reason.
    """
    parts = spec.strip().split(":")
    kind, args = parts[0].lower(), parts[1:]
    if kind == "delay" and len(args) in (2, 3):
        return Fault(DELAY, _op(args[0], spec), _probability(args[2], spec) if len(args) == 3 else 1.0,
                     delay=_duration(args[1], spec))
    if kind == "drop" and len(args) in (1, 2):
        return Fault(DROP, _op(args[0], spec), _probability(args[1], spec) if len(args) == 2 else 1.0)
    if kind == "corrupt" and len(args) in (1, 2, 3):
        how = args[1].lower() if len(args) >= 2 else "trailer"
        if how not in CORRUPT_KINDS:
            raise FaultSpecError(f"{spec!r}: corruption {how!r} is not one of {', '.join(CORRUPT_KINDS)}")
        return Fault(CORRUPT, _op(args[0], spec), _probability(args[2], spec) if len(args) == 3 else 1.0,
                     corrupt=how)
    if kind == "crash-after" and len(args) == 1:
        if not args[0].isdigit() or int(args[0]) < 1:
            raise FaultSpecError(f"{spec!r}: crash-after needs a count of upcalls >= 1")
        return Fault(CRASH, after=int(args[0]))
    if kind == "stall-readdir" and not args:
        return Fault(DROP, int(OpCode.READDIR))
    raise FaultSpecError(f"{spec!r}: not a fault (delay:OP:TIME[:P], drop:OP[:P], corrupt:OP[:KIND[:P]], "
                         "crash-after:N, stall-readdir)")


class FaultPlan:
    """The faults of one daemon and the seeded draws that decide each upcall's fate."""

    def __init__(self, faults: Iterable[Fault], seed: int = 0) -> None:
        self.faults = list(faults)
        self.random = random.Random(seed)
        #: Upcalls read so far (CANCELs included: they are upcalls too).
        self.upcalls = 0
        #: How often each kind of fault was applied.
        self.applied: dict[str, int] = {}

    @classmethod
    def parse(cls, specs: Iterable[str], seed: int = 0) -> "FaultPlan":
        return cls((parse_fault(s) for s in specs), seed)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def on_upcall(self, op_type: int) -> Action:
        """What to do with the upcall just read."""
        self.upcalls += 1
        for fault in self.faults:
            if fault.kind == CRASH:
                if self.upcalls >= fault.after:
                    return self._applied(Action(CRASH))
                continue
            if op_type == OpCode.CANCEL or not fault.matches(op_type):
                continue
            if fault.probability < 1.0 and self.random.random() >= fault.probability:
                continue
            return self._applied(Action(fault.kind, delay=fault.delay, corrupt=fault.corrupt))
        return ANSWER_NORMALLY

    def _applied(self, action: Action) -> Action:
        self.applied[action.what] = self.applied.get(action.what, 0) + 1
        return action


def corrupt_frame(frame: bytes, how: str) -> bytes:
    """The write frame ``frame`` damaged as ``how`` says (see the module docstring)."""
    data = bytearray(frame)
    if how == "magic":
        version, magic, tag = _HEAD.unpack_from(data)
        _HEAD.pack_into(data, 0, version, magic ^ 0xFFFFFFFF, tag)
    elif how == "short":
        del data[MAX_DEV_REQ_DOWNSIZE - 1 :]
    elif how == "tag":
        version, magic, tag = _HEAD.unpack_from(data)
        _HEAD.pack_into(data, 0, version, magic, (tag ^ (1 << 62)) & 0xFFFFFFFFFFFFFFFF)
    else:  # trailer: announce 8 bytes more than were written
        (size,) = struct.unpack_from("<q", data, _TRAILER_SIZE_AT)
        struct.pack_into("<q", data, _TRAILER_SIZE_AT, size + 8)
    return bytes(data)


__all__ = ["Action", "CORRUPT_KINDS", "Fault", "FaultPlan", "FaultSpecError", "corrupt_frame", "parse_fault"]
