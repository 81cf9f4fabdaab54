"""The shared buffers: ``io-buffer`` and ``readdir-buffer`` files, mapped by both sides (spec §5, §7).

The kernel pins the client-core's memory; across processes we do the
opposite: on MAP the broker creates the two files with the client-core's
geometry, maps them, and hands the open files over by fd (SCM_RIGHTS) so the
client-core maps the very same pages.  The files are unlinked once both fds
are sent, so nothing outlives the two processes; pages are touched once up
front because first-touch faults run an order of magnitude slower than copies
(shared/MACHINE-NOTES.md).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .rundir import IO_BUFFER, READDIR_BUFFER


class SharedBuffer:
    """One mapped buffer split into equal slots."""

    def __init__(self, path: Path, slot_size: int, count: int) -> None:
        self.path = path
        self.slot_size = slot_size
        self.count = count
        self.size = slot_size * count
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(self.fd, self.size)
            self.map = mmap.mmap(self.fd, self.size) if self.size else None
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map) if self.map is not None else memoryview(b"")
        # Pre-fault every page so the data path never pays for first touch.
        for offset in range(0, self.size, mmap.PAGESIZE):
            self.view[offset] = 0

    def slot(self, index: int) -> memoryview:
        """The bytes of slot ``index``."""
        start = index * self.slot_size
        return self.view[start : start + self.slot_size]

    def close(self) -> None:
        self.view.release()
        if self.map is not None:
            self.map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class BufferPair:
    """What one MAP creates: the I/O buffer and the readdir buffer."""

    def __init__(self, rundir: Path, io_size: int, io_count: int, readdir_size: int, readdir_count: int) -> None:
        self.io = SharedBuffer(rundir / IO_BUFFER, io_size, io_count)
        try:
            self.readdir = SharedBuffer(rundir / READDIR_BUFFER, readdir_size, readdir_count)
        except BaseException:
            self.io.close()
            raise

    @property
    def fds(self) -> list[int]:
        return [self.io.fd, self.readdir.fd]

    def handed_over(self) -> None:
        """The client-core has the fds: drop the names, keep the mappings."""
        for buf in (self.io, self.readdir):
            try:
                os.unlink(buf.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self.io.close()
        self.readdir.close()
