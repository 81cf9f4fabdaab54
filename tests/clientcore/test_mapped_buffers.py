"""The client-core's view of the shared buffers follows the geometry the broker handed over."""

from __future__ import annotations

import os

from clientcore.device import MappedBuffers
from pvfs2proto.constants import ORANGEFS_READDIR_DEFAULT_DESC_SIZE


def _memfd(name: str, size: int) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


def test_readdir_slots_follow_the_buffer_the_broker_made():
    """A broker started with --readdir-slots 7 hands over 7 × 128 KiB; the client-core sees 7 slots of 128 KiB."""
    slot = ORANGEFS_READDIR_DEFAULT_DESC_SIZE
    buffers = MappedBuffers(_memfd("io", 2 * 4096), _memfd("readdir", 7 * slot), 4096, 2)
    try:
        assert buffers.readdir_count == 7
        last = buffers.readdir_slot(6)
        try:
            last[:4] = b"tail"
            assert len(last) == slot
        finally:
            last.release()
        assert buffers.readdir[6 * slot : 6 * slot + 4] == b"tail"
    finally:
        buffers.close()
