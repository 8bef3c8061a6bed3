"""One contract suite for ``realtime.bus.bus.Bus``, run against every backend.

Every test asserts what the Protocol's docstrings promise (``realtime/bus/bus.py``
and the package's docstring), as ``rooms/sessions.py``, ``presence/live.py`` and
the canvas store rely on it: frames go to the *other* hubs watching a session's
channel, in order per publishing hub, best effort; a hub never hears its own
frames; ``watch`` hears from the moment it returns; ``on_reconnect`` hooks run
after an outage of the subscription; one hub at a time holds a job's lease, and
another takes it once it runs out.

The capability flag is the bus's own ``shared``. The memory backend
(``bus_memory.Cluster``) is one hub process alone by design: nothing is
published, there is no subscription to lose, and it leads every job. For it,
the contract's items reduce to: it never hears its own frames (nor anything
else), its hooks never run, and it always leads; the tests of frames between
hubs are generated only for shared buses, from the flag
(``params(shared_only=True)``).

Redis is real: the worker's own database (``tests.conftest.REDIS_URL``), flushed
before and after each test; channels are server-wide, so each test's sessions
have ids of their own. The cluster backend is the same bus on a real Redis
Cluster (``loadtest/redis_cluster.py``: 3 primaries, 3 replicas, one per test module,
every primary flushed before and after each test), where it uses sharded pub/sub:
its subscription is one connection per shard it has channels on. Under ``CI=true``
a missing Redis, or redis-server and redis-cli, fails the test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio

from loadtest.redis_cluster import RedisClusterProcesses
from realtime.base.config import Settings
from realtime.base.metrics import HubMetrics
from realtime.bus.bus import CANVAS, CONTROL, EMIT, Bus, session_channel
from realtime.bus.bus_memory import Cluster
from realtime.bus.bus_redis import RedisCluster, redis_client, redis_cluster_client
from realtime.bus.subscription_redis import AnyRedis
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.support import eventually

KINDS = (EMIT, CANVAS, CONTROL)
# A payload with every byte the frame format could trip on.
AWKWARD = b"\x00room\n\x00skip\n" + bytes(range(256))
LEASE_S = 0.6

SHARED = {"memory": False, "redis": True, "cluster": True}


def params(*, shared_only: bool = False) -> list[Any]:
    """The backends, as parameters of the ``backend`` fixture; with ``shared_only``,
    only the buses that connect hubs (a bus that is one process alone by design has
    no other hub to exchange frames or leases with: those items are not its contract)."""
    return [
        pytest.param(name, id=name) for name, shared in SHARED.items() if shared or not shared_only
    ]


@dataclass
class Inbox:
    """What a hub's handlers received: (kind, payload), in arrival order."""

    frames: list[tuple[bytes, bytes]] = field(default_factory=list)

    def payloads(self, kind: bytes | None = None) -> list[bytes]:
        return [p for k, p in self.frames if kind is None or k == kind]

    async def until(self, payload: bytes, within: float = 5.0) -> None:
        await eventually(
            lambda: payload in self.payloads(), within=within, what=f"{payload!r} to arrive"
        )


@dataclass
class Node:
    bus: Bus
    inbox: Inbox
    # The Redis connections of this hub (its pub/sub connections among them), by name.
    client_name: str | None = None


@dataclass
class Backend:
    name: str
    shared: bool
    new_node: Callable[..., Awaitable[Node]]
    admin: redis.asyncio.Redis | None = None
    cluster: RedisClusterProcesses | None = None


def listen(bus: Bus, kinds: tuple[bytes, ...] = KINDS) -> Inbox:
    inbox = Inbox()

    def handler(kind: bytes) -> Callable[[bytes], None]:
        return lambda payload: inbox.frames.append((kind, payload))

    for kind in kinds:
        bus.on(kind, handler(kind))
    return inbox


