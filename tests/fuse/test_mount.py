"""A real mount: ``pvfs2dev serve --mount`` with a real client-core, driven by real programs (issue 6).

The module fixture (``conftest.py``) runs ``pvfs2dev serve --rundir D --mount M`` and
``clientcore --rundir D --store S`` as processes; both are always terminated
and the mount must be gone afterwards (``/proc/mounts``).  Each test then runs
ordinary programs (coreutils, tar, find, dd, diff) or plain syscalls on the
mount and checks what they see.  The bigger runs (git, thousands of files,
1 GiB, the fsx exerciser, a client-core crash) are in ``test_programs.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import time

import pytest

from .helpers import DEADLINE, MiB, Stack, _command, mounted, needs_fuse, run, sh, sha256

pytestmark = needs_fuse


# -- listing and attributes ------------------------------------------------------------------------------


def test_ls_la_shows_the_root_and_new_entries(stack, mnt):
    """Lookup, getattr and readdir: ``ls -la`` lists ".", ".." and every entry with its type and size."""
    sh("mkdir sub && printf 12345 > file && ln -s file link", mnt)
    lines = run("ls", "-la", str(mnt)).splitlines()
    names = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in lines[1:]}
    assert {".", "..", "sub", "file", "link"} <= set(names)
    assert names["sub"].startswith("d") and names["link"].startswith("l") and names["file"].startswith("-")
    assert names["file"].split()[4] == "5"
    root = os.stat(stack.mnt)
    assert stat.S_ISDIR(root.st_mode) and root.st_mode & stat.S_ISVTX  # the kernel shows the root sticky


def test_stat_reports_what_getattr_returned(mnt):
    """GETATTR fields reach stat(1): size, mode, owner and a stable inode number."""
    (mnt / "f").write_bytes(b"x" * 1000)
    os.chmod(mnt / "f", 0o640)
    out = run("stat", "-c", "%s %a %u %g %i %F", str(mnt / "f")).split(maxsplit=5)
    assert out[:4] + out[5:] == ["1000", "640", str(os.geteuid()), str(os.getegid()), "regular file\n"]
    assert out[4] == run("stat", "-c", "%i", str(mnt / "f")).strip() == str(os.stat(mnt / "f").st_ino)


def test_mkdir_touch_echo_cat(mnt):
    """CREATE, MKDIR and FILE_IO: a file written with echo reads back with cat; ENOENT is a negative entry."""
    sh("mkdir -p a/b/c && touch a/b/c/empty && echo hello world > a/b/c/hi", mnt)
    assert run("cat", str(mnt / "a/b/c/hi")) == "hello world\n"
    assert os.path.getsize(mnt / "a/b/c/empty") == 0
    assert not (mnt / "a/nothing").exists()
    (mnt / "a/nothing").write_text("now")
    assert (mnt / "a/nothing").read_text() == "now"


def test_cp_a_tree_then_diff_r(tmp_path, mnt):
    """A cp -a of a ~200-file tree (READDIR loop, CREATE, FILE_IO, SETATTR) compares equal with diff -r."""
    src = tmp_path / "src"
    rng = random.Random(6)
    for i in range(200):
        d = src / f"d{i % 7}" / f"e{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}").write_bytes(rng.randbytes(rng.choice([0, 1, 100, 4096, 5000, 70000])))
    (src / "d0" / "link").symlink_to("e0/file0")
    run("cp", "-a", str(src), str(mnt / "copy"))
    run("diff", "-r", "--no-dereference", str(src), str(mnt / "copy"))
    assert sorted(os.listdir(mnt / "copy" / "d1")) == sorted(os.listdir(src / "d1"))


def test_mv_across_directories(mnt):
    """RENAME between two directories moves the entry and its data."""
    sh("mkdir one two && echo moved > one/f && mv one/f two/g && mkdir one/sub && mv one/sub two/", mnt)
    assert not (mnt / "one/f").exists() and (mnt / "two/g").read_text() == "moved\n"
    assert (mnt / "two/sub").is_dir() and os.listdir(mnt / "one") == []


def test_ln_s_and_readlink(mnt):
    """SYMLINK and GETATTR's link target: readlink prints it and the link is followed."""
    sh("echo target > t && ln -s t l && ln -s /nowhere/at/all dangling", mnt)
    assert run("readlink", str(mnt / "l")).strip() == "t"
    assert (mnt / "l").read_text() == "target\n"
    assert os.readlink(mnt / "dangling") == "/nowhere/at/all"
    assert stat.S_ISLNK(os.lstat(mnt / "l").st_mode)


