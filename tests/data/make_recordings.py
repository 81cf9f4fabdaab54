"""Make the recordings in tests/data that CI replays (issue 7).

Each recording is made the way a person would make one: ``pvfs2dev serve``
and ``clientcore`` on a fresh store run as processes, ``pvfs2ctl trace
--record FILE`` records, and a session of filesystem actions runs through the
broker's VFS channel with pvfs2ctl's VFS code (the upcalls the kernel would
send).  Every session ends with FS_UMOUNT; once its downcall is in the file
the recorder is stopped with SIGINT, as Ctrl-C would.

Sessions:

* ``metadata`` — mount, mkdir, create, setattr (chmod, utimes), lookup (also
  a missing name), symlink, readdir, rename, xattrs (set, get, list,
  remove, a missing one), statfs, an EEXIST, remove, rmdir, umount;
* ``data`` — create, FILE_IO writes (one larger than a slot, which the broker
  splits), reads back of about 180 KiB, a short read at the end, truncate,
  a write past the end (a hole), fsync, truncate to 0, remove, umount.

Regenerate with ``.venv/bin/python -m tests.data.make_recordings`` (``--out
DIR`` to write elsewhere, session names to make only some).  The replay
tests use :data:`CLIENTCORE_ARGS` for the client-core, so its slots are as
large as the recorded FILE_IOs need.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import trio

from pvfs2ctl.vfsops import Vfs, VfsError, open_filesystem, umount
from pvfs2proto import AttrMask, IoType, OpCode

from ..tools.stack import running_stack

HERE = Path(__file__).resolve().parent
#: The client-core's geometry while recording (and the least a replay needs).
CLIENTCORE_ARGS = ["--desc-count", "4", "--desc-size", "128KiB", "--log-level", "warning"]
DEADLINE = 20.0
#: A recording larger than this is refused: the files live in the repository.
MAX_SIZE = 1 << 20


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal ``proc`` and reap it, killing it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(what: str, ready: Callable[[], bool], procs: list[subprocess.Popen]) -> None:
    """Poll ``ready`` until it holds; fail if the deadline passes or a process died."""
    deadline = time.monotonic() + DEADLINE
    while not ready():
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[2]} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {DEADLINE:g} s")
        time.sleep(0.02)


def _lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    # The last line may still be being written.
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def record(session: Callable[[Path], Awaitable[None]], out: Path, base: Path) -> Path:
    """Run ``session`` on a fresh stack in ``base`` while ``pvfs2ctl trace --record`` records it into ``out``.

    The recorder writes into ``base`` first, and ``out`` is replaced only by a
    whole recording (so an old ``out`` is never mistaken for the new one).
    """
    partial = base / "recording.jsonl"
    with running_stack(base, clientcore_args=CLIENTCORE_ARGS) as (run, _, _):
        recorder = subprocess.Popen([sys.executable, "-m", "pvfs2ctl", "--rundir", str(run), "trace",
                                     "--record", str(partial)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            wait_until("the recorder's header", lambda: len(_lines(partial)) >= 1, [recorder])
            trio.run(session, run)
            wait_until("the FS_UMOUNT downcall in the recording",
                       lambda: any(e.get("event") == "downcall" and e.get("op") == "OP_FS_UMOUNT"
                                   for e in _lines(partial)), [recorder])
        finally:
            stop(recorder, signal.SIGINT)
        if recorder.returncode != 0:
            raise RuntimeError(f"pvfs2ctl trace --record exited with status {recorder.returncode}")
    shutil.copyfile(partial, out)
    return out


# -- the sessions ----------------------------------------------------------------------------------------


async def _expect(err: int, action: Awaitable) -> None:
    try:
        await action
    except VfsError as exc:
        if exc.errno != err:
            raise
    else:
        raise AssertionError(f"expected {errno.errorcode[err]}")


async def _setattr(fs: Vfs, node, where: str, **attributes) -> None:
    await fs.call(OpCode.SETATTR, "setattr", {"refn": node.refn, "attributes": attributes}, where)


async def metadata_session(run: Path) -> None:
    async with open_filesystem(run / "pvfs2-ctl", run / "pvfs2-vfs") as fs:
        root = await fs.root()
        d = await fs.mkdir(root, b"dir", 0o755, "/dir")
        f = await fs.create(d, b"file", 0o644, "/dir/file")
        await _setattr(fs, f, "/dir/file", perms=0o600, mask=int(AttrMask.PERM))
        await _setattr(fs, f, "/dir/file", atime=1_000_000_000, mtime=1_000_000_001,
                       mask=int(AttrMask.ATIME | AttrMask.ATIME_SET | AttrMask.MTIME | AttrMask.MTIME_SET))
        f = await fs.lookup(d, b"file", "/dir/file")
        assert f.mode & 0o777 == 0o600
        await _expect(errno.ENOENT, fs.lookup(d, b"missing", "/dir/missing"))
        await fs.symlink(d, b"link", b"file", "/dir/link")
        await fs.mkdir(d, b"sub", 0o700, "/dir/sub")
        names = [name for name, _ in await fs.readdir(d, "/dir")]
        assert names == [b"file", b"link", b"sub"], names
        await fs.rename(d, b"file", d, b"renamed", "/dir/renamed")
        await fs.rename(d, b"sub", root, b"moved", "/moved")
        await fs.setxattr(f, b"user.colour", b"blue", "/dir/renamed")
        await fs.setxattr(f, b"user.blob", bytes(range(256)) * 4, "/dir/renamed")
        assert await fs.getxattr(f, b"user.colour", "/dir/renamed") == b"blue"
        assert sorted(await fs.listxattr(f, "/dir/renamed")) == [b"user.blob", b"user.colour"]
        await fs.removexattr(f, b"user.blob", "/dir/renamed")
        await _expect(errno.ENODATA, fs.getxattr(f, b"user.blob", "/dir/renamed"))
        await fs.statfs()
        await _expect(errno.EEXIST, fs.mkdir(root, b"dir", 0o755, "/dir"))
        await fs.remove(d, b"link", "/dir/link", directory=False)
        await fs.remove(d, b"renamed", "/dir/renamed", directory=False)
        await fs.remove(root, b"moved", "/moved", directory=True)
        await fs.remove(root, b"dir", "/dir", directory=True)
        assert await fs.readdir(root, "/") == []
        await umount(fs.client, fs.mount)


async def _io(fs: Vfs, node, io_type: IoType, offset: int, count: int, data: bytes = b"") -> tuple[int, bytes]:
    upcall = fs.upcall(OpCode.FILE_IO, "io", {"count": count, "offset": offset, "refn": node.refn,
                                              "io_type": int(io_type)})
    reply = await fs.client.submit(upcall, data)
    assert reply.result == 0, reply.result
    amt = int.from_bytes(reply.downcall[24:32], "little", signed=True)
    return amt, bytes(reply.data[:amt])


async def data_session(run: Path) -> None:
    blob = random.Random(7).randbytes(180 * 1024)
    async with open_filesystem(run / "pvfs2-ctl", run / "pvfs2-vfs") as fs:
        root = await fs.root()
        f = await fs.create(root, b"data.bin", 0o644, "/data.bin")
        # 40000 bytes, then the rest (more than one 128 KiB slot: the broker sends two FILE_IOs).
        assert (await _io(fs, f, IoType.WRITE, 0, 40_000, blob[:40_000]))[0] == 40_000
        assert (await _io(fs, f, IoType.WRITE, 40_000, len(blob) - 40_000, blob[40_000:]))[0] == len(blob) - 40_000
        f = await fs.getattr(f.khandle, "/data.bin")
        assert f.size == len(blob)
        back = b""
        while True:  # 64 KiB at a time until a short read
            amt, data = await _io(fs, f, IoType.READ, len(back), 64 * 1024)
            back += data
            if amt < 64 * 1024:
                break
        assert back == blob
        await fs.truncate(f, 100_000, "/data.bin")
        assert (await _io(fs, f, IoType.READ, 90_000, 20_000))[1] == blob[90_000:100_000]
        # A write past the end leaves a hole that reads as zeros.
        await _io(fs, f, IoType.WRITE, 150_000, 1_000, blob[:1_000])
        assert (await _io(fs, f, IoType.READ, 95_000, 60_000))[1] == blob[95_000:100_000] + bytes(50_000) + blob[:1_000]
        await fs.call(OpCode.FSYNC, "fsync", {"refn": f.refn}, "/data.bin")
        assert (await fs.getattr(f.khandle, "/data.bin")).size == 151_000
        await fs.truncate(f, 0, "/data.bin")
        assert await _io(fs, f, IoType.READ, 0, 4096) == (0, b"")
        await fs.remove(root, b"data.bin", "/data.bin", directory=False)
        await umount(fs.client, fs.mount)


SESSIONS: dict[str, Callable[[Path], Awaitable[None]]] = {"metadata": metadata_session, "data": data_session}


def make(name: str, out_dir: Path = HERE) -> Path:
    """Record session ``name`` into ``out_dir/NAME.jsonl`` (a fresh store in a temporary directory)."""
    out = out_dir / f"{name}.jsonl"
    with tempfile.TemporaryDirectory(prefix=f"pvfs2dev-rec-{name}-") as base:
        record(SESSIONS[name], out, Path(base))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write NAME.jsonl [default: tests/data]")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"sessions to record: {', '.join(SESSIONS)} "
                        "[default: all]")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(SESSIONS)
    if unknown:
        parser.error(f"no session {', '.join(sorted(unknown))} (there are {', '.join(SESSIONS)})")
    from pvfs2dev.replay import load

    for name in args.names or SESSIONS:
        path = make(name, args.out)
        recording = load(path)
        size = path.stat().st_size
        print(f"{path}: {size} bytes, {len(recording.steps)} upcalls, {len(recording.replayable)} replayable")
        if size > MAX_SIZE:
            print(f"{path}: larger than {MAX_SIZE} bytes", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
