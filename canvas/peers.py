"""What other hubs do to this hub's replicas: their durable patches (frames on the
session's channel, or the shared log after an outage) and the takeover of a
dead hub's patches. Each is applied to the replica if it is loaded (or marks
it to catch up from the shared log) and handed on to the relay once.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas import takeover, wire
from canvas.handoff import Handoff
from canvas.replica import Replica
from canvas.replicas import Replicas, stored_patch
from canvas.sequencer import Entry, SeqState, Sequencer, Unavailable
from canvas.store import CanvasKey
from persistence.repositories import CanvasRepository
from realtime.base.errors import HubError

log = logging.getLogger(__name__)

# Patches read from the database after an outage, per canvas, at most (a client
# further behind resyncs at the gap).
RESUME_MOST = 1000


class Peers:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        sequencer: Sequencer,
        replicas: Replicas,
        handoff: Handoff,
        *,
        takeover_s: float,
    ) -> None:
        self._db = db
        self._sequencer = sequencer
        self._replicas = replicas
        self._handoff = handoff
        self._takeover_s = takeover_s

    def receive(self, payload: bytes) -> None:
        """Durable patches another hub published (a ``CANVAS`` frame's payload).

        Brings the replica along (or marks it to catch up from the shared log) and
        hands the patches on for this hub's rooms, in seq order, skipping those
        already handed on.
        """
        self._received(*wire.read_frame(payload))

    async def resume(self) -> None:
        """This hub's subscription is back after Redis was away: hand on, from the
        shared log, the durable patches it missed of every canvas it relays.

        In the same epoch that is what follows the last seq handed on; in a new
        epoch (Redis lost its state), every durable patch of the new log, whose
        epoch tells the clients to resync; what the shared log does not hold (it
        lost it, or it holds none: ``sequencer_leased``) comes from the database.
        Without this the tail of what was published meanwhile would never reach
        the clients: no later patch would show them the gap.
        """
        for key, epoch, seq in self._handoff.positions():
            try:
                state = await self._state_if_known(key)
                if state is not None and state.current and state.epoch == epoch:
                    if state.dseq <= seq:
                        continue
                    entries = await self._sequencer.entries(key, seq + 1, state.dseq)
                    if len(entries) != state.dseq - seq:
                        entries = await self.stored_after(key, seq)
                elif state is not None and state.current:
                    entries = await self._sequencer.entries(key, 0, state.dseq)
                    entries = [e for e in entries if e.patch.epoch == state.epoch]
                else:
                    # Redis lost the state, or a hub holds the canvas and published
                    # patches while this one was away (``sequencer_leased``): what it
                    # stored is in the database.
                    entries = await self.stored_after(key, seq)
            except HubError as exc:
                log.warning("canvas %s: catching up after a Redis outage failed: %r", key, exc)
                continue
            self._received(key, entries)

    async def _state_if_known(self, key: CanvasKey) -> SeqState | None:
        """The sequencer's state of the canvas; None also when Redis cannot answer for
        it (on a cluster, its slot moving): what was stored is in the database."""
        try:
            return await self._sequencer.state(key)
        except Unavailable:
            return None

    async def caught_up_from_database(self, canvas: Replica) -> bool:
        """Bring a replica of a canvas another hub holds up to what the database holds
        (its frames are all this hub gets, and it stops listening when its last member
        of the session leaves); False if the replica must be loaded again instead."""
        missed = await self.stored_after(canvas.key, canvas.seq)
        if len(missed) >= RESUME_MOST:
            return False
        self._received(canvas.key, missed)
        return self._replicas.loaded.get(canvas.key) is canvas and not canvas.stale

    async def stored_after(self, key: CanvasKey, seq: int) -> list[Entry]:
        """What the database holds of the canvas after ``seq`` (at most ``RESUME_MOST``)."""
        async with self._db() as db:
            stored = await CanvasRepository(db).ops_between(
                key.session_id, key.student_id, seq + 1, seq + RESUME_MOST
            )
        return [Entry(stored_patch(op), op.ops) for op in stored]

    def _received(self, key: CanvasKey, received: list[Entry]) -> None:
        if not received:
            return
        canvas = self._replicas.loaded.get(key)
        if canvas is None:
            if self._replicas.is_loading(key):  # the load reads them: don't hand them on again
                self._handoff.while_loading(key, received[-1].patch.seq)
            self._handoff.hand_on([(key, r.patch) for r in received])
            return
        if received[0].patch.epoch != canvas.epoch:
            self._replicas.drop(canvas)
            self._handoff.hand_on([(key, r.patch) for r in received])
            return
        canvas.durable_seq = max(canvas.durable_seq, received[-1].patch.seq)
        if canvas.tentative:
            canvas.inbox += received
        else:
            self._replicas.take(canvas, received)
        self._handoff.relay(canvas, [r.patch for r in received])

    async def take_over(self, key: CanvasKey) -> None:
        """Store the undurable patches of a hub that stopped making progress."""
        taken = await takeover.take_over(self._sequencer, self._db, key, self._takeover_s)
        canvas = self._replicas.loaded.get(key)
        if taken is None or canvas is None:
            return
        state, entries = taken
        canvas.durable_seq = max(canvas.durable_seq, state.seq)
        if not canvas.tentative:
            self._replicas.take(canvas, entries)
        self._handoff.relay(canvas, [e.patch for e in entries])
