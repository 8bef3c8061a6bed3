"""The replicas a hub holds in memory: loaded on first use, consistent with the
database and the sequencer, dropped to be loaded again.

A canvas loads from its latest snapshot plus the op log after it, then takes
the sequencer's state: the shared log beyond the database (another hub's
patches not stored yet) and the epoch. With no state (never set up, or Redis
lost it) the load sets it up from the database; a state that disagrees with
the database (behind it, or holding patches this hub assigned but no longer
has in hand) is dropped and set up again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.committer import GroupCommitter
from canvas.document import Author, CanvasDocument, replay
from canvas.handoff import Handoff
from canvas.replica import Replica
from canvas.sequencer import NO_BOUND, Entry, SeqState, Sequencer, Unavailable
from canvas.store import CanvasKey, Patch
from persistence.models import CanvasOp
from persistence.repositories import CanvasRepository
from realtime.base.errors import ErrorCode, HubError

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 5


def stored_patch(op: CanvasOp) -> Patch:
    return Patch.of(op.seq, op.epoch, Author(op.author), op.author_id, op.ops, op.at)


class Replicas:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        sequencer: Sequencer,
        committer: GroupCommitter,
        handoff: Handoff,
        *,
        retention: int,
        retention_bytes: int,
    ) -> None:
        self.loaded: dict[CanvasKey, Replica] = {}
        self._db = db
        self._sequencer = sequencer
        self._committer = committer
        self._handoff = handoff
        self._retention = retention
        self._retention_bytes = retention_bytes
        self._loading: dict[CanvasKey, asyncio.Future[Replica]] = {}
        self._resets: dict[CanvasKey, asyncio.Future[None]] = {}

    async def get(self, key: CanvasKey) -> Replica:
        """The canvas's replica, loaded if it is not (one load at a time per canvas)."""
        canvas = self.loaded.get(key)
        if canvas is not None and not canvas.broken:
            return canvas
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    def is_loading(self, key: CanvasKey) -> bool:
        return key in self._loading

    def drop(self, canvas: Replica) -> None:
        """Forget this replica; the canvas reloads on next use."""
        if self.loaded.get(canvas.key) is canvas:
            del self.loaded[canvas.key]

    def take(self, canvas: Replica, entries: Sequence[Entry]) -> None:
        """Apply entries from other hubs or the database to the replica
        (``Replica.take``); drop it if one does not apply here."""
        if not canvas.take(entries):
            self.drop(canvas)

    def forget(self, session_id: str) -> None:
        """Drop a session's replicas, but those in use."""
        for key, canvas in list(self.loaded.items()):
            if key.session_id == session_id and not canvas.lock.locked():
                del self.loaded[key]
                self._sequencer.forget(key)

    def broken(self, canvases: set[Replica]) -> None:
        """Their writes failed: drop them (they reload from what the database holds) and
        the sequencer's state, which still holds the failed patches."""
        for canvas in canvases:
            self.loaded.pop(canvas.key, None)
            if canvas.key not in self._resets:
                self._resets[canvas.key] = asyncio.ensure_future(self._reset(canvas))

    async def close(self) -> None:
        await asyncio.gather(*self._resets.values(), return_exceptions=True)

    async def _reset(self, canvas: Replica) -> None:
        try:
            await self._sequencer.drop(canvas.key, canvas.epoch, canvas.seq)
        except Unavailable:
            pass  # the load finds the state inconsistent and resets it
        finally:
            self._resets.pop(canvas.key, None)

    async def _load(self, key: CanvasKey) -> Replica:
        """The database's canvas plus the shared log beyond it, so the replica is the
        sequencer's state; sets that state up if there is none."""
        self._handoff.loading(key)
        await self._committer.written()  # what this hub wrote is in the database
        resetting = self._resets.get(key)
        if resetting is not None:
            await asyncio.shield(resetting)
        sequencer = self._sequencer
        for _ in range(LOAD_ATTEMPTS):
            canvas, stored_epoch = await self._read_stored(key)
            state, entries = await sequencer.load(key, canvas.seq + 1)
            if state is not None and not state.current:
                if state.holder == sequencer.node_id:
                    log.warning("canvas %s: this hub lost track of it; resetting", key)
                    await sequencer.drop(key, state.epoch, NO_BOUND)
                    continue
                # Another hub holds it: the database has everything it published.
                state, entries = SeqState(canvas.seq, canvas.seq, state.epoch, "", 0), []
            if state is None:
                epoch = sequencer.new_epoch(key, stored_epoch)
                if not await sequencer.init(key, canvas.seq, epoch):
                    continue  # another hub set it up: read it
                state, entries = SeqState(canvas.seq, canvas.seq, epoch, "", 0), []
            elif state.seq < canvas.seq or (
                state.holder == sequencer.node_id and state.dseq < state.seq
            ):
                # The database went past the sequencer, or the sequencer holds patches this
                # hub assigned but no longer has in hand (their commit failed, or their
                # append's outcome was lost): start again from the database.
                log.warning("canvas %s: the sequencer disagrees with the database; resetting", key)
                await sequencer.drop(key, state.epoch, NO_BOUND)
                continue
            elif state.seq > canvas.seq and (
                len(entries) != state.seq - canvas.seq or entries[0].patch.seq != canvas.seq + 1
            ):
                continue  # the log moved past the database read: read again
            canvas.epoch = state.epoch
            canvas.durable_seq = min(state.dseq, canvas.seq)
            # Relayed so far: what this hub handed on, not all the database holds. The
            # frame of a patch stored elsewhere may still be on its way (on Redis
            # Cluster it comes over a connection of its own) and is then skipped as
            # relayed; the next patch relayed hands it on first, from the log.
            handed = self._handoff.last_handed(key, state.epoch)
            canvas.relayed = (
                canvas.durable_seq if handed is None else min(handed, canvas.durable_seq)
            )
            canvas.take(entries)
            canvas.durable_seq = state.dseq
            canvas.relayed = max(canvas.relayed, self._handoff.loaded(key))
            self.loaded[key] = canvas
            return canvas
        raise HubError(ErrorCode.INTERNAL, "the canvas could not be loaded; retry")

    async def _read_stored(self, key: CanvasKey) -> tuple[Replica, str | None]:
        """The canvas as the database holds it (not kept in memory), and its epoch there."""
        async with self._db() as db:
            repo = CanvasRepository(db)
            stored = await repo.load(key.session_id, key.student_id)
            # The catch-up log holds the last `retention` patches, snapshot or not.
            recent = await repo.recent_ops(key.session_id, key.student_id, self._retention)
        doc = replay(stored.snapshot_doc, [op.ops for op in stored.ops])
        patches = [stored_patch(op) for op in recent]
        seq = stored.ops[-1].seq if stored.ops else stored.snapshot_seq
        canvas = Replica(
            key=key,
            doc=CanvasDocument(doc),
            seq=seq,
            epoch=stored.epoch or "",
            retention=(self._retention, self._retention_bytes),
            durable_seq=seq,
            snapshot_seq=stored.snapshot_seq,
        )
        for patch in patches:
            canvas.remember(patch)
        return canvas, stored.epoch
