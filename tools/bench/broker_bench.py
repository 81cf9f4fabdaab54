"""Broker benchmark: round trips through the emulated device, beside raw and trio ping-pongs.

    python -m tools.bench.broker_bench [--runs 5] [--seconds 1] [--scale 10,1000,100000] [--json | --markdown]

Figures, each the median of ``--runs`` timed runs after a warm-up (min–max):

* **round trip**: GETATTR ops/s, VFS caller → broker → minimal client-core →
  broker → caller, three processes, with 1 and with 64 ops in flight.  The
  caller keeps its ops in flight with non-blocking socket calls in one trio
  task; the client-core is ``clientcore.minimal`` (answers every op at once).
* **references**, at the same concurrency: messages/s of a ping-pong over
  SOCK_SEQPACKET between two Python processes, with messages the size of one
  VFS request (8544 bytes) — *raw*, blocking socket calls and nothing else,
  the floor of any Python design; and *trio*, written the plain trio way
  (``await sock.send`` / ``await sock.recv``), what the broker's framework
  costs by itself.
* **queued** (scale): the per-op cost end to end with N GETATTRs queued.
  Reads are paused (``pvfs2ctl fault pause-reads``) while N ops are submitted,
  then resumed; the caller submits a new op for every reply, so the request
  list stays N long, and a run times ``--scale-ops`` replies.  Flat across N
  means no list scan anywhere on the path.  Also the broker's resident memory
  per queued op (from /proc, at the largest N).
* **core**: the same for the kernel core alone (``pvfs2dev.kernel``, no
  sockets, no other process): N ops queued, then submit + device read +
  device write per op — the calls every op makes, without the wake-ups.
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
    """``pvfs2dev serve`` in ``rundir`` until its sockets are all bound; stopped afterwards."""
    proc = subprocess.Popen([PY, "-m", "pvfs2dev.cli", "serve", "--rundir", str(rundir), "--log-level", "warning",
                             *extra], stdin=subprocess.DEVNULL)
    try:
        _wait_for(rundir / "pvfs2-ctl", proc)  # bound last of the three sockets
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def client_core(rundir: Path):
    """``clientcore.minimal`` on the broker in ``rundir``; stopped afterwards."""
    proc = subprocess.Popen([PY, "-m", "clientcore.minimal", "--rundir", str(rundir), "--desc-count", "4",
                             "--desc-size", str(1 << 20)], stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers: a benchmark leaves no process behind."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(path: Path, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited {proc.returncode} before {path} appeared")
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


async def _control(rundir: Path, cmd: str, **fields) -> dict:
    from pvfs2ctl.client import ControlClient

    async with ControlClient.connect(rundir / "pvfs2-ctl") as ctl:
        return await ctl.request(cmd, **fields)


async def _wait_in_service(rundir: Path) -> None:
    with trio.fail_after(20):
        while True:
            status = await _control(rundir, "status")
            if status["daemon_in_service"] and not any(m["pending"] for m in status["mounts"]):
                return
            await trio.sleep(0.05)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def minimal_stack(*extra: str, base_dir: str | None = None):
    """A broker and the minimal client-core in a new temporary directory (in ``base_dir``): yields (run
    directory, broker)."""
    with tempfile.TemporaryDirectory(prefix="pvfs2bench-", dir=base_dir) as tmp:
        rundir = Path(tmp)
        with broker(rundir, *extra) as proc, client_core(rundir):
            yield rundir, proc


async def mounted_caller(rundir: Path, caller_class: type[Caller] = Caller) -> Caller:
    """A caller on ``rundir``'s VFS channel once the client-core is in service, after FS_MOUNT."""
    await _wait_in_service(rundir)
    caller = caller_class(rundir / "pvfs2-vfs")
    try:
        if await caller.call(MOUNT) != 0:
            raise RuntimeError("FS_MOUNT failed")
    except BaseException:
        caller.close()
        raise
    return caller


# --- the figures ---------------------------------------------------------------------------------


async def round_trip_rates(caller: Caller, inflight: int, runs: int, seconds: float,
                           upcall: bytes = GETATTR) -> list[float]:
    """Ops/s of ``runs`` timed runs of ``seconds`` with ``inflight`` ops in flight, after a warm-up run."""
    await caller.run(inflight, seconds / 2, upcall)
    return [await caller.run(inflight, seconds, upcall) for _ in range(runs)]


def round_trips(runs: int, seconds: float, inflights: tuple[int, ...] = (1, 64),
                base_dir: str | None = None) -> dict[int, list[float]]:
    """{in flight: ops/s per run} through a broker and the minimal client-core."""
    with minimal_stack(base_dir=base_dir) as (rundir, _):

        async def measure() -> dict[int, list[float]]:
            caller = await mounted_caller(rundir)
            try:
                return {n: await round_trip_rates(caller, n, runs, seconds) for n in inflights}
            finally:
                caller.close()

        return trio.run(measure)


