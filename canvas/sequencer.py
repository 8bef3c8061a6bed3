"""The sequencer interface: who assigns a canvas's seqs and where its durable seq stands.

Backends, side by side: ``sequencer_local.LocalSequencer`` (this process is the
only writer; its state lives in memory) and ``sequencer_leased.LeasedSequencer``
(several hubs write the same canvases, each held by one hub at a time, which
assigns its seqs; Redis holds who holds it). The store
(``canvas.store_sequenced``) drives each through this interface; for the leased
one, read "holds undurable patches" below as "holds the canvas", and its
``state`` is not ``current`` while another hub holds it.

Contract (``tests/test_sequencer_conformance.py`` runs it against every backend):

- Per canvas the state is ``seq`` (last assigned), ``dseq`` (last durable),
  ``epoch``, ``holder`` (the instance holding undurable patches, when
  ``dseq < seq``) and ``idle_ms`` (since the holder last made progress: its
  first undurable patch, or its last advance). There is none until ``init``.
- ``init`` sets the state up at ``seq == dseq`` in an epoch; a state that
  exists wins and is left as it is. ``new_epoch`` picks that epoch from what
  the database holds.
- ``append`` assigns ``expected + 1`` only if the state is at ``expected`` in
  ``epoch`` and no *other* instance holds undurable patches; else it changes
  nothing and says why (``NOSTATE``, ``EPOCH``, ``BUSY``, ``BEHIND``). So seqs
  are gap-free and assigned once each, and patches become durable in seq order.
- ``advance`` moves ``dseq`` up to a patch's seq, in that patch's epoch only,
  never down; it tells the other instances of the patches it passes and
  answers how many it passed, or ``OTHER_EPOCH`` / ``GAP`` (nothing changed).
- ``drop`` removes a state still in ``epoch`` with ``dseq`` below a bound.
- ``entries`` are the assigned patches it still holds (a trimmed log: from some
  seq on, or none; both backends hold none, the database is the log); ``load``
  reads the state and the entries after a seq at once.
- Every method raises ``Unavailable`` when the backend cannot be reached; then
  an ``append`` may or may not have taken effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from canvas.store import CanvasKey, Patch
from realtime.base.errors import ErrorCode, HubError

# What ``advance`` answers when it passes nothing: the state is in another epoch (or
# gone), or the patches reach past the last seq it assigned.
OTHER_EPOCH, GAP = -1, -2
# A bound above every dseq: ``drop`` whatever state is in the epoch.
NO_BOUND = 2**53

Outcome = Literal["OK", "NOSTATE", "EPOCH", "BUSY", "BEHIND"]


class Unavailable(HubError):
    """The sequencer's backend could not be reached: retryable."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.INTERNAL, "the canvas store is unavailable; retry")


@dataclass(frozen=True, slots=True)
class SeqState:
    seq: int
    dseq: int
    epoch: str
    holder: str
    idle_ms: int  # since the holder of undurable patches last made progress
    # False: another instance holds the canvas (``sequencer_leased``), and seq and
    # dseq are as they were when it took it; its published patches are the news.
    current: bool = True


class Appended(NamedTuple):
    """``append``'s answer: ``OK`` with the new ``seq``; ``BEHIND`` with the current
    ``seq``; ``BUSY`` with the current ``seq`` and the holder's ``idle_ms``. (A tuple:
    one is made per patch.)"""

    outcome: Outcome
    seq: int = 0
    idle_ms: int = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """An assigned patch from another hub or the database, its ops decoded to apply
    them."""

    patch: Patch
    ops: list[dict[str, Any]]


class Sequencer(Protocol):
    """See the module docstring for the contract."""

    node_id: str
    # Whether other instances write the same canvases (then a catch-up answers at the
    # durable seq rather than waiting for this hub's own pending patches).
    shared: bool

    async def state(self, key: CanvasKey) -> SeqState | None: ...

    async def load(self, key: CanvasKey, first: int) -> tuple[SeqState | None, list[Entry]]:
        """The state and the entries from seq ``first`` on, read together."""
        ...

    def new_epoch(self, key: CanvasKey, stored_epoch: str | None) -> str:
        """The epoch of a state set up from the database, which holds ``stored_epoch``
        (None: nothing stored)."""
        ...

    async def init(self, key: CanvasKey, seq: int, epoch: str) -> bool:
        """Set the state up at ``seq`` in ``epoch`` unless there is one; True if set."""
        ...

    async def append(self, key: CanvasKey, expected: int, patch: Patch) -> Appended:
        """Assign ``patch`` (seq ``expected + 1``, in ``patch.epoch``) if the contract
        allows, logging it as an entry of this instance."""
        ...

    async def advance(self, batches: Sequence[tuple[CanvasKey, Sequence[Patch]]]) -> list[int]:
        """For each canvas, move ``dseq`` to the last of its newly durable patches (in
        seq order); per canvas the count of patches passed (and told to the other
        instances), or OTHER_EPOCH/GAP."""
        ...

    async def publish(self, key: CanvasKey, patches: Sequence[Patch]) -> None:
        """Tell the other instances of durable patches ``advance`` could not pass."""
        ...

    async def drop(self, key: CanvasKey, epoch: str, below: int) -> bool:
        """Remove the state if it is in ``epoch`` with ``dseq < below``; True if removed."""
        ...

    async def entries(self, key: CanvasKey, first: int, last: int | None) -> list[Entry]:
        """The entries held from seq ``first`` to ``last`` (None: the newest)."""
        ...

    def forget(self, key: CanvasKey) -> None:
        """This instance no longer keeps the canvas: a state only it uses may go."""
        ...

    async def close(self) -> None: ...
