"""Relays durable canvas patches to the rooms that may see them, coalesced.

Staff (tutor and observers) get every student's patches of a session; a
student gets the tutor's annotations on their own canvas and their own
patches made from their other connections. Patches are gathered for
``interval_s`` and sent as one ``canvas:patches`` event per room, so a staff
room watching many students gets one event per flush rather than one per
patch; with ``interval_s == 0`` each commit's patches go out at once. Items
of one canvas keep their seq order: they arrive here in commit order and are
sent in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from canvas.document import Author
from canvas.store import CanvasKey, Patch
from realtime.base import logs
from realtime.base.metrics import HubMetrics
from realtime.base.names import staff_room, student_room
from realtime.gateway.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Item:
    key: CanvasKey
    patch: Patch
    author_sid: str | None
    durable_at: float

    def wire(self) -> dict[str, Any]:
        return {"student_id": self.key.student_id, "epoch": self.patch.epoch, **self.patch.wire()}


class CanvasRelay:
    def __init__(
        self, outbox: Outbox, *, interval_s: float, metrics: HubMetrics | None = None
    ) -> None:
        self._outbox = outbox
        self._interval = interval_s
        self._metrics = metrics
        self._pending: list[_Item] = []
        self._flushing: asyncio.Task[None] | None = None
        # Which socket wrote each not-yet-relayed patch, so its echo skips that socket.
        self._authors: dict[tuple[CanvasKey, int], str] = {}

    def authored(self, key: CanvasKey, seq: int, sid: str) -> None:
        self._authors[(key, seq)] = sid

    def unauthored(self, key: CanvasKey, seq: int) -> None:
        """The patch will never be relayed (it could not be stored)."""
        self._authors.pop((key, seq), None)

    def durable(self, patches: Sequence[tuple[CanvasKey, Patch]]) -> None:
        """Queue patches that were just committed (the store's ``on_durable``)."""
        now = time.perf_counter()
        for key, patch in patches:
            sid = self._authors.pop((key, patch.seq), None)
            self._pending.append(_Item(key, patch, sid, now))
        if self._flushing is None or self._flushing.done():
            # Relays the patches of many sockets: labelled with none of them.
            self._flushing = asyncio.create_task(self._flush_later(), context=logs.fresh_context())

    async def _flush_later(self) -> None:
        if self._interval > 0:
            await asyncio.sleep(self._interval)
        while self._pending:
            items, self._pending = self._pending, []
            try:
                self._send(items)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relaying %d canvas patches failed", len(items))

    def _send(self, items: list[_Item]) -> None:
        by_session: dict[CanvasKey, list[_Item]] = {}
        for item in items:
            session = CanvasKey(item.key.center_id, item.key.session_id, "")
            by_session.setdefault(session, []).append(item)
        for session, session_items in by_session.items():
            self._outbox.emit(
                "canvas:patches",
                {"session_id": session.session_id, "items": [i.wire() for i in session_items]},
                room=staff_room(session.center_id, session.session_id),
            )
            if self._metrics is not None:
                self._metrics.canvas_relay_batch.observe(len(session_items))
            self._send_to_students(session_items)
        if self._metrics is not None:
            now = time.perf_counter()
            for item in items:
                self._metrics.canvas_relay_seconds.observe(now - item.durable_at)

    def _send_to_students(self, items: list[_Item]) -> None:
        # One event per run of items with the same student and author socket,
        # so the author's own socket is skipped and order is kept.
        run: list[_Item] = []
        for item in items:
            if run and (item.key, item.author_sid) != (run[0].key, run[0].author_sid):
                self._send_run(run)
                run = []
            run.append(item)
        if run:
            self._send_run(run)

    def _send_run(self, run: list[_Item]) -> None:
        first = run[0]
        skip = first.author_sid if first.patch.author is Author.STUDENT else None
        room = student_room(first.key.center_id, first.key.session_id, first.key.student_id)
        # Usually the student's only tab wrote these: then there is nobody to send to.
        targets = self._outbox.targets(room, skip)
        if targets:
            self._outbox.send(
                targets,
                "canvas:patches",
                {"session_id": first.key.session_id, "items": [i.wire() for i in run]},
            )

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
