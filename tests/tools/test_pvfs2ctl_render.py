"""pvfs2ctl's pure formatting and filtering (STYLE §10): reply dicts in, text or renderables out, no broker."""

from __future__ import annotations

import io
import math

import click
import pytest
from rich.console import Console

from pvfs2ctl import render
from pvfs2ctl.inspect_cmds import select_ops

BUCKETS = [0.001, 0.01, 0.1]


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(renderable)
    return out.getvalue()


def _row(tag: int, op: str, state: int, names: str, age: float, where: str = "-") -> dict:
    return {"tag": tag, "op": op, "state": state, "state_names": names, "age": age, "attempts": 0, "uid": 0,
            "gid": 0, "pid": 1, "tgid": 1, "fs_id": 7, "slot": None, "where": where, "cancel": False}


ROWS = [
    _row(1, "OP_GETATTR", 1, "waiting", 0.2, "request:0"),
    _row(2, "OP_FILE_IO", 2, "inprogr", 3.0, "bucket:2"),
    _row(3, "OP_FILE_IO", 18, "inprogr|given_up", 12.5, "bucket:3"),
    _row(4, "OP_LOOKUP", 0, "unknown", 0.0, "mutex"),
]


def test_slot_bitmap_marks_busy_slots_and_wraps():
    """A slot map is '#' for busy and '.' for free, in lines of the given width."""
    assert render.slot_bitmap([0, 1, 4], 8) == "##..#..."
    assert render.slot_bitmap([5], 6, width=4) == "....\n.#"
    assert render.slot_bitmap([], 0) == "-"


def test_hexdump_has_offsets_hex_ascii_and_collapses_repeats():
    """The hexdump is hexdump -C style, with repeated lines shown once as '*'."""
    lines = render.hexdump(b"ABC" + bytes(61)).splitlines()
    assert lines[0] == "00000000  41 42 43 00 00 00 00 00  00 00 00 00 00 00 00 00  |ABC.............|"
    assert lines[1:3] == ["00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|", "*"]
    assert lines[-2].startswith("00000030  ") and lines[-1] == "00000040"
    assert render.hexdump(b"") == "00000000"


def test_small_formatters():
    """Latencies, ages, sizes, versions and feature bits read the way a person expects."""
    assert [render.fmt_latency(x) for x in (None, 0.00025, 0.0025, 1.0, math.inf)] == \
        ["-", "250µs", "2.5ms", "1s", ">60s"]
    assert render.fmt_age(12.345) == "12.3"
    assert [render.fmt_bytes(n) for n in (512, 131072, 4 << 20, None)] == ["512 B", "128 KiB", "4 MiB", "-"]
    assert render.fmt_version(20907) == "20907 (2.9.7)" and render.fmt_version(0) == "none recorded"
    assert render.fmt_features(1) == "0x1 (readahead)" and render.fmt_features(0) == "none"
    assert render.fmt_duration(3725) == "1h02m"


def test_ops_table_decodes_state_bits_and_ages():
    """The ops table shows composite states like inprogr|given_up and ages with one decimal."""
    text = _text(render.ops_table(ROWS))
    assert "inprogr|given_up" in text and "12.5" in text and "bucket:3" in text and "request:0" in text


@pytest.mark.parametrize(
    ("state", "op_type", "older", "tags"),
    [
        ("inprogr|given_up", None, None, [3]),
        ("inprogr", None, None, [2, 3]),
        ("given-up", None, None, [3]),
        ("16", None, None, [3]),
        ("0", None, None, [4]),
        ("mutex", None, None, [4]),
        (None, "file_io", None, [2, 3]),
        (None, "ORANGEFS_VFS_OP_GETATTR", None, [1]),
        (None, None, 1.0, [2, 3]),
        ("inprogr", "OP_FILE_IO", 5, [3]),
    ],
)
def test_select_ops_filters(state, op_type, older, tags):
    """--state needs every named bit, --type takes any spelling of the op, --older-than is strict."""
    assert [r["tag"] for r in select_ops(ROWS, state, op_type, older)] == tags


def test_select_ops_refuses_unknown_names():
    """An unknown state or op type is a usage error, not an empty selection."""
    with pytest.raises(click.BadParameter):
        select_ops(ROWS, state="sleeping")
    with pytest.raises(click.BadParameter):
        select_ops(ROWS, op_type="frobnicate")


SNAPSHOT = {
    "ops": {
        "OP_GETATTR": {"count": 5, "errors": {}, "histogram": [1, 3, 1, 0], "latency_sum": 0.05},
        'OP_"ODD"': {"count": 2, "errors": {"ENOENT": 2}, "histogram": [0, 0, 0, 2], "latency_sum": 1.5},
    },
    "buckets": BUCKETS,
    "reads": 3, "writes": 4, "device_opens": 2, "device_releases": 1, "purged": 0, "timed_out": 0,
    "cancels_sent": 0, "request_list": 1, "in_progress": 2,
}


def test_prometheus_text_histograms_are_cumulative_with_sum_and_count():
    """Buckets accumulate up to +Inf == _count, counters end in _total, label values are escaped."""
    lines = render.prometheus_text(SNAPSHOT).splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines
            if line.startswith('pvfs2dev_op_latency_seconds_bucket{op="OP_GETATTR"')] == ["1", "4", "5", "5"]
    assert 'pvfs2dev_op_latency_seconds_bucket{op="OP_GETATTR",le="+Inf"} 5' in lines
    assert 'pvfs2dev_op_latency_seconds_bucket{op="OP_GETATTR",le="0.001"} 1' in lines
    assert 'pvfs2dev_op_latency_seconds_sum{op="OP_GETATTR"} 0.05' in lines
    assert 'pvfs2dev_op_latency_seconds_count{op="OP_GETATTR"} 5' in lines
    assert 'pvfs2dev_op_errors_total{op="OP_\\"ODD\\"",errno="ENOENT"} 2' in lines
    assert "pvfs2dev_device_opens_total 2" in lines and "pvfs2dev_request_list_ops 1" in lines
    assert all(line.split()[2].endswith("_total") for line in lines
               if line.startswith("# TYPE") and line.endswith(" counter"))


def test_stats_view_sums_errors_and_draws_the_histogram():
    """The stats view lists errors by errno name and a histogram row per bucket in the used range."""
    text = _text(render.stats_view(SNAPSHOT))
    assert "ENOENT" in text and "≤ 1ms" in text and "> 100ms" in text and "█" in text


def test_top_rows_rates_and_window_quantiles():
    """ops/s is the count difference over the uptime difference; quantiles use the window's histogram."""
    before = {"status": {"uptime": 10.0}, "stats": {"buckets": BUCKETS, "ops": {
        "OP_GETATTR": {"count": 10, "errors": {}, "histogram": [10, 0, 0, 0]}}}}
    after = {"status": {"uptime": 12.0, "buffers": []}, "stats": {"buckets": BUCKETS, "device_opens": 3, "ops": {
        "OP_GETATTR": {"count": 30, "errors": {}, "histogram": [10, 20, 0, 0]}}}}
    (row,) = render.top_rows(before, after)
    assert row["rate"] == 10.0 and row["p50"] == 0.01 and row["p99"] == 0.01 and row["window"]
    (first,) = render.top_rows(None, after)
    assert first["rate"] is None and first["p50"] == 0.01 and not first["window"]
    assert "client-core restarts 2" in _text(render.top_frame(before, after))
