"""The Redis Cluster harness (loadtest/redis_cluster.py), and what redis-py's cluster client
does when the cluster changes under it: a primary killed and its replica promoted, a
graceful failover, a slot migrated under traffic. A test that breaks the cluster has
one of its own (``redis_cluster``); the others share one (``redis_cluster_shared``).

What these tests pin about redis-py 8.2's ``redis.asyncio.RedisCluster`` (the hub's
Redis Cluster backend builds on it):

- Commands hide MOVED and ASK. A command sent to a killed primary blocks, retrying,
  until the replica is promoted (2.4-4 s here); now and then (once in ~10 runs) it runs
  out of retries first and raises ``ConnectionError``.
- A sharded subscription (``ClusterPubSub.ssubscribe``) on a killed shard comes back
  by itself: at once when the client that owns the pubsub refreshes its slots (its own
  commands see the new topology), else after the pubsub's throttled topology repair.
  Meanwhile ``get_sharded_message`` raises ``ConnectionError`` when every node it
  polls is down, and what is published before the resubscription is lost.
- When a subscription's slot migrates, Redis 7 unsubscribes it (a ``sunsubscribe``
  message with count 0, which ``get_sharded_message`` returns). The pubsub subscribes
  again on the new owner only if its client's slots cache is refreshed: a client that
  also runs commands on that slot does; a subscribe-only client stays unsubscribed
  until the caller calls ``ssubscribe`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode as Seed
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.crc import key_slot

from loadtest.redis_cluster import HOST, SLOTS, ClusterNode, RedisClusterProcesses, missing_tools
from tests.conftest import need_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

POLL_S = 0.02
RESUBSCRIBE_WITHIN_S = 15.0
STOP_WITHIN_S = 10.0
FAILOVER_ERRORS = {
    "ConnectionError",
    "TimeoutError",
    "ClusterDownError",
    "RedisClusterUnreachableError",
    "SlotNotCoveredError",
}  # the pubsub's topology repair is throttled to every 5 s


def cluster_client(cluster: RedisClusterProcesses) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[Seed(HOST, node.port) for node in cluster.nodes],
        decode_responses=True,
        socket_timeout=1,
        socket_connect_timeout=0.5,
    )


@contextlib.asynccontextmanager
async def opened(cluster: RedisClusterProcesses) -> AsyncIterator[RedisCluster]:
    """A client of ``cluster`` that knows its slot map, closed (within bounds) after."""
    client = cluster_client(cluster)
    await client.initialize()
    yield client
    async with asyncio.timeout(STOP_WITHIN_S):
        await client.aclose()


@pytest.fixture
async def shared_client(
    redis_cluster_shared: RedisClusterProcesses,
) -> AsyncIterator[RedisCluster]:
    async with opened(redis_cluster_shared) as client:
        yield client


@pytest.fixture
async def client(redis_cluster: RedisClusterProcesses) -> AsyncIterator[RedisCluster]:
    async with opened(redis_cluster) as client:
        yield client


@pytest.fixture
async def other_client(redis_cluster: RedisClusterProcesses) -> AsyncIterator[RedisCluster]:
    async with opened(redis_cluster) as client:
        yield client


async def eventually(what: str, check: Callable[[], bool], within: float) -> float:
    """Poll ``check`` until true; the seconds it took. Fails after ``within`` s."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > within:
            raise AssertionError(f"expected {what} within {within} s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - began


def tag_on(cluster: RedisClusterProcesses, primary: ClusterNode, prefix: str = "s") -> str:
    """A hash tag ``{prefix:n}`` whose slot ``primary`` serves."""
    for n in range(10_000):
        tag = f"{{{prefix}:{n}}}"
        if cluster.primary_for(tag) is primary:
            return tag
    raise AssertionError(f"expected a tag on {primary.address} among 10000")


async def stop_loop(task: asyncio.Task[None], loop: Writer | Reader) -> None:
    """Cancel a Writer's or Reader's task, and stop its loop should the cancellation be
    swallowed: on Python 3.11 ``asyncio.wait_for``, which redis-py sends a command
    through when ``socket_timeout`` is set, returns the result instead of raising when
    the cancellation meets a finished send (about 1 cancellation in 9 here)."""
    loop.stopping = True
    task.cancel()
    async with asyncio.timeout(STOP_WITHIN_S):
        await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        print(f"{type(loop).__name__}: a cancellation was swallowed; the loop ended on its flag")


@dataclass
class Writer:
    """SETs ``key`` to 1, 2, 3, ... with GET (the value it replaced), as fast as acked."""

    client: RedisCluster
    key: str
    acked: list[tuple[float, int, int]] = field(default_factory=list)  # (at, value, replaced)
    sent_at: dict[int, float] = field(default_factory=dict)  # value: when its SET was sent
    errors: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    stopping: bool = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        value = 0
        while not self.stopping:
            value += 1
            self.sent_at[value] = time.monotonic()
            try:
                replaced = await self.client.set(self.key, value, get=True)
            except Exception as exc:  # what reaches the caller is what the test reports
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                await asyncio.sleep(POLL_S)
                continue
            self.acked.append((time.monotonic(), value, int(replaced or 0)))
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        assert self.task is not None
        await stop_loop(self.task, self)

    def acked_since(self, moment: float) -> list[tuple[float, int, int]]:
        return [entry for entry in self.acked if entry[0] > moment]

    def sent_since(self, moment: float) -> list[tuple[float, int, int]]:
        """The acked writes sent after ``moment`` (one acked after it may have been served
        before it: its reply was still to be read)."""
        return [entry for entry in self.acked if self.sent_at[entry[1]] > moment]


@dataclass
class Reader:
    """Reads a ClusterPubSub's sharded messages into lists, as a hub's listener would."""

    pubsub: ClusterPubSub
    messages: list[tuple[float, str, str, Any]] = field(default_factory=list)  # at, type, ch, data
    errors: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    stopping: bool = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.stopping:
            try:
                message = await self.pubsub.get_sharded_message(timeout=0.2)
            except Exception as exc:
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                await asyncio.sleep(0.05)
                continue
            if message is not None:
                entry = (time.monotonic(), message["type"], message["channel"], message["data"])
                self.messages.append(entry)

    async def stop(self) -> None:
        assert self.task is not None
        await stop_loop(self.task, self)
        async with asyncio.timeout(STOP_WITHIN_S):
            await self.pubsub.aclose()

    def data(self, channel: str) -> list[str]:
        return [d for _, kind, ch, d in self.messages if kind == "smessage" and ch == channel]

    def kinds(self, channel: str) -> list[str]:
        return [kind for _, kind, ch, _ in self.messages if ch == channel]


async def publish_until_received(
    publisher: RedisCluster, reader: Reader, channel: str, within: float
) -> float:
    """SPUBLISH 1, 2, 3, ... until one arrives; the seconds it took."""
    began, n = time.monotonic(), 0
    while time.monotonic() - began < within:
        n += 1
        try:
            await publisher.spublish(channel, f"p{n}")
        except Exception as exc:
            reader.errors.append((time.monotonic(), f"publisher {type(exc).__name__}: {exc}"))
        await asyncio.sleep(0.05)
        if any(d.startswith("p") for d in reader.data(channel)):
            return time.monotonic() - began
    raise AssertionError(
        f"expected a message on {channel} within {within} s; reader saw "
        f"{reader.messages[-5:]}, errors {reader.errors[-5:]}"
    )


async def test_the_cluster_has_three_primaries_each_with_a_replica_and_covers_every_slot(
    redis_cluster_shared: RedisClusterProcesses, shared_client: RedisCluster
) -> None:
    redis_cluster, client = redis_cluster_shared, shared_client
    print(f"cluster up in {redis_cluster.started_in_s:.2f} s")
    primaries, replicas = redis_cluster.primaries, redis_cluster.replicas
    assert len(primaries) == 3 and len(replicas) == 3
    assert sorted(redis_cluster.replica_of(p).primary_id or "" for p in primaries) == sorted(
        p.node_id for p in primaries
    )
    assert {f"{HOST}:{n.port}" for n in client.get_primaries()} == {p.address for p in primaries}
    assert {f"{HOST}:{n.port}" for n in client.get_replicas()} == {r.address for r in replicas}
    covered = {
        slot for p in primaries for slot in range(SLOTS) if redis_cluster.primary_for(slot) is p
    }
    assert covered == set(range(SLOTS))
    assert redis_cluster.seeds.count(",") == 5 and all(
        address.startswith(f"{HOST}:") for address in redis_cluster.seeds.split(",")
    )


async def test_a_node_whose_port_was_taken_meanwhile_starts_on_another(tmp_path: Path) -> None:
    need_service("Redis Cluster", missing_tools(), hint="install redis-server and redis-cli 7+")
    cluster = RedisClusterProcesses(tmp_path)
    taken = cluster.nodes[0].port
    with socket.socket() as squatter:  # another test's server, say
        squatter.bind((HOST, taken))
        squatter.listen()
        try:
            await cluster.start()
        finally:
            await cluster.stop()
    assert cluster.nodes[0].port != taken
    assert len(cluster.primaries) + len(cluster.replicas) == 0  # all killed


async def test_keys_with_one_hash_tag_share_a_slot_so_scripts_and_transactions_span_them(
    shared_client: RedisCluster,
) -> None:
    client = shared_client
    x, y = "{s:abc}:x", "{s:abc}:y"
    assert key_slot(x.encode()) == key_slot(y.encode()) == await client.cluster_keyslot(x)
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[1])"
    assert await client.eval(script, 2, x, y, 5) == 5
    async with client.pipeline(transaction=True) as transaction:
        transaction.incrby(y, 2)
        transaction.get(x)
        transaction.get(y)
        assert await transaction.execute() == [7, "5", "7"]


