"""pvfs2proto: the OrangeFS kernel ⇄ client-core wire format, and nothing else.

Pure: no I/O, no logging, no clocks.  Everything the broker and the
client-core put on or take off ``/dev/pvfs2-req`` is declared here, with the
kernel's names (spec: ``shared/spec/orangefs-kernel-protocol.md``).

Where things are:

* :mod:`.constants`  magic, versions, sizes, limits, timeouts, tokens (§2)
* :mod:`.enums`      op codes, I/O and object types, masks, flags, states (§2.5–2.6, §4.2–4.3)
* :mod:`.errors`     ProtocolError / EncodeError, errno ⇄ OrangeFS status (§2.7)
* :mod:`.cstruct`    CStruct: construct Structs coded in one ``struct`` call
* :mod:`.structs`    khandle, object kref, sys_attr, keyval pair (§3.1)
* :mod:`.upcall`     ``orangefs_upcall_s`` and its members (§3.2), fs_id of an op (§4.7)
* :mod:`.downcall`   ``orangefs_downcall_s`` and its members (§3.3)
* :mod:`.frames`     read and write frames with the kernel's checks (§1.3–1.4)
* :mod:`.readdir`    the READDIR trailer (§3.4)
* :mod:`.ioctl`      the nine ioctls and their argument structs (§1.7, §3.5, §5.1)
* :mod:`.debug`      debug keyword masks and the CLIENT_STRING format (§2.8, §6.2)
"""

from .constants import *  # noqa: F401,F403
from .enums import (  # noqa: F401
    AttrFlags,
    AttrMask,
    DebugMaskType,
    Features,
    IoType,
    ObjType,
    OpCode,
    OpFlags,
    OpState,
    ParamOp,
    ParamRequestType,
    Perm,
    PerfCountType,
    XattrFlags,
    opname,
    state_names,
)
from .errors import (  # noqa: F401
    EncodeError,
    ProtocolError,
    ProtocolStatus,
    errno_name,
    errno_to_status,
    status_to_errno,
)
from .frames import (  # noqa: F401
    WriteBody,
    decode_downcall,
    decode_read_frame,
    decode_upcall,
    decode_write_body,
    decode_write_frame,
    decode_write_head,
    encode_downcall,
    encode_read_frame,
    encode_upcall,
    encode_write_frame,
    read_frame,
    write_frame,
    write_frame_head,
)
from .ioctl import IoctlCommand, check_ioctl_command, decode_ioctl_arg, validate_map_desc  # noqa: F401
from .readdir import DirEntry, ReaddirResponse, decode_readdir_trailer, encode_readdir_trailer  # noqa: F401
from .upcall import upcall_fs_id  # noqa: F401
