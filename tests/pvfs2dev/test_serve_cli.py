"""``pvfs2dev serve`` as a real process (DESIGN.md "Processes and sockets").

These tests wait on another process, so they use the real clock: every wait
is a short poll with a bounded deadline, and the process is killed in a
``finally`` whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvfs2proto.channels import DEVICE_REPLY, DEVICE_REQUEST, VFS_LENGTH, VFS_REPLY, VFS_REQUEST, DeviceCall, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE, MAX_DEV_REQ_UPSIZE

from .live import NONBLOCK, getattr_upcall

PVFS2DEV = Path(sys.executable).with_name("pvfs2dev")
SOCKETS = {"pvfs2-req": 0o600, "pvfs2-vfs": 0o666, "pvfs2-ctl": 0o666}
DEADLINE = 15.0


@contextlib.contextmanager
def serving(rundir: Path, *args: str):
    """Run ``pvfs2dev serve --rundir rundir`` until the block ends; kill it if it is still there."""
    command = [str(PVFS2DEV), "serve", "--rundir", str(rundir), *args] if PVFS2DEV.exists() else [
        sys.executable, "-m", "pvfs2dev.cli", "serve", "--rundir", str(rundir), *args]
    log = open(rundir.parent / f"{rundir.name}.log", "wb")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(rundir, process)
        yield process
    except BaseException:
        log.flush()
        sys.stderr.write((rundir.parent / f"{rundir.name}.log").read_text(errors="replace"))
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)
        log.close()


def control(rundir: Path, cmd: str) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE)
        sock.connect(str(rundir / "pvfs2-ctl"))
        sock.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("control socket closed")
            data += chunk
        return json.loads(data)


def wait_ready(rundir: Path, process: subprocess.Popen) -> None:
    """Until the control socket (bound last) answers."""
    end = time.monotonic() + DEADLINE
    while True:
        if process.poll() is not None:
            raise AssertionError(f"pvfs2dev serve exited early with {process.returncode}")
        try:
            if control(rundir, "status")["ok"]:
                return
        except OSError:
            pass
        if time.monotonic() > end:
            raise AssertionError("pvfs2dev serve did not come up")
        time.sleep(0.02)


def wait_until(predicate, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sockets_appear_with_their_modes(tmp_path):
    """DESIGN "Processes and sockets": pvfs2-req is 0600, pvfs2-vfs and pvfs2-ctl 0666, in a 0700 run directory."""
    rundir = tmp_path / "run"
    with serving(rundir) as process:
        assert stat.S_IMODE(rundir.stat().st_mode) == 0o700
        for name, mode in SOCKETS.items():
            st = (rundir / name).stat()
            assert stat.S_ISSOCK(st.st_mode), name
            assert stat.S_IMODE(st.st_mode) == mode, f"{name}: {oct(stat.S_IMODE(st.st_mode))}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_and_removes_the_sockets(tmp_path, signum):
    """DESIGN / cli serve ("until SIGINT or SIGTERM"): either signal ends the broker with status 0 and removes its sockets and buffer files."""
    rundir = tmp_path / "run"
    with serving(rundir) as process:
        assert all((rundir / name).exists() for name in SOCKETS)
        process.send_signal(signum)
        assert process.wait(timeout=DEADLINE) == 0
        assert sorted(p.name for p in rundir.iterdir()) == []


def _device_call(sock: socket.socket, call: int, seq: int, a0: int = 0) -> tuple[int, bytes]:
    sock.send(DEVICE_REQUEST.pack(call, seq, a0, 0))
    data = sock.recv(DEVICE_REPLY.size + MAX_DEV_REQ_UPSIZE + 64)
    got_call, got_seq, result = DEVICE_REPLY.unpack_from(data)
    assert (got_call, got_seq) == (call, seq)
    return result, data[DEVICE_REPLY.size :]


@pytest.mark.parametrize("state", ["queued", "in-progress"])
def test_caller_blocked_at_sigterm_gets_a_reply(tmp_path, state):
    """DESIGN VFS channel (every SUBMIT is answered) / `pvfs2dev serve`: a call waiting on an op, queued or read, when SIGTERM arrives gets its reply (EINTR, as for a killed caller) before the broker exits 0."""
    rundir = tmp_path / "run"
    with serving(rundir, "--op-timeout", "120") as process, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as vfs, \
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as dev:
        vfs.settimeout(DEADLINE)
        dev.settimeout(DEADLINE)
        if state == "in-progress":
            dev.connect(str(rundir / "pvfs2-req"))
            assert _device_call(dev, DeviceCall.OPEN, 1, NONBLOCK)[0] == 0
        vfs.connect(str(rundir / "pvfs2-vfs"))
        body = VFS_REQUEST.pack(0, VfsKind.SUBMIT, 31337) + getattr_upcall()
        vfs.sendall(VFS_LENGTH.pack(len(body)) + body)
        wait_until(lambda: control(rundir, "status")["request_list"] == 1, "the op to be queued")
        if state == "in-progress":
            result, frame = _device_call(dev, DeviceCall.READ, 2, MAX_DEV_REQ_UPSIZE)
            assert result == MAX_DEV_REQ_UPSIZE
            assert control(rundir, "status")["in_progress"] == 1

        process.send_signal(signal.SIGTERM)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from("<I", data)[0]:
            chunk = vfs.recv(65536)
            assert chunk, "the broker closed the VFS connection without a reply"
            data += chunk
        (length,) = VFS_LENGTH.unpack_from(data)
        assert length == VFS_REPLY.size + DOWNCALL_SIZE
        result, tag, req_id = VFS_REPLY.unpack_from(data, 4)
        assert req_id == 31337
        assert tag >= 100
        assert result == -errno.EINTR
        assert process.wait(timeout=DEADLINE) == 0
        assert not any((rundir / name).exists() for name in SOCKETS)
