"""A storm of namespace and data operations on the embedded store, to be SIGKILLed by the crash test.

Run as ``python -m tests.clientcore.store_storm STORE LOG SEED [NAME:N:before|after]``;
it never stops by itself, unless told to SIGKILL itself at the N-th call of
``os.NAME`` (before or after the call runs).  Each LOG line is written with one ``os.write`` (so a kill cannot tear
it) and only once the fact it states holds:

* ``I <fs_id> <root hex>`` — the store's identity, once at start;
* ``R`` — ready: the storm begins (after one file, never removed, replaced or
  shrunk, got a first write and fsync);
* ``W <handle hex> <offset> <length> <tag>`` — this write was covered by an
  ``fsync`` that has returned; its bytes are :func:`payload` ``(seed, tag, length)``;
* ``X <handle hex>`` — written *before* an operation that may legitimately
  destroy the file's data (remove, rename over it, shrinking truncate): the
  checker no longer expects that file's writes.

Writes go to fresh regions of each file (at or after its end), so a later
write never overwrites an fsync'ed one.
"""

from __future__ import annotations

import os
import random
import signal
import sys

from clientcore.store.api import Creds, StoreError
from clientcore.store.embedded import EmbeddedStore

TARGETS = 3
STRIPE = 16384
USER = Creds(1000, 1000)


def payload(seed: int, tag: int, length: int) -> bytes:
    return random.Random(f"{seed}:{tag}").randbytes(length)


def storm(store: EmbeddedStore, seed: int, record) -> None:
    rng = random.Random(seed)
    root = store.root
    dirs: dict[bytes, dict[bytes, bytes]] = {root: {}}  # directory -> {name: handle}
    where: dict[bytes, tuple[bytes, bytes]] = {}  # handle -> (directory, name)
    files: dict[bytes, dict] = {}  # handle -> {"end": int, "pending": [(offset, length, tag)]}
    prefix = b"%d-" % seed  # names stay unique when a later storm runs on the same store
    # One file the storm never removes, replaces or shrinks, fsync'ed before "R", so
    # every run leaves at least one write the checker must find.
    keep = store.create(USER, root, prefix + b"keep", 0o644).handle
    dirs[root][prefix + b"keep"] = keep
    where[keep] = (root, prefix + b"keep")
    files[keep] = {"end": 50_000, "pending": []}
    store.write(USER, keep, 0, memoryview(payload(seed, 0, 50_000)))
    store.fsync(keep)
    record(f"W {keep.hex()} 0 50000 0")
    record("R")
    tag = 0
    while True:
        tag += 1
        r = rng.random()
        if r < 0.12 or not files:
            d = rng.choice(list(dirs))
            name = prefix + b"f%d" % tag
            h = store.create(USER, d, name, 0o644).handle
            dirs[d][name] = h
            where[h] = (d, name)
            files[h] = {"end": 0, "pending": []}
        elif r < 0.17 and len(dirs) < 25:
            d = rng.choice(list(dirs))
            name = prefix + b"d%d" % tag
            h = store.mkdir(USER, d, name, 0o755).handle
            dirs[d][name] = h
            dirs[h] = {}
            where[h] = (d, name)
        elif r < 0.52:
            h = rng.choice(list(files))
            state = files[h]
            offset = state["end"] + rng.choice([0, 0, rng.randrange(1, 3 * STRIPE)])
            length = rng.choice([rng.randrange(1, 4096), rng.randrange(1, 5 * STRIPE), rng.randrange(1, 3 * STRIPE)])
            if rng.random() < 0.05:
                length = 1 << 20
            store.write(USER, h, offset, memoryview(payload(seed, tag, length)))
            state["end"] = offset + length
            state["pending"].append((offset, length, tag))
        elif r < 0.70:
            pending = [h for h, s in files.items() if s["pending"]]
            if pending:
                h = rng.choice(pending)
                store.fsync(h)
                for offset, length, t in files[h]["pending"]:
                    record(f"W {h.hex()} {offset} {length} {t}")
                files[h]["pending"] = []
        elif r < 0.80:
            h = rng.choice(list(files))
            d, name = where[h]
            nd = rng.choice(list(dirs))
            victims = [v for v in dirs[nd].values() if v in files and v not in (h, keep)]
            if victims and rng.random() < 0.3:
                victim = rng.choice(victims)
                record(f"X {victim.hex()}")
                new = where[victim][1]
                del files[victim], where[victim]
            else:
                new = prefix + b"r%d" % tag
            store.rename(USER, d, name, nd, new)
            del dirs[d][name]
            dirs[nd][new] = h
            where[h] = (nd, new)
        elif r < 0.88 and len(files) > 1:
            h = rng.choice([h for h in files if h != keep])
            d, name = where[h]
            record(f"X {h.hex()}")
            store.remove(USER, d, name)
            del dirs[d][name], files[h], where[h]
        elif r < 0.94:
            h = rng.choice(list(files))
            state = files[h]
            if rng.random() < 0.5 or h == keep:
                size = state["end"] + rng.randrange(0, 2 * STRIPE)
            else:
                record(f"X {h.hex()}")
                size = rng.randrange(0, state["end"] + 1)
            store.truncate(USER, h, size)
            state["end"] = size
        elif r < 0.97:
            moving = [h for h in dirs if h != root]
            if moving:
                h = rng.choice(moving)
                d, name = where[h]
                nd = rng.choice(list(dirs))
                new = prefix + b"m%d" % tag
                try:
                    store.rename(USER, d, name, nd, new)
                except StoreError as exc:
                    if exc.errno != 22:  # EINVAL: a directory into itself
                        raise
                else:
                    del dirs[d][name]
                    dirs[nd][new] = h
                    where[h] = (nd, new)
        else:
            empty = [h for h, entries in dirs.items() if not entries and h != root]
            if empty:
                h = rng.choice(empty)
                d, name = where[h]
                store.remove(USER, d, name)
                del dirs[d][name], dirs[h], where[h]


def kill_at(spec: str) -> None:
    """Make the process SIGKILL itself at the N-th call of an ``os`` function: ``NAME:N:before|after``."""
    name, nth, when = spec.split(":")
    real = getattr(os, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls[0] == int(nth) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, name, wrapper)


def main(argv: list[str]) -> None:
    store_path, log_path, seed = argv[0], argv[1], int(argv[2])
    store = EmbeddedStore.open(store_path, targets=TARGETS, stripe_size=STRIPE)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(line: str) -> None:
        os.write(log_fd, (line + "\n").encode())

    record(f"I {store.fs_id} {store.root.hex()}")
    if len(argv) > 3:
        kill_at(argv[3])
    storm(store, seed, record)


if __name__ == "__main__":
    main(sys.argv[1:])
