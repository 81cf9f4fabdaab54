"""A small in-memory store for the daemon's tests: enough of the Store interface, no permissions.

It lets the daemon's dispatch, encoding, cancel and restart logic be tested
without SQLite; the embedded store has its own tests.
"""

from __future__ import annotations

import errno
import os
import threading

from clientcore.store import Attr, Creds, StatFs, StoreError
from pvfs2proto import ObjType
from pvfs2proto.constants import ORANGEFS_ITERATE_END, ORANGEFS_ITERATE_START


class MemStore:
    fs_id = 4242

    def __init__(self) -> None:
        self.root = b"\x01" * 16
        self.attrs: dict[bytes, Attr] = {self.root: Attr(self.root, ObjType.DIRECTORY, 0o755, 0, 0, 0, 0, 0, 0, 2)}
        self.entries: dict[bytes, dict[bytes, bytes]] = {self.root: {}}
        self.data: dict[bytes, bytearray] = {}
        self.xattrs: dict[bytes, dict[bytes, bytes]] = {}
        self.write_gate = threading.Event()  # tests may hold writes back to cancel them
        self.write_gate.set()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def _get(self, handle: bytes) -> Attr:
        try:
            return self.attrs[handle]
        except KeyError:
            raise StoreError(errno.ENOENT, "no such handle") from None

    def _new(self, creds: Creds, parent: bytes, name: bytes, objtype, mode: int, target=b"") -> Attr:
        entries = self.entries.get(parent)
        if entries is None:
            raise StoreError(errno.ENOTDIR, "not a directory")
        if name in entries:
            raise StoreError(errno.EEXIST, "exists")
        handle = os.urandom(16)
        attr = Attr(handle, objtype, mode, creds.uid, creds.gid, len(target), 0, 0, 0, 1, target)
        self.attrs[handle] = attr
        entries[name] = handle
        if objtype == ObjType.DIRECTORY:
            self.entries[handle] = {}
        if objtype == ObjType.METAFILE:
            self.data[handle] = bytearray()
        return attr

    def getattr(self, creds, handle):
        return self._get(handle)

    def lookup(self, creds, parent, name):
        entries = self.entries.get(parent)
        if entries is None:
            raise StoreError(errno.ENOTDIR, "not a directory")
        if name not in entries:
            raise StoreError(errno.ENOENT, "no such entry")
        return self.attrs[entries[name]]

    def create(self, creds, parent, name, mode):
        return self._new(creds, parent, name, ObjType.METAFILE, mode)

    def mkdir(self, creds, parent, name, mode):
        return self._new(creds, parent, name, ObjType.DIRECTORY, mode)

    def symlink(self, creds, parent, name, target):
        return self._new(creds, parent, name, ObjType.SYMLINK, 0o777, target)

    def setattr(self, creds, handle, **changes):
        attr = self._get(handle)
        for key, value in changes.items():
            setattr(attr, key, value)
        return attr

    def remove(self, creds, parent, name):
        handle = self.lookup(creds, parent, name).handle
        if self.entries.get(handle):
            raise StoreError(errno.ENOTEMPTY, "directory not empty")
        del self.entries[parent][name]
        self.attrs.pop(handle)

    def rename(self, creds, old_parent, old_name, new_parent, new_name):
        handle = self.lookup(creds, old_parent, old_name).handle
        del self.entries[old_parent][old_name]
        self.entries[new_parent][new_name] = handle

    def readdir(self, creds, handle, token, max_entries):
        if handle not in self.entries:
            raise StoreError(errno.ENOTDIR, "not a directory")
        names = sorted(self.entries[handle].items())
        start = 0 if token == ORANGEFS_ITERATE_START else token
        batch = names[start : start + max_entries]
        end = start + len(batch)
        return batch, (ORANGEFS_ITERATE_END if end >= len(names) else end)

    def statfs(self):
        return StatFs(65536, 1000, 500, 100, 50)

    def truncate(self, creds, handle, size):
        data = self.data[self._get(handle).handle]
        del data[size:]
        data.extend(bytes(size - len(data)))
        self.attrs[handle].size = size

    def read(self, creds, handle, offset, buffer):
        data = self.data.get(self._get(handle).handle)
        if data is None:
            raise StoreError(errno.EISDIR, "not a file")
        chunk = data[offset : offset + len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def write(self, creds, handle, offset, data):
        self.write_gate.wait(10)
        buf = self.data.get(self._get(handle).handle)
        if buf is None:
            raise StoreError(errno.EISDIR, "not a file")
        if len(buf) < offset:
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data
        self.attrs[handle].size = len(buf)
        return len(data)

    def fsync(self, handle):
        self._get(handle)

    def getxattr(self, creds, handle, key):
        try:
            return self.xattrs.get(self._get(handle).handle, {})[key]
        except KeyError:
            raise StoreError(errno.ENOENT, "no such attribute") from None

    def setxattr(self, creds, handle, key, value, flags):
        self.xattrs.setdefault(self._get(handle).handle, {})[key] = value

    def listxattr(self, creds, handle, token, count):
        keys = sorted(self.xattrs.get(self._get(handle).handle, {}))
        start = 0 if token == ORANGEFS_ITERATE_START else token
        batch = keys[start : start + count]
        end = start + len(batch)
        return batch, (ORANGEFS_ITERATE_END if end >= len(keys) else end)

    def removexattr(self, creds, handle, key):
        try:
            del self.xattrs.get(self._get(handle).handle, {})[key]
        except KeyError:
            raise StoreError(errno.ENOENT, "no such attribute") from None
