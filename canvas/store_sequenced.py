"""The canvas store, built from parts with one job each.

- ``canvas.replica``: each loaded canvas in memory, with its catch-up log;
- ``canvas.committer``: the group committer, which stores every write;
- ``canvas.sequencer``: who assigns the seqs and where the durable seq stands,
  ``LocalSequencer`` (this hub alone) or ``LeasedSequencer`` (hubs sharing
  the canvases through Redis, each canvas held by one of them);
- ``canvas.handoff``: durable patches to the relay, each once and in order;
- ``canvas.takeover``: a canvas of a hub that died holding it.

A patch is applied to the replica, assigned its seq by the sequencer (only if
the replica is current: otherwise it catches up and tries again), queued for
the committer and acked once stored; then the sequencer advances the durable
seq (telling the other hubs, which apply it to their replicas) and the patch
is handed to the relay. The database stays the source of truth: canvases
load from it, and a lost sequencer state is rebuilt from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.committer import OPS, SNAPSHOTS, GroupCommitter, Write, op_row
from canvas.document import Author, CanvasLimits, replay
from canvas.handoff import DurableListener, Handoff
from canvas.peers import Peers
from canvas.replica import Replica
from canvas.replicas import Replicas
from canvas.sequencer import Appended, Sequencer, Unavailable
from canvas.sequencer_local import LocalSequencer
from canvas.store import Accepted, CanvasKey, CatchUp, Patch, StreamPosition
from persistence.batch import BatchWriter
from persistence.models import utcnow
from persistence.repositories import CanvasRepository
from realtime.base.errors import ErrorCode, HubError
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import stop

log = logging.getLogger(__name__)

APPEND_ATTEMPTS = 200
# A snapshot is due after about ``snapshot_every`` patches that hold about as many
# bytes of ops as the document did at the last one: so the snapshots written stay
# within a few times the ops written however large the canvas grows (a snapshot every
# N patches writes the whole, growing document again and again), and a load replays
# at most about a document's worth of ops. "About" is a share in this range, fixed per
# canvas and snapshot, so canvases that started together do not all snapshot in one
# commit (a hundred at once stalled every commit behind them).
SNAPSHOT_SHARE = (0.8, 1.2)
SETTLE_ATTEMPTS = 20
# Waits for another hub's commit grow from the first to the last.
BUSY_POLL_S = (0.002, 0.05)


class _Retry(Exception):
    """The replica was replaced or dropped: take the canvas again."""


@dataclass
class SequencedCanvasStore:
    """``CanvasStore`` (see ``canvas.store`` for the contract and the module docstring)."""

    db: async_sessionmaker[AsyncSession]
    # Each batch is one transaction through the writer (see persistence.batch).
    writer: BatchWriter
    sequencer: Sequencer = field(default_factory=LocalSequencer)
    limits: CanvasLimits = field(default_factory=CanvasLimits)
    retention: int = 1000
    # The catch-up log of each canvas also holds at most this many bytes of ops.
    retention_bytes: int = 256 * 1024
    snapshot_every: int = 200
    snapshot_interval_s: float = 30.0
    commit_linger_s: float = 0.0
    metrics: HubMetrics | None = None
    on_durable: DurableListener | None = None
    # A hub holding undurable patches this long without progress is presumed dead.
    takeover_s: float = 3.0

    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.committer = GroupCommitter(
            self.writer,
            stored=self._stored,
            broken=lambda canvases: self.replicas.broken(canvases),
            linger_s=self.commit_linger_s,
            metrics=self.metrics,
        )
        self.handoff = Handoff(self.on_durable)
        self.replicas = Replicas(
            self.db,
            self.sequencer,
            self.committer,
            self.handoff,
            retention=self.retention,
            retention_bytes=self.retention_bytes,
        )
        self.peers = Peers(
            self.db, self.sequencer, self.replicas, self.handoff, takeover_s=self.takeover_s
        )

    @property
    def node_id(self) -> str:
        return self.sequencer.node_id

    async def start(self) -> None:
        self.committer.start()
        self._tasks = [asyncio.create_task(self._snapshot_loop(), name="canvas-snapshots")]

    async def close(self) -> None:
        """Store what is pending, then stop."""
        for canvas in list(self.replicas.loaded.values()):
            self._snapshot(canvas)
        await self.committer.flush()
        await stop(self._tasks)
        self._tasks = []
        await self.committer.close()
        await self.replicas.close()
        await self.sequencer.close()

    async def flush(self) -> None:
        """Wait until every queued write is committed (or failed)."""
        await self.committer.flush()

    # -- appending ------------------------------------------------------------

    async def append(
        self, key: CanvasKey, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted:
        deadline = time.monotonic() + self._patience()
        pause = BUSY_POLL_S[0]
        for _ in range(APPEND_ATTEMPTS):
            canvas = await self.replicas.get(key)
            # The lock without its context manager: this is the hot path.
            await canvas.lock.acquire()
            try:
                if canvas.stale or self.replicas.loaded.get(key) is not canvas:
                    await self._current(canvas)
                reply = await self._try_append(canvas, author, author_id, ops)
            except _Retry:
                continue
            finally:
                canvas.lock.release()
            if isinstance(reply, Accepted):
                return reply
            if time.monotonic() > deadline:
                break
            if reply.outcome == "BEHIND":
                if reply.seq < canvas.seq:
                    self.replicas.drop(canvas)  # the sequencer is behind this replica: rebuild both
                canvas.stale, canvas.stale_upto = True, reply.seq
            elif reply.outcome == "BUSY":
                if reply.idle_ms >= self.takeover_s * 1000:
                    await self.peers.take_over(key)
                else:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, BUSY_POLL_S[1])
            else:  # NOSTATE or EPOCH: reload, which rebuilds the state if missing
                self.replicas.drop(canvas)
        raise HubError(ErrorCode.INTERNAL, "the canvas is busy on another hub; retry")

    async def _try_append(
        self, canvas: Replica, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted | Appended:
        started = time.perf_counter()
        doc = canvas.doc
        effective = doc.apply(ops, author, self.limits)  # raises, changing nothing
        patch = Patch.of(canvas.seq + 1, canvas.epoch, author, author_id, effective, utcnow())
        canvas.tentative = True
        try:
            reply = await self.sequencer.append(canvas.key, canvas.seq, patch)
        except BaseException:
            doc.revert()
            self.replicas.drop(
                canvas
            )  # the sequencer may have taken the patch: the reload sorts it out
            raise
        finally:
            canvas.tentative = False
        if reply.outcome != "OK":
            doc.revert()
            self.replicas.take(canvas, [])
            return reply
        canvas.seq = patch.seq
        canvas.remember(patch)
        future = self.committer.enqueue(canvas, OPS, op_row(canvas.key, patch, effective), patch)
        if canvas.inbox:
            self.replicas.take(canvas, [])  # what arrived meanwhile
        if self._snapshot_due(canvas):
            self._snapshot(canvas)
        if self.metrics is not None:
            self.metrics.canvas_apply_seconds.observe(time.perf_counter() - started)
        return Accepted(canvas.key, patch, future)

    async def _current(self, canvas: Replica) -> None:
        """Under the replica's lock: raise ``_Retry`` if it was replaced, and catch it up
        from the shared log if it missed patches."""
        if self.replicas.loaded.get(canvas.key) is not canvas:
            raise _Retry
        if canvas.stale:
            await self._catch_up_replica(canvas, None)

    def _patience(self) -> float:
        return 2 * self.takeover_s + 2.0

    # -- reading --------------------------------------------------------------

    async def catch_up(self, key: CanvasKey, since: int | None) -> CatchUp:
        if not self.sequencer.shared:
            return (await self._settled(key)).view(since)
        deadline = time.monotonic() + self._patience()
        pause = BUSY_POLL_S[0]
        while time.monotonic() <= deadline:
            canvas = await self.replicas.get(key)
            try:
                async with canvas.lock:
                    await self._current(canvas)
                    state = await self.sequencer.state(key)
                    if state is not None and not state.current and state.idle_ms == 0:
                        # Another hub holds it: answer from this replica, brought up to
                        # the database. Reload if this hub held it and lost track, or
                        # the canvas started again elsewhere.
                        if (
                            state.holder == self.node_id
                            or state.epoch != canvas.epoch
                            or not await self.peers.caught_up_from_database(canvas)
                        ):
                            self.replicas.drop(canvas)
                            continue
                        return canvas.view(since)
                    if state is None or state.epoch != canvas.epoch or canvas.seq > state.seq:
                        self.replicas.drop(canvas)
                        continue
                    canvas.durable_seq = max(canvas.durable_seq, state.dseq)
                    if canvas.stale or canvas.seq < state.dseq:
                        await self._catch_up_replica(canvas, state.dseq)
                    caught = await self._durable_view(canvas, state.dseq, since)
                    if caught is not None:
                        return caught
            except _Retry:
                continue
            # The replica holds patches that are not durable yet.
            if state.holder == self.node_id and canvas.last_write is not None:
                try:
                    await asyncio.shield(canvas.last_write)
                except HubError:
                    pass  # the canvas reloads from what was stored
            if state.idle_ms >= self.takeover_s * 1000:
                await self.peers.take_over(key)
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, BUSY_POLL_S[1])
        raise HubError(ErrorCode.INTERNAL, "canvas is too busy to settle; retry")

    async def _settled(self, key: CanvasKey) -> Replica:
        """The replica once everything this hub appended to it is durable."""
        for _ in range(SETTLE_ATTEMPTS):
            canvas = await self.replicas.get(key)
            pending = canvas.last_write
            if canvas.durable_seq == canvas.seq or pending is None:
                return canvas
            try:
                await asyncio.shield(pending)
            except HubError:
                continue  # the canvas was reloaded from what was stored
        raise HubError(ErrorCode.INTERNAL, "canvas is too busy to settle; retry")

    async def _durable_view(self, canvas: Replica, dseq: int, since: int | None) -> CatchUp | None:
        """The catch-up at ``dseq``, or None while the replica holds undurable patches."""
        position = StreamPosition(dseq, canvas.epoch)
        # The log holds the last `retention` patches, as in one hub (the shared log is
        # trimmed approximately, so it may hold more; the answer must not depend on it).
        if since is not None and dseq - self.retention <= since <= dseq:
            if since == dseq:
                return CatchUp(position, [], None)
            held = canvas.logged(since, dseq)
            if held is not None:
                return CatchUp(position, held, None)
            try:
                entries = await self.sequencer.entries(canvas.key, since + 1, dseq)
            except Unavailable:
                entries = []
            if len(entries) == dseq - since and entries[0].patch.seq == since + 1:
                return CatchUp(position, [e.patch for e in entries], None)
        if canvas.seq == dseq:
            return CatchUp(position, None, canvas.doc.snapshot())
        return None

    async def _catch_up_replica(self, canvas: Replica, upto: int | None) -> None:
        """Bring the replica up from the shared log; if the log no longer reaches back,
        drop it (it reloads from the database plus the log)."""
        entries = await self.sequencer.entries(canvas.key, canvas.seq + 1, upto)
        reaches = not entries or entries[0].patch.seq == canvas.seq + 1
        if upto is not None and upto > canvas.seq and not entries:
            reaches = False
        if not reaches:
            self.replicas.drop(canvas)
            raise _Retry
        canvas.stale = False
        self.replicas.take(canvas, entries)
        if (
            canvas.stale
            or canvas.seq < canvas.stale_upto
            or self.replicas.loaded.get(canvas.key) is not canvas
        ):
            self.replicas.drop(canvas)
            raise _Retry

    async def read(self, key: CanvasKey, at_seq: int | None = None) -> CatchUp:
        """The document now (``at_seq`` None) or as it was at ``at_seq``.

        A canvas not in memory is read from the database without being kept,
        so reviewing old sessions does not fill the hub's memory.
        """
        if at_seq is None and key in self.replicas.loaded:
            return await self.catch_up(key, None)
        if at_seq is None:
            await self.flush()
        async with self.db() as db:
            stored = await CanvasRepository(db).load(key.session_id, key.student_id, upto=at_seq)
        doc = replay(stored.snapshot_doc, [op.ops for op in stored.ops])
        seq = stored.ops[-1].seq if stored.ops else stored.snapshot_seq
        if at_seq is not None and seq != at_seq:
            raise HubError(
                ErrorCode.NOT_FOUND,
                f"the canvas has no seq {at_seq}; it is at seq {seq}",
                error_code="SEQ_NOT_FOUND",
            )
        return CatchUp(StreamPosition(seq, stored.epoch or ""), None, doc)

    def logged_patches(self) -> int:
        return sum(len(c.log) for c in self.replicas.loaded.values())

    def logged_bytes(self) -> int:
        """Encoded bytes of the patches the catch-up logs in memory hold."""
        return sum(c.log_bytes for c in self.replicas.loaded.values())

    def document_bytes(self) -> int:
        """Encoded bytes of the documents in memory."""
        return sum(c.doc.bytes for c in self.replicas.loaded.values())

    # -- memory and snapshots -------------------------------------------------

    async def compact(self, key: CanvasKey) -> None:
        """Write a snapshot now if there are patches since the last one."""
        canvas = self.replicas.loaded.get(key)
        if canvas is None:
            return
        future = self._snapshot(canvas)
        if future is not None:
            await asyncio.shield(future)

    async def compact_session(self, session_id: str) -> None:
        for key in [k for k in self.replicas.loaded if k.session_id == session_id]:
            await self.compact(key)

    async def forget(self, session_id: str) -> None:
        """Drop a session's canvases from memory (they reload from the database on use),
        once everything queued is stored, so a reload cannot miss a pending write."""
        await self.flush()
        self.replicas.forget(session_id)
        self.handoff.forget(session_id)

    def _snapshot(self, canvas: Replica) -> asyncio.Future[None] | None:
        if canvas.seq <= canvas.snapshot_seq or canvas.broken:
            return None
        if canvas.tentative or canvas.foreign > canvas.durable_seq:
            return None  # not a state to keep: it may be taken back or never stored
        row = {
            "center_id": canvas.key.center_id,
            "session_id": canvas.key.session_id,
            "student_id": canvas.key.student_id,
            "seq": canvas.seq,
            "epoch": canvas.epoch,
            "doc": canvas.doc.snapshot(),
            "created_at": utcnow(),
        }
        canvas.snapshot_seq = canvas.seq
        canvas.since_snapshot_bytes = 0
        canvas.snapshot_bytes = canvas.doc.bytes
        return self.committer.enqueue(canvas, SNAPSHOTS, row)

    def _snapshot_due(self, canvas: Replica) -> bool:
        """See ``SNAPSHOT_SHARE``."""
        patches = canvas.seq - canvas.snapshot_seq
        low, high = SNAPSHOT_SHARE
        if patches < self.snapshot_every * low:
            return False
        mark = f"{canvas.key.session_id}/{canvas.key.student_id}/{canvas.snapshot_seq}"
        share = low + (high - low) * zlib.crc32(mark.encode()) / 2**32
        return (
            patches >= self.snapshot_every * share
            and canvas.since_snapshot_bytes >= canvas.snapshot_bytes * share
        )

    async def _snapshot_loop(self) -> None:
        period = max(0.05, min(self.snapshot_interval_s / 2, 5.0))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for canvas in list(self.replicas.loaded.values()):
                if now - canvas.changed_at >= self.snapshot_interval_s:
                    self._snapshot(canvas)  # quiet for a while (does nothing if taken)

    # -- durable patches ------------------------------------------------------

    async def _stored(self, writes: list[Write]) -> None:
        """The committer stored these writes: advance the durable seqs (which tells the
        other hubs), resolve the writes, and hand the patches on in commit order."""
        by_canvas: dict[Replica, list[Patch]] = {}
        for write in writes:
            if write.patch is not None:
                by_canvas.setdefault(write.canvas, []).append(write.patch)
        if by_canvas:
            try:
                batches = [(c.key, patches) for c, patches in by_canvas.items()]
                passed = await self.sequencer.advance(batches)
                for (canvas, patches), count in zip(by_canvas.items(), passed, strict=True):
                    if count < 0:
                        # The sequencer's state moved on (Redis lost it and a hub rebuilt it
                        # from the database, which holds these patches). They are stored and
                        # acked: tell the others all the same; they drop what they already
                        # have and resync on the epoch.
                        await self.sequencer.publish(canvas.key, patches)
            except Unavailable:
                pass  # stored all the same; another hub takes them over after takeover_s
        durable: list[tuple[Replica, Patch]] = []
        for write in writes:
            if write.patch is not None:
                write.canvas.durable_seq = max(write.canvas.durable_seq, write.patch.seq)
                durable.append((write.canvas, write.patch))
            if not write.future.done():
                write.future.set_result(None)
        self.handoff.hand_on(self.handoff.next_in_order(durable))

    def receive(self, payload: bytes) -> None:
        """Durable patches another hub published (a ``CANVAS`` frame's payload): see
        ``Peers.receive``."""
        self.peers.receive(payload)

    async def resume(self) -> None:
        """This hub's subscription is back after Redis was away: see ``Peers.resume``."""
        await self.peers.resume()
