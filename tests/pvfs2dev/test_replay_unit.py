"""The pure parts of ``pvfs2dev replay`` (issue 7): reading a recording, translating handles, comparing answers."""

from __future__ import annotations

import base64
import errno
import json

import pytest

import pvfs2proto as proto
from pvfs2dev.recorder import FORMAT, FORMAT_VERSION, encode_frame
from pvfs2dev.replay import (
    FS_ID,
    HANDLE,
    MOUNT_ID,
    TOKEN,
    Answer,
    RecordingError,
    Step,
    Translator,
    compare,
    parse,
)
from pvfs2proto import OpCode
from pvfs2proto.constants import ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START

A, B, C = bytes([1] * 16), bytes([2] * 16), bytes([3] * 16)  # recorded handles
X, Y, Z = bytes([0xA] * 16), bytes([0xB] * 16), bytes([0xC] * 16)  # replayed handles


def upcall(op: OpCode, member: str, req: dict) -> bytes:
    return proto.encode_upcall({"type": op, "uid": 1000, "gid": 100, "req": {member: req}})


def answer(tag: int, op: OpCode, resp: dict | None = None, *, status: int = 0, trailer: bytes = b"",
           data: bytes | None = None) -> Answer:
    downcall: dict = {"type": op, "status": status}
    if resp:
        downcall["resp"] = resp
    if trailer:
        downcall["trailer_size"] = len(trailer)
    frame = proto.encode_write_frame(tag, downcall, trailer)
    return Answer(frame, len(frame), data)


def step(op: OpCode, tag: int = 100) -> Step:
    """A recorded upcall of ``op`` (compare reads only its tag and type)."""
    return Step(0, 2, tag, int(op), bytes(8528), None)


def attrs(**fields) -> dict:
    return {"getattr": {"attributes": {"owner": 1000, "group": 100, "perms": 0o644, "size": 10, "objtype": 1,
                                       "atime": 1, "mtime": 2, "ctime": 3, **fields}, "link_target": b""}}


# -- translation --------------------------------------------------------------------------------------------


def test_translator_learns_pairs_and_rewrites_later_upcalls():
    """Handles, fs_ids, mount ids and tokens learned from answers are put into every later upcall that names them."""
    t = Translator()
    assert t.learn(FS_ID, 7, 99) is None and t.learn(HANDLE, A, X) is None and t.learn(MOUNT_ID, 1, 5) is None
    assert t.learn(TOKEN, 42, 4242) is None
    lookup = proto.decode_upcall(t.upcall(upcall(OpCode.LOOKUP, "lookup", {
        "parent_refn": {"khandle": A, "fs_id": 7}, "d_name": b"name"})))
    assert (lookup.req.lookup.parent_refn.khandle, lookup.req.lookup.parent_refn.fs_id) == (X, 99)
    assert (lookup.uid, lookup.gid, lookup.req.lookup.d_name) == (1000, 100, b"name")
    readdir = proto.decode_upcall(t.upcall(upcall(OpCode.READDIR, "readdir", {
        "refn": {"khandle": A, "fs_id": 7}, "token": 42, "max_dirent_count": 512})))
    assert (readdir.req.readdir.refn.khandle, readdir.req.readdir.token) == (X, 4242)
    umount = proto.decode_upcall(t.upcall(upcall(OpCode.FS_UMOUNT, "fs_umount", {"id": 1, "fs_id": 7})))
    assert (umount.req.fs_umount.id, umount.req.fs_umount.fs_id) == (5, 99)
    rename = proto.decode_upcall(t.upcall(upcall(OpCode.RENAME, "rename", {
        "old_parent_refn": {"khandle": A, "fs_id": 7}, "new_parent_refn": {"khandle": B, "fs_id": 7},
        "d_old_name": b"a", "d_new_name": b"b"})))
    # B was never learned: it goes as recorded (the client-core will say what it thinks of it).
    assert (rename.req.rename.old_parent_refn.khandle, rename.req.rename.new_parent_refn.khandle) == (X, B)
    statfs = proto.decode_upcall(t.upcall(upcall(OpCode.STATFS, "statfs", {"fs_id": 7})))
    assert statfs.req.statfs.fs_id == 99


def test_translator_insists_on_one_to_one_handles():
    """A recorded handle must replay as the same handle every time, and two recorded handles not as one."""
    t = Translator()
    assert t.learn(HANDLE, A, X) is None and t.learn(HANDLE, A, X) is None
    assert t.learn(HANDLE, A, Y) == (f"{A.hex()} (replays as {X.hex()})", Y.hex())
    assert t.learn(HANDLE, B, X) == (f"{B.hex()} (not seen before)", f"{X.hex()} (already the replay of {A.hex()})")
    assert t.learn(HANDLE, bytes(16), bytes(16)) is None
    assert t.learn(HANDLE, bytes(16), Z) is not None  # the null handle is no handle: it must stay null


