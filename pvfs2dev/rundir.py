"""Where the broker's sockets and buffer files live (shared/DESIGN.md, Processes and sockets)."""

from __future__ import annotations

import os
from pathlib import Path

DEVICE_SOCKET = "pvfs2-req"
VFS_SOCKET = "pvfs2-vfs"
CONTROL_SOCKET = "pvfs2-ctl"
IO_BUFFER = "io-buffer"
READDIR_BUFFER = "readdir-buffer"


def default_rundir() -> Path:
    """``$PVFS2DEV_RUNDIR``, else /run/pvfs2dev for root, else $XDG_RUNTIME_DIR/pvfs2dev, else /tmp/pvfs2dev-$UID."""
    explicit = os.environ.get("PVFS2DEV_RUNDIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/pvfs2dev")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "pvfs2dev"
    return Path(f"/tmp/pvfs2dev-{os.geteuid()}")


def prepare_rundir(path: Path) -> Path:
    """Create the run directory (mode 0700) if needed and refuse one another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to us")
    os.chmod(path, 0o700)
    return path
