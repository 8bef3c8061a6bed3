"""Health, readiness (database and Redis) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import free_port
from realtime.base.metrics import hub_version
from rest.keys import STOPPING
from tests.conftest import REDIS_URL, Database, Hub, HubFactory, need_service, redis_problem
from tests.support import eventually


async def metric_samples(hub: Hub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with hub.http.get(hub.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_healthz_needs_no_token(hub: Hub) -> None:
    status, body = await hub.api(None).get("/healthz")
    assert (status, body) == (200, {"status": "ok"})


async def test_readyz_checks_the_database(hub: Hub) -> None:
    status, body = await hub.api(None).get("/readyz")
    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok"}})


async def test_readyz_checks_redis_when_configured(make_hub: HubFactory) -> None:
    need_service("Redis", await redis_problem())
    hub = await make_hub(redis_url=REDIS_URL)
    status, body = await hub.api(None).get("/readyz")
    assert (status, body["checks"]) == (200, {"database": "ok", "redis": "ok"})


async def test_readyz_is_unavailable_when_redis_is_down(make_hub: HubFactory) -> None:
    # Nothing listens on this loopback port: the check fails fast.
    hub = await make_hub(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    status, body = await hub.api(None).get("/readyz")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error:")


async def test_metrics_count_connections_events_and_requests(hub: Hub) -> None:
    await hub.as_("tutor-1", "TUTOR").get("/api/v1/sessions/nope")
    await hub.api(None).get("/api/v1/sessions")
    client = await hub.connect("tutor-1", "TUTOR")
    await client.join("nope")
    await client.call("no:such:event", {})
    samples = await metric_samples(hub)
    assert samples[("hub_connections", ())] == 1
    assert samples[("hub_connects_total", (("outcome", "ok"),))] == 1
    assert samples[("hub_events_total", (("event", "session:join"), ("outcome", "NOT_FOUND")))] == 1
    assert (
        samples[("hub_events_total", (("event", "unknown"), ("outcome", "VALIDATION_ERROR")))] == 1
    )
    assert (
        samples[
            (
                "hub_http_requests_total",
                (("method", "GET"), ("route", "/api/v1/sessions/{session_id}"), ("status", "404")),
            )
        ]
        == 1
    )
    assert (
        samples[
            (
                "hub_http_requests_total",
                (("method", "GET"), ("route", "/api/v1/sessions"), ("status", "401")),
            )
        ]
        == 1
    )
    assert samples[("hub_event_handler_seconds_count", (("event", "session:join"),))] == 1
    assert ("process_resident_memory_bytes", ()) in samples
    await client.sio.disconnect()

    async def no_connections() -> bool:
        return (await metric_samples(hub))[("hub_connections", ())] == 0

    await eventually(no_connections, what="hub_connections back to 0")


async def test_joined_sessions_gauge_follows_joins_and_leaves(hub: Hub) -> None:
    status, created = await hub.as_("tutor-1", "TUTOR").post(
        "/api/v1/sessions",
        {
            "title": "x",
            "tutor_id": "tutor-1",
            "starts_at": "2026-11-22T10:00:00Z",
            "ends_at": "2026-11-22T11:00:00Z",
        },
    )
    session_id = created["data"]["id"]
    a = await hub.connect("tutor-1", "TUTOR")
    b = await hub.connect("sup", "SUPERVISOR")
    await a.join(session_id)
    await b.join(session_id)
    await b.join(session_id)  # a second join of the same session is not a second membership
    assert (await metric_samples(hub))[("hub_joined_sessions", ())] == 2
    await a.call("session:leave", {"session_id": session_id})
    await b.sio.disconnect()

    async def none_joined() -> bool:
        return (await metric_samples(hub))[("hub_joined_sessions", ())] == 0

    await eventually(none_joined, what="hub_joined_sessions back to 0")


async def test_a_stall_of_the_event_loop_shows_in_the_loop_lag_histogram(hub: Hub) -> None:
    if hub.app is None:
        pytest.skip("the hub runs in other processes here; its loop is not this test's")

    def stalls() -> float:
        return (
            samples[("hub_event_loop_lag_seconds_count", ())]
            - samples[("hub_event_loop_lag_seconds_bucket", (("le", "0.25"),))]
        )

    await asyncio.sleep(0.1)
    samples = await metric_samples(hub)
    assert samples[("hub_event_loop_lag_seconds_count", ())] > 0  # it watches from the start
    before = stalls()
    time.sleep(0.4)  # noqa: ASYNC251 (the hub runs on this test's loop: block it)
    await asyncio.sleep(0.1)
    samples = await metric_samples(hub)
    assert stalls() == before + 1


async def test_readiness_is_exported_for_alerts(make_hub: HubFactory) -> None:
    # hub_ready and hub_dependency_up back the "not ready" and "Redis unreachable"
    # alerts (docs/ops/alerts.yml): refreshed by the hub itself, not only by probes.
    hub = await make_hub(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    await eventually(
        lambda: hub.metric("hub_dependency_up", dependency="database") == 1,
        what="the first readiness check",
        within=15,
    )
    assert hub.metric("hub_dependency_up", dependency="redis") == 0
    assert hub.metric("hub_ready") == 0
    samples = await metric_samples(hub)
    assert [labels for name, labels in samples if name == "hub_build_info"] == [
        (("version", hub_version()),)
    ]


async def test_a_stopping_hub_is_not_ready(hub: Hub) -> None:
    status, _ = await hub.api(None).get("/readyz")
    assert status == 200 and hub.metric("hub_ready") == 1
    assert hub.app is not None
    hub.app[STOPPING].set()  # what SIGTERM sets before the clients are told to go
    status, body = await hub.api(None).get("/readyz")
    assert (status, body["checks"].get("hub")) == (503, "stopping")
    assert hub.metric("hub_ready") == 0


async def test_readiness_does_not_wait_for_the_writers(hub: Hub, database: Database) -> None:
    # The check is a read. On SQLite it took the write lock (BEGIN IMMEDIATE): behind a
    # long write it timed out (503), and a check given up on kept the lock from the
    # writers ("database is locked" in a suite run, once the hub checked every 5 s).
    async with holding_the_write_lock(database):
        started = time.perf_counter()
        status, body = await hub.api(None).get("/readyz")
        assert (status, body["checks"]["database"]) == (200, "ok")
        assert time.perf_counter() - started < 1.0


@contextlib.asynccontextmanager
async def holding_the_write_lock(database: Database) -> AsyncIterator[None]:
    """Another client in a write transaction: SQLite's one write lock, or on Postgres an
    exclusive lock on a table the hub writes."""
    if database.kind == "sqlite":
        conn = sqlite3.connect(database.url.split(":///", 1)[1], isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(database.url.replace("+asyncpg", ""))
    try:
        if database.schema is not None:
            await pg.execute(f'SET search_path TO "{database.schema}"')
        async with pg.transaction():
            await pg.execute("LOCK TABLE live_sessions IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await pg.close()
