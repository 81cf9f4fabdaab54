"""The shared buffers: ``io-buffer`` and ``readdir-buffer``, mapped by both sides (spec §5, §7).

The kernel pins the client-core's memory; across processes we do the
opposite: on MAP the broker creates the two buffers with the client-core's
geometry, maps them, and hands them over by fd (SCM_RIGHTS) so the
client-core maps the very same pages.  They are anonymous shared memory
(``memfd_create``), named ``io-buffer`` and ``readdir-buffer`` as
``/proc/PID/maps`` shows them: a file in the run directory would be written
back to disk whenever the data path dirties it when the run directory is not
on tmpfs (measured: a 1 GiB ``dd`` then cost the client-core 3.7 s of system
time).  Without memfd the files are made in the run directory and unlinked
once handed over.  Pages are touched once up front because first-touch
faults run an order of magnitude slower than copies (shared/MACHINE-NOTES.md).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .rundir import IO_BUFFER, READDIR_BUFFER


class SharedBuffer:
    """One mapped buffer split into equal slots."""

    def __init__(self, path: Path, slot_size: int, count: int) -> None:
        self.slot_size = slot_size
        self.count = count
        self.size = slot_size * count
        if hasattr(os, "memfd_create"):
            self.path: Path | None = None
            self.fd = os.memfd_create(path.name, os.MFD_CLOEXEC)
        else:
            self.path = path
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
        self.unlink()

    def unlink(self) -> None:
        """Drop the name, if the buffer has one in the run directory."""
        if self.path is not None:
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
            buf.unlink()

    def close(self) -> None:
        self.io.close()
        self.readdir.close()
