"""How much each run of ``pvfs2ctl bench`` does: the full run and ``--quick``."""

from __future__ import annotations

import dataclasses

#: The sections, in the order they run (the mount last: its dd fills the page cache and drops it).
SECTIONS = ("device", "metadata", "data", "latency", "scale", "mount")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each run does."""

    runs: int
    seconds: float  # one timed rate run (round trips, ping-pongs, GETATTR, fstat)
    file_io_mib: int  # the FILE_IO file
    scale_queued: tuple[int, ...]
    scale_ops: int  # replies timed per end-to-end scale run
    core_ops: int  # ops timed per kernel-core scale run
    latency_ops: int  # ops of each type per latency run
    dd_mib: int
    stats: int
    creates: int


FULL = Sizes(runs=5, seconds=1.0, file_io_mib=256, scale_queued=(10, 1000, 100_000), scale_ops=10_000,
             core_ops=50_000, latency_ops=500, dd_mib=1024, stats=10_000, creates=1_000)
#: For CI: every figure, small sizes (the queue lengths stay: they are the figures).
QUICK = Sizes(runs=5, seconds=0.1, file_io_mib=16, scale_queued=(10, 1000, 100_000), scale_ops=300,
              core_ops=2_000, latency_ops=30, dd_mib=16, stats=300, creates=30)
