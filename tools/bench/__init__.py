"""The benchmarks: ``pvfs2ctl bench`` (or ``python -m tools.bench``) and the pieces it runs.

The folder installs as the import name ``pvfs2bench`` (pyproject.toml,
package-dir), so an installed ``pvfs2ctl`` can run it; from a checkout it is
also ``tools.bench``.  Modules import each other relatively and start their
helper processes with :func:`module_command`, so both names work.

* :mod:`.cli`            the ``bench`` command: every figure beside its reference, one table, JSON results
* :mod:`.report`         figures, ratios and the table (pure)
* :mod:`.machine`        what the figures were taken on
* :mod:`.broker_bench`   device round trips, raw and trio ping-pong references, per-op cost by queue length
* :mod:`.stack_bench`    GETATTR and FILE_IO through broker + clientcore + store; memcpy and syscall floors
* :mod:`.latency`        p50/p99 per op type at 64 in flight through the whole stack
* :mod:`.fuse_reference` the same stat through a minimal pyfuse3 filesystem
* :mod:`.mount_bench`    dd, stat, create+unlink on the FUSE mount, a pyfuse3 passthrough and the native disk
* :mod:`.passthrough`    that pyfuse3 passthrough
* :mod:`.protocol_bench` encode+decode of device frames beside construct's compiled form
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The checkout holding this package when it runs from one (``tools/bench`` → the repository), else None.
CHECKOUT: Path | None = Path(__file__).resolve().parents[2]
if not (CHECKOUT / "pyproject.toml").is_file() or not (CHECKOUT / "tools" / "bench").is_dir():
    CHECKOUT = None


def module_command(module: str) -> tuple[list[str], Path | None]:
    """``python -m <this package>.<module>`` and the directory to start it in.

    Run as ``tools.bench`` the child needs the checkout as its working
    directory to import ``tools``; run as the installed ``pvfs2bench`` it
    needs nothing.
    """
    cwd = CHECKOUT if __package__.startswith("tools.") else None
    return [sys.executable, "-m", f"{__package__}.{module}"], cwd
