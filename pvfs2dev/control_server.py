"""The control channel: ``pvfs2-ctl``, one JSON object per line each way (shared/DESIGN.md).

Requests are ``{"cmd": NAME, ...}``; replies are ``{"ok": true, ...}`` or
``{"ok": false, "errno": N, "error": "ENAME", "message": "..."}``.  Reading is
open to anyone who can reach the socket; changing anything (setting a knob or
a debug mask) needs the broker's own uid or root, from SO_PEERCRED.

Commands: ``status``, ``ops``, ``buffers`` (``dump``: a slot index),
``mounts`` (with the FUSE mountpoint of each, if any), ``mount`` and
``umount`` (a FUSE mount served by the broker: ``mountpoint``, ``fsname``,
``options``), ``fault`` (kernel-side faults: ``action``, see
:meth:`ControlServer.cmd_fault`), ``params`` (``name``, ``value``), ``stats``, ``debug`` (``which``:
kernel|client, ``value``: keywords), ``perf`` (``type``: acache|ncache|capcache)
and ``trace``, which streams one line per state transition until the peer
goes away (with ``"record": true`` also one per upcall and downcall, the
byte-level records ``pvfs2ctl trace --record`` writes and ``pvfs2dev replay``
reads).
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os

import trio

import pvfs2proto as proto
from pvfs2proto import OpCode, OpFlags, ParamRequestType, PerfCountType
from pvfs2proto.debug import kernel_keywords_to_mask, kernel_mask_to_keywords
from pvfs2proto.upcall import value32_pair, value64_of

from . import params as sysfs
from .broker import Broker, guarded
from .mounts import DEFAULT_FSNAME, FuseMounts
from .recorder import Lost, Record, RecordStream
from .recorder import header as recording_header
from .vfs import Call
from .vfs_server import peer_credentials

log = logging.getLogger("pvfs2dev.control")

MAX_LINE = 64 * 1024


class ControlError(OSError):
    pass


def _is_int(value) -> bool:
    """A JSON integer (``true`` and ``false`` are ints to Python, not to a request)."""
    return isinstance(value, int) and not isinstance(value, bool)


class ControlServer:
    def __init__(self, broker: Broker, mounts: FuseMounts | None = None) -> None:
        self.broker = broker
        self.kernel = broker.kernel
        self.mounts = mounts

    async def serve(self, listener: trio.SocketListener, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(guarded, self._connection, "control connection", stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        pid, uid, gid = peer_credentials(stream.socket)
        buffer = bytearray()
        try:
            async with stream:
                while True:
                    while b"\n" not in buffer:
                        if len(buffer) > MAX_LINE:
                            return
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    line, _, rest = buffer.partition(b"\n")
                    buffer = bytearray(rest)
                    try:
                        request = json.loads(line)
                        if not isinstance(request, dict):
                            raise ValueError("a request is a JSON object")
                    except ValueError as exc:
                        await _send(stream, _error(errno.EINVAL, f"bad request: {exc}"))
                        continue
                    if request.get("cmd") == "trace":
                        await self._trace(stream, request)
                        return
                    try:
                        reply = await self.handle(request, uid=uid, gid=gid, pid=pid)
                    except OSError as exc:
                        reply = _error(exc.errno or errno.EINVAL, exc.strerror or str(exc))
                    except (ValueError, TypeError) as exc:
                        # A field of the wrong type or value: the request is bad, the peer stays.
                        reply = _error(errno.EINVAL, f"bad request: {exc}")
                    await _send(stream, reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass

    async def handle(self, request: dict, *, uid: int, gid: int, pid: int) -> dict:
        """Answer one request (see the module docstring)."""
        cmd = request.get("cmd")
        handler = getattr(self, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
        if handler is None:
            raise ControlError(errno.EINVAL, f"unknown command {cmd!r}")
        return {"ok": True, **await handler(request, uid=uid, gid=gid, pid=pid)}

    def _may_change(self, uid: int) -> None:
        if uid not in (0, os.geteuid()):
            raise ControlError(errno.EPERM, "changing the broker needs its owner or root")

    # -- read-only views ---------------------------------------------------------------------

    async def cmd_status(self, request, **_) -> dict:
        k = self.kernel
        states: dict[str, int] = {}
        for op in k.live.values():
            name = proto.state_names(op.state) if op.linked != "mutex" else "mutex"
            states[name] = states.get(name, 0) + 1
        return {
            "open_count": k.open_count,
            "daemon_in_service": k.daemon_in_service,
            "userspace_version": k.userspace_version,
            "features": k.features,
            "mounts": self._mounts(),
            "buffers": self._buffers(),
            "ops_by_state": states,
            "request_list": len(k.requests),
            "in_progress": len(k.in_progress),
            "uptime": self.broker.now() - k.started,
            "faults": self.broker.faults.snapshot(),
        }

    async def cmd_ops(self, request, **_) -> dict:
        k, now = self.kernel, self.broker.now()
        rows = []
        positions = {op.tag: i for i, op in enumerate(k.requests.head())}
        for op in sorted(k.live.values(), key=lambda o: o.tag):
            where = op.linked or "-"
            if op.linked == "request":
                where = f"request:{positions.get(op.tag, '?')}"
            elif op.linked == "inprogress":
                where = f"bucket:{k.in_progress.bucket_of(op.tag)}"
            rows.append(
                {
                    "tag": op.tag,
                    "op": op.name,
                    "state": op.state,
                    "state_names": proto.state_names(op.state),
                    "age": now - op.created,
                    "attempts": op.attempts,
                    "uid": op.uid,
                    "gid": op.gid,
                    "pid": op.pid,
                    "tgid": op.tgid,
                    "fs_id": op.fs_id,
                    "slot": op.slot,
                    "where": where,
                    "cancel": op.is_cancel,
                }
            )
        return {"ops": rows}

    async def cmd_buffers(self, request, **_) -> dict:
        reply = {"maps": self._buffers()}
        dump = request.get("dump")
        if dump is not None:
            buffers = self.broker.buffers
            if buffers is None:
                raise ControlError(errno.ENXIO, "no shared buffer is mapped")
            if not isinstance(dump, int) or not 0 <= dump < buffers.io.count:
                raise ControlError(errno.EINVAL, f"no I/O slot {dump!r}")
            length = min(int(request.get("length", 4096)), buffers.io.slot_size)
            reply["dump"] = base64.b64encode(bytes(buffers.io.slot(dump)[:length])).decode()
        return reply

    async def cmd_mounts(self, request, **_) -> dict:
        return {"mounts": self._mounts()}

    async def cmd_stats(self, request, **_) -> dict:
        snapshot = self.kernel.stats.snapshot()
        snapshot["request_list"] = len(self.kernel.requests)
        snapshot["in_progress"] = len(self.kernel.in_progress)
        return snapshot

    def _mounts(self) -> list[dict]:
        where = self.mounts.mountpoint_of if self.mounts is not None else (lambda fs_id: None)
        return [
            {"fs_id": m.fs_id, "id": m.id, "devname": m.devname.decode(errors="replace"),
             "root": m.root_khandle.hex(), "pending": m.pending, "mountpoint": where(m.fs_id)}
            for m in self.kernel.mounts
        ]

    # -- kernel-side faults ----------------------------------------------------------------------------

    async def cmd_fault(self, request, *, uid, **_) -> dict:
        """Arrange a kernel-side fault (pvfs2dev/faults.py); ``action`` says which, ``show`` (the default) lists them.

        Actions: ``interrupt`` (``tag``, ``fatal``), ``hold-slots`` (``map``:
        io|readdir, ``count``), ``release-slots`` (``map`` and ``count``, optional),
        ``pause-reads``, ``resume-reads``.  Errors: EPERM (not the owner or
        root), EINVAL, ESRCH (no op with that tag), ENXIO (no buffer mapped).
        """
        faults = self.broker.faults
        action = request.get("action", "show")
        if action == "show":
            return {"faults": faults.snapshot()}
        self._may_change(uid)
        if action == "interrupt":
            tag, fatal = request.get("tag"), request.get("fatal", False)
            if not _is_int(tag) or not isinstance(fatal, bool):
                raise ControlError(errno.EINVAL, "interrupt needs an integer tag (and a boolean fatal)")
            return {"tag": tag, "op": faults.interrupt(tag, fatal=fatal), "fatal": fatal}
        if action == "hold-slots":
            name, count = request.get("map", "io"), request.get("count", 1)
            if not isinstance(name, str) or not _is_int(count):
                raise ControlError(errno.EINVAL, "hold-slots needs a map name and an integer count")
            return {"map": name, "taken": faults.hold_slots(name, count), "faults": faults.snapshot()}
        if action == "release-slots":
            name, count = request.get("map"), request.get("count")
            if (name is not None and not isinstance(name, str)) or (count is not None and not _is_int(count)):
                raise ControlError(errno.EINVAL, "release-slots takes a map name and an integer count")
            return {"released": faults.release_slots(name, count), "faults": faults.snapshot()}
        if action in ("pause-reads", "resume-reads"):
            faults.pause_reads(action == "pause-reads")
            return {"faults": faults.snapshot()}
        raise ControlError(errno.EINVAL, f"unknown fault action {action!r}")

    # -- FUSE mounts ---------------------------------------------------------------------------------

    async def cmd_mount(self, request, *, uid, **_) -> dict:
        """Mount with FUSE at ``mountpoint`` (``fsname``, ``options``): FS_MOUNT, then FUSE serves it.

        Errors: EPERM (not the owner or root), EBUSY (a FUSE mount is already
        served), ENOENT/ENOTDIR, EINVAL, the FS_MOUNT's errno, EIO.
        """
        self._may_change(uid)
        if self.mounts is None:
            raise ControlError(errno.EOPNOTSUPP, "this broker cannot mount")
        mountpoint, options = request.get("mountpoint"), request.get("options", [])
        fsname = request.get("fsname", DEFAULT_FSNAME)
        if not isinstance(mountpoint, str) or not mountpoint:
            raise ControlError(errno.EINVAL, "mount needs a mountpoint")
        if not isinstance(fsname, str) or not isinstance(options, list) \
                or not all(isinstance(o, str) for o in options):
            raise ControlError(errno.EINVAL, "fsname is a string and options a list of strings")
        front = await self.mounts.mount(mountpoint, fsname=fsname, options=options)
        return {"mountpoint": str(front.mountpoint), "fs_id": front.ops.fs_id, "id": front.ops.mount_id}

    async def cmd_umount(self, request, *, uid, **_) -> dict:
        """Unmount the FUSE mount at ``mountpoint`` (written data goes out first, then FS_UMOUNT).

        Errors: EPERM, EINVAL (nothing of ours mounted there).
        """
        self._may_change(uid)
        mountpoint = request.get("mountpoint")
        if not isinstance(mountpoint, str) or self.mounts is None:
            raise ControlError(errno.EINVAL, "umount needs the mountpoint of a FUSE mount")
        await self.mounts.umount(mountpoint)
        return {"mountpoint": mountpoint}

    def _buffers(self) -> list[dict]:
        out = []
        for slots in (self.kernel.io_slots, self.kernel.readdir_slots):
            s = slots.statistics()
            out.append({"name": s.name, "count": s.count, "c": s.c, "busy": list(s.busy), "waiters": s.waiters})
        buffers = self.broker.buffers
        if buffers is not None:
            out[0]["slot_size"] = buffers.io.slot_size
            out[1]["slot_size"] = buffers.readdir.slot_size
        return out

    # -- knobs -------------------------------------------------------------------------------------

    async def cmd_params(self, request, *, uid, gid, pid) -> dict:
        name, value = request.get("name"), request.get("value")
        if name is None:
            return {"params": [{"name": p.name, "kind": p.kind, "value": self.kernel.params.get(p.name)}
                               for p in sysfs.PARAMS.values()]}
        param = sysfs.lookup(str(name))
        if value is None:
            return {"name": param.name, "value": await self._param_show(param, uid, gid, pid)}
        self._may_change(uid)
        if param.kind in ("daemon", "perf"):
            # sysfs_service_op_store looks for the daemon before it parses.
            self._daemon_knob_allowed(param)
        values = sysfs.parse_store(param, str(value))
        await self._param_store(param, values, uid, gid, pid)
        return {"name": param.name, "value": await self._param_show(param, uid, gid, pid)}

    async def _param_show(self, param: sysfs.Param, uid, gid, pid) -> str:
        k = self.kernel
        if param.kind == "local":
            return f"{k.params[param.name]}\n"
        if param.kind == "stats":
            return f"{k.stats.reads if param.name.endswith('reads') else k.stats.writes}\n"
        self._daemon_knob_allowed(param)  # EIO first, as sysfs_service_op_show
        if param.kind == "perf":
            raise ControlError(errno.EINVAL, f"{param.name}: unknown kobject (kernel quirk, spec §6.1)")
        op = await self._param_upcall(param, ParamRequestType.GET, 0, uid, gid, pid)
        reply = proto.decode_downcall(op.downcall, OpCode.PARAM)
        value64 = reply.resp.param.u.value64
        if param.pair:
            return "%d %d\n" % value32_pair(value64)
        return f"{value64}\n"

    async def _param_store(self, param: sysfs.Param, values: tuple[int, ...], uid, gid, pid) -> None:
        if param.kind == "local":
            self.kernel.params[param.name] = values[0]
            return
        self._daemon_knob_allowed(param)
        value64 = value64_of(*values) if param.pair else values[0]
        await self._param_upcall(param, ParamRequestType.SET, value64, uid, gid, pid)

    def _daemon_knob_allowed(self, param: sysfs.Param) -> None:
        """EIO without a client-core; EINVAL for a readahead knob it did not offer."""
        if not self.kernel.daemon_in_service:
            raise ControlError(errno.EIO, "the client-core is not running")
        if param.readahead and not self.kernel.features & proto.Features.READAHEAD:
            raise ControlError(errno.EINVAL, f"{param.name} needs the client-core's READAHEAD feature")

    async def _param_upcall(self, param, request_type, value64, uid, gid, pid, s_value: bytes = b""):
        upcall = proto.encode_upcall(
            {
                "type": OpCode.PARAM,
                "req": {"param": {"type": request_type, "op": param.param_op,
                                  "u": {"value64": value64}, "s_value": s_value}},
            }
        )
        op = await self._upcall(upcall, uid, gid, pid)
        if op.result != 0:
            # sysfs answers a failed PARAM upcall with EINVAL (orangefs-sysfs.c).
            raise ControlError(errno.EINVAL, f"{param.name}: the client-core answered {proto.errno_name(-op.result)}")
        return op

    async def _upcall(self, upcall: bytes, uid, gid, pid):
        call = Call(self.broker, uid=uid, gid=gid, pid=pid, tgid=pid, flags=OpFlags.INTERRUPTIBLE)
        op = call.new_op(upcall)
        await call.service(op)
        return op

    # -- debugfs and perf counters --------------------------------------------------------------------

    async def cmd_debug(self, request, *, uid, gid, pid) -> dict:
        which, value = request.get("which", "kernel"), request.get("value")
        k = self.kernel
        if which == "kernel":
            if value is not None:
                self._may_change(uid)
                k.kernel_debug_mask = kernel_keywords_to_mask(str(value)[:2048])
            return {"which": "kernel", "value": kernel_mask_to_keywords(k.kernel_debug_mask)}
        if which == "client":
            keywords = k.client_debug_keywords or []
            if value is not None:
                self._may_change(uid)
                mask1 = mask2 = 0
                wanted = {w.strip() for w in str(value)[:2048].split(",")}
                for kw in keywords:
                    if kw.keyword in wanted or "all" in wanted:
                        mask1 |= kw.mask1
                        mask2 |= kw.mask2
                if not k.daemon_in_service:
                    raise ControlError(errno.EFAULT, "the client-core is not running")
                s_value = f"{mask1:x} {mask2:x}\n".encode()
                param = sysfs.Param("client-debug", "daemon", proto.ParamOp.TWO_MASK_VALUES)
                await self._param_upcall(param, ParamRequestType.SET, 0, uid, gid, pid, s_value)
                k.client_debug_masks = (mask1, mask2)
            mask1, mask2 = k.client_debug_masks
            names = [kw.keyword for kw in keywords if (kw.mask1 or kw.mask2)
                     and (kw.mask1 & mask1) == kw.mask1 and (kw.mask2 & mask2) == kw.mask2]
            return {"which": "client", "value": ",".join(names) or "none",
                    "keywords": [kw.keyword for kw in keywords] if keywords else None}
        raise ControlError(errno.EINVAL, f"debug: which is 'kernel' or 'client', not {which!r}")

    async def cmd_perf(self, request, *, uid, gid, pid) -> dict:
        name = str(request.get("type", "")).upper()
        try:
            perf_type = PerfCountType[name]
        except KeyError:
            raise ControlError(errno.EINVAL, "perf type is acache, ncache or capcache") from None
        if not self.kernel.daemon_in_service:
            raise ControlError(errno.EIO, "the client-core is not running")
        upcall = proto.encode_upcall({"type": OpCode.PERF_COUNT, "req": {"perf_count": {"type": perf_type}}})
        op = await self._upcall(upcall, uid, gid, pid)
        if op.result != 0:
            raise ControlError(-op.result, f"PERF_COUNT failed: {proto.errno_name(-op.result)}")
        text = proto.decode_downcall(op.downcall, OpCode.PERF_COUNT).resp.perf_count.buffer
        return {"type": name.lower(), "text": text.decode(errors="replace")}

    # -- trace stream -----------------------------------------------------------------------------------

    async def _trace(self, stream: trio.SocketStream, request: dict) -> None:
        """Stream transitions; with ``"record": true`` also every upcall and downcall (pvfs2dev/recorder.py).

        The reply to a recording request carries the recording's header line
        (``record``); the stream then interleaves transitions (``before`` and
        ``after``) with records (``event`` upcall, downcall, map, or lost when
        this reader fell behind and records were dropped).
        """
        record = request.get("record", False)
        if not isinstance(record, bool):
            await _send(stream, _error(errno.EINVAL, "bad request: record is true or false"))
            return
        # Records need room: a recording reader gets a deeper queue (bounded in bytes as well).
        send, receive = trio.open_memory_channel(65536 if record else 4096)
        records = RecordStream(send) if record else None
        start = self.broker.now()
        self.broker.subscribe(send)
        if records is not None:
            self.broker.subscribe_records(records)
        try:
            reply = {"ok": True, "trace": "started"}
            if records is not None:
                reply["record"] = recording_header(self.broker, start)
            await _send(stream, reply)
            async with receive, trio.open_nursery() as nursery:
                # A reader that goes away stops the stream at once, not at the next event.
                nursery.start_soon(_until_closed, stream, nursery.cancel_scope)
                async for event in receive:
                    if records is not None and isinstance(event, (Record, Lost)):
                        records.taken(event)
                        await _send(stream, event.as_dict(start))
                    else:
                        await _send(stream, event.as_dict())
        finally:
            self.broker.unsubscribe(send)
            if records is not None:
                self.broker.unsubscribe_records(records)
            send.close()


async def _until_closed(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Read (and ignore) what a trace reader sends until it closes, then cancel ``scope``."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass
    scope.cancel()


def _error(err: int, message: str) -> dict:
    return {"ok": False, "errno": err, "error": proto.errno_name(err), "message": message}


async def _send(stream: trio.SocketStream, obj: dict) -> None:
    await stream.send_all(json.dumps(obj).encode() + b"\n")