@pytest.fixture
def cluster_of_backend(request: pytest.FixtureRequest) -> RedisClusterProcesses | None:
    """The module's Redis Cluster for the cluster backend (None for the others). A sync
    fixture: the cluster starts on first use, outside the test's event loop."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("backend") != "cluster":
        return None
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster_shared")
    return cluster


async def flush_primaries(cluster: RedisClusterProcesses) -> None:
    for primary in cluster.primaries:  # replicas follow their primary
        await primary.command("FLUSHALL")


@pytest.fixture(params=params())
async def backend(
    request: pytest.FixtureRequest, cluster_of_backend: RedisClusterProcesses | None
) -> AsyncIterator[Backend]:
    name: str = request.param
    buses: list[Bus] = []
    clients: list[AnyRedis] = []
    admin: redis.asyncio.Redis | None = None

    async def new_redis_node(kinds: tuple[bytes, ...] = KINDS) -> Node:
        # A client of its own per hub, named (on every node of a cluster it connects
        # to), so a test can cut its subscription.
        client_name = f"conformance-{uuid.uuid4().hex[:12]}"
        if cluster_of_backend is not None:
            seeds = Settings(redis_cluster_nodes=cluster_of_backend.seeds).cluster_nodes
            client: AnyRedis = redis_cluster_client(seeds, client_name=client_name)
        else:
            client = redis_client(REDIS_URL, client_name=client_name)
        clients.append(client)
        bus = RedisCluster(client, HubMetrics())
        inbox = listen(bus, kinds)
        await bus.start()
        buses.append(bus)
        return Node(bus, inbox, client_name)

    if name == "memory":

        async def new_memory_node(kinds: tuple[bytes, ...] = KINDS) -> Node:
            bus = Cluster(node_id=f"local-{len(buses)}")
            inbox = listen(bus, kinds)
            await bus.start()
            buses.append(bus)
            return Node(bus, inbox)

        new_node = new_memory_node
    elif name == "cluster":
        assert cluster_of_backend is not None
        await flush_primaries(cluster_of_backend)
        new_node = new_redis_node
    else:
        assert name == "redis"
        need_service("Redis", await redis_problem())
        admin = redis_client(REDIS_URL)
        await admin.flushdb()  # the worker's own database (tests.conftest)
        new_node = new_redis_node
    try:
        yield Backend(name, SHARED[name], new_node, admin, cluster_of_backend)
    finally:
        for bus in buses:
            await bus.close()
        for client in clients:
            await client.aclose()
        if admin is not None:
            await admin.flushdb()
            await admin.aclose()
        if cluster_of_backend is not None:
            await flush_primaries(cluster_of_backend)


def new_session() -> tuple[str, str]:
    """A (center, session) of the test's own: channels are shared by the whole server."""
    return "c-conf", f"s-{uuid.uuid4().hex}"


def channel(session: tuple[str, str]) -> str:
    return session_channel(*session)


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# -- the capability flag and identities --------------------------------------------


async def test_the_shared_flag_says_whether_other_hubs_share_the_sessions(
    backend: Backend,
) -> None:
    a, b = await backend.new_node(), await backend.new_node()
    assert a.bus.shared is backend.shared
    assert isinstance(a.bus.node_id, str) and a.bus.node_id
    if backend.shared:
        # Frames are told apart by their hub's id: no two hubs share one.
        assert a.bus.node_id != b.bus.node_id


# -- delivery ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_frames_reach_every_other_hub_watching_the_channel(backend: Backend) -> None:
    a, b, c = [await backend.new_node() for _ in range(3)]
    session = new_session()
    await b.bus.watch(*session)
    await c.bus.watch(*session)
    sent = [(EMIT, b"emit " + AWKWARD), (CANVAS, b"canvas " + AWKWARD), (CONTROL, b'{"x":1}')]
    for kind, payload in sent:
        a.bus.publish(channel(session), kind, payload)
    for node in (b, c):
        await node.inbox.until(sent[-1][1])
        assert node.inbox.frames == sent


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_sessions_watched_all_at_once_on_a_new_hub_each_hear_their_frames(
    backend: Backend,
) -> None:
    """A class's tutors joining a hub that just started: every one of the watches,
    made at once, hears its session (not only the one that opened the connection)."""
    a, b = await backend.new_node(), await backend.new_node()
    sessions = [new_session() for _ in range(20)]
    await asyncio.gather(*(b.bus.watch(*session) for session in sessions))
    for n, session in enumerate(sessions):
        a.bus.publish(channel(session), EMIT, b"to session %d" % n)
    for n in range(len(sessions)):
        await b.inbox.until(b"to session %d" % n)


