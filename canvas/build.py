"""Builds the canvas store a hub runs: on its own, or sharing canvases through Redis."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.sequencer import Sequencer
from canvas.sequencer_leased import LeasedSequencer
from canvas.sequencer_local import LocalSequencer
from canvas.store_sequenced import SequencedCanvasStore
from persistence.batch import BatchWriter
from realtime.bus.subscription_redis import AnyRedis


def build_store(
    db: async_sessionmaker[AsyncSession],
    writer: BatchWriter,
    *,
    redis: AnyRedis | None = None,
    node_id: str = "local",
    **options: Any,
) -> SequencedCanvasStore:
    """The store (``options`` are ``SequencedCanvasStore``'s): with ``redis``, the hubs
    on it share the canvases, each held by one hub at a time (``node_id`` tells this
    hub apart); without, this hub is the only writer of its canvases."""
    sequencer: Sequencer
    if redis is None:
        sequencer = LocalSequencer(node_id)
    else:
        sequencer = LeasedSequencer(
            redis,
            node_id=node_id,
            lease_s=options.get("takeover_s", 3.0),
            metrics=options.get("metrics"),
        )
    return SequencedCanvasStore(db, writer, sequencer, **options)
