"""Canvas store: documents in this process, op log and snapshots in the database.

Writes go through one committer task. While a commit is in flight, new
patches queue up and go in the next transaction together (group commit), so
a hundred students drawing at once cost a commit per batch, not per patch,
and an idle hub adds no delay waiting for company.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.document import Author, CanvasDocument, CanvasLimits, replay
from canvas.store import Accepted, CanvasKey, CatchUp, Patch, StreamPosition
from persistence.batch import BatchWriter
from persistence.models import CanvasOp, CanvasSnapshot, utcnow
from persistence.repositories import CanvasRepository
from realtime.base.codec import encoded
from realtime.base.errors import ErrorCode, HubError
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import stop

log = logging.getLogger(__name__)

# Called after each commit with the patches it made durable, in commit order.
DurableListener = Callable[[Sequence[tuple[CanvasKey, Patch]]], None]

SETTLE_ATTEMPTS = 20
# The committer lingers when a write arrives within this many lingers of the last
# commit: writes come faster than one a linger, so lingering gathers a batch. Slower
# ones would wait for a batch of one.
BUSY_AFTER_LINGERS = 1
OPS: Table = CanvasOp.__table__  # type: ignore[assignment]
SNAPSHOTS: Table = CanvasSnapshot.__table__  # type: ignore[assignment]


def initial_epoch(key: CanvasKey) -> str:
    """The epoch of a canvas whose log started in the database: fixed by its key, so a
    canvas with nothing stored yet keeps its epoch across reloads and restarts."""
    digest = hashlib.sha256(f"{key.session_id}\x00{key.student_id}".encode()).hexdigest()
    return digest[:16]


def op_row(key: CanvasKey, patch: Patch, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``canvas_ops`` row of a patch (``ops`` are its effective ops, decoded)."""
    return {
        "center_id": key.center_id,
        "session_id": key.session_id,
        "student_id": key.student_id,
        "seq": patch.seq,
        "epoch": patch.epoch,
        "author": patch.author.value,
        "author_id": patch.author_id,
        "ops": ops,
        "at": patch.at,
    }


@dataclass(eq=False, slots=True)
class _Canvas:
    key: CanvasKey
    doc: CanvasDocument
    seq: int
    epoch: str
    log: deque[Patch]
    durable_seq: int
    snapshot_seq: int
    snapshot_at: float
    last_write: asyncio.Future[None] | None = None
    broken: bool = False


@dataclass(eq=False, slots=True)
class _Write:
    canvas: _Canvas
    table: Table
    row: dict[str, Any]
    future: asyncio.Future[None]
    patch: Patch | None = None


