"""``pvfs2ctl fs``: each command against a running broker and client-core (issue 5, "Drive the filesystem").

Real processes: ``pvfs2dev serve`` and ``clientcore`` on an embedded store,
started once for the module and always terminated.  The CLI runs in process
through click's CliRunner; every test works in a directory of its own, so the
tests do not depend on each other's order.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from pvfs2ctl.cli import main
from pvfs2ctl.client import ControlClient
from pvfs2ctl.fs import decode_value, parse_size
from pvfs2ctl.vfsops import DEFAULT_DEVICE, list_mounts, open_filesystem
from pvfs2proto import errno_name

from .stack import control, fails, running_stack

MiB = 1024 * 1024


def _op_count(rundir: Path, op: str) -> int:
    return control(rundir, "stats")["ops"].get(op, {}).get("count", 0)


@pytest.fixture(scope="module")
def rundir(tmp_path_factory) -> Path:
    """A broker and a client-core in service, for the whole module."""
    with running_stack(tmp_path_factory.mktemp("fs")) as (run, _, _):
        yield run


@pytest.fixture
def fs(rundir):
    """``fs(*args, input=None)``: run ``pvfs2ctl --rundir D fs ARGS``; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, input: bytes | str | None = None):
        return runner.invoke(main, ["--rundir", str(rundir), "fs", *args], input=input)

    return invoke


@pytest.fixture
def home(fs, request) -> str:
    """A fresh directory named after the test."""
    path = "/" + request.node.name.replace("[", "_").replace("]", "_")
    ok(fs("rm", "-r", "-f", path))
    ok(fs("mkdir", path))
    return path


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


# --- mounting ------------------------------------------------------------------------------------------


def test_mount_prints_fs_id_and_root_and_every_command_finds_the_mount(fs, rundir):
    """fs mount reports fs_id and root, a second mount reports the same one, and after umount any command
    mounts again (FS_MOUNT) so the broker lists the filesystem exactly once."""
    ok(fs("mount"))
    again = json.loads(ok(fs("mount", "--json")).stdout)
    assert again["already_mounted"] is True and again["devname"] == DEFAULT_DEVICE
    assert len(again["root"]) == 32 and again["fs_id"] != 0
    mounts = control(rundir, "mounts")["mounts"]
    assert [(m["fs_id"], m["root"]) for m in mounts] == [(again["fs_id"], again["root"])]

    ok(fs("umount"))
    assert control(rundir, "mounts")["mounts"] == []
    fails(fs("--fs-id", str(again["fs_id"]), "ls", "/"), "ENODEV")  # --fs-id never mounts
    ok(fs("ls", "/"))  # mounts the default device
    mounts = control(rundir, "mounts")["mounts"]
    assert [(m["fs_id"], m["root"], m["devname"]) for m in mounts] == [(again["fs_id"], again["root"], DEFAULT_DEVICE)]
    ok(fs("--fs-id", str(again["fs_id"]), "ls", "/"))
    assert len(control(rundir, "mounts")["mounts"]) == 1


async def test_a_broker_listing_no_root_handle_gets_a_remount(rundir, tmp_path):
    """Where the mount list carries no root handle, the root comes from a second FS_MOUNT and the older
    entry is unmounted, so the filesystem stays listed once with the same fs_id and root."""
    async with open_filesystem(rundir / "pvfs2-ctl", rundir / "pvfs2-vfs") as vfs:  # mounted, if it was not
        listed = vfs.mount

    async def strip_root(stream: trio.SocketStream) -> None:
        async with stream, ControlClient.connect(rundir / "pvfs2-ctl") as real:
            request = json.loads(await stream.receive_some(65536))
            reply = await real.request(request.pop("cmd"), **request)
            for m in reply.get("mounts", []):
                del m["root"]
            await stream.send_all(json.dumps(reply).encode() + b"\n")

    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(tmp_path / "ctl"))
    sock.listen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, strip_root, [trio.SocketListener(sock)])
        async with open_filesystem(tmp_path / "ctl", rundir / "pvfs2-vfs") as vfs:
            assert vfs.mount.mounted_now and (vfs.mount.fs_id, vfs.mount.root) == (listed.fs_id, listed.root)
            assert (await vfs.resolve("/")).is_root
        nursery.cancel_scope.cancel()
    (now,) = await list_mounts(rundir / "pvfs2-ctl")
    assert (now.fs_id, now.root, now.devname) == (listed.fs_id, listed.root, listed.devname)
    assert now.id != listed.id


# --- data ------------------------------------------------------------------------------------------------


