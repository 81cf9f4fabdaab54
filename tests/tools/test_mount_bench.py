"""tools.bench.mount_bench runs end to end and reports every figure; tools.bench.passthrough behaves as a filesystem.

Both mount FUSE filesystems as real processes, so they need /dev/fuse and
pyfuse3; nothing here checks a speed, only that each figure is there and
positive and that nothing (process, mount, temporary file) is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.bench.mount_bench import FIGURES, TARGETS, mounted, mounts_under

from ..fuse.helpers import needs_fuse

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


pytestmark = needs_fuse


def test_quick_run_reports_every_figure_for_every_target(tmp_path):
    """--quick with tiny sizes: every figure present and positive for each target; the temp dir is gone after."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.mount_bench", "--quick", "--mib", "8", "--stats", "200", "--creates", "20",
         "--runs", "1", "--dir", str(tmp_path), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report = json.loads(done.stdout)
    assert report["targets"] == list(TARGETS)
    assert set(report["results"]) == set(FIGURES) and len(FIGURES) == 5
    for figure in FIGURES:
        for target in TARGETS:
            r = report["results"][figure][target]
            assert r["min"] > 0 and r["min"] <= r["median"] <= r["max"], (figure, target, r)
            assert len(r["values"]) == 1
        for ratio in report["ratios"][figure].values():
            assert ratio is not None and ratio > 0
    assert report["settings"]["dd_mib"] == 8 and report["settings"]["stats_per_run"] == 200
    assert report["machine"]["nproc"] >= 1 and report["machine"]["kernel"] and report["date"]
    assert "Traceback" not in done.stderr
    assert mounts_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == [], "the benchmark's temporary directory was left behind"


@pytest.fixture
def passthrough(tmp_path):
    """``python -m tools.bench.passthrough`` over tmp_path/source at tmp_path/mnt; unmounted by SIGTERM afterwards."""
    source, mnt = tmp_path / "source", tmp_path / "mnt"
    source.mkdir()
    mnt.mkdir()
    log = tmp_path / "passthrough.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tools.bench.passthrough", str(source), str(mnt),
                                 "--attr-timeout", "0", "--entry-timeout", "0"],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while not mounted(mnt):
            assert proc.poll() is None, f"passthrough exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no mount after {DEADLINE} s:\n{log.read_text()}"
            time.sleep(0.02)
        yield source, mnt
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            pytest.fail(f"{mnt} was still mounted after SIGTERM")
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


def test_passthrough_round_trips_files_and_names(passthrough):
    """Data written through the mount reads back and lands in the source; mkdir, rename, unlink, rmdir, statfs."""
    source, mnt = passthrough
    data = os.urandom(3 * 1024 * 1024 + 123)
    (mnt / "f").write_bytes(data)
    assert (mnt / "f").read_bytes() == data
    assert (source / "f").read_bytes() == data
    assert os.stat(mnt / "f").st_size == len(data)
    with open(mnt / "f", "r+b") as f:  # writes at an offset, then a truncate through the open file
        f.seek(10)
        f.write(b"hello")
        f.truncate(20)
    assert (source / "f").read_bytes() == data[:10] + b"hello" + data[15:20]
    with open(mnt / "f", "ab") as f:  # O_APPEND: the kernel picks the offset
        f.write(b"!")
    assert (mnt / "f").read_bytes() == data[:10] + b"hello" + data[15:20] + b"!"

    (mnt / "d").mkdir(mode=0o750)
    assert (source / "d").is_dir()
    os.rename(mnt / "f", mnt / "d" / "g")
    os.rename(mnt / "d", mnt / "e")  # a directory rename: what is inside follows
    assert sorted(os.listdir(mnt)) == ["e"] and os.listdir(mnt / "e") == ["g"]
    assert (mnt / "e" / "g").read_bytes()[10:15] == b"hello"
    (mnt / "e" / "h").write_text("new")
    os.rename(mnt / "e" / "h", mnt / "e" / "g")  # over an existing file
    assert (mnt / "e" / "g").read_text() == "new" and os.listdir(source / "e") == ["g"]
    os.chmod(mnt / "e" / "g", 0o600)
    assert os.stat(source / "e" / "g").st_mode & 0o777 == 0o600

    os.unlink(mnt / "e" / "g")
    os.rmdir(mnt / "e")
    assert os.listdir(mnt) == [] and os.listdir(source) == []
    for _ in range(50):  # create/unlink in a loop: backing inode numbers come back at once
        fd = os.open(mnt / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        assert os.stat(mnt / "x").st_size == 1
        os.unlink(mnt / "x")
    st = os.statvfs(mnt)
    assert st.f_bsize > 0 and st.f_blocks > 0 and st.f_namemax > 0


def test_passthrough_reports_enoent(passthrough):
    """Missing names are ENOENT for stat, open, unlink, rmdir and rename, and the session goes on."""
    _, mnt = passthrough
    calls = [
        lambda: os.stat(mnt / "missing"),
        lambda: os.open(mnt / "missing", os.O_RDONLY),
        lambda: os.unlink(mnt / "missing"),
        lambda: os.rmdir(mnt / "missing"),
        lambda: os.rename(mnt / "missing", mnt / "other"),
        lambda: os.listdir(mnt / "missing" / "below"),
        lambda: os.mkdir(mnt / "missing" / "below"),
    ]
    for call in calls:
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.ENOENT, exc.value
    (mnt / "missing").write_text("here now")  # a failed lookup is not cached past the entry timeout (0)
    assert (mnt / "missing").read_text() == "here now"
    with pytest.raises(FileExistsError):
        os.open(mnt / "missing", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with pytest.raises(OSError) as exc:
        os.rmdir(mnt / "missing")
    assert exc.value.errno == errno.ENOTDIR
