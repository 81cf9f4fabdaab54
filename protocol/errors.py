"""Errors of the wire format, and OrangeFS status codes ⇄ errno (spec §2.7).

Exception hierarchy (after h11's Local/Remote split)::

    OSError
     └── ProtocolError        bytes from the peer that the kernel would refuse;
                              .errno is the errno the kernel gives for them
                              (EINVAL wrong read size, EFAULT short or
                              inconsistent write, EPROTO bad magic/version,
                              EIO unreadable ioctl argument, ...)
    ValueError
     └── EncodeError          a value *we* were asked to put on the wire does
                              not fit it (a name too long, an int out of range):
                              a bug in the caller, never the peer's fault

Decoders raise only ``ProtocolError``; encoders raise only ``EncodeError``.

Status codes: a downcall's ``status`` is 0 or an OrangeFS-encoded error,
``-(ORANGEFS_ERROR_BIT | index)`` where ``index`` points into the kernel's
``PINT_errno_mapping`` table.  :func:`status_to_errno` is the kernel's
``orangefs_normalize_to_errno`` with every odd case kept.
"""

from __future__ import annotations

import errno as E
import os

__all__ = [
    "ProtocolError",
    "EncodeError",
    "ORANGEFS_ERROR_BIT",
    "ORANGEFS_NON_ERRNO_ERROR_BIT",
    "ORANGEFS_ERROR_CLASS_BITS",
    "ORANGEFS_ERROR_NUMBER_BITS",
    "PINT_ERRNO_MAPPING",
    "ProtocolStatus",
    "errno_to_status",
    "status_to_errno",
    "errno_name",
]


class ProtocolError(OSError):
    """The peer sent bytes the kernel would refuse.

    ``.errno`` is the errno the kernel returns for them; ``.strerror`` says what
    was wrong in one line.
    """

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)

    def __str__(self) -> str:
        return f"{errno_name(self.errno)}: {self.strerror}"


class EncodeError(ValueError):
    """A value handed to an encoder does not fit the wire format (caller's bug)."""


# --- layout of an OrangeFS error (protocol.h) ----------------------------------

#: ``ORANGEFS_ERROR_BIT``: the value is an OrangeFS error.
ORANGEFS_ERROR_BIT = 1 << 30
#: ``ORANGEFS_NON_ERRNO_ERROR_BIT``: a protocol error, not an encoded errno.
ORANGEFS_NON_ERRNO_ERROR_BIT = 1 << 29
#: ``ORANGEFS_ERROR_CLASS_BITS``: error class, ignored by the kernel.
ORANGEFS_ERROR_CLASS_BITS = 0x380
#: ``ORANGEFS_ERROR_NUMBER_BITS``: the error number.
ORANGEFS_ERROR_NUMBER_BITS = 0x7F


class ProtocolStatus:
    """``ORANGEFS_E*`` protocol (non-errno) errors, as the *absolute* value.

    Send them negated.  The kernel turns ECANCEL into ETIMEDOUT and every other
    one into EINVAL.
    """

    _BASE = ORANGEFS_ERROR_BIT | ORANGEFS_NON_ERRNO_ERROR_BIT
    ECANCEL = _BASE | 1
    EDEVINIT = _BASE | 2
    EDETAIL = _BASE | 3
    EHOSTNTFD = _BASE | 4
    EADDRNTFD = _BASE | 5
    ENORECVR = _BASE | 6
    ETRYAGAIN = _BASE | 7
    ENOTPVFS = _BASE | 8
    ESECURITY = _BASE | 9


