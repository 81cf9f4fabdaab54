"""Protocol benchmark: encode+decode of full read and write frames.

    python -m tools.bench.protocol_bench [--runs 7] [--seconds 0.5] [--json]

For each frame it measures, in the same run and on the same values:

* ``pvfs2proto``: ``encode_read_frame`` + ``decode_read_frame`` (or the write
  frame pair), the path the broker and the client-core use;
* ``construct compiled``: construct's own ``.compile()`` of the very same
  declarations (the union rewritten as ``Switch`` of ``Padded`` cases, which is
  the form construct can compile), building and parsing the same value.

Each figure is the median of ``--runs`` timed runs after one warm-up run, with
min and max; the ratio is ours over construct's.  The issue's target is
100,000 read-frame round trips per second on a 2-core machine.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from typing import Callable

import click
from construct import Padded, Renamed, Struct, Switch, this
from rich.console import Console
from rich.table import Table

import pvfs2proto as p
from pvfs2proto.cstruct import OpUnion
from pvfs2proto.readdir import encode_readdir_trailer

TARGET = 100_000


def compilable(sc):
    """The same declaration in construct classes that ``.compile()`` accepts."""
    if isinstance(sc, Renamed):
        return Renamed(compilable(sc.subcon), newname=sc.name)
    if isinstance(sc, OpUnion):
        cases = {
            key: Padded(sc.size, Struct() if member is None else Struct(compilable(member)))
            for key, member in sc.cases.items()
        }
        return Switch(this[sc.selector], cases, Padded(sc.size, Struct(compilable(sc.default))))
    if isinstance(sc, Struct):  # CStruct included
        return Struct(*[compilable(s) for s in sc.subcons])
    return sc


def _kref(fs_id=7):
    return {"khandle": bytes(range(16)), "fs_id": fs_id}


def _attrs():
    return {"owner": 1000, "group": 100, "perms": 0o644, "atime": 1, "mtime": 2, "ctime": 3, "size": 4096,
            "dfile_count": 1, "distr_dir_servers_initial": 0, "distr_dir_servers_max": 0,
            "distr_dir_split_size": 0, "mirror_copies_count": 0, "dirent_count": 0, "objtype": 1,
            "flags": 0, "mask": 0x7F, "blksize": 4096}


def _upcall(op, member, body):
    return {"type": op, "uid": 1000, "gid": 100, "pid": 4242, "tgid": 4242, "trailer_size": 0,
            "req": {member: body}}


READ_FRAMES = {
    "GETATTR": _upcall(p.OpCode.GETATTR, "getattr", {"refn": _kref(), "mask": p.AttrMask.ALL_NOHINT}),
    "FILE_IO": _upcall(p.OpCode.FILE_IO, "io", {"buf_index": 3, "count": 1 << 20, "offset": 1 << 30,
                                                  "refn": _kref(), "io_type": 1, "readahead_size": 0}),
    "CREATE": _upcall(p.OpCode.CREATE, "create", {"parent_refn": _kref(), "attributes": _attrs(),
                                                    "d_name": b"a-file-name.txt"}),
    "SETXATTR": _upcall(p.OpCode.SETXATTR, "setxattr", {
        "refn": _kref(), "keyval": {"key": b"user.big", "key_sz": 9, "val_sz": 8192, "val": b"v" * 8192},
        "flags": 0}),
}

_TRAILER = encode_readdir_trailer([(f"entry-{i:04d}".encode(), bytes(16)) for i in range(512)])

WRITE_FRAMES = {
    "LOOKUP ENOENT": ({"type": p.OpCode.LOOKUP, "status": p.errno_to_status(2),
                       "resp": {"lookup": {"refn": {"khandle": bytes(16), "fs_id": 0}}}}, b""),
    "GETATTR": ({"type": p.OpCode.GETATTR, "status": 0,
                 "resp": {"getattr": {"attributes": _attrs(), "link_target": b""}}}, b""),
    "READDIR 512": ({"type": p.OpCode.READDIR, "status": 0, "resp": {}}, _TRAILER),
}


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n = 64
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        n = max(n * 2, int(n * seconds / max(elapsed, 1e-6) * 1.1))


def measure(fn: Callable[[], object], runs: int, seconds: float) -> dict:
    rate(fn, seconds / 4)  # warm-up
    rates = [rate(fn, seconds) for _ in range(runs)]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def cases():
    """(name, ours, construct's) pairs of round-trip callables on the same value."""
    read_ref = compilable(p.read_frame).compile()
    write_ref = compilable(p.write_frame).compile()
    for name, upcall in READ_FRAMES.items():
        frame = {"version": 0, "magic": p.ORANGEFS_DEVREQ_MAGIC, "tag": 100, "upcall": upcall}
        assert read_ref.build(frame) == p.encode_read_frame(100, upcall)
        yield (f"read frame {name}",
               lambda u=upcall: p.decode_read_frame(p.encode_read_frame(100, u)),
               lambda f=frame: read_ref.parse(read_ref.build(f)))
    for name, (downcall, trailer) in WRITE_FRAMES.items():
        full = {"trailer_size": len(trailer), **downcall}
        frame = {"version": p.PVFS2DEV_USERSPACE_VERSION, "magic": p.ORANGEFS_DEVREQ_MAGIC, "tag": 100,
                 "downcall": full}
        assert write_ref.build(frame) + trailer == p.encode_write_frame(100, downcall, trailer)
        yield (f"write frame {name}",
               lambda d=downcall, t=trailer: p.decode_write_frame(p.encode_write_frame(100, d, t)),
               lambda f=frame, t=trailer: (write_ref.parse(write_ref.build(f) + t), t))


@click.command()
@click.option("--runs", default=7, show_default=True, help="Timed runs per figure (median reported).")
@click.option("--seconds", default=0.5, show_default=True, help="Length of one timed run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print the results as a Markdown table (for the README).")
def main(runs: int, seconds: float, as_json: bool, markdown: bool) -> None:
    """Encode+decode rate of full device frames, beside construct's compiled form."""
    results = []
    for name, ours, reference in cases():
        mine = measure(ours, runs, seconds)
        ref = measure(reference, runs, seconds)
        results.append({"frame": name, "pvfs2proto": mine, "construct_compiled": ref,
                        "ratio": mine["median"] / ref["median"]})
    machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    if as_json:
        click.echo(json.dumps({"machine": machine, "runs": runs, "target": TARGET, "results": results}, indent=2))
        return
    def fmt(r):
        return f"{r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})"

    if markdown:
        click.echo("| frame | pvfs2proto | construct compiled | ratio |\n|---|---:|---:|---:|")
        for r in results:
            click.echo(f"| {r['frame']} | {fmt(r['pvfs2proto'])} | {fmt(r['construct_compiled'])} | {r['ratio']:.1f}x |")
        return
    table = Table(title=f"encode+decode round trips/s — median of {runs} (min–max), {machine}")
    table.add_column("frame")
    table.add_column("pvfs2proto", justify="right")
    table.add_column("construct compiled", justify="right")
    table.add_column("ratio", justify="right")

    for r in results:
        table.add_row(r["frame"], fmt(r["pvfs2proto"]), fmt(r["construct_compiled"]), f"{r['ratio']:.1f}x")
    Console().print(table)
    worst = min(r["pvfs2proto"]["median"] for r in results if r["frame"].startswith("read frame"))
    verdict = "meets" if worst >= TARGET else "MISSES"
    click.echo(f"slowest read frame: {worst:,.0f}/s — {verdict} the {TARGET:,}/s target")


if __name__ == "__main__":
    main()
