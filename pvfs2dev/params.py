"""The sysfs knobs of ``/sys/fs/orangefs/`` (spec §6.1): names, backing, validation.

Three kinds:

* **local** — a kernel int (op_timeout_secs …): parsed with base
  auto-detection, EINVAL on a parse error, no upcall;
* **daemon** — backed by a PARAM upcall (acache/hard_limit …): both reading and
  writing need the client-core (else EIO), writing checks the range first
  (EINVAL), and readahead knobs need ``ORANGEFS_FEATURE_READAHEAD`` (EINVAL);
* **perf** — ``perf_counters/*``: PERF_COUNT in intent, but the current
  kernel's show/store compare the kobject name with ``"pc"`` and never match,
  so they answer EINVAL without an upcall.  We emulate that; pvfs2ctl's
  ``perf`` command reaches PERF_COUNT directly instead.
* **stats** — ``stats/reads`` and ``stats/writes``: read-only counters.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Callable

from pvfs2proto import ParamOp, PerfCountType
from pvfs2proto.constants import (
    ORANGEFS_CACHE_TIMEOUT_MSECS,
    ORANGEFS_DCACHE_TIMEOUT_MSECS,
    ORANGEFS_DEFAULT_OP_TIMEOUT_SECS,
    ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS,
    ORANGEFS_GETATTR_TIMEOUT_MSECS,
)


class ParamError(OSError):
    """A knob refused a read or write; ``.errno`` is what sysfs would return."""


INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Python's int() would also take "_" and spaces; the kernel takes only these.
_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def kstrtoint(text: str) -> int:
    """``kstrtoint(buf, 0, &val)``: one int, base from its prefix, one trailing newline.

    Raises:
        ParamError: EINVAL if unparsable, ERANGE if outside a C int.
    """
    body = text[:-1] if text.endswith("\n") else text
    sign = 1
    if body.startswith(("-", "+")):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body[:2].lower() == "0x" and len(body) > 2:
        digits, base = body[2:], 16
    elif body.startswith("0") and len(body) > 1:
        digits, base = body[1:], 8
    else:
        digits, base = body, 10
    if not digits or not all(c in _DIGITS[base] for c in digits):
        raise ParamError(errno.EINVAL, f"{text!r} is not an integer")
    value = sign * int(digits, base)
    if not INT_MIN <= value <= INT_MAX:
        raise ParamError(errno.ERANGE, f"{text.strip()} is out of range for an int")
    return value


@dataclasses.dataclass(frozen=True)
class Param:
    """One sysfs entry."""

    name: str
    kind: str  # "local", "daemon", "perf", "stats"
    param_op: int | None = None  # PARAM op for daemon knobs
    check: Callable[[int], bool] = lambda v: True  # the range a store must be in
    perf_type: int | None = None  # PERF_COUNT type for perf_counters/*
    readahead: bool = False  # needs ORANGEFS_FEATURE_READAHEAD
    pair: bool = False  # "count size": two values in value32[0..1]
    default: int | None = None  # local knobs only


def _nonneg(v: int) -> bool:
    return v >= 0


def _positive(v: int) -> bool:
    return v > 0


def _percentage(v: int) -> bool:
    return 0 <= v <= 100


def _cache(prefix: str, timeout_name: str, timeout_op, hard, soft, reclaim) -> list[Param]:
    return [
        Param(f"{prefix}/hard_limit", "daemon", hard, _nonneg),
        Param(f"{prefix}/soft_limit", "daemon", soft, _nonneg),
        Param(f"{prefix}/reclaim_percentage", "daemon", reclaim, _percentage),
        Param(f"{prefix}/{timeout_name}", "daemon", timeout_op, _nonneg),
    ]


PARAMS: dict[str, Param] = {
    p.name: p
    for p in [
        Param("op_timeout_secs", "local", default=ORANGEFS_DEFAULT_OP_TIMEOUT_SECS),
        Param("slot_timeout_secs", "local", default=ORANGEFS_DEFAULT_SLOT_TIMEOUT_SECS),
        Param("cache_timeout_msecs", "local", default=ORANGEFS_CACHE_TIMEOUT_MSECS),
        Param("dcache_timeout_msecs", "local", default=ORANGEFS_DCACHE_TIMEOUT_MSECS),
        Param("getattr_timeout_msecs", "local", default=ORANGEFS_GETATTR_TIMEOUT_MSECS),
        Param("readahead_count", "daemon", ParamOp.READAHEAD_COUNT, _nonneg, readahead=True),
        Param("readahead_size", "daemon", ParamOp.READAHEAD_SIZE, _nonneg, readahead=True),
        Param("readahead_count_size", "daemon", ParamOp.READAHEAD_COUNT_SIZE, _nonneg, readahead=True, pair=True),
        Param("readahead_readcnt", "daemon", ParamOp.READAHEAD_READCNT, _nonneg, readahead=True),
        Param("perf_counter_reset", "daemon", ParamOp.PERF_RESET, lambda v: v in (0, 1)),
        Param("perf_history_size", "daemon", ParamOp.PERF_HISTORY_SIZE, _positive),
        Param("perf_time_interval_secs", "daemon", ParamOp.PERF_TIME_INTERVAL_SECS, _positive),
        *_cache("acache", "timeout_msecs", ParamOp.ACACHE_TIMEOUT_MSECS, ParamOp.ACACHE_HARD_LIMIT,
                ParamOp.ACACHE_SOFT_LIMIT, ParamOp.ACACHE_RECLAIM_PERCENTAGE),
        *_cache("capcache", "timeout_secs", ParamOp.CAPCACHE_TIMEOUT_SECS, ParamOp.CAPCACHE_HARD_LIMIT,
                ParamOp.CAPCACHE_SOFT_LIMIT, ParamOp.CAPCACHE_RECLAIM_PERCENTAGE),
        *_cache("ccache", "timeout_secs", ParamOp.CCACHE_TIMEOUT_SECS, ParamOp.CCACHE_HARD_LIMIT,
                ParamOp.CCACHE_SOFT_LIMIT, ParamOp.CCACHE_RECLAIM_PERCENTAGE),
        *_cache("ncache", "timeout_msecs", ParamOp.NCACHE_TIMEOUT_MSECS, ParamOp.NCACHE_HARD_LIMIT,
                ParamOp.NCACHE_SOFT_LIMIT, ParamOp.NCACHE_RECLAIM_PERCENTAGE),
        Param("perf_counters/acache", "perf", perf_type=PerfCountType.ACACHE),
        Param("perf_counters/capcache", "perf", perf_type=PerfCountType.CAPCACHE),
        Param("perf_counters/ncache", "perf", perf_type=PerfCountType.NCACHE),
        Param("stats/reads", "stats"),
        Param("stats/writes", "stats"),
    ]
}


def lookup(name: str) -> Param:
    """The knob called ``name``.

    Raises:
        ParamError: ENOENT for a name sysfs does not have.
    """
    try:
        return PARAMS[name]
    except KeyError:
        raise ParamError(errno.ENOENT, f"no such knob {name!r}") from None


def parse_store(param: Param, text: str) -> tuple[int, ...]:
    """Parse and range-check what is written to a knob, before any upcall.

    Returns:
        One value, or two for ``readahead_count_size``.

    Raises:
        ParamError: EINVAL/ERANGE from the parser, EINVAL out of range, EACCES
            for read-only entries, EINVAL for perf_counters (see module doc).
    """
    if param.kind == "stats":
        raise ParamError(errno.EACCES, f"{param.name} is read-only")
    if param.kind == "perf":
        raise ParamError(errno.EINVAL, f"{param.name}: unknown kobject (kernel quirk, spec §6.1)")
    if param.pair:
        parts = text.split()
        if len(parts) != 2:
            raise ParamError(errno.EINVAL, f"{param.name} takes two values: count size")
        values = tuple(kstrtoint(p) for p in parts)
    else:
        try:
            values = (kstrtoint(text),)
        except ParamError as exc:
            # Kernel-int entries answer any parse failure with EINVAL.
            if param.kind == "local":
                raise ParamError(errno.EINVAL, exc.strerror) from None
            raise
    if not all(param.check(v) for v in values):
        raise ParamError(errno.EINVAL, f"{param.name}: {' '.join(map(str, values))} is out of range")
    return values
