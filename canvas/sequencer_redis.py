"""The sequencer of hubs that write the same canvases: state and recent log in Redis.

Per canvas, hash-tagged so both keys live in one cluster slot:

- ``<prefix>{<session>:<student>}:m``, a hash: ``seq`` (last assigned),
  ``dseq`` (last durable), ``epoch``, ``pnode`` (the hub holding the
  undurable patches) and ``pat`` (Redis time in ms of that hub's last
  progress: its first undurable patch, or its last advance);
- ``<prefix>{<session>:<student>}:log``, a stream with IDs ``0-<seq>``
  trimmed to about ``retention`` entries: each patch as JSON (``p``,
  ``canvas.wire``) and the hub that wrote it (``n``).

Each operation is one script of ``canvas/lua/`` (one file each, its keys and
arguments at its top), so it is atomic. ``append`` and ``advance`` run on a
pipelined connection of their own (``canvas.pipelined``): the hot path.
``advance`` also publishes the patches it passes on the session's channel
(``realtime.bus``, kind ``CANVAS``), read from the stream in the same script,
so every hub relays them in seq order and each patch goes to Redis once.
Redis lost its state (restart, flush): the store rebuilds it from the
database in a new epoch (``new_epoch``), which tells clients to resync.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import orjson
import redis.asyncio
from redis.exceptions import RedisError

from canvas import wire
from canvas.pipelined import Call, ScriptConnection
from canvas.sequencer import Appended, Entry, SeqState, Unavailable
from canvas.sequencer_local import initial_epoch
from canvas.store import CanvasKey, Patch
from realtime.base.metrics import HubMetrics
from realtime.bus.bus import session_channel
from realtime.bus.bus_redis import as_text

log = logging.getLogger(__name__)


def lua(name: str, *, clock: bool = True) -> str:
    """The script ``canvas/lua/<name>.lua``; ``clock``: after the prelude that sets
    ``now`` (Redis's time, in milliseconds)."""
    folder = files("canvas") / "lua"
    script = (folder / f"{name}.lua").read_text()
    return (folder / "now_ms.lua").read_text() + script if clock else script


APPEND = lua("append")
ADVANCE = lua("advance")
INIT = lua("init")
DROP = lua("drop", clock=False)
STATE = lua("state")


def state_of(reply: Any) -> SeqState | None:
    if reply is None:
        return None
    seq, dseq, epoch, pnode, idle = reply
    return SeqState(int(seq), int(dseq), as_text(epoch), as_text(pnode), int(idle))


def _entries(reply: Any) -> list[Entry]:
    """Stream entries (XRANGE) as patches."""
    return [
        wire.decode(orjson.loads(fields[b"p"]), as_text(fields[b"n"]))
        for _id, fields in reply or []
    ]


class RedisCanvasStates:
    """What both Redis sequencers share: each canvas's state hash (and stream) in
    Redis, set up and dropped by scripts, over a pipelined connection of their own."""

    shared = True

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        node_id: str,
        prefix: str = "hub:cv:",
        metrics: HubMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self._redis = client
        self._prefix = prefix
        self._metrics = metrics
        self._init = client.register_script(INIT)
        self._drop = client.register_script(DROP)
        self._state = client.register_script(STATE)
        self._scripts = ScriptConnection(client)

    def keys(self, key: CanvasKey) -> list[str]:
        tag = f"{self._prefix}{{{key.session_id}:{key.student_id}}}"
        return [f"{tag}:m", f"{tag}:log"]

    def new_epoch(self, key: CanvasKey, stored_epoch: str | None) -> str:
        # Clients may hold positions in the log Redis lost: a new epoch tells them to
        # take the document. With nothing stored there is nothing to take.
        return initial_epoch(key) if stored_epoch is None else secrets.token_hex(8)

    async def init(self, key: CanvasKey, seq: int, epoch: str) -> bool:
        try:
            return bool(await self._init(keys=self.keys(key), args=[seq, epoch]))
        except RedisError as exc:
            raise unavailable("setting a canvas state up", exc) from None

    async def drop(self, key: CanvasKey, epoch: str, below: int) -> bool:
        try:
            return bool(await self._drop(keys=self.keys(key), args=[epoch, below]))
        except RedisError as exc:
            raise unavailable("resetting a canvas state", exc) from None

    async def close(self) -> None:
        await self._scripts.close()


class RedisSequencer(RedisCanvasStates):
    """``Sequencer`` shared by hubs through Redis (see ``canvas.sequencer``)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        node_id: str,
        prefix: str = "hub:cv:",
        retention: int = 1000,
        metrics: HubMetrics | None = None,
    ) -> None:
        super().__init__(client, node_id=node_id, prefix=prefix, metrics=metrics)
        self._retention = retention
        self._append = client.register_script(APPEND)
        self._advance = client.register_script(ADVANCE)

    async def state(self, key: CanvasKey) -> SeqState | None:
        try:
            return state_of(await self._state(keys=self.keys(key)[:1]))
        except RedisError as exc:
            raise unavailable("reading a canvas state", exc) from None

    async def load(self, key: CanvasKey, first: int) -> tuple[SeqState | None, list[Entry]]:
        m, stream = self.keys(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await self._state(keys=[m], client=pipe)
                pipe.xrange(stream, f"0-{first}", "+")
                state_reply, stream_reply = await pipe.execute()
        except RedisError as exc:
            raise unavailable("loading a canvas", exc) from None
        return state_of(state_reply), _entries(stream_reply)

    async def append(self, key: CanvasKey, expected: int, patch: Patch) -> Appended:
        args = [expected, patch.epoch, self.node_id, wire.encode(patch), self._retention]
        try:
            reply = await self._scripts.run(self._append, self.keys(key), args)
        except RedisError as exc:
            raise unavailable("canvas append", exc) from None
        outcome = as_text(reply[0])
        if outcome == "OK":
            return Appended("OK", int(reply[1]))
        if outcome == "BEHIND":
            return Appended("BEHIND", int(reply[1]))
        if outcome == "BUSY":
            return Appended("BUSY", int(reply[1]), int(reply[2]))
        return Appended("NOSTATE" if outcome == "NOSTATE" else "EPOCH")

    async def advance(self, batches: Sequence[tuple[CanvasKey, Sequence[Patch]]]) -> list[int]:
        calls = [self._advance_call(key, patches[-1]) for key, patches in batches]
        try:
            replies = await self._scripts.run_many(calls)
            return [self._published(reply) for reply in replies]
        except RedisError as exc:
            raise unavailable("advancing durable canvas seqs", exc) from None

    def _advance_call(self, key: CanvasKey, last: Patch) -> Call:
        """The call of the script that advances dseq to ``last`` and publishes the
        patches it passes."""
        channel = session_channel(key.center_id, key.session_id)
        head = wire.frame_start(self.node_id, key)
        return self._advance, self.keys(key), [last.epoch, channel, head, wire.FRAME_TAIL, last.seq]

    def _published(self, reply: Any) -> int:
        """The advance script's count of patches published (negative: none, and why)."""
        if isinstance(reply, Exception):
            raise reply
        count, size = (int(n) for n in reply)
        if count > 0 and self._metrics is not None:
            self._metrics.redis_published.labels("canvas").inc()
            self._metrics.redis_published_bytes.labels("canvas").inc(size)
        return count

    async def publish(self, key: CanvasKey, patches: Sequence[Patch]) -> None:
        message = wire.canvas_frame(self.node_id, key, patches)
        try:
            await self._redis.publish(session_channel(key.center_id, key.session_id), message)
        except RedisError as exc:
            raise unavailable("publishing canvas patches", exc) from None
        if self._metrics is not None:
            self._metrics.redis_published.labels("canvas").inc()
            self._metrics.redis_published_bytes.labels("canvas").inc(len(message))

    async def entries(self, key: CanvasKey, first: int, last: int | None) -> list[Entry]:
        end = "+" if last is None else f"0-{last}"
        try:
            return _entries(await self._redis.xrange(self.keys(key)[1], f"0-{first}", end))
        except RedisError as exc:
            raise unavailable("reading a canvas stream", exc) from None

    def forget(self, key: CanvasKey) -> None:
        return None  # the state is shared: other hubs use it


def unavailable(what: str, exc: RedisError) -> Unavailable:
    log.warning("%s failed in Redis: %r", what, exc)
    return Unavailable()