@pytest.mark.parametrize("backend", params(), indirect=True)
async def test_a_hub_never_receives_its_own_frames(backend: Backend) -> None:
    a = await backend.new_node()
    session = new_session()
    await a.bus.watch(*session)
    for n in range(5):
        a.bus.publish(channel(session), EMIT, b"own %d" % n)
    if not backend.shared:
        await turns()  # alone: nothing published, nothing heard
        assert a.inbox.frames == []
        return
    # Another hub hears them all, then answers: by the time a hears the answer, its
    # own frames (published earlier on the same channel) would have reached it.
    b = await backend.new_node()
    await b.bus.watch(*session)
    a.bus.publish(channel(session), EMIT, b"own last")
    await b.inbox.until(b"own last")
    b.bus.publish(channel(session), EMIT, b"answer")
    await a.inbox.until(b"answer")
    assert a.inbox.payloads() == [b"answer"]


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_frames_arrive_in_the_order_each_hub_published_them_on_each_channel(
    backend: Backend,
) -> None:
    """In order per publishing hub on each channel; two publishers' frames, and one
    publisher's on different channels, interleave as they may (on Redis Cluster the
    channels live on different shards, each read over its own connection)."""
    a, b, reader = [await backend.new_node() for _ in range(3)]
    sessions = [new_session() for _ in range(3)]
    for session in sessions:
        await reader.bus.watch(*session)
    sent: dict[tuple[bytes, int], list[bytes]] = {}
    for n in range(300):
        for name, node in ((b"a", a), (b"b", b)):
            payload = name + b" %d %03d" % (n % len(sessions), n)
            node.bus.publish(channel(sessions[n % len(sessions)]), EMIT, payload)
            sent.setdefault((name, n % len(sessions)), []).append(payload)
    await eventually(lambda: len(reader.inbox.payloads()) >= 600, what="600 frames")
    got = reader.inbox.payloads()
    assert len(got) == 600
    for (name, session), payloads in sent.items():
        prefix = name + b" %d " % session
        assert [p for p in got if p.startswith(prefix)] == payloads


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_frames_reach_the_handler_of_their_kind_only(backend: Backend) -> None:
    a = await backend.new_node()
    b = await backend.new_node(kinds=(EMIT,))  # no handler for CANVAS or CONTROL
    session = new_session()
    await b.bus.watch(*session)
    a.bus.publish(channel(session), CANVAS, b"canvas")
    a.bus.publish(channel(session), CONTROL, b"control")
    a.bus.publish(channel(session), b"?", b"unknown kind")
    a.bus.publish(channel(session), EMIT, b"emit")
    await b.inbox.until(b"emit")
    assert b.inbox.frames == [(EMIT, b"emit")]


