"""The canvas store interface: durable patch streams in seq order, one per student canvas.

The implementation is ``store_sequenced.SequencedCanvasStore``, built from parts
(see its module), with a local sequencer (this hub alone; the default) or a
leased one through Redis (several hubs share the canvases, each held by one hub
at a time); ``build.build_store`` builds it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from canvas.document import Author, CanvasLimits
from realtime.base.codec import encoded_bytes


@dataclass(frozen=True, slots=True)
class CanvasKey:
    center_id: str
    session_id: str
    student_id: str


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a canvas stream stands: ``offset`` is the last seq, counted in ``epoch``.

    Seqs are gap-free within an epoch. A new epoch means the log was reset
    (lost and rebuilt): a client holding another epoch must take the document
    again rather than ask for the patches after its seq.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Patch:
    """An accepted patch: its seq (in ``epoch``), who wrote it, and the effective ops as JSON.

    The ops are kept encoded (compact JSON bytes, embedded as is wherever the patch
    is sent): a catch-up log of a thousand patches per canvas would otherwise be
    millions of small objects that every full garbage collection walks, stopping
    the hub for hundreds of milliseconds; and the bytes cost little more than their
    length.
    """

    seq: int
    epoch: str
    author: Author
    author_id: str
    ops: bytes
    at: datetime

    @classmethod
    def of(
        cls,
        seq: int,
        epoch: str,
        author: Author,
        author_id: str,
        ops: list[dict[str, Any]],
        at: datetime,
    ) -> Patch:
        """The patch with ``ops`` encoded once."""
        return cls(seq, epoch, author, author_id, encoded_bytes(ops), at)

    @property
    def size(self) -> int:
        """Bytes of the encoded ops."""
        return len(self.ops)

    @property
    def fragment(self) -> orjson.Fragment:
        """The ops, to embed as they are in what orjson encodes."""
        return orjson.Fragment(self.ops)

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "author": self.author.value, "ops": self.fragment}


@dataclass(frozen=True, slots=True)
class Accepted:
    """A patch that has its seq. ``durable`` resolves once it is in the database
    (the hub acks only then) or fails with the reason it could not be stored."""

    key: CanvasKey
    patch: Patch
    durable: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """How a client gets level: the patches after its seq, or the whole document."""

    position: StreamPosition
    patches: list[Patch] | None
    doc: dict[str, Any] | None


class CanvasStore(Protocol):
    """Sequenced, durable canvas streams.

    Contract:

    - ``append`` validates and applies a patch atomically per canvas: it either
      raises ``HubError`` and changes nothing, or assigns the next seq. Seqs
      are assigned in call order, so one caller's patches keep their order.
    - A patch is durable once ``Accepted.durable`` resolves; only durable
      patches are acked, relayed, or returned by ``catch_up`` and ``state``.
      If storing fails, that patch and every later undurable patch of the same
      canvas fail too, and the canvas is reloaded from what was stored.
    - ``catch_up`` returns exactly the patches after ``since`` while the
      in-memory log still holds them, else the document.
    - After a restart, documents are rebuilt from the last snapshot plus the
      op log; seq and epoch carry on.
    """

    limits: CanvasLimits

    async def start(self) -> None: ...

    async def append(
        self, key: CanvasKey, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted: ...

    async def catch_up(self, key: CanvasKey, since: int | None) -> CatchUp: ...

    async def read(self, key: CanvasKey, at_seq: int | None = None) -> CatchUp:
        """The document now (``at_seq`` None) or as it was at ``at_seq`` (``NOT_FOUND``
        if the canvas never was at that seq); a canvas not in memory stays out of it."""
        ...

    async def flush(self) -> None:
        """Wait until every write queued so far is stored (or failed)."""
        ...

    async def compact(self, key: CanvasKey) -> None:
        """Write a snapshot now if there are patches since the last one."""
        ...

    async def compact_session(self, session_id: str) -> None:
        """``compact`` each canvas of the session held in memory."""
        ...

    async def forget(self, session_id: str) -> None:
        """Drop a session's canvases from memory once what is queued is stored (they
        load again on use)."""
        ...

    def logged_patches(self) -> int:
        """How many patches the catch-up logs in memory hold."""
        ...

    def receive(self, payload: bytes) -> None:
        """Durable patches another hub published (a ``CANVAS`` frame's payload)."""
        ...

    async def resume(self) -> None:
        """The hub's subscription is back after Redis was away: hand on the durable
        patches published meanwhile."""
        ...

    async def close(self) -> None:
        """Store what is pending and stop background work."""
        ...
