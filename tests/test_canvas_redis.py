"""Several hubs ("nodes") writing the same canvases through the store with a
``LeasedSequencer``.

Each node is a store instance of its own (its own node id, committer and
replicas) in this process, all on one real Redis (db 15, a key prefix per
test) and one real database (SQLite and Postgres). The cluster layer is
imitated by a bus: it subscribes to the session's channel and hands each
``CANVAS`` frame to every node but its sender, as ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis.asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from canvas.document import Author, plain, replay
from canvas.sequencer import Unavailable
from canvas.sequencer_leased import LeasedSequencer
from canvas.store import CanvasKey, CatchUp, Patch
from canvas.store_sequenced import SequencedCanvasStore
from persistence.batch import BatchWriter, Rows, batch_writer
from persistence.db import session_factory
from persistence.models import CanvasOp, LiveSession
from realtime.base.errors import ErrorCode, HubError
from realtime.base.metrics import HubMetrics
from realtime.bus.bus import CANVAS, session_channel, unframe
from realtime.bus.bus_redis import redis_client
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.processes import RedisServer
from tests.support import eventually

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TAKEOVER_S = 0.3


def stroke(element_id: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": f"/elements/{element_id}", "value": {"type": "stroke"}}]


def mark(annotation_id: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": f"/annotations/{annotation_id}", "value": {"type": "text"}}]


class GatedWriter:
    """A batch writer that stores only while its gate is open (a slow or stuck commit)."""

    def __init__(self, inner: BatchWriter) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.committed_upto = 0  # highest op seq this writer has committed

    async def insert(self, rows: Rows) -> None:
        await self.gate.wait()
        await self.inner.insert(rows)
        seqs = [
            row["seq"]
            for table, values in rows.items()
            if table.name == "canvas_ops"
            for row in values
        ]
        self.committed_upto = max([self.committed_upto, *seqs])

    async def close(self) -> None:
        await self.inner.close()


class RedisProxy:
    """A TCP proxy to Redis on loopback that can go down and come back: an outage."""

    def __init__(self) -> None:
        target = urlsplit(REDIS_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.db = target.path.lstrip("/") or "0"
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.links:
            writer.close()
        self.links = []
        await self.server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@dataclass
class Node:
    store: SequencedCanvasStore
    writer: GatedWriter
    relayed: list[tuple[CanvasKey, Patch]] = field(default_factory=list)
    dead: bool = False
    deaf: bool = False  # its subscription is down: frames do not reach it

    def relayed_seqs(self, key: CanvasKey) -> list[int]:
        return [p.seq for k, p in self.relayed if k == key]

    def kill(self) -> None:
        """The process dies: its committer stops, whatever it had queued is gone."""
        committer = self.store.committer
        for task in [
            *self.store._tasks,
            *getattr(self.store.sequencer, "_tasks", []),
            committer._task,
        ]:
            assert task is not None
            task.cancel()
        committer._queue.clear()
        committer._idle.set()
        self.dead = True


@dataclass
class Cluster:
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    redis: redis.asyncio.Redis
    prefix: str
    key: CanvasKey
    nodes: list[Node] = field(default_factory=list)
    # Every patch published on the session channel, in publishing order: (sender, seq).
    published: list[tuple[str, int]] = field(default_factory=list)
    add_node: Callable[..., Awaitable[Node]] | None = None

    async def stored_ops(self) -> list[CanvasOp]:
        async with self.db() as db:
            rows = await db.scalars(
                select(CanvasOp)
                .where(CanvasOp.session_id == self.key.session_id)
                .order_by(CanvasOp.seq)
            )
            return list(rows.all())

    async def stored_doc(self) -> dict[str, Any]:
        return replay(None, [op.ops for op in await self.stored_ops()])

    async def redis_seqs(self) -> tuple[int, int]:
        """(seq, dseq) in Redis, or, while a node holds the canvas, that node's."""
        m = f"{self.prefix}{{{self.key.session_id}:{self.key.student_id}}}:m"
        seq, dseq, holder = await self.redis.hmget(m, "seq", "dseq", "pnode")
        for node in self.nodes:
            sequencer = node.store.sequencer
            if isinstance(sequencer, LeasedSequencer) and holder and not node.dead:
                held = sequencer.holds(self.key)
                if held is not None and node.store.node_id == holder.decode():
                    return held
        return int(seq or 0), int(dseq or 0)