def test_put_then_get_returns_the_same_bytes(fs, home, tmp_path):
    """A few MiB of random bytes go in by FILE_IO writes and come back identical by FILE_IO reads, with a
    progress bar on request."""
    data = os.urandom(5 * MiB + 12345)
    (tmp_path / "src").write_bytes(data)
    put = ok(fs("put", "--progress", str(tmp_path / "src"), f"{home}/blob"))
    assert "MiB" in put.stderr
    stat = json.loads(ok(fs("stat", "--json", f"{home}/blob")).stdout)[0]
    assert stat["size"] == len(data) and stat["type"] == "regular file"
    ok(fs("get", "--no-progress", "--chunk-size", "1MiB", f"{home}/blob", str(tmp_path / "back")))
    assert (tmp_path / "back").read_bytes() == data
    # Into a local directory, under the file's name.
    ok(fs("get", f"{home}/blob", str(tmp_path)))
    assert (tmp_path / "blob").read_bytes() == data
    # A shorter put over an existing file truncates it first (O_TRUNC).
    (tmp_path / "small").write_bytes(b"small")
    ok(fs("put", str(tmp_path / "small"), f"{home}/blob"))
    assert ok(fs("cat", f"{home}/blob")).stdout_bytes == b"small"


def test_cat_writes_each_file_to_stdout(fs, home):
    """cat reads each file until a short FILE_IO read and writes the bytes to stdout in order."""
    ok(fs("put", "-", f"{home}/one", input=b"first\n"))
    ok(fs("put", "-", f"{home}/two", input=b"\x00second\xff"))
    ok(fs("put", "-", f"{home}/empty", input=b""))
    assert ok(fs("cat", f"{home}/one", f"{home}/empty", f"{home}/two")).stdout_bytes == b"first\n\x00second\xff"
    fails(fs("cat", home), "EISDIR")


# --- namespace -------------------------------------------------------------------------------------------


def test_ls_lists_names_sorted_and_ls_l_adds_attributes(fs, home):
    """ls prints the READDIR names sorted (dotfiles with -a only, with . and ..); -l adds mode, owner,
    group, size and mtime from a GETATTR per entry."""
    ok(fs("mkdir", "-m", "750", f"{home}/sub"))
    ok(fs("put", "-", f"{home}/file", input=b"12345"))
    ok(fs("put", "-", f"{home}/.hidden", input=b""))
    ok(fs("ln", "-s", "file", f"{home}/link"))
    assert ok(fs("ls", home)).stdout.splitlines() == ["file", "link", "sub"]
    assert ok(fs("ls", "-a", home)).stdout.splitlines() == [".", "..", ".hidden", "file", "link", "sub"]
    long = ok(fs("ls", "-l", "-n", home)).stdout.splitlines()
    assert [line.split()[0] for line in long] == ["-rw-r--r--", "lrwxrwxrwx", "drwxr-x---"]
    uid, gid = str(os.geteuid()), str(os.getegid())
    assert [line.split()[1:4] for line in long] == [[uid, gid, "5"], [uid, gid, "4"], [uid, gid, "0"]]
    assert long[1].endswith("link -> file")
    rows = json.loads(ok(fs("ls", "--json", home)).stdout)
    assert [(r["name"], r["type"]) for r in rows] == [("file", "regular file"), ("link", "symbolic link"),
                                                       ("sub", "directory")]
    # A file PATH lists itself; the root lists with the kernel's sticky bit.
    assert ok(fs("ls", f"{home}/file")).stdout.strip() == f"{home}/file"
    root = ok(fs("ls", "-l", "-a", "/")).stdout.splitlines()[0]
    assert root.startswith("d") and root.split()[0].endswith("t") and root.endswith(" .")


def test_ls_follows_readdir_tokens_past_one_reply(fs, home, rundir):
    """A directory with more entries than one READDIR reply holds is listed whole (the token loop)."""
    names = [f"n{i:04d}" for i in range(520)]

    async def create_many() -> None:
        async with open_filesystem(rundir / "pvfs2-ctl", rundir / "pvfs2-vfs") as vfs:
            parent = await vfs.resolve(home)
            for name in names:
                await vfs.create(parent, name.encode(), 0o644, name)

    trio.run(create_many)
    before = _op_count(rundir, "OP_READDIR")
    assert ok(fs("ls", home)).stdout.splitlines() == names
    assert _op_count(rundir, "OP_READDIR") - before >= 2


def test_a_path_walk_is_a_lookup_and_a_getattr_per_component(fs, home, rundir):
    """stat of a path two levels under the root: GETATTR of the root, then LOOKUP and GETATTR per component."""
    ok(fs("mkdir", f"{home}/d"))
    ops = ("OP_LOOKUP", "OP_GETATTR", "OP_FS_MOUNT")
    before = [_op_count(rundir, op) for op in ops]
    ok(fs("stat", f"{home}/d"))
    assert [_op_count(rundir, op) - b for op, b in zip(ops, before)] == [2, 3, 0]


