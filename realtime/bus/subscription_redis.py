"""The bus's subscription to session channels: plain pub/sub on one Redis, sharded pub/sub
on Redis Cluster.

With one Redis, channels are server-wide (``SUBSCRIBE``/``PUBLISH``) and one
connection reads them all. On a cluster, ``PUBLISH`` is broadcast to every node;
sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis 7) routes a frame only to the
shard that owns its channel's slot, so the hub reads each shard it has channels on
(redis-py's ``ClusterPubSub`` keeps one connection per node and follows slots that
move). Both are read through this one interface by ``bus_redis.RedisCluster``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.internals.redis_connection import without_retries

AnyRedis = Redis | RedisClusterClient
# How long one read of a node waits. redis-py holds the node's I/O lock meanwhile, and a
# subscribe on that node waits for it: short, so a join's watch is not held up (20
# sessions watched at once took 14 s with 1 s, on three shards).
READ_S = 0.02


class Subscription(Protocol):
    """Channels subscribed on one logical connection; its messages are redis-py's
    dicts, whose ``type`` is ``message`` (``confirmed`` for a subscription's answer)."""

    message: str
    confirmed: str

    async def subscribe(self, *channels: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def next_message(self, wait_s: float) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...

    async def aclose_client(self) -> None: ...


class ChannelSubscription:
    """``SUBSCRIBE`` on one Redis, through a client without retries: a dropped
    connection must reach the bus's read loop (frames were missed), not be
    reconnected and subscribed again by redis-py behind its back."""

    message = "message"
    confirmed = "subscribe"

    def __init__(self, client: Redis) -> None:
        self._client = without_retries(client)
        self._pubsub: PubSub | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> PubSub:
        """The subscription's connection, made once. redis-py's ``PubSub.connect``
        takes a connection whenever it has none, so subscribes made at once on a new
        ``PubSub`` each took one, and all but the last were left unread: their
        sessions never heard another hub (``loadtest fanout --tutors-on-node-2``)."""
        async with self._connecting:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
            if self._pubsub.connection is None:
                await self._pubsub.connect()  # type: ignore[no-untyped-call]
            return self._pubsub

    async def subscribe(self, *channels: str) -> None:
        await (await self._connected()).subscribe(*channels)

    async def unsubscribe(self, channel: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)

    async def next_message(self, wait_s: float) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await (await self._connected()).get_message(timeout=wait_s)
        return message

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()

    async def aclose_client(self) -> None:
        await self._client.aclose()


class ShardSubscription:
    """``SSUBSCRIBE`` on Redis Cluster, through redis-py's ``ClusterPubSub``: one
    connection per node that owns a watched channel's slot, each read by a task of its
    own. (``ClusterPubSub.get_sharded_message`` alone polls the nodes in turn, waiting
    a share of its timeout on each: a frame on another shard waited for that share,
    p50 21.5 ms against 0.4 ms on one Redis, three shards on loopback.) A node's
    reader that fails hands its error to ``next_message``: frames were missed."""

    message = "smessage"
    confirmed = "ssubscribe"

    def __init__(self, client: RedisClusterClient) -> None:
        self._client = client
        self._pubsub: ClusterPubSub | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}  # by node name
        self._inbox: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        # After a failure, the client's slot map may still name a node that died: it is
        # read again before subscribing. (A hub that only listens sends no command that
        # would refresh it, and subscribed to the dead primary again and again.)
        self._stale = False
        self._leaving: set[str] = set()  # channels this hub unsubscribes from

    def _current(self) -> ClusterPubSub:
        if self._pubsub is None:
            self._pubsub = self._client.pubsub()
        return self._pubsub

    async def subscribe(self, *channels: str) -> None:
        if self._stale:
            await self._client.nodes_manager.initialize()
            self._stale = False
        await self._current().ssubscribe(*channels)
        self._read_every_node()

    async def unsubscribe(self, channel: str) -> None:
        if self._pubsub is not None:
            self._leaving.add(channel)
            await self._pubsub.sunsubscribe(channel)

    def _read_every_node(self) -> None:
        """A reader for each node the subscription has a connection to (redis-py adds
        nodes when a channel's slot moves to another, or a replica takes over)."""
        pubsub = self._current()
        for name in list(pubsub.node_pubsub_mapping):
            reader = self._readers.get(name)
            if reader is None or reader.done():
                node = self._client.get_node(node_name=name)
                if node is not None:
                    self._readers[name] = asyncio.create_task(self._read(pubsub, name, node))

    async def _read(self, pubsub: ClusterPubSub, name: str, node: ClusterNode) -> None:
        while self._pubsub is pubsub and name in pubsub.node_pubsub_mapping:
            try:
                message = await pubsub.get_sharded_message(timeout=READ_S, target_node=node)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._inbox.put_nowait(exc)
                return
            if message is not None:
                self._inbox.put_nowait(message)

    async def next_message(self, wait_s: float) -> dict[str, Any] | None:
        self._read_every_node()
        try:
            item = await asyncio.wait_for(self._inbox.get(), wait_s)
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            raise item
        if item.get("type") == "sunsubscribe":
            channel = _text(item.get("channel"))
            if channel not in self._leaving:
                # Redis 7 drops the subscriptions of a slot that moved to another node;
                # a subscriber that sends no command there is never told by a MOVED.
                raise RedisConnectionError(f"shard channel {channel} moved with its slot")
            self._leaving.discard(channel)
        return item

    async def close(self) -> None:
        self._stale = True
        self._leaving.clear()
        pubsub, self._pubsub = self._pubsub, None
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        self._inbox = asyncio.Queue()  # what was read is of a subscription that is gone
        if pubsub is not None:
            await pubsub.aclose()

    async def aclose_client(self) -> None:
        return None  # the hub's own cluster client: closed by its owner


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def subscription_for(client: AnyRedis) -> ChannelSubscription | ShardSubscription:
    if isinstance(client, RedisClusterClient):
        return ShardSubscription(client)
    return ChannelSubscription(client)
