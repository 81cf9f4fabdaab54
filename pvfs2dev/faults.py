"""Kernel-side faults: what ``pvfs2ctl fault`` can do to the emulated kernel while ops flow.

The client-core side misbehaves with ``clientcore --fault``; this is the other
half, the things that happen inside a real kernel and that no test can make a
real one do on demand:

* **interrupt** an op's caller, as a signal would (ordinary: only an
  interruptible wait ends; fatal: every wait but WRITEBACK's).  A FILE_IO the
  client-core has already read is then given up and becomes a CANCEL
  (spec §4.1, §4.10).
* **hold slots**: take free I/O or readdir slots as a caller would and keep
  them, so the next callers queue FIFO for a slot and time out after
  ``slot_timeout_secs`` (spec §4.5).  Held slots go back on ``release-slots``
  or when the client-core's device is released (the teardown waits for every
  slot, as the kernel's does for its callers, who are woken by the purge).
* **pause reads**: the device has nothing to read — READ is EAGAIN and POLL
  never reports POLLIN — while ops pile up on the request list, as behind a
  client-core that stopped reading.  With the daemon in service their wait has
  no timeout (spec §4.5 step 4), so they wait until reads resume, a signal
  comes, or the daemon goes away (then the purge path runs).

None of this changes a kernel rule; it only arranges the circumstances.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker import Broker
    from .bufmap import SlotMap


class KernelFaults:
    """The faults currently arranged in one broker."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        #: READ answers EAGAIN and POLL waits, whatever is queued.
        self.reads_paused = False
        #: Slot indices held by ``hold_slots``, per map name.
        self.held: dict[str, list[int]] = {"io": [], "readdir": []}

    def _map(self, name: str) -> "SlotMap":
        kernel = self.broker.kernel
        if name == "io":
            return kernel.io_slots
        if name == "readdir":
            return kernel.readdir_slots
        raise OSError(errno.EINVAL, f"no slot map {name!r} (io or readdir)")

    # -- interrupt -----------------------------------------------------------------------------------

    def interrupt(self, tag: int, *, fatal: bool = False) -> str:
        """Signal the caller waiting on op ``tag``; returns the op's name.

        Raises:
            OSError: ESRCH (no live op with that tag), EINVAL (the op has no
                caller to signal: a CANCEL, or a remount's own FS_MOUNT).
        """
        op = self.broker.kernel.live.get(tag)
        if op is None:
            raise OSError(errno.ESRCH, f"no op with tag {tag} in flight")
        if op.owner is None or not hasattr(op.owner, "interrupt"):
            raise OSError(errno.EINVAL, f"op {tag} ({op.name}) has no caller to signal")
        op.owner.interrupt(fatal=fatal)
        return op.name

    # -- slots -----------------------------------------------------------------------------------------

    def hold_slots(self, name: str, count: int) -> list[int]:
        """Take up to ``count`` slots that are free now; returns the indices taken.

        Raises:
            OSError: EINVAL (bad map name or count), ENXIO (no buffer mapped).
        """
        if count < 1:
            raise OSError(errno.EINVAL, "hold at least one slot")
        slots = self._map(name)
        if not slots.installed or slots.dying:
            raise OSError(errno.ENXIO, f"no {name} buffer is mapped")
        now = self.broker.now()
        taken = []
        while len(taken) < count:
            got = slots.get(now)
            if not isinstance(got, int):
                # Never wait: a hold takes what is free, so drop the waiter at once.
                slots.cancel_wait(got, errno.EAGAIN)
                break
            taken.append(got)
        self.held[name].extend(taken)
        return taken

    def release_slots(self, name: str | None = None, count: int | None = None) -> int:
        """Give back up to ``count`` (default all) slots held in map ``name`` (both if None), oldest first.

        Returns how many went back.  Raises OSError EINVAL for a bad name or count.
        """
        if count is not None and count < 1:
            raise OSError(errno.EINVAL, "release at least one slot")
        names = ["io", "readdir"] if name is None else [name]
        now = self.broker.now()
        given = 0
        for which in names:
            slots = self._map(which)
            while self.held[which] and (count is None or given < count):
                slots.put(self.held[which].pop(0), now)
                given += 1
        return given

    def on_device_release(self) -> None:
        """The client-core's device was released: held slots go back so the teardown can finish."""
        if self.held["io"] or self.held["readdir"]:
            self.release_slots()

    # -- reads -----------------------------------------------------------------------------------------

    def pause_reads(self, paused: bool) -> None:
        self.reads_paused = paused
        if not paused:
            self.broker.wake_pollers()

    def snapshot(self) -> dict:
        return {"reads_paused": self.reads_paused, "held_slots": {k: list(v) for k, v in self.held.items()}}


__all__ = ["KernelFaults"]