def test_stat_shows_attributes_and_links_unless_dereferenced(fs, home):
    """stat shows the object itself (a symlink with its target); -L follows the link; the owner is the
    calling user."""
    ok(fs("put", "-", f"{home}/f", input=b"abc"))
    ok(fs("ln", "-s", f"{home}/f", f"{home}/l"))
    text = ok(fs("stat", f"{home}/l")).stdout
    assert f"File: {home}/l -> {home}/f" in text and "symbolic link" in text
    text = ok(fs("stat", "-L", f"{home}/l")).stdout
    assert "regular file" in text and "Size: 3 " in text and "(0644/-rw-r--r--)" in text
    (info,) = json.loads(ok(fs("stat", "--json", f"{home}/f")).stdout)
    assert (info["uid"], info["gid"], info["size"], info["mode"]) == (os.geteuid(), os.getegid(), 3, "0644")
    assert info["mtime"] > 0 and len(info["handle"]) == 32
    dirs = json.loads(ok(fs("stat", "--json", "/", home)).stdout)
    assert [d["type"] for d in dirs] == ["directory", "directory"]


def test_mkdir_mode_and_parents(fs, home):
    """mkdir -m sets the permissions; -p makes missing parents and accepts an existing directory; a plain
    mkdir of an existing name is EEXIST."""
    ok(fs("mkdir", "-m", "700", f"{home}/private"))
    assert json.loads(ok(fs("stat", "--json", f"{home}/private")).stdout)[0]["mode"] == "0700"
    ok(fs("mkdir", "-p", f"{home}/a/b/c"))
    ok(fs("mkdir", "-p", f"{home}/a/b/c"))
    assert ok(fs("ls", f"{home}/a/b")).stdout.split() == ["c"]
    fails(fs("mkdir", f"{home}/a"), "EEXIST")
    fails(fs("mkdir", f"{home}/nope/x"), "ENOENT")


def test_mv_renames_and_moves_into_a_directory(fs, home):
    """mv is one RENAME: to a new name, or into an existing directory under the old name."""
    ok(fs("put", "-", f"{home}/a", input=b"A"))
    ok(fs("mkdir", f"{home}/d"))
    ok(fs("mv", f"{home}/a", f"{home}/b"))
    assert ok(fs("ls", home)).stdout.split() == ["b", "d"]
    ok(fs("mv", f"{home}/b", f"{home}/d"))
    assert ok(fs("ls", f"{home}/d")).stdout.split() == ["b"]
    assert ok(fs("cat", f"{home}/d/b")).stdout_bytes == b"A"
    fails(fs("mv", f"{home}/missing", f"{home}/x"), "ENOENT")
    fails(fs("mv", "-T", f"{home}/d/b", f"{home}/d"), "EISDIR")


def test_ln_s_makes_a_symlink_that_paths_follow(fs, home):
    """ln -s stores the target as given; walks follow it (relative to its directory); ln without -s is
    EPERM, as OrangeFS has no hard links."""
    ok(fs("mkdir", f"{home}/real"))
    ok(fs("put", "-", f"{home}/real/f", input=b"through the link"))
    ok(fs("ln", "-s", "real", f"{home}/dirlink"))
    assert ok(fs("cat", f"{home}/dirlink/f")).stdout_bytes == b"through the link"
    info = json.loads(ok(fs("stat", "--json", f"{home}/dirlink")).stdout)[0]
    assert (info["type"], info["link_target"], info["size"]) == ("symbolic link", "real", 4)
    ok(fs("ln", "-s", "loop", f"{home}/loop"))
    fails(fs("cat", f"{home}/loop"), "ELOOP")
    fails(fs("ln", "-s", "-T", "x", f"{home}/dirlink"), "EEXIST")
    ok(fs("ln", "-s", "x", f"{home}/dirlink"))  # into the directory it names, as GNU ln
    assert ok(fs("ls", f"{home}/real")).stdout.split() == ["f", "x"]
    fails(fs("ln", f"{home}/real", f"{home}/hard"), "EPERM")


