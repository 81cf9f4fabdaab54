"""``pvfs2dev``: run the broker (the emulated OrangeFS kernel module)."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path

import click
import trio

from pvfs2proto.constants import (
    ORANGEFS_DEFAULT_HASH_TABLE_SIZE,
    ORANGEFS_DEFAULT_OP_TIMEOUT_SECS,
    ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS,
    ORANGEFS_READDIR_DEFAULT_DESC_COUNT,
)

from .rundir import CONTROL_SOCKET, default_rundir
from .server import DEFAULT_FSNAME, Config, Server


@click.group()
@click.version_option(package_name="pvfs2dev")
def main() -> None:
    """The emulated OrangeFS kernel module: /dev/pvfs2-req over Unix sockets."""


RUNDIR_HELP = ("The broker's run directory [default: $PVFS2DEV_RUNDIR, /run/pvfs2dev as root, "
               "else $XDG_RUNTIME_DIR/pvfs2dev or /tmp/pvfs2dev-$UID].")


@main.command()
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the sockets and buffers [default: $PVFS2DEV_RUNDIR, /run/pvfs2dev as root, "
                   "else $XDG_RUNTIME_DIR/pvfs2dev or /tmp/pvfs2dev-$UID].")
@click.option("--op-timeout", type=click.IntRange(min=0), default=ORANGEFS_DEFAULT_OP_TIMEOUT_SECS,
              show_default=True, help="op_timeout_secs: how long an op waits with no client-core.")
@click.option("--slot-timeout", type=click.IntRange(min=0), default=ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS,
              show_default=True, help="slot_timeout_secs: how long a caller waits for a free slot.")
@click.option("--hash-table-size", type=click.IntRange(min=1), default=ORANGEFS_DEFAULT_HASH_TABLE_SIZE,
              show_default=True, help="Buckets of the in-progress table.")
@click.option("--readdir-slots", type=click.IntRange(min=1), default=ORANGEFS_READDIR_DEFAULT_DESC_COUNT,
              show_default=True, help="Readdir slots installed at MAP.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="debug logs every op state change with its tag and op name.")
@click.option("--mount", "mount", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Mount the filesystem here with FUSE (FS_MOUNT when a client-core answers).")
@click.option("--fsname", default=DEFAULT_FSNAME, show_default=True,
              help="The device string the mount's FS_MOUNT carries.")
@click.option("-o", "--option", "options", multiple=True, default=None, metavar="OPT[,OPT...]",
              help="FUSE mount option, repeatable (allow_other, default_permissions, ...).")
def serve(rundir, op_timeout, slot_timeout, hash_table_size, readdir_slots, log_level, mount, fsname,
          options) -> None:
    """Run the broker in the foreground until SIGINT or SIGTERM."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = Config(
        rundir=rundir or default_rundir(),
        op_timeout_secs=op_timeout,
        slot_timeout_secs=slot_timeout,
        hash_table_size=hash_table_size,
        readdir_slots=readdir_slots,
        mount=mount,
        fsname=fsname,
        mount_options=list(options),
    )

    async def run() -> None:
        await Server(config).run(handle_signals=True)

    try:
        trio.run(run)
    except OSError as exc:
        click.echo(f"pvfs2dev: {exc}", err=True)
        sys.exit(1)


def control_request(rundir: Path | None, cmd: str, **fields) -> dict:
    """One request on a running broker's control socket; exits with one line if it fails."""
    path = (rundir or default_rundir()) / CONTROL_SOCKET
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(os.fspath(path))
            sock.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
            reply = bytearray()
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError(errno.ECONNRESET, "the broker closed the control socket")
                reply += chunk
    except OSError as exc:
        click.echo(f"pvfs2dev {cmd}: no broker at {path}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    answer = json.loads(reply)
    if not answer.get("ok"):
        click.echo(f"pvfs2dev {cmd}: {answer.get('message') or answer.get('error')} ({answer.get('error')})", err=True)
        sys.exit(32 if cmd == "mount" else 1)  # mount(8)'s "mount failure"
    return answer


@main.command()
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None, help=RUNDIR_HELP)
@click.option("--fsname", default=DEFAULT_FSNAME, show_default=True,
              help="The device string the mount's FS_MOUNT carries.")
@click.option("-o", "--option", "options", multiple=True, default=None, metavar="OPT[,OPT...]",
              help="FUSE mount option, repeatable (allow_other, default_permissions, ...).")
@click.argument("mountpoint", type=click.Path(file_okay=False, exists=True, path_type=Path))
def mount(rundir, fsname, options, mountpoint) -> None:
    """Have a running broker mount the filesystem on MOUNTPOINT with FUSE.

    As mount(2): one FS_MOUNT, which fails with ETIMEDOUT after op_timeout_secs
    if no client-core answers.  The broker serves the mount in its own
    process, which holds one FUSE mount at a time (EBUSY otherwise).
    """
    control_request(rundir, "mount", mountpoint=os.path.abspath(mountpoint), fsname=fsname, options=list(options))


@main.command()
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None, help=RUNDIR_HELP)
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
def umount(rundir, mountpoint) -> None:
    """Unmount a broker's FUSE mount: written data goes out, FUSE detaches, FS_UMOUNT is sent.

    Fails with EBUSY while files or directories on it are open, as umount(2).
    """
    control_request(rundir, "umount", mountpoint=os.path.abspath(mountpoint))


@main.command()
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Serve the replay's device here [default: a new temporary directory, removed afterwards].")
@click.option("--clientcore", "clientcore", metavar="COMMAND", default=None,
              help="Start this client-core (a shell-quoted command; --rundir DIR is appended) and stop it at the "
                   "end [default: wait for one to attach].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              metavar="SECS", help="How long to wait for the client-core to map its buffers, and for each answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.argument("recording", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
def replay(rundir, clientcore, timeout, as_json, recording) -> None:
    """Replay the kernel's side of a recording (pvfs2ctl trace --record) against a client-core.

    Submits the recorded upcalls one at a time, in their order, translating
    handles, fs_ids and tokens to the ones the client-core hands out, and
    compares each answer with the recorded one (times masked).  Exits 0 if no
    answer differs, 1 at the first divergence, 2 for a file that is not a
    recording, 3 if the replay could not run.
    """
    import shutil
    import tempfile

    from .replay import EXIT_BAD_FILE, EXIT_FAILED, RecordingError, ReplayError, load
    from .replay import replay as run_replay

    try:
        loaded = load(recording)
    except RecordingError as exc:
        click.echo(f"pvfs2dev replay: {recording}: {exc}", err=True)
        sys.exit(EXIT_BAD_FILE)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    temporary = rundir is None
    where = Path(tempfile.mkdtemp(prefix="pvfs2dev-replay-")) if temporary else rundir
    announce = None if clientcore else (lambda text: click.echo(f"pvfs2dev replay: {text}", err=True))
    try:
        report = trio.run(lambda: run_replay(loaded, where, clientcore=clientcore, timeout=timeout,
                                             announce=announce))
    except RecordingError as exc:
        click.echo(f"pvfs2dev replay: {recording}: {exc}", err=True)
        sys.exit(EXIT_BAD_FILE)
    except ReplayError as exc:
        click.echo(f"pvfs2dev replay: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        if temporary:
            shutil.rmtree(where, ignore_errors=True)
    click.echo(json.dumps(report.as_dict()) if as_json else report.text())
    sys.exit(report.status)


if __name__ == "__main__":
    main()
