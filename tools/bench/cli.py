"""``pvfs2ctl bench`` (also ``python -m tools.bench``): every figure beside its reference, in one run.

Runs the sections of :mod:`.figures` one after another (each starts and stops
its own processes and mounts), prints one table with the ratios, and writes
the whole report — machine, sizes, every run's value — to
``bench/results/<date>.json`` (``<date>-quick.json`` for ``--quick``, with the
sections named for ``--only``).  Progress goes to standard error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console

from . import CHECKOUT
from .machine import describe, machine
from .report import markdown, tables
from .sizes import FULL, QUICK, SECTIONS

#: The order of the table (the issue's); sections run in :data:`SECTIONS` order.
TABLE_ORDER = ("device round trip", "metadata", "data path", "mount", "scale", "latency at 64 in flight")
FORMAT = {"format": "pvfs2bench", "version": 1}


def default_results_dir() -> Path:
    return (CHECKOUT / "bench" / "results") if CHECKOUT is not None else Path("bench") / "results"


def results_name(date: datetime.datetime, quick: bool, only: tuple[str, ...]) -> str:
    name = date.strftime("%Y-%m-%d")
    if quick:
        name += "-quick"
    if only:
        name += "-" + "-".join(s for s in SECTIONS if s in only)
    return name + ".json"


@contextlib.contextmanager
def signals_interrupt():
    """SIGTERM and SIGHUP act as Ctrl-C, so every section stops what it started.

    They are turned into SIGINT rather than raised from the handler: inside
    ``trio.run`` trio delivers a KeyboardInterrupt where it is safe, and the
    async ``with`` blocks holding processes and temporary directories unwind
    in order; an exception raised at an arbitrary point of trio's own code
    would abandon the run instead.
    """

    def interrupt(signum, frame) -> None:
        signal.raise_signal(signal.SIGINT)

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a shell's background job: SIGINT starts out ignored
        saved[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def measure(sizes, sections: tuple[str, ...], base_dir: str | None, progress) -> tuple[list[dict], dict]:
    """Every figure of ``sections`` in table order, and the mount's settings (empty without the mount)."""
    from . import figures  # here, not at the top: ``pvfs2ctl --help`` need not import every benchmark

    got: list[dict] = []
    settings: dict = {}
    with signals_interrupt():
        if "device" in sections:
            got += figures.device(sizes, progress, base_dir)
        stack_parts = {s for s in ("metadata", "data", "latency") if s in sections}
        if stack_parts:
            got += figures.whole_stack(sizes, stack_parts, progress, base_dir)
        if "scale" in sections:
            got += figures.scale(sizes, progress, base_dir)
        if "mount" in sections:
            mount_figures, settings = figures.mount(sizes, progress, base_dir)
            got += mount_figures
    got.sort(key=lambda f: TABLE_ORDER.index(f["section"]))  # stable: each section keeps its own order
    return got, settings


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True,
              help="Every figure with small sizes and short runs, in under a minute (for CI: it runs, every figure "
                   "is produced; the numbers are not for quoting).")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help=f"Timed runs per figure, after one warm-up run [{FULL.runs}].")
@click.option("--only", type=click.Choice(SECTIONS), multiple=True, default=None,
              help="Run only this section (repeatable) [all].")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the JSON report goes [bench/results of the checkout, else ./bench/results].")
@click.option("--dir", "base_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where the temporary directories, stores and mounts go; its disk is the one measured "
                   "[the system temp directory].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of the table.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the table in Markdown (for the README).")
def bench(quick: bool, runs: int | None, only: tuple[str, ...], results_dir: Path | None, base_dir: str | None,
          as_json: bool, as_markdown: bool) -> None:
    """Benchmark: every figure beside its reference, measured in one run on this machine.

    Device round trips, full-stack GETATTR, FILE_IO through the shared buffer,
    the FUSE mount, per-op cost by queue length and latency per op type; each
    the median of several runs after a warm-up, with min and max, and the
    ratio to each reference taken in the same run.
    """
    sizes = QUICK if quick else FULL
    if runs:
        sizes = dataclasses.replace(sizes, runs=runs)
    sections = tuple(s for s in SECTIONS if not only or s in only)
    started, date = time.monotonic(), datetime.datetime.now().astimezone()

    def progress(text: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f} s] {text}", err=True)

    try:
        figures_, mount_settings = measure(sizes, sections, base_dir, progress)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"the benchmark failed: {exc}") from None
    report = {
        **FORMAT,
        "date": date.isoformat(timespec="seconds"),
        "machine": machine(Path(base_dir or tempfile.gettempdir())),
        "settings": {"quick": quick, "sections": list(sections), **dataclasses.asdict(sizes),
                     "mount": mount_settings},
        "elapsed_s": round(time.monotonic() - started, 1),
        "figures": figures_,
    }
    about = f"{describe(report['machine'])}; {report['date']}; {report['elapsed_s']:.0f} s"
    target = (results_dir or default_results_dir()) / results_name(date, quick, only)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, target)  # a reader never sees half a report
    progress(f"report written to {target}")
    if as_json:
        click.echo(json.dumps(report, indent=1, ensure_ascii=False))
    elif as_markdown:
        click.echo(markdown(report, about))
    else:
        console = Console()
        if not console.is_terminal:  # piped or redirected: rich would squeeze the table into 80 columns
            console = Console(width=170, file=sys.stdout)
        for t in tables(report, about):
            console.print(t)


def main() -> None:
    bench(prog_name="python -m tools.bench" if __package__.startswith("tools.") else "pvfs2bench")