def test_truncate_sets_grows_and_shrinks(fs, home):
    """truncate -s takes absolute and relative sizes (GETATTR then TRUNCATE) and creates a missing file
    unless -c."""

    def size(path: str) -> int:
        return json.loads(ok(fs("stat", "--json", path)).stdout)[0]["size"]

    ok(fs("put", "-", f"{home}/f", input=b"0123456789"))
    ok(fs("truncate", "-s", "4", f"{home}/f"))
    assert ok(fs("cat", f"{home}/f")).stdout_bytes == b"0123"
    ok(fs("truncate", "-s", "+1K", f"{home}/f"))
    assert size(f"{home}/f") == 1028
    ok(fs("truncate", "-s", "-28", f"{home}/f"))
    assert size(f"{home}/f") == 1000
    assert ok(fs("cat", f"{home}/f")).stdout_bytes == b"0123" + bytes(996)
    ok(fs("truncate", "-c", "-s", "5", f"{home}/absent"))
    fails(fs("stat", f"{home}/absent"), "ENOENT")
    ok(fs("truncate", "-s", "1MB", f"{home}/made"))
    assert size(f"{home}/made") == 1000 * 1000
    fails(fs("truncate", "-s", "0", home), "EISDIR")


def test_df_reports_statfs(fs):
    """df prints the STATFS figures; --json gives them as the kernel fills struct kstatfs."""
    lines = ok(fs("df")).stdout.splitlines()
    assert lines[0].split() == ["Filesystem", "fs_id", "Size", "Used", "Avail", "Use%", "Files", "IFree"]
    assert lines[1].startswith(DEFAULT_DEVICE)
    s = json.loads(ok(fs("df", "--json")).stdout)
    assert s["size"] == s["f_bsize"] * s["f_blocks"] > 0
    assert s["used"] == s["size"] - s["avail"] and s["f_bfree"] == s["f_bavail"]
    assert s["f_namelen"] == 256 and s["f_fsid"] == [s["fs_id"], s["id"]]
    assert s["files"] >= s["ffree"] > 0


def test_xattrs_set_get_list_and_remove(fs, home):
    """setfattr/getfattr: one key by GETXATTR, all keys by the LISTXATTR loop, text/hex/base64 values;
    -x removes (ENODATA when missing); an empty value removes without complaint."""
    ok(fs("put", "-", f"{home}/f", input=b""))
    ok(fs("setfattr", "-n", "user.colour", "-v", "blue", f"{home}/f"))
    ok(fs("setfattr", "-n", "user.bin", "-v", "0x00ff22", f"{home}/f"))
    ok(fs("setfattr", "-n", "user.b64", "-v", "0saGk=", f"{home}/f"))
    assert ok(fs("getfattr", "-n", "user.colour", f"{home}/f")).stdout == f'# file: {home}/f\nuser.colour="blue"\n\n'
    listed = ok(fs("getfattr", f"{home}/f")).stdout.splitlines()
    assert sorted(listed[1:-1]) == ['user.b64="hi"', 'user.bin="\\000\\377\\042"', 'user.colour="blue"']
    assert 'user.bin=0x00ff22' in ok(fs("getfattr", "-e", "hex", f"{home}/f")).stdout
    data = json.loads(ok(fs("getfattr", "--json", f"{home}/f")).stdout)
    assert {x["name"]: x["hex"] for x in data["xattrs"]} == {"user.colour": b"blue".hex(), "user.bin": "00ff22",
                                                            "user.b64": b"hi".hex()}
    # More keys than one LISTXATTR reply (16) holds.
    for i in range(20):
        ok(fs("setfattr", "-n", f"user.k{i:02d}", "-v", str(i), f"{home}/f"))
    data = json.loads(ok(fs("getfattr", "--json", f"{home}/f")).stdout)
    assert len(data["xattrs"]) == 23
    ok(fs("setfattr", "-x", "-n", "user.colour", f"{home}/f"))
    fails(fs("getfattr", "-n", "user.colour", f"{home}/f"), "ENODATA")
    fails(fs("setfattr", "-x", "-n", "user.colour", f"{home}/f"), "ENODATA")
    ok(fs("setfattr", "-n", "user.bin", f"{home}/f"))  # empty value: REMOVEXATTR
    ok(fs("setfattr", "-n", "user.bin", f"{home}/f"))  # ... missing is fine then
    fails(fs("getfattr", "-n", "user.bin", f"{home}/f"), "ENODATA")
    fails(fs("setfattr", "-n", "user." + "x" * 300, "-v", "1", f"{home}/f"), "ERANGE")
    ok(fs("ln", "-s", "f", f"{home}/l"))
    # getxattr on a symlink: EOPNOTSUPP without an upcall (errno_name calls the value ENOTSUP).
    fails(fs("getfattr", "--no-dereference", "-n", "user.b64", f"{home}/l"), errno_name(errno.EOPNOTSUPP))
    assert 'user.b64="hi"' in ok(fs("getfattr", "-n", "user.b64", f"{home}/l")).stdout


