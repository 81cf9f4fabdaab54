"""What a caller gets back for one upcall, and the assertions tests make on it.

A :class:`Reply` is the VFS channel's answer: ``result`` is what the syscall
would see (0 or -errno, after the kernel's normalisation of the client-core's
OrangeFS status, or the kernel's own ETIMEDOUT, EINTR, EIO...), ``downcall``
the client-core's 8224 bytes decoded as the submitted op's type, ``data`` the
bytes read (FILE_IO) or the trailer (READDIR).

The assertion messages name the op and the errno (``GETATTR failed with
ENOENT (No such file or directory)``), so a failing test reads like the
syscall that failed.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import pvfs2proto as proto
from pvfs2ctl.client import VfsReply
from pvfs2proto import OpCode
from pvfs2proto.downcall import DOWNCALL_MEMBERS


_KNOWN_OPS = frozenset(int(op) for op in OpCode)


def _errno_text(err: int) -> str:
    return f"{proto.errno_name(err)} ({os.strerror(err)})"


@dataclasses.dataclass
class Reply:
    """One upcall's answer.  ``op`` is the type submitted, ``req_id`` its VFS request id."""

    op: int
    result: int
    tag: int
    req_id: int
    raw: bytes  # the downcall as written by the client-core (zeros if the kernel answered alone)
    data: bytes

    @classmethod
    def of(cls, op: int, reply: VfsReply) -> "Reply":
        return cls(op, reply.result, reply.tag, reply.req_id, reply.downcall, reply.data)

    @property
    def ok(self) -> bool:
        return self.result == 0

    @property
    def errno(self) -> int:
        """The syscall's errno (0 on success)."""
        return -self.result if self.result < 0 else 0

    @property
    def op_name(self) -> str:
        return proto.opname(self.op)

    @functools.cached_property
    def downcall(self):
        """The downcall decoded with ``resp`` as the op's member (``reply.downcall.resp.getattr``...).

        Raises:
            pvfs2proto.ProtocolError: EFAULT, not 8224 bytes.
        """
        return proto.decode_downcall(self.raw, self.op if self.op in _KNOWN_OPS else None)

    @property
    def resp(self):
        """The op's member of ``resp`` (``.attributes`` of a GETATTR, ``.refn`` of a CREATE...), or None."""
        member = DOWNCALL_MEMBERS.get(OpCode(self.op)) if self.op in _KNOWN_OPS else None
        return None if member is None else getattr(self.downcall.resp, member[0])

    @property
    def handle(self) -> bytes:
        """The khandle a LOOKUP, CREATE, MKDIR or SYMLINK returned (FS_MOUNT: the root)."""
        resp = self.resp
        if self.op == OpCode.FS_MOUNT:
            return bytes(resp.root_khandle)
        if resp is None or not hasattr(resp, "refn"):
            raise AttributeError(f"a {self.op_name} reply carries no handle")
        return bytes(resp.refn.khandle)

    @property
    def attrs(self):
        """GETATTR's ``ORANGEFS_sys_attr_s`` (objtype, perms, owner, size, times...)."""
        if self.op != OpCode.GETATTR:
            raise AttributeError(f"a {self.op_name} reply carries no attributes")
        return self.resp.attributes

    @property
    def amt_complete(self) -> int:
        """FILE_IO's byte count."""
        if self.op != OpCode.FILE_IO:
            raise AttributeError(f"a {self.op_name} reply carries no amt_complete")
        return self.resp.amt_complete

    @functools.cached_property
    def readdir(self) -> proto.ReaddirResponse:
        """READDIR's trailer decoded: ``token``, ``directory_version``, ``entries`` (name, khandle).

        Raises:
            pvfs2proto.ProtocolError: the trailer is malformed (the kernel's EIO).
        """
        return proto.decode_readdir_trailer(self.data)

    def describe(self) -> str:
        """``GETATTR (tag 12): ENOENT (No such file or directory)`` or ``... : success``."""
        outcome = "success" if self.ok else _errno_text(self.errno)
        return f"{self.op_name} (tag {self.tag}): {outcome}"


def _check_echo(reply: Reply, op: int | None) -> None:
    __tracebackhide__ = True
    if op is not None and int(op) != reply.op:
        raise AssertionError(f"the reply is to {reply.op_name}, not to {proto.opname(op)}")
    echoed = int.from_bytes(reply.raw[:4], "little") if len(reply.raw) >= 4 else None
    if echoed != reply.op:
        shown = proto.opname(echoed) if echoed is not None else "nothing"
        raise AssertionError(f"{reply.op_name} succeeded but the downcall's type is {shown}: "
                             f"a client-core echoes the upcall's type")


def assert_ok(reply: Reply, op: int | None = None) -> Reply:
    """The call succeeded: result 0, downcall status 0, the op's type echoed in the downcall.

    Args:
        op: the op the reply must be to (OpCode); default: the one submitted.

    Returns: ``reply``, to chain (``handle = assert_ok(k.create("f")).handle``).
    Raises:
        AssertionError: naming the op and the errno it failed with.
    """
    __tracebackhide__ = True
    if not reply.ok:
        raise AssertionError(f"{reply.op_name} failed with {_errno_text(reply.errno)}, expected success "
                             f"(tag {reply.tag})")
    _check_echo(reply, op)
    status = reply.downcall.status
    if status != 0:
        raise AssertionError(f"{reply.op_name} succeeded but the downcall's status is {status:#x}")
    return reply


def assert_errno(reply: Reply, err: int, op: int | None = None) -> Reply:
    """The call failed with ``err``, as the syscall would see it (after the kernel's normalisation).

    Args:
        err: an errno (``errno.ENOENT``).
        op: the op the reply must be to; default: the one submitted.

    Returns: ``reply``.
    Raises:
        AssertionError: naming the op, the errno expected and what came instead.
    """
    __tracebackhide__ = True
    if op is not None and int(op) != reply.op:
        raise AssertionError(f"the reply is to {reply.op_name}, not to {proto.opname(op)}")
    if reply.result != -err:
        got = "success" if reply.ok else _errno_text(reply.errno)
        raise AssertionError(f"{reply.op_name}: expected {_errno_text(err)}, got {got} (tag {reply.tag})")
    return reply


__all__ = ["Reply", "assert_errno", "assert_ok"]