def test_chmod_and_chown_as_root(mnt):
    """SETATTR with the changed fields: chmod, chown and touch -d show in stat."""
    (mnt / "f").write_text("x")
    run("chmod", "751", str(mnt / "f"))
    assert stat.S_IMODE(os.stat(mnt / "f").st_mode) == 0o751
    if os.geteuid() == 0:
        run("chown", "1234:4321", str(mnt / "f"))
        st = os.stat(mnt / "f")
        assert (st.st_uid, st.st_gid) == (1234, 4321)
    run("touch", "-m", "-d", "2001-02-03 04:05:06 UTC", str(mnt / "f"))
    assert int(os.stat(mnt / "f").st_mtime) == 981173106
    # Before 1970: the sys_attr u64 times carry a time64_t (spec §3.1), so the stat shows the negative time.
    run("touch", "-m", "-d", "1960-01-01 00:00:00 UTC", str(mnt / "f"))
    assert int(os.stat(mnt / "f").st_mtime) == -315619200
    with pytest.raises(OSError) as exc:
        os.chmod(mnt / "f", 0o4755)
    assert exc.value.errno == errno.EINVAL  # setuid via chmod (spec §2.6)


def test_df_shows_statfs(stack):
    """STATFS maps to statvfs: block size, totals, free counts, 255-byte names."""
    st = os.statvfs(stack.mnt)
    assert st.f_bsize > 0 and st.f_blocks >= st.f_bfree == st.f_bavail and st.f_files >= st.f_ffree
    assert st.f_namemax == 255
    out = run("df", "-P", str(stack.mnt)).splitlines()[-1].split()
    assert out[0] == "tcp://localhost:3334/pvfs2-fs" and out[-1] == str(stack.mnt)


def test_xattrs_set_get_list_remove(mnt):
    """GETXATTR/SETXATTR/LISTXATTR/REMOVEXATTR: values round trip, missing ones are ENODATA."""
    f = mnt / "f"
    f.write_text("x")
    if shutil.which("setfattr") and shutil.which("getfattr"):
        run("setfattr", "-n", "user.colour", "-v", "blue", str(f))
        assert 'user.colour="blue"' in run("getfattr", "-d", str(f))
    else:
        os.setxattr(f, "user.colour", b"blue")
    assert os.getxattr(f, "user.colour") == b"blue"
    for i in range(20):  # more than one LISTXATTR batch of 16
        os.setxattr(f, f"user.k{i:02}", str(i).encode())
    assert set(os.listxattr(f)) == {"user.colour", *(f"user.k{i:02}" for i in range(20))}
    os.setxattr(f, "user.colour", b"red", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.colour") == b"red"
    with pytest.raises(OSError) as exc:
        os.setxattr(f, "user.colour", b"green", os.XATTR_CREATE)
    assert exc.value.errno == errno.EEXIST
    os.removexattr(f, "user.colour")
    for call in (lambda: os.getxattr(f, "user.colour"), lambda: os.removexattr(f, "user.colour")):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.ENODATA


def test_getxattr_size_probe_and_erange(mnt):
    """getxattr(2) with size 0 returns the value's size; a buffer too small is ERANGE."""
    f = mnt / "f"
    f.write_text("x")
    os.setxattr(f, "user.v", b"0123456789")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    path, name = bytes(f), b"user.v"
    assert libc.getxattr(path, name, None, 0) == 10
    buf = ctypes.create_string_buffer(4)
    assert libc.getxattr(path, name, buf, 4) == -1 and ctypes.get_errno() == errno.ERANGE
    assert libc.listxattr(path, None, 0) == len(b"user.v\0")


def test_getxattr_on_a_symlink_is_eopnotsupp(mnt):
    """getxattr on a symlink is EOPNOTSUPP before any upcall (trusted.* reaches the filesystem as root)."""
    if os.geteuid() != 0:
        pytest.skip("trusted.* xattrs need root")
    os.symlink("nowhere", mnt / "l")
    with pytest.raises(OSError) as exc:
        os.getxattr(mnt / "l", "trusted.x", follow_symlinks=False)
    assert exc.value.errno == errno.EOPNOTSUPP


def test_find_lists_every_entry(tmp_path, mnt):
    """READDIR token loop past one batch of 512: find sees all 700 entries of a directory and its subdirectories."""
    names = {f"n{i:04}" for i in range(600)}
    sh("mkdir big && cd big && touch " + " ".join(sorted(names)), mnt)
    for i in range(100):
        (mnt / "big" / f"d{i}").mkdir() if i < 5 else (mnt / "big" / "d0" / f"x{i}").touch()
    found = run("find", str(mnt / "big")).splitlines()
    assert len(found) == 1 + 600 + 5 + 95
    assert {os.path.basename(p) for p in found} >= names
    assert len(os.listdir(mnt / "big")) == 605


def test_dd_in_and_out_checksums_match(tmp_path, mnt):
    """FILE_IO split by slot size: 64 MiB written and read back with dd bs=1M has the same sha256."""
    src = tmp_path / "src"
    src.write_bytes(random.Random(64).randbytes(64 * MiB))
    run("dd", f"if={src}", f"of={mnt / 'big'}", "bs=1M", "count=64", "conv=fsync", "status=none")
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], capture_output=True)
    run("dd", f"if={mnt / 'big'}", f"of={tmp_path / 'back'}", "bs=1M", "status=none")
    assert os.path.getsize(mnt / "big") == 64 * MiB
    assert sha256(tmp_path / "back") == sha256(src)


