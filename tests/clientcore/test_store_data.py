"""File data in the embedded store: RAID-0 striping, short reads, holes, truncate, fsync, permissions."""

from __future__ import annotations

import errno
import mmap
import os
import random
import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clientcore.store.api import StoreError
from clientcore.store.embedded import MAX_FILE_SIZE, EmbeddedStore

from ..fuzzing import fuzz_settings
from .storehelp import OTHER, ROOT, USER, check_invariants, raises
from .storehelp import store_fixture, store_path_fixture  # noqa: F401 (fixtures)

S = 65536  # the default stripe size


@pytest.fixture
def f(store):
    return store.create(USER, store.root, b"f", 0o644).handle


def read(store, handle, offset, count, creds=USER) -> bytes:
    buf = bytearray(count)
    n = store.read(creds, handle, offset, memoryview(buf))
    return bytes(buf[:n])


def object_bytes(store, handle, t) -> bytes | None:
    try:
        with open(store._data_path(handle, t), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def test_write_then_read(store, f):
    """Bytes written are read back; write returns the count and the size grows to the end of the write."""
    data = os.urandom(1000)
    assert store.write(USER, f, 0, memoryview(data)) == 1000
    assert read(store, f, 0, 1000) == data
    assert store.getattr(USER, f).size == 1000


def test_short_read_at_eof(store, f):
    """A read reaching past the end returns only the bytes up to the size; at or past the end, 0."""
    store.write(USER, f, 0, memoryview(b"abcdef"))
    buf = bytearray(b"\xee" * 10)
    assert store.read(USER, f, 2, memoryview(buf)) == 4
    assert buf == b"cdef" + b"\xee" * 6  # nothing written past what was read
    assert store.read(USER, f, 6, memoryview(buf)) == 0
    assert store.read(USER, f, 10**9, memoryview(buf)) == 0


def test_holes_read_as_zeros(store, f):
    """A write past the end leaves a hole that reads as zeros, across missing data objects too."""
    store.write(USER, f, 5 * S + 7, memoryview(b"tail"))
    assert store.getattr(USER, f).size == 5 * S + 11
    got = read(store, f, 0, 5 * S + 11)
    assert got == bytes(5 * S + 7) + b"tail"
    assert object_bytes(store, f, 0) is None  # only target 1 (stripe 5) holds anything
    assert object_bytes(store, f, 1) == bytes(S + 7) + b"tail"


def test_striping_layout(store, f):
    """Stripe k of a file lives in target k % 4 at offset (k // 4) * stripe_size of the file's data object."""
    data = os.urandom(10 * S + 123)
    store.write(USER, f, 0, memoryview(data))
    for t in range(4):
        expect = b"".join(data[k * S : (k + 1) * S] for k in range(t, 11, 4))
        assert object_bytes(store, f, t) == expect
    assert [len(object_bytes(store, f, t)) for t in range(4)] == [3 * S, 3 * S, 2 * S + 123, 2 * S]


def test_reads_and_writes_across_stripe_boundaries(store, f):
    """Unaligned I/O spanning several stripes and targets matches a plain byte model."""
    rng = random.Random(7)
    model = bytearray()
    for _ in range(60):
        off = rng.randrange(0, 9 * S)
        data = rng.randbytes(rng.choice([1, 100, S - 1, S, S + 1, 3 * S + 17]))
        store.write(USER, f, off, memoryview(data))
        if off > len(model):
            model.extend(bytes(off - len(model)))
        model[off : off + len(data)] = data
        roff = rng.randrange(0, len(model))
        rlen = rng.randrange(1, 5 * S)
        assert read(store, f, roff, rlen) == bytes(model[roff : roff + rlen])
    assert read(store, f, 0, len(model) + 10) == bytes(model)


def test_read_into_shared_mmap_slot(store, f):
    """read fills a slice of a shared mapping in place, and write takes one, as the daemon's slots are used."""
    data = os.urandom(3 * S + 5)
    store.write(USER, f, 0, memoryview(data))
    with mmap.mmap(-1, 8 * S) as m:
        slot = memoryview(m)[S : 5 * S]
        assert store.read(USER, f, 0, slot) == len(data)
        assert m[S : S + len(data)] == data
        assert store.write(USER, f, 10, slot[:100]) == 100
        slot.release()
    assert read(store, f, 10, 100) == data[:100]


def test_non_byte_memoryviews(store, f):
    """A memoryview of another format is treated as its bytes; a read into a read-only buffer is EINVAL."""
    import array

    a = array.array("I", range(1000))
    store.write(USER, f, 0, memoryview(a))
    assert read(store, f, 0, 4000) == a.tobytes()
    with raises(errno.EINVAL):
        store.read(USER, f, 0, memoryview(b"readonly"))


def test_truncate_shrink_frees_and_does_not_resurrect(store, f):
    """Shrinking cuts the data objects; growing again reads zeros, never the old bytes."""
    data = os.urandom(6 * S)
    store.write(USER, f, 0, memoryview(data))
    store.truncate(USER, f, S + 10)
    assert store.getattr(USER, f).size == S + 10
    assert [len(object_bytes(store, f, t) or b"") for t in range(4)] == [S, 10, 0, 0]
    store.truncate(USER, f, 6 * S)
    assert read(store, f, 0, 6 * S) == data[: S + 10] + bytes(5 * S - 10)
    store.write(USER, f, 8 * S, memoryview(b"x"))
    assert read(store, f, S + 10, 8 * S) == bytes(7 * S - 10) + b"x"


def test_truncate_grow_is_a_hole(store, f):
    """Growing a file by truncate adds zeros and writes no data."""
    store.write(USER, f, 0, memoryview(b"abc"))
    store.truncate(USER, f, 3 * S)
    assert store.getattr(USER, f).size == 3 * S
    assert read(store, f, 0, 3 * S) == b"abc" + bytes(3 * S - 3)
    assert object_bytes(store, f, 1) is None


def test_truncate_to_zero(store, f):
    """truncate to 0 empties every data object."""
    store.write(USER, f, 0, memoryview(os.urandom(5 * S)))
    store.truncate(USER, f, 0)
    assert store.getattr(USER, f).size == 0
    assert all(not object_bytes(store, f, t) for t in range(4))
    assert read(store, f, 0, 10) == b""


def test_stale_bytes_past_size_never_reappear(store_path):
    """Bytes a crash left in a data object beyond the file's size (write before its commit) read as zeros after growth."""
    with EmbeddedStore.open(store_path) as s:
        h = s.create(USER, s.root, b"f", 0o644).handle
        s.write(USER, h, 0, memoryview(b"a" * 100))
        path = s._data_path(h, 0)
    with open(path, "r+b") as fh:  # as if a write past the end landed but its size commit did not
        fh.seek(100)
        fh.write(b"STALE" * 100)
    with EmbeddedStore.open(store_path) as s:
        assert s.getattr(USER, h).size == 100
        assert read(s, h, 0, 1000) == b"a" * 100
        s.write(USER, h, 2000, memoryview(b"z"))
        assert read(s, h, 0, 2001) == b"a" * 100 + bytes(1900) + b"z"
    with EmbeddedStore.open(store_path) as s:
        s.truncate(USER, h, 50)
        with open(s._data_path(h, 0), "r+b") as fh:  # a shrink whose cut did not happen
            fh.write(b"b" * 200)
        s._tidy.discard(h)
        s.truncate(USER, h, 300)
        assert read(s, h, 0, 300) == b"b" * 50 + bytes(250)


def test_data_errors(store, f):
    """read/write/truncate: ENOENT (unknown), EISDIR (directory), EINVAL (symlink, negative offset or size)."""
    d = store.mkdir(USER, store.root, b"d", 0o755).handle
    link = store.symlink(USER, store.root, b"l", b"f").handle
    buf = memoryview(bytearray(10))
    missing = os.urandom(16)
    for call in (store.read, store.write):
        with raises(errno.ENOENT):
            call(USER, missing, 0, buf)
        with raises(errno.EISDIR):
            call(USER, d, 0, buf)
        with raises(errno.EINVAL):
            call(USER, link, 0, buf)
        with raises(errno.EINVAL):
            call(USER, f, -1, buf)
    with raises(errno.ENOENT):
        store.truncate(USER, missing, 0)
    with raises(errno.EISDIR):
        store.truncate(USER, d, 0)
    with raises(errno.EINVAL):
        store.truncate(USER, f, -1)


def test_efbig(store, f):
    """A write ending past the largest file size, or a truncate to beyond it, is EFBIG; the filesystem's limit too."""
    with raises(errno.EFBIG):
        store.write(USER, f, MAX_FILE_SIZE, memoryview(b"x"))
    with raises(errno.EFBIG):
        store.truncate(USER, f, MAX_FILE_SIZE + 1)
    try:
        store.write(USER, f, 2**62, memoryview(b"x"))  # ext4 stops at 16 TiB per data object
    except StoreError as exc:
        assert exc.errno == errno.EFBIG
        assert store.getattr(USER, f).size == 0
    else:  # a filesystem with larger files (xfs, btrfs): the write is a sparse success
        store.truncate(USER, f, 0)
    store.write(USER, f, 0, memoryview(b"ok"))
    assert read(store, f, 0, 10) == b"ok"


def test_data_permissions(store, f):
    """Reading needs read permission, writing and truncating write permission; uid 0 bypasses both."""
    store.write(USER, f, 0, memoryview(b"data"))
    assert read(store, f, 0, 4, creds=OTHER) == b"data"  # 0644
    with raises(errno.EACCES):
        store.write(OTHER, f, 0, memoryview(b"x"))
    with raises(errno.EACCES):
        store.truncate(OTHER, f, 0)
    store.setattr(USER, f, mode=0o200)
    with raises(errno.EACCES):
        store.read(OTHER, f, 0, memoryview(bytearray(4)))
    with raises(errno.EACCES):
        store.read(USER, f, 0, memoryview(bytearray(4)))  # the owner's bits apply to the owner
    assert read(store, f, 0, 4, creds=ROOT) == b"data"
    store.write(ROOT, f, 0, memoryview(b"DA"))
    store.truncate(ROOT, f, 3)
    assert read(store, f, 0, 4, creds=ROOT) == b"DAt"


def test_write_updates_mtime(store, f):
    """A write sets mtime and ctime to now."""
    store.setattr(USER, f, mtime=1, ctime=1)
    store.write(USER, f, 0, memoryview(b"x"))
    a = store.getattr(USER, f)
    assert a.mtime > 1 and a.ctime > 1


def test_zero_length_io(store, f):
    """Zero-length writes change nothing; zero-length reads return 0."""
    store.write(USER, f, 100, memoryview(b""))
    assert store.getattr(USER, f).size == 0
    assert store.read(USER, f, 0, memoryview(bytearray(0))) == 0


def test_fsync(store, f):
    """fsync of a written file, a directory and an empty file succeeds; of an unknown handle it is ENOENT."""
    store.write(USER, f, 0, memoryview(os.urandom(3 * S)))
    store.fsync(f)
    assert not store._new_objects.get(f)
    store.fsync(store.root)
    store.fsync(store.create(USER, store.root, b"e", 0o644).handle)
    with raises(errno.ENOENT):
        store.fsync(os.urandom(16))


def test_fsync_syncs_data_objects_directories_and_wal(store, f, monkeypatch):
    """fsync fdatasyncs each data object, fsyncs the targets where new data objects were made, and syncs the WAL."""
    import clientcore.store.embedded as embedded

    synced, dirs = [], []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fdatasync(fd)))
    real_fsync_dir = embedded._fsync_dir
    monkeypatch.setattr(embedded, "_fsync_dir", lambda path: (dirs.append(path), real_fsync_dir(path)))
    store.write(USER, f, 0, memoryview(os.urandom(2 * S + 1)))  # targets 0, 1, 2

    def sync_seq():
        with store._lock:
            return store._conn.execute("SELECT value FROM store_info WHERE key = 'sync_seq'").fetchone()[0]

    before = sync_seq()
    store.fsync(f)
    assert sorted(synced) == sorted(store._data_path(f, t) for t in range(3))
    assert sorted(dirs) == sorted(store._target_dirs[:3])
    assert sync_seq() == before + 1  # the synchronous=FULL commit that syncs the WAL
    with store._lock:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # back to NORMAL
    synced.clear()
    dirs.clear()
    store.write(USER, f, 0, memoryview(b"again"))
    store.fsync(f)
    assert len(synced) == 3 and dirs == []  # no new data objects: no directory to sync


