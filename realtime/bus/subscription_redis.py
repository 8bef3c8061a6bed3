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
from redis.asyncio.cluster import ClusterPubSub
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from realtime.internals.redis_connection import without_retries

AnyRedis = Redis | RedisClusterClient


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
    """``SSUBSCRIBE`` on Redis Cluster: one connection per node that owns a watched
    channel's slot, read in turn by redis-py's ``ClusterPubSub``."""

    message = "smessage"
    confirmed = "ssubscribe"

    def __init__(self, client: RedisClusterClient) -> None:
        self._client = client
        self._pubsub: ClusterPubSub | None = None

    def _current(self) -> ClusterPubSub:
        if self._pubsub is None:
            self._pubsub = self._client.pubsub()
        return self._pubsub

    async def subscribe(self, *channels: str) -> None:
        await self._current().ssubscribe(*channels)

    async def unsubscribe(self, channel: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.sunsubscribe(channel)

    async def next_message(self, wait_s: float) -> dict[str, Any] | None:
        pubsub = self._current()
        if not pubsub.node_pubsub_mapping:
            await asyncio.sleep(wait_s)  # nothing subscribed yet: nothing to read
            return None
        message: dict[str, Any] | None = await pubsub.get_sharded_message(timeout=wait_s)
        return message

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()

    async def aclose_client(self) -> None:
        return None  # the hub's own cluster client: closed by its owner


def subscription_for(client: AnyRedis) -> ChannelSubscription | ShardSubscription:
    if isinstance(client, RedisClusterClient):
        return ShardSubscription(client)
    return ChannelSubscription(client)
