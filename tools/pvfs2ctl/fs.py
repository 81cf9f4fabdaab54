"""``pvfs2ctl fs``: drive the filesystem over the VFS channel, as the kernel's VFS would (spec §4.13).

Each command builds the upcalls a kernel sends for the action — the path walk
by LOOKUP and GETATTR, the READDIR token loop, FILE_IO in chunks, the xattr
rules — and submits them on ``pvfs2-vfs`` as the calling user (the broker
takes uid/gid from SO_PEERCRED).  The logic lives in :mod:`.vfsops`; this
module is options, output and errors.

Which filesystem: ``--fs-id N`` picks the mount with that fs_id; ``--device
STRING`` the mount with that device string, mounting it (FS_MOUNT) if the
broker lists none; neither: the first mount the broker lists, or
``tcp://localhost:3334/pvfs2-fs`` mounted if there is none.  The root handle
comes from the broker's mount list (control ``mounts``, field ``root``), so a
filesystem is mounted once and found by every later invocation.

Failures print one line, ``pvfs2ctl: ENAME: message (path)``, and exit 1.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import errno
import grp
import json
import os
import pwd
import re
import stat as stat_module
import sys
import time
from typing import Awaitable, Callable, Iterator, TypeVar

import click

from pvfs2proto.constants import ORANGEFS_MAX_XATTR_VALUELEN
from pvfs2proto.structs import time_from_wire

from .cli import Broker, CommandError, fail_errno, run
from .client import VfsClient
from .vfsops import (
    DEFAULT_DEVICE,
    Node,
    Vfs,
    VfsError,
    basename,
    choose_mount,
    list_mounts,
    mode_string,
    mount,
    open_filesystem,
    split_path,
    umount,
)

T = TypeVar("T")


@dataclasses.dataclass
class FsTarget:
    """The broker and which of its filesystems an ``fs`` command acts on."""

    broker: Broker
    device: str | None = None
    fs_id: int | None = None


# --- running -------------------------------------------------------------------------------------------


def _sole(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside nested nursery groups, or the group itself if there are more."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


def _run(target: FsTarget, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` under trio: expected failures (OSError, VfsError) become one line and exit 1."""

    async def unwrapped() -> T:
        try:
            return await main()
        except BaseExceptionGroup as group:
            # VfsClient runs a nursery: what the body raised comes out wrapped.
            raise _sole(group) from None

    return run(target.broker, unwrapped, socket_path=target.broker.control)


def _with_fs(target: FsTarget, action: Callable[[Vfs], Awaitable[T]], *, automount: bool = True) -> T:
    """Run ``action`` on the chosen filesystem (mounted first if needed, see the module docstring)."""

    async def main() -> T:
        async with open_filesystem(target.broker.control, target.broker.vfs, device=target.device,
                                   fs_id=target.fs_id, automount=automount) as vfs:
            return await action(vfs)

    return _run(target, main)


def _check_paths(*paths: str) -> None:
    """Name checks before any upcall (ENAMETOOLONG, like the kernel's lookup)."""
    try:
        for path in paths:
            split_path(path)
    except VfsError as exc:
        raise _fail(exc) from None


def _fail(exc: OSError) -> CommandError:
    return fail_errno(exc.errno or errno.EIO, exc.strerror or "")


def _local_error(exc: OSError, path: str) -> VfsError:
    return VfsError(exc.errno or errno.EIO, path)


# --- formatting helpers ----------------------------------------------------------------------------------


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


def _show(name: bytes) -> str:
    return name.decode("utf-8", errors="backslashreplace")


def _user(uid: int, numeric: bool) -> str:
    if not numeric:
        with contextlib.suppress(KeyError):
            return pwd.getpwuid(uid).pw_name
    return str(uid)


def _group(gid: int, numeric: bool) -> str:
    if not numeric:
        with contextlib.suppress(KeyError):
            return grp.getgrgid(gid).gr_name
    return str(gid)


