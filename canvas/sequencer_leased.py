"""The sequencer of hubs that share canvases through Redis, each canvas held by one hub.

A hub *holds* a canvas from its first append there until it lets it go. While
it holds it, it alone assigns the canvas's seqs, in memory; Redis sees nothing
per patch but the durable patches, which the hub publishes on the session's
channel, one ``PUBLISH`` per canvas per commit. The state in Redis, a hash per
canvas (``<prefix>{<session>:<student>}:m``: ``seq``, ``dseq``, ``epoch``,
``pnode`` the holder, ``pat`` Redis's time in ms of its last change), is exact
only while no hub holds the canvas: the holder writes it back when it lets the
canvas go. Each change of it is one script of ``canvas/lua/`` (one file each,
its keys and arguments at its top), so it is atomic; the hot ones (``take``,
``let_go``) go over a pipelined connection of their own (``canvas.pipelined``).
Redis lost the state (restart, flush): the store sets it up again from the
database in a new epoch (``new_epoch``), which tells clients to resync.

- Another hub that appends finds the canvas held (``BUSY``) and asks the holder,
  on the holder's own channel (``<prefix>node:<node>``), to let it go; the
  holder stops assigning, and lets go once its patches are durable. A hub also
  lets a canvas go when it forgets it (its last client in the session left) and
  when it stops.
- A hub holds canvases only while it lives: its key ``<prefix>node:<node>``
  lasts ``lease_s`` and is renewed every third of that. A canvas whose holder's
  key is gone is taken over: its state is dropped, and the next hub sets it up
  again from the database in a new epoch (clients resync). What the dead hub
  stored and acked is there; what it had not acked may be lost, as the protocol
  allows.
- A hub that could not renew its key for ``lease_s`` less ``MARGIN_S`` stops
  assigning seqs of the canvases it held. Should one of its commits still land
  after another hub took a canvas over, the database's unique seq per canvas
  refuses one of the two, which is then not acked.
- Nothing of the log lives in Redis: ``entries`` holds none; a hub that missed
  patches reads them from the database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.exceptions import RedisError

from canvas import wire
from canvas.pipelined import ScriptConnection
from canvas.sequencer import GAP, OTHER_EPOCH, Appended, Entry, SeqState, Unavailable
from canvas.sequencer_local import initial_epoch
from canvas.store import CanvasKey, Patch
from realtime.base import logs
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import stop
from realtime.bus.bus import session_channel
from realtime.bus.bus_redis import as_text
from realtime.bus.subscription_redis import AnyRedis

log = logging.getLogger(__name__)


def lua(name: str, *, clock: bool = True) -> str:
    """The script ``canvas/lua/<name>.lua``; ``clock``: after the prelude that sets
    ``now`` (Redis's time, in milliseconds)."""
    folder = files("canvas") / "lua"
    script = (folder / f"{name}.lua").read_text()
    return (folder / "now_ms.lua").read_text() + script if clock else script


INIT = lua("init")
DROP = lua("drop", clock=False)
STATE = lua("state")
TAKE = lua("take")
LET_GO = lua("let_go")
# A hub stops assigning seqs this long before its key may have expired in Redis (at
# most a quarter of the lease: it renews the key every third).
MARGIN_S = 0.5
# The idle time a state reports when its holder is gone: past any takeover delay.
GONE_MS = 2**31
LISTEN_RETRY_S = (0.05, 2.0)
# Frames of durable patches kept to publish again after Redis was away; beyond it the
# oldest go (those hubs' clients resync at the gap).
MAX_UNPUBLISHED = 10_000


@dataclass(slots=True)
class _Held:
    """A canvas this hub holds: the seqs it assigned and made durable."""

    seq: int
    dseq: int
    epoch: str
    # Another hub asked for it: no more seqs here; let go once durable.
    releasing: bool = False


class LeasedSequencer:
    """``Sequencer`` of hubs that each hold the canvases they write (module docstring)."""

    shared = True

    def __init__(
        self,
        client: AnyRedis,
        *,
        node_id: str,
        prefix: str = "hub:cv:",
        lease_s: float = 3.0,
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
        # On Redis Cluster, a session's frames go to its channel's shard only.
        self._publish_command = "SPUBLISH" if isinstance(client, RedisClusterClient) else "PUBLISH"
        self._lease_s = lease_s
        self._take = client.register_script(TAKE)
        self._let_go = client.register_script(LET_GO)
        self._held: dict[CanvasKey, _Held] = {}
        # time.monotonic() until which this hub's key certainly lives in Redis.
        self._alive_until = 0.0
        self._starting: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._letting_go: set[asyncio.Task[None]] = set()
        # Take scripts in flight, each done when its answer is in: another append of the
        # canvas through this hub waits for it, then finds the canvas held (or not).
        self._taking: dict[CanvasKey, asyncio.Future[None]] = {}
        self._unpublished: list[tuple[str, bytes]] = []

    def _key(self, key: CanvasKey) -> str:
        """The canvas's state hash (named as when a stream, hash-tagged to the same
        cluster slot, came with it: states in Redis before the upgrade still count)."""
        return f"{self._prefix}{{{key.session_id}:{key.student_id}}}:m"

    def _node(self, node: str) -> str:
        """The key that says a node lives, and the channel it listens on."""
        return f"{self._prefix}node:{node}"

    # -- the contract -----------------------------------------------------------

    async def state(self, key: CanvasKey) -> SeqState | None:
        held = self._holding(key)
        if held is not None:
            return SeqState(held.seq, held.dseq, held.epoch, self.node_id, 0)
        try:
            state = state_of(await self._state(keys=[self._key(key)]))
            if state is None or not state.holder:
                return state
            gone = state.holder != self.node_id and not await self._redis.exists(
                self._node(state.holder)
            )
        except RedisError as exc:
            raise unavailable("reading a canvas state", exc) from None
        # Held elsewhere (or by this hub, which lost track of it): seq and dseq are as
        # they were when it was taken.
        idle_ms = GONE_MS if gone else 0
        return SeqState(state.seq, state.dseq, state.epoch, state.holder, idle_ms, current=False)

    async def load(self, key: CanvasKey, first: int) -> tuple[SeqState | None, list[Entry]]:
        return await self.state(key), []

    def new_epoch(self, key: CanvasKey, stored_epoch: str | None) -> str:
        # Clients may hold positions Redis lost: a new epoch tells them to take the
        # document. With nothing stored there is nothing to take.
        return initial_epoch(key) if stored_epoch is None else secrets.token_hex(8)

    async def init(self, key: CanvasKey, seq: int, epoch: str) -> bool:
        try:
            return bool(await self._init(keys=[self._key(key)], args=[seq, epoch]))
        except RedisError as exc:
            raise unavailable("setting a canvas state up", exc) from None

    async def append(self, key: CanvasKey, expected: int, patch: Patch) -> Appended:
        while (taking := self._taking.get(key)) is not None:
            await asyncio.shield(taking)
        held = self._holding(key)
        if held is not None:
            if held.epoch != patch.epoch:
                return Appended("EPOCH")
            if held.releasing:
                return Appended("BUSY", held.seq, 0)
            if held.seq != expected:
                return Appended("BEHIND", held.seq)
            held.seq += 1
            return Appended("OK", held.seq)
        self._taking[key] = asyncio.get_running_loop().create_future()
        try:
            await self._started()
            reply = await self._scripts.run(
                self._take, [self._key(key)], [expected, patch.epoch, self.node_id]
            )
            outcome = as_text(reply[0])
            if outcome == "OK":
                seq = int(reply[1])
                self._held[key] = _Held(seq, int(reply[2]), patch.epoch)
                self._count("taken")
                return Appended("OK", seq)
            if outcome == "BUSY":
                holder = as_text(reply[2])
                if not await self._redis.exists(self._node(holder)):
                    self._count("holder_gone")
                    return Appended("BUSY", int(reply[1]), GONE_MS)
                await self._redis.publish(self._node(holder), _key_bytes(key))
                self._count("busy")
                return Appended("BUSY", int(reply[1]), 0)
        except RedisError as exc:
            raise unavailable("taking a canvas", exc) from None
        finally:
            self._taking.pop(key).set_result(None)
        if outcome == "BEHIND":
            return Appended("BEHIND", int(reply[1]))
        return Appended("NOSTATE" if outcome == "NOSTATE" else "EPOCH")

    async def advance(self, batches: Sequence[tuple[CanvasKey, Sequence[Patch]]]) -> list[int]:
        passed: list[int] = []
        frames: list[tuple[str, bytes]] = []
        for key, patches in batches:
            held = self._held.get(key)  # held or lost meanwhile: these are stored
            last = patches[-1]
            if held is None or held.epoch != last.epoch:
                passed.append(OTHER_EPOCH)
                continue
            if last.seq > held.seq:
                passed.append(GAP)
                continue
            fresh = [p for p in patches if p.seq > held.dseq]
            if fresh:
                held.dseq = fresh[-1].seq
                channel = session_channel(key.center_id, key.session_id)
                frames.append((channel, wire.canvas_frame(self.node_id, key, fresh)))
            passed.append(len(fresh))
            if held.releasing and held.dseq == held.seq:
                self._let_go_later(key)
        if frames:
            await self._publish(frames)
        return passed

    async def publish(self, key: CanvasKey, patches: Sequence[Patch]) -> None:
        channel = session_channel(key.center_id, key.session_id)
        await self._publish([(channel, wire.canvas_frame(self.node_id, key, patches))])

    async def drop(self, key: CanvasKey, epoch: str, below: int) -> bool:
        held = self._held.get(key)
        if held is not None and held.epoch == epoch:
            if held.dseq >= below:
                return False  # its dseq is the one here: Redis's is as when taken
            del self._held[key]
        try:
            return bool(await self._drop(keys=[self._key(key)], args=[epoch, below]))
        except RedisError as exc:
            raise unavailable("resetting a canvas state", exc) from None

    async def entries(self, key: CanvasKey, first: int, last: int | None) -> list[Entry]:
        return []  # the log is the database's

    def forget(self, key: CanvasKey) -> None:
        held = self._held.get(key)
        if held is not None:
            held.releasing = True
            if held.dseq == held.seq:
                self._let_go_later(key)

    async def close(self) -> None:
        for key in list(self._held):
            self.forget(key)
        if self._letting_go:
            await asyncio.wait(self._letting_go, timeout=2.0)
        await stop(self._tasks)
        self._tasks = []
        if self._starting is not None and self._starting.done():
            try:
                await self._redis.delete(self._node(self.node_id))
            except RedisError as exc:
                log.warning("removing the key of hub %s failed: %r", self.node_id, exc)
        await self._scripts.close()

    # -- holding ------------------------------------------------------------------

    def _count(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.canvas_handovers.labels(event).inc()
            self._metrics.canvas_holds.set(len(self._held))

    def holds(self, key: CanvasKey) -> tuple[int, int] | None:
        """(seq, dseq) of the canvas if this hub holds it."""
        held = self._holding(key)
        return None if held is None else (held.seq, held.dseq)

    def _holding(self, key: CanvasKey) -> _Held | None:
        """The canvas if this hub holds it and its key certainly lives."""
        if not self._held:
            return None
        if time.monotonic() >= self._alive_until:
            log.warning(
                "hub %s could not renew its key in Redis: letting %d canvases go",
                self.node_id,
                len(self._held),
            )
            self._held.clear()
            self._count("lapsed")
            return None
        return self._held.get(key)

    def _let_go_later(self, key: CanvasKey) -> None:
        task = asyncio.create_task(self._let_go_now(key), context=logs.fresh_context())
        self._letting_go.add(task)
        task.add_done_callback(self._letting_go.discard)

    async def _let_go_now(self, key: CanvasKey) -> None:
        held = self._held.get(key)
        if held is None or held.dseq != held.seq:
            return
        del self._held[key]
        self._count("let_go")
        try:
            await self._scripts.run(
                self._let_go, [self._key(key)], [self.node_id, held.epoch, held.seq]
            )
        except RedisError as exc:
            log.warning("letting canvas %s go failed: %r", key, exc)
            self._held.setdefault(key, held)  # asked again, it tries again

    async def _asked(self, data: bytes) -> None:
        """Another hub wants a canvas: let it go once durable, or, when this hub no
        longer holds it, drop the state that says it does."""
        try:
            center, session, student = orjson.loads(data)
            key = CanvasKey(str(center), str(session), str(student))
        except (ValueError, TypeError):
            # Only hubs publish here; whatever else arrives must not stop the listener.
            log.warning("hub %s: ignoring an unreadable canvas request %r", self.node_id, data[:80])
            return
        held = self._held.get(key)
        self._count("asked")
        if held is not None:
            held.releasing = True
            if held.dseq == held.seq:
                await self._let_go_now(key)
            return
        if key in self._taking:
            return  # its answer decides; the asking hub asks again
        try:
            await self._scripts.run(self._let_go, [self._key(key)], [self.node_id, "", -1])
        except RedisError as exc:
            log.warning("dropping the state of canvas %s failed: %r", key, exc)

    # -- this hub's key and channel -------------------------------------------------

    async def _started(self) -> None:
        if self._starting is None:
            # Started by the first append, inside a socket event or a REST request; the
            # lease tasks it starts live as long as the hub, and log as the hub.
            self._starting = asyncio.create_task(self._start(), context=logs.fresh_context())
        try:
            await asyncio.shield(self._starting)
        except RedisError:
            self._starting = None  # the next append tries again
            raise

    async def _start(self) -> None:
        await self._renew()
        self._tasks = [
            asyncio.create_task(self._keep_alive(), name="canvas-lease"),
            asyncio.create_task(self._listen(), name="canvas-lease-requests"),
        ]

    async def _renew(self) -> None:
        sent = time.monotonic()
        was = await self._redis.set(
            self._node(self.node_id), b"1", px=int(self._lease_s * 1000), get=True
        )
        if was is None and self._held:
            # The key was gone (it expired, or Redis lost its data): other hubs may have
            # taken these canvases over, or their states may be gone.
            log.warning(
                "hub %s: its key was gone from Redis; letting %d canvases go",
                self.node_id,
                len(self._held),
            )
            self._held.clear()
            self._count("lapsed")
        self._alive_until = sent + self._lease_s - min(MARGIN_S, self._lease_s / 4)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew()
                if self._unpublished:
                    await self._publish([])
            except RedisError as exc:
                log.warning("renewing the key of hub %s failed: %r", self.node_id, exc)
            except Unavailable:
                pass  # logged; tried again next time

    async def _listen(self) -> None:
        wait = LISTEN_RETRY_S[0]
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._node(self.node_id))
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    wait = LISTEN_RETRY_S[0]
                    if message is not None and isinstance(message.get("data"), bytes):
                        await self._asked(message["data"])
            except (RedisError, OSError, RuntimeError) as exc:
                log.warning("hub %s: listening for canvas requests failed: %r", self.node_id, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, LISTEN_RETRY_S[1])
            finally:
                await pubsub.aclose()

    async def _publish(self, frames: list[tuple[str, bytes]]) -> None:
        """Publish, after those that failed before (they are durable: they must reach
        the other hubs, in order; kept up to ``MAX_UNPUBLISHED``)."""
        frames, self._unpublished = [*self._unpublished, *frames], []
        try:
            replies = await self._scripts.commands(
                [(self._publish_command, c, f) for c, f in frames]
            )
        except RedisError as exc:
            self._unpublished = frames[-MAX_UNPUBLISHED:]
            raise unavailable("publishing canvas patches", exc) from None
        for reply in replies:
            if isinstance(reply, RedisError):
                raise unavailable("publishing canvas patches", reply)
        if self._metrics is not None:
            for _, message in frames:
                self._metrics.redis_published.labels("canvas").inc()
                self._metrics.redis_published_bytes.labels("canvas").inc(len(message))


def _key_bytes(key: CanvasKey) -> bytes:
    return orjson.dumps([key.center_id, key.session_id, key.student_id])


def state_of(reply: Any) -> SeqState | None:
    """The state script's reply as a state (None: there is none)."""
    if reply is None:
        return None
    seq, dseq, epoch, pnode, idle = reply
    return SeqState(int(seq), int(dseq), as_text(epoch), as_text(pnode), int(idle))


def unavailable(what: str, exc: RedisError) -> Unavailable:
    log.warning("%s failed in Redis: %r", what, exc)
    return Unavailable()
