"""Builds the canvas store a hub runs: on its own, or sharing canvases through Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.sequencer import Sequencer
from canvas.sequencer_leased import LeasedSequencer
from canvas.sequencer_local import LocalSequencer
from canvas.sequencer_redis import RedisSequencer
from canvas.store_sequenced import SequencedCanvasStore
from persistence.batch import BatchWriter


def build_store(
    db: async_sessionmaker[AsyncSession],
    writer: BatchWriter,
    *,
    redis: redis.asyncio.Redis | None = None,
    node_id: str = "local",
    sharing: str = "leased",
    **options: Any,
) -> SequencedCanvasStore:
    """The store (``options`` are ``SequencedCanvasStore``'s): with ``redis``, seqs and
    the recent log are shared by every hub on it (``node_id`` tells this hub apart;
    ``sharing`` is ``HUB_CANVAS_SHARING``); without, this hub is the only writer of its
    canvases."""
    sequencer: Sequencer
    if redis is None:
        sequencer = LocalSequencer(node_id)
    elif sharing == "leased":
        sequencer = LeasedSequencer(
            redis,
            node_id=node_id,
            lease_s=options.get("takeover_s", 3.0),
            metrics=options.get("metrics"),
        )
    else:
        sequencer = RedisSequencer(
            redis,
            node_id=node_id,
            retention=options.get("retention", 1000),
            metrics=options.get("metrics"),
        )
    return SequencedCanvasStore(db, writer, sequencer, **options)
