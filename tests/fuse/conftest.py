"""Fixtures of the FUSE tests: one running stack per test module, a fresh directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The broker mounted with ``default_permissions`` and a client-core, shared by one module's tests."""
    stack = Stack(tmp_path_factory.mktemp("fuse"), mount_options=("default_permissions",))
    try:
        yield stack
    finally:
        stack.stop()
    assert stack.serve.returncode == 0, stack.log("serve")
    assert "Traceback" not in stack.log("serve"), stack.log("serve")


@pytest.fixture
def mnt(stack, request) -> Path:
    """A fresh directory on the mount for one test."""
    path = stack.mnt / request.node.name.replace("[", "_").replace("]", "_")
    path.mkdir()
    return path
