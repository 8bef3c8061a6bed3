"""The bus through one Redis: per-session pub/sub channels, subscribed on demand, and
leases as a Lua script (see the package's docstring)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from realtime.base import logs
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import stop
from realtime.bus.bus import (
    FRAME_SEP,
    KIND_NAMES,
    frame,
    new_node_id,
    sent_at,
    session_channel,
    unframe,
)
from realtime.bus.bus_memory import Cluster
from realtime.bus.cluster_client import GatedRedisCluster
from realtime.bus.subscription_redis import AnyRedis, ShardSubscription, subscription_for

log = logging.getLogger(__name__)

# Frames queued for publishing while Redis is unreachable; beyond it the oldest go.
MAX_OUTGOING = 50_000
SUBSCRIBE_WAIT_S = 2.0
READ_TIMEOUT_S = 1.0
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
# Sends of one command on new connections after its connection was found dead.
RETRIES = 2
# The connections one hub opens to Redis at most, and how long a command waits for one.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 5.0

LEASE_PREFIX = "hub:lease:"
# KEYS: the lease. ARGV: node, ms. Taken if free, renewed if held by the node.
LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_ms(lease_s: float) -> int:
    return max(1, round(lease_s * 1000))


def redis_client(url: str, *, max_connections: int = MAX_CONNECTIONS, **options: Any) -> Redis:
    """The hub's Redis client.

    After Redis restarts, every connection in the pool is dead, and redis-py
    (8.1, from a URL without a ``retry``) answers the first command on each
    with ``ConnectionError``. Such a command never reached a Redis that could
    run it, so it is sent again on a new connection, after a short pause.
    Timeouts are not retried: that command may have run.

    The pool holds at most ``max_connections``; a command that finds them all busy
    waits for one (up to ``POOL_WAIT_S``). redis-py's own pool refuses it at once
    (``MaxConnectionsError``, at 100 by default since redis-py 8): a class of 120
    students joining together got ``INTERNAL``.
    """
    options = {"socket_timeout": 5, "socket_connect_timeout": 5, **options}
    backoff = ExponentialBackoff(cap=RECONNECT_MAX_S, base=RECONNECT_MIN_S)
    retry = Retry(backoff, RETRIES, supported_errors=(RedisConnectionError,))
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_S, retry=retry, **options
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def redis_cluster_client(
    nodes: list[tuple[str, int]], *, max_connections: int = MAX_CONNECTIONS, **options: Any
) -> RedisClusterClient:
    """The hub's Redis Cluster client, from some of its nodes (it learns the others and
    the slot map from them, and follows ``MOVED``/``ASK`` and failovers itself). A
    command at the cap of ``max_connections`` per node waits for a connection
    (``realtime.bus.cluster_client``).
    ``options`` go to every node's connections, as ``redis_client``'s do (a
    ``client_name`` names them in each node's ``CLIENT LIST``)."""
    options = {"socket_timeout": 5, "socket_connect_timeout": 5, **options}
    return GatedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections,
        **options,
    )


