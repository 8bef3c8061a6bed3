"""The load generator: its wire client against a real hub, and each mode run small.

Only correctness is asserted (nothing lost, duplicated or out of order; every
client recovered; the summary's fields present), never a timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest import __main__ as cli
from loadtest import canvas_apply, sql_calls
from loadtest.sessions import SessionPlan, Tokens, create_sessions
from loadtest.wire import ConnectRefused, WireClient
from realtime.identity import Role
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.processes import HubProcess
from tests.support import eventually

pytestmark = pytest.mark.slow


def secret_of(hub: HubProcess) -> str:
    assert hub.settings.jwt_secret is not None
    return hub.settings.jwt_secret.get_secret_value()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def plan(hub_process: HubProcess) -> SessionPlan:
    [plan] = await create_sessions(hub_process.url, secret_of(hub_process), 1, 1)
    return plan


async def joined(
    http: aiohttp.ClientSession, hub: HubProcess, sub: str, role: Role, session_id: str
) -> WireClient:
    client = WireClient(http, hub.url)
    await client.connect(Tokens(secret_of(hub))(sub, role))
    ack = await client.call("session:join", {"session_id": session_id})
    assert ack["ok"] is True, ack
    return client


async def test_wire_client_connects_and_gets_acks(
    hub_process: HubProcess, http: aiohttp.ClientSession, plan: SessionPlan
) -> None:
    client = await joined(http, hub_process, plan.tutor_id, Role.TUTOR, plan.session_id)
    assert client.connected and client.sid
    ack = await client.call("no:such-event", {})
    assert ack["error"]["code"] == "VALIDATION_ERROR"
    await client.close()
    assert not client.connected


async def test_wire_client_reports_a_refused_connect(
    hub_process: HubProcess, http: aiohttp.ClientSession
) -> None:
    client = WireClient(http, hub_process.url)
    with pytest.raises(ConnectRefused) as refused:
        await client.connect("not-a-jwt")
    assert refused.value.data["data"]["code"] == "UNAUTHORIZED"


async def test_wire_client_receives_relayed_patches(
    hub_process: HubProcess, http: aiohttp.ClientSession, plan: SessionPlan
) -> None:
    tutor = await joined(http, hub_process, plan.tutor_id, Role.TUTOR, plan.session_id)
    received: list[dict[str, Any]] = []
    tutor.on("canvas:patches", received.append)
    student = await joined(http, hub_process, plan.student_ids[0], Role.STUDENT, plan.session_id)
    op = {"op": "add", "path": "/elements/e1", "value": {"type": "stroke", "points": [[1, 2]]}}
    ack = await student.call("canvas:patch", {"session_id": plan.session_id, "ops": [op]})
    assert ack == {"ok": True, "seq": 1}
    await eventually(lambda: received, what="the relayed patch at the tutor")
    assert received[0]["items"][0]["seq"] == 1
    assert received[0]["items"][0]["student_id"] == plan.student_ids[0]
    await student.close()
    await tutor.close()


SMALL_RELAY = ["--sessions", "2", "--students", "3", "--rate", "10", "--seconds", "3"]


@pytest.mark.timeout(120)
def test_relay_mode_delivers_every_patch_once_in_order_to_hub_and_baseline() -> None:
    out = cli.main(["relay", *SMALL_RELAY, "--target", "hub", "--target", "baseline"])
    assert [run["target"] for run in out["runs"]] == ["hub", "baseline"]
    for run in out["runs"]:
        assert run["sent"] > 0
        assert run["acked"] == run["sent"] == run["delivered"]
        assert run["lost"] == run["duplicated"] == run["out_of_order"] == 0
        assert run["annotations_lost"] == 0
        assert run["errors"] == {}
        for key in ("hub_cpu_s", "generator_cpu_s", "hub_rss_mib", "latency_ms", "ack_latency_ms"):
            assert key in run
    assert out["ratios"][0]["pair"] == "hub / baseline"


@pytest.mark.timeout(120)
def test_connections_mode_joins_everyone() -> None:
    out = cli.main(["connections", "--connections", "30", "--target", "hub"])
    [run] = out["runs"]
    assert run["clients"] == run["joined"] == 36  # 30 students and their 6 tutors
    assert run["failed"] == {}
    assert run["hub_rss_mib_before"] > 0 and "hub_rss_kib_per_connection" in run


@pytest.mark.timeout(120)
def test_storm_mode_recovers_everyone_without_missing_a_patch() -> None:
    argv = ["storm", "--students", "6", "--per-session", "3", "--rate", "2", "--drop-after", "1"]
    [run] = cli.main(argv)["runs"]
    assert run["dropped_total"] == run["recovered"] == run["clients"] == 8
    assert run["failed"] == {}
    assert run["missed"] == run["acked_missing"] == run["tail_missing"] == 0
    assert run["acked"] > 0
    assert sum(run["join_answers"].values()) == 2 * 3 + 6  # tutors: 3 canvases; students: 1


# The benchmarks' database on the tests' Redis server (the fanout mode flushes it; never db 15).
BENCH_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/14"


@pytest.mark.timeout(120)
def test_fanout_mode_relays_everything_on_node_one_and_reads_both_nodes_cpu() -> None:
    need_service("Redis", asyncio.run(redis_problem()))
    argv = ["fanout", "--sessions", "2", "--students", "2", "--seconds", "2", "--workers", "1",
            "--rest-seconds", "0", "--target", "baseline-redis", "--target", "hub-redis",
            "--redis-url", BENCH_REDIS_URL]  # fmt: skip
    out = cli.main(argv)
    assert [run["target"] for run in out["runs"]] == ["baseline-redis", "hub-redis"]
    for run in out["runs"]:
        assert run["status"] == "ok", run.get("traceback") or run["status"]
        assert run["nodes"] == 2
        assert run["sent"] > 0
        assert run["acked"] == run["sent"] == run["delivered"]
        assert run["lost"] == run["duplicated"] == run["out_of_order"] == 0
        for key in ("busy_cpu_s", "busy_cpu_s_per_1k", "idle_cpu_s", "idle_cpu_s_per_1k"):
            assert run[key] is not None, key
    assert {r["pair"] for r in out["ratios"]} == {"hub-redis / baseline-redis"}


async def test_sql_calls_measures_every_path(tmp_path: Path) -> None:
    rounds = await sql_calls.measure(tmp_path, 20)
    assert len(rounds) == 2
    for figures in rounds:
        assert set(figures) == {
            "read via aiosqlite",
            "read inline",
            "commit 1 via Connection",
            "commit 1 via batch writer",
            "commit 10 via Connection",
            "commit 10 via batch writer",
        }
        assert all(us >= 0 for us in figures.values())


def test_canvas_apply_measures_a_checkout_in_a_process_of_its_own() -> None:
    root = Path(__file__).resolve().parent.parent
    assert canvas_apply.run_root(root, 10, 50) > 0