@pytest.fixture
async def redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The tests' Redis; ``own`` (indirect): a redis-server of the test's own, for a
    test that flushes the scripts, which every database of a server shares."""
    if getattr(request, "param", None) != "own":
        need_service("Redis", await redis_problem())
        yield REDIS_URL
        return
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def cluster(engine: AsyncEngine, redis_url: str) -> AsyncIterator[Cluster]:
    db = session_factory(engine)
    async with db.begin() as session:
        live = LiveSession(
            center_id="c1",
            title="Shapes",
            tutor_id="tutor-1",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            status="LIVE",
            max_students=5,
            settings={},
            created_by="tutor-1",
        )
        session.add(live)
    client = redis_client(redis_url)
    prefix = f"test:{uuid.uuid4().hex[:12]}:cv:"
    cluster = Cluster(engine, db, client, prefix, CanvasKey("c1", live.id, "s1"))

    async def add_node(
        name: str, takeover_s: float = TAKEOVER_S, through: redis.asyncio.Redis | None = None
    ) -> Node:
        writer = GatedWriter(batch_writer(engine))
        node = Node(None, writer)  # type: ignore[arg-type]
        node.store = SequencedCanvasStore(
            db=db,
            writer=writer,
            sequencer=LeasedSequencer(
                through or client,
                node_id=name,
                prefix=prefix,
                lease_s=takeover_s,
                metrics=HubMetrics(),
            ),
            takeover_s=takeover_s,
            on_durable=node.relayed.extend,
        )
        await node.store.start()
        cluster.nodes.append(node)
        return node

    cluster.add_node = add_node
    pubsub = client.pubsub()
    await pubsub.subscribe(session_channel("c1", live.id))

    async def bus() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            sender, kind, payload = unframe(message["data"])
            assert kind == CANVAS
            for item in orjson.loads(payload)["patches"]:
                cluster.published.append((sender, item["seq"]))
            for node in cluster.nodes:
                if node.store.node_id != sender and not node.dead and not node.deaf:
                    node.store.receive(payload)

    delivering = asyncio.create_task(bus())
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            with contextlib.suppress(Exception):
                if node.dead:  # what the OS closes of a dead process
                    await node.writer.close()
                    await node.store.sequencer.close()
                else:
                    await asyncio.wait_for(node.store.close(), 10)
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
        await pubsub.aclose()
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
        await client.aclose()


async def nodes(cluster: Cluster, *names: str, **kw: Any) -> list[Node]:
    assert cluster.add_node is not None
    return [await cluster.add_node(name, **kw) for name in names]


async def acked(node: Node, key: CanvasKey, author: Author, ops: list[dict[str, Any]]) -> int:
    accepted = await node.store.append(key, author, f"{author.value}-1", ops)
    await accepted.durable
    return accepted.patch.seq


def handovers(node: Node, event: str) -> float:
    """``hub_canvas_handovers_total{event}`` of a node's sequencer."""
    assert isinstance(node.store.sequencer, LeasedSequencer)
    metrics = node.store.sequencer._metrics
    assert metrics is not None
    value = metrics.registry.get_sample_value("hub_canvas_handovers_total", {"event": event})
    return value or 0.0


