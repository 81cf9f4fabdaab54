"""Mount benchmark: the FUSE mount beside a plain pyfuse3 passthrough and the native disk, in one run.

    python -m tools.bench.mount_bench [--runs 5] [--mib 1024] [--stats 20000] [--creates N] [--quick]
                                [--dir DIR] [--json | --markdown]

Three targets, all on the disk holding ``--dir`` (default: the system temp
directory), set up fresh in one temporary directory that is removed at the end:

* **pvfs2dev**: ``pvfs2dev serve --mount`` and ``clientcore`` on a new store,
  mounted without ``default_permissions``, ``getattr_timeout_msecs`` 0 and
  ``dcache_timeout_msecs`` 50 (its default), set with ``pvfs2ctl params``;
* **pyfuse3 passthrough**: ``python -m tools.bench.passthrough`` over a directory,
  attribute timeout 0 and entry timeout 0.05 s: the same cache settings, the
  same pyfuse3 on trio, no protocol behind it;
* **native**: the directory itself.

Figures, each the median of ``--runs`` timed runs after one warm-up run (min–max):

* **dd write**: ``dd if=/dev/zero bs=1M count=MIB conv=fsync`` into a new
  file, MB/s (10^6 bytes/s) as dd reports it (bytes over dd's own elapsed
  time, which includes the final fsync).  The source is /dev/zero, so no
  source file's reads are timed; neither FUSE target compresses or skips zeros.
* **dd read**: ``sync``, ``echo 3 > /proc/sys/vm/drop_caches`` (root only; a
  warning says so when it cannot), then ``dd of=/dev/null bs=1M`` of that file.
* **stat**: ``os.stat`` of one file in a loop, by 1 and by 4 worker processes
  started together (``--stats`` calls in all, shared among the callers), total
  calls over the time from the first caller's start to the last one's end.
  With attributes never cached, every call asks the filesystem (GETATTR); the
  name is revalidated each 50 ms (LOOKUP).
* **create+unlink**: one process, ``os.open(O_CREAT|O_EXCL)``, ``os.close``,
  ``os.unlink`` of ``--creates`` distinct names in one directory, ops/s (one op
  = the three calls).

Runs go round the targets (the order turns each run), so drift in the
machine's load falls on all three alike.  Everything is cleaned up, on
failure, Ctrl-C or SIGTERM too: workers and daemons stopped, mounts gone from
/proc/mounts (``umount -l`` as a last resort), the temporary directory removed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
from rich.console import Console
from rich.table import Table

from . import module_command
from .machine import filesystem_of, machine

PY = sys.executable
BIN = Path(PY).parent
DEADLINE = 20.0
MiB = 1 << 20

PVFS2DEV, PASSTHROUGH, NATIVE = "pvfs2dev", "pyfuse3 passthrough", "native"
TARGETS = (PVFS2DEV, PASSTHROUGH, NATIVE)
RATIOS = ((f"{PVFS2DEV} / passthrough", PASSTHROUGH), (f"{PVFS2DEV} / {NATIVE}", NATIVE))

DD_WRITE = "dd write, bs=1M, conv=fsync, MB/s"
DD_READ = "dd read after drop_caches, bs=1M, MB/s"
STAT_1 = "stat one file, 1 caller, ops/s"
STAT_4 = "stat one file, 4 callers, ops/s"
CREATE = "create+unlink, 1 caller, ops/s"
FIGURES = (DD_WRITE, DD_READ, STAT_1, STAT_4, CREATE)

#: The cache settings both FUSE mounts get.
ATTR_TIMEOUT_MSECS = 0
ENTRY_TIMEOUT_MSECS = 50

FULL = {"runs": 5, "mib": 1024, "stats": 20000}
QUICK = {"runs": 3, "mib": 64, "stats": 2000}


def _command(name: str, module: str) -> list[str]:
    path = BIN / name
    return [str(path)] if path.exists() else [PY, "-m", module]


def _progress(text: str) -> None:
    click.echo(text, err=True)


# -- mounts and processes ------------------------------------------------------------------------------------


def fuse_unavailable() -> str | None:
    """Why this machine cannot mount the FUSE targets (one line), or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not usable by this user"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return f"pyfuse3 cannot be imported ({exc})"
    if shutil.which("fusermount3") is None and os.geteuid() != 0:
        return "fusermount3 is missing and this user is not root"
    return None


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, from /proc/mounts (octal escapes decoded)."""
    top = os.path.realpath(path)
    found = []
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
                if point == top or point.startswith(top + "/"):
                    found.append(point)
    return found


def mounted(path: Path) -> bool:
    return os.path.realpath(path) in mounts_under(path)


@dataclass
class Target:
    name: str
    root: Path  # where the benchmark's files go
    mountpoint: Path | None = None
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, label: str, args: list[str], cwd: Path | None = None) -> subprocess.Popen:
        """Start a daemon in its own session (a Ctrl-C reaches only the benchmark, which stops it in order)."""
        log = self.root.parent / f"{label}.log"
        self.logs[label] = log
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=cwd)
        self.procs.append((label, proc))
        return proc

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for label, path in self.logs.items():
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {label} log ---\n" + "\n".join(text))
        return "\n".join(parts)

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not ready():
            for label, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name}: {label} exited {proc.returncode} before {what}\n"
                                       f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what} after {DEADLINE} s\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM each daemon in start order (the FUSE server first: it unmounts), kill what lingers, unmount."""
        for label, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                _progress(f"warning: {self.name}: {label} ignored SIGTERM for {DEADLINE} s; killing it")
                proc.kill()
                proc.wait()
        if self.mountpoint is not None and mounted(self.mountpoint):
            _progress(f"warning: {self.mountpoint} still mounted after its server stopped; umount -l")
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
            if mounted(self.mountpoint):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)


