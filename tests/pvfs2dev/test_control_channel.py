"""The control channel (``pvfs2-ctl``): JSON lines over the real socket (DESIGN.md "Processes and sockets", spec §6).

Views (status, ops, buffers, mounts, stats) carry the fields spec §6.4
suggests; params behave as the sysfs files of §6.1; trace streams state
transitions; malformed requests get EINVAL and leave the connection usable.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import types
from pathlib import Path

import pytest
import trio

import pvfs2proto as proto
from pvfs2ctl.client import ControlClient, VfsClient
from pvfs2dev.server import Config, Server
from pvfs2proto import OpCode, OpState, ParamOp, ParamRequestType
from pvfs2proto.constants import PVFS2DEV_USERSPACE_VERSION
from pvfs2proto.upcall import value32_pair, value64_of

from .live import (
    ROOT,
    DEVNAME,
    FS_ID,
    HandCore,
    MiB,
    control,
    ctl_path,
    getattr_upcall,
    mount_by_hand,
    read_upcall,
    status,
    status_of,
    vfs_path,
    wait_for,
)

KiB = 1024


def assert_error(reply: dict, err: int) -> None:
    assert reply["ok"] is False, reply
    assert reply["errno"] == err, reply
    assert reply["error"] == errno.errorcode[err]


async def with_param_upcall(rundir, core: HandCore, request: dict, answer) -> tuple[dict, list]:
    """Send a control request that needs the client-core; ``answer(core, frame)`` answers each PARAM upcall.

    Returns the control reply and the decoded PARAM upcalls seen.
    """
    seen = []

    async def answering():
        while True:
            frame = await core.next_frame(timeout=float("inf"))
            seen.append(frame)
            await answer(core, frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answering)
        reply = await control(rundir, **request)
        nursery.cancel_scope.cancel()
    return reply, seen


# -- views ------------------------------------------------------------------------------------------------------


async def test_mounts_lists_no_fuse_mountpoint_for_a_kernel_only_mount(broker, rundir):
    """Spec §6.4: a mount made through the VFS channel is listed with its root; it has no FUSE mountpoint."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            (m,) = (await control(rundir, "mounts"))["mounts"]
            assert m["mountpoint"] is None and m["root"] == ROOT.hex()


# -- FUSE mount and umount requests (their errors; the mount itself is in tests/fuse) ---------------------------


async def test_mounts_shows_the_fuse_mountpoint_after_a_remount_changed_the_id(broker, rundir, tmp_path):
    """Spec §5.3: REMOUNT_ALL stores the new id the client-core gives; the FUSE mount of that fs is unchanged,
    so the mount is still listed with its mountpoint (matched by fs_id, not by the id it was mounted with)."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=2, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            (m,) = (await control(rundir, "mounts"))["mounts"]
            # A FUSE front end that mounted this fs under an id the kernel has since replaced.
            front = types.SimpleNamespace(fs_mounted=True, mountpoint=tmp_path,
                                          ops=types.SimpleNamespace(fs_id=m["fs_id"], mount_id=m["id"] + 1))
            broker.mounts.current = front
            try:
                (listed,) = (await control(rundir, "mounts"))["mounts"]
                assert listed["mountpoint"] == str(tmp_path)
            finally:
                broker.mounts.current = None


@pytest.mark.parametrize("fields", [{}, {"mountpoint": ""}, {"mountpoint": 5}, {"mountpoint": "/", "fsname": 3},
                                    {"mountpoint": "/", "options": "ro"}, {"mountpoint": "/", "options": [1]}])
async def test_mount_request_with_bad_fields_is_einval(broker, rundir, fields):
    """A mount request needs a mountpoint string, a device string and a list of option strings: else EINVAL."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "mount", **fields), errno.EINVAL)


async def test_mount_on_a_missing_directory_is_enoent_and_on_a_file_enotdir(broker, rundir, tmp_path):
    """mount(2): ENOENT for a mountpoint that does not exist, ENOTDIR for one that is not a directory; no FS_MOUNT is sent."""
    (tmp_path / "file").write_text("")
    with trio.fail_after(10):
        assert_error(await control(rundir, "mount", mountpoint=str(tmp_path / "nothing")), errno.ENOENT)
        assert_error(await control(rundir, "mount", mountpoint=str(tmp_path / "file")), errno.ENOTDIR)
        assert "OP_FS_MOUNT" not in (await control(rundir, "stats"))["ops"]


