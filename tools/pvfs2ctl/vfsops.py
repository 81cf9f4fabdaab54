"""A small VFS over the broker's VFS channel: what the kernel does between a syscall and its upcalls.

``pvfs2ctl fs`` builds the upcalls a kernel would send for each action (spec
§4.13) and submits them on ``pvfs2-vfs`` as the calling user.  This module is
that logic without click: mount discovery, the path walk, the READDIR and
LISTXATTR token loops, FILE_IO read and write loops, and the xattr rules
(§4.14).  Every failure is a :class:`VfsError` carrying the errno the kernel's
syscall would return and the path it concerns.

Theory of operation
-------------------

*The filesystem and its root.*  The root khandle comes only from an FS_MOUNT
reply; the broker keeps it with the mount and lists it (``root``) in the
control channel's ``mounts``.  :func:`open_filesystem` reads that list and
picks a mount (by fs_id, by device string, or the first one); when there is
none for the wanted device it submits FS_MOUNT, which the broker runs as
mount(2) (FS_MOUNT, GETATTR of the root, FEATURES) and registers — so later
invocations find it.  Nothing is cached on disk and no mount is duplicated.
A broker whose list has no ``root`` gets a remount instead: FS_MOUNT of the
same device (same fs_id and root from the client-core, a new id), then
FS_UMOUNT of the older entry, so the filesystem stays listed once.

*The path walk* (``link_path_walk``, with an empty dcache).  Paths are
absolute within the filesystem ("/" is the root; a relative path starts at the
root too).  Each component costs a LOOKUP (``sym_follow`` 0) and a GETATTR of
the new inode (mask ``ALL_NOHINT``); a symlink met in the middle of a path,
or at its end when the action follows links, is followed from its parent
(an absolute target restarts at the root), at most 40 times (ELOOP).  ".."
goes back to the directory the walk came from (the root's ".." is the root).
A name over 255 bytes fails with ENAMETOOLONG before any upcall
(:func:`split_path`), as the kernel's lookup does.

*Errors.*  A reply's result is already the kernel's errno (the broker
normalised the OrangeFS status).  Checks the kernel makes itself without an
upcall (ENOTDIR while walking through a file, EISDIR/ENOTDIR for unlink and
rmdir, EOPNOTSUPP for getxattr on a symlink, ERANGE/EINVAL for xattr name and
value sizes) are made here, before any upcall.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Iterable

import trio

import pvfs2proto as proto
from pvfs2dev.mounts import DEFAULT_FSNAME
from pvfs2proto import AttrMask, IoType, ObjType, OpCode
from pvfs2proto.constants import (
    ORANGEFS_ITERATE_END,
    ORANGEFS_ITERATE_START,
    ORANGEFS_LOOKUP_LINK_NO_FOLLOW,
    ORANGEFS_MAX_DIRENT_COUNT_READDIR,
    ORANGEFS_MAX_SERVER_ADDR_LEN,
    ORANGEFS_MAX_XATTR_LISTLEN,
    ORANGEFS_MAX_XATTR_NAMELEN,
    ORANGEFS_MAX_XATTR_VALUELEN,
    ORANGEFS_NAME_MAX,
)
from pvfs2proto.downcall import listxattr_keys
from pvfs2proto.structs import khandle_to_ino, mode_to_perms, perms_to_mode, time_from_wire

from .client import ControlClient, VfsClient

#: The device string ``fs mount`` and the auto-mount use when none is given.
DEFAULT_DEVICE = DEFAULT_FSNAME
#: Bytes per FILE_IO request; the broker splits anything larger than a slot itself.
DEFAULT_CHUNK = 4 * 1024 * 1024
#: FILE_IO requests kept in flight by the read and write loops.
IO_WINDOW = 4
#: Concurrent GETATTRs of ``ls -l``.
GETATTR_WINDOW = 32
#: MAXSYMLINKS in fs/namei.c.
MAX_SYMLINKS = 40
#: PATH_MAX, counting the NUL.
PATH_MAX = 4096
#: listxattr hides these keys (spec §4.14).
HIDDEN_XATTR_PREFIX = b"system.pvfs2."


class VfsError(OSError):
    """A failed filesystem call: ``.errno`` as the syscall returns it; ``.strerror`` names the path."""

    def __init__(self, err: int, where: str) -> None:
        super().__init__(err, where)

    def __str__(self) -> str:
        return f"{proto.errno_name(self.errno)}: {os.strerror(self.errno)} ({self.strerror})"


# --- paths ---------------------------------------------------------------------------------------------


def split_path(path: str) -> list[bytes]:
    """The components of ``path`` ("." dropped, ".." kept), checked as the kernel's lookup does.

    Raises:
        VfsError: ENAMETOOLONG (a component over 255 bytes, or the path over
            PATH_MAX); ENOENT (an empty path, as for any syscall).
    """
    raw = os.fsencode(path)
    if not raw:
        raise VfsError(errno.ENOENT, path)
    if len(raw) >= PATH_MAX:
        raise VfsError(errno.ENAMETOOLONG, path)
    parts = [p for p in raw.split(b"/") if p and p != b"."]
    for part in parts:
        if len(part) >= ORANGEFS_NAME_MAX:
            raise VfsError(errno.ENAMETOOLONG, path)
    return parts


def basename(path: str) -> bytes:
    """The last component of ``path`` (local or remote), as ``mv``/``cp`` name a copy in a directory."""
    return os.path.basename(os.fsencode(path).rstrip(b"/")) or b"/"


def mode_string(node: "Node") -> str:
    """``ls -l``'s ``drwxr-xr-x``."""
    return stat.filemode(node.mode)


