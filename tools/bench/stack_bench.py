"""Whole-stack benchmark: caller → broker → clientcore → embedded store → back.

    python -m tools.bench.stack_bench [--runs 5] [--seconds 2] [--mib 256] [--json | --markdown]

Figures, each the median of ``--runs`` timed runs after a warm-up (min–max):

* **GETATTR end to end**, 64 in flight: ops/s through the broker, the
  ``clientcore`` daemon and its SQLite store (three processes).
* **FILE_IO write / read**, 4 MiB requests through 4 MiB slots, 4 in flight:
  MB/s of a ``--mib`` file whose data stays in the page cache.
* beside them, in the same run: a 4 MiB ``memcpy`` into an mmap (one copy, the
  floor of any shared-buffer design) and ``pwrite``/``pread`` of 4 MiB on a
  page-cache file (what the store's own syscalls cost).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import click
import trio
from rich.console import Console
from rich.table import Table

import pvfs2proto as proto
from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY

from .broker_bench import PY, Caller, _message, _summary, _wait_in_service, broker, round_trip_rates, stop

CHUNK = 4 << 20


@contextlib.contextmanager
def stack(tmp: Path):
    """``pvfs2dev serve`` and ``clientcore`` on a new store in ``tmp`` (10 slots of 4 MiB); yields the run directory."""
    rundir, store = tmp / "run", tmp / "store"
    with broker(rundir):
        core = subprocess.Popen([PY, "-m", "clientcore.daemon", "--rundir", str(rundir), "--store", str(store),
                                 "--desc-count", "10", "--desc-size", "4MiB", "--log-level", "warning"],
                                stdin=subprocess.DEVNULL)
        try:
            yield rundir
        finally:
            stop(core)


class DataCaller(Caller):
    """A caller that also carries data and reads replies whole."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._scratch = memoryview(bytearray(8 << 20))
        self._head = bytearray()  # a partial reply head
        self._skip = 0  # bytes of the current reply's body still to pass over
        self._current: tuple[int, int] = (0, 0)  # (req_id, result) of the reply being passed over

    def send_with(self, upcall: bytes, data: bytes = b"") -> None:
        message = _message(self.next_id, upcall)
        self.next_id += 1
        length = VFS_LENGTH.unpack_from(message)[0] + len(data)
        self.send_all(VFS_LENGTH.pack(length) + message[4:] + data)

    async def results(self) -> list[int]:
        """Results of the replies that have arrived whole (waits for at least one), bodies skipped."""
        return [result for _, result in await self.completions()]

    async def completions(self) -> list[tuple[int, int]]:
        """``(req_id, result)`` of the replies that have arrived whole (waits for at least one), bodies skipped.

        The caller of a benchmark must not spend more on a 4 MiB reply than the
        stack does: headers are parsed from a scratch buffer, bodies passed
        over.  A reply counts once its last byte is here — a FILE_IO read is
        not done when its head arrives — so when every reply of a phase has
        been counted, nothing of them is left on the socket for the next.
        """
        need = VFS_LENGTH.size + VFS_REPLY.size
        while True:
            try:
                n = self.sock.recv_into(self._scratch)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not n:
                raise ConnectionError("broker closed the VFS channel")
            pos, results = 0, []
            while pos < n:
                if self._skip:
                    step = min(self._skip, n - pos)
                    self._skip -= step
                    pos += step
                    if not self._skip:
                        results.append(self._current)
                    continue
                take = min(need - len(self._head), n - pos)
                self._head += self._scratch[pos : pos + take]
                pos += take
                if len(self._head) == need:
                    (length,) = VFS_LENGTH.unpack_from(self._head)
                    result, _, req_id = VFS_REPLY.unpack_from(self._head, VFS_LENGTH.size)
                    self._current = (req_id, result)
                    self._skip = length - VFS_REPLY.size
                    self._head = bytearray()
                    if not self._skip:
                        results.append(self._current)
            if results:
                return results

    async def whole_replies(self) -> list[tuple[int, bytes]]:
        """(result, body after the reply head) of every reply that has arrived.

        Raises:
            RuntimeError: :meth:`completions` is part way through a reply (the two readers cannot share one).
        """
        if self._head or self._skip:
            raise RuntimeError("a reply is half read by completions(): finish a phase before calling whole_replies()")
        return await self.replies(bodies=True)


