"""The op record and the one table of its state transitions (spec §4.1–§4.2).

Theory of operation
-------------------
An op is one upcall on its way through the emulated kernel.  Its ``state`` is
the kernel's ``op_state``: one of UNKNOWN, WAITING (on the request list),
INPROGR (read by the client-core, in the in-progress table) or SERVICED
(downcall received), with PURGED (the client-core's device closed first) and
GIVEN_UP (the submitter stopped waiting) OR-ed on.  Every change goes through
:meth:`Op.transition`, which looks the (event, state) pair up in
:data:`TRANSITIONS`; a pair that is not there is a bug and raises
:class:`TransitionError`.

The events:

========  ==========================================================  ===========
event     when                                                          kernel
========  ==========================================================  ===========
queue     service_operation links the op (fresh, a retry after a      set_op_state_waiting
          purge, or an I/O turned into a CANCEL)
read      a device read hands the op to the client-core               set_op_state_inprogress
service   its downcall was written                                    set_op_state_serviced
purge     the device was released with the op still linked            set_op_state_purged
give_up   the submitter's wait ended without service                  orangefs_clean_up_interrupted_operation
========  ==========================================================  ===========
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from pvfs2proto import OpCode, OpFlags, OpState, opname, state_names

# Plain ints: IntFlag arithmetic costs microseconds on the hot path.
W, I, S, P, G = (int(f) for f in (OpState.WAITING, OpState.INPROGR, OpState.SERVICED, OpState.PURGED, OpState.GIVEN_UP))
_INTERRUPTIBLE, _WRITEBACK = int(OpFlags.INTERRUPTIBLE), int(OpFlags.WRITEBACK)

#: (event, state before) → state after.  Nothing else is allowed.
TRANSITIONS: dict[tuple[str, int], int] = {
    # A fresh op, or one whose submitter gave up and tries again (after a
    # purge), or an in-progress I/O turned into a CANCEL: the state is
    # assigned, so the old bits go.
    ("queue", 0): W,
    ("queue", W | G): W,
    ("queue", I | G): W,
    ("queue", W | P | G): W,
    ("queue", I | P | G): W,
    ("read", W): I,
    ("service", I): S,
    ("purge", W): W | P,
    ("purge", I): I | P,
    ("give_up", W): W | G,
    ("give_up", I): I | G,
    ("give_up", W | P): W | P | G,
    ("give_up", I | P): I | P | G,
}


class TransitionError(RuntimeError):
    """An op was asked to make a transition the kernel never makes (a bug)."""


#: How a submitter's wait ended (spec §4.6), before it is turned into a result.
WAIT_SERVICED, WAIT_INTERRUPTED, WAIT_PURGED, WAIT_TIMED_OUT = "serviced", "interrupted", "purged", "timed out"


@dataclasses.dataclass(eq=False)
class Op:
    """``struct orangefs_kernel_op_s``: one upcall in flight, with its bookkeeping."""

    tag: int
    type: int
    upcall: bytearray  # the 8528 bytes sent to the client-core, tag-independent
    flags: int = 0  # service_operation flags (OpFlags)
    fs_id: int = 0  # §4.7, for the device read's mount filter
    uid: int = 0
    gid: int = 0
    pid: int = 0
    tgid: int = 0
    state: int = 0
    attempts: int = 0
    #: The I/O or readdir slot its upcall names; for a CANCEL, the I/O slot
    #: that is freed when the cancel completes (``slot_to_free``).
    slot: int | None = None
    uses_shared_memory: bool = False
    #: Whether this op is a CANCEL made from an interrupted I/O.
    is_cancel: bool = False
    downcall: bytes | bytearray | None = None  # the 8224 bytes as written (a private copy)
    trailer: bytes | None = None
    #: 0 or -errno once service_operation has returned; None before.
    result: int | None = None
    #: Where the op is linked: "request", "inprogress", "mutex" or None.
    linked: str | None = None
    deadline: float | None = None
    wait_outcome: str | None = None
    #: Whether the next round waits op_timeout_secs even with a daemon (retries).
    retry_timeout: bool = False
    created: float = 0.0
    queued: float = 0.0
    read_at: float | None = None
    done_at: float | None = None
    #: Called (no arguments) when service_operation returns, i.e. result is set.
    wake: Callable[[], None] | None = None
    #: Free-form owner data for the edge (the VFS request this op serves).
    owner: object = None

    def transition(self, event: str) -> None:
        """Apply ``event`` by the table.

        Raises:
            TransitionError: the kernel never makes this transition.
        """
        try:
            self.state = TRANSITIONS[(event, self.state)]
        except KeyError:
            raise TransitionError(
                f"op {self.tag} ({opname(self.type)}): no '{event}' from state {state_names(self.state)}"
            ) from None

    @property
    def name(self) -> str:
        return opname(self.type)

    @property
    def serviced(self) -> bool:
        return bool(self.state & S)

    @property
    def purged(self) -> bool:
        return bool(self.state & P)

    @property
    def given_up(self) -> bool:
        return bool(self.state & G)

    @property
    def interruptible(self) -> bool:
        return bool(self.flags & _INTERRUPTIBLE) and not self.flags & _WRITEBACK

    @property
    def killable(self) -> bool:
        return not self.flags & _WRITEBACK

    def __repr__(self) -> str:
        return f"<Op {self.tag} {self.name} {state_names(self.state)}>"


#: Ops that carry a slot index in their upcall and resubmit from scratch after
#: a purge (``uses_shared_memory``).
SLOT_OPS = frozenset({OpCode.FILE_IO, OpCode.READDIR})
