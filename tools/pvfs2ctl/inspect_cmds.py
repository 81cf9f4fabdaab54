"""Read-only views and knobs over the control channel (issue 5, Inspect and Act).

Each command is thin: one request (or a stream of them) to ``pvfs2-ctl``, a
failed reply turned into one ``ENAME: message`` line, and the answer rendered
by a pure function of :mod:`.render` — or printed as JSON with ``--json``.

Inspecting (status, ops, top, buffers, mounts, stats, trace, perf, and
reading params/debug) is open to anyone who can reach the socket; changing a
knob or a debug mask needs the broker's owner or root, which the broker checks
(EPERM otherwise).
"""

from __future__ import annotations

import base64
import errno
import os
import sys
import termios
import tty
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import click
import trio
from rich.console import Console
from rich.live import Live
from rich.text import Text

import pvfs2proto as proto
from pvfs2proto.debug import KERNEL_DEBUG_KEYWORDS

from . import render
from .cli import Broker, fail_errno, run
from .client import ControlClient

T = TypeVar("T")

pass_broker = click.pass_obj  # ctx.obj is the group's Broker


def json_option(f=None, *, help: str = "Print the broker's reply as JSON."):
    """``--json``: for scripts, the reply as it came (usable bare or with a help text)."""
    option = click.option("--json", "as_json", is_flag=True, help=help)
    return option(f) if f is not None else option


# -- plumbing --------------------------------------------------------------------------------------------


def console() -> Console:
    """A console for standard output; wide when it is not a terminal, so piped tables keep whole cells."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if wide else None, highlight=False)


def checked(reply: dict) -> dict:
    """The reply, or the one-line error of a failed call."""
    if not reply.get("ok"):
        raise fail_errno(int(reply.get("errno") or errno.EIO), str(reply.get("message", "")))
    return reply


def request(broker: Broker, cmd: str, **fields) -> dict:
    """One control request and its (successful) reply."""

    async def call() -> dict:
        async with ControlClient.connect(broker.control) as ctl:
            return await ctl.request(cmd, **fields)

    return checked(run(broker, call))


def run_interruptible(broker: Broker, main: Callable[[], Awaitable[T]]) -> T | None:
    """:func:`run` for commands a person stops with Ctrl-C (trace, top): that is a clean exit."""
    try:
        return run(broker, main)
    except KeyboardInterrupt:
        return None


def echo_json(reply: dict) -> None:
    click.echo(render.json_text(reply))


# -- status, mounts, buffers ----------------------------------------------------------------------------


@click.command()
@json_option
@pass_broker
def status(broker: Broker, as_json: bool) -> None:
    """Client-core, userspace version, features, mounts, buffers, op counts by state, uptime."""
    reply = request(broker, "status")
    if as_json:
        echo_json(reply)
    else:
        console().print(render.status_view(reply))


@click.command()
@json_option
@pass_broker
def mounts(broker: Broker, as_json: bool) -> None:
    """The mounted filesystems: fs_id, id, device string, mount pending."""
    reply = request(broker, "mounts")
    if as_json:
        echo_json(reply)
    else:
        console().print(render.mounts_table(reply.get("mounts", [])))


@click.command()
@click.option("--dump", "slot", type=click.IntRange(min=0), default=None, metavar="SLOT",
              help="Also hexdump the bytes of this I/O slot.")
@click.option("--length", type=click.IntRange(min=0), default=4096, show_default=True,
              help="How many bytes of the slot to dump (at most the slot size).")
@json_option
@pass_broker
def buffers(broker: Broker, slot: int | None, length: int, as_json: bool) -> None:
    """Both slot maps (free/busy bitmap, waiters, counter c); with --dump, one I/O slot's bytes."""
    fields = {} if slot is None else {"dump": slot, "length": length}
    reply = request(broker, "buffers", **fields)
    if as_json:
        echo_json(reply)
        return
    out = console()
    out.print(render.buffers_table(reply.get("maps", [])))
    if slot is not None:
        data = base64.b64decode(reply.get("dump", ""))
        out.print(Text(f"io slot {slot}, first {len(data)} bytes:", style="bold"))
        out.print(Text(render.hexdump(data)))


# -- ops --------------------------------------------------------------------------------------------------

STATE_NAMES = ("unknown", "waiting", "inprogr", "serviced", "purged", "given_up", "mutex")
OP_NAMES = sorted({proto.opname(op) for op in proto.OpCode} - {"OP_UNKNOWN?"})


def state_matcher(spec: str) -> Callable[[dict], bool]:
    """``--state``: a number (every bit set; 0 = unknown) or names joined by ``|`` or ``,``, all present."""
    text = spec.strip().lower()
    try:
        value = int(text, 0)
    except ValueError:
        value = None
    if value is not None:
        return lambda row: (int(row.get("state", 0)) & value) == value if value else int(row.get("state", 0)) == 0
    wanted = {w.strip().replace("-", "_") for w in text.replace(",", "|").split("|") if w.strip()}
    unknown = wanted - set(STATE_NAMES)
    if unknown or not wanted:
        raise click.BadParameter(f"{spec!r}: states are {', '.join(STATE_NAMES)} (or a number)", param_hint="--state")

    def match(row: dict) -> bool:
        have = set(str(row.get("state_names", "")).split("|"))
        if row.get("where") == "mutex":
            have.add("mutex")
        return wanted <= have

    return match


