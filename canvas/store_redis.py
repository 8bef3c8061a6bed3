"""Canvas store for several hubs writing the same canvases: ordered through Redis.

Each hub keeps a replica of the canvases its members use and stores its own
patches through its own group commit, exactly as ``DatabaseCanvasStore``
does; Redis orders the writers of a canvas and carries its recent log. Per
canvas, hash-tagged so both keys live in one cluster slot:

- ``<prefix>{<session>:<student>}:m``, a hash: ``seq`` (last assigned),
  ``dseq`` (last durable), ``epoch``, ``pnode`` (the hub holding the
  undurable patches) and ``pat`` (Redis time in ms of that hub's last
  progress: its first undurable patch, or its last commit);
- ``<prefix>{<session>:<student>}:log``, a stream with IDs ``0-<seq>``
  trimmed to about ``retention`` entries: each patch as JSON (``p``) and the
  hub that wrote it (``n``).

Contract, on top of ``canvas.store``'s:

- ``append`` is one script: it assigns ``seq + 1`` only if the hub's replica
  is at ``seq`` in the current epoch and no *other* hub holds undurable
  patches, so patches become durable in seq order; a hub pipelines its own
  patches like the single-process store. Otherwise the hub catches its
  replica up from the stream (BEHIND), waits (BUSY), or rebuilds the state
  from the database with a new epoch (no state: Redis restarted or was
  flushed), and tries again, a bounded number of times.
- After each commit one script per canvas advances ``dseq`` and publishes
  the newly durable patches on the session's channel (``realtime.bus``,
  kind ``CANVAS``), so every hub relays them in seq order, once each.
  ``receive`` takes those frames from the other hubs.
- A hub that holds undurable patches and makes no progress for ``takeover_s``
  is presumed dead: another hub stores its patches from the stream (rows
  already there are kept), advances ``dseq`` and publishes them.
- The database stays the source of truth: a patch is acked only once its row
  is committed; Redis holds the order and the recent log, both rebuilt from
  the database when lost.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Any

import orjson
import redis.asyncio
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from canvas.document import Author, CanvasLimits
from canvas.pipelined import Call, ScriptConnection
from canvas.store import Accepted, CanvasKey, CatchUp, Patch, StreamPosition
from canvas.store_database import (
    OPS,
    DatabaseCanvasStore,
    _Canvas,
    _Write,
    initial_epoch,
    op_row,
)
from persistence.models import CanvasOp, utcnow
from realtime.base.codec import encoded
from realtime.base.errors import ErrorCode, HubError
from realtime.bus.bus import CANVAS, frame, session_channel
from realtime.bus.bus_redis import as_text

log = logging.getLogger(__name__)

APPEND_ATTEMPTS = 200
LOAD_ATTEMPTS = 5
# Waits for another hub's commit grow from the first to the last.
BUSY_POLL_S = (0.002, 0.05)
# Other hubs' effective ops already passed the limits there.
NO_LIMITS = CanvasLimits(2**62, 2**62, 2**62, 2**62)
NO_BOUND = 2**53

# The canvas scripts, in canvas/lua/ (one file each, its keys and arguments at its top).
OTHER_EPOCH, GAP = -1, -2  # what ADVANCE answers when it publishes nothing


def _lua(name: str, *, clock: bool = True) -> str:
    """The script ``canvas/lua/<name>.lua``; ``clock``: after the prelude that sets
    ``now`` (Redis's time, in milliseconds)."""
    folder = files("canvas") / "lua"
    script = (folder / f"{name}.lua").read_text()
    return (folder / "now_ms.lua").read_text() + script if clock else script


APPEND = _lua("append")
ADVANCE = _lua("advance")
INIT = _lua("init")
DROP = _lua("drop", clock=False)
STATE = _lua("state")


@dataclass(frozen=True, slots=True)
class _State:
    seq: int
    dseq: int
    epoch: str
    pnode: str
    idle_ms: int  # since the holder of undurable patches last made progress


def _state(reply: Any) -> _State | None:
    if reply is None:
        return None
    seq, dseq, epoch, pnode, idle = reply
    return _State(int(seq), int(dseq), as_text(epoch), as_text(pnode), int(idle))


@dataclass(frozen=True, slots=True)
class _Received:
    """A patch from the stream or another hub, with its ops decoded to apply them."""

    patch: Patch
    ops: list[dict[str, Any]]
    node: str = ""


def _encode(patch: Patch) -> bytes:
    return orjson.dumps(
        {
            "seq": patch.seq,
            "epoch": patch.epoch,
            "author": patch.author.value,
            "author_id": patch.author_id,
            "ops": patch.ops,
            "at": patch.at,
        }
    )


def _decode(data: dict[str, Any], node: str = "") -> _Received:
    ops: list[dict[str, Any]] = data["ops"]
    patch = Patch(
        int(data["seq"]),
        str(data["epoch"]),
        Author(data["author"]),
        str(data["author_id"]),
        encoded(ops),
        datetime.fromisoformat(data["at"]),
    )
    return _Received(patch, ops, node)


def _entries(reply: Any) -> list[_Received]:
    """Stream entries (XRANGE) as patches."""
    return [
        _decode(orjson.loads(fields[b"p"]), as_text(fields[b"n"])) for _id, fields in reply or []
    ]


@dataclass(eq=False, slots=True)
class _Replica(_Canvas):
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The document holds a patch Redis has not sequenced yet; received patches wait.
    tentative: bool = False
    inbox: list[_Received] = field(default_factory=list)
    # Patches were missed: catch up from the stream (to at least ``stale_upto``) before use.
    stale: bool = False
    stale_upto: int = 0
    # The last seq handed to on_durable here, and the last applied from another hub.
    relayed: int = 0
    foreign: int = 0


def _replica(canvas: _Canvas) -> _Replica:
    assert isinstance(canvas, _Replica)
    return canvas


class _Retry(Exception):
    """The replica was replaced or dropped: take the canvas again."""


@dataclass
class RedisCanvasStore(DatabaseCanvasStore):
    """``CanvasStore`` shared by hubs through Redis (see the module docstring)."""

    redis: redis.asyncio.Redis = field(kw_only=True)
    # Tells this hub's patches and frames from the others'.
    node_id: str = field(kw_only=True, default_factory=lambda: secrets.token_hex(8))
    prefix: str = field(kw_only=True, default="hub:cv:")
    # A hub holding undurable patches this long without progress is presumed dead.
    takeover_s: float = field(kw_only=True, default=3.0)

    _canvas_type = _Replica
    _resets: dict[CanvasKey, asyncio.Future[None]] = field(default_factory=dict, init=False)
    _handed_while_loading: dict[CanvasKey, int] = field(default_factory=dict, init=False)
    # The last (epoch, seq) handed to on_durable per canvas.
    _handed: dict[CanvasKey, tuple[str, int]] = field(default_factory=dict, init=False)
    _committing: asyncio.Future[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._append = self.redis.register_script(APPEND)
        self._advance = self.redis.register_script(ADVANCE)
        self._init = self.redis.register_script(INIT)
        self._drop_script = self.redis.register_script(DROP)
        self._state_script = self.redis.register_script(STATE)
        self._scripts = ScriptConnection(self.redis)

    # -- public ---------------------------------------------------------------

    async def close(self) -> None:
        await super().close()
        await asyncio.gather(*self._resets.values(), return_exceptions=True)
        await self._scripts.close()

    async def append(
        self, key: CanvasKey, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted:
        deadline = time.monotonic() + self._patience()
        pause = BUSY_POLL_S[0]
        for _ in range(APPEND_ATTEMPTS):
            canvas = _replica(await self._canvas(key))
            try:
                async with self._using(canvas):
                    reply = await self._try_append(canvas, author, author_id, ops)
            except _Retry:
                continue
            if isinstance(reply, Accepted):
                return reply
            if time.monotonic() > deadline:
                break
            outcome = as_text(reply[0])
            if outcome == "BEHIND":
                if int(reply[1]) < canvas.seq:
                    self._drop(canvas)  # Redis is behind this replica: rebuild both
                canvas.stale, canvas.stale_upto = True, int(reply[1])
            elif outcome == "BUSY":
                if int(reply[2]) >= self.takeover_s * 1000:
                    await self._repair(key)
                else:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, BUSY_POLL_S[1])
            else:  # NOSTATE or EPOCH: reload, which rebuilds the state if missing
                self._drop(canvas)
        raise HubError(ErrorCode.INTERNAL, "the canvas is busy on another hub; retry")

    async def catch_up(self, key: CanvasKey, since: int | None) -> CatchUp:
        deadline = time.monotonic() + self._patience()
        pause = BUSY_POLL_S[0]
        while time.monotonic() <= deadline:
            canvas = _replica(await self._canvas(key))
            try:
                async with self._using(canvas):
                    state = await self._read_state(key)
                    if state is None or state.epoch != canvas.epoch or canvas.seq > state.seq:
                        self._drop(canvas)
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
            if state.pnode == self.node_id and canvas.last_write is not None:
                try:
                    await asyncio.shield(canvas.last_write)
                except HubError:
                    pass  # the canvas reloads from what was stored
            if state.idle_ms >= self.takeover_s * 1000:
                await self._repair(key)
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, BUSY_POLL_S[1])
        raise HubError(ErrorCode.INTERNAL, "canvas is too busy to settle; retry")

    async def forget(self, session_id: str) -> None:
        await self.flush()
        for key, canvas in list(self._canvases.items()):
            if key.session_id == session_id and not _replica(canvas).lock.locked():
                del self._canvases[key]
        for key in [key for key in self._handed if key.session_id == session_id]:
            del self._handed[key]

    def receive(self, payload: bytes) -> None:
        """Durable patches another hub published (a ``CANVAS`` frame's payload).

        Brings the replica along (or marks it to catch up from the stream) and
        hands the patches to ``on_durable`` for this hub's rooms, in seq order,
        skipping those already handed on.
        """
        message = orjson.loads(payload)
        self._received(CanvasKey(*message["key"]), [_decode(p) for p in message["patches"]])

    async def resume(self) -> None:
        """This hub's subscription is back after Redis was away: hand on, from the
        streams, the durable patches it missed of every canvas it relays.

        In the same epoch that is what follows the last seq handed on; in a new
        epoch (Redis lost its state), every durable patch of the new stream, whose
        epoch tells the clients to resync. Without this the tail of what was
        published meanwhile would never reach the clients: no later patch would
        show them the gap.
        """
        for key, (epoch, seq) in list(self._handed.items()):
            try:
                state = await self._read_state(key)
                if state is None or (state.epoch == epoch and state.dseq <= seq):
                    continue
                first = seq + 1 if state.epoch == epoch else 0
                entries = await self._stream(key, first, state.dseq)
            except (HubError, RedisError) as exc:
                log.warning("canvas %s: catching up after a Redis outage failed: %r", key, exc)
                continue
            self._received(key, [e for e in entries if e.patch.epoch == state.epoch])

    def _received(self, key: CanvasKey, received: list[_Received]) -> None:
        if not received:
            return
        canvas = self._canvases.get(key)
        if canvas is None:
            if key in self._loading:  # the load reads them: don't hand them on again
                handed = self._handed_while_loading.get(key, 0)
                self._handed_while_loading[key] = max(handed, received[-1].patch.seq)
            self._hand_on([(key, r.patch) for r in received])
            return
        replica = _replica(canvas)
        if received[0].patch.epoch != replica.epoch:
            self._drop(replica)
            self._hand_on([(key, r.patch) for r in received])
            return
        replica.durable_seq = max(replica.durable_seq, received[-1].patch.seq)
        if replica.tentative:
            replica.inbox += received
        else:
            self._take(replica, received)
        self._relay(replica, [r.patch for r in received])

    # -- keys -----------------------------------------------------------------

    def _keys(self, key: CanvasKey) -> list[str]:
        tag = f"{self.prefix}{{{key.session_id}:{key.student_id}}}"
        return [f"{tag}:m", f"{tag}:log"]

    def _patience(self) -> float:
        return 2 * self.takeover_s + 2.0

    # -- appending ------------------------------------------------------------

    @asynccontextmanager
    async def _using(self, canvas: _Replica) -> AsyncIterator[None]:
        """The replica, alone: no other append or catch-up of this hub runs on it."""
        async with canvas.lock:
            if self._canvases.get(canvas.key) is not canvas:
                raise _Retry
            if canvas.stale:
                await self._catch_up_replica(canvas, None)
            yield

    async def _try_append(
        self, canvas: _Replica, author: Author, author_id: str, ops: list[dict[str, Any]]
    ) -> Accepted | list[Any]:
        started = time.perf_counter()
        doc = canvas.doc
        effective = doc.apply(ops, author, self.limits)  # raises, changing nothing
        patch = Patch(canvas.seq + 1, canvas.epoch, author, author_id, encoded(effective), utcnow())
        canvas.tentative = True
        try:
            reply = await self._scripts.run(
                self._append,
                self._keys(canvas.key),
                [canvas.seq, canvas.epoch, self.node_id, _encode(patch), self.retention],
            )
        except BaseException as exc:
            doc.revert()
            # Redis may have taken the patch: the reload sorts that out.
            self._drop(canvas)
            if isinstance(exc, RedisError):
                log.warning("canvas append failed in Redis: %r", exc)
                raise HubError(
                    ErrorCode.INTERNAL, "the canvas store is unavailable; retry"
                ) from None
            raise
        finally:
            canvas.tentative = False
        if as_text(reply[0]) != "OK":
            doc.revert()
            self._take(canvas, [])
            return list(reply)
        canvas.seq = patch.seq
        canvas.log.append(patch)
        future = self._enqueue(canvas, OPS, op_row(canvas.key, patch, effective), patch)
        self._take(canvas, [])  # what arrived meanwhile
        if canvas.seq - canvas.snapshot_seq >= self.snapshot_every:
            self._snapshot(canvas)
        if self.metrics is not None:
            self.metrics.canvas_apply_seconds.observe(time.perf_counter() - started)
        return Accepted(canvas.key, patch, future)

    def _take(self, canvas: _Replica, received: Sequence[_Received]) -> None:
        """Apply patches of the shared log to the replica: duplicates are skipped, a
        gap marks it stale (it catches up from the stream on next use)."""
        pending, canvas.inbox = [*canvas.inbox, *received], []
        for item in sorted(pending, key=lambda r: r.patch.seq):
            patch = item.patch
            if patch.seq <= canvas.seq:
                continue
            if patch.seq > canvas.seq + 1 or patch.epoch != canvas.epoch:
                canvas.stale = True
                canvas.stale_upto = max(canvas.stale_upto, patch.seq)
                return
            try:
                canvas.doc.apply(item.ops, patch.author, NO_LIMITS)
            except HubError:
                log.exception("a shared canvas patch did not apply here; reloading")
                self._drop(canvas)
                return
            canvas.seq = patch.seq
            canvas.log.append(patch)
            if item.node != self.node_id:
                canvas.foreign = patch.seq

    def _drop(self, canvas: _Canvas) -> None:
        """Forget this replica; the canvas reloads on next use."""
        if self._canvases.get(canvas.key) is canvas:
            del self._canvases[canvas.key]

    # -- the shared state -----------------------------------------------------

    async def _read_state(self, key: CanvasKey) -> _State | None:
        try:
            return _state(await self._state_script(keys=self._keys(key)[:1]))
        except RedisError as exc:
            log.warning("reading a canvas state from Redis failed: %r", exc)
            raise HubError(ErrorCode.INTERNAL, "the canvas store is unavailable; retry") from None

    async def _stream(self, key: CanvasKey, first: int, last: int | None) -> list[_Received]:
        reply = await self.redis.xrange(
            self._keys(key)[1], f"0-{first}", "+" if last is None else f"0-{last}"
        )
        return _entries(reply)

    async def _catch_up_replica(self, canvas: _Replica, upto: int | None) -> None:
        """Bring the replica up from the stream; if the stream no longer reaches back,
        drop it (it reloads from the database plus the stream)."""
        try:
            entries = await self._stream(canvas.key, canvas.seq + 1, upto)
        except RedisError as exc:
            log.warning("reading a canvas stream from Redis failed: %r", exc)
            raise HubError(ErrorCode.INTERNAL, "the canvas store is unavailable; retry") from None
        reaches = not entries or entries[0].patch.seq == canvas.seq + 1
        if upto is not None and upto > canvas.seq and not entries:
            reaches = False
        if not reaches:
            self._drop(canvas)
            raise _Retry
        canvas.stale = False
        self._take(canvas, entries)
        if (
            canvas.stale
            or canvas.seq < canvas.stale_upto
            or self._canvases.get(canvas.key) is not canvas
        ):
            self._drop(canvas)
            raise _Retry

    async def _durable_view(self, canvas: _Replica, dseq: int, since: int | None) -> CatchUp | None:
        """The catch-up at ``dseq``, or None while the replica holds undurable patches."""
        position = StreamPosition(dseq, canvas.epoch)
        # The log holds the last `retention` patches, as in one hub (the stream is
        # trimmed approximately, so it may hold more; the answer must not depend on it).
        if since is not None and dseq - self.retention <= since <= dseq:
            if since == dseq:
                return CatchUp(position, [], None)
            if canvas.log and canvas.log[0].seq <= since + 1 and canvas.seq >= dseq:
                held = [p for p in canvas.log if since < p.seq <= dseq]
                # Only a gap-free run: a replica that missed frames may hold holes.
                if len(held) == dseq - since and held[0].seq == since + 1:
                    return CatchUp(position, held, None)
            try:
                entries = await self._stream(canvas.key, since + 1, dseq)
            except RedisError:
                entries = []
            if len(entries) == dseq - since and entries[0].patch.seq == since + 1:
                return CatchUp(position, [e.patch for e in entries], None)
        if canvas.seq == dseq:
            return CatchUp(position, None, canvas.doc.snapshot())
        return None

    # -- loading --------------------------------------------------------------

    async def _written(self) -> None:
        """Wait until what was queued so far is committed (or failed); unlike ``flush``,
        not for what is queued meanwhile, so a busy hub still loads canvases."""
        last = self._queue[-1].future if self._queue else self._committing
        if last is not None and not last.done():
            await asyncio.wait([last])  # batches commit in order

    async def _commit(self, batch: list[_Write]) -> None:
        self._committing = batch[-1].future
        await super()._commit(batch)

    async def _load(self, key: CanvasKey) -> _Canvas:
        """The database's canvas plus the stream beyond it, so the replica is the shared
        state; sets the shared state up (new epoch) if Redis has none."""
        self._handed_while_loading.pop(key, None)
        await self._written()  # what this hub wrote is in the database
        resetting = self._resets.get(key)
        if resetting is not None:
            await asyncio.shield(resetting)
        try:
            for _ in range(LOAD_ATTEMPTS):
                canvas = _replica(await self._read_stored(key))
                m, stream = self._keys(key)
                async with self.redis.pipeline(transaction=True) as pipe:
                    await self._state_script(keys=[m], client=pipe)
                    pipe.xrange(stream, f"0-{canvas.seq + 1}", "+")
                    state_reply, stream_reply = await pipe.execute()
                state, entries = _state(state_reply), _entries(stream_reply)
                if state is None:
                    nothing_stored = canvas.seq == 0 and canvas.snapshot_seq == 0
                    epoch = initial_epoch(key) if nothing_stored else secrets.token_hex(8)
                    await self._init(keys=[m, stream], args=[canvas.seq, epoch])
                    continue
                if state.seq < canvas.seq or (
                    state.pnode == self.node_id and state.dseq < state.seq
                ):
                    # The database went past Redis, or Redis holds patches this hub
                    # assigned but no longer has in hand (their commit failed, or
                    # their append's outcome was lost): start again from the database.
                    log.warning("canvas %s: Redis disagrees with the database; resetting", key)
                    await self._drop_script(keys=[m, stream], args=[state.epoch, NO_BOUND])
                    continue
                if state.seq > canvas.seq and (
                    len(entries) != state.seq - canvas.seq or entries[0].patch.seq != canvas.seq + 1
                ):
                    continue  # the stream moved past the database read: read again
                canvas.epoch = state.epoch
                canvas.durable_seq = canvas.relayed = min(state.dseq, canvas.seq)
                self._take(canvas, entries)
                canvas.durable_seq = state.dseq
                canvas.relayed = max(canvas.relayed, self._handed_while_loading.pop(key, 0))
                self._canvases[key] = canvas
                return canvas
        except RedisError as exc:
            log.warning("loading a canvas from Redis failed: %r", exc)
            raise HubError(ErrorCode.INTERNAL, "the canvas store is unavailable; retry") from None
        raise HubError(ErrorCode.INTERNAL, "the canvas could not be loaded; retry")

    # -- after a commit -------------------------------------------------------

    async def _stored(self, writes: list[_Write]) -> None:
        by_canvas: dict[_Replica, list[Patch]] = {}
        for write in writes:
            if write.patch is not None:
                by_canvas.setdefault(_replica(write.canvas), []).append(write.patch)
        if by_canvas:
            try:
                calls = [self._advance_to(c.key, patches[-1]) for c, patches in by_canvas.items()]
                replies = await self._scripts.run_many(calls)
                for (canvas, patches), reply in zip(by_canvas.items(), replies, strict=True):
                    if self._published(reply) < 0:
                        # Redis's state moved on (Redis lost it and a hub rebuilt it from
                        # the database, which holds these patches). They are stored and
                        # acked: relay them all the same; other hubs drop what they already
                        # have and resync on the epoch.
                        await self._publish_directly(canvas.key, patches)
            except RedisError as exc:
                # Stored all the same; another hub takes them over after takeover_s.
                log.warning("advancing durable canvas seqs in Redis failed: %r", exc)
        for write in writes:
            if write.patch is not None:
                write.canvas.durable_seq = max(write.canvas.durable_seq, write.patch.seq)
            if not write.future.done():
                write.future.set_result(None)
        for canvas, patches in by_canvas.items():
            self._relay(canvas, patches)

    def _advance_to(self, key: CanvasKey, last: Patch) -> Call:
        """The call of the script that advances dseq to ``last`` and publishes the
        patches it passes."""
        channel = session_channel(key.center_id, key.session_id)
        args = [last.epoch, channel, self._frame_start(key), b"]}", last.seq]
        return self._advance, self._keys(key), args

    def _published(self, reply: Any) -> int:
        """The advance script's count of patches published (negative: none, and why)."""
        if isinstance(reply, Exception):
            raise reply
        count, size = (int(n) for n in reply)
        if count > 0 and self.metrics is not None:
            self.metrics.redis_published.labels("canvas").inc()
            self.metrics.redis_published_bytes.labels("canvas").inc(size)
        return count

    async def _publish_directly(self, key: CanvasKey, patches: Sequence[Patch]) -> None:
        message = self._frame(key, patches)
        await self.redis.publish(session_channel(key.center_id, key.session_id), message)
        if self.metrics is not None:
            self.metrics.redis_published.labels("canvas").inc()
            self.metrics.redis_published_bytes.labels("canvas").inc(len(message))

    def _frame_start(self, key: CanvasKey) -> bytes:
        head = b'{"key":' + orjson.dumps([key.center_id, key.session_id, key.student_id])
        return frame(self.node_id, CANVAS, head + b',"patches":[')

    def _frame(self, key: CanvasKey, patches: Sequence[Patch]) -> bytes:
        """The CANVAS frame of ``patches``, as the advance script publishes it."""
        return self._frame_start(key) + b",".join(_encode(p) for p in patches) + b"]}"

    def _relay(self, canvas: _Replica, patches: Sequence[Patch]) -> None:
        """Hand durable patches on in seq order, once each; a gap before them is filled
        from the log (everything before a durable patch is durable)."""
        fresh = [p for p in patches if p.seq > canvas.relayed]
        if not fresh:
            return
        gap = []
        if fresh[0].seq > canvas.relayed + 1:
            gap = [p for p in canvas.log if canvas.relayed < p.seq < fresh[0].seq]
        canvas.relayed = fresh[-1].seq
        self._hand_on([(canvas.key, p) for p in (*gap, *fresh)])

    def _hand_on(self, patches: list[tuple[CanvasKey, Patch]]) -> None:
        """To ``on_durable``, each (epoch, seq) of a canvas once and in order: a patch at
        or below the last one handed on in its epoch was handed on already."""
        fresh = []
        for key, patch in patches:
            epoch, seq = self._handed.get(key, ("", 0))
            if patch.epoch != epoch or patch.seq > seq:
                self._handed[key] = (patch.epoch, patch.seq)
                fresh.append((key, patch))
        if fresh and self.on_durable is not None:
            self.on_durable(fresh)

    def _broken(self, writes: list[_Write]) -> None:
        super()._broken(writes)
        # Redis still holds the patches that failed: drop its state before the reload.
        for canvas in {w.canvas for w in writes}:
            if canvas.key not in self._resets:
                self._resets[canvas.key] = asyncio.ensure_future(self._reset(canvas))

    async def _reset(self, canvas: _Canvas) -> None:
        try:
            await self._drop_script(keys=self._keys(canvas.key), args=[canvas.epoch, canvas.seq])
        except RedisError as exc:  # the load finds the state inconsistent and resets it
            log.warning("resetting a canvas state in Redis failed: %r", exc)
        finally:
            self._resets.pop(canvas.key, None)

    def _snapshot(self, canvas: _Canvas) -> asyncio.Future[None] | None:
        replica = _replica(canvas)
        if replica.tentative or replica.foreign > replica.durable_seq:
            return None  # not a state to keep: it may be taken back or never stored
        return super()._snapshot(canvas)

    # -- taking over a dead hub's patches -------------------------------------

    async def _repair(self, key: CanvasKey) -> None:
        """Store the undurable patches of a hub that stopped making progress."""
        m, stream = self._keys(key)
        try:
            state = await self._read_state(key)
            if state is None or state.dseq >= state.seq:
                return
            if state.idle_ms < self.takeover_s * 1000:
                return
            entries = await self._stream(key, state.dseq + 1, state.seq)
            if len(entries) != state.seq - state.dseq or entries[0].patch.seq != state.dseq + 1:
                await self._drop_script(keys=[m, stream], args=[state.epoch, NO_BOUND])
                return
            log.warning(
                "canvas %s: storing seqs %d..%d of hub %s, silent for %d ms",
                key,
                state.dseq + 1,
                state.seq,
                state.pnode,
                state.idle_ms,
            )
            if not await self._store_taken_over(key, entries):
                # The database holds other patches at those seqs: Redis is wrong.
                await self._drop_script(keys=[m, stream], args=[state.epoch, NO_BOUND])
                return
            [reply] = await self._scripts.run_many([self._advance_to(key, entries[-1].patch)])
            published = self._published(reply) > 0
        except RedisError as exc:
            log.warning("taking over canvas patches failed in Redis: %r", exc)
            return
        canvas = self._canvases.get(key)
        if canvas is not None and published:
            replica = _replica(canvas)
            replica.durable_seq = max(replica.durable_seq, state.seq)
            if not replica.tentative:
                self._take(replica, entries)
            self._relay(replica, [e.patch for e in entries])

    async def _store_taken_over(self, key: CanvasKey, entries: list[_Received]) -> bool:
        """Insert the rows, keeping any already there; True if the stored rows are these."""
        rows = [op_row(key, e.patch, e.ops) for e in entries]
        async with self.db.begin() as db:
            dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
            insert = dialect.insert(CanvasOp).on_conflict_do_nothing(
                index_elements=["session_id", "student_id", "seq"]
            )
            await db.execute(insert, rows)
        async with self.db() as db:
            stored = (
                await db.scalars(
                    select(CanvasOp)
                    .where(
                        CanvasOp.session_id == key.session_id,
                        CanvasOp.student_id == key.student_id,
                        CanvasOp.seq.between(entries[0].patch.seq, entries[-1].patch.seq),
                    )
                    .order_by(CanvasOp.seq)
                )
            ).all()
        return [(s.seq, s.epoch, s.author_id, s.ops) for s in stored] == [
            (e.patch.seq, e.patch.epoch, e.patch.author_id, e.ops) for e in entries
        ]