def as_text(value: object) -> str:
    """A Redis reply's string (bytes from the wire, or already text)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCluster(Cluster):
    """Hubs sharing sessions through one Redis: per-session channels, subscribed on demand.

    Publishes are queued and sent by one task, pipelined, so a relay flush of
    many sessions costs one round trip and frames keep their order. One
    subscriber connection reads every watched channel; when it fails, a new
    one subscribes again to everything watched and the reconnect hooks run.
    """

    shared = True

    def __init__(self, redis: AnyRedis, metrics: HubMetrics, node_id: str | None = None) -> None:
        super().__init__(node_id or new_node_id())
        self.redis = redis
        self._metrics = metrics
        self._node_prefix = self.node_id.encode() + FRAME_SEP
        self._channels: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        # A dropped subscription must reach _read_loop, which subscribes again and runs
        # the reconnect hooks (frames were missed).
        self._subscription = subscription_for(redis)
        self._sharded = isinstance(self._subscription, ShardSubscription)
        self._has_channels = asyncio.Event()
        self._outgoing: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lease = redis.register_script(LEASE)
        self._release = redis.register_script(RELEASE)
        self._leases: dict[str, tuple[float, bool]] = {}  # name: (asked at, held)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="cluster-publisher"),
            asyncio.create_task(self._read_loop(), name="cluster-subscriber"),
        ]
        log.info("cluster node %s: sharing sessions through Redis", self.node_id)

    async def close(self) -> None:
        await self._drain()
        await stop(self._tasks)
        self._tasks = []
        await self._release_leases()
        await self._close_subscription()
        await self._subscription.aclose_client()

    async def lead(self, name: str, lease_s: float) -> bool:
        # Jobs sharing a lease ask within moments of each other: one answer serves
        # them for a sixth of the lease (a held lease then has most of it left).
        asked_at, answer = self._leases.get(name, (-math.inf, False))
        now = time.monotonic()
        if now - asked_at < lease_s / 6:
            return answer
        try:
            held = await self._lease(
                keys=[LEASE_PREFIX + name], args=[self.node_id, lease_ms(lease_s)]
            )
        except RedisError as exc:
            # The jobs claim their work in the database too: run them on every hub.
            log.debug("taking the %s lease failed (%r); running the job here", name, exc)
            return True
        self._leases[name] = (now, bool(held))
        return bool(held)

    async def _release_leases(self) -> None:
        """A hub that stops hands its leases on now, not once they run out."""
        held = [name for name, (_, holds) in self._leases.items() if holds]
        self._leases.clear()
        for name in held:
            try:
                await self._release(keys=[LEASE_PREFIX + name], args=[self.node_id])
            except RedisError as exc:
                log.info("releasing the %s lease failed (%r); it runs out instead", name, exc)

    # -- subscriptions --------------------------------------------------------

    async def watch(self, center_id: str, session_id: str) -> None:
        channel = session_channel(center_id, session_id)
        if channel in self._channels:
            return
        self._channels.add(channel)
        self._metrics.redis_subscriptions.set(len(self._channels))
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        try:
            await self._subscription.subscribe(channel)
            self._has_channels.set()
            # Frames published after the confirmation reach this hub; wait for it so a
            # join's reads that follow cannot miss what happens in between.
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_WAIT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            # The subscriber's reconnect subscribes again to every watched channel.
            log.warning("subscribing to %s failed (%r); the subscriber will retry", channel, exc)
        finally:
            self._confirmed.pop(channel, None)

    def unwatch(self, center_id: str, session_id: str) -> None:
        channel = session_channel(center_id, session_id)
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        self._metrics.redis_subscriptions.set(len(self._channels))
        task = asyncio.create_task(self._unsubscribe(channel), context=logs.fresh_context())
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _unsubscribe(self, channel: str) -> None:
        try:
            if channel not in self._channels:  # not watched again meanwhile
                await self._subscription.unsubscribe(channel)
        except (RedisError, OSError) as exc:
            log.debug("unsubscribing from %s failed: %r", channel, exc)

    async def _close_subscription(self) -> None:
        try:
            await self._subscription.close()
        except (RedisError, OSError):
            pass

    # -- receiving ------------------------------------------------------------

    async def _read_loop(self) -> None:
        wait = RECONNECT_MIN_S
        lost = False
        while True:
            try:
                await self._has_channels.wait()
                if lost:
                    heard = await self._subscribe_again()
                    lost = False
                    log.warning("cluster node %s: Redis subscription is back", self.node_id)
                    await self._reconnected()
                    for held in heard:
                        self._received(held)
                message = await self._subscription.next_message(READ_TIMEOUT_S)
                wait = RECONNECT_MIN_S
                if message is not None:
                    self._received(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                # RuntimeError: redis-py reading a pubsub whose connection was reset.
                if not lost:
                    log.warning("cluster node %s: Redis subscription lost: %r", self.node_id, exc)
                lost = True
                self._metrics.redis_reconnects.inc()
                await self._close_subscription()
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX_S)

    async def _subscribe_again(self) -> list[dict[str, object]]:
        """Subscribe to every watched channel and read up to the confirmations: from
        then on every frame reaches this hub, so what the hooks read misses nothing.

        The frames heard meanwhile (a channel confirmed before another: on Redis
        Cluster each is its own ``SSUBSCRIBE``) are returned, to be handled after the
        hooks. Handled before, they would move a canvas past the patches the hooks
        are to read from the database (``canvas.peers.resume`` reads from the last
        seq handed on), and those patches never reached the hub's clients."""
        waiting = set(self._channels)
        if not waiting:
            return []
        await self._subscription.subscribe(*waiting)
        heard: list[dict[str, object]] = []
        deadline = time.monotonic() + SUBSCRIBE_WAIT_S
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} subscriptions not confirmed")
            message = await self._subscription.next_message(READ_TIMEOUT_S)
            if message is None:
                continue
            if message.get("type") == self._subscription.confirmed:
                waiting.discard(as_text(message.get("channel")))
                self._received(message)
            else:
                heard.append(message)
        return heard

    async def _reconnected(self) -> None:
        for hook in self._reconnect_hooks:
            try:
                await hook()
            except Exception:
                log.exception("a cluster reconnect hook failed")

    def _received(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == self._subscription.confirmed:
            confirmed = self._confirmed.get(as_text(message.get("channel")))
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        data = message.get("data")
        if kind != self._subscription.message or not isinstance(data, bytes):
            return
        if as_text(message.get("channel")) not in self._channels:
            # Unwatched: the unsubscribe runs after unwatch returns (on a cluster it
            # waits for the node's reader), and Redis sends what came before it.
            return
        if data.startswith(self._node_prefix):
            self._metrics.redis_echoes.inc()
            return
        _, frame_kind, payload = unframe(data)
        name = KIND_NAMES.get(frame_kind, "unknown")
        self._metrics.redis_received.labels(name).inc()
        self._metrics.redis_received_bytes.labels(name).inc(len(data))
        self._metrics.cluster_relay_seconds.observe(max(0.0, time.time() - sent_at(data)))
        handler = self._handlers.get(frame_kind)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            log.exception("handling a %s frame from another hub failed", name)

    # -- publishing -----------------------------------------------------------

    def publish(self, channel: str, kind: bytes, payload: bytes) -> None:
        if len(self._outgoing) >= MAX_OUTGOING:
            del self._outgoing[: MAX_OUTGOING // 10]
            self._metrics.redis_publish_dropped.inc(MAX_OUTGOING // 10)
        self._outgoing.append((channel, frame(self.node_id, kind, payload)))
        self._drained.clear()
        self._wake.set()

    async def _send_loop(self) -> None:
        wait = RECONNECT_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                try:
                    await self._send(batch)
                    wait = RECONNECT_MIN_S
                except (RedisError, OSError) as exc:
                    # Keep them (in order, ahead of newer ones) and try again: a short
                    # Redis outage delays frames rather than losing them.
                    log.warning("publishing %d frames failed: %r", len(batch), exc)
                    self._outgoing[:0] = batch
                    self._metrics.redis_publish_errors.inc()
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RECONNECT_MAX_S)
            self._drained.set()

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, data in batch:
                if self._sharded:
                    pipe.spublish(channel, data)  # to the channel's shard only
                else:
                    pipe.publish(channel, data)
            await pipe.execute()
        for _, data in batch:
            name = KIND_NAMES.get(data[len(self._node_prefix) : len(self._node_prefix) + 1], "?")
            self._metrics.redis_published.labels(name).inc()
            self._metrics.redis_published_bytes.labels(name).inc(len(data))

    async def _drain(self, timeout_s: float = 2.0) -> None:
        """Give queued frames a moment to go out (at shutdown)."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            log.warning("%d frames not published at shutdown", len(self._outgoing))
