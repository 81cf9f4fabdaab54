"""The sysfs knobs of /sys/fs/orangefs (spec §6.1, §2.4, §6.3)."""

import errno

import pytest

from pvfs2dev.params import PARAMS, ParamError, kstrtoint, lookup, parse_store
from pvfs2proto import ParamOp, PerfCountType

from .harness import World


# --- kstrtoint(buf, 0, &val) ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("10", 10),
    ("10\n", 10),
    ("0x10", 16),
    ("0X1f", 31),
    ("010", 8),
    ("0", 0),
    ("-5", -5),
    ("+7", 7),
    ("-0x10", -16),
    ("2147483647", 2**31 - 1),
    ("-2147483648", -(2**31)),
])
def test_kstrtoint_autodetects_the_base(text, value):
    """Spec §6.1: store parses an integer with the base auto-detected (0x → 16, leading 0 → 8, else 10)."""
    assert kstrtoint(text) == value


@pytest.mark.parametrize("text", ["", "\n", "abc", "12abc", "0x", "08", "1 2", " 5", "5 ", "5\n\n", "1_000", "0xg"])
def test_kstrtoint_rejects_what_is_not_one_integer(text):
    """Spec §6.1: an unparsable value returns the parser's error, EINVAL."""
    with pytest.raises(ParamError) as exc:
        kstrtoint(text)
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("text", ["2147483648", "-2147483649", "0x80000000", "99999999999999999999"])
def test_kstrtoint_out_of_int_range_is_erange(text):
    """Spec §6.1: a value that does not fit a C int is the parser's ERANGE."""
    with pytest.raises(ParamError) as exc:
        kstrtoint(text)
    assert exc.value.errno == errno.ERANGE


# --- kernel-int knobs -------------------------------------------------------------------------------------


def test_kernel_int_knob_defaults():
    """Spec §6.1, §2.4: op_timeout_secs 20, slot_timeout_secs 900, cache 500 ms, dcache 50 ms, getattr 50 ms."""
    params = World().k.params
    assert params["op_timeout_secs"] == 20
    assert params["slot_timeout_secs"] == 900
    assert params["cache_timeout_msecs"] == 500
    assert params["dcache_timeout_msecs"] == 50
    assert params["getattr_timeout_msecs"] == 50


@pytest.mark.parametrize("name", ["op_timeout_secs", "slot_timeout_secs", "cache_timeout_msecs",
                                  "dcache_timeout_msecs", "getattr_timeout_msecs"])
def test_kernel_int_knobs_parse_with_base_autodetect(name):
    """Spec §6.1: kernel-int entries parse with base auto-detection."""
    assert parse_store(lookup(name), "0x1e\n") == (30,)


@pytest.mark.parametrize("text", ["abc", "99999999999"])
def test_kernel_int_knob_parse_error_is_einval(text):
    """Spec §6.1: kernel-int entries return EINVAL on any parse error (no upcall)."""
    with pytest.raises(ParamError) as exc:
        parse_store(lookup("op_timeout_secs"), text)
    assert exc.value.errno == errno.EINVAL


# --- daemon-backed knobs ------------------------------------------------------------------------------


def test_daemon_knob_reports_the_parsers_erange():
    """Spec §6.1: for daemon-backed entries an unparsable value returns the parser's error, e.g. ERANGE."""
    with pytest.raises(ParamError) as exc:
        parse_store(lookup("acache/hard_limit"), "99999999999")
    assert exc.value.errno == errno.ERANGE