# --- objects -----------------------------------------------------------------------------------------


_IFMT = {ObjType.METAFILE: stat.S_IFREG, ObjType.DIRECTORY: stat.S_IFDIR, ObjType.SYMLINK: stat.S_IFLNK}
_TYPE_NAMES = {ObjType.METAFILE: "regular file", ObjType.DIRECTORY: "directory", ObjType.SYMLINK: "symbolic link"}


@dataclasses.dataclass
class Node:
    """An inode: its kref and the attributes of its last GETATTR."""

    khandle: bytes
    fs_id: int
    attrs: object  # the decoded ORANGEFS_sys_attr_s
    link_target: bytes = b""
    is_root: bool = False

    @property
    def refn(self) -> dict:
        return {"khandle": self.khandle, "fs_id": self.fs_id}

    @property
    def objtype(self) -> int:
        return self.attrs.objtype

    @property
    def is_dir(self) -> bool:
        return self.objtype == ObjType.DIRECTORY

    @property
    def is_link(self) -> bool:
        return self.objtype == ObjType.SYMLINK

    @property
    def is_file(self) -> bool:
        return self.objtype == ObjType.METAFILE

    @property
    def size(self) -> int:
        return self.attrs.size

    @property
    def mode(self) -> int:
        mode = _IFMT.get(self.objtype, 0) | perms_to_mode(self.attrs.perms)
        if self.is_root:
            # The kernel shows the root directory with the sticky bit (spec §2.6).
            mode |= stat.S_ISVTX
        return mode

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.objtype, f"type {self.objtype}")

    @property
    def ino(self) -> int:
        return khandle_to_ino(self.khandle)

    def as_dict(self) -> dict:
        """Everything GETATTR said, for ``--json``."""
        a = self.attrs
        return {
            "handle": self.khandle.hex(),
            "fs_id": self.fs_id,
            "ino": self.ino,
            "type": self.type_name,
            "mode": f"{self.mode & 0o7777:04o}",
            "mode_string": mode_string(self),
            "uid": a.owner,
            "gid": a.group,
            "size": a.size,
            "atime": time_from_wire(a.atime),
            "mtime": time_from_wire(a.mtime),
            "ctime": time_from_wire(a.ctime),
            "blksize": a.blksize,
            "dfile_count": a.dfile_count,
            "dirent_count": a.dirent_count,
            "link_target": os.fsdecode(self.link_target) if self.is_link else None,
        }


@dataclasses.dataclass
class MountInfo:
    """One mounted filesystem as the broker lists it (spec §4.12: fs_id, id, device string)."""

    fs_id: int
    id: int
    devname: str
    root: bytes
    pending: bool = False
    #: True when this invocation submitted the FS_MOUNT.
    mounted_now: bool = False

    def as_dict(self) -> dict:
        return {"fs_id": self.fs_id, "id": self.id, "devname": self.devname, "root": self.root.hex(),
                "pending": self.pending, "mounted_now": self.mounted_now}


# --- mount discovery ------------------------------------------------------------------------------------


