"""The broker's FUSE mounts: started by ``serve --mount`` or, later, by ``pvfs2dev mount`` (control channel).

A mount is a :class:`~pvfs2dev.fuse.FuseMount` running as a task of the
broker's own nursery, so its session shares the broker's trio loop and its
requests take the same ``service_operation`` path as every other caller.
pyfuse3 keeps one session per process, so a broker serves at most one FUSE
mount at a time; asking for a second is EBUSY, as mount(2) is for a busy
mountpoint.  Once a session ends (``pvfs2dev umount``, ``fusermount3 -u``, or
SIGTERM) the slot is free again.

The two ways of mounting differ in one point, on purpose: ``serve --mount``
starts before any client-core, so its FS_MOUNT is retried until one answers;
``pvfs2dev mount`` is mount(2) on a running system and fails with the
FS_MOUNT's errno (ETIMEDOUT with no client-core after ``op_timeout_secs``).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Iterable

import trio

from .broker import Broker

log = logging.getLogger("pvfs2dev.mounts")

#: The device string a mount's FS_MOUNT carries when none is given.
DEFAULT_FSNAME = "tcp://localhost:3334/pvfs2-fs"


class FuseMounts:
    """Mounts FUSE filesystems in the broker's nursery and keeps track of them."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.current = None  # the FuseMount being served, if any
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery the mounts run in; returns only when cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def mount(self, mountpoint: str | os.PathLike, *, fsname: str, options: Iterable[str] = (),
                    retry: bool = False):
        """Mount the filesystem at ``mountpoint``; returns once FUSE is serving it.

        Args:
            retry: keep sending FS_MOUNT until a client-core answers
                (``serve --mount``); otherwise one attempt, as mount(2).

        Raises:
            OSError: EBUSY (a mount is already served), ENOENT/ENOTDIR (no
                such directory), EINVAL (bad device string or option), the
                FS_MOUNT's errno, or EIO if FUSE refused the mount.
        """
        from .fuse import FuseMount  # pyfuse3 is imported only when something is mounted

        if self._nursery is None:
            raise OSError(errno.EAGAIN, "the broker is not serving yet")
        path = Path(os.path.abspath(mountpoint))
        async with self._lock:
            if self.current is not None:
                raise OSError(errno.EBUSY, f"already serving a FUSE mount on {self.current.mountpoint} "
                                           "(one per broker process)")
            if not path.exists():
                raise OSError(errno.ENOENT, f"{path}: no such directory")
            if not path.is_dir():
                raise OSError(errno.ENOTDIR, f"{path}: not a directory")
            front = FuseMount(self.broker, path, fsname=fsname, options=options)
            self.current = front
            try:
                await self._nursery.start(self._serve, front, retry)
            except BaseException:
                self.current = None
                raise
        return front

    async def _serve(self, front, retry: bool, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False

        def up() -> None:
            nonlocal started
            started = True
            task_status.started()

        try:
            await front.run(retry=retry, on_mounted=up)
        except OSError as exc:
            if not started:
                raise  # the caller of mount() gets it
            log.error("the FUSE session on %s failed: %s", front.mountpoint, exc)
        else:
            if not started:  # stopped while FS_MOUNT was still waiting
                raise OSError(errno.EINTR, f"mounting {front.mountpoint} was interrupted")
        finally:
            if self.current is front:
                self.current = None

    async def umount(self, mountpoint: str | os.PathLike) -> None:
        """End the session on ``mountpoint``: data written back, FUSE unmounted, FS_UMOUNT sent.

        Raises:
            OSError: EINVAL if nothing of ours is mounted there; EBUSY while
                files or directories on it are open (umount(2) without -l).
        """
        front = self.current
        if front is None or Path(os.path.abspath(mountpoint)) != front.mountpoint:
            raise OSError(errno.EINVAL, f"{mountpoint}: not a pvfs2dev mount of this broker")
        if front.ops.files:
            raise OSError(errno.EBUSY, f"{mountpoint}: {len(front.ops.files)} files or directories are open")
        await front.stop()

    async def stop_all(self) -> None:
        """Unmount whatever is mounted (the broker is shutting down)."""
        if self.current is not None:
            await self.current.stop()

    def mountpoint_of(self, fs_id: int) -> str | None:
        """Where the kernel mount of ``fs_id`` is mounted with FUSE, if it is.

        By fs_id alone: a REMOUNT_ALL after a client-core restart gives the
        kernel's mount a new id while the FUSE mount stays what it was.
        """
        front = self.current
        if front is not None and front.fs_mounted and front.ops.fs_id == fs_id:
            return str(front.mountpoint)
        return None


__all__ = ["DEFAULT_FSNAME", "FuseMounts"]