async def test_mount_with_a_bad_device_string_is_einval(broker, rundir, tmp_path):
    """orangefs_mount: a device string that is empty-ish, too long or holds a comma (it would split the FUSE options) is EINVAL."""
    with trio.fail_after(10):
        for fsname in ("x" * 300, "tcp://a,b/fs"):
            assert_error(await control(rundir, "mount", mountpoint=str(tmp_path), fsname=fsname), errno.EINVAL)


async def test_umount_of_something_not_mounted_is_einval(broker, rundir, tmp_path):
    """umount(2) of a directory that is not a mount of ours: EINVAL."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "umount", mountpoint=str(tmp_path)), errno.EINVAL)
        assert_error(await control(rundir, "umount"), errno.EINVAL)


async def test_mount_with_no_client_core_fails_etimedout_after_op_timeout(rundir, nursery, tmp_path, autojump_clock):
    """Spec §4.1 (op_timeout_secs): ``pvfs2dev mount`` is mount(2): one FS_MOUNT, ETIMEDOUT when no client-core answers in time."""
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    await nursery.start(Server(Config(rundir=rundir / "run", op_timeout_secs=3)).run)
    with trio.fail_after(30):
        start = trio.current_time()
        assert_error(await control(rundir / "run", "mount", mountpoint=str(mountpoint)), errno.ETIMEDOUT)
        assert trio.current_time() - start >= 3
        assert (await control(rundir / "run", "mounts"))["mounts"] == []


async def test_status_before_any_client_core(broker, rundir):
    """Spec §1.2, §5.2, §6.4: with no client-core the daemon is out of service (open count 0), no version or features, no buffer (c = -1)."""
    with trio.fail_after(10):
        s = await status(rundir)
        assert s["ok"] is True
        assert s["open_count"] == 0 and s["daemon_in_service"] is False
        assert s["userspace_version"] == 0 and s["features"] == 0
        assert s["mounts"] == []
        assert [(m["name"], m["c"], m["busy"], m["waiters"]) for m in s["buffers"]] == [
            ("io", -1, [], 0), ("readdir", -1, [], 0)]
        assert (s["request_list"], s["in_progress"], s["ops_by_state"]) == (0, 0, {})
        assert s["uptime"] >= 0


async def test_status_with_a_client_core_and_a_mount(broker, rundir):
    """Spec §6.4: status shows open count 1, the recorded userspace version, the features bitmask, mounts, both slot maps and op counts by state."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=3, size=1 * MiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs, features=proto.Features.READAHEAD)
            s = await status(rundir)
            assert s["open_count"] == 1 and s["daemon_in_service"] is True
            assert s["userspace_version"] == PVFS2DEV_USERSPACE_VERSION
            assert s["features"] == proto.Features.READAHEAD
            assert s["mounts"] == [{"fs_id": FS_ID, "id": 1, "devname": DEVNAME.decode(), "root": ROOT.hex(), "pending": False, "mountpoint": None}]
            io, readdir = s["buffers"]
            assert (io["name"], io["count"], io["c"], io["busy"], io["slot_size"]) == ("io", 3, 3, [], 1 * MiB)
            assert (readdir["name"], readdir["count"], readdir["c"], readdir["slot_size"]) == (
                "readdir", 5, 5, 128 * KiB)
            # One op in progress, one waiting.
            first = await vfs.send_submit(1, getattr_upcall())
            frame = await core.next_frame()
            second = await vfs.send_submit(2, getattr_upcall())
            s = await wait_for(rundir, lambda s: s["request_list"] == 1)
            assert s["in_progress"] == 1
            assert s["ops_by_state"] == {"inprogr": 1, "waiting": 1}
            await core.auto(frame)
            await core.auto(await core.next_frame())
            assert (await first.wait()).result == 0 and (await second.wait()).result == 0
            assert (await status(rundir))["mounts"] == (await control(rundir, "mounts"))["mounts"]


