"""Shared pytest configuration: hypothesis profiles.

``ci`` (the default) is deterministic: a fixed number of examples, the same
seed on every run (``derandomize``), no example database to replay from, no
per-example deadline (the 2-core CI machines are noisy).  ``dev`` explores:
fewer examples per run, a fresh random seed each time, and the local
``.hypothesis/`` database so a failure found once is replayed first.

Pick one with ``HYPOTHESIS_PROFILE=dev pytest ...``.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
