"""Several hub processes sharing sessions through Redis, killed and cut off mid-stream.

Real hub processes on loopback, one Postgres schema, and a ``redis-server``
of each test's own on a free loopback port (one test stops and restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from realtime.base.identity import Role
from tests.conftest import POSTGRES_URL, Database, need_service
from tests.processes import HubProcess, RedisServer, start_hub
from tests.support import Client, eventually, session_body
from tests.test_canvas_durability import hub_settings, rest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    # Hubs in several processes share a database server, not a SQLite file.
    pytest.mark.parametrize("database", ["postgres"], indirect=True),
]

GRACE_S = 3.0


def cluster_settings(database: Database, redis_url: str) -> dict[str, str]:
    return {
        **hub_settings(database),
        "HUB_REDIS_URL": redis_url,
        "HUB_PRESENCE_GRACE_S": str(GRACE_S),
        "HUB_PRESENCE_SWEEP_S": "0.2",
    }


@dataclass
class Cluster:
    hubs: list[HubProcess]
    clients: list[Client] = field(default_factory=list)

    async def connect(self, hub: HubProcess, sub: str, role: Role) -> Client:
        client = await Client().connect(hub.url, hub.token(sub, role))
        self.clients.append(client)
        return client


@contextlib.contextmanager
def running(tmp_path: Path, settings: dict[str, str], nodes: int) -> Iterator[Cluster]:
    secret = f"cluster-test-secret-{secrets.token_hex(16)}"
    hubs: list[HubProcess] = []
    try:
        for n in range(nodes):  # one after another: the first migrates the database
            hubs.append(start_hub(tmp_path, secret, settings=settings, name=f"hub{n}"))
        yield Cluster(hubs)
    finally:
        for hub in hubs:
            if hub.process.returncode is None:
                hub.stop()


async def open_session(hub: HubProcess, students: tuple[str, ...]) -> str:
    tutor_token = hub.token("tutor-1", Role.TUTOR)
    session = await rest(hub, "POST", "/api/v1/sessions", tutor_token, session_body("tutor-1"))
    for student in students:
        path = f"/api/v1/sessions/{session['id']}/enrollments"
        await rest(hub, "POST", path, tutor_token, {"student_id": student})
    return str(session["id"])


async def stored_elements(database: Database, student_id: str) -> set[str]:
    """The elements the database's op log holds for a student's canvas (all sessions)."""
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT ops FROM "{database.schema}".canvas_ops WHERE student_id = $1', student_id
        )
    finally:
        await conn.close()
    return {op["path"].rpartition("/")[2] for row in rows for op in json.loads(row["ops"])}


async def resynced(tutor: Client, session_id: str, student: str) -> tuple[str, int, set[str]]:
    """The canvas as a tutor who resyncs (``canvas:sync`` from 0) has it: its epoch, seq
    and elements."""
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": student, "since": 0}
    )
    if "doc" in sync:
        return sync["epoch"], sync["seq"], set(sync["doc"]["elements"])
    # Every patch from the first, in order.
    assert [p["seq"] for p in sync["ops"]] == list(range(1, sync["seq"] + 1))
    paths = [op["path"] for patch in sync["ops"] for op in patch["ops"]]
    elements = {path.split("/")[2] for path in paths if path.startswith("/elements/")}
    return sync["epoch"], sync["seq"], elements


def stroke(element: str, n: int) -> list[dict[str, Any]]:
    value = {"type": "stroke", "points": [[n, n], [n + 1, n + 2]]}
    return [{"op": "add", "path": f"/elements/{element}", "value": value}]


def relayed(tutor: Client, student: str) -> list[tuple[str, int]]:
    """(epoch, seq) of every patch of ``student`` relayed to the tutor, in arrival order."""
    return [
        (item["epoch"], item["seq"])
        for event in tutor.events("canvas:patches")
        for item in event["items"]
        if item["student_id"] == student
    ]


class Drawer:
    """A student drawing one patch at a time; on losing its hub it joins another
    with ``since`` and goes on, as soon as the transport closes (as browsers do).
    Records what was acked."""

    def __init__(self, cluster: Cluster, student: str, session_id: str) -> None:
        self.cluster, self.student, self.session_id = cluster, student, session_id
        self.acked: dict[int, str] = {}  # seq -> element
        self.errors = 0
        self.moved_to: list[str] = []
        self.stop = asyncio.Event()

    async def _patch(self, client: Client, ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The ack, or None when the hub went away first."""
        call = asyncio.ensure_future(
            client.sio.call("canvas:patch", {"session_id": self.session_id, "ops": ops}, timeout=5)
        )
        gone = asyncio.ensure_future(client.disconnected.wait())
        await asyncio.wait([call, gone], return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not call.done():
            call.cancel()
            return None
        if call.exception() is not None:
            return None
        ack: dict[str, Any] = call.result()
        return ack

    async def run(self, hub: HubProcess, spare: list[HubProcess]) -> None:
        client = await self.cluster.connect(hub, self.student, Role.STUDENT)
        assert (await client.join(self.session_id))["ok"]
        n = 0
        while not self.stop.is_set() and n < 2000:
            element = f"{self.student}-{n}"
            ack = await self._patch(client, stroke(element, n))
            if ack is not None and ack.get("ok"):
                self.acked[ack["seq"]] = element
                n += 1
                await asyncio.sleep(0.02)
                continue
            self.errors += 1
            if ack is None or not client.sio.connected:
                # The hub is gone: another one, with what we know.
                hub = spare[self.errors % len(spare)]
                client = await self.cluster.connect(hub, self.student, Role.STUDENT)
                since = {self.student: max(self.acked, default=0)}
                assert (await client.join(self.session_id, since=since))["ok"]
                self.moved_to.append(hub.url)
            else:
                await asyncio.sleep(0.1)  # refused (Redis away): the same patch again


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        need_service("redis-server", "not on PATH", hint="install redis-server")
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_killing_one_of_three_hubs_loses_nothing(
    database: Database, tmp_path: Path, private_redis: RedisServer
) -> None:
    students = ("s1", "s2", "s3")
    settings = cluster_settings(database, private_redis.url)
    with running(tmp_path, settings, nodes=3) as cluster:
        a, b, c = cluster.hubs
        session_id = await open_session(a, students)
        tutor = await cluster.connect(a, "tutor-1", Role.TUTOR)
        assert (await tutor.join(session_id))["ok"]
        # The tutor's second tab, on the hub that dies, starts a timer due after it died.
        second_tab = await cluster.connect(b, "tutor-1", Role.TUTOR)
        assert (await second_tab.join(session_id))["ok"]
        started = await second_tab.call(
            "timer:start", {"session_id": session_id, "label": "quiz", "duration_s": 4}
        )
        assert started["ok"], started
        drawers = {s: Drawer(cluster, s, session_id) for s in students}
        homes = {"s1": b, "s2": c, "s3": b}
        tasks = [asyncio.create_task(drawers[s].run(homes[s], spare=[a, c])) for s in students]
        await eventually(
            lambda: all(len(d.acked) >= 20 for d in drawers.values()), within=30, what="drawing"
        )
        b.process.send_signal(signal.SIGKILL)
        assert b.stop() == -signal.SIGKILL
        await eventually(
            lambda: all(drawers[s].moved_to for s in ("s1", "s3")), within=20, what="moved"
        )
        counts = {s: len(d.acked) for s, d in drawers.items()}
        await eventually(
            lambda: all(len(d.acked) >= counts[s] + 20 for s, d in drawers.items()),
            within=30,
            what="drawing after the kill",
        )
        for drawer in drawers.values():
            drawer.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)

        for student, drawer in drawers.items():
            last = max(drawer.acked)
            await eventually(
                lambda: any(seq >= last for _, seq in relayed(tutor, student)),  # noqa: B023
                within=15,
                what=f"{student}'s last patch at the tutor",
            )
            got = relayed(tutor, student)
            seqs = [seq for _, seq in got]
            # Once each and in order. The canvases the dead hub held start again from
            # the database in a new epoch; a gap only where the epoch changes, where
            # the tutor resyncs, as the protocol says.
            assert seqs == sorted(set(seqs)), (student, seqs)
            for (epoch, seq), (next_epoch, next_seq) in itertools.pairwise(got):
                assert next_seq == seq + 1 or next_epoch != epoch, (student, got)
            assert len({epoch for epoch, _ in got}) <= 2
            epoch, seq, elements = await resynced(tutor, session_id, student)
            assert (epoch, seq) == got[-1]
            missing = [e for e in drawer.acked.values() if e not in elements]
            assert missing == [], f"{student}'s resync lacks acked patches {missing}"
            canvas = await rest(
                a,
                "GET",
                f"/api/v1/sessions/{session_id}/canvases/{student}",
                a.token("tutor-1", Role.TUTOR),
            )
            missing = [e for e in drawer.acked.values() if e not in canvas["doc"]["elements"]]
            assert missing == [], f"{student} lost acked patches {missing}"

        # The timer the dead hub started fires once, from a hub still alive.
        timer_id = started["timer"]["id"]

        def alerts() -> list[str]:
            return [e["kind"] for e in tutor.events("timer:alert") if e["timer_id"] == timer_id]

        await eventually(lambda: "TIMER_END" in alerts(), within=15, what="the timer's end")
        # A timer due a second later. Due timers fire in the ticks of the hub leading the
        # sweeps: a tick that fired the quiz again (its claim lost) came before the one
        # that fires this timer, and its alert, from the same hub, arrives first.
        later = await tutor.call(
            "timer:start", {"session_id": session_id, "label": "later", "duration_s": 1}
        )
        assert later["ok"], later
        await eventually(
            lambda: any(
                e["timer_id"] == later["timer"]["id"] and e["kind"] == "TIMER_END"
                for e in tutor.events("timer:alert")
            ),
            within=15,
            what="the later timer's end",
        )
        assert alerts() == ["TIMER_END"]
        # s1 and s3 came back within the grace period: never offline for the tutor.
        statuses = [
            (u["student_id"], u["status"])
            for u in tutor.events("presence:update")
            if u["status"] == "offline"
        ]
        assert statuses == []
        for client in cluster.clients:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()
        for hub in (a, c):
            assert hub.stop() == 0, hub.log_tail()


