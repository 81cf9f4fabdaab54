"""Record and replay, end to end (issue 7): ``pvfs2ctl trace --record`` and ``pvfs2dev replay``.

The two recordings in tests/data (made by tests/data/make_recordings.py with
our client-core on a fresh store) are replayed against our client-core on a
fresh store and must show no divergence; a client-core that misbehaves, or a
recording edited in one field, must be reported at the right upcall and
field; bad files and a replay that cannot run are one-line errors.  Each
replay starts its own client-core process and stops it; the broker side runs
in the test's process (click's CliRunner) and is gone when the command returns.
"""

from __future__ import annotations

import base64
import json
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pvfs2proto as proto
from pvfs2dev.cli import main
from pvfs2dev.recorder import decode_frame, encode_frame
from pvfs2dev.replay import EXIT_BAD_FILE, EXIT_DIVERGED, EXIT_FAILED, EXIT_SAME
from pvfs2proto import OpCode
from tests.data import make_recordings

DATA = Path(__file__).resolve().parent.parent / "data"
RECORDINGS = ["metadata", "data"]


def clientcore(store: Path, *faults: str) -> str:
    argv = [sys.executable, "-m", "clientcore.daemon", "--store", str(store), *make_recordings.CLIENTCORE_ARGS]
    for fault in faults:
        argv += ["--fault", fault]
    return shlex.join(argv)


def replay(path: Path, *args: str):
    return CliRunner().invoke(main, ["replay", str(path), *args], catch_exceptions=False)


def replay_json(path: Path, store: Path, *faults: str) -> tuple[int, dict]:
    result = replay(path, "--json", "--timeout", "10", "--clientcore", clientcore(store, *faults))
    assert result.exit_code in (EXIT_SAME, EXIT_DIVERGED), result.output
    return result.exit_code, json.loads(result.stdout)


# -- editing recordings -----------------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(lines: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def upcalls(lines: list[dict]) -> list[tuple[int, dict, dict]]:
    """(index, upcall line, its downcall line) of a sequential recording."""
    out = []
    ups = [line for line in lines if line.get("event") == "upcall"]
    downs = {line["tag"]: line for line in lines if line.get("event") == "downcall"}
    for index, up in enumerate(ups):
        out.append((index, up, downs[up["tag"]]))
    return out


def nth(lines: list[dict], op: str, n: int = 0, where=lambda up: True) -> tuple[int, dict, dict]:
    return [u for u in upcalls(lines) if u[1]["op"] == op and where(u[1])][n]


def set_downcall(line: dict, edit) -> None:
    """Decode the downcall in ``line``, let ``edit`` change the Container, encode it back."""
    frame = decode_frame(line)
    tag = int.from_bytes(frame[8:16], "little")
    op = proto.frames.write_frame.unpack(frame[:8240]).downcall.type
    down = proto.decode_downcall(frame[16:8240], op)
    trailer = edit(down, frame[8240:])
    new = proto.encode_write_frame(tag, down, frame[8240:] if trailer is None else trailer)
    line.pop("trailer", None)
    line.update(encode_frame(new, trailer_at=8240))


# -- the checked-in recordings ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_checked_in_recordings_replay_without_divergence(name, tmp_path):
    """Issue 7: each recording in tests/data replays against our client-core on a fresh store with no divergence."""
    status, report = replay_json(DATA / f"{name}.jsonl", tmp_path / "store")
    assert (status, report["divergence"], report["skipped"]) == (EXIT_SAME, None, 0)
    assert report["replayed"] == report["ops"] == len(upcalls(read_lines(DATA / f"{name}.jsonl")))


@pytest.mark.parametrize("name", RECORDINGS)
def test_checked_in_recordings_are_small_and_cover_their_session(name):
    """The recordings stay under 1 MiB and hold the ops the issue names."""
    path = DATA / f"{name}.jsonl"
    assert path.stat().st_size < make_recordings.MAX_SIZE
    ops = {up["op"] for _, up, _ in upcalls(read_lines(path))}
    wanted = {"metadata": {"OP_FS_MOUNT", "OP_MKDIR", "OP_CREATE", "OP_SETATTR", "OP_LOOKUP", "OP_READDIR",
                           "OP_RENAME", "OP_REMOVE", "OP_SETXATTR", "OP_GETXATTR", "OP_LISTXATTR",
                           "OP_REMOVEXATTR", "OP_SYMLINK", "OP_STATFS", "OP_FS_UMOUNT"},
              "data": {"OP_CREATE", "OP_FILE_IO", "OP_TRUNCATE", "OP_FSYNC", "OP_FS_UMOUNT"}}[name]
    assert wanted <= ops


