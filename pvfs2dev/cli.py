"""``pvfs2dev``: run the broker (the emulated OrangeFS kernel module)."""

from __future__ import annotations

import logging
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

from .rundir import default_rundir
from .server import DEFAULT_FSNAME, Config, Server


@click.group()
@click.version_option(package_name="pvfs2dev")
def main() -> None:
    """The emulated OrangeFS kernel module: /dev/pvfs2-req over Unix sockets."""


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


if __name__ == "__main__":
    main()