def op_type_name(spec: str) -> str:
    """``--type``: ``getattr``, ``GETATTR``, ``OP_GETATTR`` or ``ORANGEFS_VFS_OP_GETATTR`` → ``OP_GETATTR``."""
    name = spec.strip().upper().replace("-", "_")
    name = name.removeprefix("ORANGEFS_VFS_")
    if not name.startswith("OP_"):
        name = "OP_" + name
    if name not in OP_NAMES:
        raise click.BadParameter(f"{spec!r}: op types are {', '.join(n[3:].lower() for n in OP_NAMES)}",
                                 param_hint="--type")
    return name


def select_ops(rows: list[dict], state: str | None = None, op_type: str | None = None,
               older_than: float | None = None) -> list[dict]:
    """The rows of an ``ops`` reply that pass every filter given."""
    keep = state_matcher(state) if state else (lambda row: True)
    name = op_type_name(op_type) if op_type else None
    return [r for r in rows
            if keep(r) and (name is None or r.get("op") == name)
            and (older_than is None or float(r.get("age", 0.0)) > older_than)]


@click.command()
@click.option("--state", metavar="S", default=None,
              help="Only ops with these state bits: waiting, inprogr, serviced, purged, given_up, unknown, mutex "
                   "(join with '|' for all of several, e.g. 'inprogr|given_up'), or a number.")
@click.option("--type", "op_type", metavar="T", default=None,
              help="Only ops of this type, e.g. getattr or OP_FILE_IO.")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="SECS", default=None,
              help="Only ops older than SECS seconds.")
@json_option(help="Print the broker's reply (after the filters) as JSON.")
@pass_broker
def ops(broker: Broker, state: str | None, op_type: str | None, older_than: float | None, as_json: bool) -> None:
    """One row per op in flight: tag, op, state bits, age, attempts, uid/gid/pid, fs_id, slot, list position."""
    # Check the filters before asking, so a typo is a usage error rather than an empty table.
    select_ops([], state, op_type, older_than)
    reply = request(broker, "ops")
    rows = select_ops(reply.get("ops", []), state, op_type, older_than)
    if as_json:
        echo_json({**reply, "ops": rows})
    else:
        console().print(render.ops_table(rows))


# -- stats ------------------------------------------------------------------------------------------------


@click.command()
@click.option("--prometheus", is_flag=True, help="Print the Prometheus text exposition format.")
@json_option
@pass_broker
def stats(broker: Broker, prometheus: bool, as_json: bool) -> None:
    """Per op type counts, errors by errno name, the latency histogram, broker counters."""
    if prometheus and as_json:
        raise click.UsageError("--prometheus and --json exclude each other")
    reply = request(broker, "stats")
    if as_json:
        echo_json(reply)
    elif prometheus:
        click.echo(render.prometheus_text(reply), nl=False)
    else:
        console().print(render.stats_view(reply))


# -- trace ------------------------------------------------------------------------------------------------


#: Lines of a recording other than transitions (pvfs2dev/recorder.py).
RECORD_EVENTS = frozenset({"upcall", "downcall", "map", "lost"})


@click.command()
@click.option("--record", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              metavar="FILE", help="Also record every upcall and downcall (tag, time, bytes) to FILE as JSON lines, "
                                   "for pvfs2dev replay.")
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N transitions, or with --record after N downcalls [default: run until Ctrl-C].")
@json_option(help="Print each transition as one JSON object per line.")
@pass_broker
def trace(broker: Broker, record: Path | None, count: int | None, as_json: bool) -> None:
    """Stream op state transitions as they happen: time, tag, op, event, before -> after.

    With --record, FILE gets a header line (format, version, broker version,
    slot geometry, mounts), then one line per upcall read and per downcall
    written by the client-core, with the frame bytes and the FILE_IO slot data
    (see pvfs2ctl(1)); standard output still shows the transitions.
    """
    sink = open(record, "w", encoding="utf-8") if record else None

    async def follow() -> None:
        async with ControlClient.connect(broker.control) as ctl:
            started = checked(await (ctl.request("trace", record=True) if sink else ctl.request("trace")))
            if sink is not None:
                sink.write(render.json_text(started.get("record", {}), compact=True) + "\n")
                sink.flush()
            seen = 0
            while count is None or seen < count:
                event = await ctl.receive()
                if event.get("event") in RECORD_EVENTS and "before" not in event:
                    sink.write(render.json_text(event, compact=True) + "\n")
                    sink.flush()
                    if event["event"] == "lost":
                        click.echo(f"pvfs2ctl: trace: {event.get('count')} records lost (the reader fell behind)",
                                   err=True)
                    seen += event["event"] == "downcall"
                    continue
                if sink is None:
                    seen += 1
                line = render.json_text(event, compact=True)
                click.echo(line if as_json else render.trace_line(event))

    try:
        run_interruptible(broker, follow)
    finally:
        if sink is not None:
            sink.close()