async def test_a_redis_restart_loses_nothing_acked_and_the_stream_goes_on(
    database: Database, tmp_path: Path, private_redis: RedisServer
) -> None:
    settings = cluster_settings(database, private_redis.url)
    with running(tmp_path, settings, nodes=2) as cluster:
        a, b = cluster.hubs
        session_id = await open_session(a, ("s1",))
        tutor = await cluster.connect(a, "tutor-1", Role.TUTOR)
        joined = await tutor.join(session_id)
        first_epoch = joined["canvases"]["s1"]["epoch"]
        drawer = Drawer(cluster, "s1", session_id)
        task = asyncio.create_task(drawer.run(b, spare=[b]))
        await eventually(lambda: len(drawer.acked) >= 20, within=20, what="drawing")
        private_redis.stop()
        await asyncio.sleep(1.0)
        await private_redis.start()
        before = len(drawer.acked)
        await eventually(lambda: len(drawer.acked) >= before + 20, within=30, what="resumed")
        drawer.stop.set()
        await asyncio.wait_for(task, timeout=20)

        # Nothing acked is lost: every acked patch is in the database.
        stored = await stored_elements(database, "s1")
        missing = [e for e in drawer.acked.values() if e not in stored]
        assert missing == [], f"acked patches lost across the Redis restart: {missing}"
        # The stream went on: in the epoch it was in while the hub holding the canvas
        # kept it, in a new one (the clients' cue to resync) once it set it up again.
        last = max(drawer.acked)
        await eventually(
            lambda: any(seq >= last for _, seq in relayed(tutor, "s1")),
            within=10,
            what="the last acked patch at the tutor",
        )
        got = relayed(tutor, "s1")
        assert got[0][0] == first_epoch
        for epoch in {epoch for epoch, _ in got}:
            seqs = [seq for e, seq in got if e == epoch]
            assert seqs == sorted(set(seqs)), (epoch, seqs)  # within an epoch: once, in order
        # A tutor who resyncs on the new epoch, as the protocol says, has every acked patch.
        # (Its epoch may be newer than the last patch's: a state Redis lost is set up
        # again, in a new epoch, by the next hub that reads it, the sync included.)
        _, seq, elements = await resynced(tutor, session_id, "s1")
        assert seq >= last
        missing = [e for e in drawer.acked.values() if e not in elements]
        assert missing == [], f"acked patches missing from the tutor's resync: {missing}"
        for client in cluster.clients:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()
        for hub in (a, b):
            assert hub.stop() == 0, hub.log_tail()


