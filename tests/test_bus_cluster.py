"""The bus (``realtime.bus.bus_redis.RedisCluster``) on a real Redis Cluster of the
test's own (``loadtest/redis_cluster.py``): sharded pub/sub across the shards, and a
channel whose slot moves to another primary while frames flow."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.crc import key_slot

from loadtest.redis_cluster import RedisClusterProcesses
from realtime.base.config import Settings
from realtime.base.metrics import HubMetrics
from realtime.bus.bus import EMIT, session_channel
from realtime.bus.bus_redis import RedisCluster, redis_cluster_client
from tests.support import eventually


async def bus_on(cluster: RedisClusterProcesses, inbox: list[bytes] | None = None) -> RedisCluster:
    nodes = Settings(redis_cluster_nodes=cluster.seeds).cluster_nodes
    bus = RedisCluster(redis_cluster_client(nodes), HubMetrics())
    if inbox is not None:
        bus.on(EMIT, inbox.append)
    await bus.start()
    return bus


async def close(*buses: RedisCluster) -> None:
    for bus in buses:
        await bus.close()
        await bus.redis.aclose()


@pytest.mark.timeout(90)
async def test_frames_reach_the_other_hub_on_every_shard(
    redis_cluster_shared: RedisClusterProcesses,
) -> None:
    heard: list[bytes] = []
    a, b = await bus_on(redis_cluster_shared), await bus_on(redis_cluster_shared, heard)
    try:
        sessions = [("c1", uuid.uuid4().hex) for _ in range(30)]
        shards = {redis_cluster_shared.primary_for(session_channel(*s)).address for s in sessions}
        assert len(shards) == 3, shards
        await asyncio.gather(*(b.watch(*s) for s in sessions))
        for n, session in enumerate(sessions):
            a.publish(session_channel(*session), EMIT, f"frame {n}".encode())
        await eventually(lambda: len(heard) == len(sessions), within=10, what="every frame")
        assert sorted(heard) == sorted(f"frame {n}".encode() for n in range(len(sessions)))
    finally:
        await close(a, b)


@pytest.mark.timeout(90)
async def test_a_channel_whose_slot_moves_is_heard_again_after_a_catch_up(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """Redis drops a shard channel's subscribers when its slot moves to another node.
    The hub subscribes again on the new owner and runs its reconnect hooks (the
    frames published in between are caught up from the canvases' state)."""
    heard: list[bytes] = []
    a, b = await bus_on(redis_cluster), await bus_on(redis_cluster, heard)
    hooks: list[str] = []

    async def hook() -> None:
        hooks.append("caught up")

    b.on_reconnect(hook)
    try:
        session = ("c1", uuid.uuid4().hex)
        channel = session_channel(*session)
        await b.watch(*session)
        a.publish(channel, EMIT, b"before")
        await eventually(lambda: b"before" in heard, within=10, what="the first frame")
        source = redis_cluster.primary_for(channel)
        target = next(p for p in redis_cluster.primaries if p is not source)
        await redis_cluster.migrate_slot(key_slot(channel.encode()), target)
        await eventually(lambda: hooks == ["caught up"], within=15, what="the reconnect hook")
        a.publish(channel, EMIT, b"after")
        await eventually(lambda: b"after" in heard, within=10, what="a frame after the move")
    finally:
        await close(a, b)


@pytest.mark.timeout(90)
async def test_frames_heard_while_subscribing_again_wait_for_the_reconnect_hooks(
    redis_cluster_shared: RedisClusterProcesses,
) -> None:
    """On a cluster each channel is subscribed again on its own (``SSUBSCRIBE``), so
    frames of a channel confirmed early come while others are still unconfirmed. The
    hooks read what was missed from where each canvas stands: a frame handled before
    them moves it past the missed ones, which then never reach the clients."""
    heard: list[bytes] = []
    a, b = await bus_on(redis_cluster_shared), await bus_on(redis_cluster_shared, heard)
    heard_at_hook: list[int] = []

    async def hook() -> None:
        heard_at_hook.append(len(heard))

    b.on_reconnect(hook)
    try:
        sessions = [("c1", uuid.uuid4().hex) for _ in range(60)]
        channels = [session_channel(*session) for session in sessions]
        await asyncio.gather(*(b.watch(*session) for session in sessions))
        a.publish(channels[0], EMIT, b"before")
        await eventually(lambda: heard == [b"before"], within=10, what="the first frame")
        for primary in redis_cluster_shared.primaries:  # only b subscribes
            await primary.command("CLIENT KILL", "TYPE", "pubsub")
        sent = 0
        while not heard_at_hook and sent < 20_000:
            a.publish(channels[sent % len(channels)], EMIT, f"f{sent}".encode())
            sent += 1
            await asyncio.sleep(0.0005)
        assert heard_at_hook == [1], f"{heard_at_hook} frames heard when the hooks ran"
        await eventually(lambda: len(heard) > 1, within=10, what="frames after the hooks")
    finally:
        await close(a, b)


@pytest.mark.timeout(90)
async def test_commands_beyond_the_connection_cap_wait_instead_of_failing(
    redis_cluster_shared: RedisClusterProcesses,
) -> None:
    """redis-py's cluster client refuses a command at its per-node cap
    (MaxConnectionsError); the hub's waits for a connection. 200 commands, scripts and
    pipelines at once through a client of 4 connections a node."""
    nodes = Settings(redis_cluster_nodes=redis_cluster_shared.seeds).cluster_nodes
    client = redis_cluster_client(nodes, max_connections=4)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    key = f"test:cap:{{{uuid.uuid4().hex}}}"

    async def pipelined() -> list[Any]:
        async with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.get(key)
            return list(await pipe.execute())

    try:
        calls = [client.incr(key) for _ in range(100)]
        calls += [script(keys=[key]) for _ in range(50)]
        calls += [pipelined() for _ in range(50)]
        await asyncio.gather(*calls)
        assert int(await client.get(key)) == 200
    finally:
        await client.delete(key)
        await client.aclose()