#: ``PINT_errno_mapping`` from orangefs-utils.c: index → errno.  Index 0 is 0,
#: so ``-ORANGEFS_ERROR_BIT`` normalises to success, as in the kernel.
#: Aliases (EWOULDBLOCK is EAGAIN, EDEADLOCK is EDEADLK on Linux) appear twice.
PINT_ERRNO_MAPPING: tuple[int, ...] = (
    0, E.EPERM, E.ENOENT, E.EINTR, E.EIO,  # 0-4
    E.ENXIO, E.EBADF, E.EAGAIN, E.ENOMEM, E.EFAULT,  # 5-9
    E.EBUSY, E.EEXIST, E.ENODEV, E.ENOTDIR, E.EISDIR,  # 10-14
    E.EINVAL, E.EMFILE, E.EFBIG, E.ENOSPC, E.EROFS,  # 15-19
    E.EMLINK, E.EPIPE, E.EDEADLK, E.ENAMETOOLONG, E.ENOLCK,  # 20-24
    E.ENOSYS, E.ENOTEMPTY, E.ELOOP, E.EWOULDBLOCK, E.ENOMSG,  # 25-29
    E.EUNATCH, E.EBADR, E.EDEADLOCK, E.ENODATA, E.ETIME,  # 30-34
    E.ENONET, E.EREMOTE, E.ECOMM, E.EPROTO, E.EBADMSG,  # 35-39
    E.EOVERFLOW, E.ERESTART, E.EMSGSIZE, E.EPROTOTYPE, E.ENOPROTOOPT,  # 40-44
    E.EPROTONOSUPPORT, E.EOPNOTSUPP, E.EADDRINUSE, E.EADDRNOTAVAIL, E.ENETDOWN,  # 45-49
    E.ENETUNREACH, E.ENETRESET, E.ENOBUFS, E.ETIMEDOUT, E.ECONNREFUSED,  # 50-54
    E.EHOSTDOWN, E.EHOSTUNREACH, E.EALREADY, E.EACCES, E.ECONNRESET,  # 55-59
    E.ERANGE,  # 60
)
assert len(PINT_ERRNO_MAPPING) == 61

# errno → first index that maps to it (aliases resolve to the lower index).
_ERRNO_INDEX: dict[int, int] = {}
for _index, _err in enumerate(PINT_ERRNO_MAPPING):
    if _index:
        _ERRNO_INDEX.setdefault(_err, _index)
del _index, _err


def errno_to_status(err: int) -> int:
    """Encode an errno as the status a client-core puts in a downcall.

    Args:
        err: a positive errno, or 0 for success.

    Returns:
        0, or ``-(ORANGEFS_ERROR_BIT | index)`` (e.g. ENOENT → -1073741826).

    Raises:
        EncodeError: the errno has no slot in ``PINT_errno_mapping`` (ESTALE,
            EXDEV, ...): the kernel could not decode it, so no status exists.
    """
    if err == 0:
        return 0
    try:
        return -(ORANGEFS_ERROR_BIT | _ERRNO_INDEX[err])
    except KeyError:
        raise EncodeError(
            f"errno {errno_name(err)} has no OrangeFS encoding (not in PINT_errno_mapping)"
        ) from None


def is_encodable_errno(err: int) -> bool:
    """True if :func:`errno_to_status` can encode ``err``."""
    return err == 0 or err in _ERRNO_INDEX


def status_to_errno(status: int) -> int:
    """``orangefs_normalize_to_errno``: what a VFS caller sees for a downcall status.

    Args:
        status: the downcall's ``status`` (an s32).

    Returns:
        0 for success, else a *positive* errno.  The kernel's odd cases hold:
        a positive status is treated as an inverted error; a protocol error is
        ETIMEDOUT if it is ECANCEL and EINVAL otherwise; an encoded index past
        the table, and a plain ``-errno`` without ``ORANGEFS_ERROR_BIT``, are
        EINVAL.
    """
    if status == 0:
        return 0
    # A positive status "shouldn't ever happen" (the kernel logs it) and is
    # negated; either way we now work on the absolute value, as the kernel
    # does with -error_code.  INT_MIN stays without bits 29/30 → EINVAL.
    value = abs(status)
    if value & ORANGEFS_NON_ERRNO_ERROR_BIT and value & ORANGEFS_ERROR_BIT:
        code = value & (ORANGEFS_ERROR_NUMBER_BITS | ORANGEFS_NON_ERRNO_ERROR_BIT | ORANGEFS_ERROR_BIT)
        return E.ETIMEDOUT if code == ProtocolStatus.ECANCEL else E.EINVAL
    if value & ORANGEFS_ERROR_BIT:
        index = value & ~(ORANGEFS_ERROR_BIT | ORANGEFS_ERROR_CLASS_BITS)
        if index < len(PINT_ERRNO_MAPPING):
            return PINT_ERRNO_MAPPING[index]
        return E.EINVAL
    return E.EINVAL


def errno_name(err: int) -> str:
    """``ENOENT`` for 2; ``E123`` for numbers without a name."""
    return E.errorcode.get(err, f"E{err}")


def errno_message(err: int) -> str:
    """One line for a person: ``ENOENT (No such file or directory)``."""
    return f"{errno_name(err)} ({os.strerror(err)})"
