"""The pytest plugin (pvfs2dev.testing) driving our own client-core: what a client-core author's tests do.

Every test here gets a broker and ``clientcore`` as processes from the
plugin's fixtures, talks to them only through the plugin's blocking helpers,
and leaves the broker quiescent.  The plugin's fixtures are ``pvfs2_``
prefixed, so they sit beside tests/pvfs2dev's own ``broker`` and ``rundir``.
"""

from __future__ import annotations

import errno
import signal
import sys

import pytest

from pvfs2dev.testing import assert_errno, assert_ok, upcalls
from pvfs2proto import ObjType, OpCode, OpFlags


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from offset to offset and from seed to seed."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def test_mount_gives_the_fs_id_and_root_the_broker_lists(pvfs2_kernel):
    """FS_MOUNT through the plugin registers the mount with the broker, root khandle included (spec §4.12)."""
    info = pvfs2_kernel.mount()
    assert len(info.root) == 16 and info.fs_id != 0
    (listed,) = pvfs2_kernel.status()["mounts"]
    assert (listed["fs_id"], listed["root"], listed["pending"]) == (info.fs_id, info.root.hex(), False)
    root = assert_ok(pvfs2_kernel.getattr())
    assert root.attrs.objtype == ObjType.DIRECTORY
    pvfs2_kernel.assert_quiescent()


def test_create_write_read_back_and_readdir(pvfs2_mounted):
    """Data written with FILE_IO comes back byte for byte, GETATTR sees the size, READDIR the name."""
    k = pvfs2_mounted
    handle = assert_ok(k.create("data.bin")).handle
    data = pattern(300 * 1024, seed=1)
    assert assert_ok(k.write(handle, data)).amt_complete == len(data)
    assert assert_ok(k.read(handle, len(data) + 100)).data == data  # a short read at the end
    assert assert_ok(k.read(handle, 10, offset=1000)).data == data[1000:1010]
    assert assert_ok(k.getattr(handle)).attrs.size == len(data)
    assert k.listdir() == {b"data.bin": handle}
    assert_ok(k.fsync(handle))
    k.assert_quiescent()


def test_directories_and_the_errnos_a_client_core_owes(pvfs2_mounted):
    """The errnos callers see for a name that is missing, taken, or a directory that is not empty."""
    k = pvfs2_mounted
    d = assert_ok(k.mkdir("d")).handle
    f = assert_ok(k.create("f", parent=d)).handle
    assert k.listdir(d) == {b"f": f}
    assert_errno(k.lookup("missing"), errno.ENOENT)
    assert_errno(k.create("f", parent=d), errno.EEXIST)
    assert_errno(k.remove("d"), errno.ENOTEMPTY)
    assert_ok(k.rename("f", "g", old_parent=d, new_parent=d))
    assert assert_ok(k.lookup("g", parent=d)).handle == f
    assert_ok(k.remove("g", parent=d))
    assert_ok(k.remove("d"))
    assert_errno(k.getattr(d), errno.ENOENT)
    assert assert_ok(k.statfs()).resp.block_size > 0
    k.assert_quiescent()


def test_assertion_messages_name_the_op_and_the_errno(pvfs2_mounted):
    """A failed assert_ok / assert_errno says which op failed and with which errno, as a syscall would."""
    k = pvfs2_mounted
    with pytest.raises(AssertionError, match=r"OP_LOOKUP failed with ENOENT \(No such file or directory\)"):
        assert_ok(k.lookup("missing"))
    with pytest.raises(AssertionError, match=r"OP_GETATTR: expected ENOENT \(No such file or directory\), got success"):
        assert_errno(k.getattr(), errno.ENOENT)
    with pytest.raises(AssertionError, match=r"the reply is to OP_GETATTR, not to OP_LOOKUP"):
        assert_ok(k.getattr(), OpCode.LOOKUP)


def test_any_upcall_by_hand(pvfs2_mounted):
    """submit() takes any upcall bytes: here a LOOKUP built with the upcalls module."""
    k = pvfs2_mounted
    created = assert_ok(k.submit(upcalls.create_upcall(k.fs_id, k.root, "by-hand", 0o600)))
    found = assert_ok(k.submit(upcalls.lookup_upcall(k.fs_id, k.root, b"by-hand")), OpCode.LOOKUP)
    assert found.handle == created.handle
    assert k.getattr(found.handle).attrs.perms == 0o600


def test_killed_clientcore_purges_and_the_restarted_one_serves(pvfs2_mounted):
    """A client-core killed with an op queued: release purges it, the op waits, and the restarted
    client-core (REMOUNT_ALL first) serves it from the same store (spec §1.6, issue 7 scenario 2)."""
    k = pvfs2_mounted
    handle = assert_ok(k.create("survivor")).handle
    assert_ok(k.write(handle, b"kept"))
    assert k.control("fault", action="pause-reads")["ok"]
    waiting = k.submit_nowait(upcalls.getattr_upcall(k.fs_id, handle))
    k.wait_status(lambda s: s["request_list"] == 1, "the GETATTR on the request list")
    assert k.kill_clientcore() == -signal.SIGKILL
    assert k.control("fault", action="resume-reads")["ok"]
    k.start_clientcore()
    assert assert_ok(k.wait_reply(waiting)).attrs.size == 4
    assert assert_ok(k.read(handle, 100)).data == b"kept"
    k.assert_quiescent()


def test_interrupted_caller_gets_eintr_and_the_op_is_given_up(pvfs2_mounted):
    """A signal ends an INTERRUPTIBLE wait with EINTR; the op not yet read is given up, nothing stays
    in flight, and the next call is served (spec §4.3, §4.6)."""
    k = pvfs2_mounted
    assert k.control("fault", action="pause-reads")["ok"]
    waiting = k.submit_nowait(upcalls.getattr_upcall(k.fs_id, k.root), flags=OpFlags.INTERRUPTIBLE)
    k.wait_status(lambda s: s["request_list"] == 1, "the GETATTR on the request list")
    k.interrupt(waiting)
    assert_errno(k.wait_reply(waiting), errno.EINTR, OpCode.GETATTR)
    assert k.control("fault", action="resume-reads")["ok"]
    assert_ok(k.getattr())
    k.assert_quiescent()


@pytest.mark.parametrize("pvfs2_broker_args", [["--op-timeout", "1"]])
def test_no_clientcore_means_etimedout(pvfs2_mounted):
    """With the client-core gone, an op waits op_timeout_secs (here 1 s) and fails ETIMEDOUT (spec §4.5)."""
    k = pvfs2_mounted
    k.kill_clientcore(signal.SIGTERM)
    assert_errno(k.getattr(), errno.ETIMEDOUT)
    k.assert_quiescent()


@pytest.mark.parametrize("pvfs2_clientcore_command",
                         [[sys.executable, "-m", "clientcore.minimal", "--rundir", "{rundir}"]])
def test_the_clientcore_command_is_a_fixture(pvfs2_mounted, pvfs2_rundir):
    """Overriding pvfs2_clientcore_command runs another client-core: the minimal one mounts fs_id 7."""
    assert pvfs2_mounted.clientcore.argv[-1] == str(pvfs2_rundir)
    assert pvfs2_mounted.fs_id == 7
    assert_ok(pvfs2_mounted.getattr())
