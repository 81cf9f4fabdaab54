"""Pure formatting for pvfs2ctl: control-channel replies in, rich renderables or text out.

Nothing here talks to the broker or prints; every function takes the reply
dicts of :mod:`pvfs2dev.control_server` (or parts of them) and returns a value,
so each view can be checked without a terminal (STYLE §10).  Strings that
come from the broker are wrapped in :class:`rich.text.Text` so a ``[`` in a
device string is never read as console markup.
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvfs2proto import Features

# -- small formatters ------------------------------------------------------------------------------


def fmt_latency(seconds: float | None) -> str:
    """``250µs``, ``2.5ms``, ``1s``; ``-`` for none, ``>60s`` past the last bucket."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return ">60s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


def fmt_age(seconds: float) -> str:
    """An op's age: seconds with one decimal."""
    return f"{seconds:.1f}"


def fmt_duration(seconds: float) -> str:
    """An uptime: ``42.3s``, ``5m07s``, ``2h03m``, ``3d04h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_bytes(n: int | None) -> str:
    """``4 MiB``, ``128 KiB``, ``512 B``."""
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:g} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{n} B"


def fmt_version(version: int) -> str:
    """The recorded userspace version: ``21000 (2.10.0)``, or ``none`` before the first write."""
    if not version:
        return "none recorded"
    return f"{version} ({version // 10000}.{version // 100 % 100}.{version % 100})"


def fmt_features(features: int) -> str:
    """``0x1 (readahead)``; ``none`` for 0."""
    if not features:
        return "none"
    names = [f.name.lower() for f in Features if f and features & f]
    rest = features & ~sum(Features)
    if rest:
        names.append(hex(rest))
    return f"{features:#x} ({'|'.join(names)})"


def slot_bitmap(busy: Iterable[int], count: int, width: int = 64) -> str:
    """A slot map as ``##..#...``: ``#`` busy, ``.`` free; lines of ``width`` slots."""
    taken = set(busy)
    cells = "".join("#" if i in taken else "." for i in range(count))
    return "\n".join(cells[i : i + width] for i in range(0, len(cells), width)) or "-"


def hexdump(data: bytes, offset: int = 0) -> str:
    """``hexdump -C`` style: 16 bytes a line, offset, hex, ASCII; repeated lines become ``*``."""
    lines, previous, starred = [], None, False
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        if chunk == previous and start + 16 < len(data):
            if not starred:
                lines.append("*")
                starred = True
            continue
        previous, starred = chunk, False
        hexes = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset + start:08x}  {hexes:<48}  |{text}|")
    lines.append(f"{offset + len(data):08x}")
    return "\n".join(lines)