@dataclass
class DatabaseCanvasStore:
    """``CanvasStore`` for one hub process (see ``canvas.store`` for the contract)."""

    db: async_sessionmaker[AsyncSession]
    # Each batch is one transaction through the writer (see persistence.batch).
    writer: BatchWriter
    limits: CanvasLimits = field(default_factory=CanvasLimits)
    retention: int = 1000
    snapshot_every: int = 200
    snapshot_interval_s: float = 30.0
    commit_linger_s: float = 0.0
    metrics: HubMetrics | None = None
    on_durable: DurableListener | None = None

    # What a loaded canvas is (a backend may keep more per canvas).
    _canvas_type: ClassVar[type[_Canvas]] = _Canvas
    _canvases: dict[CanvasKey, _Canvas] = field(default_factory=dict, init=False)
    _loading: dict[CanvasKey, asyncio.Future[_Canvas]] = field(default_factory=dict, init=False)
    _queue: list[_Write] = field(default_factory=list, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    async def start(self) -> None:
        self._idle.set()
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="canvas-committer"),
            asyncio.create_task(self._snapshot_loop(), name="canvas-snapshots"),
        ]

    async def close(self) -> None:
        """Store what is pending, then stop."""
        for canvas in list(self._canvases.values()):
            self._snapshot(canvas)
        await self.flush()
        await stop(self._tasks)
        self._tasks = []
        await self.writer.close()

    async def flush(self) -> None:
        """Wait until every queued write is committed (or failed)."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- reads and writes -----------------------------------------------------

    async def append(
        self, key: CanvasKey, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted:
        canvas = await self._canvas(key)
        started = time.perf_counter()
        effective = canvas.doc.apply(ops, author, self.limits)  # raises, changing nothing
        canvas.seq += 1
        patch = Patch(canvas.seq, canvas.epoch, author, author_id, encoded(effective), utcnow())
        canvas.log.append(patch)
        future = self._enqueue(canvas, OPS, op_row(key, patch, effective), patch)
        if canvas.seq - canvas.snapshot_seq >= self.snapshot_every:
            self._snapshot(canvas)
        if self.metrics is not None:
            self.metrics.canvas_apply_seconds.observe(time.perf_counter() - started)
        return Accepted(key, patch, future)

    async def catch_up(self, key: CanvasKey, since: int | None) -> CatchUp:
        canvas = await self._settled(key)
        position = StreamPosition(canvas.seq, canvas.epoch)
        if since is not None and since <= canvas.seq:
            if since == canvas.seq:
                return CatchUp(position, [], None)
            if canvas.log and canvas.log[0].seq <= since + 1:
                return CatchUp(position, [p for p in canvas.log if p.seq > since], None)
        return CatchUp(position, None, canvas.doc.snapshot())

    async def read(self, key: CanvasKey, at_seq: int | None = None) -> CatchUp:
        """The document now (``at_seq`` None) or as it was at ``at_seq``.

        A canvas not in memory is read from the database without being kept,
        so reviewing old sessions does not fill the hub's memory.
        """
        if at_seq is None and key in self._canvases:
            return await self.catch_up(key, None)
        if at_seq is None:
            await self.flush()
        async with self.db() as db:
            stored = await CanvasRepository(db).load(key.session_id, key.student_id, upto=at_seq)
        doc = replay(stored.snapshot_doc, [op.ops for op in stored.ops])
        seq = stored.ops[-1].seq if stored.ops else stored.snapshot_seq
        if at_seq is not None and seq != at_seq:
            raise HubError(
                ErrorCode.NOT_FOUND,
                f"the canvas has no seq {at_seq}; it is at seq {seq}",
                error_code="SEQ_NOT_FOUND",
            )
        return CatchUp(StreamPosition(seq, stored.epoch or ""), None, doc)

    async def compact(self, key: CanvasKey) -> None:
        canvas = self._canvases.get(key)
        if canvas is None:
            return
        future = self._snapshot(canvas)
        if future is not None:
            await asyncio.shield(future)

    async def compact_session(self, session_id: str) -> None:
        for key in [k for k in self._canvases if k.session_id == session_id]:
            await self.compact(key)

    def logged_patches(self) -> int:
        return sum(len(c.log) for c in self._canvases.values())

    async def forget(self, session_id: str) -> None:
        """Drop a session's canvases from memory (they reload from the database on use),
        once everything queued is stored, so a reload cannot miss a pending write."""
        await self.flush()
        for key in [k for k in self._canvases if k.session_id == session_id]:
            del self._canvases[key]

    # -- loading --------------------------------------------------------------

    async def _canvas(self, key: CanvasKey) -> _Canvas:
        canvas = self._canvases.get(key)
        if canvas is not None and not canvas.broken:
            return canvas
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: CanvasKey) -> _Canvas:
        canvas = await self._read_stored(key)
        self._canvases[key] = canvas
        return canvas

    async def _read_stored(self, key: CanvasKey) -> _Canvas:
        """The canvas as the database holds it (not kept in memory)."""
        async with self.db() as db:
            repo = CanvasRepository(db)
            stored = await repo.load(key.session_id, key.student_id)
            # The catch-up log holds the last `retention` patches, snapshot or not.
            recent = await repo.recent_ops(key.session_id, key.student_id, self.retention)
        doc = replay(stored.snapshot_doc, [op.ops for op in stored.ops])
        patches = [
            Patch(op.seq, op.epoch, Author(op.author), op.author_id, encoded(op.ops), op.at)
            for op in recent
        ]
        seq = stored.ops[-1].seq if stored.ops else stored.snapshot_seq
        return self._canvas_type(
            key=key,
            doc=CanvasDocument(doc),
            seq=seq,
            epoch=stored.epoch or initial_epoch(key),
            log=deque(patches, maxlen=self.retention),
            durable_seq=seq,
            snapshot_seq=stored.snapshot_seq,
            snapshot_at=time.monotonic(),
        )

    async def _settled(self, key: CanvasKey) -> _Canvas:
        """The canvas once everything appended to it is durable."""
        for _ in range(SETTLE_ATTEMPTS):
            canvas = await self._canvas(key)
            pending = canvas.last_write
            if canvas.durable_seq == canvas.seq or pending is None:
                return canvas
            try:
                await asyncio.shield(pending)
            except HubError:
                continue  # the canvas was reloaded from what was stored
        raise HubError(ErrorCode.INTERNAL, "canvas is too busy to settle; retry")

    # -- the committer --------------------------------------------------------

    def _enqueue(
        self, canvas: _Canvas, table: Table, row: dict[str, Any], patch: Patch | None = None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody may await a snapshot's future; don't log its failure as unretrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(_Write(canvas, table, row, future, patch))
        if patch is not None:
            canvas.last_write = future
        self._idle.clear()
        self._wake.set()
        return future

    def _snapshot(self, canvas: _Canvas) -> asyncio.Future[None] | None:
        if canvas.seq <= canvas.snapshot_seq or canvas.broken:
            return None
        row = {
            "center_id": canvas.key.center_id,
            "session_id": canvas.key.session_id,
            "student_id": canvas.key.student_id,
            "seq": canvas.seq,
            "epoch": canvas.epoch,
            "doc": canvas.doc.snapshot(),
            "created_at": utcnow(),
        }
        canvas.snapshot_seq = canvas.seq
        canvas.snapshot_at = time.monotonic()
        return self._enqueue(canvas, SNAPSHOTS, row)

    async def _commit_loop(self) -> None:
        last_commit = -math.inf
        while True:
            await self._wake.wait()
            if time.monotonic() - last_commit < BUSY_AFTER_LINGERS * self.commit_linger_s:
                # Commits are coming back to back: gather a batch rather than pay a
                # transaction per patch. An idle hub commits at once.
                await asyncio.sleep(self.commit_linger_s)
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._commit(batch)
                except asyncio.CancelledError:
                    self._fail(batch, "the hub is stopping")
                    raise
                except Exception:
                    log.exception("canvas commit failed unexpectedly")
                    self._fail(batch, "internal error")
                last_commit = time.monotonic()
            self._idle.set()

    async def _commit(self, batch: list[_Write]) -> None:
        live = [w for w in batch if not w.canvas.broken]
        self._fail([w for w in batch if w.canvas.broken], "an earlier write failed")
        if not live:
            return
        started = time.perf_counter()
        try:
            await self._insert(live)
        except Exception:
            if len({w.canvas for w in live}) == 1:
                self._broken(live)
                return
            # One canvas's bad write must not fail the others' in the same batch:
            # store each canvas's writes on their own to find it.
            log.warning("a group commit of %d writes failed; retrying per canvas", len(live))
            by_canvas: dict[_Canvas, list[_Write]] = {}
            for write in live:
                by_canvas.setdefault(write.canvas, []).append(write)
            stored: list[_Write] = []
            for writes in by_canvas.values():
                try:
                    await self._insert(writes)
                    stored += writes
                except Exception:
                    self._broken(writes)
            live = [w for w in live if w in stored]
        if self.metrics is not None:
            self.metrics.canvas_commit_seconds.observe(time.perf_counter() - started)
            self.metrics.canvas_commit_batch.observe(len(live))
        await self._stored(live)

    async def _stored(self, writes: list[_Write]) -> None:
        """These writes are in the database: resolve them and tell ``on_durable``."""
        durable: list[tuple[CanvasKey, Patch]] = []
        for write in writes:
            if write.patch is not None:
                write.canvas.durable_seq = write.patch.seq
                durable.append((write.canvas.key, write.patch))
            if not write.future.done():
                write.future.set_result(None)
        if durable and self.on_durable is not None:
            self.on_durable(durable)

    async def _insert(self, writes: list[_Write]) -> None:
        rows: dict[Table, list[dict[str, Any]]] = {}
        for write in writes:
            rows.setdefault(write.table, []).append(write.row)
        # Core inserts (executemany), not ORM objects: the unit of work's
        # bookkeeping cost more than the insert itself.
        await self.writer.insert(rows)

    def _broken(self, writes: list[_Write]) -> None:
        """These writes could not be stored: fail them and reload their canvases."""
        log.exception("could not store %d canvas writes", len(writes))
        for canvas in {w.canvas for w in writes}:
            canvas.broken = True  # reload from what the database holds
            self._canvases.pop(canvas.key, None)
        self._fail(writes, "could not store the patch")

    @staticmethod
    def _fail(writes: list[_Write], why: str) -> None:
        for write in writes:
            if not write.future.done():
                write.future.set_exception(HubError(ErrorCode.INTERNAL, why))

    async def _snapshot_loop(self) -> None:
        period = max(0.05, min(self.snapshot_interval_s / 2, 5.0))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for canvas in list(self._canvases.values()):
                if now - canvas.snapshot_at >= self.snapshot_interval_s:
                    self._snapshot(canvas)
