"""Taking over a dead hub's patches: storing what it assigned but never stored.

A hub that holds undurable patches of a canvas and makes no progress for
``takeover_s`` is presumed dead. Another hub reads those patches from the
shared log, stores them through the repository (rows already there are kept)
and advances the durable seq, which publishes them. If the log no longer
holds them all, or the database holds other patches at those seqs, the
shared state is wrong: it is dropped, and rebuilt from the database.

With ``sequencer_leased`` the dead hub's patches were never in Redis: the
state (of a holder whose key is gone) is dropped at once, and the next load
sets the canvas up again from the database, in a new epoch.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.committer import op_row
from canvas.sequencer import NO_BOUND, Entry, SeqState, Sequencer, Unavailable
from canvas.store import CanvasKey
from persistence.repositories import CanvasRepository

log = logging.getLogger(__name__)


async def take_over(
    sequencer: Sequencer,
    db: async_sessionmaker[AsyncSession],
    key: CanvasKey,
    takeover_s: float,
) -> tuple[SeqState, list[Entry]] | None:
    """Store the undurable patches of a hub that stopped making progress; the state
    before and the patches it stored and published, or None if it did neither."""
    try:
        state = await sequencer.state(key)
        if state is None or state.dseq >= state.seq:
            return None
        if state.idle_ms < takeover_s * 1000:
            return None
        if not state.current:
            # A holder gone (``sequencer_leased``): what it stored is in the database,
            # from which the next load sets the state up again.
            log.warning("canvas %s: hub %s holding it is gone", key, state.holder)
            await sequencer.drop(key, state.epoch, NO_BOUND)
            return None
        entries = await sequencer.entries(key, state.dseq + 1, state.seq)
        if len(entries) != state.seq - state.dseq or entries[0].patch.seq != state.dseq + 1:
            await sequencer.drop(key, state.epoch, NO_BOUND)
            return None
        log.warning(
            "canvas %s: storing seqs %d..%d of hub %s, silent for %d ms",
            key,
            state.dseq + 1,
            state.seq,
            state.holder,
            state.idle_ms,
        )
        if not await _store(db, key, entries):
            # The database holds other patches at those seqs: the shared state is wrong.
            await sequencer.drop(key, state.epoch, NO_BOUND)
            return None
        [published] = await sequencer.advance([(key, [e.patch for e in entries])])
    except Unavailable:
        return None  # logged; the next append or catch-up tries again
    return (state, entries) if published > 0 else None


async def _store(
    db: async_sessionmaker[AsyncSession], key: CanvasKey, entries: list[Entry]
) -> bool:
    """Insert the rows, keeping any already there; True if the stored rows are these."""
    async with db.begin() as session:
        await CanvasRepository(session).add_ops_keeping_stored(
            [op_row(key, e.patch, e.ops) for e in entries]
        )
    async with db() as session:
        stored = await CanvasRepository(session).ops_between(
            key.session_id, key.student_id, entries[0].patch.seq, entries[-1].patch.seq
        )
    return [(s.seq, s.epoch, s.author_id, s.ops) for s in stored] == [
        (e.patch.seq, e.patch.epoch, e.patch.author_id, e.ops) for e in entries
    ]
