"""Random interleavings of canvas traffic against a real hub converge on one document.

Each hypothesis example opens a fresh session on one hub (started once per test,
for each database) with a tutor and two students, ``s1`` with up to two tabs.
It then runs a random list of actions: student patches on elements and meta,
tutor annotations, disconnects and re-joins (with ``since`` = what the client
holds), and bursts of 2-3 of these from different clients at once. Every
simulated client keeps a replica per canvas the way a real client would: it
applies relayed ``canvas:patches`` items in seq order, drops seqs it holds,
and on a gap asks ``canvas:sync`` for what it missed; a student's replica also
applies its own acked patches (the ack gives only the seq).

At the end, for every canvas:

1. the acked seqs are exactly 1..N, each once;
2. the hub's effective ops (``canvas:sync since=0``) are the sent ops minus
   the no-op removes, so the expected document is their replay in seq order;
3. the tutor's replica, every student tab's replica, the REST document (from
   the live hub, and from a second hub on the same database, which reads
   what was stored), and a fresh join without ``since`` all equal it.

Along the way: a relayed stream never goes backwards on one connection,
never echoes a patch to the socket that sent it, never shows a student
another student's canvas, every catch-up answer starts right after ``since``
(the log's retention is large), and epochs never change.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from canvas.document import replay
from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually, session_body

SESSIONS = "/api/v1/sessions"
TUTOR = "tutor-1"
STUDENTS = ("s1", "s2")
# Simulated clients: the tutor and student tabs (s1 has two, the second starts offline).
TABS = {"s1a": "s1", "s1b": "s1", "s2": "s2"}
CLIENTS = ("tutor", *TABS)
INITIALLY_ONLINE = ("tutor", "s1a", "s2")

Ops = list[dict[str, Any]]
WRITES = {"student": ("/elements/", "/meta/"), "tutor": ("/annotations/",)}

# -- strategies ----------------------------------------------------------------

# No "\x00" in text: Postgres JSONB cannot store it (see the separate test below).
small_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x24F), max_size=4)
content = st.fixed_dictionaries(
    {"type": st.sampled_from(["stroke", "rect", "text"]), "n": st.integers(-3, 99)},
    optional={
        "points": st.lists(st.integers(0, 9), max_size=3),
        "label": small_text,
    },
)
meta_value = st.one_of(st.integers(0, 9), small_text, st.booleans(), st.none())

element_id = st.sampled_from(["a", "b", "c", "d"])
annotation_id = st.sampled_from(["m1", "m2", "m3"])

student_op = st.one_of(
    st.builds(
        lambda i, v: {"op": "add", "path": f"/elements/{i}", "value": v}, element_id, content
    ),
    # replace is refused (CONFLICT) when the element is missing; add replaces freely.
    st.builds(
        lambda i, v: {"op": "replace", "path": f"/elements/{i}", "value": v}, element_id, content
    ),
    # "d" is rarely there, so removes of missing elements are common.
    st.builds(lambda i: {"op": "remove", "path": f"/elements/{i}"}, element_id),
    st.builds(lambda v: {"op": "add", "path": "/meta/x", "value": v}, meta_value),
    st.just({"op": "remove", "path": "/meta/x"}),
)
tutor_op = st.one_of(
    st.builds(
        lambda i, v: {"op": "add", "path": f"/annotations/{i}", "value": v}, annotation_id, content
    ),
    st.builds(lambda i: {"op": "remove", "path": f"/annotations/{i}"}, annotation_id),
)

student_patch = st.tuples(
    st.just("student"), st.sampled_from(list(TABS)), st.lists(student_op, min_size=1, max_size=3)
)
tutor_patch = st.tuples(
    st.just("tutor"), st.sampled_from(STUDENTS), st.lists(tutor_op, min_size=1, max_size=2)
)
toggle = st.tuples(st.just("toggle"), st.sampled_from(CLIENTS))
# session:join again on the socket it has (with since), or connect if it has none.
rejoin = st.tuples(st.just("rejoin"), st.sampled_from(CLIENTS))
# 2-3 patches from one socket, each sent before the previous ack came back.
pipeline = st.one_of(
    st.tuples(
        st.just("pipeline"),
        st.sampled_from(list(TABS)),
        st.lists(st.lists(student_op, min_size=1, max_size=2), min_size=2, max_size=3),
    ),
    st.tuples(
        st.just("pipeline"),
        st.just("tutor"),
        st.lists(
            st.tuples(st.sampled_from(STUDENTS), st.lists(tutor_op, min_size=1, max_size=2)),
            min_size=2,
            max_size=3,
        ),
    ),
)
single_action = st.one_of(
    student_patch, student_patch, tutor_patch, toggle, toggle, rejoin, pipeline
)


def client_of(action: tuple[Any, ...]) -> str:
    kind, who = action[0], action[1]
    return "tutor" if kind == "tutor" else str(who)


burst = st.tuples(
    st.just("burst"),
    st.lists(single_action, min_size=2, max_size=3, unique_by=client_of),
)
actions = st.lists(st.one_of(single_action, single_action, burst), min_size=5, max_size=25)

# -- the rules a client needs for its own acked patches ---------------------------


def apply_with_rules(doc: dict[str, Any], ops: Ops) -> Ops:
    """Apply sent ops the hub's way (a remove of a missing entry is a no-op); the
    effective ops. Raises ``jsonpatch`` errors where the hub refuses (CONFLICT)."""
    effective = []
    for op in ops:
        _, section, key = op["path"].split("/")
        if op["op"] == "remove" and key not in doc[section]:
            continue
        jsonpatch.apply_patch(doc, [copy.deepcopy(op)], in_place=True)
        effective.append(op)
    return effective


def empty() -> dict[str, Any]:
    return {"elements": {}, "annotations": {}, "meta": {}}


# -- a client's replica of one canvas -----------------------------------------------


@dataclass
class Replica:
    where: str
    seq: int = 0
    doc: dict[str, Any] = field(default_factory=empty)
    epoch: str | None = None
    # seq -> (ops, effective?) not yet applied: own acked patches carry the ops as
    # sent (applied with the rules), relayed and synced ones the effective ops.
    pending: dict[int, tuple[Ops, bool]] = field(default_factory=dict)
    applied: dict[int, Ops] = field(default_factory=dict)

    def offer(self, seq: int, ops: Ops, *, effective: bool = True) -> None:
        if seq <= self.seq:
            if effective and seq in self.applied:
                assert self.applied[seq] == ops, f"{self.where}: seq {seq} came with other ops"
            return
        held = self.pending.get(seq)
        if held is not None and held[1]:
            if effective:
                assert held[0] == ops, f"{self.where}: seq {seq} came with other ops"
            return
        self.pending[seq] = (ops, effective)
        self._drain()

    def _drain(self) -> None:
        while self.seq + 1 in self.pending:
            ops, effective = self.pending.pop(self.seq + 1)
            if effective:
                try:
                    jsonpatch.apply_patch(self.doc, copy.deepcopy(ops), in_place=True)
                except jsonpatch.JsonPatchException as exc:
                    raise AssertionError(
                        f"{self.where}: relayed ops of seq {self.seq + 1} do not apply "
                        f"with plain RFC 6902: {exc}; ops={ops} doc={self.doc}"
                    ) from None
                done = ops
            else:
                done = apply_with_rules(self.doc, ops)
            self.seq += 1
            self.applied[self.seq] = done

    def answer(self, view: dict[str, Any], since: int | None) -> None:
        """Apply a ``canvas:sync`` answer or a ``canvas`` of a join ack."""
        if self.epoch is None:
            self.epoch = view["epoch"]
        assert view["epoch"] == self.epoch, f"{self.where}: the epoch changed"
        assert view["seq"] >= self.seq, f"{self.where}: a catch-up went back from {self.seq}"
        if since is None:
            assert "doc" in view, view
            self.doc = copy.deepcopy(view["doc"])
            self.seq = view["seq"]
            self.pending = {s: p for s, p in self.pending.items() if s > self.seq}
            self._drain()
            return
        # since <= seq and the log keeps 1000 patches: exactly the patches after since.
        assert "ops" in view, f"{self.where}: since={since} answered with a document"
        assert [p["seq"] for p in view["ops"]] == list(range(since + 1, view["seq"] + 1)), (
            self.where,
            since,
            view,
        )
        for p in view["ops"]:
            self.offer(p["seq"], p["ops"])


# -- simulated clients ----------------------------------------------------------------


@dataclass
class Sim:
    name: str
    student: str | None  # the student a tab speaks for; None for the tutor
    replicas: dict[str, Replica]
    client: Client | None = None
    cursor: int = 0
    # Of the current connection: the patches it sent, and the last relayed seq per canvas.
    authored: set[tuple[str, int]] = field(default_factory=set)
    last_relayed: dict[str, int] = field(default_factory=dict)

    @property
    def sub(self) -> str:
        return TUTOR if self.student is None else self.student

    @property
    def role(self) -> str:
        return "TUTOR" if self.student is None else "STUDENT"


class World:
    """One example's session, its simulated clients, and every acked patch."""

    def __init__(self, hub: Hub, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.sims = {
            name: Sim(
                name,
                TABS.get(name),
                {
                    s: Replica(f"{name}/{s}")
                    for s in (STUDENTS if name == "tutor" else (TABS[name],))
                },
            )
            for name in CLIENTS
        }
        # canvas -> [(seq, author, ops as sent)], in ack order
        self.acked: dict[str, list[tuple[int, str, Ops]]] = {s: [] for s in STUDENTS}
        self.opened: list[Client] = []

    # connections

    async def connect(self, sim: Sim) -> None:
        """Connect and join; a client that held a replica before asks with ``since``."""
        assert sim.client is None
        client = await self.hub.connect(sim.sub, sim.role)
        self.opened.append(client)
        first = sim.name in INITIALLY_ONLINE and all(r.epoch is None for r in sim.replicas.values())
        if not first:
            note("re-join on a new socket")
        await self.join(sim, client, None if first else self.since(sim))
        sim.client, sim.cursor = client, 0
        sim.authored, sim.last_relayed = set(), {}
        await self.pump(sim, sync_gaps=False)

    async def rejoin(self, sim: Sim) -> None:
        """session:join again on the socket the client has (or connect it)."""
        if sim.client is None:
            await self.connect(sim)
            return
        note("re-join on the same socket")
        await self.pump(sim, sync_gaps=False)
        await self.join(sim, sim.client, self.since(sim))

    @staticmethod
    def since(sim: Sim) -> dict[str, int]:
        return {student: replica.seq for student, replica in sim.replicas.items()}

    async def join(self, sim: Sim, client: Client, since: dict[str, int] | None) -> None:
        ack = await client.join(self.session_id, **({} if since is None else {"since": since}))
        assert ack["ok"], ack
        assert set(ack["canvases"]) == set(sim.replicas), ack["canvases"]
        for student, view in ack["canvases"].items():
            sim.replicas[student].answer(view, None if since is None else since[student])

    async def disconnect(self, sim: Sim) -> None:
        assert sim.client is not None
        await self.pump(sim, sync_gaps=False)  # what arrived before the socket closed
        client, sim.client = sim.client, None
        await client.sio.disconnect()

    async def ensure_connected(self, sim: Sim) -> None:
        if sim.client is None:
            await self.connect(sim)

    # incoming traffic

    async def pump(self, sim: Sim, *, sync_gaps: bool = True) -> None:
        """Apply what the client received; on a gap, ask ``canvas:sync`` for the rest."""
        if sim.client is None:
            return
        events = sim.client.events("canvas:patches")
        while sim.cursor < len(events):
            event = events[sim.cursor]
            sim.cursor += 1
            assert event["session_id"] == self.session_id, event
            for item in event["items"]:
                student, seq = item["student_id"], item["seq"]
                assert student in sim.replicas, f"{sim.name} was sent {student}'s canvas"
                # Staff get every patch; a student tab never gets back one it sent.
                assert sim.student is None or (student, seq) not in sim.authored, (
                    f"{sim.name} was sent back its own patch {student}#{seq}"
                )
                assert seq > sim.last_relayed.get(student, 0), (
                    f"{sim.name}: relayed {student}#{seq} after #{sim.last_relayed[student]}"
                )
                sim.last_relayed[student] = seq
                assert item["author"] in ("student", "tutor"), item
                assert all(op["path"].startswith(WRITES[item["author"]]) for op in item["ops"]), (
                    item
                )
                sim.replicas[student].offer(seq, item["ops"])
        if not sync_gaps:
            return
        for student, replica in sim.replicas.items():
            if replica.pending and sim.client is not None:
                note("gap: canvas:sync")
                since = replica.seq
                view = await sim.client.call(
                    "canvas:sync",
                    {"session_id": self.session_id, "student_id": student, "since": since},
                )
                assert view["ok"], view
                replica.answer(view, since)

    # actions

    async def run(self, action: tuple[Any, ...], *, concurrent: bool = False) -> None:
        kind = action[0]
        if kind == "burst":
            note("burst")
            await asyncio.gather(*(self.run(a, concurrent=True) for a in action[1]))
        elif kind == "toggle":
            sim = self.sims[action[1]]
            await (self.disconnect(sim) if sim.client is not None else self.connect(sim))
        elif kind == "rejoin":
            await self.rejoin(self.sims[action[1]])
        elif kind == "pipeline":
            note("pipeline")
            sim = self.sims[action[1]]
            patches = action[2] if sim.student is None else [(sim.student, p) for p in action[2]]
            await self.pipeline(sim, patches)
        elif kind == "student":
            await self.send(self.sims[action[1]], TABS[action[1]], action[2], concurrent)
        else:
            await self.send(self.sims["tutor"], action[1], action[2], concurrent)

    async def pipeline(self, sim: Sim, patches: list[tuple[str, Ops]]) -> None:
        """Send every patch before any ack comes back; one socket's patches keep their order."""
        await self.ensure_connected(sim)
        tasks = [
            asyncio.create_task(self.send(sim, student, ops, concurrent=True))
            for student, ops in patches
        ]
        seqs = await asyncio.gather(*tasks)
        for student in STUDENTS:
            mine = [seq for (s, _), seq in zip(patches, seqs, strict=True) if s == student]
            acked = [seq for seq in mine if seq is not None]
            assert acked == sorted(acked), f"{sim.name}'s patches to {student} got seqs {mine}"

    async def send(self, sim: Sim, student: str, ops: Ops, concurrent: bool) -> int | None:
        """Send one patch; the seq it was acked with, or None if it was refused."""
        await self.ensure_connected(sim)
        assert sim.client is not None
        payload: dict[str, Any] = {"session_id": self.session_id, "ops": ops}
        if sim.student is None:
            payload["student_id"] = student
        ack = await sim.client.call("canvas:patch", payload)
        if not ack["ok"]:
            # Only a replace of a missing element may be refused.
            assert ack["error"]["code"] == "CONFLICT", ack
            assert any(op["op"] == "replace" for op in ops), (ops, ack)
            note("refused replace")
            if not concurrent:  # nothing else in flight: the refusal can be checked
                with pytest.raises(jsonpatch.JsonPatchException):
                    apply_with_rules(self.expected_by_rules(student), ops)
            return None
        seq: int = ack["seq"]
        author = "tutor" if sim.student is None else "student"
        self.acked[student].append((seq, author, ops))
        sim.authored.add((student, seq))
        if sim.student is not None:
            sim.replicas[student].offer(seq, ops, effective=False)
        return seq

    def expected_by_rules(self, student: str) -> dict[str, Any]:
        doc = empty()
        for _, _, ops in sorted(self.acked[student], key=lambda a: a[0]):
            apply_with_rules(doc, ops)
        return doc

    # the end

    def online(self) -> Iterable[Sim]:
        return (sim for sim in self.sims.values() if sim.client is not None)

    async def level(self) -> bool:
        for sim in self.online():
            await self.pump(sim)
        return all(
            replica.seq == len(self.acked[student]) and not replica.pending
            for sim in self.online()
            for student, replica in sim.replicas.items()
        )


async def new_session(hub: Hub) -> str:
    tutor_api = hub.as_(TUTOR, "TUTOR")
    status, created = await tutor_api.post(SESSIONS, session_body(TUTOR))
    assert status == 201, created
    session_id: str = created["data"]["id"]
    for student in STUDENTS:
        status, body = await tutor_api.post(
            f"{SESSIONS}/{session_id}/enrollments", {"student_id": student}
        )
        assert status == 201, body
    return session_id


async def check_canvas(world: World, reader: Hub, student: str) -> None:
    session_id = world.session_id
    acked = world.acked[student]
    n = len(acked)
    # (1) gap-free, duplicate-free seqs.
    assert sorted(seq for seq, _, _ in acked) == list(range(1, n + 1)), acked
    # (2) the effective ops, from the tutor's view of the log.
    tutor = world.sims["tutor"].client
    assert tutor is not None
    log = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": student, "since": 0}
    )
    assert log["ok"] and log["seq"] == n and "ops" in log, log
    assert [p["seq"] for p in log["ops"]] == list(range(1, n + 1))
    by_seq = {seq: (author, ops) for seq, author, ops in acked}
    model = empty()
    for p in log["ops"]:
        author, sent = by_seq[p["seq"]]
        assert p["author"] == author, (p, author)
        assert p["ops"] == apply_with_rules(model, sent), (p["seq"], sent, p["ops"])
        if p["ops"] != sent:
            note("no-op remove dropped")
    expected = replay(None, [p["ops"] for p in log["ops"]])
    assert expected == model
    # (3) every view of the canvas.
    for sim in world.sims.values():
        replica = sim.replicas.get(student)
        if replica is None:
            continue
        assert sim.client is not None, sim.name
        assert (replica.seq, replica.doc) == (n, expected), replica.where
        for p in log["ops"]:
            if p["seq"] in replica.applied:
                assert replica.applied[p["seq"]] == p["ops"], (replica.where, p["seq"])
    path = f"{SESSIONS}/{session_id}/canvases/{student}"
    for source in (world.hub, reader):  # the live hub; a second hub reading the database
        status, body = await source.as_(TUTOR, "TUTOR").get(path)
        assert status == 200, body
        assert (body["data"]["seq"], body["data"]["doc"]) == (n, expected), source.url
    for sub, role in ((TUTOR, "TUTOR"), (student, "STUDENT")):
        fresh = await world.hub.connect(sub, role)
        world.opened.append(fresh)
        ack = await fresh.join(session_id)
        assert ack["ok"], ack
        view = ack["canvases"][student]
        assert (view["seq"], view["doc"]) == (n, expected), (sub, view)
        assert view["epoch"] == log["epoch"]
        await fresh.sio.disconnect()


@pytest.fixture
async def hubs(make_hub: HubFactory) -> tuple[Hub, Hub]:
    """The hub under test, and a second one on the same database for reading it back."""
    return await make_hub(), await make_hub()


@pytest.mark.timeout(120)
@settings(
    max_examples=int(__import__("os").environ.get("PROP_N", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=actions)
async def test_random_interleavings_converge(
    hubs: tuple[Hub, Hub], actions: list[tuple[Any, ...]]
) -> None:
    hub, reader = hubs
    world = World(hub, await new_session(hub))
    try:
        for name in INITIALLY_ONLINE:
            await world.connect(world.sims[name])
        for action in actions:
            await world.run(action)
            for sim in list(world.online()):
                await world.pump(sim)
        for sim in world.sims.values():
            await world.ensure_connected(sim)
        await eventually(world.level, within=10, what="every replica at the last seq")
        for student in STUDENTS:
            await check_canvas(world, reader, student)
    finally:
        for client in world.opened:
            if client.sio.connected:
                await client.sio.disconnect()
