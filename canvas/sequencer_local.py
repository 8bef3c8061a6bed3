"""The sequencer of a hub that is the only writer of its canvases: state in memory.

Nothing else writes the canvases, so no other instance is ever ``BUSY`` and
there is no log to share (the replica's own catch-up log is the only one).
The state is lost only with the process, whose canvases reload from the
database: a state set up again keeps the epoch the database holds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from canvas.sequencer import GAP, OTHER_EPOCH, Appended, Entry, SeqState
from canvas.store import CanvasKey, Patch


def initial_epoch(key: CanvasKey) -> str:
    """The epoch of a canvas whose log started in the database: fixed by its key, so a
    canvas with nothing stored yet keeps its epoch across reloads and restarts."""
    digest = hashlib.sha256(f"{key.session_id}\x00{key.student_id}".encode()).hexdigest()
    return digest[:16]


@dataclass(slots=True)
class _State:
    seq: int
    dseq: int
    epoch: str
    holder: str
    progress_at: float  # monotonic time of the holder's last progress


class LocalSequencer:
    """``Sequencer`` for one process (see ``canvas.sequencer`` for the contract)."""

    shared = False

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self._states: dict[CanvasKey, _State] = {}

    async def state(self, key: CanvasKey) -> SeqState | None:
        state = self._states.get(key)
        if state is None:
            return None
        idle_ms = int((time.monotonic() - state.progress_at) * 1000)
        return SeqState(state.seq, state.dseq, state.epoch, state.holder, idle_ms)

    async def load(self, key: CanvasKey, first: int) -> tuple[SeqState | None, list[Entry]]:
        return await self.state(key), []

    def new_epoch(self, key: CanvasKey, stored_epoch: str | None) -> str:
        return stored_epoch or initial_epoch(key)

    async def init(self, key: CanvasKey, seq: int, epoch: str) -> bool:
        if key in self._states:
            return False
        self._states[key] = _State(seq, seq, epoch, "", time.monotonic())
        return True

    async def append(self, key: CanvasKey, expected: int, patch: Patch) -> Appended:
        state = self._states.get(key)
        if state is None:
            return Appended("NOSTATE")
        if state.epoch != patch.epoch:
            return Appended("EPOCH")
        if state.seq != expected:
            return Appended("BEHIND", state.seq)
        state.seq += 1
        if state.dseq == expected:
            state.holder, state.progress_at = self.node_id, time.monotonic()
        return Appended("OK", state.seq)

    async def advance(self, batches: Sequence[tuple[CanvasKey, Sequence[Patch]]]) -> list[int]:
        return [self._advance(key, patches[-1]) for key, patches in batches]

    def _advance(self, key: CanvasKey, last: Patch) -> int:
        state = self._states.get(key)
        if state is None or state.epoch != last.epoch:
            return OTHER_EPOCH
        if last.seq <= state.dseq:
            return 0
        if last.seq > state.seq:
            return GAP
        passed, state.dseq = last.seq - state.dseq, last.seq
        state.progress_at = time.monotonic()
        return passed

    async def publish(self, key: CanvasKey, patches: Sequence[Patch]) -> None:
        return None  # no other instance to tell

    async def drop(self, key: CanvasKey, epoch: str, below: int) -> bool:
        state = self._states.get(key)
        if state is None or state.epoch != epoch or state.dseq >= below:
            return False
        del self._states[key]
        return True

    async def entries(self, key: CanvasKey, first: int, last: int | None) -> list[Entry]:
        return []

    def forget(self, key: CanvasKey) -> None:
        state = self._states.get(key)
        if state is not None and state.dseq == state.seq:
            del self._states[key]

    async def close(self) -> None:
        self._states.clear()
