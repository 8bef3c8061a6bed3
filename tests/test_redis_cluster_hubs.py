"""Hub processes on a real Redis Cluster (``HUB_REDIS_CLUSTER_NODES``): 3 primaries and 3
replicas started by the test on loopback (``loadtest/redis_cluster.py``), hubs as
deployed (``python -m realtime serve``), stock python-socketio clients.

A session's frames go to its channel's shard (sharded pub/sub); a tutor on one hub
hears a student drawing on another whichever shard the session lands on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.crc import key_slot

from loadtest.redis_cluster import RedisClusterProcesses
from realtime.base.identity import Role
from realtime.bus.bus import session_channel
from tests.conftest import Database
from tests.processes import HubProcess, start_hub
from tests.support import TEST_SECRET, Client, session_body

SESSIONS = 6  # at least; more until their channels land on every shard
PATCHES = 180
pytestmark = pytest.mark.parametrize("database", ["postgres"], indirect=True)


@dataclass
class Lesson:
    hubs: list[HubProcess]
    sessions: list[str]
    tutor: Client
    student: Client
    acked: dict[tuple[str, int], int] = field(default_factory=dict)  # (session, seq) -> n

    def relayed(self) -> list[tuple[str, int]]:
        """(session, seq) of every patch relayed to the tutor, in arrival order."""
        return [
            (event["session_id"], item["seq"])
            for event in self.tutor.events("canvas:patches")
            for item in event["items"]
        ]

    async def draw(self, n: int) -> None:
        """Patch ``n`` on session ``n mod SESSIONS``; resent while the hub refuses it."""
        session_id = self.sessions[n % len(self.sessions)]
        ops = [{"op": "add", "path": f"/elements/e{n}", "value": n}]
        deadline = time.monotonic() + 30
        while True:
            ack = await self.student.call("canvas:patch", {"session_id": session_id, "ops": ops})
            if ack.get("ok"):
                self.acked[(session_id, ack["seq"])] = n
                return
            assert time.monotonic() < deadline, f"patch {n} refused for 30 s: {ack}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def lesson(
    redis_cluster: RedisClusterProcesses, database: Database, tmp_path: Path
) -> AsyncIterator[Lesson]:
    """Two hubs on the cluster; a tutor on the second, a student on the first, both in
    SESSIONS sessions."""
    settings = {"HUB_REDIS_CLUSTER_NODES": redis_cluster.seeds, "HUB_DATABASE_URL": database.url}
    if database.schema is not None:
        settings["HUB_DATABASE_SCHEMA"] = database.schema
    hubs: list[HubProcess] = []
    clients: list[Client] = []
    try:
        for i in range(2):
            hubs.append(
                await asyncio.to_thread(
                    start_hub, tmp_path, TEST_SECRET, settings=settings, name=f"hub-{i}"
                )
            )
        first, second = hubs
        admin = {"Authorization": f"Bearer {first.token('admin-1', Role.CENTER_ADMIN)}"}
        sessions: list[str] = []
        shards: set[str] = set()
        async with aiohttp.ClientSession() as http:
            # Session ids are random: make sessions until their channels span the shards.
            while len(sessions) < SESSIONS or len(shards) < 3:
                assert len(sessions) < 40, f"40 sessions on {len(shards)} shards"
                async with http.post(
                    f"{first.url}/api/v1/sessions", json=session_body("tutor-1"), headers=admin
                ) as created:
                    assert created.status == 201, await created.text()
                    session_id = (await created.json())["data"]["id"]
                async with http.post(
                    f"{first.url}/api/v1/sessions/{session_id}/enrollments",
                    json={"student_id": "s1"},
                    headers=admin,
                ) as enrolled:
                    assert enrolled.status == 201, await enrolled.text()
                sessions.append(session_id)
                shards.add(redis_cluster.primary_for(channel_of(session_id)).address)
        tutor = await Client().connect(second.url, second.token("tutor-1", Role.TUTOR))
        student = await Client().connect(first.url, first.token("s1", Role.STUDENT))
        clients += [tutor, student]
        for session_id in sessions:
            assert (await tutor.join(session_id))["ok"]
            assert (await student.join(session_id))["ok"]
        yield Lesson(hubs, sessions, tutor, student)
    finally:
        for client in clients:
            await client.sio.disconnect()
        for hub in hubs:
            assert hub.stop() == 0, hub.log_tail()


def channel_of(session_id: str) -> str:
    return session_channel("c1", session_id)


def canvas_of(session_id: str) -> str:
    """The hash tag of the student's canvas in the session (its Redis keys' slot)."""
    return f"{{{session_id}:s1}}"


@pytest.mark.timeout(120)
async def test_a_tutor_hears_a_student_on_another_hub_on_every_shard(
    lesson: Lesson, redis_cluster: RedisClusterProcesses
) -> None:
    shards = {redis_cluster.primary_for(channel_of(s)).address for s in lesson.sessions}
    assert len(shards) == 3, shards  # the sessions' channels span the cluster
    async with aiohttp.ClientSession() as http:
        for hub in lesson.hubs:
            async with http.get(f"{hub.url}/readyz") as ready:
                assert (ready.status, (await ready.json())["checks"]) == (
                    200,
                    {"database": "ok", "redis": "ok"},
                )
    for n in range(30):
        await lesson.draw(n)
    await wait_relayed(lesson)
    assert sorted(lesson.relayed()) == sorted(lesson.acked)


async def wait_relayed(lesson: Lesson, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while set(lesson.acked) - set(lesson.relayed()):
        missing: Any = sorted(set(lesson.acked) - set(lesson.relayed()))
        assert time.monotonic() < deadline, (
            f"not relayed to the tutor: {missing[:10]}\n"
            + "\n".join(warnings(hub) for hub in lesson.hubs)
        )
        await asyncio.sleep(0.1)


def warnings(hub: HubProcess) -> str:
    lines = [
        line for line in hub.log_tail().splitlines() if " WARNING " in line or " ERROR " in line
    ]
    return f"{hub.log_path.name}:\n" + "\n".join(lines[-20:])


def assert_relayed_once_in_order(lesson: Lesson) -> None:
    """Every acked patch reached the tutor once; each session's seqs came in order."""
    relayed = lesson.relayed()
    twice = sorted(key for key, n in Counter(relayed).items() if n > 1)
    assert not twice, f"relayed more than once: {twice[:10]}"
    assert set(relayed) >= set(lesson.acked), sorted(set(lesson.acked) - set(relayed))[:10]
    for session_id in lesson.sessions:
        seqs = [seq for s, seq in relayed if s == session_id]
        assert seqs == sorted(seqs), f"{session_id}: relayed out of order: {seqs}"


