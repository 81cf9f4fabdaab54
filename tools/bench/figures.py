"""Every figure of ``pvfs2ctl bench`` and what is measured beside it: one function per section.

Each section starts what it measures (its own processes, temporary
directories and mounts) and stops it before returning, on failure too, so
sections are independent and nothing outlives the run.  The paths are the
ones real traffic takes — the VFS channel, the broker's ``service_operation``,
the device protocol, the shared buffer, the FUSE mount — and each reference
runs in the same run, on the same machine, at the same concurrency.

========================  =========================================================  =================================
section                   pvfs2dev                                                   measured beside it
========================  =========================================================  =================================
device round trip         GETATTR: VFS caller → broker → clientcore.minimal → back,  raw and trio SEQPACKET ping-pong
                          1 and 64 in flight                                         between two Python processes
metadata                  GETATTR through broker + clientcore + store, 1 and 64      fstat through a pyfuse3
                                                                                     passthrough, 1 caller / 64 threads
data path                 FILE_IO 4 MiB write / read through the shared buffer       memcpy into / out of a 4 MiB
                                                                                     mmap; pwrite / pread
mount                     dd, stat, create+unlink on the FUSE mount                  pyfuse3 passthrough; native disk
scale                     per-op cost with 10, 1,000, 100,000 queued, end to end     the same at the shortest queue
                          and in the kernel core alone
latency                   p50 / p99 per op type, a mix at 64 in flight, whole stack  —
========================  =========================================================  =================================
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

from . import broker_bench, fuse_reference, latency, mount_bench, stack_bench
from .report import figure, reference, skipped_figure
from .sizes import Sizes

RAW = "raw ping-pong (blocking SEQPACKET)"
TRIO = "trio ping-pong (SEQPACKET)"


def device(sizes: Sizes, progress, base_dir: str | None) -> list[dict]:
    progress("device round trip: broker + clientcore.minimal")
    ours = broker_bench.round_trips(sizes.runs, sizes.seconds, (1, 64), base_dir)
    refs = {}
    for flavor in ("raw", "trio"):
        progress(f"device round trip: {flavor} ping-pong")
        refs[flavor] = broker_bench.pingpong(flavor, sizes.runs, sizes.seconds, (1, 64), base_dir)
    path = ("GETATTR upcalls from a VFS caller through the broker and the device protocol to "
            "clientcore.minimal (answers at once) and back; the references are ping-pongs between two Python "
            "processes at the same concurrency, messages of 8544 bytes (one VFS request)")
    return [figure("device round trip", f"{n} in flight", "ops/s", path, ours[n],
                   [reference(RAW, refs["raw"][n]), reference(TRIO, refs["trio"][n])]) for n in (1, 64)]


def whole_stack(sizes: Sizes, want: set[str], progress, base_dir: str | None) -> list[dict]:
    """The metadata, data path and latency sections: one broker + clientcore + store serves all three."""
    got: dict = {}

    async def measure() -> None:
        with tempfile.TemporaryDirectory(prefix="pvfs2bench-stack-", dir=base_dir) as tmp, \
                stack_bench.stack(Path(tmp)) as rundir:
            caller, root = await stack_bench.open_stack(rundir)
            try:
                if "metadata" in want:
                    progress("metadata: GETATTR through broker + clientcore + store")
                    upcall = stack_bench.getattr_upcall(root)
                    got["getattr"] = {n: await broker_bench.round_trip_rates(caller, n, sizes.runs, sizes.seconds,
                                                                             upcall) for n in (1, 64)}
                if "data" in want:
                    progress("data path: FILE_IO through the shared buffer")
                    got["file_io"] = await stack_bench.file_io_rates(caller, root, sizes.runs, sizes.file_io_mib)
                if "latency" in want:
                    progress("latency: a mix of ops at 64 in flight")
                    got["latency"] = await latency.latencies(caller, root, sizes.runs, sizes.latency_ops)
            finally:
                caller.close()

    trio.run(measure)
    out = []
    if "metadata" in want:
        why = mount_bench.fuse_unavailable()
        if why:
            fstat = {1: None, 64: None}
        else:
            progress("metadata: fstat through a pyfuse3 passthrough")
            fstat = fuse_reference.fstat_rates(sizes.runs, sizes.seconds, (1, 64), base_dir)
        path = ("GETATTR of the root from a VFS caller through the broker to clientcore and its SQLite store; "
                "the reference is fstat of an open file on tools/bench/passthrough.py (pyfuse3, attr timeout 0: "
                "one FUSE GETATTR per call) by 1 thread, then 64")
        for n, callers in ((1, "1 caller"), (64, "64 threads")):
            out.append(figure("metadata", f"GETATTR full stack, {n} in flight", "ops/s", path, got["getattr"][n], [
                reference(f"fstat via pyfuse3 fs, {callers}", fstat[n], skipped=why)]))
    if "data" in want:
        progress("data path: memcpy and syscall floors")
        floors = stack_bench.floor_rates(sizes.runs)
        path = (f"FILE_IO of 4 MiB, 4 in flight, {sizes.file_io_mib} MiB file: caller → broker → slot of the "
                "shared buffer → clientcore → store (page cache), and back; the references copy 4 MiB into or out "
                "of a 4 MiB mmap in one process, and pwrite/pread 4 MiB of a page-cache file")
        for label, memcpy, syscall in (("write", "memcpy into", "pwrite"), ("read", "memcpy out of", "pread")):
            out.append(figure("data path", f"FILE_IO {label}, 4 MiB", "MB/s", path, got["file_io"][label], [
                reference(f"{memcpy} a 4 MiB mmap", floors[memcpy]),
                reference(f"{syscall} 4 MiB, page cache", floors[syscall])]))
    if "latency" in want:
        path = ("a round-robin mix of op types kept 64 in flight by one VFS caller, through broker + clientcore + "
                "store; each op timed from submit to reply")
        for op_type, by_p in got["latency"].items():
            for p in ("p50", "p99"):
                out.append(figure("latency at 64 in flight", f"{op_type} {p}", "ms", path, by_p[p]))
    return out


def scale(sizes: Sizes, progress, base_dir: str | None) -> list[dict]:
    queued = sorted(sizes.scale_queued)
    progress("scale: the kernel core alone")
    core = broker_bench.core_costs(queued, sizes.runs, sizes.core_ops)
    progress(f"scale: end to end, up to {queued[-1]:,} queued")
    ends, _ = broker_bench.scale(queued, sizes.runs, sizes.scale_ops, base_dir)
    out = []
    for label, got, path in (
        ("end to end", ends, "N GETATTRs queued behind paused reads, then resumed; each reply answered with a new "
                             "submit so N stay queued: caller → broker → clientcore.minimal → back, µs per reply"),
        ("kernel core alone", core, "pvfs2dev.kernel without sockets: N ops queued, then submit + device read + "
                                    "device write per op"),
    ):
        for n in queued:
            refs = [] if n == queued[0] else [reference(f"same, {queued[0]:,} queued", got[queued[0]])]
            out.append(figure("scale", f"{label}, {n:,} queued", "µs per op", path, got[n], refs))
    return out


def mount(sizes: Sizes, progress, base_dir: str | None) -> tuple[list[dict], dict]:
    # mount_bench's names less the unit, which is a field of its own here.
    names = {f: f.rsplit(", ", 1)[0] for f in mount_bench.FIGURES}
    units = {f: f.rsplit(", ", 1)[1] for f in mount_bench.FIGURES}
    path = (f"programs on the FUSE mount — pvfs2dev serve --mount and clientcore on its store — beside "
            f"tools/bench/passthrough.py over a directory and that directory itself, all with attr timeout 0 and "
            f"entry timeout 50 ms: dd {sizes.dd_mib} MiB from /dev/zero, then back to /dev/null after "
            f"drop_caches; {sizes.stats:,} stats of one file; {sizes.creates:,} creates+unlinks")
    refs = [mount_bench.PASSTHROUGH, mount_bench.NATIVE]
    ref_names = {mount_bench.PASSTHROUGH: "pyfuse3 passthrough", mount_bench.NATIVE: "native disk"}
    why = mount_bench.fuse_unavailable()
    if why:
        return [skipped_figure("mount", names[f], units[f], path, why,
                               [ref_names[t] for t in refs])
                for f in mount_bench.FIGURES], {}
    progress("mount: dd, stat, create+unlink on the mount, the passthrough and the native disk")
    results, settings = mount_bench.measure(sizes.runs, sizes.dd_mib, sizes.stats, sizes.creates, base_dir)
    out = []
    for f in mount_bench.FIGURES:
        by_target = results[f]
        out.append(figure("mount", names[f], units[f], path,
                          by_target[mount_bench.PVFS2DEV]["values"],
                          [reference(ref_names[t], by_target[t]["values"]) for t in refs]))
    return out, settings
