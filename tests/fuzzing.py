"""The two fuzz profiles, one switch for every fuzzer in the suite (issue 7, Fuzzing).

Every fuzzer is marked ``fuzz`` and takes its budget from here:

* **ci** (the default): each fuzzer's CI budget, seeded the same on every run
  (the ``ci`` hypothesis profile derandomizes), so a CI failure reproduces.
  All fuzzers together run in well under two minutes on the 2-core machine.
* **long** (``pytest --long``): ``LONG_FACTOR`` times the examples (or the
  budget a fuzzer names for itself), a fresh seed on every run and the local
  ``.hypothesis/`` database, so a failure found once is replayed first::

      ./dev test -m fuzz --long

A failure hypothesis shrinks becomes a plain regression test beside the
fuzzer that found it (``test_kernel_regressions.py``,
``tests/protocol/test_regressions.py``, ``test_channel_regressions.py``,
``tests/clientcore/test_upcall_fuzz.py``) — not a ``@example`` — so it runs
on every CI run whatever the profile.

``conftest.py`` sets :data:`LONG` from the command line before any test module
is imported, so module-level ``@fuzz_settings(...)`` decorators see it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

#: True under ``pytest --long``; set by tests/conftest.py at configure time.
LONG = False
#: How many more examples the long profile runs than CI, unless a fuzzer names its own long budget.
LONG_FACTOR = 20


def budget(ci: int, long: int | None = None) -> int:
    """The number of examples (or iterations) for this profile: ``ci``, or ``long`` (default ``ci * LONG_FACTOR``)."""
    if not LONG:
        return ci
    return long if long is not None else ci * LONG_FACTOR


def fuzz_settings(ci: int | None = None, long: int | None = None, **kwargs) -> settings:
    """hypothesis settings for a fuzzer: its example budget in this profile, no deadline, no too-slow checks.

    ``ci`` defaults to the loaded profile's ``max_examples``; other keyword
    arguments go to :class:`hypothesis.settings` unchanged.
    """
    ci = settings.default.max_examples if ci is None else ci
    kwargs.setdefault("deadline", None)
    kwargs.setdefault("suppress_health_check", [HealthCheck.too_slow, HealthCheck.data_too_large])
    return settings(max_examples=budget(ci, long), **kwargs)
