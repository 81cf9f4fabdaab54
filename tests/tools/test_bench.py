"""``pvfs2ctl bench --quick`` produces every figure beside its references and leaves nothing behind.

No speed is checked, only that each figure and reference is there with a
positive median between its min and max, that the report is written where it
was asked to go, and that no process, mount or temporary file outlives the
run.  Where FUSE is unavailable the mount figures and the pyfuse3 reference
must say so instead of carrying numbers.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pvfs2ctl.cli import main as pvfs2ctl
from tools.bench.mount_bench import fuse_unavailable, mounts_under
from tools.bench.report import figure, markdown, reference, skipped_figure
from tools.bench.sizes import QUICK

REPO = Path(__file__).resolve().parents[2]
#: Far above the minute --quick takes, for a loaded machine; past it the run is stopped with SIGTERM.
TIMEOUT = 300

#: Every figure of the issue's table, by section, as the report names them.
EXPECTED = {
    "device round trip": ["1 in flight", "64 in flight"],
    "metadata": ["GETATTR full stack, 1 in flight", "GETATTR full stack, 64 in flight"],
    "data path": ["FILE_IO write, 4 MiB", "FILE_IO read, 4 MiB"],
    "mount": ["dd write, bs=1M, conv=fsync", "dd read after drop_caches, bs=1M", "stat one file, 1 caller",
              "stat one file, 4 callers", "create+unlink, 1 caller"],
    "scale": [f"{where}, {n:,} queued" for where in ("end to end", "kernel core alone") for n in (10, 1000, 100_000)],
    "latency at 64 in flight": [f"{op} {p}" for op in ("GETATTR", "LOOKUP", "CREATE", "REMOVE", "SETATTR", "READDIR",
                                                      "STATFS", "FILE_IO read", "FILE_IO write")
                                for p in ("p50", "p99")],
}
#: How many references each section's figures carry (scale: none for the shortest queue).
REFERENCES = {"device round trip": 2, "metadata": 1, "data path": 2, "mount": 2, "latency at 64 in flight": 0}


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (other than this one) that mention ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _check_result(result: dict, where: str) -> None:
    assert result["min"] > 0, where
    assert result["min"] <= result["median"] <= result["max"], (where, result)
    assert len(result["values"]) == QUICK.runs, (where, result)


@pytest.fixture
def short_dir():
    """A directory with a short path: socket paths under it must fit AF_UNIX's 108 bytes, tmp_path's may not."""
    path = Path(tempfile.mkdtemp(prefix="pvfs2bench-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_quick_run_produces_every_figure_and_leaves_nothing(tmp_path, short_dir):
    """--quick: every figure and reference measured (or skipped with a reason), the report written, no leftovers."""
    work, scratch, results = short_dir / "w", short_dir / "t", tmp_path / "results"
    for d in (work, scratch):
        d.mkdir()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.bench", "--quick", "--json", "--results-dir", str(results),
             "--dir", str(work)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(scratch)})
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the benchmark stops what it started before it exits
            stdout, stderr = proc.communicate(timeout=60)
            pytest.fail(f"--quick took over {TIMEOUT} s\nstderr:\n{stderr}")
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr}"
        assert "Traceback" not in stderr, stderr
        report = json.loads(stdout)

        written = list(results.iterdir())
        assert [p.name for p in written] == [f"{report['date'][:10]}-quick.json"]
        assert json.loads(written[0].read_text()) == report

        assert report["format"] == "pvfs2bench" and report["settings"]["quick"] is True
        box = report["machine"]
        assert box["nproc"] >= 1 and box["cpu"] and box["kernel"] and box["python"] and box["pyfuse3"]
        assert box["filesystem"]
        got = {}
        for f in report["figures"]:
            got.setdefault(f["section"], []).append(f["figure"])
        assert got == EXPECTED

        no_fuse = fuse_unavailable()
        for f in report["figures"]:
            where = f"{f['section']}: {f['figure']}"
            assert f["unit"] and f["path"], where
            if f["section"] == "mount" and no_fuse:
                assert f["skipped"] == no_fuse and f["pvfs2dev"] is None, where
                assert all(r["skipped"] == no_fuse and r["result"] is None for r in f["references"]), where
                continue
            assert f["skipped"] is None, where
            _check_result(f["pvfs2dev"], where)
            expected_refs = REFERENCES.get(f["section"], 0 if f["figure"].endswith(" 10 queued") else 1)
            assert len(f["references"]) == expected_refs, where
            for r in f["references"]:
                if f["section"] == "metadata" and no_fuse:
                    assert r["skipped"] == no_fuse and r["result"] is None and r["ratio"] is None, where
                    continue
                _check_result(r["result"], f"{where} / {r['name']}")
                assert r["ratio"] == f["pvfs2dev"]["median"] / r["result"]["median"], where
    finally:
        leftovers, mounts = _leftovers(short_dir)
    assert leftovers == [], "processes outlived the benchmark"
    assert mounts == [], "mounts outlived the benchmark"
    assert list(work.iterdir()) == [], "temporary directories outlived the benchmark"
    assert list(scratch.iterdir()) == [], "temporary files outlived the benchmark"


def _leftovers(short_dir: Path) -> tuple[list[str], list[str]]:
    """Processes and mounts still holding ``short_dir``; stopped and unmounted, so a failure does not spill over."""
    leftovers = _processes_mentioning(str(short_dir))
    mounts = mounts_under(short_dir)
    for line in leftovers:
        try:
            os.kill(int(line.split(":", 1)[0]), 9)
        except ProcessLookupError:
            pass
    for point in mounts:
        subprocess.run(["umount", "-l", point], capture_output=True)
    return leftovers, mounts


def test_sigterm_mid_run_stops_everything_it_started(tmp_path, short_dir):
    """SIGTERM while the whole stack serves the latency mix: exit 130, no process, temp dir or report left."""
    work, scratch, results = short_dir / "w", short_dir / "t", tmp_path / "results"
    for d in (work, scratch):
        d.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.bench", "--quick", "--only", "latency", "--results-dir", str(results),
         "--dir", str(work)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)})
    seen = []
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + TIMEOUT
            while not any("latency:" in line for line in seen):
                assert sel.select(timeout=max(0.0, deadline - time.monotonic())), f"no latency line: {seen}"
                line = proc.stderr.readline()
                assert line, f"the benchmark ended before its latency section: {seen}"
                seen.append(line)
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftovers, mounts = _leftovers(short_dir)
    assert proc.returncode == 130, "".join(seen) + stderr
    assert "Traceback" not in stderr, stderr
    assert leftovers == [] and mounts == []
    assert list(work.iterdir()) == [] and list(scratch.iterdir()) == []
    assert not results.exists() or list(results.iterdir()) == []


def test_ratio_is_ours_over_the_reference_and_skips_carry_no_numbers():
    """A ratio is pvfs2dev's median over the reference's; a skipped figure or reference has a reason, no value."""
    f = figure("device round trip", "1 in flight", "ops/s", "a path", [2.0, 4.0, 3.0],
               [reference("raw", [10.0, 12.0, 6.0]), reference("fuse", skipped="no /dev/fuse on this machine")])
    assert f["pvfs2dev"] == {"median": 3.0, "min": 2.0, "max": 4.0, "values": [2.0, 4.0, 3.0]}
    assert f["references"][0]["ratio"] == 3.0 / 10.0
    assert f["references"][1] == {"name": "fuse", "result": None, "ratio": None,
                                  "skipped": "no /dev/fuse on this machine"}
    s = skipped_figure("mount", "stat one file, 1 caller", "ops/s", "a path", "no /dev/fuse on this machine",
                       ["pyfuse3 passthrough", "native disk"])
    assert s["pvfs2dev"] is None and s["skipped"] == "no /dev/fuse on this machine"
    assert [r["result"] for r in s["references"]] == [None, None]
    report = {"settings": {"runs": 3, "quick": False}, "figures": [f, s]}
    text = markdown(report, "2 CPUs")
    assert "| device round trip: 1 in flight, ops/s | 3 (2–4) | raw | 10 (6–12) | 0.30× |" in text
    assert "| mount: stat one file, 1 caller, ops/s | skipped | pyfuse3 passthrough | skipped | – |" in text
    assert "mount: stat one file, 1 caller skipped: no /dev/fuse on this machine" in text


def test_pvfs2ctl_has_the_bench_command():
    """`pvfs2ctl bench --help` lists the options the man page documents."""
    result = CliRunner().invoke(pvfs2ctl, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--quick", "--runs", "--only", "--results-dir", "--dir", "--json", "--markdown"):
        assert option in result.output