def test_tokens_are_cursors_but_their_special_values_must_agree():
    t = Translator()
    assert t.learn(TOKEN, 5, 50) is None and t.learn(TOKEN, 5, 51) is None  # a cursor may move
    assert t.translate(TOKEN, 5) == 51
    assert t.learn(TOKEN, ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_END) is None
    assert t.learn(TOKEN, ORANGEFS_ITERATE_END, 7) == ("ITERATE_END", "7")
    assert t.translate(TOKEN, ORANGEFS_ITERATE_START) == ORANGEFS_ITERATE_START


# -- comparison ---------------------------------------------------------------------------------------------


def test_times_are_masked_and_everything_else_compared():
    """GETATTR answers that differ only in atime/mtime/ctime agree; a size difference is reported by its path."""
    s = step(OpCode.GETATTR)
    t = Translator()
    assert compare(s, answer(100, OpCode.GETATTR, attrs()), answer(7, OpCode.GETATTR, attrs(atime=9, mtime=9, ctime=9)),
                   7, t) is None
    d = compare(s, answer(100, OpCode.GETATTR, attrs()), answer(7, OpCode.GETATTR, attrs(size=11)), 7, t)
    assert (d.field, d.recorded, d.replayed) == ("downcall.resp.getattr.attributes.size", "10", "11")
    d = compare(s, answer(100, OpCode.GETATTR, attrs()), answer(7, OpCode.GETATTR, attrs(perms=0o600)), 7, t)
    assert d.field == "downcall.resp.getattr.attributes.perms"


def test_new_handles_are_learned_from_replies_and_held_to():
    """A LOOKUP reply teaches A→X; a later reply that names A must say X."""
    t = Translator()
    assert t.learn(FS_ID, 7, 99) is None
    s = step(OpCode.LOOKUP)
    rec = answer(100, OpCode.LOOKUP, {"lookup": {"refn": {"khandle": A, "fs_id": 7}}})
    assert compare(s, rec, answer(5, OpCode.LOOKUP, {"lookup": {"refn": {"khandle": X, "fs_id": 99}}}), 5, t) is None
    assert t.translate(HANDLE, A) == X
    d = compare(s, rec, answer(6, OpCode.LOOKUP, {"lookup": {"refn": {"khandle": Y, "fs_id": 99}}}), 6, t)
    assert d.field == "downcall.resp.lookup.refn.khandle" and X.hex() in d.recorded and d.replayed == Y.hex()
    d = compare(s, rec, answer(6, OpCode.LOOKUP, {"lookup": {"refn": {"khandle": X, "fs_id": 98}}}), 6, t)
    assert d.field == "downcall.resp.lookup.refn.fs_id"


def test_status_result_and_tag():
    """The write's result, the tag (the op's own) and the status are compared before the fields; an error's
    resp is not (the kernel never reads it)."""
    s = step(OpCode.GETATTR)
    ok = answer(100, OpCode.GETATTR, attrs())
    enoent = answer(9, OpCode.GETATTR, status=proto.errno_to_status(errno.ENOENT))
    d = compare(s, ok, enoent, 9, Translator())
    assert (d.field, d.recorded) == ("downcall.status", "0") and "ENOENT" in d.replayed
    assert compare(s, answer(100, OpCode.GETATTR, attrs(size=1), status=proto.errno_to_status(errno.EACCES)),
                   answer(9, OpCode.GETATTR, attrs(size=2), status=proto.errno_to_status(errno.EACCES)),
                   9, Translator()) is None
    rejected = Answer(ok.frame, -errno.EFAULT)
    d = compare(s, ok, rejected, 9, Translator())
    assert (d.field, d.recorded, d.replayed) == ("write.result", f"{len(ok.frame)} bytes written", "-EFAULT")
    d = compare(s, ok, answer(12345, OpCode.GETATTR, attrs()), 9, Translator())
    assert (d.field, d.recorded, d.replayed) == ("frame.tag", "the op's tag", "12345 (not the op's 9)")