def _upcall(op, member, body) -> bytes:
    return proto.encode_upcall({"type": op, "req": {member: body}})


async def _mount(caller: DataCaller) -> dict:
    caller.send_with(_upcall(proto.OpCode.FS_MOUNT, "fs_mount",
                             {"orangefs_config_server": b"tcp://localhost:3334/pvfs2-fs"}))
    result, body = (await caller.whole_replies())[0]
    if result:
        raise RuntimeError(f"mount failed: {result}")
    info = proto.decode_downcall(body[: proto.DOWNCALL_SIZE], proto.OpCode.FS_MOUNT).resp.fs_mount
    return {"khandle": info.root_khandle, "fs_id": info.fs_id}


async def call(caller: DataCaller, op: int, member: str, body: dict, data: bytes = b""):
    """Submit one upcall and wait: its decoded downcall (and the bytes after it).

    Raises:
        OSError: the reply's errno.
    """
    caller.send_with(_upcall(op, member, body), data)
    result, reply = (await caller.whole_replies())[0]
    if result:
        raise OSError(-result, f"{proto.opname(op)}: {os.strerror(-result)}")
    return proto.decode_downcall(reply[: proto.DOWNCALL_SIZE], op), reply[proto.DOWNCALL_SIZE :]


async def open_stack(rundir: Path) -> tuple[DataCaller, dict]:
    """A caller on the stack in ``rundir`` once it is in service, after FS_MOUNT: (caller, root refn)."""
    await _wait_in_service(rundir)
    caller = DataCaller(rundir / "pvfs2-vfs")
    try:
        return caller, await _mount(caller)
    except BaseException:
        caller.close()
        raise


def getattr_upcall(refn: dict) -> bytes:
    return _upcall(proto.OpCode.GETATTR, "getattr", {"refn": refn, "mask": proto.AttrMask.ALL_NOHINT})


async def create_file(caller: DataCaller, parent: dict, name: bytes) -> dict:
    """CREATE ``name`` in ``parent`` (mode 644): the new file's refn."""
    down, _ = await call(caller, proto.OpCode.CREATE, "create",
                         {"parent_refn": parent, "attributes": {"perms": 0o644, "mask": 0x3F}, "d_name": name})
    refn = down.resp.create.refn
    return {"khandle": refn.khandle, "fs_id": refn.fs_id}


async def file_io_rates(caller: DataCaller, root: dict, runs: int, mib: int) -> dict[str, list[float]]:
    """{"write"|"read": MB/s per run} of FILE_IO, 4 MiB requests, 4 in flight, over a new ``mib`` MiB file."""
    refn = await create_file(caller, root, f"bench-{os.getpid()}-{time.monotonic_ns()}".encode())
    data = os.urandom(CHUNK)
    total = mib << 20
    out = {}
    for io_type, label in ((proto.IoType.WRITE, "write"), (proto.IoType.READ, "read")):
        rates = []
        for run in range(runs + 1):  # the first run warms up
            rate = await _stream(caller, refn, io_type, data, total)
            if run:
                rates.append(rate)
        out[label] = rates
    return out


async def measure_stack(runs: int, seconds: float, mib: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="pvfs2bench-") as tmp, stack(Path(tmp)) as rundir:
        caller, root = await open_stack(rundir)
        try:
            upcall = getattr_upcall(root)
            for inflight in (1, 64):
                results[f"GETATTR end to end, {inflight} in flight, ops/s"] = _summary(
                    await round_trip_rates(caller, inflight, runs, seconds, upcall))
            for label, rates in (await file_io_rates(caller, root, runs, mib)).items():
                results[f"FILE_IO {label}, 4 MiB × 4 in flight, MB/s"] = _summary(rates)
        finally:
            caller.close()
    return results