async def test_sharded_pubsub_delivers_on_every_shard_through_one_cluster_pubsub(
    redis_cluster_shared: RedisClusterProcesses, shared_client: RedisCluster
) -> None:
    cluster, client = redis_cluster_shared, shared_client
    channels = [f"{tag_on(cluster, p)}:events" for p in cluster.primaries]
    subscriber = cluster_client(cluster)
    reader = Reader(subscriber.pubsub())
    await reader.pubsub.ssubscribe(*channels)
    reader.start()
    try:
        await eventually(
            "three ssubscribe confirmations",
            lambda: all(reader.kinds(ch) == ["ssubscribe"] for ch in channels),
            5,
        )
        for channel in channels:
            assert await client.spublish(channel, f"to {channel}") == 1
        await eventually(
            "a message on every shard",
            lambda: all(reader.data(ch) == [f"to {ch}"] for ch in channels),
            5,
        )
    finally:
        await reader.stop()
        await subscriber.aclose()
    assert not reader.errors


async def test_writes_resume_after_a_primary_is_killed_and_replicated_writes_survive(
    redis_cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    key = "{s:failover}:last"
    writer = Writer(client, key)
    writer.start()
    await eventually("writes", lambda: len(writer.acked) > 20, 5)
    primary = redis_cluster.primary_for(key)
    replica = redis_cluster.replica_of(primary)
    on_replica = await replica_value(replica, key)
    killed_at = time.monotonic()
    redis_cluster.kill_primary(primary)
    acked_before_kill = max(value for at, value, _ in writer.acked if at <= killed_at)
    promoted = await redis_cluster.wait_promoted(primary)
    promoted_in = time.monotonic() - killed_at
    assert promoted is replica and redis_cluster.primary_for(key) is replica
    # The first write sent after the kill: only the promoted replica can have served it.
    await eventually("a write after the kill", lambda: bool(writer.sent_since(killed_at)), 15)
    first_at, first_value, replaced = writer.sent_since(killed_at)[0]
    await writer.stop()
    # SET ... GET returned what the promoted replica had: everything it had at the kill.
    assert replaced >= on_replica, (replaced, on_replica)
    lost = acked_before_kill - replaced
    raised = [(round(at - killed_at, 2), error) for at, error in writer.errors]
    print(
        f"promoted in {promoted_in:.2f} s; first write {first_at - killed_at:.2f} s after the "
        f"kill; acked before the kill {acked_before_kill}, on the replica {on_replica}, "
        f"survived {replaced} (lost {max(lost, 0)}); errors raised (s after the kill): {raised}"
    )
    # redis-py retries a command through the failover (none has raised here); one that
    # runs out of retries raises one of these.
    assert all(error.split(":")[0] in FAILOVER_ERRORS for _, error in writer.errors), writer.errors
    # The killed node comes back as the new primary's replica.
    await redis_cluster.restart(primary)
    assert primary.role == "replica" and primary.primary_id == replica.node_id


async def test_a_graceful_failover_loses_no_acknowledged_write(
    redis_cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    key = "{s:graceful}:last"
    writer = Writer(client, key)
    writer.start()
    await eventually("writes", lambda: len(writer.acked) > 20, 5)
    primary = redis_cluster.primary_for(key)
    replica = redis_cluster.replica_of(primary)
    began = time.monotonic()
    await redis_cluster.failover(replica)
    print(f"graceful failover settled in {time.monotonic() - began:.2f} s")
    assert redis_cluster.primary_for(key) is replica
    assert primary.role == "replica" and primary.primary_id == replica.node_id
    after = time.monotonic()
    await eventually("a write after the failover", lambda: bool(writer.acked_since(after)), 10)
    await writer.stop()
    assert not writer.errors
    assert [replaced for _, _, replaced in writer.acked] == [v - 1 for _, v, _ in writer.acked]


@pytest.mark.parametrize("subscriber", ["its own client", "the writing client"])
async def test_a_sharded_subscription_on_a_killed_shard_resubscribes_by_itself(
    redis_cluster: RedisClusterProcesses,
    client: RedisCluster,
    other_client: RedisCluster,
    subscriber: str,
) -> None:
    channel = "{s:failover}:events"
    reader = Reader((other_client if subscriber == "its own client" else client).pubsub())
    await reader.pubsub.ssubscribe(channel)
    reader.start()
    writer = Writer(client, "{s:failover}:last")  # traffic on the shard, as a hub's
    writer.start()
    try:
        await publish_until_received(client, reader, channel, 5)
        primary = redis_cluster.primary_for(channel)
        killed_at = time.monotonic()
        redis_cluster.kill_primary(primary)
        await redis_cluster.wait_promoted(primary)
        promoted_in = time.monotonic() - killed_at
        reader.messages.clear()
        took = await publish_until_received(client, reader, channel, RESUBSCRIBE_WITHIN_S)
    finally:
        await writer.stop()
        await reader.stop()
    resubscribed = [at - killed_at for at, kind, _, _ in reader.messages if kind == "ssubscribe"]
    errors = [(round(at - killed_at, 2), error) for at, error in reader.errors]
    print(
        f"{subscriber}: promoted in {promoted_in:.2f} s, ssubscribe again at {resubscribed} s "
        f"after the kill, messages again {promoted_in + took:.2f} s after it; "
        f"get_sharded_message raised {errors}"
    )
    assert resubscribed, "the pubsub subscribed again on the promoted replica by itself"
    assert all(error.split(":")[0] in FAILOVER_ERRORS for _, error in errors), errors


async def test_a_pubsub_on_every_shard_keeps_delivering_from_the_others_while_one_is_down(
    redis_cluster: RedisClusterProcesses, client: RedisCluster, other_client: RedisCluster
) -> None:
    """One shard's primary killed: ``get_sharded_message`` raises nothing (a node that
    fails is skipped while another answers) and the live shards' messages keep coming."""
    doomed, *living = redis_cluster.primaries
    channels = [f"{tag_on(redis_cluster, p)}:events" for p in (doomed, *living)]
    reader = Reader(other_client.pubsub())
    await reader.pubsub.ssubscribe(*channels)
    reader.start()
    try:
        for channel in channels:
            await publish_until_received(client, reader, channel, 5)
        killed_at = time.monotonic()
        redis_cluster.kill_primary(doomed)
        reader.messages.clear()
        for channel in channels[1:]:  # while the dead shard has no primary yet
            await publish_until_received(client, reader, channel, 1)
        assert time.monotonic() - killed_at < 2.0, "delivered before the failover"
        await redis_cluster.wait_promoted(doomed)
        await publish_until_received(client, reader, channels[0], RESUBSCRIBE_WITHIN_S)
        back_after = time.monotonic() - killed_at
    finally:
        await reader.stop()
    print(f"the dead shard's channel delivered again {back_after:.2f} s after the kill")
    assert not reader.errors, reader.errors


async def test_writes_during_a_slot_migration_lose_nothing_and_end_up_on_the_target(
    redis_cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    tag = "{s:reshard}"
    slot = key_slot(tag.encode())
    for n in range(200):  # enough keys for 20 batches
        await client.set(f"{tag}:seed:{n}", n)
    writer = Writer(client, f"{tag}:last")
    writer.start()
    source = redis_cluster.primary_for(slot)
    target = next(p for p in redis_cluster.primaries if p is not source)
    began = time.monotonic()
    moved = await redis_cluster.migrate_slot(slot, target, batch=10, pause_s=0.05)
    took = time.monotonic() - began
    during = len(writer.acked_since(began))
    after = time.monotonic()
    await eventually("a write after the migration", lambda: bool(writer.acked_since(after)), 5)
    await writer.stop()
    stats = await target.client().info("commandstats")
    asking = int(stats.get("cmdstat_asking", {}).get("calls", 0))
    print(f"migrated {moved} keys in {took:.2f} s; {during} writes meanwhile, {asking} after ASK")
    assert during > 20 and moved >= 201
    assert asking > 0, "the writes to keys already moved went to the target after an ASK"
    assert not writer.errors, "redis-py follows ASK and MOVED without raising"
    assert [replaced for _, _, replaced in writer.acked] == [v - 1 for _, v, _ in writer.acked]
    assert redis_cluster.primary_for(slot) is target
    assert await source.command("CLUSTER COUNTKEYSINSLOT", slot) == 0
    assert await target.command("CLUSTER COUNTKEYSINSLOT", slot) == 201
    assert await client.get(f"{tag}:last") == str(writer.acked[-1][1])


async def replica_value(replica: ClusterNode, key: str) -> int:
    """The replica's own copy of an integer ``key`` (READONLY on the same connection)."""
    async with replica.client().pipeline(transaction=False) as pipe:
        pipe.execute_command("READONLY")
        pipe.get(key)
        _, value = await pipe.execute()
    return int(value or 0)


def unsubscribed_from(reader: Reader, channel: str) -> Callable[[], bool]:
    return lambda: "sunsubscribe" in reader.kinds(channel)


async def test_a_migrated_slot_unsubscribes_its_sharded_subscribers(
    redis_cluster: RedisClusterProcesses, client: RedisCluster, other_client: RedisCluster
) -> None:
    """Redis 7 sends ``sunsubscribe`` to a subscriber whose slot moves. A pubsub whose
    client also writes to the slot subscribes again by itself (the MOVED refreshes the
    slots); a subscribe-only client's pubsub stays unsubscribed until the caller calls
    ``ssubscribe`` again - which then works."""
    channel = "{s:reshard}:events"
    slot = key_slot(channel.encode())
    sharing = Reader(client.pubsub())  # its client writes to the slot below
    alone = Reader(other_client.pubsub())
    for reader in (sharing, alone):
        await reader.pubsub.ssubscribe(channel)
        reader.start()
    try:
        await publish_until_received(client, sharing, channel, 5)
        await eventually("both subscribed", lambda: bool(alone.data(channel)), 5)
        source = redis_cluster.primary_for(slot)
        target = next(p for p in redis_cluster.primaries if p is not source)
        await redis_cluster.migrate_slot(slot, target)
        for reader in (sharing, alone):
            await eventually("a sunsubscribe", unsubscribed_from(reader, channel), 5)
            unsubscribed = next(m for m in reader.messages if m[1] == "sunsubscribe")
            assert unsubscribed[3] == 0  # no shard channel left on that node
        await client.set("{s:reshard}:touch", 1)  # MOVED: the client's slots refresh
        await eventually(
            "the sharing pubsub resubscribed", lambda: sharing.kinds(channel)[-1] == "ssubscribe", 5
        )
        sharing.messages.clear()
        alone.messages.clear()
        await publish_until_received(client, sharing, channel, 5)
        await asyncio.sleep(1)
        assert alone.messages == [], "a subscribe-only pubsub stays unsubscribed"
        await alone.pubsub.ssubscribe(channel)  # what the caller must do
        await publish_until_received(client, alone, channel, 10)
    finally:
        for reader in (sharing, alone):
            await reader.stop()
    assert not sharing.errors and not alone.errors, (sharing.errors, alone.errors)
