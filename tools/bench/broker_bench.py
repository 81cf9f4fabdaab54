"""Broker benchmark: round trips through the emulated device, beside a raw trio ping-pong.

    python -m tools.bench.broker_bench [--runs 5] [--seconds 2] [--scale 10,1000,100000] [--json]

Figures, each the median of ``--runs`` timed runs after a warm-up (min–max):

* **round trip**: GETATTR ops/s, VFS caller → broker → minimal client-core →
  broker → caller, three processes, with 1 and with 64 ops in flight.  The
  caller keeps its ops in flight with non-blocking socket calls in one trio
  task; the client-core is ``clientcore.minimal`` (answers every op at once).
* **reference**: messages/s of a ping-pong over SOCK_SEQPACKET between two
  trio processes written the plain trio way (``await sock.send`` /
  ``await sock.recv``), 32 messages in flight; the issue asks for at least a
  fifth of it.
* **core scale**: the kernel core alone, N GETATTRs queued, then the time of
  a device read + write + completion per op.  Flat across N means O(1)
  structures and no list scan on the hot path.
* **drain**: the same end to end: N GETATTRs queued in a broker process with
  no client-core, then one starts; the time from the first reply to the last,
  per op (mostly cross-CPU wake-ups).  Also the broker's resident memory per
  queued op (from /proc, at the largest N).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import trio
from rich.console import Console
from rich.table import Table

import pvfs2proto as proto
from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE

PY = sys.executable
GETATTR = proto.encode_upcall(
    {"type": proto.OpCode.GETATTR,
     "req": {"getattr": {"refn": {"khandle": bytes(16), "fs_id": 7}, "mask": proto.AttrMask.ALL_NOHINT}}}
)
MOUNT = proto.encode_upcall(
    {"type": proto.OpCode.FS_MOUNT, "req": {"fs_mount": {"orangefs_config_server": b"tcp://localhost:3334/pvfs2-fs"}}}
)
REPLY_SIZE = VFS_LENGTH.size + VFS_REPLY.size + DOWNCALL_SIZE


def _message(req_id: int, upcall: bytes) -> bytes:
    body = VFS_REQUEST.pack(0, VfsKind.SUBMIT, req_id) + upcall
    return VFS_LENGTH.pack(len(body)) + body


class Caller:
    """A VFS caller that keeps ``inflight`` requests going on one connection."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
        self.sock.connect(str(path))
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.next_id = 1

    def send(self, upcall: bytes, count: int = 1) -> None:
        data = b"".join(_message(self.next_id + i, upcall) for i in range(count))
        self.next_id += count
        self.send_all(data)

    def send_all(self, data: bytes) -> None:
        """Send every byte (the benchmark's peer always drains, so a full buffer is brief)."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                select.select([], [self.sock], [], 1.0)

    async def replies(self, *, bodies: bool = False) -> list:
        """The replies that have arrived (waits for at least one): their results, or
        ``(result, body after the reply head)`` pairs with ``bodies``."""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not chunk:
                raise ConnectionError("broker closed the VFS channel")
            self.buffer += chunk
            out, pos = [], 0
            while len(self.buffer) - pos >= 4:
                (length,) = VFS_LENGTH.unpack_from(self.buffer, pos)
                if len(self.buffer) - pos - 4 < length:
                    break
                result = VFS_REPLY.unpack_from(self.buffer, pos + 4)[0]
                if bodies:
                    out.append((result, bytes(self.buffer[pos + 4 + VFS_REPLY.size : pos + 4 + length])))
                else:
                    out.append(result)
                pos += 4 + length
            del self.buffer[:pos]
            if out:
                return out

    async def call(self, upcall: bytes) -> int:
        self.send(upcall)
        return (await self.replies())[0]

    async def run(self, inflight: int, seconds: float, upcall: bytes = GETATTR) -> float:
        """Ops/s with ``inflight`` copies of ``upcall`` (a GETATTR) kept in flight for ``seconds``."""
        self.send(upcall, inflight)
        done, start = 0, time.perf_counter()
        end = start + seconds
        while True:
            results = await self.replies()
            if any(r != 0 for r in results):
                raise RuntimeError(f"GETATTR failed: {results}")
            done += len(results)
            if time.perf_counter() >= end:
                break
            self.send(upcall, len(results))
        elapsed = time.perf_counter() - start
        outstanding = inflight - len(results)
        while outstanding > 0:  # drain what is still in flight
            outstanding -= len(await self.replies())
        return done / elapsed

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def broker(rundir: Path, *extra: str):
    proc = subprocess.Popen([PY, "-m", "pvfs2dev.cli", "serve", "--rundir", str(rundir), "--log-level", "warning",
                             *extra])
    try:
        _wait_for(rundir / "pvfs2-vfs")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def client_core(rundir: Path):
    proc = subprocess.Popen([PY, "-m", "clientcore.minimal", "--rundir", str(rundir), "--desc-count", "4",
                             "--desc-size", str(1 << 20)])
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


async def _wait_in_service(rundir: Path) -> None:
    from pvfs2ctl.client import ControlClient

    with trio.fail_after(20):
        while True:
            async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
                status = await ctl.request("status")
            if status["daemon_in_service"] and not any(m["pending"] for m in status["mounts"]):
                return
            await trio.sleep(0.05)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- the figures ---------------------------------------------------------------------------------


def round_trips(runs: int, seconds: float) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rundir = Path(tmp)
        with broker(rundir), client_core(rundir):

            async def measure():
                await _wait_in_service(rundir)
                caller = Caller(rundir / "pvfs2-vfs")
                try:
                    if await caller.call(MOUNT) != 0:
                        raise RuntimeError("mount failed")
                    out = {}
                    for inflight in (1, 64):
                        await caller.run(inflight, seconds / 2)  # warm-up
                        out[inflight] = [await caller.run(inflight, seconds) for _ in range(runs)]
                    return out
                finally:
                    caller.close()

            for inflight, rates in trio.run(measure).items():
                results[f"round trip, {inflight} in flight"] = _summary(rates)
    return results


PINGPONG_SERVER = r"""
import socket, sys, trio
async def main(path):
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    await listener.bind(path); listener.listen()
    print("ready", flush=True)
    sock, _ = await listener.accept()
    while True:
        data = await sock.recv(65536)
        if not data:
            return
        await sock.send(data)
