"""``pvfs2ctl``: look inside the emulated kernel module and drive it.

The group holds the broker location; commands live in :mod:`.inspect_cmds`
(read-only views and knobs, over the control channel), :mod:`.fs`
(filesystem actions, over the VFS channel), :mod:`.fault_cmds`, and
``pvfs2bench.cli`` (``bench``, which runs brokers of its own).  Every expected failure becomes
one line on standard error and a non-zero exit, through :func:`run`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import click
import trio

from pvfs2dev.rundir import CONTROL_SOCKET, VFS_SOCKET, default_rundir
from pvfs2proto import errno_name

T = TypeVar("T")


@dataclasses.dataclass
class Broker:
    """Where the broker is: what every command needs first."""

    rundir: Path
    json: bool = False

    @property
    def control(self) -> Path:
        return self.rundir / CONTROL_SOCKET

    @property
    def vfs(self) -> Path:
        return self.rundir / VFS_SOCKET


class CommandError(click.ClickException):
    """An expected failure: printed as one line, exit status ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"pvfs2ctl: {self.message}", err=True)


def fail_errno(err: int, message: str) -> CommandError:
    """The one line for a failed call: ``ENOENT: No such file or directory (/a/b)``."""
    return CommandError(f"{errno_name(err)}: {os.strerror(err)}{f' ({message})' if message else ''}")


def run(broker: Broker, main: Callable[[], Awaitable[T]], socket_path: Path | None = None) -> T:
    """Run ``main`` under trio; turn the expected failures into one-line errors."""
    path = socket_path or broker.control
    try:
        return trio.run(main)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        if exc.filename in (None, str(path)) or not path.exists():
            raise CommandError(
                f"no broker at {path}; start one with: pvfs2dev serve --rundir {broker.rundir}"
            ) from None
        raise fail_errno(exc.errno or errno.ENOENT, str(exc.filename or "")) from None
    except OSError as exc:
        raise fail_errno(exc.errno or errno.EIO, exc.strerror or str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The broker's run directory [default: $PVFS2DEV_RUNDIR, /run/pvfs2dev as root, else "
                   "$XDG_RUNTIME_DIR/pvfs2dev or /tmp/pvfs2dev-$UID].")
@click.version_option(package_name="pvfs2dev")
@click.pass_context
def main(ctx: click.Context, rundir: Path | None) -> None:
    """Look inside the emulated OrangeFS kernel module, tune it, and drive its filesystem."""
    ctx.obj = Broker(rundir or default_rundir())


def _register() -> None:
    from pvfs2bench.cli import bench  # the benchmark starts brokers of its own; --rundir does not concern it

    from . import fault_cmds, fs, inspect_cmds

    for command in inspect_cmds.COMMANDS:
        main.add_command(command)
    main.add_command(fs.fs)
    main.add_command(fault_cmds.fault)
    main.add_command(bench)


_register()
