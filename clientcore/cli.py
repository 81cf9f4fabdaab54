"""``clientcore``: options, logging, opening the store, exit statuses."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import click
import trio

from pvfs2dev.rundir import default_rundir

from .daemon import EXIT_STARTUP, parse_size, serve
from .faults import FaultPlan, FaultSpecError, parse_fault
from .store import StoreError


def default_store() -> Path:
    """``$PVFS2DEV_STORE``, else /var/lib/pvfs2dev/store for root, else $XDG_DATA_HOME/pvfs2dev/store."""
    explicit = os.environ.get("PVFS2DEV_STORE")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/lib/pvfs2dev/store")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "pvfs2dev" / "store"


class Size(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError:
            self.fail(f"{value!r} is not a size such as 4MiB or 65536", param, ctx)


class FaultSpec(click.ParamType):
    name = "SPEC"

    def convert(self, value, param, ctx):
        try:
            parse_fault(value)
        except FaultSpecError as exc:
            self.fail(str(exc), param, ctx)
        return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The broker's run directory [default: as pvfs2dev serve].")
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The embedded store, created on first run [default: $PVFS2DEV_STORE, "
                   "/var/lib/pvfs2dev/store as root, else $XDG_DATA_HOME/pvfs2dev/store].")
@click.option("--desc-count", type=click.IntRange(min=1), default=10, show_default=True,
              help="I/O buffer slots.")
@click.option("--desc-size", type=Size(), default="4MiB", show_default=True,
              help="Bytes per I/O slot (a power of two).")
@click.option("--max-inflight", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most ops answered at once.")
@click.option("--targets", type=click.IntRange(min=1), default=None,
              help="Data target directories of a new store [default: 4; an existing store keeps its own].")
@click.option("--stripe-size", type=Size(), default=None,
              help="Stripe unit of a new store [default: 64KiB; an existing store keeps its own].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--fault", "faults", type=FaultSpec(), multiple=True, default=None,
              help="Misbehave on purpose, repeatable: delay:OP:TIME[:P], drop:OP[:P], "
                   "corrupt:OP[:trailer|magic|short|tag[:P]], crash-after:N, stall-readdir.")
@click.option("--fault-seed", type=int, default=0, show_default=True,
              help="Seed of the draws that decide which upcalls a fault with a probability hits.")
@click.option("--watchdog", is_flag=True, help="Run under the watchdog, restarted when it dies.")
def command(rundir, store_dir, desc_count, desc_size, max_inflight, targets, stripe_size, log_level,
            faults, fault_seed, watchdog) -> None:
    """The client-core daemon: answers the broker's upcalls from an embedded store."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .store.embedded import EmbeddedStore

    rundir = rundir or default_rundir()
    if not (rundir / "pvfs2-req").exists():
        click.echo(f"clientcore: no broker at {rundir / 'pvfs2-req'} (start it with: pvfs2dev serve "
                   f"--rundir {rundir})", err=True)
        sys.exit(EXIT_STARTUP)
    try:
        store = EmbeddedStore.open(store_dir or default_store(), targets=targets, stripe_size=stripe_size)
    except StoreError as exc:
        click.echo(f"clientcore: store refused: {exc.strerror}", err=True)
        sys.exit(EXIT_STARTUP)
    try:
        status = trio.run(functools.partial(serve, store, str(rundir), desc_count=desc_count,
                                            desc_size=desc_size, max_inflight=max_inflight,
                                            faults=FaultPlan.parse(faults or (), fault_seed)))
    except (OSError, ValueError) as exc:
        click.echo(f"clientcore: {exc}", err=True)
        status = EXIT_STARTUP
    finally:
        store.close()
    sys.exit(status)
