"""What the figures were taken on: CPU, processors, kernel, Python, pyfuse3, the disk measured."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def filesystem_of(path: Path) -> str:
    """'type on device' of the mount holding ``path``."""
    real, best = os.path.realpath(path), ("", "?", "?")
    with open("/proc/mounts") as f:
        for line in f:
            device, point, fstype, *_ = line.split()
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
                best = (point, fstype, device)
    return f"{best[1]} on {best[2]}"


def machine(disk: Path | None = None) -> dict:
    """cpu (model name), nproc (processors this process may use), kernel, python, pyfuse3, and with
    ``disk`` the filesystem holding it."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import pyfuse3

        fuse = pyfuse3.__version__
    except ImportError:
        fuse = "?"
    box = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(), "cpu": cpu,
           "python": f"{platform.python_implementation()} {platform.python_version()}", "pyfuse3": fuse}
    if disk is not None:
        box["filesystem"] = filesystem_of(disk)
    return box


def describe(box: dict) -> str:
    """One line: '2 CPUs (AMD EPYC 7B13), Linux 6.1.0, CPython 3.11.7, pyfuse3 3.5.0, ext4 on /dev/vda'."""
    parts = [f"{box['nproc']} CPU{'' if box['nproc'] == 1 else 's'} ({box['cpu']})", f"Linux {box['kernel']}",
             box["python"], f"pyfuse3 {box['pyfuse3']}"]
    if "filesystem" in box:
        parts.append(box["filesystem"])
    return ", ".join(parts)