async def converged(cluster: Cluster, count: int) -> None:
    """Every live node relayed all ``count`` patches, and every replica is at ``count``."""
    key = cluster.key

    def done() -> bool:
        return all(n.relayed_seqs(key)[-1:] == [count] for n in cluster.nodes if not n.dead)

    await eventually(done, within=10, what=f"{count} patches relayed on every node")
    expected = await cluster.stored_doc()
    for node in cluster.nodes:
        if node.dead:
            continue
        # Relayed here in seq order, once each.
        relayed = [(p.epoch, p.seq) for k, p in node.relayed if k == key]
        # A canvas taken over starts again in a new epoch from the database: the
        # patches its holder stored but never published are in the document the
        # clients take at the new epoch.
        for (epoch, seq), (next_epoch, next_seq) in itertools.pairwise(relayed):
            assert next_seq == seq + 1 or (next_seq > seq and next_epoch != epoch)
        whole = await node.store.catch_up(key, None)
        assert whole.position.offset == count
        assert plain(whole.doc) == expected, node.store.node_id
        log = await node.store.catch_up(key, 0)
        assert log.patches is not None
        assert [p.seq for p in log.patches] == list(range(1, count + 1))
        assert replay(None, [orjson.loads(p.ops) for p in log.patches]) == expected
        assert node.store.replicas.loaded[key].doc.plain() == expected


async def test_interleaved_appends_from_two_nodes_get_gap_free_seqs_and_converge(
    cluster: Cluster,
) -> None:
    a, b, c = await nodes(cluster, "node-a", "node-b", "node-c")
    key = cluster.key

    async def draw(
        node: Node, author: Author, ops: Callable[[str], list[dict[str, Any]]]
    ) -> list[int]:
        return [await acked(node, key, author, ops(f"{node.store.node_id}-{i}")) for i in range(15)]

    results = await asyncio.gather(
        draw(a, Author.TUTOR, mark),
        draw(b, Author.STUDENT, stroke),
        draw(c, Author.STUDENT, stroke),
    )
    seqs = sorted(s for r in results for s in r)
    assert seqs == list(range(1, 46))
    for result in results:
        assert result == sorted(result)  # one writer's patches keep their order
    stored = await cluster.stored_ops()
    assert [op.seq for op in stored] == seqs
    assert len({op.epoch for op in stored}) == 1
    await converged(cluster, 45)
    # Published once each, in seq order, whichever node stored them.
    assert [seq for _, seq in cluster.published] == seqs
    assert await cluster.redis_seqs() == (45, 45)
    # Three writers of one canvas: it went from hand to hand, and the metrics say so.
    taken = [handovers(node, "taken") for node in (a, b, c)]
    assert all(n >= 1 for n in taken), taken
    let_go = sum(handovers(node, "let_go") for node in (a, b, c))
    assert let_go >= sum(taken) - 1  # all but the last holder's


async def test_a_node_that_dies_before_committing_is_taken_over(cluster: Cluster) -> None:
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("acked-on-a")) == 1
    assert await acked(b, key, Author.TUTOR, mark("acked-on-b")) == 2
    a.writer.gate.clear()  # a's next commit never finishes
    pending = await a.store.append(key, Author.STUDENT, "student-1", stroke("assigned-on-a"))
    assert pending.patch.seq == 3
    await eventually(
        lambda: a.store.committer._queue == [] and not a.store.committer._idle.is_set(),
        what="a commits",
    )
    a.kill()

    # a held the canvas: b waits for a's key to expire, then takes the canvas from the
    # database in a new epoch. a's patch 3 was never acked: it is gone.
    assert await acked(b, key, Author.TUTOR, mark("after-takeover")) == 3
    stored = await cluster.stored_ops()
    assert [op.seq for op in stored] == [1, 2, 3]
    assert stored[2].epoch != stored[1].epoch
    doc = await cluster.stored_doc()
    assert set(doc["elements"]) == {"acked-on-a"}
    assert set(doc["annotations"]) == {"acked-on-b", "after-takeover"}
    assert plain((await b.store.catch_up(key, None)).doc) == doc
    assert b.relayed_seqs(key) == [1, 2, 3]