# -- watch and unwatch ---------------------------------------------------------


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_watch_hears_every_frame_published_once_it_returned(backend: Backend) -> None:
    """A join reads the session's state right after ``watch``: what another hub
    publishes from then on must reach this hub, with no pause in between."""
    a, b = await backend.new_node(), await backend.new_node()
    for n in range(20):
        session = new_session()
        await b.bus.watch(*session)
        a.bus.publish(channel(session), EMIT, b"right after %d" % n)
    for n in range(20):
        await b.inbox.until(b"right after %d" % n)


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_a_hub_hears_only_the_channels_it_watches(backend: Backend) -> None:
    a, b, witness = [await backend.new_node() for _ in range(3)]
    watched, other = new_session(), new_session()
    await b.bus.watch(*watched)
    await witness.bus.watch(*other)
    # Before b watches ``other``: not for b.
    a.bus.publish(channel(other), EMIT, b"before")
    await witness.inbox.until(b"before")
    a.bus.publish(channel(watched), EMIT, b"marker 1")
    await b.inbox.until(b"marker 1")
    await b.bus.watch(*other)
    a.bus.publish(channel(other), EMIT, b"after")
    a.bus.publish(channel(watched), EMIT, b"marker 2")
    await b.inbox.until(b"marker 2")
    await b.inbox.until(b"after")  # not ordered with marker 2: another channel
    assert sorted(b.inbox.payloads()) == [b"after", b"marker 1", b"marker 2"]


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_watching_twice_hears_each_frame_once(backend: Backend) -> None:
    a, b = await backend.new_node(), await backend.new_node()
    session = new_session()
    await b.bus.watch(*session)
    await b.bus.watch(*session)  # a second member of the session joined here
    a.bus.publish(channel(session), EMIT, b"one")
    a.bus.publish(channel(session), EMIT, b"two")
    await b.inbox.until(b"two")
    await turns()
    assert b.inbox.payloads() == [b"one", b"two"]


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_unwatch_stops_hearing_the_session(backend: Backend) -> None:
    """The contract: "a frame published while a hub is not watching the channel ... is
    not delivered to it", from the moment ``unwatch`` returns."""
    a, b = await backend.new_node(), await backend.new_node()
    left, still = new_session(), new_session()
    await b.bus.watch(*left)
    await b.bus.watch(*still)
    a.bus.publish(channel(left), EMIT, b"while watched")
    await b.inbox.until(b"while watched")
    for n in range(10):
        b.bus.unwatch(*left)
        a.bus.publish(channel(left), EMIT, b"after unwatch %d" % n)
        a.bus.publish(channel(still), EMIT, b"marker %d" % n)
        await b.inbox.until(b"marker %d" % n)
        await b.bus.watch(*left)
        await b.bus.watch(*still)
    assert [p for p in b.inbox.payloads() if p.startswith(b"after unwatch")] == []


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_watching_again_right_after_unwatch_hears_again(backend: Backend) -> None:
    """The last member leaves and another joins at once: the channel stays heard."""
    a, b = await backend.new_node(), await backend.new_node()
    session = new_session()
    await b.bus.watch(*session)
    b.bus.unwatch(*session)
    await b.bus.watch(*session)
    await turns()  # whatever unwatch left to do is done
    a.bus.publish(channel(session), EMIT, b"heard")
    await b.inbox.until(b"heard")


# -- outages -------------------------------------------------------------------------


async def cut_subscription(backend: Backend, node: Node) -> None:
    """Close the hub's pub/sub connection from the server's side (that one only). On a
    cluster, every pub/sub connection the hub has, on whichever nodes hold one: all
    listed first, then killed, so none the hub opens again meanwhile is cut too."""
    assert node.client_name is not None
    if backend.cluster is not None:
        held = []
        for server in backend.cluster.nodes:
            if server.alive:
                listing = await server.client().client_list(_type="pubsub")
                held += [(server, c["id"]) for c in listing if c.get("name") == node.client_name]
        assert held, f"expected pub/sub connections named {node.client_name} on a node"
        killed = 0
        for server, client_id in held:
            killed += await server.client().client_kill_filter(_id=client_id)
        assert killed >= 1, f"expected to kill one of {held}"
        return
    assert backend.admin is not None
    listing = await backend.admin.client_list(_type="pubsub")
    ids = [client["id"] for client in listing if client.get("name") == node.client_name]
    assert len(ids) == 1, listing
    assert await backend.admin.client_kill_filter(_id=ids[0]) == 1


@pytest.mark.parametrize("backend", params(), indirect=True)
async def test_reconnect_hooks_run_after_the_subscription_was_down(backend: Backend) -> None:
    """And once they run, every frame published reaches the hub again. Alone (memory),
    there is no subscription to lose: its hooks never run."""
    a, b = await backend.new_node(), await backend.new_node()
    session = new_session()
    ran: list[str] = []

    async def hook() -> None:
        ran.append("hook")

    b.bus.on_reconnect(hook)
    await b.bus.watch(*session)
    if not backend.shared:
        b.bus.unwatch(*session)
        await turns()
        assert ran == []
        return
    a.bus.publish(channel(session), EMIT, b"before")
    await b.inbox.until(b"before")
    assert ran == []  # watching and hearing are no outage
    await cut_subscription(backend, b)
    await eventually(lambda: ran == ["hook"], within=5, what="the reconnect hook")
    a.bus.publish(channel(session), EMIT, b"after")
    await b.inbox.until(b"after")
    assert ran == ["hook"]


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_after_an_outage_every_watched_session_is_heard_again(backend: Backend) -> None:
    """Many sessions (on a cluster, channels on every shard, each shard's its own
    connection, all cut): the hooks run once, and then each session hears again."""
    a, b = await backend.new_node(), await backend.new_node()
    sessions = [new_session() for _ in range(30)]
    ran: list[str] = []

    async def hook() -> None:
        ran.append("hook")

    b.bus.on_reconnect(hook)
    await asyncio.gather(*(b.bus.watch(*session) for session in sessions))
    a.bus.publish(channel(sessions[-1]), EMIT, b"before")
    await b.inbox.until(b"before")
    await cut_subscription(backend, b)
    await eventually(lambda: ran == ["hook"], within=5, what="the reconnect hook")
    for n, session in enumerate(sessions):
        a.bus.publish(channel(session), EMIT, b"after %d" % n)
    for n in range(len(sessions)):
        await b.inbox.until(b"after %d" % n)
    await turns()
    assert ran == ["hook"]


