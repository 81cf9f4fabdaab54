"""Blocking clients of the broker's VFS and control sockets, for test code with no event loop.

``pvfs2ctl.client`` has the trio clients; a test of somebody's client-core
may run in a plain pytest session, so these use plain sockets and deadlines.
The frames are the ones in :mod:`pvfs2proto.channels` (shared/DESIGN.md):

* VFS (``pvfs2-vfs``): ``u32`` length, then ``flags | kind | req_id`` and the
  upcall (and write data); replies ``result | pad | tag | req_id``, the
  downcall, then read data or the readdir trailer.  Replies come in the order
  the ops complete, so they are kept by ``req_id`` until asked for.
* control (``pvfs2-ctl``): one JSON object per line each way.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket
import time

from pvfs2ctl.client import VfsReply
from pvfs2proto.channels import VFS_LENGTH, VFS_REPLY, VFS_REQUEST, SignalKind, VfsKind
from pvfs2proto.constants import DOWNCALL_SIZE


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(errno.ETIMEDOUT, what)
    return left


class VfsConnection:
    """One connection to ``pvfs2-vfs``: a caller process, as far as the broker can tell.

    Closing it with requests in flight gives them up, as a killed process does.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(self.path)
        except BaseException:
            self.sock.close()
            raise
        self._ids = itertools.count(1)
        self._buffer = bytearray()
        self._replies: dict[int, VfsReply] = {}
        self._closed = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "VfsConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_id(self) -> int:
        return next(self._ids)

    def send_submit(self, upcall: bytes, data: bytes = b"", *, flags: int = 0, req_id: int | None = None) -> int:
        """Send a SUBMIT without waiting; returns its ``req_id``.

        Raises:
            BrokenPipeError: the broker closed the channel (EPIPE).
        """
        req_id = self.next_id() if req_id is None else req_id
        body = VFS_REQUEST.pack(flags, VfsKind.SUBMIT, req_id) + upcall + data
        self.sock.sendall(VFS_LENGTH.pack(len(body)) + body)
        return req_id

    def send_interrupt(self, req_id: int, *, fatal: bool = False) -> None:
        """Signal the caller waiting on ``req_id`` (the EINTR / give-up / CANCEL paths)."""
        body = VFS_REQUEST.pack(SignalKind.FATAL if fatal else SignalKind.SIGNAL, VfsKind.INTERRUPT, req_id)
        self.sock.sendall(VFS_LENGTH.pack(len(body)) + body)

    def wait_reply(self, req_id: int, deadline: float) -> VfsReply:
        """The reply to ``req_id``, reading (and keeping) others until it comes.

        Raises:
            TimeoutError: ETIMEDOUT, no reply by ``deadline`` (``time.monotonic()``).
            ConnectionResetError: ECONNRESET, the broker closed the channel first.
        """
        while req_id not in self._replies:
            self._read_one(deadline, req_id)
        return self._replies.pop(req_id)

    def _read_one(self, deadline: float, req_id: int) -> None:
        while True:
            if len(self._buffer) >= VFS_LENGTH.size:
                (length,) = VFS_LENGTH.unpack_from(self._buffer)
                end = VFS_LENGTH.size + length
                if len(self._buffer) >= end:
                    body = bytes(self._buffer[VFS_LENGTH.size : end])
                    del self._buffer[:end]
                    result, tag, got = VFS_REPLY.unpack_from(body)
                    rest = body[VFS_REPLY.size :]
                    self._replies[got] = VfsReply(result, tag, got, rest[:DOWNCALL_SIZE], rest[DOWNCALL_SIZE:])
                    return
            if self._closed:
                raise ConnectionResetError(errno.ECONNRESET, f"the broker closed {self.path} before req_id {req_id}")
            self.sock.settimeout(_remaining(deadline, f"no reply to req_id {req_id} on {self.path}"))
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue  # _remaining raises on the next turn
            if not chunk:
                self._closed = True
            self._buffer += chunk


def control_request(path: str | os.PathLike, cmd: str, *, timeout: float = 10.0, **fields) -> dict:
    """One request on a fresh connection to ``pvfs2-ctl``; the broker's JSON answer.

    The answer may say ``"ok": false`` with ``errno``, ``error`` and ``message``.

    Raises:
        FileNotFoundError / ConnectionRefusedError: no broker at ``path``.
        ConnectionResetError: ECONNRESET, the broker closed the connection without an answer.
        TimeoutError: ETIMEDOUT, no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        reply = bytearray()
        while not reply.endswith(b"\n"):
            sock.settimeout(_remaining(deadline, f"no answer to {cmd!r} on {path}"))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, f"the broker closed {path} without answering {cmd!r}")
            reply += chunk
    return json.loads(reply)


__all__ = ["VfsConnection", "VfsReply", "control_request"]
