"""Running the broker: the three sockets, their servers, the timer, and a clean exit."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
from pathlib import Path

import trio

from pvfs2proto.constants import ORANGEFS_DEFAULT_HASH_TABLE_SIZE, ORANGEFS_READDIR_DEFAULT_DESC_COUNT

from .broker import Broker
from .control_server import ControlServer
from .device_server import DeviceServer
from .kernel import Kernel
from .mounts import DEFAULT_FSNAME, FuseMounts
from .rundir import CONTROL_SOCKET, DEVICE_SOCKET, VFS_SOCKET, prepare_rundir
from .vfs_server import VfsServer

log = logging.getLogger("pvfs2dev")



@dataclasses.dataclass
class Config:
    rundir: Path
    op_timeout_secs: int | None = None
    slot_timeout_secs: int | None = None
    hash_table_size: int = ORANGEFS_DEFAULT_HASH_TABLE_SIZE
    readdir_slots: int = ORANGEFS_READDIR_DEFAULT_DESC_COUNT
    #: Where to mount the filesystem with FUSE (None: no mount).
    mount: Path | None = None
    #: The device string the mount's FS_MOUNT carries.
    fsname: str = DEFAULT_FSNAME
    #: FUSE mount options (``allow_other``, ``default_permissions`` …).
    mount_options: list[str] = dataclasses.field(default_factory=list)


async def _bind(path: Path, kind: int, mode: int) -> trio.socket.SocketType:
    if path.is_socket():
        path.unlink()  # left behind by a broker that died; ours now
    sock = trio.socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    try:
        await sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """The broker with its sockets; ``run`` serves until cancelled or signalled."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.kernel = Kernel(
            op_timeout_secs=config.op_timeout_secs,
            slot_timeout_secs=config.slot_timeout_secs,
            hash_table_size=config.hash_table_size,
            readdir_slots=config.readdir_slots,
            now=trio.current_time(),
        )
        self.rundir = prepare_rundir(config.rundir)
        self.broker = Broker(self.kernel, self.rundir)
        self.device = DeviceServer(self.broker)
        self.vfs = VfsServer(self.broker)
        self.mounts = FuseMounts(self.broker)
        self.control = ControlServer(self.broker, self.mounts)
        self._failed: OSError | None = None
        self._stopping = False
        self.paths = [self.rundir / DEVICE_SOCKET, self.rundir / VFS_SOCKET, self.rundir / CONTROL_SOCKET]

    async def run(self, *, handle_signals: bool = False, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # Signals are caught from before the sockets exist: a SIGTERM sent as
        # soon as they appear must still be a clean shutdown, not a kill.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) if handle_signals \
                else contextlib.nullcontext() as signals:
            await self._run(signals, task_status)

    async def _run(self, signals, task_status) -> None:
        sockets = []
        try:
            sockets.append(await _bind(self.paths[0], socket.SOCK_SEQPACKET, 0o600))
            sockets.append(await _bind(self.paths[1], socket.SOCK_STREAM, 0o666))
            sockets.append(await _bind(self.paths[2], socket.SOCK_STREAM, 0o666))
            async with trio.open_nursery() as nursery:
                await nursery.start(self.broker.run_timer)
                await nursery.start(self.device.serve, sockets[0])
                await nursery.start(self.vfs.serve, sockets[1])
                await nursery.start(self.control.serve, trio.SocketListener(sockets[2]))
                await nursery.start(self.mounts.run)
                log.info("broker serving in %s", self.rundir)
                if self.config.mount is not None:
                    nursery.start_soon(self._mount, nursery.cancel_scope)
                task_status.started(self)
                if signals is not None:
                    async for signum in signals:
                        log.info("%s: shutting down", signal.Signals(signum).name)
                        break
                    await self.shutdown()
                    nursery.cancel_scope.cancel()
            if self._failed is not None:
                raise self._failed
        finally:
            for sock in sockets:
                sock.close()
            for path in self.paths:
                try:
                    if path.is_socket():
                        path.unlink()
                except OSError:
                    pass
            if self.broker.buffers is not None:
                self.broker.buffers.close()
                self.broker.buffers = None

    async def _mount(self, scope: trio.CancelScope) -> None:
        """``--mount``: FS_MOUNT once a client-core answers, then FUSE; if that fails the broker stops."""
        try:
            await self.mounts.mount(self.config.mount, fsname=self.config.fsname,
                                    options=self.config.mount_options, retry=True)
        except OSError as exc:
            if self._stopping:
                return  # SIGTERM before any client-core answered: nothing was mounted
            log.error("%s", exc)
            self._failed = exc
            scope.cancel()

    async def shutdown(self) -> None:
        """Unmount, release the device as a client-core close would, then end every waiting call.

        The release purges what is in flight; calls that would retry are then
        ended with EINTR, as the processes of a system going down are killed,
        and each gets its reply before the sockets close.
        """
        now = trio.current_time()
        self._stopping = True
        # Unmount first, while the client-core can still answer FS_UMOUNT.
        await self.mounts.stop_all()
        if self.device.file is not None:
            self.device.release(self.device.file)
        for conn in list(self.vfs.connections):
            for call in list(conn.calls.values()):
                call.interrupt(fatal=True)
        # Let the woken calls send their replies.
        with trio.move_on_after(1.0):
            while any(conn.calls for conn in self.vfs.connections):
                await trio.sleep(0.01)
        log.info("broker stopped after %.1f s", now - self.kernel.started)