async def test_a_stopping_hub_hands_its_students_to_the_others(
    database: Database, tmp_path: Path, private_redis: RedisServer
) -> None:
    """SIGTERM: the hub tells its clients to reconnect and exits 0; they carry on
    on another hub within the grace period, so the tutor never sees them offline."""
    settings = cluster_settings(database, private_redis.url)
    with running(tmp_path, settings, nodes=2) as cluster:
        a, b = cluster.hubs
        session_id = await open_session(a, ("s1", "s2"))
        tutor = await cluster.connect(a, "tutor-1", Role.TUTOR)
        assert (await tutor.join(session_id))["ok"]
        # A classmate on a, who leaves for good later on.
        witness = await cluster.connect(a, "s2", Role.STUDENT)
        assert (await witness.join(session_id))["ok"]
        drawer = Drawer(cluster, "s1", session_id)
        task = asyncio.create_task(drawer.run(b, spare=[a]))
        await eventually(lambda: len(drawer.acked) >= 20, within=20, what="drawing")
        student_on_b = cluster.clients[-1]
        b.process.terminate()  # SIGTERM; the test's loop keeps reading meanwhile
        await eventually(lambda: b.process.poll() is not None, within=15, what="b to exit")
        assert b.stop() == 0, b.log_tail()
        assert [e["code"] for e in student_on_b.events("hub:closing")] == ["SHUTTING_DOWN"]
        await eventually(lambda: drawer.moved_to == [a.url], within=10, what="moved to a")
        before = len(drawer.acked)
        await eventually(lambda: len(drawer.acked) >= before + 20, within=20, what="drawing on")
        # s2 leaves after s1 came back: a, the only hub left, marks s2 offline once s2's
        # grace period is over, in a sweep that would have taken s1 (due earlier) first.
        await witness.sio.disconnect()

        def went_offline(student: str) -> bool:
            return any(
                (u["student_id"], u["status"]) == (student, "offline")
                for u in tutor.events("presence:update")
            )

        await eventually(lambda: went_offline("s2"), within=GRACE_S + 10, what="s2 offline")
        drawer.stop.set()
        await asyncio.wait_for(task, timeout=20)
        assert not went_offline("s1"), tutor.events("presence:update")
        last = max(drawer.acked)
        await eventually(
            lambda: any(seq >= last for _, seq in relayed(tutor, "s1")),
            within=10,
            what="the last patch at the tutor",
        )
        seqs = [seq for _, seq in relayed(tutor, "s1")]
        assert seqs == sorted(set(seqs)) and set(drawer.acked) <= set(seqs)
        for client in cluster.clients:
            with contextlib.suppress(Exception):
                await client.sio.disconnect()
        assert a.stop() == 0, a.log_tail()
