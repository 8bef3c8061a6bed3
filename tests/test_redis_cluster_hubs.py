"""Hub processes on a real Redis Cluster (``HUB_REDIS_CLUSTER_NODES``): 3 primaries and 3
replicas started by the test on loopback (``loadtest/redis_cluster.py``), hubs as
deployed (``python -m realtime serve``), stock python-socketio clients.

A session's frames go to its channel's shard (sharded pub/sub); a tutor on one hub
hears a student drawing on another whichever shard the session lands on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.redis_cluster import RedisClusterProcesses
from realtime.base.identity import Role
from realtime.bus.bus import session_channel
from tests.conftest import Database
from tests.processes import HubProcess, start_hub
from tests.support import TEST_SECRET, Client, session_body

SESSIONS = 6  # at least; more until their channels land on every shard
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
