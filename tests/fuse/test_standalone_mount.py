"""``pvfs2dev mount`` / ``pvfs2dev umount``: a running broker mounts FUSE on request, as mount(8) asks a module.

The broker runs without ``--mount``; the commands talk to it over the control
socket.  mount(2) semantics: one FS_MOUNT (ETIMEDOUT with no client-core
after op_timeout_secs), EBUSY for a second mount (one FUSE session per
process), umount EBUSY while files are open, FS_UMOUNT on unmount.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .helpers import DEADLINE, Stack, _command, mounted, needs_fuse, poll_until

pytestmark = needs_fuse


def pvfs2dev(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_command("pvfs2dev", "pvfs2dev.cli"), *args[:1], "--rundir", str(stack.rundir),
                           *args[1:]], capture_output=True, text=True, timeout=DEADLINE * 2)


def mounts(stack: Stack) -> list[dict]:
    done = subprocess.run([*_command("pvfs2ctl", "pvfs2ctl"), "--rundir", str(stack.rundir), "mounts", "--json"],
                          capture_output=True, text=True, timeout=DEADLINE, check=True)
    return json.loads(done.stdout)["mounts"]


def test_mount_umount_remount_on_a_running_broker(tmp_path):
    """mount: FS_MOUNT then FUSE, listed with its mountpoint; a second mount is EBUSY (exit 32); umount is EBUSY
    while a file is open, then unmounts and sends FS_UMOUNT; a remount sees the same data; fusermount3 -u works
    too and the broker stays up."""
    stack = Stack(tmp_path, mount=False)
    fd = -1
    try:
        assert not mounted(stack.mnt) and mounts(stack) == []
        done = pvfs2dev(stack, "mount", str(stack.mnt))
        assert done.returncode == 0, done.stderr
        assert mounted(stack.mnt)
        (stack.mnt / "f").write_text("kept")
        (m,) = mounts(stack)
        assert m["mountpoint"] == str(stack.mnt) and not m["pending"]

        other = tmp_path / "other"
        other.mkdir()
        busy = pvfs2dev(stack, "mount", str(other))
        assert busy.returncode == 32 and "(EBUSY)" in busy.stderr and busy.stderr.count("\n") == 1
        assert not mounted(other)

        fd = os.open(stack.mnt / "f", os.O_RDONLY)
        refused = pvfs2dev(stack, "umount", str(stack.mnt))
        assert refused.returncode == 1 and "(EBUSY)" in refused.stderr and mounted(stack.mnt)
        os.close(fd)
        fd = -1
        done = pvfs2dev(stack, "umount", str(stack.mnt))
        assert done.returncode == 0, done.stderr
        assert not mounted(stack.mnt) and mounts(stack) == []  # FS_UMOUNT took it off the list

        assert pvfs2dev(stack, "mount", str(stack.mnt)).returncode == 0
        assert (stack.mnt / "f").read_text() == "kept"
        subprocess.run(["fusermount3", "-u", str(stack.mnt)], check=True, timeout=DEADLINE)
        poll_until(lambda: mounts(stack) == [], "FS_UMOUNT after fusermount3 -u")
        assert stack.serve.poll() is None
        assert pvfs2dev(stack, "umount", str(stack.mnt)).returncode == 1  # nothing of ours there: EINVAL
    finally:
        if fd >= 0:
            os.close(fd)
        stack.stop()
    assert stack.serve.returncode == 0, stack.log("serve")
    assert "Traceback" not in stack.log("serve")


def test_mount_with_no_client_core_fails_etimedout(tmp_path):
    """mount(2) with no client-core: the FS_MOUNT waits op_timeout_secs, then the mount fails ETIMEDOUT."""
    stack = Stack(tmp_path, mount=False, clientcore=False, serve_args=("--op-timeout", "1"))
    try:
        done = pvfs2dev(stack, "mount", str(stack.mnt))
        assert done.returncode == 32 and "(ETIMEDOUT)" in done.stderr, done.stderr
        assert not mounted(stack.mnt) and mounts(stack) == []
    finally:
        stack.stop()
    assert stack.serve.returncode == 0


def test_mount_without_a_broker_is_one_line_and_exit_1(tmp_path: Path):
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    done = subprocess.run([*_command("pvfs2dev", "pvfs2dev.cli"), "mount", "--rundir", str(tmp_path / "none"),
                           str(mountpoint)], capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 1 and done.stderr.startswith("pvfs2dev mount: no broker at ")
    assert done.stderr.count("\n") == 1