def test_text_report_names_the_count(tmp_path):
    result = replay(DATA / "metadata.jsonl", "--clientcore", clientcore(tmp_path / "store"))
    assert result.exit_code == EXIT_SAME, result.output
    n = len(upcalls(read_lines(DATA / "metadata.jsonl")))
    assert result.stdout == f"replayed {n} of {n} upcalls: no divergence\n"


# -- divergences --------------------------------------------------------------------------------------------


def test_a_corrupting_client_core_diverges_at_its_first_corrupt_answer(tmp_path):
    """clientcore --fault corrupt:MKDIR: the first MKDIR's write fails EFAULT where the recording's succeeded."""
    lines = read_lines(DATA / "metadata.jsonl")
    index, up, down = nth(lines, "OP_MKDIR")
    status, report = replay_json(DATA / "metadata.jsonl", tmp_path / "store", "corrupt:MKDIR")
    d = report["divergence"]
    assert status == EXIT_DIVERGED and report["replayed"] == index + 1
    assert (d["index"], d["tag"], d["op"], d["field"]) == (index, up["tag"], "OP_MKDIR", "write.result")
    assert (d["recorded"], d["replayed"]) == (f"{down['result']} bytes written", "-EFAULT")


def test_edited_read_data_diverges_at_that_byte(tmp_path):
    """One byte of the data a FILE_IO read brought back, changed in the recording: data[k] of that upcall."""
    lines = read_lines(DATA / "data.jsonl")
    index, up, down = nth(lines, "OP_FILE_IO", where=lambda u: "data" not in u)  # the first read
    data = bytearray(base64.b64decode(down["data"]))
    data[12345] ^= 0x5A
    down["data"] = base64.b64encode(data).decode()
    _, report = replay_json(write_lines(lines, tmp_path / "edited.jsonl"), tmp_path / "store")
    d = report["divergence"]
    assert (d["index"], d["op"], d["field"]) == (index, "OP_FILE_IO", "data[12345]")
    assert d["recorded"][:2] == f"{data[12345]:02x}" and d["replayed"][:2] == f"{data[12345] ^ 0x5A:02x}"


def test_edited_attributes_diverge_at_that_field(tmp_path):
    """The perms of the GETATTR after MKDIR, changed in the recording: downcall.resp.getattr.attributes.perms."""
    lines = read_lines(DATA / "metadata.jsonl")
    after_mkdir = nth(lines, "OP_MKDIR")[0] + 1
    index, up, down = upcalls(lines)[after_mkdir]
    assert up["op"] == "OP_GETATTR"

    def edit(downcall, trailer):
        downcall.resp.getattr.attributes.perms ^= 0o077

    set_downcall(down, edit)
    _, report = replay_json(write_lines(lines, tmp_path / "edited.jsonl"), tmp_path / "store")
    d = report["divergence"]
    assert (d["index"], d["line"], d["field"]) == (index, lines.index(up) + 1, "downcall.resp.getattr.attributes.perms")
    assert int(d["recorded"]) ^ int(d["replayed"]) == 0o077


def test_edited_readdir_entry_diverges_at_that_entry(tmp_path):
    """A name in the READDIR trailer, changed in the recording: trailer.entries[1].name."""
    lines = read_lines(DATA / "metadata.jsonl")
    index, up, down = nth(lines, "OP_READDIR")

    def edit(downcall, trailer):
        listing = proto.decode_readdir_trailer(trailer)
        assert [e.name for e in listing.entries] == [b"file", b"link", b"sub"]
        return proto.encode_readdir_trailer([(b"lonk" if e.name == b"link" else e.name, e.khandle)
                                             for e in listing.entries], listing.token)

    set_downcall(down, edit)
    _, report = replay_json(write_lines(lines, tmp_path / "edited.jsonl"), tmp_path / "store")
    d = report["divergence"]
    assert (d["index"], d["field"], d["recorded"], d["replayed"]) == (index, "trailer.entries[1].name", "b'lonk'",
                                                                       "b'link'")


