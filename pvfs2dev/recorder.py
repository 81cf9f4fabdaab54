"""Byte-level recording at the device edge: every upcall read and every downcall written (issue 7).

Why the edge and not :mod:`.kernel`: what a client-core sees and says is
exactly what crosses ``pvfs2-req`` — the 8544-byte read frame, the write
(downcall frame and READDIR trailer) with the result the write got — plus the
shared-buffer bytes a FILE_IO moves.  Capturing there records whatever the
kernel core does, without touching it, and a replay can feed those bytes to
another client-core and compare its writes the same way.

Cost: the device server checks ``broker.recorder`` (None unless someone
records) once per READ and WRITE.  While a recording runs, a READ copies the
frame (and, for a FILE_IO write, the slot bytes ``[0, count)`` the client-core
is about to take), a WRITE copies the payload (and, for a successful FILE_IO
read, the slot bytes ``[0, amt_complete)`` the client-core put there) *before*
the kernel consumes it — the waiting caller may reuse the slot once woken.
Base64 and JSON are done later, by each reader's task, not on the device path.

Readers (:class:`RecordStream`) are bounded by bytes and by count: a reader
that falls behind loses records rather than stall the device, and is told so
by a :class:`Lost` marker ahead of the next record it gets.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import struct
import time
from typing import Callable

import trio

from pvfs2proto import IoType, OpCode, opname
from pvfs2proto.constants import MAX_DEV_REQ_DOWNSIZE, MAX_DEV_REQ_UPSIZE, READDIR_TRAILER_MAX

#: The format written by ``pvfs2ctl trace --record`` and read by ``pvfs2dev replay``.
FORMAT = "pvfs2dev-recording"
FORMAT_VERSION = 1

_HEAD = struct.Struct("<iiQ")  # read frame: version, magic, tag
_U32 = struct.Struct("<I")
_IO = struct.Struct("<iiii")  # req.io: __pad1, buf_index, count, __pad2 (frame offset 56)
_IO_AT = 16 + 40
_IO_TYPE_AT = 16 + 88
_STATUS_AT = 16 + 4  # downcall.status in a write frame
_AMT_AT = 16 + 24  # downcall.resp.io.amt_complete in a write frame
_FILE_IO = int(OpCode.FILE_IO)
_WRITE = int(IoType.WRITE)
_READ = int(IoType.READ)
#: The largest frame a record may describe (a write of the largest READDIR trailer).
_MAX_FRAME = MAX_DEV_REQ_UPSIZE + READDIR_TRAILER_MAX
#: Ops read but not yet answered that the recorder keeps track of, at most.
_MAX_PENDING = 65536


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclasses.dataclass(slots=True)
class Record:
    """One upcall read or one downcall written, as the device edge saw it.

    ``frame`` is the whole read frame (upcall) or the whole write (downcall
    frame plus any trailer); ``result`` is the write's return value (bytes or
    -errno); ``data`` the slot bytes described in the module docstring.
    """

    event: str  # "upcall" | "downcall" | "map"
    now: float
    tag: int = 0
    op: int = 0
    frame: bytes = b""
    result: int | None = None
    data: bytes | None = None
    info: dict | None = None  # map: the geometry

    @property
    def size(self) -> int:
        return len(self.frame) + len(self.data or b"")

    def as_dict(self, start: float) -> dict:
        """The JSON line (see :func:`encode_frame` for how the frame is written)."""
        out: dict = {"event": self.event, "t": round(self.now - start, 6), "time": round(self.now, 6)}
        if self.event == "map":
            out.update(self.info or {})
            return out
        out["tag"] = self.tag
        out["op"] = opname(self.op)
        out.update(encode_frame(self.frame, trailer_at=MAX_DEV_REQ_DOWNSIZE if self.event == "downcall" else None))
        if self.result is not None:
            out["result"] = self.result
        if self.data is not None:
            out["data"] = b64(self.data)
        return out


@dataclasses.dataclass(slots=True)
class Lost:
    """``count`` records a reader did not get (it fell behind)."""

    count: int
    now: float

    def as_dict(self, start: float) -> dict:
        return {"event": "lost", "t": round(self.now - start, 6), "count": self.count}


def encode_frame(frame: bytes, *, trailer_at: int | None) -> dict:
    """``frame`` (base64 of the bytes up to the last non-zero one) and ``size``; a write's trailer apart.

    Frames are mostly zeros (an 8544-byte upcall holds a name or two), so the
    zeros at the end are left out and ``size`` says how long the frame was:
    the bytes are ``frame`` padded with zeros to ``size``, then ``trailer``.
    """
    body, trailer = frame, b""
    if trailer_at is not None and len(frame) > trailer_at:
        body, trailer = frame[:trailer_at], frame[trailer_at:]
    out = {"size": len(body), "frame": b64(body.rstrip(b"\0"))}
    if trailer:
        out["trailer"] = b64(trailer)
    return out


def decode_frame(entry: dict) -> bytes:
    """The bytes :func:`encode_frame` wrote into ``entry`` (a record's JSON object).

    Raises:
        ValueError: with a one-line reason (a missing or non-base64 field, a size that does not fit).
    """
    parts = []
    for key in ("frame", "trailer"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{key} is not base64 text")
        try:
            parts.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError(f"{key} is not valid base64") from None
    body, trailer = parts
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not len(body) <= size <= _MAX_FRAME:
        raise ValueError(f"size {size!r} does not fit a frame of {len(body)} bytes")
    return body.ljust(size, b"\0") + trailer


class RecordStream:
    """One reader of the records: a memory channel, bounded by count and by bytes queued."""

    def __init__(self, channel: trio.MemorySendChannel, *, budget: int = 256 << 20) -> None:
        self.channel = channel
        self.budget = budget
        self.queued = 0
        self.lost = 0
        self.closed = False

    def offer(self, record: Record) -> None:
        size = record.size
        if self.queued + size > self.budget:
            self.lost += 1
            return
        if self.lost:
            # Say what was lost first, so the reader knows where the gap is.
            if not self._send(Lost(self.lost, record.now), 0):
                self.lost += 1
                return
            self.lost = 0
        if not self._send(record, size):
            self.lost += 1

    def _send(self, item, size: int) -> bool:
        try:
            self.channel.send_nowait(item)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            return False
        self.queued += size
        return True

    def taken(self, item) -> None:
        """The reader has ``item`` off the channel: its bytes no longer count."""
        if isinstance(item, Record):
            self.queued -= item.size


class Recorder:
    """The device edge's hook while at least one reader records (``broker.recorder``)."""

    def __init__(self, io_slot: Callable[[int], memoryview | None]) -> None:
        #: ``io_slot(i)``: the bytes of I/O slot i, or None with no buffer mapped.
        self.io_slot = io_slot
        self.streams: set[RecordStream] = set()
        #: tag → (op type, slot, count, io_type) of ops read and not yet answered.
        self.pending: dict[int, tuple[int, int, int, int]] = {}

    def _emit(self, record: Record) -> None:
        for stream in list(self.streams):
            stream.offer(record)
            if stream.closed:
                self.streams.discard(stream)

    def _slot_bytes(self, slot: int, count: int) -> bytes:
        view = self.io_slot(slot) if slot >= 0 else None
        if view is None:
            return b""
        return bytes(view[: max(0, min(count, len(view)))])

    def read(self, frame: bytes, now: float) -> None:
        """A READ handed out ``frame``."""
        _, _, tag = _HEAD.unpack_from(frame)
        (op_type,) = _U32.unpack_from(frame, 16)
        data = None
        slot = count = io_type = -1
        if op_type == _FILE_IO:
            _, slot, count, _ = _IO.unpack_from(frame, _IO_AT)
            (io_type,) = _U32.unpack_from(frame, _IO_TYPE_AT)
            if io_type == _WRITE:
                data = self._slot_bytes(slot, count)
        if len(self.pending) >= _MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))
        self.pending[tag] = (op_type, slot, count, io_type)
        self._emit(Record("upcall", now, tag, op_type, bytes(frame), data=data))

    def write(self, dev_write: Callable[[memoryview, float], int], payload: memoryview, now: float) -> int:
        """A WRITE of ``payload``: capture it, let ``dev_write`` consume it, record its result."""
        frame = bytes(payload)
        tag = op_type = 0
        data = None
        if len(frame) >= 24:
            _, _, tag = _HEAD.unpack_from(frame)
            (op_type,) = _U32.unpack_from(frame, 16)  # the type it claims, if its op was read before we began
            known = self.pending.pop(tag, None)
            if known is not None:
                op_type, slot, count, io_type = known
                if io_type == _READ and len(frame) >= _AMT_AT + 8:
                    (status,) = struct.unpack_from("<i", frame, _STATUS_AT)
                    (amt,) = struct.unpack_from("<q", frame, _AMT_AT)
                    if status == 0:
                        data = self._slot_bytes(slot, min(amt, count))
        try:
            result = dev_write(payload, now)
        except OSError as exc:
            self._emit(Record("downcall", now, tag, op_type, frame, result=-(exc.errno or 0), data=data))
            raise
        self._emit(Record("downcall", now, tag, op_type, frame, result=result, data=data))
        return result

    def mapped(self, count: int, size: int, now: float) -> None:
        """MAP installed an I/O buffer of ``count`` slots of ``size`` bytes."""
        self.pending.clear()
        self._emit(Record("map", now, info={"count": count, "size": size}))


def header(broker, start: float) -> dict:
    """The first line of a recording: format, versions, slot geometry and the mounts at its start."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        broker_version = version("pvfs2dev")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        broker_version = "unknown"
    kernel = broker.kernel
    buffers = broker.buffers
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "broker": broker_version,
        "wall": round(time.time(), 6),
        "time": round(start, 6),
        "userspace_version": kernel.userspace_version,
        "io_slots": None if buffers is None else {"count": buffers.io.count, "size": buffers.io.slot_size},
        "readdir_slots": None if buffers is None else {"count": buffers.readdir.count,
                                                       "size": buffers.readdir.slot_size},
        "mounts": [{"fs_id": m.fs_id, "id": m.id, "devname": m.devname.decode(errors="replace"),
                    "root": m.root_khandle.hex()} for m in kernel.mounts],
    }


__all__ = ["FORMAT", "FORMAT_VERSION", "Lost", "Record", "RecordStream", "Recorder", "decode_frame", "encode_frame",
           "header"]