#: One message of the ping-pongs: the size of one VFS request (u32 flags, u32 kind, u64 req_id, the upcall).
PINGPONG_MESSAGE = VFS_REQUEST.size + len(GETATTR)
#: Both ends raise their buffers, as the broker's channels do: 64 messages of 8544 bytes in flight
#: would not fit the default 208 KiB, and blocking senders on both ends would wait for each other.
PINGPONG_BUFFER = 4 << 20

_PINGPONG_SETUP = r"""
import socket, sys
path, size = sys.argv[1], int(sys.argv[2])
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(path)
listener.listen()
"""

#: The raw server: blocking calls, one connection after another.
RAW_SERVER = _PINGPONG_SETUP + r"""
print("ready", flush=True)
while True:
    sock, _ = listener.accept()
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    recv, send = sock.recv, sock.send
    while True:
        data = recv(65536)
        if not data:
            break
        send(data)
    sock.close()
"""

#: The trio server: the plain trio way, one connection after another.
TRIO_SERVER = _PINGPONG_SETUP + r"""
import trio
async def main():
    tlistener = trio.socket.from_stdlib_socket(listener)
    print("ready", flush=True)
    while True:
        sock, _ = await tlistener.accept()
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        while True:
            data = await sock.recv(65536)
            if not data:
                break
            await sock.send(data)
        sock.close()
trio.run(main)
"""


def _raw_run(path: str, inflight: int, seconds: float) -> float:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, PINGPONG_BUFFER)
        sock.connect(path)
        message, recv, send, clock = bytes(PINGPONG_MESSAGE), sock.recv, sock.send, time.perf_counter
        for _ in range(inflight):
            send(message)
        done, start = 0, clock()
        end = start + seconds
        while True:
            recv(65536)
            done += 1
            if not done & 63 and clock() >= end:  # the clock is read every 64 messages: it costs as much as one
                break
            send(message)
        elapsed = clock() - start
        for _ in range(inflight - 1):
            recv(65536)
        return done / elapsed
    finally:
        sock.close()


async def _trio_run(path: str, inflight: int, seconds: float) -> float:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with sock:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, PINGPONG_BUFFER)
        await sock.connect(path)
        message = bytes(PINGPONG_MESSAGE)
        for _ in range(inflight):
            await sock.send(message)
        done, start = 0, time.perf_counter()
        end = start + seconds
        while True:
            await sock.recv(65536)
            done += 1
            if time.perf_counter() >= end:
                break
            await sock.send(message)
        elapsed = time.perf_counter() - start
        for _ in range(inflight - 1):
            await sock.recv(65536)
        return done / elapsed