trio.run(main, sys.argv[1])
"""


def pingpong(runs: int, seconds: float, inflight: int = 32) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pp")
        server = subprocess.Popen([PY, "-c", PINGPONG_SERVER, path], stdout=subprocess.PIPE)
        try:
            server.stdout.readline()

            async def measure():
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                await sock.connect(path)
                message = bytes(24)

                async def one_run(duration):
                    for _ in range(inflight):
                        await sock.send(message)
                    done, start = 0, time.perf_counter()
                    while time.perf_counter() - start < duration:
                        await sock.recv(65536)
                        done += 1
                        await sock.send(message)
                    elapsed = time.perf_counter() - start
                    for _ in range(inflight):
                        await sock.recv(65536)
                    return done / elapsed

                await one_run(seconds / 2)
                rates = [await one_run(seconds) for _ in range(runs)]
                sock.close()
                return rates

            rates = trio.run(measure)
        finally:
            server.terminate()
            server.wait(10)
    return {f"reference: trio SEQPACKET ping-pong, {inflight} in flight": _summary(rates)}


def core_scale(sizes: list[int], runs: int) -> dict:
    """Per-op cost of the kernel core alone (read + write + completion) with N ops queued.

    No sockets and no other processes: this is the figure that shows the core's
    structures stay O(1) as the request list grows.
    """
    from clientcore.minimal import reply_for
    from pvfs2dev.kernel import Kernel

    results = {}
    for n in sizes:
        per_op = []
        # A short queue is queued and drained again and again, so every figure
        # times about 100,000 operations, not a few microseconds' worth.
        reps = max(1, 100_000 // n)
        for run in range(runs + 1):  # the first run warms up and is not counted
            k = Kernel(op_timeout_secs=3600)
            k.dev_open(os.O_RDWR | os.O_NONBLOCK, 0.0)
            k.add_mount(7, 1, b"tcp://localhost:3334/pvfs2-fs")
            elapsed = 0.0
            for _ in range(reps):
                for _ in range(n):
                    k.service(k.new_op(GETATTR, now=0.0), 0.0)
                start = time.perf_counter()
                for _ in range(n):
                    k.dev_write(reply_for(k.dev_read(proto.MAX_DEV_REQ_UPSIZE, 1.0)), 1.0)
                elapsed += time.perf_counter() - start
            if run:
                per_op.append(elapsed / (n * reps) * 1e6)
            if k.live:
                raise RuntimeError("ops left in flight")
        results[f"core: read+write with {n:,} queued, µs per op"] = _summary(per_op)
    return results


def scale(sizes: list[int], runs: int) -> dict:
    results = {}
    memory = None
    for n in sizes:
        per_op = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                rundir = Path(tmp)
                with broker(rundir, "--op-timeout", "3600") as proc:

                    async def queue_and_drain():
                        caller = Caller(rundir / "pvfs2-vfs")
                        try:
                            # mount needs a client-core: start one, mount, stop it, then queue.
                            with client_core(rundir):
                                await _wait_in_service(rundir)
                                if await caller.call(MOUNT) != 0:
                                    raise RuntimeError("mount failed")
                            await _wait_released(rundir)
                            before = rss_bytes(proc.pid)
                            caller.send(GETATTR, n)
                            await _wait_queued(rundir, n)
                            queued_rss = rss_bytes(proc.pid)
                            with client_core(rundir):
                                # Timed from the first reply, so the client-core's
                                # start-up is not in the figure.
                                got = len(await caller.replies())
                                start = time.perf_counter()
                                first = got
                                while got < n:
                                    got += len(await caller.replies())
                                elapsed = time.perf_counter() - start
                            return elapsed / max(1, n - first), (queued_rss - before) / n
                        finally:
                            caller.close()

                    cost, rss_per_op = trio.run(queue_and_drain)
                    per_op.append(cost * 1e6)
                    if n == max(sizes):
                        memory = rss_per_op
        results[f"drain: {n:,} queued ops end to end, µs per op"] = _summary(per_op)
    if memory is not None:
        results[f"memory per queued op at {max(sizes):,}, KiB"] = {"median": memory / 1024, "min": None, "max": None}
    return results


async def _wait_released(rundir: Path) -> None:
    from pvfs2ctl.client import ControlClient

    with trio.fail_after(20):
        while True:
            async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
                if (await ctl.request("status"))["open_count"] == 0:
                    return
            await trio.sleep(0.05)


async def _wait_queued(rundir: Path, n: int) -> None:
    from pvfs2ctl.client import ControlClient

    with trio.fail_after(600):
        while True:
            async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
                if (await ctl.request("status"))["request_list"] >= n:
                    return
            await trio.sleep(0.05)


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@click.command()
@click.option("--runs", default=5, show_default=True, help="Timed runs per figure.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of one timed round-trip run.")
@click.option("--scale", "scale_sizes", default="10,1000,10000,100000", show_default=True,
              help="Queue lengths for the scale figure (comma-separated; empty to skip).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for the README).")
def main(runs: int, seconds: float, scale_sizes: str, as_json: bool, markdown: bool) -> None:
    """Round trips through the broker beside a raw trio ping-pong, and per-op cost by queue length."""
    results = {}
    results.update(round_trips(runs, seconds))
    results.update(pingpong(runs, seconds))
    sizes = [int(s) for s in scale_sizes.split(",") if s.strip()]
    if sizes:
        results.update(core_scale(sizes, runs))
        results.update(scale(sizes, max(1, min(runs, 3))))
    rt = results["round trip, 64 in flight"]["median"]
    ref = next(v["median"] for k, v in results.items() if k.startswith("reference"))
    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    summary = {"machine": machine, "runs": runs, "results": results, "ratio_64_vs_reference": rt / ref}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return

    def fmt(r):
        if r["min"] is None:
            return f"{r['median']:,.1f}"
        return f"{r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})" if r["median"] >= 100 else \
            f"{r['median']:,.1f} ({r['min']:,.1f}–{r['max']:,.1f})"

    if markdown:
        click.echo("| figure | median (min–max) |\n|---|---:|")
        for name, r in results.items():
            click.echo(f"| {name} | {fmt(r)} |")
        click.echo(f"| round trip at 64 ÷ reference at 32 | {rt / ref:.2f} |")
        return
    table = Table(title=f"broker — median of {runs} runs, {machine}")
    table.add_column("figure")
    table.add_column("median (min–max)", justify="right")
    for name, r in results.items():
        table.add_row(name, fmt(r))
    table.add_row("round trip at 64 ÷ reference at 32", f"{rt / ref:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
