"""Counters, latency histograms and the transition trace the broker keeps for pvfs2ctl."""

from __future__ import annotations

import bisect
import collections
import dataclasses
from typing import Callable

from pvfs2proto import errno_name, opname

#: Upper bounds of the latency buckets, in seconds (the last is open-ended).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)


@dataclasses.dataclass
class OpTypeStats:
    """Per op type: how many finished, how they failed, how long they took."""

    count: int = 0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    histogram: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    def record(self, result: int, latency: float) -> None:
        self.count += 1
        if result < 0:
            self.errors[errno_name(-result)] += 1
        self.histogram[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.latency_sum += latency

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None if empty)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for i, n in enumerate(self.histogram):
            seen += n
            if seen >= rank and n:
                return LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")

    def snapshot(self) -> dict:
        return {
            "count": self.count,
            "errors": dict(self.errors),
            "histogram": list(self.histogram),
            "latency_sum": self.latency_sum,
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
        }


class Stats:
    """Everything counted since the broker started."""

    def __init__(self) -> None:
        self.by_type: collections.defaultdict[int, OpTypeStats] = collections.defaultdict(OpTypeStats)
        #: sysfs stats/{reads, writes}: read and write calls on the filesystem.
        self.reads = 0
        self.writes = 0
        self.device_opens = 0
        self.device_releases = 0
        self.purged = 0
        self.timed_out = 0
        self.cancels_sent = 0

    def record(self, op_type: int, result: int, latency: float) -> None:
        self.by_type[op_type].record(result, latency)

    def snapshot(self) -> dict:
        return {
            "ops": {opname(t): s.snapshot() for t, s in sorted(self.by_type.items())},
            "buckets": list(LATENCY_BUCKETS),
            "reads": self.reads,
            "writes": self.writes,
            "device_opens": self.device_opens,
            "device_releases": self.device_releases,
            "purged": self.purged,
            "timed_out": self.timed_out,
            "cancels_sent": self.cancels_sent,
        }


@dataclasses.dataclass(frozen=True)
class TraceEvent:
    """One state transition of one op."""

    time: float
    tag: int
    op: str
    event: str
    before: str
    after: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


TraceSink = Callable[[TraceEvent], None]
