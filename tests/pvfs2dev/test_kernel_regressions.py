"""Plain regression tests for what the stateful fuzz (test_kernel_stateful.py) found in the kernel core.

Each test replays a shrunk failing example step by step, without hypothesis.
"""

import errno

import pytest

from pvfs2proto import OpState

from .harness import OpCode, World


@pytest.mark.parametrize("op_type", [OpCode.GETATTR, OpCode.FS_MOUNT, OpCode.PARAM], ids=lambda t: t.name)
def test_eagain_downcall_is_returned_not_retried(op_type):
    """Spec §4.5 steps 7–9: a serviced op returns its downcall status even when it is EAGAIN; only a purge retries.

    Found by the fuzz: a client-core answering a GETATTR with EAGAIN made
    service_operation re-queue the SERVICED op (TransitionError, the write
    failed and the caller was never woken).
    """
    w = World()
    w.client_open()
    op = w.submit(op_type, fs_id=7 if op_type == OpCode.GETATTR else None)
    frame = w.read_op()
    assert w.answer(frame, err=errno.EAGAIN) == 8240
    assert op.result == -errno.EAGAIN
    assert w.wakes(op) == 1
    assert op.state == OpState.SERVICED
    assert op.attempts == 0
    assert w.queued() == []


def test_eagain_downcall_for_a_slot_op_counts_no_attempt():
    """Spec §4.5 steps 7–9: a READDIR answered EAGAIN gets EAGAIN back, unpurged, with no attempt counted."""
    w = World()
    w.start_client()
    slot = w.get_slot("readdir")
    op = w.new(OpCode.READDIR, fs_id=0)
    w.k.set_slot(op, slot)
    w.k.service(op, w.now)
    w.answer(w.read_op(), err=errno.EAGAIN)
    assert op.result == -errno.EAGAIN and not op.purged
    assert op.attempts == 0 and not op.retry_timeout
    assert w.wakes(op) == 1
