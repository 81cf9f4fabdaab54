"""Issue 7, scenario 1: SIGKILL of the client-core every second or so while 16 callers write, fsync, read back
and verify — every call ends correctly or with the errno the kernel would give, no fsync'ed byte is lost, and
afterwards nothing is in flight and both slot maps are full.

Real processes: ``pvfs2dev serve`` and ``clientcore --watchdog`` on an embedded store (a crash must be a real
SIGKILL), callers in this trio run over the VFS channel.  Real time, bounded by ``trio.fail_after``; every
process is killed at the end.  The kernel rules at work (spec §4.5, §4.6, §4.11, §5): a purged op is retried
(EAGAIN never reaches a caller), FILE_IO resubmits with a new slot, EIO after 5 purges of one op, ETIMEDOUT
if no client-core comes back within op_timeout_secs.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

import pvfs2proto as proto
from pvfs2ctl.client import VfsClient
from pvfs2proto import IoType, OpCode

from .daemon_stack import assert_quiescent, create_upcall, file_io_upcall, kref, upcall
from .test_watchdog_stack import _children, _wait_served

CALLERS = 16
SECONDS = 8.0
KILL_EVERY = 1.0
CHUNK = 64 * 1024
#: What a caller may see besides success while the client-core keeps dying (never EAGAIN: it is retried).
KERNEL_ERRNOS = {errno.EIO, errno.ETIMEDOUT}


def _getattr(handle: bytes, fs_id: int) -> bytes:
    return upcall(OpCode.GETATTR, "getattr", refn=kref(handle, fs_id), mask=proto.AttrMask.ALL_NOHINT)


async def test_sigkill_storm_loses_no_fsynced_byte_and_leaves_nothing_in_flight(tmp_path):
    rundir = tmp_path / "run"
    broker = subprocess.Popen([sys.executable, "-m", "pvfs2dev.cli", "serve", "--rundir", str(rundir),
                               "--log-level", "warning"], stdin=subprocess.DEVNULL)
    watchdog = None
    try:
        deadline = time.monotonic() + 20
        while not (rundir / "pvfs2-vfs").exists():
            assert time.monotonic() < deadline and broker.poll() is None, "the broker did not start"
            time.sleep(0.02)
        watchdog = subprocess.Popen([sys.executable, "-m", "clientcore.daemon", "--watchdog", "--rundir", str(rundir),
                                     "--store", str(tmp_path / "store"), "--desc-count", "4", "--desc-size", "1MiB",
                                     "--log-level", "warning"], stdin=subprocess.DEVNULL)
        with trio.fail_after(120):
            await _wait_served(rundir)
            await _storm(rundir, watchdog.pid)
        assert watchdog.poll() is None, "the watchdog gave up"
    finally:
        for process in (broker, watchdog):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _storm(rundir: Path, watchdog_pid: int) -> None:
    async with VfsClient.connect(rundir / "pvfs2-vfs") as vfs:
        reply = await vfs.submit(upcall(OpCode.FS_MOUNT, "fs_mount", orangefs_config_server=b"tcp://localhost:3334/storm"))
        assert reply.result == 0
        mounted = proto.decode_downcall(reply.downcall, OpCode.FS_MOUNT).resp.fs_mount
        fs_id, root = mounted.fs_id, bytes(mounted.root_khandle)
        handles = []
        for i in range(CALLERS):
            created = await vfs.submit(create_upcall(f"f{i}".encode(), root, fs_id=fs_id))
            assert created.result == 0
            handles.append(bytes(proto.decode_downcall(created.downcall, OpCode.CREATE).resp.create.refn.khandle))

        #: caller → the bytes its file must hold from 0 up to the last fsync that succeeded.
        durable: list[bytes] = [b""] * CALLERS
        failures: list[tuple[int, str, int]] = []
        kills = 0
        stop = trio.Event()

        async def call(i: int, name: str, up: bytes, data: bytes = b"") -> proto.ProtocolError | object | None:
            reply = await vfs.submit(up, data)
            if reply.result < 0:
                assert -reply.result in KERNEL_ERRNOS, \
                    f"caller {i} {name}: {proto.errno_name(-reply.result)} is not what the kernel gives"
                failures.append((i, name, -reply.result))
                return None
            return reply

        async def caller(i: int) -> None:
            rng = random.Random(i)
            written = bytearray()
            while not stop.is_set():
                chunk = rng.randbytes(CHUNK)
                offset = len(written)
                reply = await call(i, "write", file_io_upcall(handles[i], IoType.WRITE, CHUNK, offset, fs_id=fs_id),
                                   chunk)
                if reply is None:
                    continue  # the kernel gave up on it (EIO/ETIMEDOUT): write the same range again
                amt = proto.decode_downcall(reply.downcall, OpCode.FILE_IO).resp.io.amt_complete
                assert amt == CHUNK, f"caller {i}: short write {amt}"
                written += chunk
                if await call(i, "fsync", upcall(OpCode.FSYNC, "fsync", refn=kref(handles[i], fs_id))) is not None:
                    durable[i] = bytes(written)
                back = await call(i, "read", file_io_upcall(handles[i], IoType.READ, CHUNK, offset, fs_id=fs_id))
                if back is not None:
                    assert back.data == chunk, f"caller {i}: read back differs at {offset}"

        async def killer() -> None:
            nonlocal kills
            end = trio.current_time() + SECONDS
            while trio.current_time() < end:
                await trio.sleep(KILL_EVERY)
                for pid in _children(watchdog_pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
            stop.set()

        async with trio.open_nursery() as nursery:
            for i in range(CALLERS):
                nursery.start_soon(caller, i)
            nursery.start_soon(killer)

        assert kills >= 4, f"only {kills} kills landed"
        await _wait_served(rundir)
        # Every fsync'ed byte is there, read back whole through a fresh client-core.
        for i, handle in enumerate(handles):
            attrs = await vfs.submit(_getattr(handle, fs_id))
            assert attrs.result == 0
            size = proto.decode_downcall(attrs.downcall, OpCode.GETATTR).resp.getattr.attributes.size
            assert size >= len(durable[i]), f"caller {i}: file is {size} bytes, {len(durable[i])} were fsync'ed"
            got = bytearray()
            while len(got) < len(durable[i]):
                want = min(1 << 20, len(durable[i]) - len(got))
                back = await vfs.submit(file_io_upcall(handle, IoType.READ, want, len(got), fs_id=fs_id))
                assert back.result == 0
                got += back.data
            assert bytes(got) == durable[i], f"caller {i}: fsync'ed bytes lost or changed"
        assert all(durable), "some caller never completed an fsync"
    await assert_quiescent(rundir, timeout=20)
