"""Latency per op type at 64 in flight, through the whole stack.

    python -m tools.bench.latency [--runs 5] [--ops 1000] [--json]

A caller keeps 64 upcalls in flight on the VFS channel of a broker whose
client-core is ``clientcore`` on its embedded store — the stack real callers
use.  The ops are a mix, dealt round-robin so the mix is the same all through
a run, each timed from its submit to its reply at the caller:

========================  ===========================================================
GETATTR                   of a file (mask ALL_NOHINT, as the kernel asks)
LOOKUP                    of that file's name in its directory
CREATE                    a new name (mode 644)
REMOVE                    a name created before the run
SETATTR                   chmod of the file (PERM|CTIME, as the kernel sends it)
READDIR                   the first page of a 16-entry directory (takes a readdir slot)
STATFS                    the filesystem
FILE_IO read              64 KiB of the file (takes an I/O slot)
FILE_IO write             64 KiB into the file (takes an I/O slot)
========================  ===========================================================

Per op type and run: p50 and p99 of ``--ops`` samples; each figure is the
median over ``--runs`` runs after a warm-up run, with min and max.  Nothing
is skipped or answered early: slot waits, SQLite commits and the broker's
queueing are all inside the figures, as a caller would see them.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import click
import trio

from pvfs2proto import AttrMask, IoType, OpCode
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_START,
    ORANGEFS_LOOKUP_LINK_NO_FOLLOW,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
)
from pvfs2proto.structs import mode_to_perms

from .broker_bench import _summary
from .stack_bench import DataCaller, _upcall, call, create_file, getattr_upcall, open_stack, stack

INFLIGHT = 64
#: Seconds without any reply after which a run has failed (the broker's own op timeouts are longer).
STALL = 60
IO_SIZE = 64 << 10
#: The file's data region FILE_IO reads and writes go round.
IO_SPAN = 1 << 20

OP_TYPES = ("GETATTR", "LOOKUP", "CREATE", "REMOVE", "SETATTR", "READDIR", "STATFS", "FILE_IO read", "FILE_IO write")


class Fixture:
    """What the mix acts on, made before the first run: a directory, a file with data, a listing directory."""

    def __init__(self, root: dict, directory: dict, file: dict, listing: dict) -> None:
        self.root, self.dir, self.file, self.listing = root, directory, file, listing

    @classmethod
    async def make(cls, caller: DataCaller, root: dict) -> "Fixture":
        tag = f"latency-{os.getpid()}-{time.monotonic_ns()}".encode()
        directory = await _mkdir(caller, root, tag)
        listing = await _mkdir(caller, directory, b"listing")
        for i in range(16):
            await create_file(caller, listing, b"entry-%02d" % i)
        file = await create_file(caller, directory, b"f")
        for offset in range(0, IO_SPAN, IO_SIZE):
            await call(caller, OpCode.FILE_IO, "io",
                       {"count": IO_SIZE, "offset": offset, "refn": file, "io_type": IoType.WRITE},
                       os.urandom(IO_SIZE))
        return cls(root, directory, file, listing)

    def doomed(self, run: int, i: int) -> tuple[bytes, bytes]:
        """The CREATE of the name the ``i``-th REMOVE of run ``run`` takes."""
        return _upcall(OpCode.CREATE, "create", {"parent_refn": self.dir, "d_name": _doomed(run, i),
                                                 "attributes": _new_attrs(0o644)}), b""

    def upcall(self, op_type: str, i: int, run: int) -> tuple[bytes, bytes]:
        """The ``i``-th op of ``op_type`` in run ``run``: (upcall, data to send with it)."""
        if op_type == "GETATTR":
            return getattr_upcall(self.file), b""
        if op_type == "LOOKUP":
            return _upcall(OpCode.LOOKUP, "lookup", {"sym_follow": ORANGEFS_LOOKUP_LINK_NO_FOLLOW,
                                                     "parent_refn": self.dir, "d_name": b"f"}), b""
        if op_type == "CREATE":
            return _upcall(OpCode.CREATE, "create", {"parent_refn": self.dir, "d_name": b"c%d-%d" % (run, i),
                                                     "attributes": _new_attrs(0o644)}), b""
        if op_type == "REMOVE":
            return _upcall(OpCode.REMOVE, "remove", {"parent_refn": self.dir, "d_name": _doomed(run, i)}), b""
        if op_type == "SETATTR":
            perms = mode_to_perms(0o600 if i % 2 else 0o644)
            return _upcall(OpCode.SETATTR, "setattr", {"refn": self.file, "attributes": {
                "perms": perms, "mask": int(AttrMask.PERM | AttrMask.CTIME)}}), b""
        if op_type == "READDIR":
            return _upcall(OpCode.READDIR, "readdir", {"refn": self.listing, "token": ORANGEFS_ITERATE_START,
                                                       "max_dirent_count": ORANGEFS_MAX_DIRENT_COUNT_READDIR,
                                                       "buf_index": 0}), b""
        if op_type == "STATFS":
            return _upcall(OpCode.STATFS, "statfs", {"fs_id": self.root["fs_id"]}), b""
        io_type = IoType.READ if op_type == "FILE_IO read" else IoType.WRITE
        offset = (i * IO_SIZE) % IO_SPAN
        up = _upcall(OpCode.FILE_IO, "io", {"count": IO_SIZE, "offset": offset, "refn": self.file,
                                            "io_type": io_type})
        return up, (_DATA if io_type == IoType.WRITE else b"")


_DATA = bytes(range(256)) * (IO_SIZE // 256)


def _new_attrs(mode: int) -> dict:
    # orangefs_create/mkdir: owner and group are the caller's, perms from the mode, mask ALL_SETABLE.
    return {"owner": os.geteuid(), "group": os.getegid(), "perms": mode_to_perms(mode),
            "mask": int(AttrMask.ALL_SETABLE)}


def _doomed(run: int, i: int) -> bytes:
    return b"r%d-%d" % (run, i)


async def _mkdir(caller: DataCaller, parent: dict, name: bytes) -> dict:
    down, _ = await call(caller, OpCode.MKDIR, "mkdir", {"parent_refn": parent, "d_name": name,
                                                          "attributes": _new_attrs(0o755)})
    refn = down.resp.mkdir.refn
    return {"khandle": refn.khandle, "fs_id": refn.fs_id}


async def _pipeline(caller: DataCaller, ops: list[tuple[str, bytes, bytes]], inflight: int,
                    samples: dict[str, list[float]] | None) -> None:
    """Run ``ops`` with ``inflight`` in flight; each one's seconds from submit to reply go to ``samples``.

    Raises:
        OSError: an op failed (its errno).
        RuntimeError: no reply came for :data:`STALL` seconds.
    """
    sent: dict[int, tuple[str, float]] = {}
    pending = iter(ops)
    clock = time.perf_counter

    def send_next() -> None:
        for op_type, upcall, data in pending:
            sent[caller.next_id] = (op_type, clock())
            caller.send_with(upcall, data)
            return

    for _ in range(inflight):
        send_next()
    while sent:
        arrived: list[tuple[int, int]] = []
        with trio.move_on_after(STALL):
            arrived = await caller.completions()
        if not arrived:  # a benchmark must fail, not hang, when an op never comes back
            waiting = sorted((started, op_type, req_id) for req_id, (op_type, started) in sent.items())[:8]
            raise RuntimeError(f"no reply for {STALL} s with {len(sent)} ops in flight; oldest: " + ", ".join(
                f"{op_type} (req {req_id}, {clock() - started:.0f} s)" for started, op_type, req_id in waiting))
        now = clock()
        for req_id, result in arrived:
            op_type, started = sent.pop(req_id)
            if result:
                raise OSError(-result, f"{op_type} at {INFLIGHT} in flight: {os.strerror(-result)}")
            if samples is not None:
                samples[op_type].append(now - started)
            send_next()


def _percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def latencies(caller: DataCaller, root: dict, runs: int, ops: int,
                    op_types: tuple[str, ...] = OP_TYPES) -> dict[str, dict[str, list[float]]]:
    """{op type: {"p50"|"p99": ms per run}} of ``ops`` of each type per run, the mix at 64 in flight."""
    fixture = await Fixture.make(caller, root)
    out: dict[str, dict[str, list[float]]] = {t: {"p50": [], "p99": []} for t in op_types}
    for run in range(runs + 1):  # the first run warms up
        if "REMOVE" in op_types:  # the names the run's REMOVEs take, made beforehand and not timed
            await _pipeline(caller, [("CREATE", *fixture.doomed(run, i)) for i in range(ops)], INFLIGHT, None)
        mix = [(t, *fixture.upcall(t, i, run)) for i in range(ops) for t in op_types]
        samples: dict[str, list[float]] = {t: [] for t in op_types}
        await _pipeline(caller, mix, INFLIGHT, samples)
        if run:
            for t in op_types:
                out[t]["p50"].append(_percentile(samples[t], 50) * 1e3)
                out[t]["p99"].append(_percentile(samples[t], 99) * 1e3)
    return out


async def _measure(runs: int, ops: int) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory(prefix="pvfs2bench-") as tmp, stack(Path(tmp)) as rundir:
        caller, root = await open_stack(rundir)
        try:
            return await latencies(caller, root, runs, ops)
        finally:
            caller.close()


@click.command()
@click.option("--runs", default=5, show_default=True, help="Timed runs (after one warm-up run).")
@click.option("--ops", default=1000, show_default=True, help="Ops of each type per run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def main(runs: int, ops: int, as_json: bool) -> None:
    """p50 and p99 per op type, a mix of ops at 64 in flight through broker + clientcore + store."""
    results = trio.run(_measure, runs, ops)
    summary = {t: {p: _summary(v) for p, v in by_p.items()} for t, by_p in results.items()}
    if as_json:
        click.echo(json.dumps({"runs": runs, "ops_per_type": ops, "inflight": INFLIGHT, "ms": summary}, indent=2))
        return
    for t, by_p in summary.items():
        cells = "  ".join(f"{p} {r['median']:.3g} ms ({r['min']:.3g}–{r['max']:.3g})" for p, r in by_p.items())
        click.echo(f"{t:14} {cells}")


if __name__ == "__main__":
    main()