async def test_flushdb_mid_stream_starts_a_new_epoch_and_loses_nothing_acked(
    cluster: Cluster,
) -> None:
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    acks: dict[int, str] = {}
    flushed = asyncio.Event()

    async def draw(node: Node, author: Author, ops: Callable[[str], list[dict[str, Any]]]) -> None:
        for i in range(40):
            name = f"{node.store.node_id}-{i}"
            try:
                acks[await acked(node, key, author, ops(name))] = name
            except HubError as exc:
                assert exc.code is ErrorCode.INTERNAL  # refused, retryable: not acked
            if i == 10 and node is a:
                await cluster.redis.flushdb()
                flushed.set()

    before = await a.store.catch_up(key, None)
    await asyncio.gather(draw(a, Author.STUDENT, stroke), draw(b, Author.TUTOR, mark))
    assert flushed.is_set()
    after_a = await a.store.catch_up(key, None)
    after_b = await b.store.catch_up(key, None)
    # A hub whose key was flushed lets go of the canvases it held, also one taken
    # since; its next read resets the state, once more in a new epoch. Both settle.
    for _ in range(5):
        if after_a.position == after_b.position:
            break
        after_a = await a.store.catch_up(key, None)
        after_b = await b.store.catch_up(key, None)
    assert after_a.position == after_b.position
    assert after_a.position.epoch != before.position.epoch  # clients take the document again

    stored = await cluster.stored_ops()
    assert [op.seq for op in stored] == list(range(1, len(stored) + 1))  # seqs went on
    # a holds the canvas until it renews its key and finds it gone; meanwhile b set
    # the state up again and both wrote: the database refused one of each pair,
    # which was not acked, and each refusal started the canvas again.
    assert len({op.epoch for op in stored}) >= 2
    assert after_a.position.offset == len(stored)
    doc = await cluster.stored_doc()
    assert plain(after_a.doc) == plain(after_b.doc) == doc
    for seq, name in acks.items():
        assert stored[seq - 1].seq == seq
        assert name in doc["elements"] or name in doc["annotations"], (seq, name)
    # And the stream goes on, in the epoch the hubs settle on.
    seq = await acked(b, key, Author.TUTOR, mark("later"))
    assert seq == len(stored) + 1


@pytest.mark.parametrize("redis_url", ["own"], indirect=True)
async def test_scripts_lost_in_redis_are_loaded_again_and_run_once(cluster: Cluster) -> None:
    """Redis forgot its scripts (SCRIPT FLUSH, as after a restart): the next take of the
    canvas loads them again; each patch gets one seq, and is stored and relayed once."""
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("before")) == 1
    await cluster.redis.script_flush()
    assert await acked(a, key, Author.STUDENT, stroke("after")) == 2
    await cluster.redis.script_flush()
    assert await acked(b, key, Author.TUTOR, mark("from-b")) == 3
    await converged(cluster, 3)
    assert [seq for _, seq in cluster.published] == [1, 2, 3]
    assert [op.seq for op in await cluster.stored_ops()] == [1, 2, 3]
    assert a.relayed_seqs(key) == b.relayed_seqs(key) == [1, 2, 3]


