"""``pvfs2ctl fault``: arrange kernel-side faults in a running broker (pvfs2dev/faults.py).

The client-core side misbehaves with ``clientcore --fault``; these are the
kernel's half: signal an op's caller, hold slots, pause the device's reads.
Every action but ``show`` needs the broker's owner or root.
"""

from __future__ import annotations

import click

from . import render
from .cli import Broker
from .inspect_cmds import console, echo_json, json_option, pass_broker, request


def _show(broker: Broker, reply: dict, as_json: bool, line: str) -> None:
    if as_json:
        echo_json(reply)
    else:
        click.echo(line)
        console().print(render.faults_table(reply.get("faults", {})))


@click.group()
def fault() -> None:
    """Kernel-side faults: interrupt an op, hold slots, pause reads (see also clientcore --fault)."""


@fault.command()
@json_option
@pass_broker
def show(broker: Broker, as_json: bool) -> None:
    """The faults arranged now: reads paused or not, slots held per map."""
    reply = request(broker, "fault", action="show")
    if as_json:
        echo_json(reply)
    else:
        console().print(render.faults_table(reply["faults"]))


@fault.command()
@click.argument("tag", type=int)
@click.option("--fatal", is_flag=True, help="A fatal signal (ends any wait but WRITEBACK's), not an ordinary one.")
@json_option
@pass_broker
def interrupt(broker: Broker, tag: int, fatal: bool, as_json: bool) -> None:
    """Signal the caller waiting on op TAG (see pvfs2ctl ops); a FILE_IO already read becomes a CANCEL."""
    reply = request(broker, "fault", action="interrupt", tag=tag, fatal=fatal)
    if as_json:
        echo_json(reply)
    else:
        click.echo(f"{'fatal signal' if fatal else 'signal'} sent to the caller of op {tag} ({reply['op']})")


@fault.command("hold-slots")
@click.option("--map", "which", type=click.Choice(["io", "readdir"]), default="io", show_default=True,
              help="Which slot map.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many free slots to take (never waits for busy ones).")
@json_option
@pass_broker
def hold_slots(broker: Broker, which: str, count: int, as_json: bool) -> None:
    """Take free slots and keep them, so callers queue for a slot and may time out (slot_timeout_secs)."""
    reply = request(broker, "fault", action="hold-slots", map=which, count=count)
    _show(broker, reply, as_json, f"held {which} slots {reply['taken']}")


@fault.command("release-slots")
@click.option("--map", "which", type=click.Choice(["io", "readdir"]), default=None,
              help="Which slot map [default: both].")
@click.option("--count", type=click.IntRange(min=1), default=None, help="How many, oldest first [default: all].")
@json_option
@pass_broker
def release_slots(broker: Broker, which: str | None, count: int | None, as_json: bool) -> None:
    """Give held slots back; the first waiter gets each."""
    fields = {k: v for k, v in (("map", which), ("count", count)) if v is not None}
    reply = request(broker, "fault", action="release-slots", **fields)
    _show(broker, reply, as_json, f"released {reply['released']} slots")


@fault.command("pause-reads")
@json_option
@pass_broker
def pause_reads(broker: Broker, as_json: bool) -> None:
    """The device has nothing to read (READ is EAGAIN, POLL waits) while ops pile up on the request list."""
    _show(broker, request(broker, "fault", action="pause-reads"), as_json, "reads paused")


@fault.command("resume-reads")
@json_option
@pass_broker
def resume_reads(broker: Broker, as_json: bool) -> None:
    """Let the client-core read again (a waiting POLL reports POLLIN at once if ops are queued)."""
    _show(broker, request(broker, "fault", action="resume-reads"), as_json, "reads resumed")


__all__ = ["fault"]
