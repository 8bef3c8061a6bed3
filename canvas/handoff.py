"""Handing durable patches on to the relay (``on_durable``): each once, in seq order.

A hub learns that a patch is durable from its own commits, from other hubs'
frames, from a takeover and from the shared log after an outage; the same
patch may come by more than one. Per replica, patches are handed on in seq
order, a gap before them filled from the replica's log (everything before a
durable patch is durable); per canvas, a seq at or below the last one handed
on (in any epoch) was handed on already, or is a late one of an older epoch,
and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from canvas.replica import Replica
from canvas.store import CanvasKey, Patch

# Called with the patches that became durable, in order per canvas.
DurableListener = Callable[[Sequence[tuple[CanvasKey, Patch]]], None]


class Handoff:
    def __init__(self, on_durable: DurableListener | None) -> None:
        self.on_durable = on_durable
        # The last (epoch, seq) handed on per canvas.
        self._handed: dict[CanvasKey, tuple[str, int]] = {}
        # The last seq handed on of canvases that were loading meanwhile.
        self._while_loading: dict[CanvasKey, int] = {}

    def next_of(self, replica: Replica, patches: Iterable[Patch]) -> list[tuple[CanvasKey, Patch]]:
        """What of ``patches`` the replica hands on next (with the gap before them),
        in seq order; they count as relayed."""
        fresh = [p for p in patches if p.seq > replica.relayed]
        if not fresh:
            return []
        gap = []
        if fresh[0].seq > replica.relayed + 1:
            gap = replica.log.before(replica.relayed, fresh[0].seq)
        replica.relayed = fresh[-1].seq
        return [(replica.key, p) for p in (*gap, *fresh)]

    def next_in_order(
        self, durable: Sequence[tuple[Replica, Patch]]
    ) -> list[tuple[CanvasKey, Patch]]:
        """``next_of`` each (replica, patch), in the order given (commit order)."""
        out: list[tuple[CanvasKey, Patch]] = []
        for replica, patch in durable:
            if patch.seq == replica.relayed + 1:  # the common case, without a gap
                replica.relayed = patch.seq
                out.append((replica.key, patch))
            elif patch.seq > replica.relayed:
                out += self.next_of(replica, (patch,))
        return out

    def relay(self, replica: Replica, patches: Sequence[Patch]) -> None:
        self.hand_on(self.next_of(replica, patches))

    def hand_on(self, patches: list[tuple[CanvasKey, Patch]]) -> None:
        """To ``on_durable``, skipping what was handed on already."""
        fresh = []
        for key, patch in patches:
            # Not even in another epoch: a canvas starts again from the database, which
            # holds every patch handed on (they are durable), so a new epoch's patches
            # come after them, and an old epoch's at or below them arrive late.
            seq = self._handed.get(key, ("", 0))[1]
            if patch.seq > seq:
                self._handed[key] = (patch.epoch, patch.seq)
                fresh.append((key, patch))
        if fresh and self.on_durable is not None:
            self.on_durable(fresh)

    def while_loading(self, key: CanvasKey, seq: int) -> None:
        """Patches up to ``seq`` were handed on while the canvas loads (the load reads
        them from the log: they count as relayed)."""
        self._while_loading[key] = max(self._while_loading.get(key, 0), seq)

    def loading(self, key: CanvasKey) -> None:
        self._while_loading.pop(key, None)

    def loaded(self, key: CanvasKey) -> int:
        """The last seq handed on while the canvas loaded (0: none)."""
        return self._while_loading.pop(key, 0)

    def last_handed(self, key: CanvasKey, epoch: str) -> int | None:
        """The last seq of the canvas handed on in ``epoch`` (None: none, or in another)."""
        handed = self._handed.get(key)
        return handed[1] if handed is not None and handed[0] == epoch else None

    def positions(self) -> list[tuple[CanvasKey, str, int]]:
        """Each canvas handed on from, with the last (epoch, seq) handed on."""
        return [(key, epoch, seq) for key, (epoch, seq) in self._handed.items()]

    def forget(self, session_id: str) -> None:
        for key in [key for key in self._handed if key.session_id == session_id]:
            del self._handed[key]