# -- leases ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", params(), indirect=True)
async def test_one_hub_at_a_time_leads_a_job(backend: Backend) -> None:
    """Shared: the first to ask holds the lease, the others do not. Alone: every hub
    process is its own cluster, and leads."""
    a, b = await backend.new_node(), await backend.new_node()
    job = f"job-{uuid.uuid4().hex[:8]}"
    assert await a.bus.lead(job, 60)
    assert await a.bus.lead(job, 60)  # renewed by its holder
    assert await b.bus.lead(job, 60) is (not backend.shared)


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_leases_of_different_jobs_are_held_apart(backend: Backend) -> None:
    a, b = await backend.new_node(), await backend.new_node()
    first, second = f"job-{uuid.uuid4().hex[:8]}", f"job-{uuid.uuid4().hex[:8]}"
    assert await a.bus.lead(first, 60)
    assert await b.bus.lead(second, 60)
    assert not await b.bus.lead(first, 60)
    assert not await a.bus.lead(second, 60)


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_the_lease_passes_on_when_its_holder_stops_renewing(backend: Backend) -> None:
    a, b = await backend.new_node(), await backend.new_node()
    job = f"job-{uuid.uuid4().hex[:8]}"
    assert await a.bus.lead(job, LEASE_S)
    # a renews well within its lease: b never gets it while a's renewal is fresh. A
    # round in which this process stalled past the lease between the two asks proves
    # nothing either way (seen under a loaded CI run); it is not counted.
    loop = asyncio.get_running_loop()
    until, conclusive = loop.time() + 3 * LEASE_S, 0
    while loop.time() < until:
        renewing_at = loop.time()
        assert await a.bus.lead(job, LEASE_S)
        b_leads = await b.bus.lead(job, LEASE_S)
        if loop.time() - renewing_at < LEASE_S:
            assert not b_leads, "b took the lease a had renewed within it"
            conclusive += 1
        elif b_leads:  # a's lease ran out during the stall: let b's run out too
            await eventually(lambda: a.bus.lead(job, LEASE_S), within=5, what="a to lead")
        await asyncio.sleep(LEASE_S / 3)
    assert conclusive >= 3, f"only {conclusive} rounds ran within the lease"
    # a stops asking: once its lease runs out, b takes it, and a no longer leads.
    await eventually(lambda: b.bus.lead(job, LEASE_S), within=5, what="b to lead")
    assert not await a.bus.lead(job, LEASE_S)


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_a_hub_that_stops_hands_its_lease_on_at_once(backend: Backend) -> None:
    """A rolling restart does not leave the sweeps unled for a whole lease."""
    a, b = await backend.new_node(), await backend.new_node()
    job, other = f"job-{uuid.uuid4().hex[:8]}", f"job-{uuid.uuid4().hex[:8]}"
    assert await a.bus.lead(job, 60)
    assert await b.bus.lead(other, 60)
    await a.bus.close()
    assert await b.bus.lead(job, 60)
    # Closing releases only its own: b's lease of the other job stays b's.
    c = await backend.new_node()
    assert not await c.bus.lead(other, 60)


async def test_more_commands_at_once_than_the_pool_holds_wait_for_a_connection() -> None:
    """redis-py's own pool refuses a command when every connection is busy; the hub's
    waits: 20 blocking commands on a pool of 2 all complete."""
    need_service("Redis", await redis_problem())
    client = redis_client(REDIS_URL, max_connections=2)
    key = f"hub:test:empty:{uuid.uuid4().hex}"
    try:
        answers = await asyncio.gather(*(client.blpop([key], timeout=0.05) for _ in range(20)))
        assert answers == [None] * 20
    finally:
        await client.aclose()