def start_pvfs2dev(base: Path, cleanup: contextlib.ExitStack) -> Target:
    home = base / "pvfs2dev"
    rundir, store, mnt = home / "run", home / "store", home / "mnt"
    mnt.mkdir(parents=True)
    target = Target(PVFS2DEV, mnt, mnt)
    cleanup.callback(target.stop)
    target.start("pvfs2dev-serve", [*_command("pvfs2dev", "pvfs2dev.cli"), "serve", "--rundir", str(rundir),
                                    "--mount", str(mnt), "--log-level", "warning"])
    target.wait(lambda: (rundir / "pvfs2-ctl").is_socket(), "control socket")  # bound last of the sockets
    target.start("clientcore", [*_command("clientcore", "clientcore.daemon"), "--rundir", str(rundir),
                                "--store", str(store), "--log-level", "warning"])
    target.wait(lambda: mounted(mnt), "mount")
    for name, value in (("getattr_timeout_msecs", ATTR_TIMEOUT_MSECS), ("dcache_timeout_msecs", ENTRY_TIMEOUT_MSECS)):
        ctl = [*_command("pvfs2ctl", "pvfs2ctl"), "--rundir", str(rundir), "params", name]
        subprocess.run([*ctl, str(value)], check=True, capture_output=True, timeout=DEADLINE)
        shown = subprocess.run(ctl, check=True, capture_output=True, text=True, timeout=DEADLINE).stdout.strip()
        if shown != str(value):
            raise RuntimeError(f"pvfs2ctl params {name} shows {shown!r} after setting {value}")
    return target


def start_passthrough(base: Path, cleanup: contextlib.ExitStack) -> Target:
    source, mnt = base / "passthrough" / "source", base / "passthrough" / "mnt"
    source.mkdir(parents=True)
    mnt.mkdir()
    target = Target(PASSTHROUGH, mnt, mnt)
    cleanup.callback(target.stop)
    command, cwd = module_command("passthrough")
    target.start("passthrough", [*command, str(source), str(mnt),
                                 "--attr-timeout", str(ATTR_TIMEOUT_MSECS / 1000),
                                 "--entry-timeout", str(ENTRY_TIMEOUT_MSECS / 1000)], cwd)
    target.wait(lambda: mounted(mnt), "mount")
    return target


def start_native(base: Path, cleanup: contextlib.ExitStack) -> Target:
    root = base / "native" / "files"
    root.mkdir(parents=True)
    return Target(NATIVE, root)


def remove_tree(base: Path) -> None:
    left = mounts_under(base)
    if left:
        _progress(f"warning: not removing {base}: still mounted: {', '.join(left)}")
        return
    shutil.rmtree(base, onerror=lambda fn, path, exc: _progress(f"warning: cannot remove {path}: {exc[1]}"))


@contextlib.contextmanager
def signals_raise():
    """SIGTERM and SIGHUP end the benchmark as Ctrl-C does, so the cleanup runs."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    saved = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_held():
    """No signal may cut the cleanup short (each of its waits is bounded)."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in held}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


# -- the measurements ----------------------------------------------------------------------------------------

_DD_LINE = re.compile(r"(\d+) bytes .*copied, ([0-9.eE+-]+) s")