async def list_mounts(control_path: str | os.PathLike) -> list[MountInfo]:
    """The broker's mount list (control ``mounts``).

    Raises:
        VfsError: the errno the broker refused with.
        OSError: no broker at ``control_path``.
    """
    async with ControlClient.connect(control_path) as ctl:
        reply = await ctl.request("mounts")
    if not reply.get("ok", True):
        raise VfsError(reply.get("errno") or errno.EIO, reply.get("message", "mounts"))
    return [
        MountInfo(m["fs_id"], m["id"], m["devname"], bytes.fromhex(m.get("root", "")), bool(m.get("pending")))
        for m in reply.get("mounts", [])
    ]


def choose_mount(mounts: list[MountInfo], *, device: str | None, fs_id: int | None) -> MountInfo | None:
    """The mount an ``fs`` command acts on: by fs_id, else by device string, else the first one."""
    for m in mounts:
        if fs_id is not None:
            if m.fs_id == fs_id:
                return m
        elif device is None or m.devname == device:
            return m
    return None


def _check_device(device: str) -> bytes:
    raw = os.fsencode(device)
    if not raw or b"\0" in raw:
        raise VfsError(errno.EINVAL, device)
    if len(raw) >= ORANGEFS_MAX_SERVER_ADDR_LEN:
        raise VfsError(errno.ENAMETOOLONG, device)
    return raw


async def mount(client: VfsClient, device: str) -> MountInfo:
    """Submit FS_MOUNT for ``device``: the broker runs mount(2) and registers the mount.

    Raises:
        VfsError: ENAMETOOLONG (device string over 255 bytes), or the mount's errno.
    """
    raw = _check_device(device)
    upcall = proto.encode_upcall({
        "type": OpCode.FS_MOUNT, "uid": os.geteuid(), "gid": os.getegid(),
        "req": {"fs_mount": {"orangefs_config_server": raw}},
    })
    reply = await client.submit(upcall)
    if reply.result < 0:
        raise VfsError(-reply.result, device)
    info = proto.decode_downcall(reply.downcall, OpCode.FS_MOUNT).resp.fs_mount
    return MountInfo(info.fs_id, info.id, device, bytes(info.root_khandle), mounted_now=True)


async def umount(client: VfsClient, m: MountInfo) -> None:
    """Submit FS_UMOUNT for ``m``; the broker drops it from its list whatever the client-core says.

    Raises:
        VfsError: EINVAL (not mounted), or the FS_UMOUNT's errno.
    """
    upcall = proto.encode_upcall({
        "type": OpCode.FS_UMOUNT, "uid": os.geteuid(), "gid": os.getegid(),
        "req": {"fs_umount": {"id": m.id, "fs_id": m.fs_id, "orangefs_config_server": _check_device(m.devname)}},
    })
    reply = await client.submit(upcall)
    if reply.result < 0:
        raise VfsError(-reply.result, m.devname)


@asynccontextmanager
async def open_filesystem(
    control_path: str | os.PathLike,
    vfs_path: str | os.PathLike,
    *,
    device: str | None = None,
    fs_id: int | None = None,
    automount: bool = True,
) -> AsyncIterator["Vfs"]:
    """Connect to the broker and find (or mount) the filesystem to act on.

    Args:
        device: act on the mount with this device string; None: the first mount listed.
        fs_id: act on the mount with this fs_id (never mounts).
        automount: when no mount matches (and no ``fs_id`` was asked for),
            submit FS_MOUNT of ``device`` (default :data:`DEFAULT_DEVICE`).

    Raises:
        VfsError: ENODEV (no such mount and none made), or the mount's errno.
        OSError: no broker.
    """
    chosen = choose_mount(await list_mounts(control_path), device=device, fs_id=fs_id)
    async with VfsClient.connect(vfs_path) as client:
        if chosen is None:
            if fs_id is not None or not automount:
                what = f"fs_id {fs_id}" if fs_id is not None else (device or "any device")
                raise VfsError(errno.ENODEV, f"no mounted filesystem with {what}")
            chosen = await mount(client, device or DEFAULT_DEVICE)
        elif len(chosen.root) != 16:
            chosen = await _remount_for_root(client, chosen)
        yield Vfs(client, chosen)


async def _remount_for_root(client: VfsClient, listed: MountInfo) -> MountInfo:
    """The root handle of a mount whose listing lacks it (a broker without ``root`` in ``mounts``).

    The FS_MOUNT reply is then the only source: mount the same device again
    (a client-core hands out the same fs_id and root, and a new id), then
    unmount the older entry — the broker removes the first mount with that
    fs_id — so the filesystem stays listed once.
    """
    fresh = await mount(client, listed.devname)
    if fresh.fs_id == listed.fs_id:
        await umount(client, listed)
    return fresh


