"""``pvfs2dev replay``: play the kernel's side of a recording against a client-core (issue 7).

A recording (``pvfs2ctl trace --record FILE``, written by
:mod:`pvfs2dev.recorder`) holds every upcall a client-core read and every
downcall it wrote, byte for byte.  Replaying it means being the kernel again:
serve a device socket, let a client-core — ours or any other — attach and
map its buffers, then submit the recorded upcalls one at a time, in the order
they were read, and compare each answer with the recorded one.  The first
answer that differs is reported and the replay stops.

Theory of operation
-------------------

*The kernel side* is a whole broker (:class:`pvfs2dev.server.Server`) in the
run directory, so the client-core meets the same device edge, MAP and
REMOUNT_ALL as ever, and ``pvfs2ctl`` can watch a replay.  Each recorded
upcall becomes exactly one op, serviced by the kernel core as
``service_operation`` does; no VFS glue runs around it (a recorded mount's
GETATTR and FEATURES are recorded upcalls of their own).  A FILE_IO takes an
I/O slot and, for a write, gets the recorded slot bytes copied in first; a
READDIR takes a readdir slot.  The client-core's answer is captured at the
device edge by the same hook that records (``broker.recorder``), so the
replayed downcall is compared byte for byte with the recorded one, write
result included.

*Translation.*  A different store hands out other handles, another fs_id,
other mount ids and perhaps other directory cursors.  A :class:`Translator`
learns recorded → replayed pairs from the answers that introduce them
(FS_MOUNT's fs_id, id and root; the refn of LOOKUP, CREATE, MKDIR, SYMLINK;
READDIR entries and tokens; LISTXATTR tokens) and rewrites every later
upcall's khandles, fs_ids, mount ids and tokens before it is submitted.  A
handle must translate consistently both ways: a LOOKUP that names an object
other than the one the recording saw is a divergence.  Mounts that existed
when the recording started (its header lists them) are mounted first, before
the first recorded upcall, so the translation knows their roots.

*Comparison* (:func:`compare`), in this order: the write's result (success or
the errno), the frame's magic and tag (the op's own), the downcall's type and
status, then — for a success — every field of the op's ``resp`` member, the
READDIR trailer (token, entries by name and handle) and the data a FILE_IO
read left in its slot.  Not compared: the userspace version in the frame
head (a property of the client-core build, not of its answers), atime, mtime
and ctime, the four statfs counts (they describe the disk the store lives
on) and the READDIR ``directory_version`` (ignored by every kernel).  An
error reply's ``resp`` is not compared either: the kernel never reads it.

*Not replayed*: CANCEL upcalls (they name an op in flight; one-at-a-time
replay has none) and upcalls the recording never saw answered (purged,
dropped, the recording stopped).  They are counted as skipped.  Timing is
not reproduced: each upcall goes as soon as the previous one is answered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import socket
import struct
import subprocess
from pathlib import Path
from typing import Iterable

import trio

import pvfs2proto as proto
from pvfs2proto import IoType, OpCode, opname
from pvfs2proto.constants import (
    MAX_DEV_REQ_DOWNSIZE,
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_NEXT,
    ORANGEFS_ITERATE_START,
    ORANGEFS_MAX_SERVER_ADDR_LEN,
)
from pvfs2proto.cstruct import offsetof
from pvfs2proto.upcall import orangefs_upcall_s

from .recorder import FORMAT, FORMAT_VERSION, Record, decode_frame
from .rundir import DEVICE_SOCKET
from .vfs import Call

#: Exit statuses of ``pvfs2dev replay``.
EXIT_SAME, EXIT_DIVERGED, EXIT_BAD_FILE, EXIT_FAILED = 0, 1, 2, 3

_CREDS = struct.Struct("<IIii")  # upcall uid, gid, pid, tgid
_CREDS_AT = 4
_HEAD = struct.Struct("<IIQ")  # write frame: version, magic, tag
_IO_COUNT_AT = offsetof(orangefs_upcall_s, "req.io.count")
_IO_TYPE_AT = offsetof(orangefs_upcall_s, "req.io.io_type")


class RecordingError(ValueError):
    """The file is not a recording we can read; the message is one line."""


class ReplayError(RuntimeError):
    """The replay could not be run (no client-core, slots too small…); the message is one line."""


# -- reading a recording ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """A recorded or replayed downcall: the whole write, its result, a FILE_IO read's slot bytes."""

    frame: bytes
    result: int
    data: bytes | None = None
    line: int = 0