_CACHES = [
    ("acache", "timeout_msecs", ParamOp.ACACHE_HARD_LIMIT, ParamOp.ACACHE_SOFT_LIMIT,
     ParamOp.ACACHE_RECLAIM_PERCENTAGE, ParamOp.ACACHE_TIMEOUT_MSECS),
    ("capcache", "timeout_secs", ParamOp.CAPCACHE_HARD_LIMIT, ParamOp.CAPCACHE_SOFT_LIMIT,
     ParamOp.CAPCACHE_RECLAIM_PERCENTAGE, ParamOp.CAPCACHE_TIMEOUT_SECS),
    ("ccache", "timeout_secs", ParamOp.CCACHE_HARD_LIMIT, ParamOp.CCACHE_SOFT_LIMIT,
     ParamOp.CCACHE_RECLAIM_PERCENTAGE, ParamOp.CCACHE_TIMEOUT_SECS),
    ("ncache", "timeout_msecs", ParamOp.NCACHE_HARD_LIMIT, ParamOp.NCACHE_SOFT_LIMIT,
     ParamOp.NCACHE_RECLAIM_PERCENTAGE, ParamOp.NCACHE_TIMEOUT_MSECS),
]


@pytest.mark.parametrize("cache, timeout, hard, soft, reclaim, tmo", _CACHES)
def test_cache_knobs_map_to_their_param_ops(cache, timeout, hard, soft, reclaim, tmo):
    """Spec §6.1: cache directories use PARAM ops acache 2,3,4,1; capcache 22,23,24,21; ccache 18,19,20,17; ncache 9,10,11,8."""
    for leaf, op in (("hard_limit", hard), ("soft_limit", soft), ("reclaim_percentage", reclaim), (timeout, tmo)):
        param = lookup(f"{cache}/{leaf}")
        assert param.kind == "daemon" and param.param_op == op


@pytest.mark.parametrize("name", [f"{c}/{leaf}" for c, t, *_ in _CACHES for leaf in ("hard_limit", "soft_limit", t)])
def test_cache_limits_and_timeouts_must_be_non_negative(name):
    """Spec §6.1: cache limits and timeouts are ≥ 0; out of range is EINVAL."""
    param = lookup(name)
    assert parse_store(param, "0") == (0,)
    with pytest.raises(ParamError) as exc:
        parse_store(param, "-1")
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("cache", ["acache", "capcache", "ccache", "ncache"])
def test_reclaim_percentage_is_0_to_100(cache):
    """Spec §6.1: reclaim_percentage must be 0–100."""
    param = lookup(f"{cache}/reclaim_percentage")
    assert parse_store(param, "0") == (0,)
    assert parse_store(param, "100") == (100,)
    for bad in ("101", "-1"):
        with pytest.raises(ParamError) as exc:
            parse_store(param, bad)
        assert exc.value.errno == errno.EINVAL


def test_perf_counter_reset_accepts_only_0_or_1():
    """Spec §6.1: perf_counter_reset (PARAM op 7) takes only 0 or 1."""
    param = lookup("perf_counter_reset")
    assert param.param_op == ParamOp.PERF_RESET
    assert parse_store(param, "0") == (0,)
    assert parse_store(param, "1") == (1,)
    with pytest.raises(ParamError) as exc:
        parse_store(param, "2")
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("name, op", [("perf_history_size", ParamOp.PERF_HISTORY_SIZE),
                                      ("perf_time_interval_secs", ParamOp.PERF_TIME_INTERVAL_SECS)])
def test_perf_history_and_interval_must_be_positive(name, op):
    """Spec §6.1: perf_history_size (op 6) and perf_time_interval_secs (op 5) must be > 0."""
    param = lookup(name)
    assert param.param_op == op
    assert parse_store(param, "1") == (1,)
    with pytest.raises(ParamError) as exc:
        parse_store(param, "0")
    assert exc.value.errno == errno.EINVAL


# --- readahead knobs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, op", [("readahead_size", ParamOp.READAHEAD_SIZE),
                                      ("readahead_count", ParamOp.READAHEAD_COUNT),
                                      ("readahead_count_size", ParamOp.READAHEAD_COUNT_SIZE),
                                      ("readahead_readcnt", ParamOp.READAHEAD_READCNT)])