async def assert_late_join_sees_every_acked_patch(lesson: Lesson) -> None:
    """A tutor joining afresh (on the other hub) reads each canvas up to its last ack."""
    hub = lesson.hubs[0]
    late = await Client().connect(hub.url, hub.token("tutor-1", Role.TUTOR))
    try:
        for session_id in lesson.sessions:
            ack = await late.join(session_id)
            assert ack["ok"], ack
            last = max((seq for s, seq in lesson.acked if s == session_id), default=0)
            assert ack["canvases"]["s1"]["seq"] == last, (session_id, ack["canvases"]["s1"])
    finally:
        await late.sio.disconnect()


@pytest.mark.timeout(180)
async def test_a_primary_killed_mid_lesson_loses_doubles_and_reorders_no_acked_patch(
    lesson: Lesson, redis_cluster: RedisClusterProcesses
) -> None:
    """SIGKILL a primary a third of the way into the lesson; its replica takes over.
    The primary is the one holding the most of the lesson's canvases (each shard holds
    some session's channel). Drawing goes on throughout (a patch refused meanwhile is
    resent, as a client does)."""
    holders = Counter(redis_cluster.primary_for(canvas_of(s)) for s in lesson.sessions)
    victim, canvases = holders.most_common(1)[0]
    assert canvases >= 2, holders
    promoted: asyncio.Task[Any] | None = None
    for n in range(PATCHES):
        if n == PATCHES // 3:
            redis_cluster.kill_primary(victim)
            promoted = asyncio.ensure_future(redis_cluster.wait_promoted(victim))
        await lesson.draw(n)
    assert promoted is not None
    await promoted
    await wait_relayed(lesson, within=30.0)
    assert_relayed_once_in_order(lesson)
    await assert_late_join_sees_every_acked_patch(lesson)


@pytest.mark.timeout(180)
async def test_slots_moved_mid_lesson_lose_double_and_reorder_no_acked_patch(
    lesson: Lesson, redis_cluster: RedisClusterProcesses
) -> None:
    """Move the first session's channel slot, then its canvas's slot, to another primary
    while the student draws: for a second the canvas's key lives on the new primary
    while the old one still owns the slot (ASK), then MOVED; the channel's subscribers
    are told to go (an unrequested sunsubscribe) and subscribe again on the new shard."""
    session_id = lesson.sessions[0]
    slots = [key_slot(channel_of(session_id).encode()), key_slot(canvas_of(session_id).encode())]

    async def move() -> None:
        for slot in slots:
            source = redis_cluster.primary_for(slot)
            target = next(p for p in redis_cluster.primaries if p is not source)
            await redis_cluster.migrate_slot(slot, target, pause_s=1.0)
            assert redis_cluster.primary_for(slot) is target

    moving: asyncio.Task[None] | None = None
    for n in range(PATCHES):
        if n == PATCHES // 3:
            moving = asyncio.ensure_future(move())
        await lesson.draw(n * len(lesson.sessions))  # all on the first session
        await asyncio.sleep(0.01)
    assert moving is not None
    await moving
    await wait_relayed(lesson, within=30.0)
    assert_relayed_once_in_order(lesson)
    await assert_late_join_sees_every_acked_patch(lesson)