def test_rm_and_rmdir(fs, home):
    """rm removes files and links (EISDIR for a directory unless -r); rmdir removes empty directories
    (ENOTEMPTY otherwise, ENOTDIR for a file)."""
    ok(fs("mkdir", f"{home}/d"))
    ok(fs("put", "-", f"{home}/d/f", input=b"x"))
    ok(fs("ln", "-s", "d", f"{home}/l"))
    fails(fs("rmdir", f"{home}/d"), "ENOTEMPTY")
    fails(fs("rm", f"{home}/d"), "EISDIR")
    fails(fs("rmdir", f"{home}/d/f"), "ENOTDIR")
    ok(fs("rm", f"{home}/l"))
    assert ok(fs("ls", f"{home}/d")).stdout.split() == ["f"]  # the link went, not its target
    ok(fs("rm", f"{home}/d/f"))
    ok(fs("rmdir", f"{home}/d"))
    assert ok(fs("ls", home)).stdout == ""
    ok(fs("mkdir", "-p", f"{home}/t/u/v"))
    ok(fs("put", "-", f"{home}/t/u/v/w", input=b"w"))
    ok(fs("rm", "-r", f"{home}/t"))
    fails(fs("rm", f"{home}/t"), "ENOENT")
    ok(fs("rm", "-f", f"{home}/t"))
    fails(fs("rmdir", "/"), "EBUSY")


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("ls", "/no/such"), ("stat", "/no-such"), ("cat", "/no-such"),
                                  ("getfattr", "/no-such"), ("rm", "/no-such"), ("truncate", "-s", "1", "/x/y")])
def test_a_missing_path_is_one_line_enoent(fs, args):
    """A path that names nothing fails with one ENOENT line naming it, exit 1, no traceback."""
    line = fails(fs(*args), "ENOENT")
    assert line.endswith(f"({args[-1]})")


def test_get_of_a_missing_file_creates_no_local_file(fs, tmp_path):
    """get looks the path up before opening the local file."""
    fails(fs("get", "/no-such", str(tmp_path / "out")), "ENOENT")
    assert not (tmp_path / "out").exists()


def test_walking_through_a_file_is_enotdir(fs, home):
    """A file in the middle of a path is ENOTDIR, as the kernel's walk finds without an upcall."""
    ok(fs("put", "-", f"{home}/f", input=b""))
    fails(fs("stat", f"{home}/f/x"), "ENOTDIR")
    fails(fs("ls", f"{home}/f/"), "ENOTDIR")


def test_a_name_over_255_bytes_fails_before_any_upcall(tmp_path):
    """ENAMETOOLONG comes before the broker is even asked: it fails so with no broker running."""
    runner = CliRunner()
    result = runner.invoke(main, ["--rundir", str(tmp_path / "none"), "fs", "mkdir", "/" + "n" * 256])
    fails(result, "ENAMETOOLONG")
    fails(runner.invoke(main, ["--rundir", str(tmp_path / "none"), "fs", "ln", "-s", "t", "/a/" + "n" * 300]),
          "ENAMETOOLONG")


def test_no_broker_is_one_line_naming_the_socket(tmp_path):
    """With no broker the command names the socket it tried and how to start one."""
    result = CliRunner().invoke(main, ["--rundir", str(tmp_path / "none"), "fs", "ls", "/"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (f"pvfs2ctl: no broker at {tmp_path / 'none' / 'pvfs2-ctl'}; start one with: "
                                     f"pvfs2dev serve --rundir {tmp_path / 'none'}")


# --- pure helpers ----------------------------------------------------------------------------------------


def test_parse_size_reads_truncate_sizes():
    """truncate's sizes: K/M/G are powers of 1024, KB/MB powers of 1000, with an optional sign."""
    assert parse_size("4096") == ("", 4096)
    assert parse_size("64K") == ("", 65536) and parse_size("4MiB") == ("", 4 * MiB)
    assert parse_size("1MB") == ("", 1000000) and parse_size("+2k") == ("+", 2048)
    assert parse_size("-3") == ("-", 3) and parse_size("7B") == ("", 7)
    for bad in ("", "x", "1Q", "1iB", "--1"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_decode_value_reads_setfattr_forms():
    """setfattr's value forms: plain text, "quoted" with octal escapes, 0x hex and 0s base64."""
    assert decode_value("plain") == b"plain"
    assert decode_value('"a\\000b\\"c"') == b'a\x00b"c'
    assert decode_value("0x00ff") == b"\x00\xff" and decode_value("0saGk=") == b"hi"
    with pytest.raises(ValueError):
        decode_value("0xzz")