def test_tar_round_trip(tmp_path, mnt):
    """tar c | tar x onto the mount and back reproduces the tree byte for byte."""
    src = tmp_path / "src"
    rng = random.Random(7)
    for i in range(40):
        d = src / f"dir{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(rng.randbytes(rng.randrange(0, 200000)))
    (src / "dir1" / "sym").symlink_to("f1")
    archive = subprocess.run(["tar", "-C", str(src), "-cf", "-", "."], capture_output=True, check=True).stdout
    run("tar", "-C", str(mnt), "-xf", "-", input=archive)
    again = subprocess.run(["tar", "-C", str(mnt), "-cf", "-", "."], capture_output=True, check=True).stdout
    (tmp_path / "back").mkdir()
    run("tar", "-C", str(tmp_path / "back"), "-xf", "-", input=again)
    run("diff", "-r", "--no-dereference", str(src), str(tmp_path / "back"))


def test_written_data_is_seen_before_close(mnt):
    """Gathered writes go out before anything reads the data or the size: another fd and another process see them."""
    path = mnt / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"a" * 300_000)
        os.write(fd, b"b" * 5)
        time.sleep(0.1)  # past the attribute timeout: the size comes from a GETATTR
        assert run("stat", "-c", "%s", str(path)).strip() == "300005"
        with open(path, "rb") as other:
            assert other.read()[-6:] == b"abbbbb"
        os.pwrite(fd, b"c", 10)
        assert os.pread(fd, 3, 9) == b"aca"
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a" * 10 + b"c" + b"a" * 299_989 + b"b" * 5


def test_unlink_and_rmdir(mnt):
    """REMOVE: rm and rmdir take entries away; a non-empty directory is ENOTEMPTY."""
    sh("mkdir -p d/e && touch d/f", mnt)
    with pytest.raises(OSError) as exc:
        os.rmdir(mnt / "d")
    assert exc.value.errno == errno.ENOTEMPTY
    sh("rm d/f && rmdir d/e && rmdir d", mnt)
    assert os.listdir(mnt) == []


def test_name_over_255_bytes_is_enametoolong(mnt):
    """A name over 255 bytes is ENAMETOOLONG; 255 bytes works."""
    with pytest.raises(OSError) as exc:
        (mnt / ("x" * 256)).write_text("no")
    assert exc.value.errno == errno.ENAMETOOLONG
    (mnt / ("y" * 255)).write_text("yes")
    assert (mnt / ("y" * 255)).read_text() == "yes"


def test_rename_flags_are_einval(mnt):
    """renameat2 with RENAME_NOREPLACE is EINVAL, as orangefs_rename refuses any flags."""
    (mnt / "a").write_text("a")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    AT_FDCWD, RENAME_NOREPLACE = -100, 1
    rc = libc.renameat2(AT_FDCWD, bytes(mnt / "a"), AT_FDCWD, bytes(mnt / "b"), RENAME_NOREPLACE)
    assert rc == -1 and ctypes.get_errno() == errno.EINVAL
    assert (mnt / "a").exists() and not (mnt / "b").exists()


def test_client_core_restart_keeps_the_mount(tmp_path):
    """A client-core restart remounts (REMOUNT_ALL) while the mount stays up, and a call waiting meanwhile completes."""
    stack = Stack(tmp_path)
    try:
        (stack.mnt / "f").write_text("before")
        stack.clientcore.send_signal(signal.SIGTERM)
        stack.clientcore.wait(timeout=DEADLINE)
        waiting = subprocess.Popen(["cat", str(stack.mnt / "f")], stdout=subprocess.PIPE)
        time.sleep(0.5)
        assert waiting.poll() is None  # held until a client-core is back
        stack.start_clientcore()
        out, _ = waiting.communicate(timeout=DEADLINE)
        assert waiting.returncode == 0 and out == b"before"
        assert mounted(stack.mnt) and (stack.mnt / "f").read_text() == "before"
        # After the remount the kernel's mount is still listed as mounted here.
        listed = json.loads(run(*_command("pvfs2ctl", "pvfs2ctl"), "--rundir", str(stack.rundir), "mounts", "--json"))
        (m,) = listed["mounts"]
        assert m["mountpoint"] == str(stack.mnt) and not m["pending"]
    finally:
        stack.stop()
    assert stack.serve.returncode == 0


def test_sigterm_unmounts_cleanly(tmp_path):
    """SIGTERM writes back held data, unmounts (no fusermount3 -u needed) and exits 0; the data is there next time."""
    stack = Stack(tmp_path)
    fd = -1
    try:
        (stack.mnt / "f").write_text("x")
        fd = os.open(stack.mnt / "held", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"written, not closed")
    finally:
        stack.stop()
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # the connection is gone: ENOTCONN
    assert stack.serve.returncode == 0 and not mounted(stack.mnt)
    again = Stack(tmp_path)
    try:
        assert (again.mnt / "held").read_bytes() == b"written, not closed"
        assert (again.mnt / "f").read_text() == "x"
    finally:
        again.stop()
