"""Real programs that must work on the mount (issue 6): git, a big cp -a, 1 GiB of dd, fsx, and a crash.

Each test runs an ordinary program (or plain syscalls) against ``pvfs2dev
serve --mount`` with a real client-core (the module's ``stack`` fixture, in
``conftest.py``), and says in its docstring which kernel paths it exercises.
Everything random is seeded, so a failure replays the same way.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from .helpers import MiB, Stack, mounted, needs_fuse, poll_until, run, sh

pytestmark = needs_fuse


def make_tree(root: Path, files: int, *, seed: int, big: int = 0, links: int = 0, dirs: int = 12) -> None:
    """``files`` regular files spread over nested directories, sizes mixed (0 bytes included).

    ``big`` of them are over 1 MiB; ``links`` symlinks (to files, to
    directories, dangling, absolute) are added; some files and directories get
    modes 0600, 0755 or 0700; as root, some get another owner.
    """
    rng = random.Random(seed)
    sizes = [0, 0, 1, 17, 511, 4096, 4097, 10_000, 65_536, 100_000]
    made: list[Path] = []
    for i in range(files):
        # Up to three levels: dNN (``dirs`` of them) / e0..e4 / f1, f2 or nothing.
        d = root / f"d{i % dirs:02}" / f"e{i // dirs % 5}"
        if i // (dirs * 5) % 3:
            d = d / f"f{i // (dirs * 5) % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(MiB + 1, 3 * MiB) if i < big else rng.choice(sizes)
        path = d / f"file{i:05}"
        path.write_bytes(rng.randbytes(size))
        made.append(path)
    for i, path in enumerate(made):
        if i % 17 == 0:
            path.chmod(0o600)
        elif i % 19 == 0:
            path.chmod(0o755)
        if os.geteuid() == 0 and i % 23 == 0:
            os.chown(path, 1234, 4321)
    (root / "d01" / "e1").chmod(0o700)
    targets = ["../e0/file00000", "e2", "no/such/file", "/etc/hostname", "../../d02", "file00001"]
    for i in range(links):
        (root / f"d{i % dirs:02}" / f"link{i}").symlink_to(targets[i % len(targets)])


def listing(root: Path) -> list[str]:
    """``find . | sort`` in ``root``, as a program sees it."""
    return sorted(run("find", ".", cwd=root).splitlines())


def attributes(root: Path) -> dict[str, tuple]:
    """Type, permissions, owner, size (regular files) and mtime (seconds) of everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            out[os.path.relpath(path, root)] = (
                kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_size if kind == stat.S_IFREG else None, int(st.st_mtime))
    return out


# -- git -------------------------------------------------------------------------------------------------