def test_a_recording_that_starts_after_the_mount_mounts_first(tmp_path):
    """A recording begun on a mounted filesystem lists the mount in its header; the replay mounts it first and
    translates its root, fs_id and mount id (down to the final FS_UMOUNT)."""
    lines = read_lines(DATA / "metadata.jsonl")
    steps = upcalls(lines)
    assert [up["op"] for _, up, _ in steps[:3]] == ["OP_FS_MOUNT", "OP_GETATTR", "OP_FEATURES"]
    mounted = proto.decode_downcall(decode_frame(steps[0][2])[16:8240], OpCode.FS_MOUNT).resp.fs_mount
    devname = proto.decode_read_frame(decode_frame(steps[0][1])).upcall.req.fs_mount.orangefs_config_server
    lines[0]["mounts"] = [{"fs_id": mounted.fs_id, "id": mounted.id, "devname": devname.decode(),
                           "root": mounted.root_khandle.hex()}]
    dropped = [id(line) for _, up, down in steps[:3] for line in (up, down)]
    lines = [line for line in lines if id(line) not in dropped]
    status, report = replay_json(write_lines(lines, tmp_path / "late.jsonl"), tmp_path / "store")
    assert (status, report["divergence"], report["replayed"]) == (EXIT_SAME, None, len(steps) - 3)
    # Without the mount in the header: GETATTR (which the device hands out for any fs_id) gets the client-core's
    # EINVAL, a divergence; a MKDIR could never be read at all, which is a one-line failure.
    lines[0]["mounts"] = []
    status, report = replay_json(write_lines(lines, tmp_path / "headless.jsonl"), tmp_path / "s2")
    d = report["divergence"]
    assert (status, d["index"], d["op"], d["field"]) == (EXIT_DIVERGED, 0, "OP_GETATTR", "downcall.status")
    assert "EINVAL" in d["replayed"]
    getattr_lines = [id(line) for line in (steps[3][1], steps[3][2])]
    lines = [line for line in lines if id(line) not in getattr_lines]
    result = replay(write_lines(lines, tmp_path / "headless.jsonl"), "--clientcore", clientcore(tmp_path / "s3"))
    assert result.exit_code == EXIT_FAILED
    assert result.stderr.startswith("pvfs2dev replay: upcall 0 (line 2, OP_MKDIR) is for fs_id ")
    assert result.stderr.count("\n") == 1 and "is not mounted" in result.stderr


def test_record_then_replay(tmp_path):
    """The whole loop: pvfs2ctl trace --record on a live broker and client-core (the generator's metadata
    session), then pvfs2dev replay of what it wrote, against another fresh store."""
    out = make_recordings.record(make_recordings.metadata_session, tmp_path / "fresh.jsonl", tmp_path / "base")
    lines = read_lines(out)
    header = lines[0]
    assert header["format"] == "pvfs2dev-recording" and header["io_slots"] == {"count": 4, "size": 128 * 1024}
    assert {line["event"] for line in lines[1:]} <= {"upcall", "downcall"}
    status, report = replay_json(out, tmp_path / "store")
    assert (status, report["divergence"]) == (EXIT_SAME, None)
    assert report["replayed"] == len(upcalls(lines)) == report["ops"]


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    ("", "line 1: empty file"),
    ("{}\n", "line 1: not a pvfs2dev recording"),
    ('{"format": "pvfs2dev-recording", "version": 2}\n', "line 1: recording format version 2"),
    ('{"format": "pvfs2dev-recording", "version": 1}\n{"event": "upcall", "frame": 5}\n', "line 2: frame is not"),
    ('{"format": "pvfs2dev-recording", "version": 1}\n{"event": "lost", "count": 2}\n', "line 2: 2 records were lost"),
    (None, "No such file or directory"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    """Exit 2 and one line on standard error naming the file, the line and what is wrong; no client-core starts."""
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    result = replay(path, "--clientcore", "/nonexistent/clientcore")
    assert result.exit_code == EXIT_BAD_FILE
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pvfs2dev replay: {path}: {message}"), result.stderr
    assert result.stdout == ""


def test_a_binary_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    result = replay(path)
    assert result.exit_code == EXIT_BAD_FILE and result.stderr == f"pvfs2dev replay: {path}: not a text file\n"


def test_no_client_core_and_a_client_core_that_dies_are_one_line_failures(tmp_path):
    """Exit 3: nothing attached within --timeout (after saying where it waits), or the client-core exited first."""
    result = replay(DATA / "metadata.jsonl", "--rundir", str(tmp_path / "run"), "--timeout", "0.3")
    assert result.exit_code == EXIT_FAILED
    assert result.stderr.splitlines() == [
        f"pvfs2dev replay: serving the device at {tmp_path / 'run' / 'pvfs2-req'}; waiting for a client-core",
        f"pvfs2dev replay: no client-core mapped its buffers at {tmp_path / 'run' / 'pvfs2-req'} within 0.3 s"]
    assert not (tmp_path / "run" / "pvfs2-req").exists()  # the device socket went with the replay
    result = replay(DATA / "metadata.jsonl", "--clientcore", "false")
    assert result.exit_code == EXIT_FAILED
    assert result.stderr == "pvfs2dev replay: the client-core exited with status 1 before it mapped its buffers\n"
    result = replay(DATA / "metadata.jsonl", "--clientcore", "/nonexistent/clientcore")
    assert result.exit_code == EXIT_FAILED and result.stderr.count("\n") == 1