# -- top --------------------------------------------------------------------------------------------------


async def sample(ctl: ControlClient) -> dict:
    """What one frame of ``top`` needs: a status and a stats reply."""
    return {"status": checked(await ctl.request("status")), "stats": checked(await ctl.request("stats"))}


async def wait_for_quit(fd: int | None, deadline: float) -> bool:
    """Wait until ``deadline``; True as soon as ``q`` is typed on ``fd`` (a terminal in cbreak mode)."""
    with trio.move_on_at(deadline):
        while fd is not None:
            await trio.lowlevel.wait_readable(fd)
            keys = os.read(fd, 1024)
            if not keys:
                break
            if b"q" in keys or b"Q" in keys:
                return True
        await trio.sleep_forever()
    return False


@click.command()
@click.option("--once", is_flag=True, help="Print one frame to standard output and exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="SECS",
              help="Seconds between refreshes (with --once: the sampling window for the rates).")
@pass_broker
def top(broker: Broker, once: bool, interval: float) -> None:
    """A live view: ops/s, latency p50/p99 by type, queue depth, in progress, slot use, client-core restarts.

    Refreshes every --interval seconds; q or Ctrl-C quits and leaves the terminal as it was.
    """
    if once:
        async def one_frame():
            async with ControlClient.connect(broker.control) as ctl:
                first = await sample(ctl)
                await trio.sleep(interval)
                return render.top_frame(first, await sample(ctl))

        frame = run(broker, one_frame)
        console().print(frame)
        return

    out = Console(highlight=False)
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None

    async def live() -> None:
        async with ControlClient.connect(broker.control) as ctl:
            previous = await sample(ctl)
            saved = termios.tcgetattr(fd) if fd is not None else None
            try:
                if fd is not None:
                    tty.setcbreak(fd)  # keys without Enter and without echo; Ctrl-C still raises SIGINT
                with Live(render.top_frame(None, previous, interactive=True), console=out, screen=True,
                          auto_refresh=False, transient=True) as view:
                    while not await wait_for_quit(fd, trio.current_time() + interval):
                        current = await sample(ctl)
                        view.update(render.top_frame(previous, current, interactive=True), refresh=True)
                        previous = current
            finally:
                if saved is not None:
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    run_interruptible(broker, live)


# -- knobs: params, debug, perf ------------------------------------------------------------------------


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.argument("value", nargs=-1)
@json_option
@pass_broker
def params(broker: Broker, name: str | None, value: tuple[str, ...], as_json: bool) -> None:
    """List every sysfs knob, show NAME, or set NAME to VALUE (e.g. acache/timeout_msecs 100).

    readahead_count_size takes two values: count size.  Setting needs the broker's owner or root.
    """
    if name is None:
        reply = request(broker, "params")
        if as_json:
            echo_json(reply)
        else:
            console().print(render.params_table(reply.get("params", [])))
        return
    fields = {"name": name}
    if value:
        fields["value"] = " ".join(value)
    reply = request(broker, "params", **fields)
    if as_json:
        echo_json(reply)
    else:
        click.echo(str(reply.get("value", "")).rstrip("\n"))


@click.command()
@click.argument("which", type=click.Choice(["kernel", "client"]))
@click.argument("keywords", nargs=-1)
@json_option
@pass_broker
def debug(broker: Broker, which: str, keywords: tuple[str, ...], as_json: bool) -> None:
    """Show or set the debugfs masks: kernel-debug or client-debug, as comma-separated keywords.

    Setting needs the broker's owner or root; 'none' clears and 'all' sets every keyword.
    """
    fields = {"which": which}
    if keywords:
        fields["value"] = ",".join(k.strip(",") for k in keywords if k.strip(","))
    reply = request(broker, "debug", **fields)
    if as_json:
        echo_json(reply)
        return
    click.echo(reply.get("value", ""))
    if not keywords:
        known = list(KERNEL_DEBUG_KEYWORDS) if which == "kernel" else reply.get("keywords")
        note = ("keywords: " + ",".join(known)) if known else "keywords: unknown until the client-core starts"
        click.echo(note, err=True)


@click.command()
@click.argument("counter", type=click.Choice(["acache", "ncache", "capcache"]))
@json_option
@pass_broker
def perf(broker: Broker, counter: str, as_json: bool) -> None:
    """The client-core's performance counters for one cache (a PERF_COUNT upcall)."""
    reply = request(broker, "perf", type=counter)
    if as_json:
        echo_json(reply)
    else:
        click.echo(str(reply.get("text", "")), nl=False)


COMMANDS: list[click.Command] = [status, ops, top, buffers, mounts, stats, trace, params, debug, perf]

__all__ = ["COMMANDS", "select_ops"]