@dataclasses.dataclass
class Step:
    """One recorded upcall and the answer it got."""

    index: int  # 0-based among the recording's upcalls
    line: int  # 1-based line of the upcall in the file
    tag: int
    op: int
    upcall: bytes  # the 8528-byte upcall (the read frame without its head)
    data: bytes | None  # a FILE_IO write's slot bytes
    answer: Answer | None = None

    @property
    def replayable(self) -> bool:
        return self.answer is not None and self.op != OpCode.CANCEL


@dataclasses.dataclass
class Recording:
    header: dict
    steps: list[Step]

    @property
    def replayable(self) -> list[Step]:
        return [s for s in self.steps if s.replayable]


def _bytes(entry: dict, key: str, where: str) -> bytes:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise RecordingError(f"{where}: {key} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingError(f"{where}: {key} is not valid base64") from None


def _int(entry: dict, key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordingError(f"{where}: {key} is missing or not an integer")
    return value


def _frame(entry: dict, where: str) -> bytes:
    try:
        return decode_frame(entry)
    except ValueError as exc:
        raise RecordingError(f"{where}: {exc}") from None


def parse(lines: Iterable[str]) -> Recording:
    """A recording from its lines.

    Raises:
        RecordingError: with ``line N: reason``.
    """
    header = None
    steps: list[Step] = []
    open_tags: dict[int, Step] = {}
    for number, text in enumerate(lines, 1):
        where = f"line {number}"
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except ValueError as exc:
            raise RecordingError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise RecordingError(f"{where}: not a JSON object")
        if header is None:
            if entry.get("format") != FORMAT:
                raise RecordingError(f"{where}: not a pvfs2dev recording (no {FORMAT!r} header; "
                                     "record one with pvfs2ctl trace --record)")
            if entry.get("version") != FORMAT_VERSION:
                raise RecordingError(f"{where}: recording format version {entry.get('version')!r}, "
                                     f"this pvfs2dev reads {FORMAT_VERSION}")
            header = entry
            continue
        event = entry.get("event")
        if event == "upcall":
            frame = _frame(entry, where)
            try:
                decoded = proto.decode_read_frame(frame)
            except proto.ProtocolError as exc:
                raise RecordingError(f"{where}: the upcall frame does not decode: {exc.strerror or exc}") from None
            data = _bytes(entry, "data", where) if "data" in entry else None
            step = Step(len(steps), number, decoded.tag, int(decoded.upcall.type), frame[16:], data)
            steps.append(step)
            open_tags[step.tag] = step  # a retried op is read again with its tag: the last read is answered
        elif event == "downcall":
            frame = _frame(entry, where)
            result = _int(entry, "result", where)
            data = _bytes(entry, "data", where) if "data" in entry else None
            tag = _int(entry, "tag", where)
            step = open_tags.pop(tag, None)
            if step is not None:  # else: for an op read before the recording began, or a bad tag
                step.answer = Answer(frame, result, data, number)
        elif event == "lost":
            raise RecordingError(f"{where}: {entry.get('count')} records were lost while recording "
                                 "(the reader fell behind); this recording cannot be replayed")
        elif event == "map":
            continue
        else:
            raise RecordingError(f"{where}: unknown event {event!r}")
    if header is None:
        raise RecordingError("line 1: empty file, not a pvfs2dev recording")
    return Recording(header, steps)


def load(path: str | os.PathLike) -> Recording:
    """Read a recording file.  Raises RecordingError (unreadable, or not a recording)."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f)
    except OSError as exc:
        raise RecordingError(exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise RecordingError("not a text file") from None


# -- translating handles, fs_ids, mount ids and tokens ------------------------------------------------------

HANDLE, FS_ID, MOUNT_ID, TOKEN = "handle", "fs_id", "mount id", "token"
#: Values that mean the same on any client-core and are never translated.
_FIXED = {
    HANDLE: {bytes(16)},
    FS_ID: {0},
    MOUNT_ID: set(),
    TOKEN: {ORANGEFS_ITERATE_START, ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_NEXT},
}
_KREF = "kref"
_FORMATS = {FS_ID: struct.Struct("<i"), MOUNT_ID: struct.Struct("<i"), TOKEN: struct.Struct("<Q")}

#: The fields of each upcall that name something the client-core handed out.
_UPCALL_FIELDS: dict[int, list[tuple[str, str]]] = {
    OpCode.FILE_IO: [("io.refn", _KREF)],
    OpCode.LOOKUP: [("lookup.parent_refn", _KREF)],
    OpCode.CREATE: [("create.parent_refn", _KREF)],
    OpCode.GETATTR: [("getattr.refn", _KREF)],
    OpCode.REMOVE: [("remove.parent_refn", _KREF)],
    OpCode.MKDIR: [("mkdir.parent_refn", _KREF)],
    OpCode.READDIR: [("readdir.refn", _KREF), ("readdir.token", TOKEN)],
    OpCode.READDIRPLUS: [("readdirplus.refn", _KREF), ("readdirplus.token", TOKEN)],
    OpCode.SETATTR: [("setattr.refn", _KREF)],
    OpCode.SYMLINK: [("sym.parent_refn", _KREF)],
    OpCode.RENAME: [("rename.old_parent_refn", _KREF), ("rename.new_parent_refn", _KREF)],
    OpCode.STATFS: [("statfs.fs_id", FS_ID)],
    OpCode.TRUNCATE: [("truncate.refn", _KREF)],
    OpCode.RA_FLUSH: [("ra_cache_flush.refn", _KREF)],
    OpCode.FS_UMOUNT: [("fs_umount.id", MOUNT_ID), ("fs_umount.fs_id", FS_ID)],
    OpCode.GETXATTR: [("getxattr.refn", _KREF)],
    OpCode.SETXATTR: [("setxattr.refn", _KREF)],
    OpCode.LISTXATTR: [("listxattr.refn", _KREF), ("listxattr.token", TOKEN)],
    OpCode.REMOVEXATTR: [("removexattr.refn", _KREF)],
    OpCode.FSYNC: [("fsync.refn", _KREF)],
    OpCode.FSKEY: [("fs_key.fsid", FS_ID)],
}


def _upcall_offsets() -> dict[int, list[tuple[int, str]]]:
    table: dict[int, list[tuple[int, str]]] = {}
    for op, fields in _UPCALL_FIELDS.items():
        member = proto.upcall.UPCALL_MEMBERS[op][0]
        rows: list[tuple[int, str]] = []
        for path, kind in fields:
            dotted = f"req.{member}.{path.split('.', 1)[1]}"
            if kind == _KREF:
                rows.append((offsetof(orangefs_upcall_s, dotted + ".khandle"), HANDLE))
                rows.append((offsetof(orangefs_upcall_s, dotted + ".fs_id"), FS_ID))
            else:
                rows.append((offsetof(orangefs_upcall_s, dotted), kind))
        table[int(op)] = rows
    return table


_UPCALL_OFFSETS = _upcall_offsets()


def show(kind: str, value) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if kind == TOKEN and value in (ORANGEFS_ITERATE_START, ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_NEXT):
        return {ORANGEFS_ITERATE_START: "ITERATE_START", ORANGEFS_ITERATE_END: "ITERATE_END",
                ORANGEFS_ITERATE_NEXT: "ITERATE_NEXT"}[value]
    return str(value)


class Translator:
    """Recorded → replayed khandles, fs_ids, mount ids and tokens, learned from the answers."""

    def __init__(self) -> None:
        self.forward: dict[str, dict] = {k: {} for k in _FIXED}
        self.backward: dict[str, dict] = {k: {} for k in _FIXED}

    def translate(self, kind: str, recorded):
        """What ``recorded`` is called in the replay (itself if not learned)."""
        return self.forward[kind].get(recorded, recorded)

    def learn(self, kind: str, recorded, replayed) -> tuple[str, str] | None:
        """Check ``replayed`` against what ``recorded`` translates to, learning a new pair.

        Returns None if consistent, else (recorded, replayed) as shown in a report.
        Handles, fs_ids and mount ids must map one to one; tokens are cursors
        and only their special values (START, END, NEXT) must agree.
        """
        if recorded in _FIXED[kind] or replayed in _FIXED[kind]:
            return None if recorded == replayed else (show(kind, recorded), show(kind, replayed))
        forward, backward = self.forward[kind], self.backward[kind]
        if kind == TOKEN:
            forward[recorded] = replayed
            return None
        if recorded in forward:
            if forward[recorded] == replayed:
                return None
            return (f"{show(kind, recorded)} (replays as {show(kind, forward[recorded])})", show(kind, replayed))
        if replayed in backward:
            return (f"{show(kind, recorded)} (not seen before)",
                    f"{show(kind, replayed)} (already the replay of {show(kind, backward[replayed])})")
        forward[recorded] = replayed
        backward[replayed] = recorded
        return None

    def upcall(self, upcall: bytes) -> bytes:
        """``upcall`` with every handle, fs_id, mount id and token it names translated."""
        (op_type,) = struct.unpack_from("<I", upcall, 0)
        rows = _UPCALL_OFFSETS.get(op_type)
        if not rows:
            return upcall
        out = bytearray(upcall)
        for at, kind in rows:
            if kind == HANDLE:
                out[at : at + 16] = self.translate(HANDLE, bytes(out[at : at + 16]))
            else:
                fmt = _FORMATS[kind]
                fmt.pack_into(out, at, self.translate(kind, fmt.unpack_from(out, at)[0]))
        return bytes(out)


# -- comparing answers --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Divergence:
    field: str
    recorded: str
    replayed: str


_MASKED = "masked"
_STATFS_COUNTS = frozenset({"blocks_total", "blocks_avail", "files_total", "files_avail"})


def _rule(path: tuple[str, ...]) -> str | None:
    """How the field at ``path`` (below ``resp``) compares: a translated kind, masked, or None (exactly)."""
    name = path[-1]
    if name in ("khandle", "root_khandle"):
        return HANDLE
    if name in ("fs_id", "fsid"):
        return FS_ID
    if name in ("atime", "mtime", "ctime"):
        return _MASKED
    if path[0] == "statfs" and name in _STATFS_COUNTS:
        return _MASKED
    if path == ("fs_mount", "id"):
        return MOUNT_ID
    if name == "token":
        return TOKEN
    return None


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _show_bytes(a: bytes, b: bytes) -> tuple[str, str, str]:
    """(index suffix, recorded, replayed) around the first byte where a and b differ."""
    if len(a) <= 32 and len(b) <= 32:
        return "", a.hex() or "(empty)", b.hex() or "(empty)"
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    if i == min(len(a), len(b)) and len(a) != len(b):
        return "", f"{len(a)} bytes", f"{len(b)} bytes"
    return f"[{i}]", a[i : i + 16].hex(), b[i : i + 16].hex()


def _walk(recorded, replayed, path: tuple[str, ...], translator: Translator) -> Divergence | None:
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in recorded:
            found = _walk(recorded[key], replayed.get(key), path + (key,), translator)
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(replayed, list):
        for i, (a, b) in enumerate(zip(recorded, replayed)):
            found = _walk(a, b, path[:-1] + (f"{path[-1]}[{i}]",), translator)
            if found is not None:
                return found
        if len(recorded) != len(replayed):
            return Divergence("downcall.resp." + ".".join(path), f"{len(recorded)} items", f"{len(replayed)} items")
        return None
    rule = _rule(path)
    where = "downcall.resp." + ".".join(path)
    if rule == _MASKED:
        return None
    if rule is not None:
        bad = translator.learn(rule, recorded, replayed)
        return None if bad is None else Divergence(where, *bad)
    if recorded == replayed:
        return None
    if isinstance(recorded, bytes) and isinstance(replayed, bytes):
        suffix, a, b = _show_bytes(recorded, replayed)
        return Divergence(where + suffix, a, b)
    return Divergence(where, repr(recorded), repr(replayed))


def _result(result: int) -> str:
    return f"{result} bytes written" if result >= 0 else f"-{proto.errno_name(-result)}"


def _status(status: int) -> str:
    return "0" if status == 0 else f"{status} ({proto.errno_name(proto.status_to_errno(status))})"


def compare(step: Step, recorded: Answer, replayed: Answer, replayed_tag: int,
            translator: Translator) -> Divergence | None:
    """The first difference between the recorded and the replayed answer to ``step`` (module docstring)."""
    ok_a, ok_b = recorded.result >= 0, replayed.result >= 0
    if ok_a != ok_b or (not ok_a and recorded.result != replayed.result):
        return Divergence("write.result", _result(recorded.result), _result(replayed.result))
    a, b = recorded.frame, replayed.frame
    if len(a) < 16 or len(b) < 16:
        return None if a == b else Divergence("frame.size", str(len(a)), str(len(b)))
    (_, magic_a, tag_a), (_, magic_b, tag_b) = _HEAD.unpack_from(a), _HEAD.unpack_from(b)
    if magic_a != magic_b:
        return Divergence("frame.magic", hex(magic_a), hex(magic_b))
    own_a = "the op's tag" if tag_a == step.tag else f"{tag_a} (not the op's {step.tag})"
    own_b = "the op's tag" if tag_b == replayed_tag else f"{tag_b} (not the op's {replayed_tag})"
    if own_a != own_b:
        return Divergence("frame.tag", own_a, own_b)
    if len(a) < MAX_DEV_REQ_DOWNSIZE or len(b) < MAX_DEV_REQ_DOWNSIZE:
        return None if len(a) == len(b) else Divergence("frame.size", str(len(a)), str(len(b)))
    down_a = proto.decode_downcall(a[16:MAX_DEV_REQ_DOWNSIZE], step.op)
    down_b = proto.decode_downcall(b[16:MAX_DEV_REQ_DOWNSIZE], step.op)
    if down_a.type != down_b.type:
        return Divergence("downcall.type", opname(down_a.type), opname(down_b.type))
    if down_a.status != down_b.status:
        return Divergence("downcall.status", _status(down_a.status), _status(down_b.status))
    if down_a.status != 0:
        return None  # the kernel reads nothing else of an error reply
    found = _walk(_plain(down_a.resp), _plain(down_b.resp), (), translator)
    if found is not None:
        return found
    trailer_a, trailer_b = a[MAX_DEV_REQ_DOWNSIZE:], b[MAX_DEV_REQ_DOWNSIZE:]
    if step.op == OpCode.READDIR:
        found = _compare_readdir(trailer_a, trailer_b, translator)
        if found is not None:
            return found
    elif trailer_a != trailer_b:
        suffix, x, y = _show_bytes(trailer_a, trailer_b)
        return Divergence("trailer" + suffix, x, y)
    if down_a.trailer_size != down_b.trailer_size:
        return Divergence("downcall.trailer_size", str(down_a.trailer_size), str(down_b.trailer_size))
    if step.op == OpCode.FILE_IO and (recorded.data is not None or replayed.data is not None):
        x, y = recorded.data or b"", replayed.data or b""
        if x != y:
            suffix, x_text, y_text = _show_bytes(x, y)
            if not suffix and len(x) != len(y):
                return Divergence("data.length", str(len(x)), str(len(y)))
            return Divergence("data" + suffix, x_text, y_text)
    return None


def _compare_readdir(a: bytes, b: bytes, translator: Translator) -> Divergence | None:
    try:
        ra = proto.decode_readdir_trailer(a)
    except proto.ProtocolError as exc:
        ra = exc
    try:
        rb = proto.decode_readdir_trailer(b)
    except proto.ProtocolError as exc:
        rb = exc
    if isinstance(ra, Exception) or isinstance(rb, Exception):
        if isinstance(ra, Exception) and isinstance(rb, Exception):
            return None if a == b else Divergence("trailer", f"{len(a)} bad bytes", f"{len(b)} bad bytes")
        return Divergence("trailer", str(getattr(ra, "strerror", None) or "decodes"),
                          str(getattr(rb, "strerror", None) or "decodes"))
    for i, (x, y) in enumerate(zip(ra.entries, rb.entries)):
        if x.name != y.name:
            return Divergence(f"trailer.entries[{i}].name", repr(x.name), repr(y.name))
        bad = translator.learn(HANDLE, x.khandle, y.khandle)
        if bad is not None:
            return Divergence(f"trailer.entries[{i}].khandle", *bad)
    if len(ra.entries) != len(rb.entries):
        return Divergence("trailer.entries", f"{len(ra.entries)} entries", f"{len(rb.entries)} entries")
    if ra.outcount != rb.outcount:
        return Divergence("trailer.outcount", str(ra.outcount), str(rb.outcount))
    bad = translator.learn(TOKEN, ra.token, rb.token)
    if bad is not None:
        return Divergence("trailer.token", *bad)
    return None


# -- the report ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    ops: int  # recorded upcalls
    replayed: int = 0  # upcalls replayed, the diverging one included
    skipped: int = 0  # CANCELs and upcalls never answered in the recording
    step: Step | None = None  # the diverging one
    replayed_tag: int = 0
    divergence: Divergence | None = None

    @property
    def status(self) -> int:
        return EXIT_SAME if self.divergence is None else EXIT_DIVERGED

    def as_dict(self) -> dict:
        out: dict = {"ops": self.ops, "replayed": self.replayed, "skipped": self.skipped,
                     "divergence": None}
        if self.divergence is not None and self.step is not None:
            out["divergence"] = {"index": self.step.index, "line": self.step.line, "tag": self.step.tag,
                                 "replayed_tag": self.replayed_tag, "op": opname(self.step.op),
                                 **dataclasses.asdict(self.divergence)}
        return out

    def text(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        if self.divergence is None:
            return f"replayed {self.replayed} of {self.ops} upcalls{skipped}: no divergence"
        s, d = self.step, self.divergence
        return (f"replayed {self.replayed} of {self.ops} upcalls{skipped}: first divergence at upcall {s.index} "
                f"(line {s.line}, tag {s.tag}, {opname(s.op)}): {d.field}: recorded {d.recorded}, "
                f"replayed {d.replayed}")


# -- running it ---------------------------------------------------------------------------------------------


class _Capture:
    """A record stream (pvfs2dev/recorder.py) keeping the replayed downcalls by tag."""

    closed = False

    def __init__(self) -> None:
        self.answers: dict[int, Answer] = {}

    def offer(self, record: Record) -> None:
        if record.event == "downcall":
            self.answers[record.tag] = Answer(record.frame, record.result, record.data)


#: Ops the device read hands out whatever their fs_id (spec §1.3 rule 2).
_UNFILTERED = frozenset({OpCode.FS_MOUNT, OpCode.GETATTR, OpCode.FS_UMOUNT})


class Replayer:
    """Submits the steps of a recording on a running broker whose client-core has mapped its buffers."""

    def __init__(self, broker, recording: Recording, *, timeout: float, process=None) -> None:
        self.broker = broker
        self.kernel = broker.kernel
        self.recording = recording
        self.timeout = timeout
        self.process = process
        self.translator = Translator()
        self.capture = _Capture()

    async def run(self) -> Report:
        report = Report(len(self.recording.steps))
        report.skipped = len(self.recording.steps) - len(self.recording.replayable)
        self._check_geometry()
        self.broker.subscribe_records(self.capture)
        try:
            await self._mount_from_header()
            for step in self.recording.replayable:
                report.replayed += 1
                tag, divergence = await self._one(step)
                if divergence is not None:
                    report.step, report.replayed_tag, report.divergence = step, tag, divergence
                    break
        finally:
            self.broker.unsubscribe_records(self.capture)
        return report

    def _check_geometry(self) -> None:
        if self.broker.buffers is None:
            raise ReplayError("the client-core closed the device before the replay began")
        size = self.broker.buffers.io.slot_size
        for step in self.recording.replayable:
            if step.op == OpCode.FILE_IO:
                (count,) = struct.unpack_from("<i", step.upcall, _IO_COUNT_AT)
                if count > size:
                    raise ReplayError(f"upcall {step.index} moves {count} bytes, but the client-core's I/O slots "
                                      f"hold {size} (give it a larger --desc-size)")

    async def _mount_from_header(self) -> None:
        """Mount what was mounted when the recording began, and learn those roots."""
        for entry in self.recording.header.get("mounts") or []:
            try:
                devname = str(entry["devname"]).encode()
                fs_id, mount_id, root = int(entry["fs_id"]), int(entry["id"]), bytes.fromhex(entry["root"])
            except (KeyError, TypeError, ValueError):
                raise RecordingError("line 1: a mount in the header is not {fs_id, id, devname, root}") from None
            if len(devname) >= ORANGEFS_MAX_SERVER_ADDR_LEN or len(root) != 16:
                raise RecordingError("line 1: a mount in the header has a bad device string or root")
            upcall = proto.encode_upcall({"type": OpCode.FS_MOUNT, "req": {"fs_mount": {
                "orangefs_config_server": devname}}})
            op, _, note = await self._service(upcall, uid=0, gid=0, pid=0, tgid=0)
            if op.result != 0:
                why = note or proto.errno_name(-op.result)
                raise ReplayError(f"mounting {devname.decode(errors='replace')} (mounted when the recording began) "
                                  f"failed: {why}")
            mounted = proto.decode_downcall(op.downcall, OpCode.FS_MOUNT).resp.fs_mount
            for kind, a, b in ((FS_ID, fs_id, mounted.fs_id), (MOUNT_ID, mount_id, mounted.id),
                               (HANDLE, root, bytes(mounted.root_khandle))):
                self.translator.learn(kind, a, b)
            self.kernel.add_mount(mounted.fs_id, mounted.id, devname, bytes(mounted.root_khandle))

    async def _one(self, step: Step) -> tuple[int, Divergence | None]:
        upcall = self.translator.upcall(step.upcall)
        uid, gid, pid, tgid = _CREDS.unpack_from(upcall, _CREDS_AT)
        fs_id = proto.upcall_fs_id(proto.decode_upcall(upcall))
        if fs_id and step.op not in _UNFILTERED and self.kernel.mount_by_fs_id(fs_id) is None:
            # The device read would pass it by for ever (spec §1.3 rule 2).
            raise ReplayError(f"upcall {step.index} (line {step.line}, {opname(step.op)}) is for fs_id {fs_id}, "
                              "which is not mounted: the recording began after its FS_MOUNT and its header "
                              "does not list the mount")
        op, answer, note = await self._service(upcall, uid=uid, gid=gid, pid=pid, tgid=tgid, data=step.data)
        if answer is None:
            return op.tag, Divergence("answer", f"a downcall (line {step.answer.line})", note or "none")
        divergence = compare(step, step.answer, answer, op.tag, self.translator)
        if divergence is None and op.result == 0:
            self._track_mounts(step.op, upcall, op)
        return op.tag, divergence

    def _track_mounts(self, op_type: int, upcall: bytes, op) -> None:
        """Keep the kernel's mount list as mount(2) and umount(2) would (``pvfs2ctl mounts`` shows it)."""
        if op_type == OpCode.FS_MOUNT:
            mounted = proto.decode_downcall(op.downcall, OpCode.FS_MOUNT).resp.fs_mount
            devname = proto.decode_upcall(upcall).req.fs_mount.orangefs_config_server
            self.kernel.add_mount(mounted.fs_id, mounted.id, devname, bytes(mounted.root_khandle))
        elif op_type == OpCode.FS_UMOUNT:
            req = proto.decode_upcall(upcall).req.fs_umount
            self.kernel.remove_mount(req.fs_id, req.id)

    async def _service(self, upcall: bytes, *, uid: int, gid: int, pid: int, tgid: int,
                       data: bytes | None = None):
        """One op as ``service_operation`` runs it, within the timeout.

        Returns (op, the replayed answer or None, why there is none).
        """
        kernel, broker = self.kernel, self.broker
        call = Call(broker, uid=uid, gid=gid, pid=pid, tgid=tgid)
        op = call.new_op(upcall)
        slots = slot = None
        if op.type in (OpCode.FILE_IO, OpCode.READDIR):
            slots = kernel.io_slots if op.type == OpCode.FILE_IO else kernel.readdir_slots
            with trio.move_on_after(self.timeout):
                slot = await call.get_slot(slots)
            if slot is None or slot < 0:
                raise ReplayError(f"no free {slots.name} slot within {self.timeout:g} s")
            kernel.set_slot(op, slot)
            (io_type,) = struct.unpack_from("<I", op.upcall, _IO_TYPE_AT)
            if op.type == OpCode.FILE_IO and io_type == IoType.WRITE and data:
                broker.buffers.io.slot(slot)[: len(data)] = data
        done = trio.Event()
        op.wake = done.set
        op.owner = call
        call.op = op
        kernel.service(op, broker.now())
        note = await self._wait(done)
        if note is not None:
            call.interrupt(fatal=True)
            with trio.move_on_after(1.0):
                await done.wait()
        call.op = None
        if slot is not None and op.result is not None:
            slots.put(slot, broker.now())
        answer = self.capture.answers.pop(op.tag, None)
        if answer is None and note is None and op.result is not None:
            note = f"none: the op ended with {proto.errno_name(-op.result) if op.result < 0 else op.result}"
            if op.purged:
                note += " (purged: the client-core closed the device)"
        return op, answer, note

    async def _wait(self, done: trio.Event) -> str | None:
        """Wait for ``done``; a reason if it did not come (timeout, or our client-core exited)."""
        deadline = trio.current_time() + self.timeout
        while not done.is_set():
            if self.process is not None and self.process.returncode is not None:
                return f"none: the client-core exited with status {self.process.returncode}"
            now = trio.current_time()
            if now >= deadline:
                return f"none within {self.timeout:g} s"
            with trio.move_on_after(min(0.1, deadline - now) if self.process is not None else deadline - now):
                await done.wait()
        return None


def _device_in_use(rundir: Path) -> bool:
    path = rundir / DEVICE_SOCKET
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        try:
            sock.connect(os.fspath(path))
        except OSError:
            return False
    return True


async def _start_clientcore(command: str, rundir: Path):
    argv = shlex.split(command) + ["--rundir", os.fspath(rundir)]
    try:
        return await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise ReplayError(f"cannot start the client-core {argv[0]!r}: {exc.strerror or exc}") from None


async def _stop(process) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            process.terminate()
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _wait_attached(server, process, timeout: float) -> None:
    """Until a client-core has the device open and its buffers mapped."""
    deadline = trio.current_time() + timeout
    while not (server.kernel.daemon_in_service and server.broker.buffers is not None):
        if process is not None and process.returncode is not None:
            raise ReplayError(f"the client-core exited with status {process.returncode} before it mapped its "
                              "buffers")
        if trio.current_time() >= deadline:
            raise ReplayError(f"no client-core mapped its buffers at {server.rundir / DEVICE_SOCKET} "
                              f"within {timeout:g} s")
        await trio.sleep(0.02)


async def replay(recording: Recording, rundir: Path, *, clientcore: str | None = None,
                 timeout: float = 10.0, announce=None) -> Report:
    """Serve a device in ``rundir``, start ``clientcore`` (if given), replay ``recording``, stop everything.

    Raises:
        ReplayError: the replay could not run.
        RecordingError: the header's mounts are malformed.
    """
    from .server import Config, Server

    if _device_in_use(rundir):
        raise ReplayError(f"a broker is already serving {rundir / DEVICE_SOCKET}")
    try:
        server = Server(Config(rundir=rundir))
    except OSError as exc:
        raise ReplayError(f"{rundir}: {exc.strerror or exc}") from None
    process = None
    failure: Exception | None = None
    report = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(server.run)
            if announce is not None:
                announce(f"serving the device at {rundir / DEVICE_SOCKET}; waiting for a client-core")
            if clientcore is not None:
                process = await _start_clientcore(clientcore, rundir)
            await _wait_attached(server, process, timeout)
            report = await Replayer(server.broker, recording, timeout=timeout, process=process).run()
        except (ReplayError, RecordingError) as exc:
            failure = exc  # raised below, not wrapped in the nursery's exception group
        except OSError as exc:
            failure = ReplayError(f"cannot serve the device in {rundir}: {exc.strerror or exc}")
        finally:
            with trio.CancelScope(shield=True):
                if process is not None:
                    await _stop(process)
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return report


__all__ = [
    "Answer", "Divergence", "EXIT_BAD_FILE", "EXIT_DIVERGED", "EXIT_FAILED", "EXIT_SAME", "Recording",
    "RecordingError", "Replayer", "ReplayError", "Report", "Step", "Translator", "compare", "load", "parse", "replay",
]