async def _stream(caller: DataCaller, refn: dict, io_type: int, data: bytes, total: int) -> float:
    inflight, offset, done = 4, 0, 0
    start = time.perf_counter()

    def send_next() -> None:
        nonlocal offset
        up = _upcall(proto.OpCode.FILE_IO, "io", {"count": CHUNK, "offset": offset, "refn": refn, "io_type": io_type})
        caller.send_with(up, data if io_type == proto.IoType.WRITE else b"")
        offset += CHUNK

    for _ in range(inflight):
        send_next()
    while done < total:
        for result in await caller.results():
            if result:
                raise RuntimeError(f"FILE_IO failed: {result}")
            done += CHUNK
            if offset < total:
                send_next()
    return total / (time.perf_counter() - start) / 1e6


def floor_rates(runs: int) -> dict[str, list[float]]:
    """MB/s per run of the copies and syscalls under the data path, each after a warm-up run.

    ``memcpy into`` / ``memcpy out of``: 4 MiB into and out of a 4 MiB shared
    mapping, in this one process — a single copy, the floor of any
    shared-buffer design.  ``pwrite`` / ``pread``: 4 MiB on a page-cache file,
    what the store's own syscalls cost.
    """
    data, out = os.urandom(CHUNK), bytearray(CHUNK)
    rates: dict[str, list[float]] = {}

    def timed(label: str, op, n: int) -> None:
        got = []
        for run in range(runs + 1):
            start = time.perf_counter()
            for i in range(n):
                op(i)
            if run:
                got.append(n * CHUNK / (time.perf_counter() - start) / 1e6)
        rates[label] = got

    with tempfile.TemporaryFile() as f:
        f.truncate(CHUNK)
        m = mmap.mmap(f.fileno(), CHUNK)
        try:
            view = memoryview(m)
            timed("memcpy into", lambda i: m.__setitem__(slice(None), data), 200)
            timed("memcpy out of", lambda i: out.__setitem__(slice(None), view), 200)
            view.release()
        finally:
            m.close()
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR")) as f:
        fd = f.fileno()
        timed("pwrite", lambda i: os.pwrite(fd, data, i * CHUNK), 64)
        timed("pread", lambda i: os.preadv(fd, [out], i * CHUNK), 64)
    return rates


def floors(runs: int) -> dict:
    names = {"memcpy into": "memcpy 4 MiB into an mmap", "memcpy out of": "memcpy 4 MiB out of an mmap",
             "pwrite": "pwrite 4 MiB on a page-cache file", "pread": "pread 4 MiB on a page-cache file"}
    return {f"reference: {names[k]}, MB/s": _summary(v) for k, v in floor_rates(runs).items()}


@click.command()
@click.option("--runs", default=5, show_default=True)
@click.option("--seconds", default=2.0, show_default=True, help="Length of one GETATTR run.")
@click.option("--mib", default=256, show_default=True, help="Size of the FILE_IO file, MiB.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--markdown", is_flag=True)
def main(runs: int, seconds: float, mib: int, as_json: bool, markdown: bool) -> None:
    """GETATTR and FILE_IO through the whole stack, beside copy and syscall floors."""
    results = trio.run(measure_stack, runs, seconds, mib)
    results.update(floors(runs))
    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    if as_json:
        click.echo(json.dumps({"machine": machine, "runs": runs, "results": results}, indent=2))
        return

    def fmt(r):
        return f"{r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})"

    if markdown:
        click.echo("| figure | median (min–max) |\n|---|---:|")
        for name, r in results.items():
            click.echo(f"| {name} | {fmt(r)} |")
        return
    table = Table(title=f"whole stack — median of {runs} runs, {machine}")
    table.add_column("figure")
    table.add_column("median (min–max)", justify="right")
    for name, r in results.items():
        table.add_row(name, fmt(r))
    Console().print(table)


if __name__ == "__main__":
    main()

