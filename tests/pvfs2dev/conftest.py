"""Fixtures for the socket-level tests: a broker running in the test's trio run.

``broker`` starts :class:`pvfs2dev.server.Server` on ``tmp_path`` in pytest-trio's
``nursery`` fixture, which is cancelled when the test ends, so the broker, its
sockets and buffer files go with it even when the test fails.  ``rundir`` is
where its sockets are.  ``served`` adds the minimal client-core (which answers
FS_MOUNT with fs_id 7) and a filesystem mounted through the VFS channel.
"""

from __future__ import annotations

import pytest

from pvfs2ctl.client import VfsClient
from pvfs2dev.server import Config, Server

from .live import minimal_core, mount, vfs_path


@pytest.fixture
def rundir(tmp_path):
    return tmp_path


@pytest.fixture
async def broker(rundir, nursery):
    """A running broker (the :class:`Server`); it stops with the test's nursery."""
    server = await nursery.start(Server(Config(rundir=rundir)).run)
    yield server


@pytest.fixture
async def minimal(broker, rundir, nursery):
    """The minimal client-core serving the broker (4 I/O slots of 1 MiB); yields its cancel scope."""
    scope = await nursery.start(minimal_core, rundir)
    yield scope
    scope.cancel()


@pytest.fixture
async def served(minimal, rundir):
    """A broker, the minimal client-core, and fs_id 7 mounted through the VFS channel."""
    async with VfsClient.connect(vfs_path(rundir)) as vfs:
        await mount(vfs)
    return minimal
