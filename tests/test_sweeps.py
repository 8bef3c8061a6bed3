"""The periodic jobs: one hub of a cluster leads them (a lease in Redis), and a job
that keeps failing says so once, not every interval."""

from __future__ import annotations

import asyncio
import logging
import platform
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.base.heap import heap_trimmer
from realtime.base.metrics import HubMetrics
from realtime.base.tasks import every, wind_down
from realtime.bus.bus_memory import Cluster
from realtime.bus.bus_redis import RedisCluster
from tests.conftest import REDIS_URL, need_service, redis_problem


@pytest.fixture
async def client() -> AsyncIterator[redis.asyncio.Redis]:
    need_service("Redis", await redis_problem())
    connection = redis.asyncio.Redis.from_url(REDIS_URL)
    yield connection
    await connection.aclose()


async def test_one_hub_at_a_time_leads_and_another_takes_over_when_it_stops(
    client: redis.asyncio.Redis,
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    a, b = (RedisCluster(client, HubMetrics(), node_id=n) for n in ("hub-a", "hub-b"))
    try:
        assert await a.lead(name, 0.3)
        assert not await b.lead(name, 0.3)
        for _ in range(4):  # a renews within its lease: it keeps leading
            await asyncio.sleep(0.15)
            assert await a.lead(name, 0.3)
            assert not await b.lead(name, 0.3)
        await asyncio.sleep(0.4)  # a stopped renewing: its lease ran out
        assert await b.lead(name, 0.3)
        assert not await a.lead(name, 0.3)
    finally:
        await client.delete(f"hub:lease:{name}")


async def test_jobs_asking_together_share_one_answer(client: redis.asyncio.Redis) -> None:
    """The presence sweep and the timer tick ask for the same lease each interval:
    the second question within a sixth of the lease is answered without Redis."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    a, b = (RedisCluster(client, HubMetrics(), node_id=n) for n in ("hub-a", "hub-b"))
    try:
        assert await a.lead(name, 0.6)
        assert not await b.lead(name, 0.6)
        await client.delete(f"hub:lease:{name}")  # as if a had stopped long ago
        assert not await b.lead(name, 0.6)  # b's answer of a moment ago
        await asyncio.sleep(0.15)
        assert await b.lead(name, 0.6)  # asked Redis again: free, so taken
    finally:
        await client.delete(f"hub:lease:{name}")


async def test_a_lone_hub_always_leads() -> None:
    assert await Cluster().lead("sweeps", 0.0)


async def test_a_hub_leads_when_redis_is_away() -> None:
    """The jobs also claim their work in the database: running them everywhere
    while Redis is away costs more, but loses nothing."""
    unreachable = redis.asyncio.Redis(
        port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        assert await RedisCluster(unreachable, HubMetrics()).lead("sweeps", 1.0)
    finally:
        await unreachable.aclose()


async def test_a_failing_job_is_reported_once_and_again_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = [False] * 5 + [True] * 2
    runs = 0
    done = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs >= len(outcomes):
            done.set()
        if not outcomes[min(runs, len(outcomes)) - 1]:
            raise ConnectionError("Redis is away")

    caplog.set_level(logging.WARNING, logger="realtime.base.tasks")
    task = asyncio.create_task(every(0.01, job, "the test job"))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    records = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records[0] == ("ERROR", "the test job failed; trying again every 0.01 s", True)
    assert [level for level, _, _ in records] == ["ERROR", "WARNING"]
    assert records[1][1].startswith("the test job works again after")


async def test_a_repeating_job_asked_to_stop_finishes_the_run_under_way() -> None:
    """A stopping hub lets the sweep in progress end its database work (wind_down)
    instead of cutting it short, and cancels only what outlasts its time."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow_job() -> None:
        started.set()
        await release.wait()
        finished.append("slow")

    async def stuck_job() -> None:
        await asyncio.Event().wait()

    stopping = asyncio.Event()
    slow = asyncio.create_task(every(0.01, slow_job, "slow", stopping))
    stuck = asyncio.create_task(every(0.01, stuck_job, "stuck", stopping))
    await asyncio.wait_for(started.wait(), 5)
    asyncio.get_running_loop().call_later(0.05, release.set)
    await wind_down(stopping, [slow, stuck], within_s=1.0)
    assert finished == ["slow"]
    assert slow.done() and not slow.cancelled()  # returned between two runs
    assert stuck.cancelled()


def test_heap_trimmer_is_glibcs_malloc_trim_where_there_is_one() -> None:
    trim = heap_trimmer()
    if platform.libc_ver()[0] != "glibc":
        return  # musl, macOS: the hub runs without it
    assert trim is not None
    trim()