def pingpong(flavor: str, runs: int, seconds: float, inflights: tuple[int, ...] = (1, 64),
             base_dir: str | None = None) -> dict[int, list[float]]:
    """{in flight: messages/s per run} of the ``raw`` or ``trio`` ping-pong between two processes."""
    server_code = {"raw": RAW_SERVER, "trio": TRIO_SERVER}[flavor]
    with tempfile.TemporaryDirectory(prefix="pvfs2bench-", dir=base_dir) as tmp:
        path = os.path.join(tmp, "pp")
        server = subprocess.Popen([PY, "-c", server_code, path, str(PINGPONG_BUFFER)], stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        try:
            if server.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the {flavor} ping-pong server did not start")

            def one(inflight: int, duration: float) -> float:
                if flavor == "raw":
                    return _raw_run(path, inflight, duration)
                return trio.run(_trio_run, path, inflight, duration)

            out = {}
            for inflight in inflights:
                one(inflight, seconds / 2)  # warm-up
                out[inflight] = [one(inflight, seconds) for _ in range(runs)]
            return out
        finally:
            stop(server)
            server.stdout.close()


def core_costs(sizes: list[int], runs: int, ops: int) -> dict[int, list[float]]:
    """{N: µs per op of the kernel core alone} with N ops queued: submit + device read + device write per op.

    No sockets and no other processes: this shows the core's structures stay
    O(1) as the request list grows.  The list is filled once; each timed op
    then reads the head, completes it and submits one more, so it stays N long.
    """
    from clientcore.minimal import reply_for
    from pvfs2dev.kernel import Kernel

    out = {}
    for n in sorted(sizes):
        k = Kernel(op_timeout_secs=3600)
        k.dev_open(os.O_RDWR | os.O_NONBLOCK, 0.0)
        k.add_mount(7, 1, b"tcp://localhost:3334/pvfs2-fs")
        new_op, service, read, write = k.new_op, k.service, k.dev_read, k.dev_write
        for _ in range(n):
            service(new_op(GETATTR, now=0.0), 0.0)
        per_op = []
        for run in range(runs + 1):  # the first run warms up and is not counted
            start = time.perf_counter()
            for _ in range(ops):
                write(reply_for(read(proto.MAX_DEV_REQ_UPSIZE, 1.0)), 1.0)
                service(new_op(GETATTR, now=1.0), 1.0)
            elapsed = time.perf_counter() - start
            if run:
                per_op.append(elapsed / ops * 1e6)
        for _ in range(n):
            write(reply_for(read(proto.MAX_DEV_REQ_UPSIZE, 1.0)), 1.0)
        if k.live:
            raise RuntimeError("ops left in flight in the kernel core")
        out[n] = per_op
    return out


async def queued_costs(caller: Caller, rundir: Path, broker_pid: int, sizes: list[int], runs: int,
                       ops: int) -> tuple[dict[int, list[float]], float]:
    """{N: µs per op end to end with N ops queued}, and the broker's bytes per queued op at the largest N.

    Reads are paused while the N ops go in, so they wait on the request list;
    then every reply is answered with a new submit, so the list stays N long
    while ``ops`` replies are timed.  Sizes go smallest first and each is
    drained before the next, except the largest: the caller leaves it to the
    broker to give up on (closing the caller, or stopping the broker).
    """
    out, memory = {}, 0.0
    sizes = sorted(sizes)
    for n in sizes:
        await _control(rundir, "fault", action="pause-reads")
        before = rss_bytes(broker_pid)
        for first in range(0, n, 1000):  # in batches: 100,000 upcalls are 850 MB
            caller.send(GETATTR, min(1000, n - first))
        await _wait_queued(rundir, n)
        memory = (rss_bytes(broker_pid) - before) / n
        await _control(rundir, "fault", action="resume-reads")
        per_op = []
        for run in range(runs + 1):  # the first run warms up and is not counted
            done, start = 0, time.perf_counter()
            while done < ops:
                results = await caller.replies()
                if any(results):
                    raise RuntimeError(f"GETATTR failed: {results}")
                done += len(results)
                caller.send(GETATTR, len(results))
            if run:
                per_op.append((time.perf_counter() - start) / done * 1e6)
        out[n] = per_op
        if n != sizes[-1]:
            outstanding = n
            while outstanding > 0:
                outstanding -= len(await caller.replies())
    return out, memory


def scale(sizes: list[int], runs: int, ops: int,
          base_dir: str | None = None) -> tuple[dict[int, list[float]], float]:
    """:func:`queued_costs` on a broker and the minimal client-core of their own."""
    with minimal_stack(base_dir=base_dir) as (rundir, proc):

        async def measure():
            caller = await mounted_caller(rundir)
            try:
                return await queued_costs(caller, rundir, proc.pid, sizes, runs, ops)
            finally:
                caller.close()

        return trio.run(measure)


async def _wait_queued(rundir: Path, n: int) -> None:
    with trio.fail_after(600):
        while (await _control(rundir, "status"))["request_list"] < n:
            await trio.sleep(0.05)


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@click.command()
@click.option("--runs", default=5, show_default=True, help="Timed runs per figure.")
@click.option("--seconds", default=1.0, show_default=True, help="Length of one timed round-trip run.")
@click.option("--scale", "scale_sizes", default="10,1000,100000", show_default=True,
              help="Queue lengths for the scale figures (comma-separated; empty to skip).")
@click.option("--scale-ops", default=20000, show_default=True, help="Replies timed per scale run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for the README).")
def main(runs: int, seconds: float, scale_sizes: str, scale_ops: int, as_json: bool, markdown: bool) -> None:
    """Round trips through the broker beside raw and trio ping-pongs, and per-op cost by queue length."""
    results = {}
    for n, rates in round_trips(runs, seconds).items():
        results[f"round trip, {n} in flight, ops/s"] = _summary(rates)
    for flavor in ("raw", "trio"):
        for n, rates in pingpong(flavor, runs, seconds).items():
            results[f"reference: {flavor} SEQPACKET ping-pong, {n} in flight, msg/s"] = _summary(rates)
    sizes = [int(s) for s in scale_sizes.split(",") if s.strip()]
    memory = None
    if sizes:
        for n, costs in core_costs(sizes, runs, scale_ops).items():
            results[f"core: submit+read+write with {n:,} queued, µs per op"] = _summary(costs)
        costs_by_n, memory = scale(sizes, runs, scale_ops)
        for n, costs in costs_by_n.items():
            results[f"end to end with {n:,} queued, µs per op"] = _summary(costs)
    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    if as_json:
        click.echo(json.dumps({"machine": machine, "runs": runs, "results": results,
                               "memory_per_queued_op_bytes": memory}, indent=2))
        return

    def fmt(r):
        return f"{r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})" if r["median"] >= 100 else \
            f"{r['median']:,.1f} ({r['min']:,.1f}–{r['max']:,.1f})"

    rows = [(name, fmt(r)) for name, r in results.items()]
    if memory is not None:
        rows.append((f"broker memory per queued op at {max(sizes):,}, KiB", f"{memory / 1024:.1f}"))
    if markdown:
        click.echo("| figure | median (min–max) |\n|---|---:|")
        for name, cell in rows:
            click.echo(f"| {name} | {cell} |")
        return
    table = Table(title=f"broker — median of {runs} runs, {machine}")
    table.add_column("figure")
    table.add_column("median (min–max)", justify="right")
    for name, cell in rows:
        table.add_row(name, cell)
    Console().print(table)


if __name__ == "__main__":
    main()