def _time(wire: int, fmt: str = "%Y-%m-%d %H:%M:%S %z") -> str:
    """A sys_attr time (a time64_t in a u64) as local time; the bare number when no calendar holds it."""
    seconds = time_from_wire(wire)
    try:
        return time.strftime(fmt, time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)  # not reached


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_SIZE = re.compile(r"^\s*([+-]?)(\d+)\s*([kmgtpe]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_size(text: str) -> tuple[str, int]:
    """``truncate``'s sizes: ``[+-]N[K|M|G|T|P|E][iB|B]`` (K = KiB = 1024, KB = 1000).

    Returns: (sign: "", "+" or "-", bytes).
    Raises: ValueError.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(text)
    sign, digits, unit, suffix = match.groups()
    if suffix and not unit:
        if suffix.lower() != "b":
            raise ValueError(text)
        return sign, int(digits)
    base = 1000 if suffix.lower() == "b" else 1024
    return sign, int(digits) * base ** _POWERS[unit.lower()]


class SizeType(click.ParamType):
    name = "SIZE"

    def __init__(self, *, relative: bool = False, minimum: int = 0, maximum: int | None = None) -> None:
        self.relative = relative
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            sign, size = parse_size(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a size such as 4096, 64K, 4MiB or 1MB", param, ctx)
        if sign and not self.relative:
            self.fail(f"{value!r}: a size here cannot be relative", param, ctx)
        if size < self.minimum or (self.maximum is not None and size > self.maximum):
            self.fail(f"{value!r} is outside {self.minimum}..{self.maximum}", param, ctx)
        return (sign, size) if self.relative else size


class ModeType(click.ParamType):
    name = "MODE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            mode = int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode such as 755", param, ctx)
        if not 0 <= mode <= 0o7777:
            self.fail(f"{value!r} is not an octal mode between 0 and 7777", param, ctx)
        return mode


def _progress_wanted(choice: bool | None) -> bool:
    return sys.stderr.isatty() if choice is None else choice


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with throughput on stderr; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class AverageSpeed(ProgressColumn):
        """Bytes over the whole elapsed time (rich's own speed column samples a short window)."""

        def render(self, task):
            elapsed = task.finished_time if task.finished else task.elapsed
            if not elapsed:
                return Text("?", style="progress.data.speed")
            return Text(f"{_human(int(task.completed / elapsed))}/s", style="progress.data.speed")

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                  AverageSpeed(), TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


_progress_option = click.option(
    "--progress/--no-progress", default=None,
    help="Show a progress bar with throughput on stderr [default: when stderr is a terminal].")
_chunk_option = click.option(
    "--chunk-size", type=SizeType(minimum=1, maximum=1 << 30), default="4MiB", show_default=True,
    help="Bytes per FILE_IO request, at most 1GiB (the broker splits requests larger than a slot).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# --- the group -------------------------------------------------------------------------------------------


@click.group()
@click.option("--device", metavar="DEVICE", default=None,
              help="Act on the mount with this device string, mounting it if the broker lists none "
                   f"[default: the first mount listed, else {DEFAULT_DEVICE}, mounted].")
@click.option("--fs-id", type=int, metavar="FS_ID", default=None,
              help="Act on the mounted filesystem with this fs_id (never mounts).")
@click.pass_context
def fs(ctx: click.Context, device: str | None, fs_id: int | None) -> None:
    """Drive the filesystem as the kernel's VFS would, as the calling user.

    Paths are absolute within the filesystem ("/" is its root).  Each command
    sends the upcalls the kernel sends for the action (LOOKUP and GETATTR per
    path component, the READDIR token loop, FILE_IO in chunks, ...).
    """
    if device is not None and fs_id is not None:
        raise click.UsageError("--device and --fs-id exclude each other")
    broker = ctx.find_object(Broker)
    if broker is None:
        from pvfs2dev.rundir import default_rundir

        broker = Broker(default_rundir())
    ctx.obj = FsTarget(broker, device, fs_id)


pass_target = click.make_pass_decorator(FsTarget)


# --- mount / umount --------------------------------------------------------------------------------------


@fs.command("mount")
@click.argument("device", default=DEFAULT_DEVICE, required=False)
@_json_option
@pass_target
def mount_cmd(target: FsTarget, device: str, as_json: bool) -> None:
    """Mount DEVICE (FS_MOUNT; the broker also sends GETATTR of the root and FEATURES) and print
    its fs_id, mount id and root handle.  A device string already mounted is reported, not mounted
    again.  [DEVICE default: tcp://localhost:3334/pvfs2-fs]"""

    async def main():
        existing = choose_mount(await list_mounts(target.broker.control), device=device, fs_id=None)
        if existing is not None:
            return existing, True
        async with VfsClient.connect(target.broker.vfs) as client:
            return await mount(client, device), False

    info, already = _run(target, main)
    if as_json:
        _echo_json({**info.as_dict(), "already_mounted": already})
        return
    state = "already mounted" if already else "mounted"
    click.echo(f"{info.devname}: {state}, fs_id {info.fs_id}, id {info.id}, root {info.root.hex()}"
               + (" (mount pending)" if info.pending else ""))


@fs.command("umount")
@click.argument("device", required=False)
@pass_target
def umount_cmd(target: FsTarget, device: str | None) -> None:
    """Unmount (FS_UMOUNT) the filesystem mounted from DEVICE, or the one chosen by `fs --fs-id`.
    [DEVICE default: tcp://localhost:3334/pvfs2-fs]"""

    async def main():
        mounts = await list_mounts(target.broker.control)
        wanted = device or target.device or (None if target.fs_id is not None else DEFAULT_DEVICE)
        chosen = choose_mount(mounts, device=wanted, fs_id=None if device else target.fs_id)
        if chosen is None:
            raise VfsError(errno.EINVAL, f"{wanted or f'fs_id {target.fs_id}'} is not mounted")
        async with VfsClient.connect(target.broker.vfs) as client:
            await umount(client, chosen)

    _run(target, main)


# --- reading ---------------------------------------------------------------------------------------------


def _ls_row(name: str, node: Node | VfsError, numeric: bool) -> tuple[str, ...]:
    if isinstance(node, VfsError):
        return ("?" * 10, "?", "?", "?", "?", name)
    shown = name + (f" -> {_show(node.link_target)}" if node.is_link else "")
    a = node.attrs
    return (mode_string(node), _user(a.owner, numeric), _group(a.group, numeric), str(a.size),
            _time(a.mtime, "%Y-%m-%d %H:%M"), shown)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        mode, user, group, size, mtime, name = row
        lines.append(f"{mode} {user:<{widths[1]}} {group:<{widths[2]}} {size:>{widths[3]}} {mtime} {name}")
    return lines


@fs.command("ls")
@click.option("-l", "--long", "long_", is_flag=True,
              help="One line per entry (a GETATTR each): mode, owner, group, size, mtime, name.")
@click.option("-a", "--all", "all_", is_flag=True, help="Also entries starting with '.', and '.' and '..'.")
@click.option("-n", "--numeric-uid-gid", "numeric", is_flag=True, help="With -l: numeric owner and group.")
@_json_option
@click.argument("path", default="/", required=False)
@pass_target
def ls_cmd(target: FsTarget, long_: bool, all_: bool, numeric: bool, as_json: bool, path: str) -> None:
    """List a directory (READDIR from ITERATE_START until ITERATE_END), sorted by name.
    A symlink PATH is followed, except with -l.  [PATH default: /]"""
    _check_paths(path)

    async def action(vfs: Vfs):
        node = await vfs.resolve(path, follow=not long_)
        if not node.is_dir:
            return [(os.fsencode(path), node)]
        names = sorted(await vfs.readdir(node, path))
        if not all_:
            names = [(n, h) for n, h in names if not n.startswith(b".")]
        entries: list[tuple[bytes, Node | VfsError | bytes]] = list(names)
        if all_:
            parent = node if node.is_root else await vfs.resolve(path.rstrip("/") + "/..")
            entries = [(b".", node), (b"..", parent)] + entries
        if long_ or as_json:
            handles = [h for _, h in entries if isinstance(h, bytes)]
            attrs = iter(await vfs.getattr_many(handles, path))
            entries = [(n, next(attrs) if isinstance(h, bytes) else h) for n, h in entries]
        return entries

    entries = _with_fs(target, action)
    if as_json:
        _echo_json([{"name": _show(name),
                     **(node.as_dict() if isinstance(node, Node)
                        else {"error": f"{os.strerror(node.errno)}"} if isinstance(node, VfsError)
                        else {"handle": node.hex()})}
                    for name, node in entries])
        return
    if long_:
        rows = [_ls_row(_show(name), node, numeric) for name, node in entries]
        for line in _columns(rows) if rows else []:
            click.echo(line)
        return
    for name, _ in entries:
        click.echo(_show(name))


@fs.command("stat")
@click.option("-L", "--dereference", is_flag=True, help="Follow a symlink at the end of PATH.")
@_json_option
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@pass_target
def stat_cmd(target: FsTarget, dereference: bool, as_json: bool, paths: tuple[str, ...]) -> None:
    """Show the attributes of each PATH (LOOKUP and GETATTR per component; the GETATTR asks for the size)."""
    _check_paths(*paths)

    async def action(vfs: Vfs):
        return [await vfs.resolve(p, follow=dereference) for p in paths]

    nodes = _with_fs(target, action)
    if as_json:
        _echo_json([{"path": p, **n.as_dict()} for p, n in zip(paths, nodes)])
        return
    for path, node in zip(paths, nodes):
        a = node.attrs
        link = f" -> {_show(node.link_target)}" if node.is_link else ""
        click.echo(f"  File: {path}{link}")
        click.echo(f"  Size: {a.size:<15} IO Block: {a.blksize:<8} {node.type_name}")
        click.echo(f"Handle: {node.khandle.hex()}  Inode: {node.ino}  fs_id: {node.fs_id}")
        click.echo(f"Access: ({node.mode & 0o7777:04o}/{mode_string(node)})  "
                   f"Uid: ({a.owner:>5}/{_user(a.owner, False):>8})   Gid: ({a.group:>5}/{_group(a.group, False):>8})")
        click.echo(f"Access: {_time(a.atime)}")
        click.echo(f"Modify: {_time(a.mtime)}")
        click.echo(f"Change: {_time(a.ctime)}")


@fs.command("cat")
@_chunk_option
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@pass_target
def cat_cmd(target: FsTarget, chunk_size: int, paths: tuple[str, ...]) -> None:
    """Write each file to standard output (FILE_IO reads until a short one)."""
    _check_paths(*paths)
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        try:
            out.write(data)
        except OSError as exc:
            raise _local_error(exc, "standard output") from None

    async def action(vfs: Vfs):
        for path in paths:
            node = await vfs.resolve(path)
            await vfs.read_file(node, write, path, chunk=chunk_size)
        try:
            out.flush()
        except OSError as exc:
            raise _local_error(exc, "standard output") from None

    _with_fs(target, action)


@fs.command("df")
@click.option("--bytes", "in_bytes", is_flag=True, help="Sizes in bytes rather than KiB/MiB/GiB.")
@_json_option
@pass_target
def df_cmd(target: FsTarget, in_bytes: bool, as_json: bool) -> None:
    """Space and files of the filesystem (STATFS): size, used, available, files, free files."""

    async def action(vfs: Vfs):
        return vfs.mount, await vfs.statfs()

    m, s = _with_fs(target, action)
    size, avail = s["f_bsize"] * s["f_blocks"], s["f_bsize"] * s["f_bavail"]
    used = size - avail
    if as_json:
        _echo_json({"devname": m.devname, "fs_id": m.fs_id, "id": m.id, **s, "size": size, "used": used,
                    "avail": avail, "files": s["f_files"], "ffree": s["f_ffree"]})
        return
    fmt = str if in_bytes else _human
    use = f"{-(-used * 100 // size)}%" if size else "-"
    rows = [("Filesystem", "fs_id", "Size", "Used", "Avail", "Use%", "Files", "IFree"),
            (m.devname, str(m.fs_id), fmt(size), fmt(used), fmt(avail), use, str(s["f_files"]), str(s["f_ffree"]))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo(f"{r[0]:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:], widths[1:])))


# --- file data -------------------------------------------------------------------------------------------


def _read_chunks(f, chunk: int) -> Iterator[bytes]:
    while True:
        data = f.read(chunk)
        if not data:
            return
        yield data


@fs.command("put")
@_progress_option
@_chunk_option
@click.argument("local", metavar="LOCAL")
@click.argument("path")
@pass_target
def put_cmd(target: FsTarget, progress: bool | None, chunk_size: int, local: str, path: str) -> None:
    """Copy the local file LOCAL ("-": standard input) to PATH: CREATE if missing (mode of LOCAL
    less the umask), else TRUNCATE to 0; then FILE_IO writes of --chunk-size bytes.  If PATH is a
    directory the copy goes into it under LOCAL's name."""
    _check_paths(path)
    stdin = local == "-"
    try:
        source = sys.stdin.buffer if stdin else open(local, "rb")
        st = None if stdin else os.fstat(source.fileno())
    except OSError as exc:
        raise _fail(_local_error(exc, local)) from None
    regular = st is not None and stat_module.S_ISREG(st.st_mode)
    total = st.st_size if regular else None  # a pipe's length is unknown
    mode = (st.st_mode & 0o777 if st is not None else 0o666) & ~_umask()  # as cp(1)

    async def action(vfs: Vfs):
        where = path
        existing = await vfs.try_resolve(path)
        if existing is not None and existing.is_dir:
            if stdin:
                raise VfsError(errno.EISDIR, path)
            where = f"{path.rstrip('/')}/{os.fsdecode(basename(local))}"
            existing = await vfs.try_resolve(where)
        if existing is None:
            parent, name = await vfs.resolve_parent(where)
            node = await vfs.create(parent, name, mode, where)
        else:
            node = existing
            if node.is_dir:
                raise VfsError(errno.EISDIR, where)
            if not node.is_file:
                raise VfsError(errno.EINVAL, where)
            if node.size:
                await vfs.truncate(node, 0, where)  # O_TRUNC
        with _progress(_progress_wanted(progress), f"put {os.fsdecode(basename(where))}", total) as advance:
            try:
                return await vfs.write_file(node, _read_chunks(source, chunk_size), where, done=advance)
            except OSError as exc:
                if isinstance(exc, VfsError):
                    raise
                raise _local_error(exc, local) from None

    try:
        _with_fs(target, action)
    finally:
        if not stdin:
            source.close()


@fs.command("get")
@_progress_option
@_chunk_option
@click.argument("path")
@click.argument("local", metavar="LOCAL")
@pass_target
def get_cmd(target: FsTarget, progress: bool | None, chunk_size: int, path: str, local: str) -> None:
    """Copy the file PATH to the local file LOCAL ("-": standard output), by FILE_IO reads of
    --chunk-size bytes until a short one.  If LOCAL is a directory the copy goes into it under
    PATH's name."""
    _check_paths(path)

    async def action(vfs: Vfs):
        node = await vfs.resolve(path)
        if node.is_dir:
            raise VfsError(errno.EISDIR, path)
        if local == "-":
            sink = sys.stdout.buffer
            dest = None
        else:
            dest_path = os.path.join(local, os.fsdecode(basename(path))) if os.path.isdir(local) else local
            try:
                sink = dest = open(dest_path, "wb")
            except OSError as exc:
                raise _local_error(exc, dest_path) from None
        try:
            with _progress(_progress_wanted(progress), f"get {os.fsdecode(basename(path))}", node.size) as advance:

                def write(data: bytes) -> None:
                    try:
                        sink.write(data)
                    except OSError as exc:
                        raise _local_error(exc, local) from None
                    advance(len(data))

                await vfs.read_file(node, write, path, chunk=chunk_size)
            sink.flush()
        finally:
            if dest is not None:
                dest.close()

    _with_fs(target, action)


@fs.command("truncate")
@click.option("-s", "--size", "size", type=SizeType(relative=True), required=True,
              help="The new size: N, +N (grow by), -N (shrink by); suffixes K, M, G, T (1024) or KB, MB... (1000).")
@click.option("-c", "--no-create", is_flag=True, help="Do not create PATH if it is missing.")
@click.argument("path")
@pass_target
def truncate_cmd(target: FsTarget, size: tuple[str, int], no_create: bool, path: str) -> None:
    """Set the size of PATH: GETATTR (size), then TRUNCATE.  A missing PATH is created (CREATE)."""
    _check_paths(path)
    sign, amount = size

    async def action(vfs: Vfs):
        node = await vfs.try_resolve(path)
        if node is None:
            if no_create:
                return
            parent, name = await vfs.resolve_parent(path)
            node = await vfs.create(parent, name, 0o666 & ~_umask(), path)
        new = {"": amount, "+": node.size + amount, "-": max(0, node.size - amount)}[sign]
        await vfs.truncate(node, new, path)

    _with_fs(target, action)


# --- namespace -------------------------------------------------------------------------------------------


@fs.command("mkdir")
@click.option("-m", "--mode", type=ModeType(), default=None,
              help="Octal permissions of the new directory [default: 777 less the umask].")
@click.option("-p", "--parents", is_flag=True,
              help="Make missing parent directories; an existing directory is no error.")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@pass_target
def mkdir_cmd(target: FsTarget, mode: int | None, parents: bool, paths: tuple[str, ...]) -> None:
    """Make directories (MKDIR, then GETATTR of the new directory)."""
    _check_paths(*paths)
    default = 0o777 & ~_umask()
    final = default if mode is None else mode

    async def action(vfs: Vfs):
        for path in paths:
            if parents:
                await vfs.mkdirs(path, final, default | 0o300)
            else:
                if not split_path(path):
                    raise VfsError(errno.EEXIST, path)  # the root
                parent, name = await vfs.resolve_parent(path)
                await vfs.mkdir(parent, name, final, path)

    _with_fs(target, action)


@fs.command("rm")
@click.option("-r", "--recursive", is_flag=True, help="Remove directories and what they hold.")
@click.option("-f", "--force", is_flag=True, help="A missing PATH is no error.")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@pass_target
def rm_cmd(target: FsTarget, recursive: bool, force: bool, paths: tuple[str, ...]) -> None:
    """Remove files and symlinks (REMOVE; a directory is EISDIR unless -r).  Stops at the first failure."""
    _check_paths(*paths)

    async def action(vfs: Vfs):
        for path in paths:
            try:
                parent, name = await vfs.resolve_parent(path)
                if recursive:
                    await vfs.remove_tree(parent, name, path)
                else:
                    await vfs.remove(parent, name, path, directory=False)
            except VfsError as exc:
                if not (force and exc.errno == errno.ENOENT):
                    raise

    _with_fs(target, action)


@fs.command("rmdir")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@pass_target
def rmdir_cmd(target: FsTarget, paths: tuple[str, ...]) -> None:
    """Remove empty directories (REMOVE; ENOTEMPTY if one holds anything).  Stops at the first failure."""
    _check_paths(*paths)

    async def action(vfs: Vfs):
        for path in paths:
            parent, name = await vfs.resolve_parent(path)
            await vfs.remove(parent, name, path, directory=True)

    _with_fs(target, action)


@fs.command("mv")
@click.option("-T", "--no-target-directory", is_flag=True, help="Treat NEW as a name even if it is a directory.")
@click.argument("old")
@click.argument("new")
@pass_target
def mv_cmd(target: FsTarget, no_target_directory: bool, old: str, new: str) -> None:
    """Rename OLD to NEW (RENAME).  If NEW is a directory, OLD moves into it, unless -T."""
    _check_paths(old, new)

    async def action(vfs: Vfs):
        old_parent, old_name = await vfs.resolve_parent(old)
        source = await vfs.lookup(old_parent, old_name, old)
        new_parent, new_name = await vfs.target_in_dir(new, old, into_dir=not no_target_directory)
        try:
            existing = await vfs.lookup(new_parent, new_name, new)
        except VfsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            existing = None
        if existing is not None and existing.khandle != source.khandle:
            # vfs_rename's type checks, before the upcall.
            if source.is_dir and not existing.is_dir:
                raise VfsError(errno.ENOTDIR, new)
            if not source.is_dir and existing.is_dir:
                raise VfsError(errno.EISDIR, new)
        await vfs.rename(old_parent, old_name, new_parent, new_name, f"{old} -> {new}")

    _with_fs(target, action)


@fs.command("ln")
@click.option("-s", "--symbolic", is_flag=True, help="Make a symbolic link (required: OrangeFS has no hard links).")
@click.option("-T", "--no-target-directory", is_flag=True, help="Treat PATH as a name even if it is a directory.")
@click.argument("link_target", metavar="TARGET")
@click.argument("path")
@pass_target
def ln_cmd(target: FsTarget, symbolic: bool, no_target_directory: bool, link_target: str, path: str) -> None:
    """Make PATH a symbolic link to TARGET (SYMLINK, then GETATTR of the link).  If PATH is a
    directory the link goes into it under TARGET's name, unless -T.  TARGET is stored as given."""
    _check_paths(path)
    if not symbolic:
        # vfs_link: no ->link in orangefs' inode operations.
        raise _fail(VfsError(errno.EPERM, f"{path}: hard links are not supported; use -s"))
    raw = os.fsencode(link_target)

    async def action(vfs: Vfs):
        parent, name = await vfs.target_in_dir(path, link_target, into_dir=not no_target_directory)
        await vfs.symlink(parent, name, raw, path)

    _with_fs(target, action)


# --- xattrs ----------------------------------------------------------------------------------------------


def _encode_value(value: bytes, encoding: str) -> str:
    """getfattr's value encodings: text ("..." with octal escapes), hex (0x...), base64 (0s...)."""
    if encoding == "hex":
        return "0x" + value.hex()
    if encoding == "base64":
        return "0s" + base64.b64encode(value).decode()
    out = []
    for b in value:
        c = chr(b)
        if c in '"\\' or not 32 <= b < 127:
            out.append(f"\\{b:03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


_OCTAL = re.compile(rb"\\([0-7]{1,3})|\\(.)", re.DOTALL)


def decode_value(text: str) -> bytes:
    """setfattr's value forms: ``0x`` hex, ``0s`` base64, ``"text"`` with backslash escapes, or plain text.

    Raises: ValueError.
    """
    if text[:2] in ("0x", "0X"):
        return bytes.fromhex(text[2:])
    if text[:2] in ("0s", "0S"):
        return base64.b64decode(text[2:], validate=True)
    raw = os.fsencode(text)
    if len(raw) >= 2 and raw[:1] == raw[-1:] == b'"':
        return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]) if m.group(1) else m.group(2), raw[1:-1])
    return raw


@fs.command("getfattr")
@click.option("-n", "--name", metavar="NAME", default=None,
              help="Only this attribute (GETXATTR) [default: all, by LISTXATTR].")
@click.option("-e", "--encoding", type=click.Choice(["text", "hex", "base64"]), default="text", show_default=True,
              help="How values are printed.")
@click.option("--no-dereference", is_flag=True, help="Do not follow a symlink at the end of PATH.")
@_json_option
@click.argument("path")
@pass_target
def getfattr_cmd(target: FsTarget, name: str | None, encoding: str, no_dereference: bool, as_json: bool,
                 path: str) -> None:
    """Print extended attributes as name="value": one (GETXATTR), or every one (LISTXATTR loop, 16 keys at a
    time, then GETXATTR each).  Keys under system.pvfs2. are hidden, as the kernel hides them."""
    _check_paths(path)
    key = os.fsencode(name) if name is not None else None
    if key is not None:
        try:
            Vfs.check_xattr_name(key, f"{path}: {name}")
        except VfsError as exc:
            raise _fail(exc) from None

    async def action(vfs: Vfs):
        node = await vfs.resolve(path, follow=not no_dereference)
        if key is not None:
            return [(key, await vfs.getxattr(node, key, f"{path}: {name}"))]
        found = []
        for k in await vfs.listxattr(node, path):
            try:
                found.append((k, await vfs.getxattr(node, k, f"{path}: {_show(k)}")))
            except VfsError as exc:
                if exc.errno != errno.ENODATA:  # removed since the listing
                    raise
        return found

    found = _with_fs(target, action)
    if as_json:
        _echo_json({"path": path, "xattrs": [
            {"name": _show(k), "value": v.decode("utf-8", errors="backslashreplace"), "hex": v.hex()}
            for k, v in found]})
        return
    if not found:
        return
    click.echo(f"# file: {path}")
    for k, v in found:
        click.echo(f"{_show(k)}={_encode_value(v, encoding)}")
    click.echo("")


@fs.command("setfattr")
@click.option("-n", "--name", metavar="NAME", required=True, help="The attribute.")
@click.option("-v", "--value", metavar="VALUE", default=None,
              help='The value: text, "quoted text" with \\ooo escapes, 0x<hex> or 0s<base64> [default: empty, '
                   "which the kernel sends as REMOVEXATTR].")
@click.option("-x", "--remove", is_flag=True, help="Remove the attribute (REMOVEXATTR; ENODATA if missing).")
@click.option("--no-dereference", is_flag=True, help="Do not follow a symlink at the end of PATH.")
@click.argument("path")
@pass_target
def setfattr_cmd(target: FsTarget, name: str, value: str | None, remove: bool, no_dereference: bool,
                 path: str) -> None:
    """Set (SETXATTR) or remove (-x: REMOVEXATTR) an extended attribute of PATH."""
    _check_paths(path)
    if remove and value is not None:
        raise click.UsageError("-v and -x exclude each other")
    key = os.fsencode(name)
    where = f"{path}: {name}"
    try:
        data = decode_value(value) if value is not None else b""
    except (ValueError, binascii.Error):
        raise click.BadParameter(f"{value!r} is not valid text, 0x<hex> or 0s<base64>", param_hint="-v") from None
    try:
        Vfs.check_xattr_name(key, where)
        if len(data) > ORANGEFS_MAX_XATTR_VALUELEN:
            raise VfsError(errno.EINVAL, where)
    except VfsError as exc:
        raise _fail(exc) from None

    async def action(vfs: Vfs):
        node = await vfs.resolve(path, follow=not no_dereference)
        if remove:
            await vfs.removexattr(node, key, where, replace=True)
        else:
            await vfs.setxattr(node, key, data, where)

    _with_fs(target, action)


__all__ = ["fs", "FsTarget", "decode_value", "parse_size"]