async def test_ops_shows_the_per_op_fields(broker, rundir):
    """Spec §6.4: per op — tag, type name, state value and names, attempts, uid/gid/pid/tgid, fs_id, slot, queue position or bucket (tag mod 509), age."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            io_pending = await vfs.send_submit(1, read_upcall(4096, 0))
            io = await core.next_frame()
            g1 = await vfs.send_submit(2, getattr_upcall(uid=1000, gid=100))
            g2 = await vfs.send_submit(3, getattr_upcall(uid=1001, gid=101))
            await wait_for(rundir, lambda s: s["request_list"] == 2)
            await trio.sleep(0.05)
            rows = (await control(rundir, "ops"))["ops"]
            assert [r["tag"] for r in rows] == sorted(r["tag"] for r in rows)
            by_tag = {r["tag"]: r for r in rows}
            io_row = by_tag[io.tag]
            assert io_row["op"] == "OP_FILE_IO"
            assert io_row["state"] == OpState.INPROGR and io_row["state_names"] == "inprogr"
            assert io_row["slot"] == io.upcall.req.io.buf_index
            assert io_row["where"] == f"bucket:{io.tag % 509}"
            assert io_row["fs_id"] == FS_ID and io_row["attempts"] == 0 and io_row["cancel"] is False
            waiting = [r for r in rows if r["op"] == "OP_GETATTR"]
            assert [r["where"] for r in waiting] == ["request:0", "request:1"]
            assert [(r["uid"], r["gid"]) for r in waiting] == [(1000, 100), (1001, 101)]
            assert all(r["pid"] == r["tgid"] == os.getpid() for r in rows)
            assert all(r["state"] == OpState.WAITING and r["slot"] is None for r in waiting)
            assert all(r["age"] >= 0.05 for r in rows)
            for _ in range(2):
                await core.auto(await core.next_frame())
            await core.reply(io, resp={"io": {"amt_complete": 0}})
            for pending in (io_pending, g1, g2):
                assert (await pending.wait()).result == 0


async def test_buffers_shows_counter_busy_slots_and_waiters(broker, rundir):
    """Spec §5.2, §6.4: the slot maps show c, the busy slots and the waiters; dump reads a slot (EINVAL out of range)."""
    with trio.fail_after(10):
        async with HandCore.start(rundir, count=1, size=64 * KiB) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            first = await vfs.send_submit(1, read_upcall(4096, 0))
            io = await core.next_frame()
            second = await vfs.send_submit(2, read_upcall(4096, 0))
            reply = await wait_for(rundir, lambda r: r["maps"][0]["waiters"] == 1, cmd="buffers")
            assert reply["maps"][0] == {"name": "io", "count": 1, "c": 0, "busy": [0], "waiters": 1,
                                        "slot_size": 64 * KiB}
            core.buffers.io_slot(0)[:5] = b"hello"
            dump = await control(rundir, "buffers", dump=0, length=5)
            assert dump["ok"] and dump["dump"] == "aGVsbG8="
            assert_error(await control(rundir, "buffers", dump=1), errno.EINVAL)
            assert_error(await control(rundir, "buffers", dump=-1), errno.EINVAL)
            await core.reply(io, resp={"io": {"amt_complete": 5}})
            assert (await first.wait()).data == b"hello"
            await core.reply(await core.next_frame(), resp={"io": {"amt_complete": 0}})
            assert (await second.wait()).result == 0
            assert (await control(rundir, "buffers"))["maps"][0]["waiters"] == 0


async def test_buffers_dump_without_a_buffer_is_enxio(broker, rundir):
    """Spec §6.4 / control_server: asking for a slot's bytes before any MAP is ENXIO."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "buffers", dump=0), errno.ENXIO)


