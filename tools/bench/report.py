"""Figures beside their references: the values, the ratios, and the table (pure: no measuring, no I/O).

A *figure* is one thing pvfs2dev does, measured, with the things measured
beside it in the same run (its *references*).  In JSON (``bench/results``)::

    {"section": "device round trip", "figure": "1 in flight", "unit": "ops/s",
     "path": "what the figure goes through",
     "pvfs2dev": {"median": .., "min": .., "max": .., "values": [..]} | null,
     "references": [{"name": .., "result": {..} | null, "ratio": .. | null, "skipped": null | "why"}],
     "skipped": null | "why"}

``ratio`` is pvfs2dev's median over the reference's.  A figure or reference
that could not be measured here carries ``skipped`` (one line saying why) and
no numbers: nothing is filled in.
"""

from __future__ import annotations

import statistics

from rich.table import Table

RATIO_HEAD = "pvfs2dev ÷ reference"


def summary(values: list[float]) -> dict:
    """Median, min and max of the runs, and the runs themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def reference(name: str, values: list[float] | None = None, *, skipped: str | None = None) -> dict:
    return {"name": name, "result": None if values is None else summary(values), "ratio": None, "skipped": skipped}


def figure(section: str, name: str, unit: str, path: str, values: list[float] | None,
           references: list[dict] = (), *, skipped: str | None = None) -> dict:
    """One figure with its references; ratios filled in where both sides were measured."""
    ours = None if values is None else summary(values)
    refs = [dict(r) for r in references]
    for r in refs:
        if ours is not None and r["result"] is not None and r["result"]["median"]:
            r["ratio"] = ours["median"] / r["result"]["median"]
    return {"section": section, "figure": name, "unit": unit, "path": path, "pvfs2dev": ours,
            "references": refs, "skipped": skipped}


def skipped_figure(section: str, name: str, unit: str, path: str, why: str, references: list[str] = ()) -> dict:
    """A figure that could not be measured on this machine: the reason, never a number."""
    return figure(section, name, unit, path, None, [reference(r, skipped=why) for r in references], skipped=why)


# -- rendering -----------------------------------------------------------------------------------------------


def number(v: float) -> str:
    """Three significant figures below 100, whole numbers with thousands separators above."""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def cell(result: dict | None, skipped: str | None = None, sep: str = " ") -> str:
    if result is None:
        return "skipped" if skipped else "–"
    return f"{number(result['median'])}{sep}({number(result['min'])}–{number(result['max'])})"


def ratio_cell(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


LATENCY = "latency at 64 in flight"


def rows(report: dict, sep: str = " ") -> list[tuple[str, list[str]]]:
    """(section, [figure, pvfs2dev, reference name, reference, ratio]) per row of the main table; a figure
    with several references takes a row for each, the figure's own cells on the first.  Latency figures,
    which have no reference, are in :func:`latency_rows` instead."""
    out = []
    for f in report["figures"]:
        if f["section"] == LATENCY:
            continue
        label = f"{f['section']}: {f['figure']}, {f['unit']}"
        ours = cell(f["pvfs2dev"], f["skipped"], sep)
        refs = f["references"] or [None]
        for i, r in enumerate(refs):
            head = [label, ours] if i == 0 else ["", ""]
            if r is None:
                out.append((f["section"], head + ["–", "", ""]))
            else:
                out.append((f["section"], head + [r["name"], cell(r["result"], r["skipped"], sep),
                                                  ratio_cell(r["ratio"])]))
    return out


def latency_rows(report: dict, sep: str = " ") -> list[list[str]]:
    """[op type, p50, p99] per op type, from the figures named '<op type> p50' and '<op type> p99'."""
    by_op: dict[str, dict[str, str]] = {}
    for f in report["figures"]:
        if f["section"] == LATENCY:
            op, p = f["figure"].rsplit(" ", 1)
            by_op.setdefault(op, {})[p] = cell(f["pvfs2dev"], f["skipped"], sep)
    return [[op, cells.get("p50", "–"), cells.get("p99", "–")] for op, cells in by_op.items()]


def title(report: dict) -> str:
    runs = report["settings"]["runs"]
    mode = " (--quick: small sizes, for checking it runs, not for quoting)" if report["settings"]["quick"] else ""
    return f"pvfs2dev bench — median of {runs} run{'' if runs == 1 else 's'} after a warm-up (min–max){mode}"


def tables(report: dict, about: str) -> list[Table]:
    """The rich tables: the figures beside their references (one section per kind of figure, ratio =
    pvfs2dev's median ÷ the reference's), then latency per op type when it was measured."""
    out = [table(report, about)]
    lat = latency_rows(report)
    if lat:
        t = Table(title=f"{LATENCY}, ms — median of the runs' p50 and p99 (min–max)",
                  caption=_latency_path(report), caption_justify="left")
        t.add_column("op type")
        t.add_column("p50", justify="right")
        t.add_column("p99", justify="right")
        for cells in lat:
            t.add_row(*cells)
        out.append(t)
    return out


def _latency_path(report: dict) -> str:
    return next(f["path"] for f in report["figures"] if f["section"] == LATENCY)


def table(report: dict, about: str) -> Table:
    """The main rich table: one section per kind of figure, ratio = pvfs2dev's median ÷ the reference's."""
    t = Table(title=title(report), caption=about, caption_justify="left")
    t.add_column("figure")
    t.add_column("pvfs2dev", justify="right")
    t.add_column("measured beside it")
    t.add_column("reference", justify="right")
    t.add_column(RATIO_HEAD, justify="right")
    last = None
    for section, cells in rows(report):
        if last is not None and section != last:
            t.add_section()
        last = section
        t.add_row(*cells)
    return t


def markdown(report: dict, about: str) -> str:
    """The same table in Markdown, for the README, with the machine line above it."""
    lines = [f"{title(report)}. {about}.", "",
             f"| figure | pvfs2dev | measured beside it | reference | {RATIO_HEAD} |", "|---|---:|---|---:|---:|"]
    for _, cells in rows(report):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lat = latency_rows(report)
    if lat:
        lines += ["", f"Latency at 64 in flight, ms, median of the runs' p50 and p99 (min–max): "
                      f"{_latency_path(report)}.", "",
                  "| op type | p50 | p99 |", "|---|---:|---:|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in lat]
    skipped = [f for f in report["figures"] if f["skipped"]]
    for f in skipped:
        lines.append(f"\n{f['section']}: {f['figure']} skipped: {f['skipped']}")
    return "\n".join(lines)
