"""Slot maps: the I/O and readdir slot allocators of orangefs-bufmap.c (spec §5.2).

Each map keeps the kernel's counter ``c``:

====  =====================================================================
c     meaning
====  =====================================================================
-1    no buffer installed (initial state, or fully torn down)
> 0   number of free slots
0     every slot busy
< -1  being torn down; -(c + 1) slots still held
====  =====================================================================

``get`` takes the lowest free slot when ``c > 0``, else the caller waits in
FIFO order.  The wait has an overall budget of ``slot_timeout_secs``; while
there is no buffer at all (``c < 0``) each sleep is capped at 30 s and a whole
30 s with still no buffer gives up.  Either way the waiter ends ETIMEDOUT —
or EINTR when signalled.  ``put`` frees a slot and hands it straight to the
first waiter (the kernel wakes one exclusive waiter, which then takes the
lowest free slot: the same outcome, made deterministic).  ``mark_killed``
starts a teardown; the map is gone (``c == -1``) when the last slot is put.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
from typing import Callable

from pvfs2proto import ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS


@dataclasses.dataclass(eq=False)
class SlotWaiter:
    """One caller waiting for a slot (``wait_for_free``)."""

    budget_end: float  # now + slot_timeout_secs when the wait began
    deadline: float = 0.0
    #: Set when the wait ends: the slot index, or -errno.
    result: int | None = None
    #: Called (no arguments) when ``result`` is set.
    wake: Callable[[], None] | None = None
    owner: object = None


@dataclasses.dataclass(frozen=True)
class SlotMapStats:
    """A snapshot of one slot map for pvfs2ctl."""

    name: str
    count: int
    c: int
    busy: tuple[int, ...]
    waiters: int


class SlotMap:
    """One ``struct slot_map``: counter, bitmap and FIFO wait queue."""

    def __init__(self, name: str, slot_timeout: Callable[[], float]) -> None:
        self.name = name
        self.c = -1
        self.count = 0
        self.busy = bytearray()  # one byte per slot: 1 = in use
        self.waiters: collections.OrderedDict[int, SlotWaiter] = collections.OrderedDict()
        self._slot_timeout = slot_timeout
        #: Called with ``now`` when a teardown finishes (c reaches -1).
        self.on_dead: Callable[[float], None] | None = None
        #: Called with a waiter's deadline whenever one is set.
        self.on_deadline: Callable[[float], None] | None = None

    # -- the kernel's operations ----------------------------------------------------------

    @property
    def installed(self) -> bool:
        return self.c >= 0

    @property
    def dying(self) -> bool:
        return self.c < -1

    def install(self, count: int, now: float) -> None:
        """``install``: a fresh map of ``count`` free slots; waiters get slots in order."""
        if self.c != -1:
            raise RuntimeError(f"{self.name} slot map installed twice (c={self.c})")
        self.c = self.count = count
        self.busy = bytearray(count)
        # wake_up_all: each waiter in turn takes a slot while there are any;
        # the rest keep waiting, now without the 30 s no-buffer cap.
        for waiter in list(self.waiters.values()):
            if self.c > 0:
                self._grant(waiter)
            else:
                self._set_deadline(waiter, now)

    def get(self, now: float, waiter: SlotWaiter | None = None) -> int | SlotWaiter:
        """``get``: a free slot index now, or a queued :class:`SlotWaiter`.

        The waiter's ``wake`` is called when it is granted a slot or fails.
        A caller that finds others already waiting queues behind them.
        """
        if self.c > 0 and not self.waiters:
            return self._take()
        if waiter is None:
            waiter = SlotWaiter(budget_end=now + self._slot_timeout())
        else:
            waiter.budget_end = now + self._slot_timeout()
        self._set_deadline(waiter, now)
        self.waiters[id(waiter)] = waiter
        return waiter

    def put(self, slot: int, now: float) -> None:
        """``put``: free ``slot``; hand it to the first waiter, or finish a teardown."""
        if not 0 <= slot < self.count or not self.busy[slot]:
            raise RuntimeError(f"{self.name} slot {slot} put but not held")
        self.busy[slot] = 0
        self.c += 1
        if self.c > 0 and self.waiters:
            self._grant(next(iter(self.waiters.values())))
        elif self.c == -1:
            self._dead(now)

    def mark_killed(self, now: float) -> None:
        """``mark_killed``: start a teardown; in-use slots keep ``c`` below -1."""
        if self.c < 0:
            return
        self.c -= self.count + 1
        if self.c == -1:
            self._dead(now)

    def cancel_wait(self, waiter: SlotWaiter, err: int) -> bool:
        """End a waiter's wait with ``-err`` (EINTR for a signal). False if it was not waiting."""
        if self.waiters.pop(id(waiter), None) is None:
            return False
        waiter.result = -err
        if waiter.wake:
            waiter.wake()
        return True

    def expire(self, now: float) -> None:
        """End every wait whose deadline has passed (ETIMEDOUT, spec §5.2)."""
        for waiter in [w for w in self.waiters.values() if w.deadline <= now]:
            self.cancel_wait(waiter, errno.ETIMEDOUT)

    def next_deadline(self) -> float | None:
        return min((w.deadline for w in self.waiters.values()), default=None)

    def statistics(self) -> SlotMapStats:
        return SlotMapStats(
            self.name, self.count, self.c, tuple(i for i, b in enumerate(self.busy) if b), len(self.waiters)
        )

    # -- internals ---------------------------------------------------------------------------

    def _take(self) -> int:
        self.c -= 1
        slot = self.busy.index(0)  # find_first_zero_bit
        self.busy[slot] = 1
        return slot

    def _grant(self, waiter: SlotWaiter) -> None:
        del self.waiters[id(waiter)]
        waiter.result = self._take()
        if waiter.wake:
            waiter.wake()

    def _set_deadline(self, waiter: SlotWaiter, now: float) -> None:
        # wait_for_free: while there is no buffer, sleep at most 30 s at a time
        # and give up if a whole 30 s passes with still none.
        if self.c < 0:
            waiter.deadline = min(waiter.budget_end, now + ORANGEFS_BUFMAP_WAIT_TIMEOUT_SECS)
        else:
            waiter.deadline = waiter.budget_end
        if self.on_deadline:
            self.on_deadline(waiter.deadline)

    def _dead(self, now: float) -> None:
        self.count = 0
        self.busy = bytearray()
        # wake_up_all at c == -1: the waiters look again, find no buffer, and
        # start their 30 s no-buffer sleep from now.
        for waiter in self.waiters.values():
            self._set_deadline(waiter, now)
        if self.on_dead:
            self.on_dead(now)
