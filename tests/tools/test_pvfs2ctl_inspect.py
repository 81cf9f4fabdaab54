"""``pvfs2ctl`` inspect and act commands against a running broker and client-core (issue 5, Inspect/Act/Errors).

Real processes: ``pvfs2dev serve`` and ``clientcore`` on an embedded store,
started once for the module in a run directory other users can reach (the
permission test runs ``pvfs2ctl`` as uid 65534), and always terminated.  The
CLI runs in process through click's CliRunner except where another uid is
needed.  Every wait is a short poll with a bounded deadline.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

import pvfs2proto as proto
from pvfs2ctl.cli import main
from pvfs2ctl.client import VfsClient
from pvfs2dev.recorder import decode_frame

from .stack import DEADLINE, control, fails, running_stack

NOBODY = 65534


# -- the stack -----------------------------------------------------------------------------------------


def _upcall_getattr(mount: dict) -> bytes:
    return proto.encode_upcall({"type": proto.OpCode.GETATTR,
                                "req": {"getattr": {"refn": {"khandle": mount["root"], "fs_id": mount["fs_id"]},
                                                    "mask": proto.AttrMask.ALL_NOHINT}}})


async def _mount_and_traffic(rundir: Path) -> dict:
    """Mount, GETATTR the root twice and LOOKUP a missing name (one ENOENT for the stats)."""
    async with VfsClient.connect(rundir / "pvfs2-vfs") as vfs:
        reply = await vfs.submit(proto.encode_upcall(
            {"type": proto.OpCode.FS_MOUNT,
             "req": {"fs_mount": {"orangefs_config_server": b"tcp://localhost:3334/pvfs2-fs"}}}))
        assert reply.result == 0
        mounted = proto.decode_downcall(reply.downcall, proto.OpCode.FS_MOUNT).resp.fs_mount
        mount = {"fs_id": mounted.fs_id, "root": mounted.root_khandle}
        for _ in range(2):
            assert (await vfs.submit(_upcall_getattr(mount))).result == 0
        reply = await vfs.submit(proto.encode_upcall(
            {"type": proto.OpCode.LOOKUP,
             "req": {"lookup": {"parent_refn": {"khandle": mounted.root_khandle, "fs_id": mounted.fs_id},
                                "d_name": b"no-such-name"}}}))
        assert reply.result == -errno.ENOENT
        return mount


class Stack:
    def __init__(self, rundir: Path, broker: subprocess.Popen, daemon: subprocess.Popen, mount: dict) -> None:
        self.rundir, self.broker, self.daemon, self.mount = rundir, broker, daemon, mount


@pytest.fixture(scope="module")
def stack():
    """A broker and a client-core in service with one mount, in a run directory uid 65534 can reach."""
    base = Path(tempfile.mkdtemp(prefix="pvfs2ctl-inspect-"))
    os.chmod(base, 0o755)
    try:
        with running_stack(base, open_to_others=True) as (run, broker, daemon):
            mount = trio.run(_mount_and_traffic, run)
            yield Stack(run, broker, daemon, mount)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ctl(stack):
    """``ctl(*args)``: run ``pvfs2ctl --rundir D ARGS`` in process; returns the click Result."""
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["--rundir", str(stack.rundir), *map(str, args)])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def ok_json(result):
    return json.loads(ok(result).stdout)


# -- inspect -------------------------------------------------------------------------------------------


def test_status_json_has_every_field(ctl, stack):
    """status --json carries client-core state, version, features, mounts, buffers, op counts and uptime."""
    reply = ok_json(ctl("status", "--json"))
    assert reply["ok"] is True
    assert {"open_count", "daemon_in_service", "userspace_version", "features", "mounts", "buffers",
            "ops_by_state", "request_list", "in_progress", "uptime"} <= reply.keys()
    assert reply["daemon_in_service"] is True and reply["open_count"] == 1
    assert [m["fs_id"] for m in reply["mounts"]] == [stack.mount["fs_id"]]
    assert [b["name"] for b in reply["buffers"]] == ["io", "readdir"]


def test_status_table_names_the_client_core_mount_and_slot_maps(ctl, stack):
    """status without --json renders the client-core line, the mount and both slot maps."""
    out = ok(ctl("status")).stdout
    assert "in service (open count 1)" in out
    assert str(stack.mount["fs_id"]) in out and "tcp://localhost:3334/pvfs2-fs" in out
    assert "...." in out and "1 MiB" in out


def test_mounts_json_and_table(ctl, stack):
    """mounts lists the mounted filesystem, as JSON and as a table."""
    reply = ok_json(ctl("mounts", "--json"))
    assert [(m["fs_id"], m["devname"], m["pending"]) for m in reply["mounts"]] == \
        [(stack.mount["fs_id"], "tcp://localhost:3334/pvfs2-fs", False)]
    assert str(stack.mount["fs_id"]) in ok(ctl("mounts")).stdout


def test_ops_top_and_status_show_an_op_the_stopped_client_core_holds(ctl, stack):
    """With the client-core stopped a GETATTR stays in flight: ops shows it and its filters select it, top
    and status count it, and it completes once the client-core resumes."""
    result: dict = {}

    def submit() -> None:
        async def go():
            async with VfsClient.connect(stack.rundir / "pvfs2-vfs") as vfs:
                result["reply"] = await vfs.submit(_upcall_getattr(stack.mount))

        trio.run(go)

    stack.daemon.send_signal(signal.SIGSTOP)
    worker = threading.Thread(target=submit)
    try:
        worker.start()
        deadline = time.monotonic() + DEADLINE
        while not (rows := ok_json(ctl("ops", "--json"))["ops"]):
            assert time.monotonic() < deadline, "the GETATTR never showed up"
            time.sleep(0.02)
        (row,) = rows
        assert {"tag", "op", "state", "state_names", "age", "attempts", "uid", "gid", "pid", "fs_id", "slot",
                "where"} <= row.keys()
        assert row["op"] == "OP_GETATTR" and row["fs_id"] == stack.mount["fs_id"]
        assert row["state_names"] in ("waiting", "inprogr")
        # The filters select it by its own state and type, and drop it otherwise.
        selected = ok_json(ctl("ops", "--json", "--state", row["state_names"], "--type", "getattr",
                               "--older-than", "0"))["ops"]
        assert [r["tag"] for r in selected] == [row["tag"]]
        assert ok_json(ctl("ops", "--json", "--state", "serviced|given_up"))["ops"] == []
        assert ok_json(ctl("ops", "--json", "--type", "OP_FILE_IO"))["ops"] == []
        assert ok_json(ctl("ops", "--json", "--older-than", "3600"))["ops"] == []
        table = ok(ctl("ops")).stdout
        assert "OP_GETATTR" in table and row["state_names"] in table and str(row["tag"]) in table
        assert re.search(r"\b\d+\.\d\b", table), "ages are shown with one decimal"
        status = ok_json(ctl("status", "--json"))
        assert sum(status["ops_by_state"].values()) == 1
        frame = ok(ctl("top", "--once", "--interval", "0.1")).stdout
        assert f"queue depth {status['request_list']}" in frame
        assert f"in progress {status['in_progress']}" in frame
    finally:
        stack.daemon.send_signal(signal.SIGCONT)
        worker.join(DEADLINE)
    assert not worker.is_alive() and result["reply"].result == 0


def test_ops_rejects_an_unknown_state_or_type(ctl):
    """A typo in --state or --type is a usage error (exit 2), not an empty table."""
    assert ctl("ops", "--state", "sleeping").exit_code == 2
    assert ctl("ops", "--type", "frobnicate").exit_code == 2


def test_buffers_json_table_and_hexdump(ctl):
    """buffers shows both slot maps; --dump SLOT --length N returns N bytes of the slot and a hexdump."""
    reply = ok_json(ctl("buffers", "--json"))
    assert [m["name"] for m in reply["maps"]] == ["io", "readdir"]
    assert {"count", "c", "busy", "waiters"} <= reply["maps"][0].keys()
    dumped = ok_json(ctl("buffers", "--dump", "1", "--length", "32", "--json"))
    assert len(base64.b64decode(dumped["dump"])) == 32
    out = ok(ctl("buffers", "--dump", "1", "--length", "32")).stdout
    assert re.search(r"^00000000  ([0-9a-f]{2} ){8} ([0-9a-f]{2} ){7}[0-9a-f]{2}  \|.{16}\|$", out, re.M), out
    assert re.search(r"^00000020$", out, re.M)
    assert "waiters" in out and "...." in out


def test_buffers_dump_of_a_missing_slot_is_one_einval_line(ctl):
    """--dump of a slot the map does not have fails with one EINVAL line."""
    fails(ctl("buffers", "--dump", "999"), "EINVAL")


def test_stats_json_and_tables(ctl):
    """stats counts ops by type, errors by errno name and has a latency histogram."""
    reply = ok_json(ctl("stats", "--json"))
    assert {"ops", "buckets", "reads", "writes", "device_opens"} <= reply.keys()
    assert reply["ops"]["OP_GETATTR"]["count"] >= 2
    assert reply["ops"]["OP_LOOKUP"]["errors"] == {"ENOENT": 1}
    out = ok(ctl("stats")).stdout
    assert "OP_GETATTR" in out and "ENOENT" in out and "latency histogram" in out and "█" in out


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def test_stats_prometheus_is_valid_exposition_text(ctl):
    """--prometheus prints counters with _total and cumulative histograms ending at +Inf == _count."""
    text = ok(ctl("stats", "--prometheus")).stdout
    types: dict[str, str] = {}
    samples: list[tuple[str, dict, float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif not line.startswith("# "):
            m = _SAMPLE.match(line)
            assert m, line
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    assert all(name.endswith("_total") for name, kind in types.items() if kind == "counter")
    hist = [n for n, k in types.items() if k == "histogram"]
    assert hist == ["pvfs2dev_op_latency_seconds"]
    getattr_buckets = [(lab["le"], v) for n, lab, v in samples
                       if n == "pvfs2dev_op_latency_seconds_bucket" and lab["op"] == "OP_GETATTR"]
    values = [v for _, v in getattr_buckets]
    assert values == sorted(values) and getattr_buckets[-1][0] == "+Inf"
    (count,) = [v for n, lab, v in samples if n == "pvfs2dev_op_latency_seconds_count" and lab["op"] == "OP_GETATTR"]
    assert values[-1] == count >= 2
    assert ("pvfs2dev_op_errors_total", {"op": "OP_LOOKUP", "errno": "ENOENT"}, 1.0) in samples
    assert ctl("stats", "--prometheus", "--json").exit_code == 2


def test_trace_streams_and_records_transitions(ctl, stack, tmp_path):
    """trace --count N prints N lines 'time tag op event before -> after' and --json prints JSON lines; with
    --record FILE (issue 7) FILE gets a header line, then each upcall and downcall with its bytes, until N
    downcalls are recorded, while the transitions still go to standard output."""
    stop = threading.Event()

    def traffic() -> None:
        async def go():
            async with VfsClient.connect(stack.rundir / "pvfs2-vfs") as vfs:
                while not stop.is_set():
                    await vfs.submit(_upcall_getattr(stack.mount))
                    await trio.sleep(0.02)

        trio.run(go)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        lines = ok(ctl("trace", "--count", "4")).stdout.splitlines()
        assert len(lines) == 4
        for line in lines:
            assert re.fullmatch(r"\d+\.\d{6} \d+ OP_\w+ \w+ [\w|]+ -> [\w|]+", line), line
        as_json = [json.loads(line) for line in ok(ctl("trace", "--count", "2", "--json")).stdout.splitlines()]
        assert len(as_json) == 2 and all({"time", "tag", "op", "event", "before", "after"} <= e.keys()
                                         for e in as_json)

        record = tmp_path / "trace.jsonl"
        out = ok(ctl("trace", "--count", "4", "--record", record)).stdout
        for line in out.splitlines():
            assert re.fullmatch(r"\d+\.\d{6} \d+ OP_\w+ \w+ [\w|]+ -> [\w|]+", line), line
        header, *records = [json.loads(line) for line in record.read_text().splitlines()]
        assert header["format"] == "pvfs2dev-recording" and header["version"] == 1
        assert header["io_slots"] == {"count": 4, "size": 1 << 20}
        assert header["mounts"][0]["fs_id"] == stack.mount["fs_id"]
        assert header["mounts"][0]["root"] == stack.mount["root"].hex()
        assert [r["event"] for r in records].count("downcall") == 4 and records[-1]["event"] == "downcall"
        for r in records:
            assert r["op"] == "OP_GETATTR" and r["event"] in ("upcall", "downcall") and r["t"] >= 0
            frame = decode_frame(r)
            if r["event"] == "upcall":
                assert proto.decode_read_frame(frame).tag == r["tag"]
            else:
                assert r["result"] == len(frame) == proto.MAX_DEV_REQ_DOWNSIZE
    finally:
        stop.set()
        worker.join(DEADLINE)


def test_top_once_renders_one_frame(ctl):
    """top --once prints one frame: queue depth, in progress, slot use, restarts and a row per op type."""
    frame = ok(ctl("top", "--once", "--interval", "0.1")).stdout
    for text in ("queue depth", "in progress", "io slots", "readdir slots", "client-core restarts 0", "ops/s",
                 "OP_GETATTR", "p50", "p99"):
        assert text in frame, (text, frame)


# -- act -----------------------------------------------------------------------------------------------


def test_params_list_get_and_set(ctl):
    """params lists every knob, a set prints the new value, and a get (plain or --json) reads it back."""
    listed = ok_json(ctl("params", "--json"))["params"]
    names = {p["name"] for p in listed}
    assert {"op_timeout_secs", "acache/timeout_msecs", "readahead_count_size", "stats/reads"} <= names
    assert "op_timeout_secs" in ok(ctl("params")).stdout
    try:
        assert ok(ctl("params", "op_timeout_secs", "25")).stdout == "25\n"
        assert ok(ctl("params", "op_timeout_secs")).stdout == "25\n"
        assert ok_json(ctl("params", "op_timeout_secs", "--json")) == \
            {"ok": True, "name": "op_timeout_secs", "value": "25\n"}
    finally:
        ok(ctl("params", "op_timeout_secs", "20"))
    # A daemon-backed knob goes through a PARAM upcall both ways.
    assert ok(ctl("params", "acache/timeout_msecs", "1234")).stdout == "1234\n"
    assert ok(ctl("params", "acache/timeout_msecs")).stdout == "1234\n"
    # readahead_count_size takes two values.
    assert ok(ctl("params", "readahead_count_size", "4", "65536")).stdout == "4 65536\n"


def test_params_unknown_name_is_one_enoent_line(ctl):
    """A knob sysfs does not have fails with one ENOENT line and exit 1."""
    line = fails(ctl("params", "no_such_knob"), "ENOENT")
    assert "no_such_knob" in line


def test_params_bad_values_are_einval(ctl):
    """Unparsable and out-of-range values are refused with EINVAL, like the sysfs store."""
    fails(ctl("params", "op_timeout_secs", "soon"), "EINVAL")
    fails(ctl("params", "acache/reclaim_percentage", "101"), "EINVAL")
    fails(ctl("params", "acache/hard_limit", "-1"), "EINVAL")


def _as_uid(uid: int, rundir: Path, *args: str) -> tuple[int, str, str]:
    """Run ``pvfs2ctl --rundir rundir ARGS`` in a forked child as ``uid``: (exit code, stdout, stderr).

    A fork rather than an exec: the interpreter may live where that uid cannot
    read it, and the broker only looks at the socket peer's credentials.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 70
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            result = CliRunner().invoke(main, ["--rundir", str(rundir), *args])
            with os.fdopen(write_end, "w") as out:
                json.dump([result.exit_code, result.stdout, result.stderr], out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the child as another uid failed"
    exit_code, stdout, stderr = json.loads(data)
    return exit_code, stdout, stderr


def test_another_user_may_read_but_not_change(stack):
    """uid 65534 reads a knob and the status, but its set is refused with one EPERM line and exit 1."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    assert _as_uid(NOBODY, stack.rundir, "params", "op_timeout_secs")[:2] == (0, "20\n")
    code, stdout, _ = _as_uid(NOBODY, stack.rundir, "status", "--json")
    assert code == 0 and json.loads(stdout)["daemon_in_service"] is True
    for args in (("params", "op_timeout_secs", "30"), ("debug", "kernel", "all"), ("fault", "pause-reads"),
                 ("fault", "hold-slots")):
        code, _, stderr = _as_uid(NOBODY, stack.rundir, *args)
        assert code == 1, stderr
        assert stderr.startswith("pvfs2ctl: EPERM: ") and stderr.count("\n") == 1, stderr
    assert control(stack.rundir, "params", name="op_timeout_secs")["value"] == "20\n"
    assert control(stack.rundir, "debug", which="kernel")["value"] == "none"


def test_fault_hold_and_release_slots_and_pause_reads(ctl, stack):
    """pvfs2ctl fault: hold-slots takes free slots (shown by buffers and fault show), release-slots gives them
    back; pause-reads / resume-reads toggle the device's reads; every change is visible in status."""
    try:
        held = ok_json(ctl("fault", "hold-slots", "--map", "readdir", "--count", "2", "--json"))
        assert held["taken"] == [0, 1] and held["faults"]["held_slots"]["readdir"] == [0, 1]
        assert "readdir slots held" in ok(ctl("fault", "show")).stdout
        busy = ok_json(ctl("buffers", "--json"))["maps"][1]["busy"]
        assert busy == [0, 1]
        assert "released 2 slots" in ok(ctl("fault", "release-slots")).stdout
        assert "reads paused" in ok(ctl("fault", "pause-reads")).stdout
        assert ok_json(ctl("status", "--json"))["faults"]["reads_paused"] is True
    finally:
        ok(ctl("fault", "resume-reads"))
        ok(ctl("fault", "release-slots"))
    assert ok_json(ctl("fault", "show", "--json"))["faults"] == {
        "reads_paused": False, "held_slots": {"io": [], "readdir": []}}


def test_fault_interrupt_of_an_unknown_tag_is_one_esrch_line(ctl):
    """Interrupting a tag no op has fails with one ESRCH line and exit 1; a bad tag is a usage error."""
    fails(ctl("fault", "interrupt", "999999999"), "ESRCH")
    assert ctl("fault", "interrupt", "soon").exit_code == 2


def test_debug_kernel_and_client_masks(ctl):
    """debug shows and sets the kernel and client debugfs masks by keyword."""
    try:
        assert ok(ctl("debug", "kernel", "file,inode")).stdout == "inode,file\n"
        assert ok_json(ctl("debug", "kernel", "--json")) == {"ok": True, "which": "kernel", "value": "inode,file"}
    finally:
        assert ok(ctl("debug", "kernel", "none")).stdout == "none\n"
    client = ok_json(ctl("debug", "client", "--json"))
    assert client["which"] == "client" and "ops" in client["keywords"]
    try:
        assert ok(ctl("debug", "client", "ops")).stdout == "ops\n"
    finally:
        ok(ctl("debug", "client", "none"))
    assert ctl("debug", "nothing").exit_code == 2


def test_perf_counters(ctl):
    """perf acache|ncache|capcache prints the client-core's PERF_COUNT text, or the reply with --json."""
    for kind in ("acache", "ncache", "capcache"):
        reply = ok_json(ctl("perf", kind, "--json"))
        assert reply["type"] == kind and isinstance(reply["text"], str)
        assert ok(ctl("perf", kind)).stdout.endswith("\n")


# -- errors --------------------------------------------------------------------------------------------


def test_no_broker_is_one_line_naming_the_socket_and_exit_1(tmp_path):
    """With no broker, each command prints one line with the socket path it tried and how to start one."""
    for args in (("status",), ("stats", "--json"), ("trace", "--count", "1"), ("top", "--once"), ("params",)):
        result = CliRunner().invoke(main, ["--rundir", str(tmp_path), *args])
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(tmp_path / "pvfs2-ctl") in lines[0] and f"pvfs2dev serve --rundir {tmp_path}" in lines[0]
        assert "Traceback" not in result.output