def test_readdir_entries_tokens_and_masked_counts():
    """READDIR: entries by name and (translated) handle, the token; STATFS counts are masked, block_size is not."""
    t = Translator()
    s = step(OpCode.READDIR)
    rec = answer(100, OpCode.READDIR, trailer=proto.encode_readdir_trailer([(b"a", A), (b"b", B)], 17))
    rep = answer(5, OpCode.READDIR, trailer=proto.encode_readdir_trailer([(b"a", X), (b"b", Y)], 33, 8))
    assert compare(s, rec, rep, 5, t) is None
    assert (t.translate(HANDLE, B), t.translate(TOKEN, 17)) == (Y, 33)
    other = answer(5, OpCode.READDIR, trailer=proto.encode_readdir_trailer([(b"a", X), (b"c", Y)], 33))
    d = compare(s, rec, other, 5, t)
    assert (d.field, d.recorded, d.replayed) == ("trailer.entries[1].name", "b'b'", "b'c'")
    fewer = answer(5, OpCode.READDIR, trailer=proto.encode_readdir_trailer([(b"a", X)], ORANGEFS_ITERATE_END))
    assert compare(s, rec, fewer, 5, t).field == "trailer.entries"

    s = step(OpCode.STATFS)
    counts = {"blocks_total": 1, "blocks_avail": 2, "files_total": 3, "files_avail": 4}
    rec = answer(100, OpCode.STATFS, {"statfs": {"block_size": 65536, **counts}})
    assert compare(s, rec, answer(5, OpCode.STATFS, {"statfs": {"block_size": 65536}}), 5, t) is None
    assert compare(s, rec, answer(5, OpCode.STATFS, {"statfs": {"block_size": 4096}}), 5, t).field == \
        "downcall.resp.statfs.block_size"


def test_file_io_read_data_is_compared_byte_for_byte():
    s = step(OpCode.FILE_IO)
    resp = {"io": {"amt_complete": 1000}}
    data = bytes(range(250)) * 4
    changed = bytearray(data)
    changed[700] ^= 0xFF
    d = compare(s, answer(100, OpCode.FILE_IO, resp, data=data),
                answer(5, OpCode.FILE_IO, resp, data=bytes(changed)), 5, Translator())
    assert d.field == "data[700]" and d.recorded.startswith(data[700:701].hex())
    d = compare(s, answer(100, OpCode.FILE_IO, resp, data=data),
                answer(5, OpCode.FILE_IO, {"io": {"amt_complete": 999}}, data=data[:999]), 5, Translator())
    assert (d.field, d.recorded, d.replayed) == ("downcall.resp.io.amt_complete", "1000", "999")


# -- reading a recording --------------------------------------------------------------------------------------


HEADER = json.dumps({"format": FORMAT, "version": FORMAT_VERSION})


def up_line(tag: int, upcall_bytes: bytes, **extra) -> str:
    frame = proto.encode_read_frame(tag, proto.decode_upcall(upcall_bytes))
    return json.dumps({"event": "upcall", "tag": tag, "op": "x", **encode_frame(frame, trailer_at=None), **extra})


def down_line(tag: int, ans: Answer) -> str:
    return json.dumps({"event": "downcall", "tag": tag, **encode_frame(ans.frame, trailer_at=8240),
                       "result": ans.result})


def test_parse_pairs_upcalls_with_their_answers():
    """Each upcall gets the downcall of its tag; a retried op's first read, a CANCEL and an unanswered upcall are
    not replayable; a downcall for a tag read before the recording is ignored."""
    get = upcall(OpCode.GETATTR, "getattr", {"refn": {"khandle": A, "fs_id": 7}})
    cancel = proto.encode_upcall({"type": OpCode.CANCEL, "req": {"cancel": {"op_tag": 100}}})
    lines = [HEADER, down_line(99, answer(99, OpCode.GETATTR)),
             up_line(100, get), up_line(100, get), down_line(100, answer(100, OpCode.GETATTR, attrs())),
             up_line(101, cancel), down_line(101, answer(101, OpCode.CANCEL)), up_line(102, get), ""]
    rec = parse(lines)
    assert [(s.index, s.line, s.tag, s.replayable) for s in rec.steps] == [
        (0, 3, 100, False), (1, 4, 100, True), (2, 6, 101, False), (3, 8, 102, False)]
    assert rec.steps[1].answer.line == 5 and rec.steps[1].upcall == get


@pytest.mark.parametrize("lines, message", [
    ([], "line 1: empty file"),
    (["not json"], "line 1: not JSON"),
    (["[1, 2]"], "line 1: not a JSON object"),
    (['{"event": "upcall"}'], "line 1: not a pvfs2dev recording"),
    ([json.dumps({"format": FORMAT, "version": 99})], "line 1: recording format version 99"),
    ([HEADER, '{"event": "upcall", "size": 8544, "frame": "@@@"}'], "line 2: frame is not valid base64"),
    ([HEADER, json.dumps({"event": "upcall", "size": 100, "frame": base64.b64encode(bytes(200)).decode()})],
     "line 2: size 100 does not fit"),
    ([HEADER, json.dumps({"event": "upcall", "size": 100, "frame": ""})], "line 2: the upcall frame does not decode"),
    ([HEADER, json.dumps({"event": "downcall", "size": 8240, "frame": "", "tag": 1})], "line 2: result is missing"),
    ([HEADER, json.dumps({"event": "lost", "count": 3})], "line 2: 3 records were lost"),
    ([HEADER, json.dumps({"event": "nonsense"})], "line 2: unknown event 'nonsense'"),
])
def test_bad_recordings_are_one_line_errors(lines, message):
    with pytest.raises(RecordingError) as info:
        parse(lines)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