# --- the VFS ---------------------------------------------------------------------------------------------


class Vfs:
    """Filesystem actions on one mounted filesystem, as the kernel's VFS performs them."""

    def __init__(self, client: VfsClient, mount: MountInfo) -> None:
        self.client = client
        self.mount = mount
        self.fs_id = mount.fs_id
        # The broker takes uid/gid from SO_PEERCRED; a root caller keeps these,
        # so they say the same thing: the calling user.
        self.uid = os.geteuid()
        self.gid = os.getegid()
        self._root: Node | None = None

    # -- one upcall -----------------------------------------------------------------------------

    def upcall(self, op: OpCode, member: str, req: dict) -> bytes:
        return proto.encode_upcall({"type": op, "uid": self.uid, "gid": self.gid, "req": {member: req}})

    async def call(self, op: OpCode, member: str, req: dict, where: str, data: bytes = b""):
        """Submit one upcall; returns the reply with its downcall decoded as ``op``'s.

        Raises:
            VfsError: the reply's errno.
        """
        reply = await self.client.submit(self.upcall(op, member, req), data)
        if reply.result < 0:
            raise VfsError(-reply.result, where)
        return reply, proto.decode_downcall(reply.downcall, op)

    # -- inodes ---------------------------------------------------------------------------------

    async def getattr(self, khandle: bytes, where: str, *, mask: int = AttrMask.ALL_NOHINT) -> Node:
        """GETATTR of ``khandle``.

        Raises:
            VfsError: the GETATTR's errno; ESTALE if the object type is none an inode may have.
        """
        _, down = await self.call(OpCode.GETATTR, "getattr",
                                  {"refn": {"khandle": khandle, "fs_id": self.fs_id}, "mask": int(mask)}, where)
        attrs = down.resp.getattr.attributes
        if attrs.objtype not in _IFMT:
            # orangefs_inode_getattr: any other type makes the inode bad.
            raise VfsError(errno.ESTALE, where)
        return Node(khandle, self.fs_id, attrs, bytes(down.resp.getattr.link_target),
                    is_root=khandle == self.mount.root)

    async def root(self) -> Node:
        """The root inode (one GETATTR, then kept for the invocation, as the kernel keeps it)."""
        if self._root is None:
            self._root = await self.getattr(self.mount.root, "/")
        return self._root

    async def lookup(self, parent: Node, name: bytes, where: str) -> Node:
        """LOOKUP ``name`` in ``parent``, then GETATTR of the new inode (``orangefs_lookup``).

        Raises:
            VfsError: ENAMETOOLONG (before any upcall), ENOTDIR, ENOENT, EACCES…
        """
        if len(name) >= ORANGEFS_NAME_MAX:
            raise VfsError(errno.ENAMETOOLONG, where)
        if not parent.is_dir:
            raise VfsError(errno.ENOTDIR, where)
        _, down = await self.call(OpCode.LOOKUP, "lookup", {
            "sym_follow": ORANGEFS_LOOKUP_LINK_NO_FOLLOW, "parent_refn": parent.refn, "d_name": name}, where)
        return await self.getattr(bytes(down.resp.lookup.refn.khandle), where)

    # -- the walk -------------------------------------------------------------------------------

    async def _walk(self, stack: list[Node], parts: Iterable[bytes], follow_last: bool, where: str) -> list[Node]:
        """Walk ``parts`` from ``stack`` (the directories walked so far, root first); returns the new stack."""
        root = stack[0]
        todo = deque(parts)
        links = 0
        stack = list(stack)
        while todo:
            name = todo.popleft()
            if name == b"..":
                if len(stack) > 1:
                    stack.pop()
                continue
            node = await self.lookup(stack[-1], name, where)
            if node.is_link and (todo or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise VfsError(errno.ELOOP, where)
                target = node.link_target
                if target.startswith(b"/"):
                    stack = [root]
                todo.extendleft(reversed([p for p in target.split(b"/") if p and p != b"."]))
                continue
            stack.append(node)
        return stack

    async def resolve(self, path: str, *, follow: bool = True) -> Node:
        """The inode ``path`` names; ``follow``: a symlink at the end is followed (stat vs lstat).

        Raises:
            VfsError: ENAMETOOLONG, ENOENT, ENOTDIR, ELOOP, EACCES…
        """
        parts = split_path(path)
        trailing_slash = path.endswith("/") and bool(parts)
        stack = await self._walk([await self.root()], parts, follow or trailing_slash, path)
        node = stack[-1]
        if trailing_slash and not node.is_dir:
            raise VfsError(errno.ENOTDIR, path)
        return node

    async def resolve_parent(self, path: str) -> tuple[Node, bytes]:
        """The directory that holds the last component of ``path``, and that component.

        Raises:
            VfsError: as :meth:`resolve`; EBUSY for the root itself; EINVAL for a last ".."; ENOTDIR.
        """
        parts = split_path(path)
        if not parts:
            raise VfsError(errno.EBUSY, path)
        if parts[-1] == b"..":
            raise VfsError(errno.EINVAL, path)
        stack = await self._walk([await self.root()], parts[:-1], True, path)
        if not stack[-1].is_dir:
            raise VfsError(errno.ENOTDIR, path)
        return stack[-1], parts[-1]

    async def try_resolve(self, path: str, *, follow: bool = True) -> Node | None:
        """:meth:`resolve`, or None if the path names nothing (ENOENT)."""
        try:
            return await self.resolve(path, follow=follow)
        except VfsError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    async def target_in_dir(self, path: str, source: str, *, into_dir: bool = True) -> tuple[Node, bytes]:
        """Where a new entry named by ``path`` goes: ``path`` itself, or ``path/basename(source)``
        when ``path`` is an existing directory (``mv``/``cp``/``ln`` semantics)."""
        if into_dir:
            existing = await self.try_resolve(path)
            if existing is not None and existing.is_dir:
                return existing, basename(source)
        return await self.resolve_parent(path)

    # -- namespace --------------------------------------------------------------------------------

    def _new_attrs(self, mode: int) -> dict:
        # orangefs_create/mkdir/symlink: owner/group = fsuid/fsgid, perms from the
        # mode, times 0, mask ALL_SETABLE.
        return {"owner": self.uid, "group": self.gid, "perms": mode_to_perms(mode), "mask": int(AttrMask.ALL_SETABLE)}

    async def create(self, parent: Node, name: bytes, mode: int, where: str) -> Node:
        """CREATE, then GETATTR of the new file.  Raises VfsError: EEXIST, EACCES, ENOSPC…"""
        _, down = await self.call(OpCode.CREATE, "create", {
            "parent_refn": parent.refn, "attributes": self._new_attrs(mode), "d_name": name}, where)
        return await self.getattr(bytes(down.resp.create.refn.khandle), where)

    async def mkdir(self, parent: Node, name: bytes, mode: int, where: str) -> Node:
        """MKDIR, then GETATTR of the new directory.  Raises VfsError: EEXIST, EACCES…"""
        _, down = await self.call(OpCode.MKDIR, "mkdir", {
            "parent_refn": parent.refn, "attributes": self._new_attrs(mode), "d_name": name}, where)
        return await self.getattr(bytes(down.resp.mkdir.refn.khandle), where)

    async def mkdirs(self, path: str, mode: int, parent_mode: int) -> Node:
        """``mkdir -p``: every missing directory of ``path``; an existing directory is fine.

        Raises:
            VfsError: EEXIST (the path names a non-directory), ENOTDIR, EACCES…
        """
        parts = split_path(path)
        stack = [await self.root()]
        for i, part in enumerate(parts):
            try:
                stack = await self._walk(stack, [part], True, path)
            except VfsError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                last = i == len(parts) - 1
                stack.append(await self.mkdir(stack[-1], part, mode if last else parent_mode, path))
                continue
            if not stack[-1].is_dir:
                raise VfsError(errno.EEXIST if i == len(parts) - 1 else errno.ENOTDIR, path)
        return stack[-1]

    async def symlink(self, parent: Node, name: bytes, target: bytes, where: str) -> Node:
        """SYMLINK (mode 0755 as the kernel sends), then GETATTR of the link.

        Raises:
            VfsError: ENAMETOOLONG (target over 255 bytes, before any upcall), ENOENT (empty target), EEXIST…
        """
        if len(target) >= ORANGEFS_NAME_MAX:
            raise VfsError(errno.ENAMETOOLONG, where)
        if not target:
            raise VfsError(errno.ENOENT, where)
        _, down = await self.call(OpCode.SYMLINK, "sym", {
            "parent_refn": parent.refn, "attributes": self._new_attrs(0o755), "entry_name": name,
            "target": target}, where)
        return await self.getattr(bytes(down.resp.sym.refn.khandle), where)

    async def remove(self, parent: Node, name: bytes, where: str, *, directory: bool) -> None:
        """unlink(2) (``directory`` False) or rmdir(2): the VFS checks the type, then REMOVE.

        Raises:
            VfsError: ENOENT; EISDIR (unlink of a directory); ENOTDIR (rmdir of a
                non-directory); ENOTEMPTY; EACCES…
        """
        victim = await self.lookup(parent, name, where)
        if directory and not victim.is_dir:
            raise VfsError(errno.ENOTDIR, where)
        if not directory and victim.is_dir:
            raise VfsError(errno.EISDIR, where)
        await self.call(OpCode.REMOVE, "remove", {"parent_refn": parent.refn, "d_name": name}, where)

    async def remove_tree(self, parent: Node, name: bytes, where: str) -> None:
        """``rm -r``: the entries of a directory depth first (READDIR loop, REMOVE each), then itself."""
        node = await self.lookup(parent, name, where)
        if node.is_dir:
            for child, _ in await self.readdir(node, where):
                await self.remove_tree(node, child, f"{where.rstrip('/')}/{os.fsdecode(child)}")
        await self.call(OpCode.REMOVE, "remove", {"parent_refn": parent.refn, "d_name": name}, where)

    async def rename(self, old_parent: Node, old_name: bytes, new_parent: Node, new_name: bytes, where: str) -> None:
        """RENAME (no rename flags: the kernel refuses any with EINVAL before the upcall)."""
        await self.call(OpCode.RENAME, "rename", {
            "old_parent_refn": old_parent.refn, "new_parent_refn": new_parent.refn,
            "d_old_name": old_name, "d_new_name": new_name}, where)

    async def readdir(self, directory: Node, where: str) -> list[tuple[bytes, bytes]]:
        """All ``(name, khandle)`` entries: READDIR from ITERATE_START until ITERATE_END (spec §3.4).

        Raises:
            VfsError: ENOTDIR (before any upcall), EACCES, EIO (a bad trailer)…
        """
        if not directory.is_dir:
            raise VfsError(errno.ENOTDIR, where)
        entries: list[tuple[bytes, bytes]] = []
        token = ORANGEFS_ITERATE_START
        while token != ORANGEFS_ITERATE_END:
            reply, _ = await self.call(OpCode.READDIR, "readdir", {
                "refn": directory.refn, "token": token,
                "max_dirent_count": ORANGEFS_MAX_DIRENT_COUNT_READDIR, "buf_index": 0}, where)
            try:
                response = proto.decode_readdir_trailer(reply.data)
            except proto.ProtocolError as exc:
                raise VfsError(exc.errno or errno.EIO, where) from None
            entries.extend((e.name, e.khandle) for e in response.entries)
            if response.token == token:
                raise VfsError(errno.EIO, where)  # no progress: a client-core bug, not a loop forever
            token = response.token
        return entries

    async def getattr_many(self, handles: list[bytes], where: str) -> list[Node | VfsError]:
        """GETATTR of each handle, several in flight; a failure stays in its place."""
        results: list[Node | VfsError] = [VfsError(errno.EIO, where)] * len(handles)
        limiter = trio.CapacityLimiter(GETATTR_WINDOW)

        async def one(i: int, handle: bytes) -> None:
            async with limiter:
                try:
                    results[i] = await self.getattr(handle, where)
                except VfsError as exc:
                    results[i] = exc

        async with trio.open_nursery() as nursery:
            for i, handle in enumerate(handles):
                nursery.start_soon(one, i, handle)
        return results

    # -- sizes and space ----------------------------------------------------------------------------

    async def truncate(self, node: Node, size: int, where: str) -> None:
        """TRUNCATE (the caller did the GETATTR, as ``orangefs_setattr_size`` does).

        Raises:
            VfsError: EINVAL (negative size; not a regular file), EISDIR, EACCES…
        """
        if size < 0:
            raise VfsError(errno.EINVAL, where)
        if node.is_dir:
            raise VfsError(errno.EISDIR, where)
        if not node.is_file:
            raise VfsError(errno.EINVAL, where)
        await self.call(OpCode.TRUNCATE, "truncate", {"refn": node.refn, "size": size}, where)

    async def statfs(self) -> dict:
        """STATFS of this filesystem, as ``orangefs_statfs`` fills ``struct kstatfs``."""
        _, down = await self.call(OpCode.STATFS, "statfs", {"fs_id": self.fs_id}, self.mount.devname)
        s = down.resp.statfs
        return {
            "f_bsize": s.block_size, "f_blocks": s.blocks_total, "f_bfree": s.blocks_avail,
            "f_bavail": s.blocks_avail, "f_files": s.files_total, "f_ffree": s.files_avail,
            "f_namelen": ORANGEFS_NAME_MAX, "f_fsid": [self.fs_id, self.mount.id],
        }

    # -- file data ---------------------------------------------------------------------------------

    def _io_upcall(self, node: Node, io_type: IoType, offset: int, count: int) -> bytes:
        # O_DIRECT-style: readahead_size 0; buf_index is the broker's to fill.
        return self.upcall(OpCode.FILE_IO, "io", {
            "buf_index": 0, "count": count, "offset": offset, "refn": node.refn,
            "io_type": int(io_type), "readahead_size": 0})

    @staticmethod
    def _amt(reply, count: int, where: str) -> int:
        amt = proto.decode_downcall(reply.downcall, OpCode.FILE_IO).resp.io.amt_complete
        if not 0 <= amt <= count:
            raise VfsError(errno.EIO, where)
        return amt

    async def read_file(self, node: Node, sink: Callable[[bytes], None], where: str, *,
                        chunk: int = DEFAULT_CHUNK, window: int = IO_WINDOW) -> int:
        """FILE_IO reads of ``chunk`` bytes, ``window`` in flight, until one comes back short.

        ``sink`` gets the data in file order.  Reads go no further than the size
        GETATTR gave while that is enough to find the end; after that one read
        at a time continues until a short one (the file may have grown).

        Returns: the bytes read.
        Raises: VfsError: EISDIR, EINVAL (not a regular file), the FILE_IO's errno.
        """
        if node.is_dir:
            raise VfsError(errno.EISDIR, where)
        if not node.is_file:
            raise VfsError(errno.EINVAL, where)
        pending: deque = deque()
        offset = total = 0
        eof = False
        try:
            while True:
                while not eof and len(pending) < window and (offset < node.size or not pending):
                    req_id = self.client.next_id()
                    waiter = await self.client.send_submit(req_id, self._io_upcall(node, IoType.READ, offset, chunk))
                    pending.append(waiter)
                    offset += chunk
                if not pending:
                    return total
                reply = await pending.popleft().wait()
                if reply.result < 0:
                    raise VfsError(-reply.result, where)
                amt = self._amt(reply, chunk, where)
                if amt:
                    sink(reply.data[:amt])
                    total += amt
                if amt < chunk:
                    eof = True
        finally:
            # Reads issued past the end: let them finish rather than give them up.
            with trio.CancelScope(shield=True):
                for waiter in pending:
                    await waiter.wait()

    async def write_file(self, node: Node, chunks: Iterable[bytes], where: str, *, window: int = IO_WINDOW,
                         done: Callable[[int], None] | None = None) -> int:
        """FILE_IO writes of each chunk at consecutive offsets from 0, ``window`` in flight.

        Returns: the bytes written.
        Raises: VfsError: EISDIR, EINVAL (not a regular file), the FILE_IO's
            errno; EIO for a short write (a client-core only writes less when it fails).
        """
        if node.is_dir:
            raise VfsError(errno.EISDIR, where)
        if not node.is_file:
            raise VfsError(errno.EINVAL, where)
        pending: deque = deque()
        offset = written = 0

        async def finish_one() -> None:
            nonlocal written
            count, waiter = pending.popleft()
            reply = await waiter.wait()
            if reply.result < 0:
                raise VfsError(-reply.result, where)
            if self._amt(reply, count, where) != count:
                raise VfsError(errno.EIO, where)
            written += count
            if done is not None:
                done(count)

        try:
            for data in chunks:
                if not data:
                    continue
                if len(pending) >= window:
                    await finish_one()
                req_id = self.client.next_id()
                waiter = await self.client.send_submit(req_id, self._io_upcall(node, IoType.WRITE, offset, len(data)),
                                                       data)
                pending.append((len(data), waiter))
                offset += len(data)
            while pending:
                await finish_one()
        finally:
            with trio.CancelScope(shield=True):
                for _, waiter in pending:
                    await waiter.wait()
        return written

    # -- xattrs (spec §4.14) ---------------------------------------------------------------------------

    @staticmethod
    def check_xattr_name(name: bytes, where: str) -> None:
        """The VFS's own check (``import_xattr_name``): empty or over 255 bytes → ERANGE."""
        if not name or len(name) >= ORANGEFS_MAX_XATTR_NAMELEN or b"\0" in name:
            raise VfsError(errno.ERANGE, where)

    async def getxattr(self, node: Node, name: bytes, where: str) -> bytes:
        """GETXATTR (key_sz = strlen+1).

        Raises:
            VfsError: EOPNOTSUPP (a symlink, before any upcall); ERANGE (bad
                name); ENODATA (no such attribute: the reply's ENOENT).
        """
        self.check_xattr_name(name, where)
        if node.is_link:
            raise VfsError(errno.EOPNOTSUPP, where)
        try:
            _, down = await self.call(OpCode.GETXATTR, "getxattr",
                                      {"refn": node.refn, "key_sz": len(name) + 1, "key": name}, where)
        except VfsError as exc:
            if exc.errno == errno.ENOENT:
                raise VfsError(errno.ENODATA, where) from None
            raise
        reply = down.resp.getxattr
        if not 0 <= reply.val_sz <= ORANGEFS_MAX_XATTR_VALUELEN:
            raise VfsError(errno.EIO, where)
        return bytes(reply.val[: reply.val_sz])

    async def listxattr(self, node: Node, where: str) -> list[bytes]:
        """Every key: LISTXATTR 16 at a time from ITERATE_START until ITERATE_END.

        Keys under ``system.pvfs2.`` are hidden, as the kernel hides them.

        Raises:
            VfsError: EIO (a reply with more than 16 keys or a length over 256), the LISTXATTR's errno.
        """
        keys: list[bytes] = []
        token = ORANGEFS_ITERATE_START
        while True:
            _, down = await self.call(OpCode.LISTXATTR, "listxattr", {
                "refn": node.refn, "requested_count": ORANGEFS_MAX_XATTR_LISTLEN, "token": token}, where)
            reply = down.resp.listxattr
            if not 0 <= reply.returned_count <= ORANGEFS_MAX_XATTR_LISTLEN or any(
                not 0 <= n <= ORANGEFS_NAME_MAX for n in reply.lengths[: reply.returned_count]
            ):
                raise VfsError(errno.EIO, where)
            for key in listxattr_keys(reply):
                key = key.split(b"\0", 1)[0]
                if key and not key.startswith(HIDDEN_XATTR_PREFIX):
                    keys.append(key)
            if reply.token == ORANGEFS_ITERATE_END:
                return keys
            if reply.token == token:
                raise VfsError(errno.EIO, where)
            token = reply.token

    async def setxattr(self, node: Node, name: bytes, value: bytes, where: str, *, flags: int = 0) -> None:
        """SETXATTR; an empty value goes as REMOVEXATTR (a NULL value of size 0 in the kernel).

        Raises:
            VfsError: ERANGE (bad name); EINVAL (value over 8192 bytes); EEXIST/ENOENT (CREATE/REPLACE)…
        """
        self.check_xattr_name(name, where)
        if len(value) > ORANGEFS_MAX_XATTR_VALUELEN:
            raise VfsError(errno.EINVAL, where)
        if not value:
            await self.removexattr(node, name, where, replace=bool(flags & proto.XattrFlags.REPLACE))
            return
        await self.call(OpCode.SETXATTR, "setxattr", {
            "refn": node.refn,
            "keyval": {"key": name, "key_sz": len(name) + 1, "val_sz": len(value), "val": value},
            "flags": int(flags)}, where)

    async def removexattr(self, node: Node, name: bytes, where: str, *, replace: bool = True) -> None:
        """REMOVEXATTR.  removexattr(2) asks for REPLACE semantics, so a missing key is ENODATA;
        without them (an empty setxattr) a missing key is success.

        Raises:
            VfsError: ERANGE (bad name); ENODATA (missing, with ``replace``)…
        """
        self.check_xattr_name(name, where)
        try:
            await self.call(OpCode.REMOVEXATTR, "removexattr",
                            {"refn": node.refn, "key_sz": len(name) + 1, "key": name}, where)
        except VfsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            if replace:
                raise VfsError(errno.ENODATA, where) from None


__all__ = [
    "DEFAULT_CHUNK", "DEFAULT_DEVICE", "MountInfo", "Node", "Vfs", "VfsError", "basename", "choose_mount",
    "list_mounts", "mode_string", "mount", "open_filesystem", "split_path", "umount",
]