def test_data_survives_reopen_with_other_stripes(tmp_path):
    """A store with 3 targets and 4 KiB stripes keeps its data across a reopen."""
    path = str(tmp_path / "s")
    data = os.urandom(100_000)
    with EmbeddedStore.open(path, targets=3, stripe_size=4096) as s:
        h = s.create(USER, s.root, b"f", 0o644).handle
        s.write(USER, h, 333, memoryview(data))
    with EmbeddedStore.open(path, targets=3, stripe_size=4096) as s:
        assert read(s, h, 333, 200_000) == data
        assert sum(len(object_bytes(s, h, t) or b"") for t in range(3)) == 100_333


def test_concurrent_threads(store):
    """Writers, readers and getattr from several threads at once leave every file exactly as written."""
    files = [store.create(USER, store.root, b"t%d" % i, 0o644).handle for i in range(4)]
    blocks = {(i, k): os.urandom(20_000) for i in range(4) for k in range(12)}
    errors = []

    def writer(i, ks):
        try:
            for k in ks:
                store.write(USER, files[i], k * 20_000, memoryview(blocks[i, k]))
                store.getattr(USER, files[i])
                read(store, files[i], 0, 50_000)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, ks)) for i in range(4) for ks in (range(0, 12, 2), range(1, 12, 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(4):
        assert read(store, files[i], 0, 240_000) == b"".join(blocks[i, k] for k in range(12))
    check_invariants(store)


class FileModel(RuleBasedStateMachine):
    """One file in a 3-target, 4 KiB-stripe store against a bytearray, with restarts."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "s")
        self.store = EmbeddedStore.open(self.path, targets=3, stripe_size=4096)
        self.h = self.store.create(USER, self.store.root, b"f", 0o644).handle
        self.model = bytearray()

    @rule(offset=st.integers(0, 40_000), length=st.integers(0, 20_000), seed=st.integers(0, 255))
    def write(self, offset, length, seed):
        data = bytes((seed + i) % 251 for i in range(length))
        self.store.write(USER, self.h, offset, memoryview(data))
        if length:
            if offset > len(self.model):
                self.model.extend(bytes(offset - len(self.model)))
            self.model[offset : offset + length] = data

    @rule(size=st.integers(0, 60_000))
    def truncate(self, size):
        self.store.truncate(USER, self.h, size)
        del self.model[size:]
        self.model.extend(bytes(size - len(self.model)))

    @rule(offset=st.integers(0, 70_000), length=st.integers(0, 30_000))
    def read(self, offset, length):
        assert read(self.store, self.h, offset, length) == bytes(self.model[offset : offset + length])

    @rule()
    def reopen(self):
        self.store.close()
        self.store = EmbeddedStore.open(self.path, targets=3, stripe_size=4096)

    @invariant()
    def size_matches(self):
        assert self.store.getattr(USER, self.h).size == len(self.model)

    def teardown(self):
        assert read(self.store, self.h, 0, len(self.model) + 1) == bytes(self.model)
        self.store.close()
        self.tmp.cleanup()


TestFileModel = FileModel.TestCase
TestFileModel.settings = fuzz_settings(30, stateful_step_count=20)
TestFileModel.pytestmark = pytest.mark.fuzz
TestFileModel.__doc__ = "Random writes, truncates, reads and reopens agree with a byte model (holes, shrink, regrow)."