async def test_stats_count_ops_by_type_with_errors_and_latencies(broker, rundir):
    """DESIGN "Stats per op type": counts, errors by name, a latency histogram, and the broker-wide counters."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)  # one GETATTR of the root
            for err in (0, 0, errno.ENOENT):
                pending = await vfs.send_submit(1, getattr_upcall())
                frame = await core.next_frame()
                await core.reply(frame, status=status_of(err) if err else 0)
                assert (await pending.wait()).result == -err
            stats = await control(rundir, "stats")
            getattr_stats = stats["ops"]["OP_GETATTR"]
            assert getattr_stats["count"] == 4
            assert getattr_stats["errors"] == {"ENOENT": 1}
            assert sum(getattr_stats["histogram"]) == 4
            assert len(getattr_stats["histogram"]) == len(stats["buckets"]) + 1
            assert stats["ops"]["OP_FS_MOUNT"]["count"] == 1 and stats["ops"]["OP_FEATURES"]["count"] == 1
            assert stats["device_opens"] == 1 and stats["device_releases"] == 0
            assert (stats["request_list"], stats["in_progress"], stats["reads"], stats["writes"]) == (0, 0, 0, 0)


# -- params -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [("30", 30), ("0x1e", 30), ("0X1E", 30), ("036", 30), ("7\n", 7), ("+9", 9)])
async def test_local_params_parse_with_base_autodetection(broker, rundir, text, value):
    """Spec §6.1: kernel-int knobs parse like kstrtoint(buf, 0) — base from the prefix — and read back as "%d\\n"."""
    with trio.fail_after(10):
        reply = await control(rundir, "params", name="op_timeout_secs", value=text)
        assert reply == {"ok": True, "name": "op_timeout_secs", "value": f"{value}\n"}
        assert (await control(rundir, "params", name="op_timeout_secs"))["value"] == f"{value}\n"


@pytest.mark.parametrize("text", ["", "abc", "1.5", "0x", "12abc", "1 2", "09", "--1", "0x1g"])
async def test_local_params_refuse_garbage_with_einval(broker, rundir, text):
    """Spec §6.1: a kernel-int knob answers any parse error with EINVAL and keeps its value."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "params", name="slot_timeout_secs", value=text), errno.EINVAL)
        assert (await control(rundir, "params", name="slot_timeout_secs"))["value"] == "900\n"


async def test_params_lists_every_knob(broker, rundir):
    """Spec §6.1: the listing has every sysfs entry with its backing, and the kernel ints with their defaults."""
    with trio.fail_after(10):
        rows = {p["name"]: p for p in (await control(rundir, "params"))["params"]}
        assert {n: rows[n]["value"] for n in ("op_timeout_secs", "slot_timeout_secs", "cache_timeout_msecs",
                                              "dcache_timeout_msecs", "getattr_timeout_msecs")} == {
            "op_timeout_secs": 20, "slot_timeout_secs": 900, "cache_timeout_msecs": 500,
            "dcache_timeout_msecs": 50, "getattr_timeout_msecs": 50}
        assert rows["acache/hard_limit"]["kind"] == "daemon"
        assert rows["perf_counters/acache"]["kind"] == "perf"
        assert rows["stats/reads"]["kind"] == "stats"
        assert_error(await control(rundir, "params", name="no/such/knob"), errno.ENOENT)


@pytest.mark.parametrize("value", [None, "5"], ids=["show", "store"])
async def test_daemon_params_are_eio_without_a_client_core(broker, rundir, value):
    """Spec §4.11, §6.1: a daemon-backed knob fails fast with EIO, on show and store, when no client-core is in service."""
    with trio.fail_after(10):
        fields = {} if value is None else {"value": value}
        assert_error(await control(rundir, "params", name="acache/hard_limit", **fields), errno.EIO)
        assert (await status(rundir))["ops_by_state"] == {}


@pytest.mark.parametrize("value", ["garbage", "-1"], ids=["unparsable", "out-of-range"])
async def test_daemon_param_store_checks_for_the_client_core_before_the_value(broker, rundir, value):
    """Spec §6.1 ("both show and store first require the daemon (else EIO)"): without a client-core even a bad value is EIO."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "params", name="acache/hard_limit", value=value), errno.EIO)


async def test_daemon_params_send_param_upcalls_with_the_right_op(broker, rundir):
    """Spec §6.1, §2.6, §3.2: show sends PARAM GET and prints value64; store sends PARAM SET with the parsed value, then shows it again."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core:
            async def answer(core, frame, value=1234):
                assert frame.type == OpCode.PARAM
                await core.reply(frame, resp={"param": {"u": {"value64": value}}})

            reply, seen = await with_param_upcall(rundir, core, {"cmd": "params", "name": "acache/hard_limit"}, answer)
            assert reply == {"ok": True, "name": "acache/hard_limit", "value": "1234\n"}
            [frame] = seen
            param = frame.upcall.req.param
            assert (param.type, param.op) == (ParamRequestType.GET, ParamOp.ACACHE_HARD_LIMIT)
            assert (frame.upcall.uid, frame.upcall.pid) == (os.geteuid(), os.getpid())

            async def answer_32(core, frame):
                await answer(core, frame, 32)

            reply, seen = await with_param_upcall(
                rundir, core, {"cmd": "params", "name": "ncache/timeout_msecs", "value": "0x20"}, answer_32)
            assert reply["ok"] and reply["value"] == "32\n"
            assert [(f.upcall.req.param.type, f.upcall.req.param.op) for f in seen] == [
                (ParamRequestType.SET, ParamOp.NCACHE_TIMEOUT_MSECS),
                (ParamRequestType.GET, ParamOp.NCACHE_TIMEOUT_MSECS)]
            assert seen[0].upcall.req.param.u.value64 == 32