def test_readahead_knobs_use_param_ops_26_to_29_and_need_the_feature(name, op):
    """Spec §6.1, §5.5: the four readahead knobs are PARAM ops 26–29 and need ORANGEFS_FEATURE_READAHEAD."""
    param = lookup(name)
    assert param.param_op == op
    assert param.readahead is True


def test_only_readahead_knobs_need_the_feature():
    """Spec §6.1: FEATURE_READAHEAD gates exactly the four readahead knobs."""
    gated = {name for name, p in PARAMS.items() if p.readahead}
    assert gated == {"readahead_size", "readahead_count", "readahead_count_size", "readahead_readcnt"}


@pytest.mark.parametrize("name", ["readahead_size", "readahead_count", "readahead_readcnt"])
def test_readahead_values_must_be_non_negative(name):
    """Spec §6.1: readahead_count, readahead_size and readahead_readcnt are ≥ 0."""
    param = lookup(name)
    assert parse_store(param, "0") == (0,)
    with pytest.raises(ParamError) as exc:
        parse_store(param, "-1")
    assert exc.value.errno == errno.EINVAL


def test_readahead_count_size_takes_two_values():
    """Spec §6.1: readahead_count_size is "count size", two values sent in value32[0]/[1]."""
    param = lookup("readahead_count_size")
    assert param.pair
    assert parse_store(param, "4 65536\n") == (4, 65536)


@pytest.mark.parametrize("text", ["4", "4 5 6", "-1 5", "4 -5", "a b"])
def test_readahead_count_size_rejects_anything_but_two_non_negative_values(text):
    """Spec §6.1: both values of readahead_count_size must be ≥ 0; otherwise EINVAL."""
    with pytest.raises(ParamError) as exc:
        parse_store(lookup("readahead_count_size"), text)
    assert exc.value.errno == errno.EINVAL


# --- perf_counters and stats -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, perf_type", [("perf_counters/acache", PerfCountType.ACACHE),
                                             ("perf_counters/capcache", PerfCountType.CAPCACHE),
                                             ("perf_counters/ncache", PerfCountType.NCACHE)])
def test_perf_counters_are_einval_by_the_kobject_name_quirk(name, perf_type):
    """Spec §6.1: perf_counters/* (PERF_COUNT types 1, 3, 2) fall through to "unknown kobject" → EINVAL, no upcall."""
    param = lookup(name)
    assert param.perf_type == perf_type
    with pytest.raises(ParamError) as exc:
        parse_store(param, "1")
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("name", ["stats/reads", "stats/writes"])
def test_stats_are_read_only_in_effect(name):
    """Spec §6.1: stats/{reads, writes} are kernel counters, read-only in effect: a store fails."""
    with pytest.raises(ParamError):
        parse_store(lookup(name), "0")


def test_stats_counters_start_at_zero():
    """Spec §6.1: stats/reads and stats/writes count read_iter/splice_read and write_iter calls, from 0."""
    stats = World().k.stats
    assert (stats.reads, stats.writes) == (0, 0)


def test_sysfs_has_every_entry_of_the_spec_table():
    """Spec §6.1: the /sys/fs/orangefs entries are exactly the table's."""
    caches = [f"{c}/{leaf}" for c, t, *_ in _CACHES for leaf in ("hard_limit", "soft_limit", "reclaim_percentage", t)]
    expected = {
        "op_timeout_secs", "slot_timeout_secs", "cache_timeout_msecs", "dcache_timeout_msecs",
        "getattr_timeout_msecs", "readahead_count", "readahead_size", "readahead_count_size", "readahead_readcnt",
        "perf_counter_reset", "perf_history_size", "perf_time_interval_secs",
        "perf_counters/acache", "perf_counters/capcache", "perf_counters/ncache", "stats/reads", "stats/writes",
        *caches,
    }
    assert set(PARAMS) == expected


def test_unknown_knob_is_enoent():
    """Spec §6.1: names outside the table do not exist."""
    with pytest.raises(ParamError) as exc:
        lookup("no_such_knob")
    assert exc.value.errno == errno.ENOENT