async def test_a_hub_back_from_a_redis_outage_hands_on_what_it_missed(cluster: Cluster) -> None:
    """Frames published while a hub's subscription is down never reach it. Once it is
    back, ``resume`` hands on the durable patches it missed, from the database, each
    once and in order: also the last ones, whose gap no later patch would reveal."""
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("x1")) == 1
    await converged(cluster, 1)
    b.deaf = True
    for i in (2, 3, 4):
        assert await acked(a, key, Author.STUDENT, stroke(f"x{i}")) == i
    await eventually(lambda: len(cluster.published) == 4, within=5, what="4 published")
    assert b.relayed_seqs(key) == [1]
    b.deaf = False
    await b.store.resume()
    assert b.relayed_seqs(key) == [1, 2, 3, 4]
    await b.store.resume()  # nothing twice
    assert b.relayed_seqs(key) == [1, 2, 3, 4]
    assert plain((await b.store.catch_up(key, None)).doc) == await cluster.stored_doc()

    # Redis lost its state while b was deaf: b hands on the new epoch's patches.
    epoch = (await a.store.catch_up(key, None)).position.epoch
    b.deaf = True
    await cluster.redis.flushdb()
    sequencer = a.store.sequencer
    assert isinstance(sequencer, LeasedSequencer)
    # a renews its key, finds it gone, lets go.
    await eventually(lambda: sequencer.holds(key) is None, what="a lets the canvas go")
    assert await acked(a, key, Author.STUDENT, stroke("x5")) == 5
    assert await acked(a, key, Author.STUDENT, stroke("x6")) == 6
    new_epoch = (await a.store.catch_up(key, None)).position.epoch
    assert new_epoch != epoch
    b.deaf = False
    await b.store.resume()
    got = [(p.epoch, p.seq) for k, p in b.relayed if k == key]
    # A frame of the new epoch may reach b before its resume reads the database: then
    # what lies before it is skipped, and clients take the document at the new epoch
    # anyway.
    assert got[:4] == [(epoch, 1), (epoch, 2), (epoch, 3), (epoch, 4)]
    assert got[-1] == (new_epoch, 6) and set(got[4:]) <= {(new_epoch, 5), (new_epoch, 6)}
    assert plain((await b.store.catch_up(key, None)).doc) == await cluster.stored_doc()


async def test_refused_ops_change_nothing_on_any_node(cluster: Cluster) -> None:
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("x")) == 1
    await converged(cluster, 1)
    refused = [
        (a, Author.TUTOR, stroke("tutor-may-not"), ErrorCode.FORBIDDEN),
        (
            b,
            Author.STUDENT,
            [{"op": "replace", "path": "/elements/missing", "value": 1}],
            ErrorCode.CONFLICT,
        ),
        (
            b,
            Author.STUDENT,
            [*stroke("half"), {"op": "test", "path": "/elements/x", "value": 0}],
            ErrorCode.CONFLICT,
        ),
    ]
    for node, author, ops, code in refused:
        with pytest.raises(HubError) as refusal:
            await node.store.append(key, author, "someone", ops)
        assert refusal.value.code is code, (ops, refusal.value)
    assert await cluster.redis_seqs() == (1, 1)
    await converged(cluster, 1)
    assert await acked(b, key, Author.TUTOR, mark("next")) == 2
    await converged(cluster, 2)


async def test_catch_up_never_returns_an_undurable_patch(cluster: Cluster) -> None:
    a, b = await nodes(cluster, "node-a", "node-b", takeover_s=30)
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("one")) == 1
    await converged(cluster, 1)
    a.writer.gate.clear()
    pending = await a.store.append(key, Author.STUDENT, "student-1", stroke("two"))
    assert await cluster.redis_seqs() == (2, 1)

    # While seq 2 is not stored, answers hold only seq 1, on either node.
    for node in (a, b):
        assert (await node.store.catch_up(key, 1)).patches == []
        log = await node.store.catch_up(key, 0)
        assert log.position.offset == 1
        assert log.patches is not None and [p.seq for p in log.patches] == [1]
    whole_b = await b.store.catch_up(key, None)
    assert whole_b.position.offset == 1 and set(whole_b.doc["elements"]) == {"one"}
    # a's document holds seq 2: a answers with it only once it is stored.

    async def answered() -> tuple[CatchUp, int]:
        """The catch-up, and what the writer had committed when it came back."""
        answer = await a.store.catch_up(key, None)
        return answer, a.writer.committed_upto

    whole = asyncio.create_task(answered())
    await eventually(lambda: a.writer.committed_upto == 1 and not whole.done(), what="waiting")
    a.writer.gate.set()
    await pending.durable
    answer, committed_when_answered = await whole
    assert answer.position.offset == 2 and set(answer.doc["elements"]) == {"one", "two"}
    assert committed_when_answered == 2
    await converged(cluster, 2)


