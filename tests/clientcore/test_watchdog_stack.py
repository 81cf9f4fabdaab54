"""The watchdog restarts a killed daemon, which remounts, and a waiting caller completes (issue 4, Watchdog).

Real processes: ``pvfs2dev serve`` and ``clientcore --watchdog`` on an
embedded store; this test waits on other processes, so it uses real time,
bounded by ``trio.fail_after``, and kills everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

import pvfs2proto as proto
from pvfs2ctl.client import ControlClient, VfsClient


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (trio starts them from a worker thread, so read every ppid)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


async def _status(rundir: Path) -> dict:
    async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
        return await ctl.request("status")


async def _wait_served(rundir: Path) -> None:
    while True:
        try:
            status = await _status(rundir)
            if status["daemon_in_service"] and not any(m["pending"] for m in status["mounts"]):
                return
        except OSError:
            pass
        await trio.sleep(0.05)


async def test_a_killed_daemon_is_restarted_and_the_waiting_caller_completes(tmp_path):
    """Issue 4: after SIGKILL the watchdog restarts the daemon, REMOUNT_ALL runs, and a caller that
    waited on the pending mount gets its answer."""
    rundir = tmp_path / "run"
    broker = subprocess.Popen([sys.executable, "-m", "pvfs2dev.cli", "serve", "--rundir", str(rundir),
                               "--log-level", "warning"])
    watchdog = None
    try:
        deadline = time.monotonic() + 20
        while not (rundir / "pvfs2-vfs").exists():
            assert time.monotonic() < deadline, "the broker did not start"
            time.sleep(0.02)
        watchdog = subprocess.Popen([sys.executable, "-m", "clientcore.daemon", "--watchdog", "--rundir", str(rundir),
                                     "--store", str(tmp_path / "store"), "--desc-count", "4", "--desc-size", "1MiB",
                                     "--log-level", "warning"])
        with trio.fail_after(60):
            await _wait_served(rundir)
            async with VfsClient.connect(rundir / "pvfs2-vfs") as vfs:
                reply = await vfs.submit(proto.encode_upcall(
                    {"type": proto.OpCode.FS_MOUNT,
                     "req": {"fs_mount": {"orangefs_config_server": b"tcp://localhost:3334/pvfs2-fs"}}}))
                assert reply.result == 0
                mounted = proto.decode_downcall(reply.downcall, proto.OpCode.FS_MOUNT).resp.fs_mount
                (daemon_pid,) = _children(watchdog.pid)
                os.kill(daemon_pid, signal.SIGKILL)
                while (await _status(rundir))["daemon_in_service"]:
                    await trio.sleep(0.02)
                # The mount is pending now; this GETATTR waits for the remount.
                reply = await vfs.submit(proto.encode_upcall(
                    {"type": proto.OpCode.GETATTR,
                     "req": {"getattr": {"refn": {"khandle": mounted.root_khandle, "fs_id": mounted.fs_id},
                                         "mask": proto.AttrMask.ALL_NOHINT}}}))
                assert reply.result == 0
                assert proto.decode_downcall(reply.downcall, proto.OpCode.GETATTR).resp.getattr.attributes.objtype \
                    == proto.ObjType.DIRECTORY
            restarted = _children(watchdog.pid)
            assert restarted and restarted != [daemon_pid]
            status = await _status(rundir)
            assert [m["fs_id"] for m in status["mounts"]] == [mounted.fs_id]
            assert status["request_list"] == 0 and status["in_progress"] == 0
    finally:
        for proc in (watchdog, broker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert watchdog.returncode == 0
