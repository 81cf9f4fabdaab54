"""The kernel's two homes for ops: the request list and the in-progress table (spec §4.4).

Both are O(1) for the hot path: linking, unlinking and finding by tag.  The
request list is a FIFO with head insertion for priority ops and cancels; the
in-progress table is ``hash_table_size`` buckets chosen by ``tag % size``, each
a dict so a lookup never scans a bucket (the kernel scans its short list; the
result is the same).
"""

from __future__ import annotations

import collections
from typing import Iterator

from .op import Op


class RequestList:
    """``orangefs_request_list``: ops waiting to be read, head first."""

    def __init__(self) -> None:
        self._ops: collections.OrderedDict[int, Op] = collections.OrderedDict()

    def add_tail(self, op: Op) -> None:
        self._ops[op.tag] = op
        op.linked = "request"

    def add_head(self, op: Op) -> None:
        self._ops[op.tag] = op
        self._ops.move_to_end(op.tag, last=False)
        op.linked = "request"

    def remove(self, op: Op) -> None:
        del self._ops[op.tag]
        op.linked = None

    def __iter__(self) -> Iterator[Op]:
        return iter(list(self._ops.values()))

    def head(self) -> Iterator[Op]:
        """Walk from the head without copying (do not unlink while walking)."""
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)

    def __bool__(self) -> bool:
        return bool(self._ops)

    def position(self, op: Op) -> int:
        """0-based position from the head (for pvfs2ctl; O(n))."""
        for i, tag in enumerate(self._ops):
            if tag == op.tag:
                return i
        raise KeyError(op.tag)


class InProgressTable:
    """``orangefs_htable_ops_in_progress``: ops read by the client-core, by tag."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("hash_table_size must be at least 1")
        self.size = size
        self._buckets: list[dict[int, Op]] = [{} for _ in range(size)]
        self._count = 0

    def bucket_of(self, tag: int) -> int:
        return tag % self.size

    def add(self, op: Op) -> None:
        self._buckets[op.tag % self.size][op.tag] = op
        op.linked = "inprogress"
        self._count += 1

    def find(self, tag: int) -> Op | None:
        """The op with ``tag``, ignoring ops already purged or given up (§1.4 step 6)."""
        op = self._buckets[tag % self.size].get(tag)
        if op is None or op.purged or op.given_up:
            return None
        return op

    def remove(self, op: Op) -> None:
        del self._buckets[op.tag % self.size][op.tag]
        op.linked = None
        self._count -= 1

    def __iter__(self) -> Iterator[Op]:
        """Bucket by bucket, as purge_inprogress_ops walks it."""
        return iter([op for bucket in self._buckets for op in bucket.values()])

    def __len__(self) -> int:
        return self._count