def _kv_table(title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.title = title
    table.add_column(style="bold")
    table.add_column()
    return table


# -- status, mounts, buffers ----------------------------------------------------------------------


def mounts_table(mounts: Sequence[dict]) -> Table:
    """One row per mount: fs_id, id, device string, root handle (if known), pending, FUSE mountpoint."""
    table = Table(title="mounts")
    for name in ("fs_id", "id", "device", "root", "pending", "mounted on"):
        table.add_column(name, justify="right" if name in ("fs_id", "id") else "left")
    for m in mounts:
        table.add_row(str(m.get("fs_id")), str(m.get("id")), Text(str(m.get("devname", ""))),
                      Text(str(m.get("root", "-"))), "yes" if m.get("pending") else "no",
                      Text(str(m.get("mountpoint") or "-")))
    if not mounts:
        table.caption = "no filesystem mounted"
    return table


def faults_table(faults: dict) -> Table:
    """The kernel-side faults arranged now (``pvfs2ctl fault``)."""
    table = Table(title="kernel-side faults")
    table.add_column("fault")
    table.add_column("state")
    table.add_row("reads paused", "yes" if faults.get("reads_paused") else "no")
    for name, held in sorted(faults.get("held_slots", {}).items()):
        table.add_row(f"{name} slots held", ", ".join(str(i) for i in held) if held else "none")
    return table


def buffers_table(maps: Sequence[dict]) -> Table:
    """Both slot maps: geometry, the kernel's counter ``c``, the busy bitmap and waiters."""
    table = Table(title="slot maps")
    table.add_column("map")
    table.add_column("slots", justify="right")
    table.add_column("slot size", justify="right")
    table.add_column("free", justify="right")
    table.add_column("c", justify="right")
    table.add_column("busy (#)")
    table.add_column("waiters", justify="right")
    for m in maps:
        count, busy = int(m.get("count", 0)), list(m.get("busy", []))
        table.add_row(Text(str(m.get("name"))), str(count), fmt_bytes(m.get("slot_size")),
                      str(count - len(busy)), str(m.get("c")), slot_bitmap(busy, count), str(m.get("waiters", 0)))
    return table


def status_view(reply: dict) -> RenderableType:
    """``pvfs2ctl status``: client-core, version, features, uptime, op counts, mounts, buffers."""
    info = _kv_table("pvfs2dev status")
    in_service = reply.get("daemon_in_service")
    info.add_row("client-core", f"{'in service' if in_service else 'not in service'} "
                                f"(open count {reply.get('open_count')})")
    info.add_row("userspace version", fmt_version(int(reply.get("userspace_version") or 0)))
    info.add_row("features", fmt_features(int(reply.get("features") or 0)))
    info.add_row("uptime", fmt_duration(float(reply.get("uptime", 0.0))))
    info.add_row("request list", str(reply.get("request_list", 0)))
    info.add_row("in progress", str(reply.get("in_progress", 0)))
    states = reply.get("ops_by_state") or {}
    info.add_row("ops by state", Text(", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none"))
    return Group(info, Text(""), mounts_table(reply.get("mounts", [])), buffers_table(reply.get("buffers", [])))


# -- ops -----------------------------------------------------------------------------------------------


def ops_table(rows: Sequence[dict]) -> Table:
    """One row per op in flight (spec §6.4): tag, op, state bits, age, attempts, ids, fs_id, slot, where."""
    table = Table(title="ops in flight")
    for name, right in (("tag", True), ("op", False), ("state", False), ("age s", True), ("attempts", True),
                        ("uid", True), ("gid", True), ("pid", True), ("fs_id", True), ("slot", True),
                        ("where", False)):
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for r in rows:
        op = str(r.get("op")) + (" (cancel)" if r.get("cancel") else "")
        slot = r.get("slot")
        table.add_row(str(r.get("tag")), Text(op), Text(str(r.get("state_names"))), fmt_age(float(r.get("age", 0))),
                      str(r.get("attempts")), str(r.get("uid")), str(r.get("gid")), str(r.get("pid")),
                      str(r.get("fs_id")), "-" if slot is None or slot < 0 else str(slot),
                      Text(str(r.get("where", "-"))))
    if not rows:
        table.caption = "no ops in flight"
    return table


# -- stats ----------------------------------------------------------------------------------------------


def quantile(histogram: Sequence[int], buckets: Sequence[float], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` (the broker's rule); None if empty."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank and n:
            return buckets[i] if i < len(buckets) else math.inf
    return math.inf


def _errors_text(errors: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def stats_view(snapshot: dict) -> RenderableType:
    """``pvfs2ctl stats``: per op type counts and latency, errors by errno, the latency histogram, counters."""
    ops: dict = snapshot.get("ops", {})
    buckets: list = snapshot.get("buckets", [])

    per_op = Table(title="ops by type", caption="p50/p99: upper bound of the histogram bucket")
    for name, right in (("op", False), ("count", True), ("errors", True), ("error kinds", False), ("mean", True),
                        ("p50", True), ("p99", True)):
        per_op.add_column(name, justify="right" if right else "left")
    for name, s in sorted(ops.items(), key=lambda kv: (-kv[1].get("count", 0), kv[0])):
        count = s.get("count", 0)
        mean = s.get("latency_sum", 0.0) / count if count else None
        per_op.add_row(Text(name), str(count), str(sum(s.get("errors", {}).values())),
                       Text(_errors_text(s.get("errors", {}))), fmt_latency(mean),
                       fmt_latency(s.get("p50")), fmt_latency(s.get("p99")))

    by_errno: dict[str, int] = {}
    for s in ops.values():
        for err, n in s.get("errors", {}).items():
            by_errno[err] = by_errno.get(err, 0) + n
    errors = Table(title="errors by errno")
    errors.add_column("errno")
    errors.add_column("count", justify="right")
    for err, n in sorted(by_errno.items(), key=lambda kv: (-kv[1], kv[0])):
        errors.add_row(Text(err), str(n))
    if not by_errno:
        errors.caption = "no failed ops"

    counters = _kv_table("counters")
    for key in ("reads", "writes", "device_opens", "device_releases", "purged", "timed_out", "cancels_sent",
                "request_list", "in_progress"):
        if key in snapshot:
            counters.add_row(key, str(snapshot[key]))

    return Group(per_op, errors, histogram_table(ops, buckets), Text(""), counters)


def histogram_table(ops: dict, buckets: Sequence[float], bar_width: int = 40) -> Table:
    """The latency histogram of all op types together, from the first to the last non-empty bucket."""
    combined = [0] * (len(buckets) + 1)
    for s in ops.values():
        for i, n in enumerate(s.get("histogram", [])[: len(combined)]):
            combined[i] += n
    table = Table(title="latency histogram (all ops)")
    table.add_column("latency", justify="right")
    table.add_column("ops", justify="right")
    table.add_column("")
    used = [i for i, n in enumerate(combined) if n]
    if not used:
        table.caption = "no ops finished yet"
        return table
    peak = max(combined)
    for i in range(used[0], used[-1] + 1):
        label = f"≤ {fmt_latency(buckets[i])}" if i < len(buckets) else f"> {fmt_latency(buckets[-1])}"
        bar = "█" * max(1, round(combined[i] / peak * bar_width)) if combined[i] else ""
        table.add_row(label, str(combined[i]), bar)
    return table


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


PROMETHEUS_PREFIX = "pvfs2dev"

#: Broker-wide counters of a stats snapshot: key, metric (without prefix and _total), help.
_COUNTERS = (
    ("reads", "reads", "read calls on the filesystem (sysfs stats/reads)."),
    ("writes", "writes", "write calls on the filesystem (sysfs stats/writes)."),
    ("device_opens", "device_opens", "opens of the device by a client-core."),
    ("device_releases", "device_releases", "releases of the device by a client-core."),
    ("purged", "purged_ops", "ops purged when the client-core went away."),
    ("timed_out", "timed_out_ops", "ops that timed out waiting."),
    ("cancels_sent", "cancels_sent", "CANCEL upcalls sent for interrupted I/O."),
)
_GAUGES = (
    ("request_list", "request_list_ops", "ops waiting on the request list (queue depth)."),
    ("in_progress", "in_progress_ops", "ops read by the client-core and not yet answered."),
)


def prometheus_text(snapshot: dict, prefix: str = PROMETHEUS_PREFIX) -> str:
    """A stats snapshot in the Prometheus text exposition format (version 0.0.4).

    Counters end in ``_total``; the latency histogram has cumulative ``_bucket``
    series with ``le`` labels ending at ``+Inf``, then ``_sum`` and ``_count``.
    """
    ops: dict = snapshot.get("ops", {})
    buckets: list = snapshot.get("buckets", [])
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family(f"{prefix}_ops_total", "counter", "Ops finished, by op type.")
    for op, s in sorted(ops.items()):
        out.append(f'{prefix}_ops_total{{op="{_label(op)}"}} {s.get("count", 0)}')
    family(f"{prefix}_op_errors_total", "counter", "Ops finished with an error, by op type and errno name.")
    for op, s in sorted(ops.items()):
        for err, n in sorted(s.get("errors", {}).items()):
            out.append(f'{prefix}_op_errors_total{{op="{_label(op)}",errno="{_label(err)}"}} {n}')
    name = f"{prefix}_op_latency_seconds"
    family(name, "histogram", "Time from queueing to answer, by op type.")
    for op, s in sorted(ops.items()):
        labels = f'op="{_label(op)}"'
        histogram = list(s.get("histogram", []))
        running = 0
        for i, bound in enumerate(buckets):
            running += histogram[i] if i < len(histogram) else 0
            out.append(f'{name}_bucket{{{labels},le="{_number(float(bound))}"}} {running}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {sum(histogram)}')
        out.append(f"{name}_sum{{{labels}}} {_number(float(s.get('latency_sum', 0.0)))}")
        out.append(f"{name}_count{{{labels}}} {s.get('count', sum(histogram))}")
    for key, metric, help_text in _COUNTERS:
        if key in snapshot:
            family(f"{prefix}_{metric}_total", "counter", help_text[0].upper() + help_text[1:])
            out.append(f"{prefix}_{metric}_total {snapshot[key]}")
    for key, metric, help_text in _GAUGES:
        if key in snapshot:
            family(f"{prefix}_{metric}", "gauge", help_text[0].upper() + help_text[1:])
            out.append(f"{prefix}_{metric} {snapshot[key]}")
    return "\n".join(out) + "\n"


# -- params, debug, trace -----------------------------------------------------------------------------


def params_table(params: Sequence[dict]) -> Table:
    """Every sysfs knob: name, backing, and the value where the broker holds it itself."""
    table = Table(title="sysfs knobs (/sys/fs/orangefs)",
                  caption="daemon-backed values come from the client-core: pvfs2ctl params NAME")
    table.add_column("name")
    table.add_column("backed by")
    table.add_column("value", justify="right")
    for p in params:
        value = p.get("value")
        table.add_row(Text(str(p.get("name"))), Text(str(p.get("kind"))),
                      Text("-" if value is None else str(value).strip()))
    return table


def trace_line(event: dict) -> str:
    """One transition: ``time tag op event before -> after``."""
    return (f"{float(event.get('time', 0.0)):.6f} {event.get('tag')} {event.get('op')} {event.get('event')} "
            f"{event.get('before')} -> {event.get('after')}")


def json_text(reply: dict, *, compact: bool = False) -> str:
    """A reply as JSON: indented for reading, or one line (trace)."""
    return json.dumps(reply, separators=(",", ":")) if compact else json.dumps(reply, indent=2)


# -- top ------------------------------------------------------------------------------------------------


def top_rows(previous: dict | None, current: dict) -> list[dict]:
    """Per op type between two stats snapshots: ops/s, total, errors, p50/p99.

    ``previous``/``current`` are samples ``{"status": ..., "stats": ...}``; with
    no previous sample the rate is None.  The quantiles are over the ops that
    finished between the samples when there were any, else over all of them
    (``window`` says which).
    """
    cur_ops = current["stats"].get("ops", {})
    buckets = current["stats"].get("buckets", [])
    prev_ops = previous["stats"].get("ops", {}) if previous else {}
    elapsed = (current["status"].get("uptime", 0.0) - previous["status"].get("uptime", 0.0)) if previous else 0.0
    rows = []
    for name, s in cur_ops.items():
        p = prev_ops.get(name, {})
        delta = s.get("count", 0) - p.get("count", 0)
        hist = s.get("histogram", [])
        prev_hist = p.get("histogram", [0] * len(hist))
        window = [a - b for a, b in zip(hist, prev_hist)] if previous and delta > 0 else None
        source = window or hist
        rows.append({
            "op": name,
            "rate": delta / elapsed if previous and elapsed > 0 else None,
            "total": s.get("count", 0),
            "errors": sum(s.get("errors", {}).values()),
            "p50": quantile(source, buckets, 0.5),
            "p99": quantile(source, buckets, 0.99),
            "window": window is not None,
        })
    rows.sort(key=lambda r: (-(r["rate"] or 0.0), -r["total"], r["op"]))
    return rows


def top_frame(previous: dict | None, current: dict, *, interactive: bool = False) -> RenderableType:
    """One frame of ``pvfs2ctl top`` from two samples (see :func:`top_rows`)."""
    status, stats = current["status"], current["stats"]
    rows = top_rows(previous, current)
    restarts = max(int(stats.get("device_opens", 0)) - 1, 0)
    in_service = "in service" if status.get("daemon_in_service") else "NOT in service"
    head = Table.grid(padding=(0, 3))
    head.add_column()
    head.add_column()
    head.add_column()
    head.add_row(Text(f"pvfs2dev up {fmt_duration(float(status.get('uptime', 0.0)))}", style="bold"),
                 Text(f"client-core {in_service} (open count {status.get('open_count')})"),
                 Text(f"client-core restarts {restarts}"))
    total_rate = sum(r["rate"] for r in rows if r["rate"] is not None) if previous else None
    head.add_row(Text(f"queue depth {status.get('request_list', stats.get('request_list', 0))}"),
                 Text(f"in progress {status.get('in_progress', stats.get('in_progress', 0))}"),
                 Text("ops/s " + ("-" if total_rate is None else f"{total_rate:.1f}")))
    for m in status.get("buffers", []):
        count, busy = int(m.get("count", 0)), m.get("busy", [])
        head.add_row(Text(f"{m.get('name')} slots {len(busy)}/{count} busy"),
                     Text(slot_bitmap(busy, count, width=count or 1)),
                     Text(f"waiters {m.get('waiters', 0)}"))

    table = Table(caption="p50/p99: last interval; * since start"
                  + ("  ·  q quits" if interactive else ""))
    for name, right in (("op", False), ("ops/s", True), ("total", True), ("errors", True), ("p50", True),
                        ("p99", True)):
        table.add_column(name, justify="right" if right else "left")
    for r in rows:
        mark = "" if r["window"] or r["p50"] is None else "*"
        table.add_row(Text(r["op"]), "-" if r["rate"] is None else f"{r['rate']:.1f}", str(r["total"]),
                      str(r["errors"]), fmt_latency(r["p50"]) + mark, fmt_latency(r["p99"]) + mark)
    if not rows:
        table.caption = "no ops finished yet" + ("  ·  q quits" if interactive else "")
    return Group(head, table)
