"""A minimal pyfuse3 passthrough filesystem: the yardstick ``tools.bench.mount_bench`` measures the FUSE mount against.

    python -m tools.bench.passthrough SOURCE MOUNTPOINT [--attr-timeout S] [--entry-timeout S] [-o OPT]

Every FUSE request becomes the same call on the directory SOURCE, so the
figures of this mount are what pyfuse3 on trio costs by itself, with no
protocol behind it.  It runs the FUSE session the way ``pvfs2dev serve
--mount`` does (pyfuse3 on trio, the same ``pyfuse3.main`` task counts, no
``default_permissions`` unless given with ``-o``, pyfuse3's default
``keep_cache`` on open), and the attribute and entry timeouts are options so
both can be measured with the same cache settings.  A failed lookup is a
negative entry cached for the entry timeout, as the FUSE front end answers.

Theory of operation
-------------------

*Inodes.*  FUSE inode numbers are our own (the root is ``pyfuse3.ROOT_INODE``,
the rest count up and are never reused); each maps to the path it was last
seen at and to the backing object's (st_dev, st_ino).  An entry handed to FUSE
(lookup, create, mkdir, symlink, each readdirplus entry) adds one to the
lookup count, ``forget`` takes it away, and the number is dropped at zero.
Unlinking the last name of an object (or renaming over it) detaches its
number from (st_dev, st_ino), so a backing inode number the disk reuses at
once gets a new FUSE number rather than the dead file's.  A directory rename
rewrites the paths of everything known below it.

*Files.*  Each open gets its own file descriptor on the backing file; data
moves with ``os.pread``/``os.pwrite`` at the offsets FUSE sends (O_APPEND is
left to the kernel, which sends the end-of-file offset).  ``getattr`` of an
unlinked but open file answers from its descriptor.

*Errors.*  An ``OSError`` is answered with its errno; anything else is logged
and answered EIO, so no request can end the session.  Permissions are not
checked (every call runs as the mounting user) unless ``-o
default_permissions`` has the kernel check them.

*Unmount.*  SIGTERM or SIGINT ends the session and unmounts
(``pyfuse3.close(unmount=True)``); so does an external ``umount``.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import logging
import os
import signal
import stat

import click
import pyfuse3
import trio

log = logging.getLogger("passthrough")

#: Flags that make sense on the backing open only as FUSE already applied them.
_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND


def handler(fn):
    """Answer ``OSError`` with its errno and anything unexpected with EIO (logged), never ending the session."""

    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s%r failed", fn.__name__, args[:3])
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


@dataclasses.dataclass
class Node:
    path: bytes | None  # where the object was last seen; None once that name is gone
    key: tuple[int, int] | None  # the backing (st_dev, st_ino) while that object lives
    lookups: int = 0


@dataclasses.dataclass
class OpenFile:
    fd: int
    ino: int


@dataclasses.dataclass
class OpenDir:
    ino: int
    names: list[bytes]


class Passthrough(pyfuse3.Operations):
    """FUSE requests as the same calls on the tree under ``source``."""

    def __init__(self, source: str | bytes, *, attr_timeout: float = 1.0, entry_timeout: float = 1.0) -> None:
        super().__init__()
        root = os.fsencode(os.path.abspath(source))
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", source)
        self.attr_timeout = attr_timeout
        self.entry_timeout = entry_timeout
        self.nodes: dict[int, Node] = {pyfuse3.ROOT_INODE: Node(root, (st.st_dev, st.st_ino), 1)}
        self.by_key: dict[tuple[int, int], int] = {(st.st_dev, st.st_ino): pyfuse3.ROOT_INODE}
        self._inos = itertools.count(pyfuse3.ROOT_INODE + 1)
        self._fhs = itertools.count(1)
        self.files: dict[int, OpenFile] = {}
        self.dirs: dict[int, OpenDir] = {}
        self.owned = os.geteuid() == 0  # as root, new objects get the caller's owner

    # -- the inode table --------------------------------------------------------------------------------

    def _node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None

    def _path(self, ino: int) -> bytes:
        path = self._node(ino).path
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def _child(self, parent: int, name: bytes) -> bytes:
        if b"/" in name or name in (b"", b".", b".."):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.path.join(self._path(parent), name)

    def _remember(self, path: bytes, st: os.stat_result, lookups: int = 1) -> int:
        """The FUSE number of the object ``st`` found at ``path``, its lookup count raised by ``lookups``."""
        key = (st.st_dev, st.st_ino)
        ino = self.by_key.get(key)
        if ino is None:
            ino = next(self._inos)
            self.nodes[ino] = Node(path, key)
            self.by_key[key] = ino
        node = self.nodes[ino]
        node.path = path
        node.lookups += lookups
        return ino

    def _drop(self, ino: int) -> None:
        node = self.nodes.pop(ino)
        if node.key is not None and self.by_key.get(node.key) == ino:
            del self.by_key[node.key]

    def _gone(self, path: bytes, st: os.stat_result) -> None:
        """The name ``path`` of the object ``st`` was removed."""
        key = (st.st_dev, st.st_ino)
        ino = self.by_key.get(key)
        if ino is None:
            return
        node = self.nodes[ino]
        if node.path == path:
            node.path = None
        if stat.S_ISDIR(st.st_mode) or st.st_nlink <= 1:  # that was its last name: the number may be reused
            del self.by_key[key]
            node.key = None

    def _entry(self, ino: int, st: os.stat_result) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = ino
        entry.generation = 0
        entry.entry_timeout = self.entry_timeout
        entry.attr_timeout = self.attr_timeout
        entry.st_mode = st.st_mode
        entry.st_nlink = st.st_nlink
        entry.st_uid = st.st_uid
        entry.st_gid = st.st_gid
        entry.st_rdev = st.st_rdev
        entry.st_size = st.st_size
        entry.st_blksize = st.st_blksize
        entry.st_blocks = st.st_blocks
        entry.st_atime_ns = st.st_atime_ns
        entry.st_mtime_ns = st.st_mtime_ns
        entry.st_ctime_ns = st.st_ctime_ns
        return entry

    def _new_entry(self, path: bytes) -> pyfuse3.EntryAttributes:
        st = os.lstat(path)
        return self._entry(self._remember(path, st), st)

    def _fd_of(self, ino: int) -> int | None:
        return next((f.fd for f in self.files.values() if f.ino == ino), None)

    def _stat(self, ino: int) -> os.stat_result:
        path = self._node(ino).path
        if path is not None:
            return os.lstat(path)
        fd = self._fd_of(ino)  # unlinked, but still open
        if fd is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return os.fstat(fd)

    def _own(self, path_or_fd: bytes | int, ctx) -> None:
        if self.owned:
            if isinstance(path_or_fd, int):
                os.fchown(path_or_fd, ctx.uid, ctx.gid)
            else:
                os.lchown(path_or_fd, ctx.uid, ctx.gid)

    # -- names ------------------------------------------------------------------------------------------

    @handler
    async def lookup(self, parent_inode, name, ctx):
        path = self._child(parent_inode, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0
            negative.entry_timeout = self.entry_timeout
            return negative
        return self._entry(self._remember(path, st), st)

    async def forget(self, inode_list):
        for ino, count in inode_list:
            try:
                node = self.nodes.get(ino)
                if node is None or ino == pyfuse3.ROOT_INODE:
                    continue
                node.lookups -= count
                if node.lookups <= 0:
                    self._drop(ino)
            except Exception:
                log.exception("forget(%d, %d) failed", ino, count)

    @handler
    async def getattr(self, inode, ctx):
        return self._entry(inode, self._stat(inode))

    @handler
    async def setattr(self, inode, attr, fields, fh, ctx):
        record = self.files.get(fh) if fh is not None else None
        target: bytes | int = record.fd if record is not None else self._path(inode)
        by_path = not isinstance(target, int)
        if fields.update_size:
            os.truncate(target, attr.st_size)
        if fields.update_mode:
            os.chmod(target, stat.S_IMODE(attr.st_mode))
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            if by_path:
                os.lchown(target, uid, gid)
            else:
                os.fchown(target, uid, gid)
        if fields.update_atime or fields.update_mtime:
            old = os.lstat(target) if by_path else os.fstat(target)
            times = (attr.st_atime_ns if fields.update_atime else old.st_atime_ns,
                     attr.st_mtime_ns if fields.update_mtime else old.st_mtime_ns)
            if by_path:
                os.utime(target, ns=times, follow_symlinks=False)
            else:
                os.utime(target, ns=times)
        return self._entry(inode, os.lstat(target) if by_path else os.fstat(target))

    @handler
    async def readlink(self, inode, ctx):
        return os.readlink(self._path(inode))

    @handler
    async def symlink(self, parent_inode, name, target, ctx):
        path = self._child(parent_inode, name)
        os.symlink(target, path)
        self._own(path, ctx)
        return self._new_entry(path)

    @handler
    async def mkdir(self, parent_inode, name, mode, ctx):
        path = self._child(parent_inode, name)
        os.mkdir(path, stat.S_IMODE(mode) & ~ctx.umask)
        self._own(path, ctx)
        return self._new_entry(path)

    @handler
    async def unlink(self, parent_inode, name, ctx):
        path = self._child(parent_inode, name)
        st = os.lstat(path)
        os.unlink(path)
        self._gone(path, st)

    @handler
    async def rmdir(self, parent_inode, name, ctx):
        path = self._child(parent_inode, name)
        st = os.lstat(path)
        os.rmdir(path)
        self._gone(path, st)

    @handler
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags:  # RENAME_NOREPLACE / RENAME_EXCHANGE: os.rename has no renameat2
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        st_old = os.lstat(old)
        try:
            st_new = os.lstat(new)
        except FileNotFoundError:
            st_new = None
        os.rename(old, new)
        if st_new is not None and (st_new.st_dev, st_new.st_ino) != (st_old.st_dev, st_old.st_ino):
            self._gone(new, st_new)
        ino = self.by_key.get((st_old.st_dev, st_old.st_ino))
        if ino is not None and self.nodes[ino].path in (old, None):
            self.nodes[ino].path = new
        if stat.S_ISDIR(st_old.st_mode):
            prefix = old + b"/"
            for node in self.nodes.values():
                if node.path is not None and node.path.startswith(prefix):
                    node.path = new + node.path[len(old):]

    # -- files ------------------------------------------------------------------------------------------

    def _opened(self, fd: int, ino: int) -> pyfuse3.FileInfo:
        fh = next(self._fhs)
        self.files[fh] = OpenFile(fd, ino)
        return pyfuse3.FileInfo(fh=fh)

    def _fd(self, fh: int) -> int:
        record = self.files.get(fh)
        if record is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return record.fd

    @handler
    async def open(self, inode, flags, ctx):
        fd = os.open(self._path(inode), flags & ~_OPEN_STRIP)
        return self._opened(fd, inode)

    @handler
    async def create(self, parent_inode, name, mode, flags, ctx):
        path = self._child(parent_inode, name)
        fd = os.open(path, (flags | os.O_CREAT) & ~(os.O_NOCTTY | os.O_APPEND), stat.S_IMODE(mode) & ~ctx.umask)
        try:
            self._own(fd, ctx)
            st = os.fstat(fd)
            ino = self._remember(path, st)
        except BaseException:
            os.close(fd)
            raise
        return self._opened(fd, ino), self._entry(ino, st)

    @handler
    async def read(self, fh, off, size):
        return os.pread(self._fd(fh), size, off)

    @handler
    async def write(self, fh, off, buf):
        fd, view, done = self._fd(fh), memoryview(buf), 0
        while done < len(view):
            n = os.pwrite(fd, view[done:], off + done)
            if n == 0:
                raise pyfuse3.FUSEError(errno.EIO)
            done += n
        return done

    @handler
    async def flush(self, fh):
        self._fd(fh)

    @handler
    async def fsync(self, fh, datasync):
        (os.fdatasync if datasync else os.fsync)(self._fd(fh))

    @handler
    async def release(self, fh):
        record = self.files.pop(fh, None)
        if record is not None:
            os.close(record.fd)

    # -- directories ------------------------------------------------------------------------------------

    @handler
    async def opendir(self, inode, ctx):
        names = sorted(os.listdir(self._path(inode)))  # a snapshot: offsets stay stable while it is open
        fh = next(self._fhs)
        self.dirs[fh] = OpenDir(inode, names)
        return fh

    @handler
    async def readdir(self, fh, start_id, token):
        record = self.dirs.get(fh)
        if record is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        parent = self._path(record.ino)
        for i in range(start_id, len(record.names)):
            name = record.names[i]
            path = os.path.join(parent, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed since opendir
            ino = self._remember(path, st, lookups=0)
            if not pyfuse3.readdir_reply(token, name, self._entry(ino, st), i + 1):
                if self.nodes[ino].lookups == 0:
                    self._drop(ino)
                break
            self.nodes[ino].lookups += 1  # readdirplus: FUSE now holds the entry

    @handler
    async def releasedir(self, fh):
        self.dirs.pop(fh, None)

    @handler
    async def fsyncdir(self, fh, datasync):
        record = self.dirs.get(fh)
        if record is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        fd = os.open(self._path(record.ino), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @handler
    async def statfs(self, ctx):
        st = os.statvfs(self._path(pyfuse3.ROOT_INODE))
        out = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                     "f_namemax"):
            setattr(out, name, getattr(st, name))
        return out


async def serve(ops: Passthrough, mountpoint: str, options: set[str]) -> None:
    """Mount, serve until SIGTERM/SIGINT or an external unmount, then unmount."""
    pyfuse3.init(ops, mountpoint, options)
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        log.info("%s: unmounting", signal.Signals(signum).name)
                        pyfuse3.terminate()
                        return

                nursery.start_soon(on_signal)
                await pyfuse3.main(min_tasks=4, max_tasks=128)  # as pvfs2dev.fuse runs its session
                nursery.cancel_scope.cancel()
    finally:
        pyfuse3.close(unmount=True)


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--attr-timeout", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds FUSE may keep attributes.")
@click.option("--entry-timeout", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds FUSE may keep a name (and a negative entry).")
@click.option("-o", "--option", "options", multiple=True, metavar="OPT[,OPT...]",
              help="FUSE mount option, repeatable (allow_other, default_permissions, ...).")
@click.option("--debug", is_flag=True, help="Log every failed request.")
def main(source: str, mountpoint: str, attr_timeout: float, entry_timeout: float, options: tuple[str, ...],
         debug: bool) -> None:
    """Mirror SOURCE at MOUNTPOINT with pyfuse3 until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.umask(0)  # modes arrive with the caller's umask applied
    fuse_options = {"fsname=passthrough:" + os.path.abspath(source).replace(",", "_"), "subtype=passthrough"}
    fuse_options.update(o.strip() for option in options for o in option.split(",") if o.strip())
    ops = Passthrough(source, attr_timeout=attr_timeout, entry_timeout=entry_timeout)
    trio.run(serve, ops, mountpoint, fuse_options)


if __name__ == "__main__":
    main()
