"""The nine device ioctls: command values, argument structs, and their checks (spec §1.7, §3.5, §5.1).

The direction bits in the kernel's encodings are historical (GET_MAGIC is
declared "write" but the kernel writes the value out), so only the numeric
values matter: they are computed here with the ``_IOC`` formula and pinned
by the tests against the spec's table.
"""

from __future__ import annotations

import enum
import errno

from construct import Container, Int32sl, Int32ul, Int64ul, Padding

from .constants import ORANGEFS_DEV_MAGIC, ORANGEFS_DEV_MAXNR, ORANGEFS_MAX_DEBUG_STRING_LEN, PAGE_SIZE
from .cstruct import CStruct
from .errors import ProtocolError

# asm-generic/ioctl.h
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def ioc_type(cmd: int) -> int:
    """``_IOC_TYPE``: the type byte of an ioctl command."""
    return (cmd >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def ioc_nr(cmd: int) -> int:
    """``_IOC_NR``: the number of an ioctl command."""
    return (cmd >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


_K = ORANGEFS_DEV_MAGIC


class IoctlCommand(enum.IntEnum):
    """``ORANGEFS_DEV_*`` command values on x86_64."""

    GET_MAGIC = _IOC(_IOC_WRITE, _K, 1, 4)  # _IOW('k', 1, __s32)
    GET_MAX_UPSIZE = _IOC(_IOC_WRITE, _K, 2, 4)  # _IOW('k', 2, __s32)
    GET_MAX_DOWNSIZE = _IOC(_IOC_WRITE, _K, 3, 4)  # _IOW('k', 3, __s32)
    MAP = _IOC(_IOC_NONE, _K, 4, 0)  # _IO('k', 4)
    REMOUNT_ALL = _IOC(_IOC_NONE, _K, 5, 0)  # _IO('k', 5)
    DEBUG = _IOC(_IOC_READ, _K, 6, 4)  # _IOR('k', 6, __s32)
    UPSTREAM = _IOC(_IOC_WRITE, _K, 7, 4)  # _IOW('k', 7, int)
    CLIENT_MASK = _IOC(_IOC_WRITE, _K, 8, 16)  # _IOW('k', 8, struct dev_mask2_info_s)
    CLIENT_STRING = _IOC(_IOC_WRITE, _K, 9, 8)  # _IOW('k', 9, char *)

    @property
    def kernel_name(self) -> str:
        return f"ORANGEFS_DEV_{self.name}"


def check_ioctl_command(cmd: int) -> IoctlCommand:
    """``dispatch_ioctl_command``'s gate: which command this is, or the kernel's errno.

    Raises:
        ProtocolError: EINVAL if the type byte is not 'k'; ENOTTY (the VFS's
            answer to ENOIOCTLCMD) if the number is 0 or ≥ 10, or the full
            32-bit value matches no command.
    """
    if ioc_type(cmd) != ORANGEFS_DEV_MAGIC:
        raise ProtocolError(errno.EINVAL, f"ioctl {cmd:#010x} is not of type 'k'")
    nr = ioc_nr(cmd)
    if nr == 0 or nr >= ORANGEFS_DEV_MAXNR:
        raise ProtocolError(errno.ENOTTY, f"ioctl number {nr} out of range 1..{ORANGEFS_DEV_MAXNR - 1}")
    try:
        return IoctlCommand(cmd)
    except ValueError:
        raise ProtocolError(errno.ENOTTY, f"ioctl {cmd:#010x} matches no ORANGEFS_DEV command") from None


#: ``struct ORANGEFS_dev_map_desc`` (24 bytes): MAP's argument.
ORANGEFS_dev_map_desc = CStruct(
    "ptr" / Int64ul,  # void * in the client's address space; checked for alignment only
    "total_size" / Int32sl,
    "size" / Int32sl,
    "count" / Int32sl,
    Padding(4),  # hole
)

#: ``struct dev_mask_info_s`` (16 bytes): DEBUG's argument.
dev_mask_info_s = CStruct(
    "mask_type" / Int32ul,  # enum: 0 kernel, 1 client
    Padding(4),  # hole
    "mask_value" / Int64ul,
)

#: ``struct dev_mask2_info_s`` (16 bytes): CLIENT_MASK's argument.
dev_mask2_info_s = CStruct(
    "mask1_value" / Int64ul,
    "mask2_value" / Int64ul,
)

#: The out-argument of GET_MAGIC, GET_MAX_UPSIZE, GET_MAX_DOWNSIZE and UPSTREAM.
ioctl_int_arg = CStruct("value" / Int32sl)

#: Bytes the kernel copies in for CLIENT_STRING (the buffer itself).
CLIENT_STRING_ARG_SIZE = ORANGEFS_MAX_DEBUG_STRING_LEN

# What the kernel returns when it cannot read an ioctl's argument.
_COPY_FAULT_ERRNO = {
    IoctlCommand.MAP: errno.EIO,
    IoctlCommand.DEBUG: errno.EIO,
    IoctlCommand.CLIENT_MASK: errno.EIO,
    IoctlCommand.CLIENT_STRING: errno.EFAULT,  # current kernel; older inline code said EIO
}

_IN_ARG = {
    IoctlCommand.MAP: ORANGEFS_dev_map_desc,
    IoctlCommand.DEBUG: dev_mask_info_s,
    IoctlCommand.CLIENT_MASK: dev_mask2_info_s,
}


def decode_ioctl_arg(cmd: int, data) -> Container | bytes | None:
    """Read an ioctl's in-argument the way the kernel copies it from user memory.

    Returns:
        The argument struct for MAP, DEBUG and CLIENT_MASK; the 2048 bytes for
        CLIENT_STRING (last byte forced to NUL, as the kernel does); None for
        commands that take nothing in.  Bytes past the argument are ignored.

    Raises:
        ProtocolError: EIO (EFAULT for CLIENT_STRING) if fewer bytes are
            there than the kernel copies — our form of a faulting pointer;
            EINVAL or ENOTTY if ``cmd`` is no command (:func:`check_ioctl_command`).
    """
    cmd = check_ioctl_command(cmd)
    if cmd is IoctlCommand.CLIENT_STRING:
        if len(data) < CLIENT_STRING_ARG_SIZE:
            raise ProtocolError(errno.EFAULT, f"CLIENT_STRING needs {CLIENT_STRING_ARG_SIZE} bytes, got {len(data)}")
        return bytes(data[: CLIENT_STRING_ARG_SIZE - 1]) + b"\0"
    arg = _IN_ARG.get(cmd)
    if arg is None:
        return None
    if len(data) < arg.size:
        raise ProtocolError(_COPY_FAULT_ERRNO[cmd], f"{cmd.kernel_name} needs {arg.size} bytes, got {len(data)}")
    return arg.unpack(data)


def validate_map_desc(desc) -> None:
    """MAP's geometry checks, in the kernel's order (``orangefs_bufmap_initialize``).

    Not checked here, as not by the kernel: power-of-two slot size and the
    128 MiB ceiling (the userspace library enforces those), and "already
    mapped" (state; the broker's job).

    Raises:
        ProtocolError: EINVAL for a negative size or count, an unaligned
            pointer or end, total_size ≠ size × count, or a slot size that is
            not a multiple of the page size.
    """
    if desc.total_size < 0 or desc.size < 0 or desc.count < 0:
        raise ProtocolError(errno.EINVAL, "MAP: negative total_size, size or count")
    if desc.ptr % PAGE_SIZE:
        raise ProtocolError(errno.EINVAL, f"MAP: buffer address {desc.ptr:#x} is not page aligned")
    if (desc.ptr + desc.total_size) % PAGE_SIZE:
        raise ProtocolError(errno.EINVAL, "MAP: buffer end is not page aligned")
    # The kernel multiplies two ints and could wrap; we compare exactly and so
    # refuse geometries the kernel would accept by overflow (man/pvfs2-req.4).
    if desc.total_size != desc.size * desc.count:
        raise ProtocolError(
            errno.EINVAL, f"MAP: total_size {desc.total_size} != size {desc.size} x count {desc.count}"
        )
    if desc.size % PAGE_SIZE:
        raise ProtocolError(errno.EINVAL, f"MAP: slot size {desc.size} is not a multiple of {PAGE_SIZE}")
