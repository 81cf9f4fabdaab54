"""Shared pytest configuration: hypothesis profiles and the fuzz switch.

``ci`` (the default) is deterministic: a fixed number of examples, the same
seed on every run (``derandomize``), no example database to replay from, no
per-example deadline (the 2-core CI machines are noisy).  ``dev`` explores:
fewer examples per run, a fresh random seed each time, and the local
``.hypothesis/`` database so a failure found once is replayed first.
``long`` is ``dev`` with deep budgets; ``--long`` selects it and every
fuzzer's long budget (see tests/fuzzing.py).

Pick one with ``HYPOTHESIS_PROFILE=dev pytest ...``, or ``pytest -m fuzz --long``.
"""

import os

from hypothesis import settings

from tests import fuzzing

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("long", max_examples=200 * fuzzing.LONG_FACTOR, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", default=False,
        help="run every fuzzer (marker 'fuzz') with its long budget and a fresh seed: ./dev test -m fuzz --long",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: a fuzzer; its budget follows --long (tests/fuzzing.py)")
    if config.getoption("long"):
        # Before collection imports the test modules, whose @fuzz_settings read it.
        fuzzing.LONG = True
        settings.load_profile("long")
