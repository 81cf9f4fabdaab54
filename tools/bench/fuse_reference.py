"""The metadata reference: the same stat through a minimal pyfuse3 filesystem.

    python -m tools.bench.fuse_reference [--runs 5] [--seconds 1] [--json]

Full-stack GETATTR (``stack_bench``) is measured beside ``fstat`` of one open
file on ``python -m tools.bench.passthrough`` — pyfuse3 on trio answering from
the disk with one ``fstat`` of its own, nothing behind it — at the same
concurrency: one caller, then 64 threads of one process keeping 64 requests
in flight.  With the attribute timeout 0 every ``fstat`` is one FUSE GETATTR
request (no LOOKUP: the file is open; no permission check: no
``default_permissions``), as every GETATTR upcall is one op.

Each figure is the median of ``--runs`` timed runs after a warm-up, with min
and max.  The mount is made in a temporary directory that is removed after,
and unmounted whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import click

from .broker_bench import _summary
from .mount_bench import remove_tree, signals_held, start_passthrough


def _fstat_rate(fd: int, threads: int, seconds: float) -> float:
    """fstat calls/s by ``threads`` threads for about ``seconds``."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    box = {}

    def worker(slot: int) -> None:
        fstat, clock = os.fstat, time.perf_counter
        barrier.wait()
        end, n = box["end"], 0
        while clock() < end:
            fstat(fd)
            n += 1
        counts[slot] = n

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    box["end"] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def fstat_rates(runs: int, seconds: float, inflights: tuple[int, ...] = (1, 64),
                base_dir: str | None = None) -> dict[int, list[float]]:
    """{in flight: fstat calls/s per run} on a pyfuse3 passthrough mounted for the purpose."""
    base = Path(tempfile.mkdtemp(prefix="pvfs2bench-fuse-", dir=base_dir)).resolve()
    cleanup = contextlib.ExitStack()
    cleanup.callback(remove_tree, base)
    try:
        target = start_passthrough(base, cleanup)
        path = target.root / "stat-me"
        path.write_bytes(b"x" * 4096)
        fd = os.open(path, os.O_RDONLY)
        cleanup.callback(os.close, fd)
        out = {}
        for n in inflights:
            _fstat_rate(fd, n, seconds / 2)  # warm-up
            out[n] = [_fstat_rate(fd, n, seconds) for _ in range(runs)]
        return out
    finally:
        with signals_held():
            cleanup.close()


@click.command()
@click.option("--runs", default=5, show_default=True, help="Timed runs (after one warm-up run).")
@click.option("--seconds", default=1.0, show_default=True, help="Length of one timed run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def main(runs: int, seconds: float, as_json: bool) -> None:
    """fstat of one file through a pyfuse3 passthrough, 1 and 64 in flight."""
    results = {f"fstat, {n} in flight, ops/s": _summary(v) for n, v in fstat_rates(runs, seconds).items()}
    if as_json:
        click.echo(json.dumps({"runs": runs, "results": results}, indent=2))
        return
    for name, r in results.items():
        click.echo(f"{name}: {r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})")


if __name__ == "__main__":
    main()