def test_git_init_add_commit_fsck(tmp_path, mnt):
    """git: CREATE of objects in fan-out directories, RENAME over lock files (link(2) is EPERM, so git
    renames), chmod 0444, fsync, mmap'd reads of the index and packs (FILE_IO through the page cache),
    and stat data stable enough that ``git status`` sees no change."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed (./dev installs it)")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.org",
           "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.org",
           "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z",
           "LC_ALL": "C"}
    repo = mnt / "repo"

    def git(*args: str, cwd: Path = repo) -> str:
        return run("git", *args, cwd=cwd, env=env)

    rng = random.Random(1)
    for i in range(36):
        d = repo / ["", "src", "src/pkg", "src/pkg/sub", "docs", "tests/unit"][i % 6]
        d.mkdir(parents=True, exist_ok=True)
        lines = [f"line {j}: {rng.randrange(10**9)}" for j in range(rng.randrange(0, 400))]
        (d / f"file{i:02}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (repo / "src" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "src" / "run.sh").chmod(0o755)
    (repo / "link").symlink_to("src/file01.txt")

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "first: a small tree")
    log = git("log", "--oneline").splitlines()
    assert len(log) == 1 and log[0].endswith("first: a small tree")
    assert git("status", "--porcelain") == ""
    assert git("fsck", "--full", "--strict", "--no-progress") == ""
    assert "100755 blob" in git("ls-tree", "HEAD", "src/run.sh")
    assert git("ls-tree", "HEAD", "link").startswith("120000 blob")
    assert len(git("ls-files").splitlines()) == 38

    (repo / "src" / "file01.txt").write_text("changed\n")
    (repo / "docs" / "file04.txt").unlink()
    (repo / "new.txt").write_text("new\n")
    assert sorted(git("status", "--porcelain").splitlines()) == [
        " D docs/file04.txt", " M src/file01.txt", "?? new.txt"]
    git("add", "-A")
    git("commit", "-q", "-m", "second: change, remove, add")
    assert [line.split(" ", 1)[1] for line in git("log", "--oneline").splitlines()] == [
        "second: change, remove, add", "first: a small tree"]
    assert git("status", "--porcelain") == ""
    assert sorted(git("diff", "--name-status", "HEAD~1", "HEAD").splitlines()) == [
        "A\tnew.txt", "D\tdocs/file04.txt", "M\tsrc/file01.txt"]

    # Packing writes and re-reads pack files (and their .idx) through mmap.
    git("gc", "--quiet")
    assert git("fsck", "--full", "--strict", "--no-progress") == ""
    assert git("count-objects", "-v").splitlines()[0] == "count: 0"
    git("clone", "-q", "--no-hardlinks", str(repo), str(tmp_path / "clone"), cwd=tmp_path)
    run("diff", "-r", "--no-dereference", "--exclude=.git", str(repo), str(tmp_path / "clone"))
    assert git("status", "--porcelain") == ""


# -- cp -a of thousands of files --------------------------------------------------------------------------


def test_cp_a_thousands_of_files(tmp_path, mnt):
    """cp -a of 3,000 files over 192 directories: LOOKUP misses, CREATE, MKDIR, SYMLINK, FILE_IO of 0 bytes to
    3 MiB, SETATTR of mode, owner and times, then READDIR past one batch and GETATTR of everything to compare."""
    src = tmp_path / "src"
    make_tree(src, 3000, seed=3000, big=4, links=12)
    run("cp", "-a", str(src), str(mnt / "copy"), timeout=300)
    run("diff", "-r", "--no-dereference", str(src), str(mnt / "copy"), timeout=300)
    assert listing(mnt / "copy") == listing(src)
    assert attributes(mnt / "copy") == attributes(src)


def test_what_cp_a_relies_on(mnt):
    """The two paths behind cp -a's modes and times: utimens on a file whose written data the front end still
    holds keeps the time set (SETATTR after the FILE_IO, not before it), and system.posix_acl_access is
    EOPNOTSUPP (a mount without -o acl), so cp sets the mode with fchmod instead of an ACL."""
    path = mnt / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"x" * 5000)
        os.utime(fd, ns=(1_000_000_000_000_000_000, 981_173_106_000_000_000))
    finally:
        os.close(fd)
    assert int(os.stat(path).st_mtime) == 981173106 and os.stat(path).st_size == 5000
    # version 2; USER_OBJ rw-, GROUP_OBJ r--, OTHER r--: the ACL of mode 0644.
    acl = struct.pack("<I" + "HHI" * 3, 2, 0x01, 6, 0xFFFFFFFF, 0x04, 4, 0xFFFFFFFF, 0x20, 4, 0xFFFFFFFF)
    for call in (lambda: os.setxattr(path, "system.posix_acl_access", acl),
                 lambda: os.getxattr(path, "system.posix_acl_access"),
                 lambda: os.setxattr(mnt, "system.posix_acl_default", acl)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EOPNOTSUPP
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "system.posix_acl_access" not in os.listxattr(path)


# -- dd of 1 GiB ------------------------------------------------------------------------------------------


def test_dd_one_gib_in_and_out(tmp_path, mnt):
    """1 GiB through dd bs=1M each way: FILE_IO writes gathered to slot size with two in flight, fsync,
    then reads with 4 MiB read-ahead; sha256 of the generated bytes against the bytes read back."""
    big = mnt / "big"
    rng = random.Random(1 << 30)
    written = hashlib.sha256()
    try:
        with open(tmp_path / "dd.log", "wb") as errors, subprocess.Popen(
            ["dd", f"of={big}", "bs=1M", "iflag=fullblock", "conv=fsync", "status=none"],
            stdin=subprocess.PIPE, stderr=errors,
        ) as dd:
            try:
                for _ in range(1024):
                    chunk = rng.randbytes(MiB)
                    written.update(chunk)
                    dd.stdin.write(chunk)
                dd.stdin.close()
                assert dd.wait(timeout=300) == 0, f"dd in exited {dd.returncode}: {(tmp_path / 'dd.log').read_text()}"
            finally:
                if dd.poll() is None:
                    dd.kill()
        assert os.stat(big).st_size == 1024 * MiB
        # Best effort (a container may refuse it); a fresh open reads from the filesystem anyway
        # (FUSE drops the file's page cache at open, and the front end its read-ahead).
        subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], capture_output=True)
        read = hashlib.sha256()
        count = 0
        with subprocess.Popen(["dd", f"if={big}", "bs=1M", "status=none"], stdout=subprocess.PIPE) as dd:
            try:
                while chunk := dd.stdout.read(MiB):
                    read.update(chunk)
                    count += len(chunk)
                assert dd.wait(timeout=300) == 0, f"dd out exited {dd.returncode}"
            finally:
                if dd.poll() is None:
                    dd.kill()
        assert count == 1024 * MiB
        assert read.hexdigest() == written.hexdigest()
    finally:
        big.unlink(missing_ok=True)
    assert not big.exists()


# -- fsx -------------------------------------------------------------------------------------------------


FSX_SEED = int(os.environ.get("FSX_SEED", "20260"))
FSX_OPS = int(os.environ.get("FSX_OPS", "20000"))


def test_fsx_against_a_shadow(mnt):
    """fsx-style: 20,000 seeded writes (random, sequential runs gathered into slot-size FILE_IOs, runs past
    two slots), reads (random, sequential with read-ahead), ftruncate and truncate(2) (SETATTR size), close and
    reopen (O_TRUNC too) and fstat size on two fds, checked against an in-memory shadow.  FSX_SEED=N and
    FSX_OPS=N replay another run."""
    seed, ops = FSX_SEED, FSX_OPS
    rng = random.Random(seed)
    path = mnt / "fsx"
    shadow = bytearray()
    max_size = MiB  # where random ops land; runs and truncates grow the file past it
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o644), -1]
    fds[1] = os.open(path, os.O_RDONLY)
    history: collections.deque[str] = collections.deque(maxlen=40)
    step = 0

    def fail(what: str) -> AssertionError:
        tail = "\n".join(f"  {line}" for line in history)
        return AssertionError(f"fsx seed {seed} (FSX_SEED={seed}), step {step} of {ops}: {what}\n"
                              f"last {len(history)} ops:\n{tail}")

    def resize(size: int) -> None:
        if size < len(shadow):
            del shadow[size:]
        else:
            shadow.extend(bytes(size - len(shadow)))

    def write(offset: int, data: bytes) -> None:
        history.append(f"{step}: write fd0 {len(data)}@{offset}")
        n = os.pwrite(fds[0], data, offset)
        if n != len(data):
            raise fail(f"pwrite of {len(data)}@{offset} wrote {n}")
        if offset > len(shadow):
            resize(offset)
        shadow[offset : offset + len(data)] = data

    def read(offset: int, length: int) -> None:
        which = rng.randrange(2)
        history.append(f"{step}: read fd{which} {length}@{offset} (size {len(shadow)})")
        got = os.pread(fds[which], length, offset)
        want = bytes(shadow[offset : offset + length])
        if got != want:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise fail(f"read {length}@{offset} on fd{which} got {len(got)} bytes, want {len(want)}; "
                       f"first difference at byte {offset + first}")

    try:
        for step in range(ops):
            op = rng.random()
            if op < 0.30:  # a random write
                offset = rng.randrange(0, max_size)
                write(offset, rng.randbytes(min(rng.randrange(1, 16384), max_size - offset) or 1))
            elif op < 0.38:  # a sequential run (gathered into FILE_IOs)
                offset, chunk = rng.randrange(0, max_size // 2), rng.choice([4096, 65536, 131072, 262144])
                for _ in range(rng.randrange(2, 8)):
                    write(offset, rng.randbytes(chunk))
                    offset += chunk
            elif op < 0.382:  # a run past two slots: full ranges go out in the background, two in flight
                offset = rng.randrange(0, max_size // 2)
                for _ in range(rng.randrange(5, 10)):
                    write(offset, rng.randbytes(MiB))
                    offset += MiB
            elif op < 0.63:  # a random read
                read(rng.randrange(0, max(max_size, len(shadow)) + 1), rng.randrange(1, 65536))
            elif op < 0.78:  # a sequential read (read-ahead)
                offset, chunk = rng.randrange(0, max(max_size, len(shadow)) + 1), 131072
                for _ in range(rng.randrange(2, 8)):
                    read(offset, chunk)
                    offset += chunk
            elif op < 0.86:  # ftruncate (SETATTR size with a file handle)
                size = rng.randrange(0, max_size)
                history.append(f"{step}: ftruncate fd0 {size}")
                os.ftruncate(fds[0], size)
                resize(size)
            elif op < 0.88:  # truncate(2) by path (SETATTR size without one)
                size = rng.randrange(0, max_size)
                history.append(f"{step}: truncate path {size}")
                os.truncate(path, size)
                resize(size)
            elif op < 0.93:  # close and reopen one fd
                which = rng.randrange(2)
                trunc = which == 0 and rng.random() < 0.1
                history.append(f"{step}: reopen fd{which}{' O_TRUNC' if trunc else ''}")
                os.close(fds[which])
                fds[which] = -1
                fds[which] = os.open(path, (os.O_RDWR | (os.O_TRUNC if trunc else 0)) if which == 0 else os.O_RDONLY)
                if trunc:
                    resize(0)
            else:  # fstat size on either fd, stat(2) by path
                which = rng.randrange(2)
                history.append(f"{step}: fstat fd{which} (size {len(shadow)})")
                sizes = os.fstat(fds[which]).st_size, os.stat(path).st_size
                if sizes != (len(shadow), len(shadow)):
                    raise fail(f"fstat/stat size {sizes}, want {len(shadow)}")
        step = ops
        for i, fd in enumerate(fds):
            os.close(fd)
            fds[i] = -1
        history.append("close both; read the whole file")
        if path.read_bytes() != bytes(shadow):
            raise fail("the file read whole after close differs from the shadow")
    except OSError as exc:
        raise fail(f"{exc!r}") from exc
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


# -- the client-core killed in the middle of a copy -------------------------------------------------------


def test_client_core_killed_during_cp_a(tmp_path):
    """SIGKILL of the client-core daemon (under --watchdog) in the middle of cp -a: the device is released,
    the ops in flight are purged and retried, the restarted daemon's REMOUNT_ALL lets them through, and the
    copy finishes complete; the mount stays up and the broker still stops cleanly."""
    src = tmp_path / "src"
    make_tree(src, 1500, seed=1500, big=2, links=6, dirs=15)
    tops = len(os.listdir(src))
    stack = Stack(tmp_path / "stack", watchdog=True)
    try:
        first = poll_until(stack.daemon_pid, "client-core daemon under the watchdog")
        with open(tmp_path / "cp.log", "wb") as errors, subprocess.Popen(
            ["cp", "-a", str(src), str(stack.mnt / "copy")], stdin=subprocess.DEVNULL, stderr=errors,
        ) as cp:
            try:
                # A third of the top-level directories started: well into the copy.
                poll_until(lambda: cp.poll() is not None or (
                    (stack.mnt / "copy").is_dir() and len(os.listdir(stack.mnt / "copy")) > tops // 3),
                    "progress of cp -a", timeout=120)
                assert cp.poll() is None, "cp -a finished before the client-core could be killed"
                os.kill(first, signal.SIGKILL)
                second = poll_until(lambda: (pid := stack.daemon_pid()) not in (None, first) and pid,
                                    "restarted client-core daemon")
                assert cp.wait(timeout=300) == 0, f"cp -a exited {cp.returncode}: {(tmp_path / 'cp.log').read_text()}"
            finally:
                if cp.poll() is None:
                    cp.kill()
        assert second != first
        run("diff", "-r", "--no-dereference", str(src), str(stack.mnt / "copy"), timeout=300)
        assert listing(stack.mnt / "copy") == listing(src)
        assert mounted(stack.mnt)
        assert "signal SIGKILL" in stack.log("clientcore")
    finally:
        stack.stop()
    assert stack.serve.returncode == 0, stack.log("serve")
    assert "Traceback" not in stack.log("serve"), stack.log("serve")


# -- mv, chmod -R, chown -R, ls -la -----------------------------------------------------------------------


def test_mv_a_directory_tree_across_directories(mnt):
    """RENAME of a directory with a tree under it to another parent: every entry is found under the new
    path (LOOKUP and READDIR through the moved directory), none under the old one, data intact."""
    sh("mkdir -p from/tree/a/b/c to && for d in tree tree/a tree/a/b tree/a/b/c; do"
       " for i in 1 2 3; do echo \"$d $i\" > from/$d/f$i; done; done && ln -s a/b from/tree/ab", mnt)
    before = sorted(run("find", "tree", cwd=mnt / "from").splitlines())
    run("mv", str(mnt / "from" / "tree"), str(mnt / "to"))
    assert os.listdir(mnt / "from") == []
    assert sorted(run("find", "tree", cwd=mnt / "to").splitlines()) == before
    assert (mnt / "to/tree/a/b/c/f2").read_text() == "tree/a/b/c 2\n"
    assert (mnt / "to/tree/ab/c/f3").read_text() == "tree/a/b/c 3\n"  # through the moved symlink
    # Renamed again within its new parent, then back over an empty directory (RENAME replacing it).
    run("mv", str(mnt / "to/tree"), str(mnt / "to/renamed"))
    (mnt / "from/tree").mkdir()
    run("mv", "-T", str(mnt / "to/renamed"), str(mnt / "from/tree"))
    assert sorted(run("find", "tree", cwd=mnt / "from").splitlines()) == before
    assert os.listdir(mnt / "to") == []


def test_chmod_r_chown_r_and_ls_la(mnt):
    """chmod -R and chown -R over a tree (READDIR, then SETATTR of PERM, UID and GID on every entry): stat -c
    and ls -la show the new modes and owners on files and directories."""
    sh("mkdir -p t/d1/d2 && for d in t t/d1 t/d1/d2; do echo x > $d/f; echo y > $d/g; done && ln -s f t/l", mnt)
    tree = mnt / "t"
    run("chmod", "-R", "u=rwX,g=rX,o=", str(tree))
    run("chmod", "0755", str(tree / "d1" / "g"))
    expect = {}
    for path in run("find", str(tree)).splitlines():
        p = Path(path)
        if p.is_symlink():
            continue
        expect[path] = "750" if p.is_dir() else "755" if p == tree / "d1" / "g" else "640"
    if os.geteuid() == 0:
        run("chown", "-R", "1234:4321", str(tree))
        owner = "1234 4321"
    else:
        owner = f"{os.geteuid()} {os.getegid()}"
    got = {}
    for line in run("stat", "-c", "%n %a %u %g %F", *expect).splitlines():
        name, mode, uid, gid, kind = line.split(" ", 4)
        got[name] = mode
        assert f"{uid} {gid}" == owner, line
        assert kind == ("directory" if Path(name).is_dir() else "regular file"), line
    assert got == expect
    if os.geteuid() == 0:  # chown -R changes the link itself (lchown), not its target
        assert run("stat", "-c", "%u %g", str(tree / "l")).strip() == "1234 4321"

    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line.split()
             for line in run("ls", "-la", "-n", str(tree)).splitlines()[1:]}
    assert lines["d1"][0] == "drwxr-x---" and lines["f"][0] == "-rw-r-----" and lines["l"][0] == "lrwxrwxrwx"
    assert lines["."][0] == "drwxr-x---"
    assert lines["f"][2:4] == owner.split()
    sub = {line.split()[-1]: line.split()[0] for line in run("ls", "-la", str(tree / "d1")).splitlines()[1:]}
    assert sub["g"] == "-rwxr-xr-x" and sub["d2"] == "drwxr-x---" and sub["f"] == "-rw-r-----"
    # No permissions at all: stat shows 0 (and root, bypassing them, still reads it).
    run("chmod", "000", str(tree / "d1" / "f"))
    assert run("stat", "-c", "%a %A", str(tree / "d1" / "f")).strip() == "0 ----------"
    if os.geteuid() == 0:
        assert (tree / "d1" / "f").read_text() == "x\n"