async def test_daemon_param_store_out_of_range_or_failed_is_einval(broker, rundir):
    """Spec §6.1: with a client-core, an out-of-range value is EINVAL without an upcall, and a failed PARAM upcall is EINVAL."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core:
            assert_error(await control(rundir, "params", name="acache/reclaim_percentage", value="101"), errno.EINVAL)
            assert_error(await control(rundir, "params", name="perf_counter_reset", value="2"), errno.EINVAL)
            await core.no_frame(0.05)

            async def fail(core, frame):
                await core.reply(frame, status=status_of(errno.ENOENT))

            reply, seen = await with_param_upcall(
                rundir, core, {"cmd": "params", "name": "acache/reclaim_percentage", "value": "50"}, fail)
            assert_error(reply, errno.EINVAL)
            assert len(seen) == 1 and seen[0].upcall.req.param.type == ParamRequestType.SET


async def test_readahead_count_size_takes_two_values_and_needs_the_feature(broker, rundir):
    """Spec §6.1: readahead knobs are EINVAL without FEATURE_READAHEAD; readahead_count_size sends "count size" as value32[0]/[1]."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            assert_error(await control(rundir, "params", name="readahead_count_size", value="3 4"), errno.EINVAL)
            await core.no_frame(0.05)
            await mount_by_hand(core, vfs, features=proto.Features.READAHEAD)

            async def answer(core, frame):
                await core.reply(frame, resp={"param": {"u": {"value64": value64_of(3, 4)}}})

            reply, seen = await with_param_upcall(
                rundir, core, {"cmd": "params", "name": "readahead_count_size", "value": "3 4"}, answer)
            assert reply["ok"] and reply["value"] == "3 4\n"
            assert seen[0].upcall.req.param.op == ParamOp.READAHEAD_COUNT_SIZE
            assert value32_pair(seen[0].upcall.req.param.u.value64) == (3, 4)


@pytest.mark.parametrize("name", ["perf_counters/acache", "perf_counters/ncache", "perf_counters/capcache"])
async def test_perf_counters_are_einval_by_the_kernel_quirk(broker, rundir, name):
    """Spec §6.1 quirk: with a client-core, reading perf_counters/* falls through to "unknown kobject" — EINVAL, no upcall; writing fails too, no upcall."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core:
            assert_error(await control(rundir, "params", name=name), errno.EINVAL)
            assert (await control(rundir, "params", name=name, value="1"))["ok"] is False
            await core.no_frame(0.05)


async def test_perf_counters_without_a_client_core_are_eio(broker, rundir):
    """Spec §6.1 ("both show and store first require the daemon (else EIO)"), §4.11: the daemon check comes before the kobject quirk."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "params", name="perf_counters/acache"), errno.EIO)


async def test_stats_knobs_count_filesystem_reads_and_writes(broker, rundir):
    """Spec §6.1: stats/reads and stats/writes show the read and write call counters ("%lu\n") and cannot be written."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs:
            await mount_by_hand(core, vfs)
            async with core.serving():
                for _ in range(2):
                    assert (await vfs.submit(read_upcall(100, 0))).result == 0
            assert (await control(rundir, "params", name="stats/reads"))["value"] == "2\n"
            assert (await control(rundir, "params", name="stats/writes"))["value"] == "0\n"
            assert (await control(rundir, "params", name="stats/reads", value="0"))["ok"] is False
            assert (await control(rundir, "params", name="stats/reads"))["value"] == "2\n"


# -- debugfs and perf counters ------------------------------------------------------------------------------------


async def test_kernel_debug_keywords_round_trip(broker, rundir):
    """Spec §2.8, §6.2: kernel-debug takes a comma-separated keyword list and shows the mask as keywords ("none" at start)."""
    with trio.fail_after(10):
        assert (await control(rundir, "debug", which="kernel"))["value"] == "none"
        assert (await control(rundir, "debug", which="kernel", value="dev, super,nonsense"))["value"] == "super,dev"
        assert (await control(rundir, "debug", which="kernel", value="all"))["value"] == "all"
        assert_error(await control(rundir, "debug", which="elsewhere"), errno.EINVAL)


async def test_client_debug_sends_two_mask_values_or_efault_without_a_client_core(broker, rundir):
    """Spec §6.2: writing client-debug sends PARAM SET TWO_MASK_VALUES with s_value "<mask1-hex> <mask2-hex>\\n" built from the CLIENT_STRING keywords; with no client-core it fails with EFAULT."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "debug", which="client", value="ops"), errno.EFAULT)
        async with HandCore.start(rundir) as core:  # its handshake announces ops=1, store=2, io=4
            async def answer(core, frame):
                await core.reply(frame)

            reply, seen = await with_param_upcall(
                rundir, core, {"cmd": "debug", "which": "client", "value": "ops,io"}, answer)
            assert reply["ok"] and reply["value"] == "ops,io"
            [frame] = seen
            param = frame.upcall.req.param
            assert (param.type, param.op) == (ParamRequestType.SET, ParamOp.TWO_MASK_VALUES)
            assert param.s_value == b"5 0\n"


