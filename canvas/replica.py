"""A loaded canvas: the document in memory, its stream position and its catch-up log.

One hub's replica of the canvas: its own patches go in as they get their
seqs, other hubs' (``Entry``, from the shared log or their frames) as they
arrive, in seq order; the log keeps the last patches for catch-up, at most
``retention`` of them and (but the newest) at most ``retention_bytes`` of
their ops. Which seqs are durable is ``durable_seq``; the store changes a
replica only while holding its ``lock`` or without awaiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from canvas.document import CanvasDocument, CanvasLimits
from canvas.patch_log import PatchLog
from canvas.sequencer import Entry
from canvas.store import CanvasKey, CatchUp, Patch, StreamPosition
from realtime.base.errors import HubError

log = logging.getLogger(__name__)

# Other hubs' effective ops already passed the limits there.
NO_LIMITS = CanvasLimits(2**62, 2**62, 2**62, 2**62)


@dataclass(eq=False, slots=True)
class Replica:
    key: CanvasKey
    doc: CanvasDocument
    seq: int
    epoch: str
    # (patches, bytes of their ops) the log holds at most.
    retention: tuple[int, int]
    durable_seq: int
    snapshot_seq: int
    log: PatchLog = field(default_factory=PatchLog)
    # Bytes of ops since the last snapshot, the document's bytes at it (0: none taken
    # here yet); when the last patch came (time.monotonic()).
    since_snapshot_bytes: int = 0
    snapshot_bytes: int = 0
    changed_at: float = field(default_factory=time.monotonic)
    # The future of the last patch appended here (resolves once it is stored).
    last_write: asyncio.Future[None] | None = None
    # A write failed: the replica is dropped and reloads from the database.
    broken: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The document holds a patch the sequencer has not assigned yet; entries wait.
    tentative: bool = False
    inbox: list[Entry] = field(default_factory=list)
    # Patches were missed: catch up from the shared log (to at least ``stale_upto``).
    stale: bool = False
    stale_upto: int = 0
    # The last seq handed on to the relay here, and the last applied from another hub.
    relayed: int = 0
    foreign: int = 0

    def take(self, entries: Sequence[Entry]) -> bool:
        """Apply entries from other hubs or the database: duplicates are skipped, a gap
        marks the replica stale. False: one did not apply here, and the replica must be
        dropped."""
        pending, self.inbox = [*self.inbox, *entries], []
        for entry in sorted(pending, key=lambda e: e.patch.seq):
            patch = entry.patch
            if patch.seq <= self.seq:
                continue
            if patch.seq > self.seq + 1 or patch.epoch != self.epoch:
                self.stale = True
                self.stale_upto = max(self.stale_upto, patch.seq)
                return True
            try:
                self.doc.apply(entry.ops, patch.author, NO_LIMITS)
            except HubError as exc:
                # Not its message, which quotes the op's path and error (canvas content).
                log.warning(
                    "canvas %s: shared patch %d did not apply here (%s); reloading",
                    self.key,
                    patch.seq,
                    exc.code.value,
                )
                return False
            self.seq = patch.seq
            self.remember(patch)
            self.foreign = patch.seq
        return True

    @property
    def log_bytes(self) -> int:
        """Bytes of the ops the log holds."""
        return self.log.size

    def remember(self, patch: Patch) -> None:
        """Keep ``patch`` in the log, dropping the oldest beyond the retention."""
        log = self.log
        log.append(patch)
        self.since_snapshot_bytes += patch.size
        self.changed_at = time.monotonic()
        most, most_bytes = self.retention
        while len(log) > most or (log.size > most_bytes and len(log) > 1):
            log.drop_oldest()

    def logged(self, since: int, upto: int) -> list[Patch] | None:
        """The patches after ``since`` up to ``upto`` from the log, if it holds them all."""
        first = self.log.first_seq
        if first is None or first > since + 1 or self.seq < upto:
            return None
        held = self.log.between(since, upto)
        # Only a gap-free run: a replica that missed frames may hold holes.
        if len(held) != upto - since or (held and held[0].seq != since + 1):
            return None
        return held

    def view(self, since: int | None) -> CatchUp:
        """The catch-up at this replica's seq (everything in it is durable)."""
        position = StreamPosition(self.seq, self.epoch)
        if since is not None and since <= self.seq:
            if since == self.seq:
                return CatchUp(position, [], None)
            first = self.log.first_seq
            if first is not None and first <= since + 1:
                return CatchUp(position, self.log.between(since), None)
        return CatchUp(position, None, self.doc.snapshot())
