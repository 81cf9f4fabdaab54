"""Crash consistency of the embedded store (issue 4): SIGKILL a write storm at a random moment, reopen, check.

The storm (:mod:`.store_storm`) runs in a child process and logs each write
only after an fsync covering it returned.  After the kill the store must open,
keep its identity, break none of its structural rules (no directory entry
without its object, counts right, no orphaned data objects), and read back
every fsync'ed write of every file not since removed, replaced or shrunk.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clientcore.store.embedded import EmbeddedStore
from pvfs2proto.constants import ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START

from .storehelp import ROOT, check_invariants
from .store_storm import STRIPE, TARGETS, payload

REPO = Path(__file__).resolve().parents[2]


def run_storm(store_path: str, log_path: str, seed: int, delay: float, kill_spec: str | None = None) -> None:
    """Start the storm and wait until it is under way; then SIGKILL it after ``delay`` seconds,
    or, with ``kill_spec``, let it kill itself at that call (``delay`` is then the most to wait)."""
    start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    argv = [sys.executable, "-m", "tests.clientcore.store_storm", store_path, log_path, str(seed)]
    child = subprocess.Popen(argv + ([kill_spec] if kill_spec else []), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            if os.path.exists(log_path):
                with open(log_path, "rb") as fh:
                    fh.seek(start)
                    if b"\nR\n" in b"\n" + fh.read():
                        break
            if child.poll() is not None:
                break  # a kill point may come before "R" is logged
            assert time.monotonic() < deadline, "storm did not start"
            time.sleep(0.01)
        if kill_spec:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(delay)
        else:
            time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        errors = child.stderr.read().decode()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, f"storm stopped by itself: {errors}"


def parse_log(log_path: str):
    """Identity lines, fsync'ed writes and excluded handles; a torn last line is ignored."""
    with open(log_path, "rb") as fh:
        text = fh.read().decode()
    lines = text.split("\n")[:-1]
    identities, writes, excluded = [], [], set()
    for line in lines:
        kind, *rest = line.split()
        if kind == "I":
            identities.append((int(rest[0]), bytes.fromhex(rest[1])))
        elif kind == "W":
            writes.append((bytes.fromhex(rest[0]), int(rest[1]), int(rest[2]), int(rest[3])))
        elif kind == "X":
            excluded.add(bytes.fromhex(rest[0]))
    return identities, writes, excluded


def walk(store: EmbeddedStore, handle: bytes) -> int:
    """Visit every entry below a directory through readdir and getattr; returns how many objects."""
    count, token = 0, ORANGEFS_ITERATE_START
    while token != ORANGEFS_ITERATE_END:
        entries, token = store.readdir(ROOT, handle, token, 512)
        for _, child in entries:
            attr = store.getattr(ROOT, child)  # ENOENT here would be a dangling entry
            count += 1
            if attr.objtype == 4:
                count += walk(store, child)
    return count


def check_store(store_path: str, log_path: str, seeds: list[int]) -> int:
    """Reopen after the kill and check everything the storm was promised; returns the writes checked."""
    identities, writes, excluded = parse_log(log_path)
    assert len(set(identities)) == 1, "fs_id or root changed across a restart"
    fs_id, root = identities[0]
    checked = 0
    with EmbeddedStore.open(store_path, targets=TARGETS, stripe_size=STRIPE) as s:
        assert (s.fs_id, s.root) == (fs_id, root)
        check_invariants(s)
        with s._lock:
            (objects,) = s._conn.execute("SELECT count(*) FROM objects").fetchone()
        assert walk(s, s.root) == objects - 1
        for handle, offset, length, tag in writes:
            if handle in excluded:
                continue
            attr = s.getattr(ROOT, handle)
            assert attr.size >= offset + length, f"fsync'ed write of {handle.hex()} past the size"
            buf = bytearray(length)
            assert s.read(ROOT, handle, offset, memoryview(buf)) == length
            expected = None
            for seed in seeds:
                if bytes(buf) == payload(seed, tag, length):
                    expected = seed
            assert expected is not None, f"fsync'ed write {tag} of {handle.hex()} at {offset} lost"
            checked += 1
        # No bytes a crash left beyond a file's size may come back when it grows.
        with s._lock:
            sizes = s._conn.execute("SELECT handle, size FROM objects WHERE type = 1").fetchall()
        for handle, size in sizes:
            s.truncate(ROOT, handle, size + 3 * STRIPE)
            buf = bytearray(3 * STRIPE)
            assert s.read(ROOT, handle, size, memoryview(buf)) == 3 * STRIPE
            assert not any(buf), f"old bytes of {handle.hex()} resurrected past its size {size}"
            s.truncate(ROOT, handle, size)
    return checked


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_during_storm(tmp_path, seed):
    """A store SIGKILLed mid-storm opens cleanly with every fsync'ed write intact and no dangling entries."""
    rng = random.Random(seed)
    store_path, log_path = str(tmp_path / "store"), str(tmp_path / "log")
    run_storm(store_path, log_path, seed, rng.uniform(0.2, 0.9))
    assert check_store(store_path, log_path, [seed]) > 0


@pytest.mark.parametrize(
    "spec",
    [
        "unlink:1:before",  # a remove committed, its data objects not yet deleted
        "unlink:7:before",
        "truncate:4:before",  # a shrink committed, the data objects not yet cut
        "pwritev:40:after",  # data landed (maybe past the size), the size not yet committed
        "open:25:after",  # a data object just created, nothing in it
        "fdatasync:6:after",  # half of an fsync
    ],
)
def test_sigkill_at_chosen_points(tmp_path, spec):
    """A kill between the steps of one operation (metadata commit vs. data objects) leaves a consistent store."""
    store_path, log_path = str(tmp_path / "store"), str(tmp_path / "log")
    run_storm(store_path, log_path, 7, 10.0, kill_spec=spec)
    check_store(store_path, log_path, [7])


def test_repeated_kills(tmp_path):
    """Kill, restart the storm on the recovered store, kill again: the store stays consistent across crashes."""
    rng = random.Random(99)
    store_path, log_path = str(tmp_path / "store"), str(tmp_path / "log")
    seeds = [101, 102, 103]
    for seed in seeds:
        run_storm(store_path, log_path, seed, rng.uniform(0.1, 0.5))
    assert check_store(store_path, log_path, seeds) > 0