async def test_perf_sends_perf_count_and_returns_the_text(broker, rundir):
    """Spec §2.6, §3.3: the perf command sends PERF_COUNT with the cache's type and returns the client-core's NUL-terminated text; EIO with no client-core."""
    with trio.fail_after(10):
        assert_error(await control(rundir, "perf", type="ncache"), errno.EIO)
        async with HandCore.start(rundir) as core:
            async def answer(core, frame):
                assert frame.type == OpCode.PERF_COUNT
                await core.reply(frame, resp={"perf_count": {"buffer": b"hits 3\nmisses 1\n"}})

            reply, seen = await with_param_upcall(rundir, core, {"cmd": "perf", "type": "ncache"}, answer)
            assert reply == {"ok": True, "type": "ncache", "text": "hits 3\nmisses 1\n"}
            assert seen[0].upcall.req.perf_count.type == proto.PerfCountType.NCACHE


# -- trace -----------------------------------------------------------------------------------------------------------


async def test_trace_streams_state_transitions_as_json_lines(broker, rundir):
    """DESIGN broker internals: the trace streams each transition (queue, read, service, give_up) as one JSON object per line."""
    with trio.fail_after(10):
        async with HandCore.start(rundir) as core, VfsClient.connect(vfs_path(rundir)) as vfs, \
                ControlClient.connect(ctl_path(rundir)) as ctl:
            await ctl.stream.send_all(b'{"cmd": "trace"}\n')
            assert await ctl.receive() == {"ok": True, "trace": "started"}
            pending = await vfs.send_submit(1, getattr_upcall())
            frame = await core.next_frame()
            await core.auto(frame)
            assert (await pending.wait()).result == 0
            interrupted = await vfs.send_submit(2, getattr_upcall(), flags=proto.OpFlags.INTERRUPTIBLE)
            await wait_for(rundir, lambda s: s["request_list"] == 1)
            await vfs.interrupt(2)
            assert (await interrupted.wait()).result == -errno.EINTR

            events = [await ctl.receive() for _ in range(5)]
            assert all(set(e) == {"time", "tag", "op", "event", "before", "after"} for e in events)
            assert [(e["tag"], e["op"], e["event"], e["before"], e["after"]) for e in events] == [
                (frame.tag, "OP_GETATTR", "queue", "unknown", "waiting"),
                (frame.tag, "OP_GETATTR", "read", "waiting", "inprogr"),
                (frame.tag, "OP_GETATTR", "service", "inprogr", "serviced"),
                (frame.tag + 1, "OP_GETATTR", "queue", "unknown", "waiting"),
                (frame.tag + 1, "OP_GETATTR", "give_up", "waiting", "waiting|given_up"),
            ]
            assert events == sorted(events, key=lambda e: e["time"])


async def test_trace_shows_a_purge_and_the_retry(broker, rundir):
    """Spec §1.6, §4.5 step 9, §4.9: a release traces purge, then the submitter's give_up and the op's requeue (same tag)."""
    with trio.fail_after(10):
        async with VfsClient.connect(vfs_path(rundir)) as vfs, ControlClient.connect(ctl_path(rundir)) as ctl:
            await ctl.stream.send_all(b'{"cmd": "trace"}\n')
            assert (await ctl.receive())["ok"] is True
            await vfs.send_submit(1, getattr_upcall())
            async with HandCore.start(rundir) as core:
                frame = await core.next_frame()
            events = [await ctl.receive() for _ in range(5)]
            assert [(e["tag"], e["event"], e["before"], e["after"]) for e in events] == [
                (frame.tag, "queue", "unknown", "waiting"),
                (frame.tag, "read", "waiting", "inprogr"),
                (frame.tag, "purge", "inprogr", "inprogr|purged"),
                (frame.tag, "give_up", "inprogr|purged", "inprogr|purged|given_up"),
                (frame.tag, "queue", "inprogr|purged|given_up", "waiting"),
            ]