async def test_a_redis_outage_refuses_appends_retryably_and_the_node_recovers(
    cluster: Cluster,
) -> None:
    proxy = RedisProxy()
    await proxy.start()
    through = redis_client(proxy.url, socket_connect_timeout=1, socket_timeout=2)
    try:
        assert cluster.add_node is not None
        a = await cluster.add_node("node-a", through=through)
        (b,) = await nodes(cluster, "node-b")
        key = cluster.key
        assert await acked(a, key, Author.STUDENT, stroke("before")) == 1
        await proxy.stop()
        # a holds the canvas: it goes on without Redis until its key may have expired;
        # b then takes the canvas over from the database in a new epoch.
        assert await acked(a, key, Author.STUDENT, stroke("during")) == 2
        assert await acked(b, key, Author.TUTOR, mark("other-node")) == 3
        await proxy.start()
        assert await acked(a, key, Author.STUDENT, stroke("after")) == 4
        await converged(cluster, 4)
        doc = await cluster.stored_doc()
        assert set(doc["elements"]) == {"before", "during", "after"}
        assert set(doc["annotations"]) == {"other-node"}
    finally:
        for node in cluster.nodes:
            await node.store.close()
        cluster.nodes.clear()
        await through.aclose()
        await proxy.stop()


@pytest.mark.parametrize("cluster", ["leased"], indirect=True)
async def test_a_hub_ignores_an_unreadable_request_and_goes_on_listening(
    cluster: Cluster,
) -> None:
    """Garbage on a hub's own channel (only hubs publish there) is logged and skipped:
    the next real request still makes the hub let its canvas go."""
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("on-a")) == 1
    for garbage in (b"not json", b"[1, 2]", b'{"a": 1}'):
        await cluster.redis.publish(f"{cluster.prefix}node:node-a", garbage)
    assert await acked(b, key, Author.TUTOR, mark("on-b")) == 2  # a was asked, let go
    assert a.store.sequencer.holds(key) is None  # type: ignore[attr-defined]


async def test_a_patch_whose_frame_has_not_come_when_the_hub_takes_the_canvas_is_handed_on(
    cluster: Cluster,
) -> None:
    """b relays a's patches to its clients from a's frames. The frame of a's last patch
    has not reached b (on Redis Cluster it comes from its shard over a connection of
    its own, and may come after b took the canvas) when b's tutor writes: b takes the
    canvas, reloads it from the database (which holds that patch) and appends. The
    patch must still reach b's clients, before b's own, and once."""
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    for i in (1, 2):
        assert await acked(a, key, Author.STUDENT, stroke(f"x{i}")) == i
    await converged(cluster, 2)
    b.deaf = True  # the frame of patch 3 never comes (as if still on its way)
    assert await acked(a, key, Author.STUDENT, stroke("x3")) == 3
    await eventually(lambda: len(cluster.published) == 3, within=5, what="3 published")
    b.deaf = False
    assert await acked(b, key, Author.TUTOR, mark("on-b")) == 4
    await eventually(lambda: b.relayed_seqs(key)[-1:] == [4], within=5, what="4 relayed on b")
    assert b.relayed_seqs(key) == [1, 2, 3, 4]


async def test_a_hub_back_from_an_outage_hands_on_what_it_missed_when_redis_cannot_say(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming, Redis cannot tell where a canvas stands (on a cluster, its slot is
    moving: ``ClusterError``): what the hub missed is in the database all the same."""
    a, b = await nodes(cluster, "node-a", "node-b")
    key = cluster.key
    assert await acked(a, key, Author.STUDENT, stroke("x1")) == 1
    await converged(cluster, 1)
    b.deaf = True
    for i in (2, 3):
        assert await acked(a, key, Author.STUDENT, stroke(f"x{i}")) == i
    await eventually(lambda: len(cluster.published) == 3, within=5, what="3 published")
    b.deaf = False

    async def unanswered(key: CanvasKey) -> None:
        raise Unavailable()

    with monkeypatch.context() as patched:
        patched.setattr(b.store.sequencer, "state", unanswered)
        await b.store.resume()
    assert b.relayed_seqs(key) == [1, 2, 3]
