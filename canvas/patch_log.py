"""A canvas's catch-up log, kept compact: its patches' fields in arrays, their ops in one buffer.

A log of ``Patch`` objects cost about 240 bytes per patch beside its ops (the
object, its ``datetime``, the ops' ``bytes`` header, the deque's slot; measured
with tracemalloc over 500 logs of 600 patches), more than the ops of a typical
patch, and three objects per patch for every full garbage collection to walk.
Here a patch costs 28 bytes beside its ops: its seq, time and the end of its
ops in machine arrays, and the index of its (epoch, author, author id), of
which a canvas has a handful. ``Patch`` objects are made again when the log is
read (a catch-up, a gap in the relay), which is rare next to appending.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta

from canvas.document import Author
from canvas.store import Patch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PatchLog:
    """The last patches of one canvas, oldest first, in increasing seq order (a replica
    that missed frames may hold holes)."""

    __slots__ = (
        "_ats",
        "_dropped",
        "_ends",
        "_ops",
        "_seqs",
        "_who",
        "_writer_of",
        "_writers",
        "size",
    )

    def __init__(self) -> None:
        self._seqs = array("q")
        self._ats = array("q")  # microseconds since 1970, UTC
        # Where each patch's ops end in ``_ops``, counted from the first byte ever logged.
        self._ends = array("q")
        self._ops = bytearray()  # dropping from the front is amortized O(1)
        self._dropped = 0  # bytes dropped from the front of ``_ops``
        self._who = array("I")  # index into ``_writers``
        self._writers: list[tuple[str, Author, str]] = []  # (epoch, author, author id)
        self._writer_of: dict[tuple[str, Author, str], int] = {}
        self.size = 0  # bytes of the ops held

    def __len__(self) -> int:
        return len(self._seqs)

    @property
    def first_seq(self) -> int | None:
        return self._seqs[0] if self._seqs else None

    def append(self, patch: Patch) -> None:
        """Keep ``patch`` (its seq above every seq held)."""
        writer = (patch.epoch, patch.author, patch.author_id)
        who = self._writer_of.get(writer)
        if who is None:
            who = self._writer_of[writer] = len(self._writers)
            self._writers.append(writer)
        self._seqs.append(patch.seq)
        self._ats.append((patch.at - _EPOCH) // _MICROSECOND)
        self._ops += patch.ops
        self._ends.append(self._dropped + len(self._ops))
        self._who.append(who)
        self.size += len(patch.ops)

    def drop_oldest(self) -> None:
        """Drop the oldest patch (the log is not empty)."""
        start = self._dropped
        end = self._ends[0]
        del self._ops[: end - start]
        self._dropped = end
        self.size -= end - start
        for column in (self._seqs, self._ats, self._ends, self._who):
            del column[0]

    def between(self, after: int, upto: int | None = None) -> list[Patch]:
        """The patches held with ``after < seq <= upto`` (every one after ``after`` if
        ``upto`` is None), in seq order."""
        first = bisect_right(self._seqs, after)
        last = len(self._seqs) if upto is None else bisect_right(self._seqs, upto)
        return [self._patch(i) for i in range(first, last)]

    def before(self, after: int, below: int) -> list[Patch]:
        """The patches held with ``after < seq < below``, in seq order."""
        first = bisect_right(self._seqs, after)
        return [self._patch(i) for i in range(first, bisect_left(self._seqs, below))]

    def _patch(self, i: int) -> Patch:
        start = self._ends[i - 1] if i else self._dropped
        base = self._dropped
        epoch, author, author_id = self._writers[self._who[i]]
        return Patch(
            self._seqs[i],
            epoch,
            author,
            author_id,
            bytes(self._ops[start - base : self._ends[i] - base]),
            _EPOCH + self._ats[i] * _MICROSECOND,
        )