# -- malformed requests ---------------------------------------------------------------------------------------------


async def test_unknown_command_is_einval(broker, rundir):
    """Spec §6 / control_server: an unknown, missing or non-string cmd is EINVAL and the connection stays usable."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            assert_error(await ctl.request("no-such-command"), errno.EINVAL)
            await ctl.stream.send_all(b'{"nocmd": 1}\n')
            assert_error(await ctl.receive(), errno.EINVAL)
            await ctl.stream.send_all(b'{"cmd": 5}\n')
            assert_error(await ctl.receive(), errno.EINVAL)
            await ctl.stream.send_all(b'{"cmd": "__init__"}\n')
            assert_error(await ctl.receive(), errno.EINVAL)
            assert (await ctl.request("status"))["ok"] is True


@pytest.mark.parametrize("line", [b"this is not json", b"[1, 2]", b"\"status\"", b"{", b"\xff\xfe", b""])
async def test_non_json_line_is_einval_and_the_connection_stays_usable(broker, rundir, line):
    """DESIGN control channel (one JSON object per line): a line that is not a JSON object gets EINVAL, then the next request is served."""
    with trio.fail_after(10):
        async with ControlClient.connect(ctl_path(rundir)) as ctl:
            await ctl.stream.send_all(line + b"\n")
            assert_error(await ctl.receive(), errno.EINVAL)
            assert (await ctl.request("status"))["ok"] is True


async def test_bad_field_types_are_einval_and_the_connection_stays_usable(broker, rundir):
    """DESIGN "malformed requests get EINVAL and never take the broker down": wrongly typed fields get EINVAL on the same connection."""
    with trio.fail_after(10):
        async with HandCore.start(rundir), ControlClient.connect(ctl_path(rundir)) as ctl:
            for request in ({"cmd": "buffers", "dump": 0, "length": "many"},
                            {"cmd": "buffers", "dump": 0, "length": [1]},
                            {"cmd": "params", "name": "op_timeout_secs", "value": [1, 2]}):
                await ctl.stream.send_all(json.dumps(request).encode() + b"\n")
                assert_error(await ctl.receive(), errno.EINVAL)
            assert (await ctl.request("status"))["ok"] is True


CHILD = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
lines = sys.argv[2:]
s.sendall("".join(line + "\n" for line in lines).encode())
data = b""
while data.count(b"\n") < len(lines):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
async def test_changes_need_the_owner_or_root():
    """DESIGN "Processes and sockets": pvfs2-ctl is 0666 for read-only verbs; setting a knob or a debug mask needs the broker's owner or root (EPERM)."""
    base = Path(tempfile.mkdtemp(prefix="pvfs2dev-ctl-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        rundir = base / "run"
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(Server(Config(rundir=rundir)).run)
                os.chmod(rundir, 0o711)
                requests = [{"cmd": "status"}, {"cmd": "params", "name": "op_timeout_secs"},
                            {"cmd": "params", "name": "op_timeout_secs", "value": "5"},
                            {"cmd": "debug", "which": "kernel", "value": "all"},
                            {"cmd": "mount", "mountpoint": str(base)}, {"cmd": "umount", "mountpoint": str(base)}]
                result = await trio.run_process(
                    ["/usr/bin/python3", "-I", "-S", "-c", CHILD, str(ctl_path(rundir)),
                     *(json.dumps(r) for r in requests)],
                    capture_stdout=True, user=65534, group=65534, extra_groups=[],
                )
                replies = [json.loads(line) for line in result.stdout.decode().splitlines()]
                assert [r["ok"] for r in replies] == [True, True, False, False, False, False]
                assert replies[1]["value"] == "20\n"
                for reply in replies[2:]:
                    assert_error(reply, errno.EPERM)
                assert (await control(rundir, "params", name="op_timeout_secs"))["value"] == "20\n"
                assert (await control(rundir, "debug", which="kernel"))["value"] == "none"
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)