def dd(*args: str, expect: int) -> float:
    """Run dd; MB/s from the byte count and elapsed time dd prints."""
    done = subprocess.run(["dd", *args], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                          stdin=subprocess.DEVNULL, timeout=max(600, expect / MiB))
    match = _DD_LINE.search(done.stderr)
    if done.returncode or not match:
        raise RuntimeError(f"dd {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    count, seconds = int(match.group(1)), float(match.group(2))
    if count != expect:
        raise RuntimeError(f"dd {' '.join(args)} moved {count} bytes, not {expect}")
    return count / max(seconds, 1e-9) / 1e6


class Caches:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``, warning once where it is not allowed."""

    dropped = True

    def drop(self) -> None:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as exc:
            if self.dropped:
                _progress(f"warning: cannot drop the page cache ({exc}); dd read figures are cached reads")
            self.dropped = False


def measure_dd(target: Target, mib: int, caches: Caches) -> dict[str, float]:
    path = target.root / "dd.bin"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        write = dd("if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync", expect=mib * MiB)
        caches.drop()
        read = dd(f"if={path}", "of=/dev/null", "bs=1M", expect=mib * MiB)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return {DD_WRITE: write, DD_READ: read}


def _stat_worker(path: str, count: int, barrier, results) -> None:
    try:
        stat = os.stat
        barrier.wait(DEADLINE)
        start = time.monotonic()
        for _ in range(count):
            stat(path)
        results.put((start, time.monotonic(), count, None))
    except BaseException as exc:  # reported to the parent, whatever it is
        results.put((0.0, 0.0, 0, repr(exc)))


def _create_worker(directory: str, count: int, barrier, results) -> None:
    try:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
        stem = os.path.join(directory, f"c{os.getpid()}-{time.monotonic_ns()}-")
        names = [f"{stem}{i}" for i in range(count)]
        open_, close, unlink = os.open, os.close, os.unlink
        barrier.wait(DEADLINE)
        start = time.monotonic()
        for name in names:
            close(open_(name, flags, 0o644))
            unlink(name)
        results.put((start, time.monotonic(), count, None))
    except BaseException as exc:  # reported to the parent, whatever it is
        results.put((0.0, 0.0, 0, repr(exc)))


def in_parallel(worker, arg: str, counts: list[int]) -> float:
    """Run ``worker(arg, count)`` in one process per count, started together; total ops/s."""
    ctx = multiprocessing.get_context("fork")  # no threads in this process: fork is safe, and quick
    barrier, results = ctx.Barrier(len(counts)), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(arg, n, barrier, results), daemon=True) for n in counts]
    try:
        for proc in procs:
            proc.start()
        got: list[tuple] = []
        deadline = time.monotonic() + 3600
        while len(got) < len(procs):
            try:
                got.append(results.get(timeout=1))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    raise RuntimeError(f"{worker.__name__}: workers exited without a result") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{worker.__name__}: no result after an hour") from None
        errors = [e for *_, e in got if e]
        if errors:
            raise RuntimeError(f"{worker.__name__} on {arg}: {errors[0]}")
        return sum(n for _, _, n, _ in got) / max(max(t1 for _, t1, _, _ in got) - min(t0 for t0, *_ in got), 1e-9)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(DEADLINE)
        results.close()
        results.join_thread()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure_stat(target: Target, stats: int, callers: int, figure: str) -> dict[str, float]:
    path = target.root / "stat-me"
    if not path.exists():
        path.write_bytes(b"x" * 4096)
    return {figure: in_parallel(_stat_worker, str(path), _split(stats, callers))}


def measure_create(target: Target, creates: int) -> dict[str, float]:
    directory = target.root / "creates"
    directory.mkdir(exist_ok=True)
    return {CREATE: in_parallel(_create_worker, str(directory), [creates])}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def measure(runs: int, mib: int, stats: int, creates: int, base_dir: str | None) -> tuple[dict, dict]:
    """{figure: {target: summary}} and what the run saw of its settings."""
    caches = Caches()
    cleanup = contextlib.ExitStack()
    base = Path(tempfile.mkdtemp(prefix="mount-bench-", dir=base_dir)).resolve()
    cleanup.callback(remove_tree, base)
    try:
        with signals_raise():
            _progress(f"setting up in {base}")
            targets = [start(base, cleanup) for start in (start_pvfs2dev, start_passthrough, start_native)]
            plan: list[tuple[str, Callable[[Target], dict[str, float]]]] = [
                ("dd", lambda t: measure_dd(t, mib, caches)),
                ("stat ×1", lambda t: measure_stat(t, stats, 1, STAT_1)),
                ("stat ×4", lambda t: measure_stat(t, stats, 4, STAT_4)),
                ("create+unlink", lambda t: measure_create(t, creates)),
            ]
            values: dict[str, dict[str, list[float]]] = {f: {t.name: [] for t in targets} for f in FIGURES}
            for what, fn in plan:
                for run in range(runs + 1):  # run 0 warms up
                    turn = run % len(targets)
                    for target in targets[turn:] + targets[:turn]:
                        _progress(f"{what}: {target.name}, {'warm-up' if run == 0 else f'run {run}/{runs}'}")
                        got = fn(target)
                        if run:
                            for figure, value in got.items():
                                values[figure][target.name].append(value)
            results = {f: {t: summary(v) for t, v in by_target.items()} for f, by_target in values.items()}
    finally:
        with signals_held():
            cleanup.close()
    settings = {
        "dd_mib": mib, "dd_source": "/dev/zero", "stats_per_run": stats, "creates_per_run": creates,
        "attr_timeout_ms": ATTR_TIMEOUT_MSECS, "entry_timeout_ms": ENTRY_TIMEOUT_MSECS,
        "default_permissions": False, "page_cache_dropped": caches.dropped,
        "filesystem": filesystem_of(Path(base_dir or tempfile.gettempdir())),
    }
    return results, settings


# -- the report ----------------------------------------------------------------------------------------------


def ratios(results: dict) -> dict:
    out = {}
    for figure, by_target in results.items():
        mine = by_target[PVFS2DEV]["median"]
        out[figure] = {label: (mine / by_target[other]["median"] if by_target[other]["median"] else None)
                       for label, other in RATIOS}
    return out


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _cell(r: dict, sep: str = " ") -> str:
    return f"{_num(r['median'])}{sep}({_num(r['min'])}–{_num(r['max'])})"


def _ratio(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=None, help=f"Timed runs per figure [{FULL['runs']}].")
@click.option("--mib", type=click.IntRange(min=1), default=None, help=f"Size of the dd file, MiB [{FULL['mib']}].")
@click.option("--stats", type=click.IntRange(min=4), default=None,
              help=f"stat calls per run, shared among the callers [{FULL['stats']}].")
@click.option("--creates", type=click.IntRange(min=1), default=None,
              help="create+unlink ops per run [a tenth of --stats].")
@click.option("--quick", is_flag=True,
              help=f"Small sizes: {QUICK['mib']} MiB, {QUICK['stats']} stats, {QUICK['runs']} runs "
                   "(the options given still win).")
@click.option("--dir", "base_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where the temporary directory goes (its disk is the one measured) [system temp dir].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for the README).")
def main(runs, mib, stats, creates, quick, base_dir, as_json, markdown) -> None:
    """dd, stat and create+unlink on the FUSE mount, a pyfuse3 passthrough and the native disk."""
    defaults = QUICK if quick else FULL
    runs = runs or defaults["runs"]
    mib = mib or defaults["mib"]
    stats = stats or defaults["stats"]
    creates = creates or max(1, stats // 10)
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        results, settings = measure(runs, mib, stats, creates, base_dir)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    box = machine()
    ratio = ratios(results)
    if as_json:
        click.echo(json.dumps({"machine": box, "date": date, "runs": runs, "settings": settings,
                               "targets": list(TARGETS), "results": results, "ratios": ratio}, indent=2))
        return
    about = (f"{box['nproc']} CPUs ({box['cpu']}), Linux {box['kernel']}, {box['python']}, "
             f"pyfuse3 {box['pyfuse3']}, {settings['filesystem']}, {date}")
    sizes = (f"dd {mib} MiB from /dev/zero; {stats:,} stats and {creates:,} creates per run; "
             f"attr timeout {ATTR_TIMEOUT_MSECS} ms, entry timeout {ENTRY_TIMEOUT_MSECS} ms, "
             "no default_permissions" + ("" if settings["page_cache_dropped"] else "; PAGE CACHE NOT DROPPED"))
    heads = [*TARGETS, *(label for label, _ in RATIOS)]
    if markdown:
        click.echo(f"Median of {runs} runs (min–max). {about}. {sizes}.\n")
        click.echo("| figure | " + " | ".join(heads) + " |\n|---|" + "---:|" * len(heads))
        for figure, by_target in results.items():
            cells = [_cell(by_target[t]) for t in TARGETS] + [_ratio(ratio[figure][label]) for label, _ in RATIOS]
            click.echo(f"| {figure} | " + " | ".join(cells) + " |")
        return
    title = (f"FUSE mount beside a pyfuse3 passthrough and the native disk — median of {runs} "
             f"run{'' if runs == 1 else 's'} (min–max)")
    table = Table(title=title, caption=f"{about}\n{sizes}")
    table.add_column("figure")
    for head in heads:
        table.add_column(head, justify="right")
    for figure, by_target in results.items():
        table.add_row(figure, *(_cell(by_target[t], "\n") for t in TARGETS),
                      *(_ratio(ratio[figure][label]) for label, _ in RATIOS))
    console = Console()
    if not console.is_terminal:  # piped or redirected: rich would squeeze the table into 80 columns
        console = Console(width=120)
    console.print(table)


if __name__ == "__main__":
    main()
