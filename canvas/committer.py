"""The group committer: every canvas write of a hub goes through one task.

While a commit is in flight, new writes queue up and go in the next
transaction together (group commit), so a hundred students drawing at once
cost a commit per batch, not per patch, and an idle hub adds no delay
waiting for company. Batches commit in queue order, one at a time.

A write's future resolves once its transaction committed (after ``stored``
was told, in commit order), or fails with the reason. If a batch fails, each
canvas's writes are tried on their own, so one canvas's bad write fails only
that canvas: its writes fail, and every later queued write of it too; its
replica is marked broken and ``broken`` is told.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from canvas.replica import Replica
from canvas.store import CanvasKey, Patch
from persistence.batch import BatchWriter
from persistence.models import CanvasOp, CanvasSnapshot
from realtime.base.errors import ErrorCode, HubError
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import stop

log = logging.getLogger(__name__)

# The committer lingers when a write arrives within this many lingers of the last
# commit: writes come faster than one a linger, so lingering gathers a batch. Slower
# ones would wait for a batch of one.
BUSY_AFTER_LINGERS = 1
OPS: Table = CanvasOp.__table__  # type: ignore[assignment]
SNAPSHOTS: Table = CanvasSnapshot.__table__  # type: ignore[assignment]


@dataclass(eq=False, slots=True)
class Write:
    canvas: Replica
    table: Table
    row: dict[str, Any]
    future: asyncio.Future[None]
    patch: Patch | None = None


class GroupCommitter:
    """Commits queued writes through ``writer``, one transaction per batch (see above).

    ``stored`` is told of each committed batch's writes before their futures
    resolve (it resolves them); ``broken`` of the replicas whose writes failed.
    """

    def __init__(
        self,
        writer: BatchWriter,
        *,
        stored: Callable[[list[Write]], Awaitable[None]],
        broken: Callable[[set[Replica]], None],
        linger_s: float = 0.0,
        metrics: HubMetrics | None = None,
    ) -> None:
        self.writer = writer
        self._stored = stored
        self._on_broken = broken
        self._linger_s = linger_s
        self._metrics = metrics
        self._queue: list[Write] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._committing: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._idle.set()
        self._task = asyncio.create_task(self._commit_loop(), name="canvas-committer")

    async def close(self) -> None:
        """Store what is queued, then stop."""
        await self.flush()
        await stop([self._task] if self._task is not None else [])
        self._task = None
        await self.writer.close()

    def enqueue(
        self, canvas: Replica, table: Table, row: dict[str, Any], patch: Patch | None = None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody may await a snapshot's future; don't log its failure as unretrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(Write(canvas, table, row, future, patch))
        if patch is not None:
            canvas.last_write = future
        self._idle.clear()
        self._wake.set()
        return future

    async def flush(self) -> None:
        """Wait until every queued write is committed (or failed)."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    async def written(self) -> None:
        """Wait until what was queued so far is committed (or failed); unlike ``flush``,
        not for what is queued meanwhile, so a busy hub still loads canvases."""
        last = self._queue[-1].future if self._queue else self._committing
        if last is not None and not last.done():
            await asyncio.wait([last])  # batches commit in order

    async def _commit_loop(self) -> None:
        last_commit = -math.inf
        while True:
            await self._wake.wait()
            if time.monotonic() - last_commit < BUSY_AFTER_LINGERS * self._linger_s:
                # Commits are coming back to back: gather a batch rather than pay a
                # transaction per patch. An idle hub commits at once.
                await asyncio.sleep(self._linger_s)
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                self._committing = batch[-1].future
                try:
                    await self._commit(batch)
                except asyncio.CancelledError:
                    _fail(batch, "the hub is stopping")
                    raise
                except Exception:
                    log.exception("canvas commit failed unexpectedly")
                    self._count_failed(batch)
                    _fail(batch, "internal error")
                last_commit = time.monotonic()
            self._idle.set()

    async def _commit(self, batch: list[Write]) -> None:
        live = [w for w in batch if not w.canvas.broken]
        _fail([w for w in batch if w.canvas.broken], "an earlier write failed")
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
            by_canvas: dict[Replica, list[Write]] = {}
            for write in live:
                by_canvas.setdefault(write.canvas, []).append(write)
            stored: list[Write] = []
            for writes in by_canvas.values():
                try:
                    await self._insert(writes)
                    stored += writes
                except Exception:
                    self._broken(writes)
            live = [w for w in live if w in stored]
        if self._metrics is not None:
            self._metrics.canvas_commit_seconds.observe(time.perf_counter() - started)
            self._metrics.canvas_commit_batch.observe(len(live))
        await self._stored(live)

    async def _insert(self, writes: list[Write]) -> None:
        rows: dict[Table, list[dict[str, Any]]] = {}
        for write in writes:
            rows.setdefault(write.table, []).append(write.row)
        # Core inserts (executemany), not ORM objects: the unit of work's
        # bookkeeping cost more than the insert itself.
        await self.writer.insert(rows)

    def _broken(self, writes: list[Write]) -> None:
        """These writes could not be stored: fail them and mark their replicas broken."""
        log.exception("could not store %d canvas writes", len(writes))
        self._count_failed(writes)
        canvases = {w.canvas for w in writes}
        for canvas in canvases:
            canvas.broken = True  # reload from what the database holds
        _fail(writes, "could not store the patch")
        self._on_broken(canvases)

    def _count_failed(self, writes: list[Write]) -> None:
        if self._metrics is not None:
            self._metrics.canvas_commit_failures.inc(sum(not w.future.done() for w in writes))


def _fail(writes: list[Write], why: str) -> None:
    for write in writes:
        if not write.future.done():
            write.future.set_exception(HubError(ErrorCode.INTERNAL, why))


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
