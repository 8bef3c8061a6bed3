"""The load generator: its wire client against a real hub, and each mode run small.

Only correctness is asserted (nothing lost, duplicated or out of order; every
client recovered; the summary's fields present), never a timing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from loadtest import __main__ as cli
from loadtest import browser, canvas_apply, fanout, hub_metrics, procs, report, soak, sql_calls
from loadtest.node_generator import NodePool
from loadtest.procs import TargetProcess, cpu_seconds, free_port, listens_on, start_baseline
from loadtest.redis_cluster import missing_tools
from loadtest.runner import Window
from loadtest.scenario import RelayConfig
from loadtest.sessions import SessionPlan, Tokens, create_sessions, generated_sessions
from loadtest.wire import ConnectRefused, WireClient
from loadtest.workers import WorkerError
from realtime.base.identity import Role
from tests.browser import need_chromium
from tests.conftest import BENCH_REDIS_URL, need_service, redis_problem
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


@pytest.mark.timeout(60)
def test_relay_mode_with_the_node_generator_delivers_every_patch_with_its_latency(
    node: str,
) -> None:
    argv = ["relay", "--generator", "node", "--sessions", "2", "--students", "2",
            "--rate", "10", "--seconds", "2", "--target", "hub"]  # fmt: skip
    out = cli.main(argv)
    [run] = out["runs"]
    # One Node process on one CPU, on the stock client, which counted its own CPU.
    assert (run["generator"], run["workers"], len(run["generator_cpus"])) == ("node", 1, 1)
    assert run["generator_client"].startswith("socket.io-client 4."), run["generator_client"]
    assert run["generator_cpu_s"] > 0 and 0 < run["generator_cpu_share_max"] < 1
    assert set(run["generator_loop_delay_ms"]) == {"p50", "p99", "max"}
    assert run["websocket_deflate"] is True  # the stock client's offer, as a browser's
    # The same figures as the Python workers', from real traffic.
    assert run["sent"] > 0 and run["acked"] == run["sent"] == run["delivered"], run
    assert run["lost"] == run["duplicated"] == run["out_of_order"] == 0
    assert run["annotations_sent"] > 0 and run["annotations_lost"] == 0
    assert run["errors"] == {}
    assert run["events_ok"]["canvas:patch"] >= run["sent"]
    latency = run["latency_ms"]
    assert latency["n"] == run["delivered"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert run["ack_latency_ms"]["n"] == run["acked"]
    assert sum(run["latency_ms_per_s"]["n"]) == sum(run["delivered_per_s"]) == run["delivered"]
    assert run["patches_per_hub_cpu_s"] and run["patches_per_hub_cpu_s"] > 0


@pytest.mark.timeout(30)
def test_the_node_generator_reports_why_it_failed(node: str, tmp_path: Path) -> None:
    [plan] = generated_sessions(1, 1)
    nobody = f"http://127.0.0.1:{free_port()}"
    config = RelayConfig(nobody, "s" * 32, (plan,), rate=10, seconds=1)
    with NodePool(config, tmp_path) as pool, pytest.raises(WorkerError) as failed:
        pool.ready(timeout=20)
    assert f"session:join {plan.session_id}: connect refused" in str(failed.value)


@pytest.mark.timeout(60)
def test_relay_mode_reports_over_time_the_hubs_metrics_and_a_like_for_like_baseline(
    tmp_path: Path,
) -> None:
    argv = ["relay", "--sessions", "1", "--students", "2", "--rate", "10", "--seconds", "2",
            "--workers", "1", "--target", "hub", "--target", "baseline",
            "--plot", str(tmp_path / "relay.png")]  # fmt: skip
    out = cli.main(argv)
    hub, baseline = out["runs"]
    # The baseline says what it runs, read off its running loop, codec and driver.
    assert baseline["stack"]["loop"] == "uvloop.Loop"
    assert baseline["stack"]["socketio_json"] == "orjson (realtime.base.codec.CODEC)"
    assert baseline["stack"]["engineio_json"] == "orjson (realtime.base.codec.CODEC)"
    assert baseline["stack"]["driver"] == "realtime.internals.engineio_websocket.WebSocket"
    for run in out["runs"]:
        over_time = run["latency_ms_per_s"]
        assert sum(over_time["n"]) == run["delivered"] > 0
        assert 1 <= len(over_time["p99"]) <= 2  # by the second sent: 0 and 1
        assert all(p <= m for p, m in zip(over_time["p99"], over_time["max"], strict=True))
        assert len(run["hub_rss_mib_per_s"]) >= 2 and run["hub_rss_mib_per_s"][0] > 0
    # What today's hub exports is read; what it does not (yet) is left out.
    assert hub["hub_metrics"]["hub_canvas_commit_seconds"]["count"] > 0
    assert baseline["hub_metrics"] == {}
    [ratios] = out["ratios"]
    assert (ratios["pair"], ratios["reference"]) == ("hub / baseline", "like-for-like relay")
    assert (tmp_path / "relay.png").stat().st_size > 0


def test_the_stock_baseline_runs_asyncio_the_standard_json_and_engineios_driver(
    tmp_path: Path,
) -> None:
    stock = start_baseline(tmp_path, label="baseline-stock", stock=True)
    stock.stop()
    assert stock.stack["loop"].startswith("asyncio.")
    assert stock.stack["socketio_json"] == stock.stack["engineio_json"] == "engineio.json"
    assert stock.stack["driver"] == "engineio.async_drivers.aiohttp.WebSocket"


def test_hub_metrics_reads_loop_lag_over_thresholds_and_skips_what_is_missing() -> None:
    registry = CollectorRegistry()
    lag = Histogram("hub_event_loop_lag_seconds", "lag", registry=registry,
                    buckets=(0.01, 0.05, 0.1, 0.25, 1.0))  # fmt: skip
    for seconds in (0.001, 0.02, 0.07, 0.3, 2.0):
        lag.observe(seconds)
    Gauge("hub_canvas_log_bytes", "log", registry=registry).set(1234)
    published = Counter("hub_redis_published", "frames", ["kind"], registry=registry)
    published.labels("emit").inc(3)
    published.labels("control").inc(2)
    found = hub_metrics.read(generate_latest(registry).decode())
    assert found == {
        "hub_event_loop_lag_seconds": {
            "count": 5, "sum": 2.391, "p99_at_most": None, "over_0.05": 3, "over_0.25": 2,
        },
        "hub_canvas_log_bytes": 1234.0,
        "hub_redis_published": 5.0,  # summed over its labels
    }  # fmt: skip


@pytest.mark.timeout(120)
def test_soak_mode_samples_rss_descriptors_and_loop_lag_over_time() -> None:
    out = cli.main(["soak", "--sessions", "2", "--students", "2", "--generator", "python",
                    "--minutes", "0.4", "--warm-up", "0"])  # fmt: skip
    (run,) = out["runs"]
    assert run["acked"] == run["sent"] == run["delivered"] > 0
    samples = run["soak_samples"]
    assert len(samples) >= 2 and all(s["fds"] > 0 and s["rss_mib"] > 0 for s in samples)
    assert samples[-1]["lag_readings"] > samples[0]["lag_readings"]
    assert run["soak"]["zero_loss"] and run["soak"]["minutes"][0]["delivered"] == run["delivered"]


def soak_run(rss: list[float], fds: list[int], lag_over: list[int]) -> dict[str, Any]:
    """A soak run's figures: a sample a minute."""
    samples = [
        {"s": 60.0 * i + 59, "rss_mib": r, "fds": f, "lag_readings": 100 * i, "lag_over_50ms": o}
        for i, (r, f, o) in enumerate(zip(rss, fds, lag_over, strict=True))
    ]
    minutes = len(rss)
    return {"soak_samples": samples, "seconds": 60.0 * minutes, "sent": 10, "acked": 10,
            "lost": 0, "delivered_per_s": [1] * 60 * minutes,
            "latency_ms_per_s": {"p99": [5.0] * 60 * minutes}}  # fmt: skip


def test_soak_verdicts_see_memory_descriptors_and_lag_that_climb() -> None:
    flat = soak.summary(soak_run([200, 210, 211, 210, 211, 210], [40] * 6, [0, 1, 1, 2, 2, 3]), 1)
    assert (flat["rss_flat"], flat["fds_flat"], flat["lag_flat"]) == (True, True, True)
    assert [m["lag_over_50ms"] for m in flat["minutes"]] == [0, 1, 0, 1, 0, 1]
    climbing = soak.summary(
        soak_run([200, 210, 220, 230, 240, 250], [40, 41, 43, 45, 47, 49], [0, 0, 0, 10, 30, 60]),
        1,
    )
    assert (climbing["rss_flat"], climbing["fds_flat"], climbing["lag_flat"]) == (
        False, False, False,
    )  # fmt: skip
    assert climbing["rss_mib_per_10_min"] == 100.0


def test_relay_ratios_name_a_run_that_did_not_hold_the_load() -> None:
    hub = {"target": "hub", "kind": "hub", "patches_per_hub_cpu_s": 600.0, "lost": 0,
           "latency_ms": {"p50": 20.0, "p99": 2500.0}}  # fmt: skip
    baseline = {**hub, "target": "baseline", "kind": "baseline",
                "latency_ms": {"p50": 5.0, "p99": 40.0}}  # fmt: skip
    stock = {**baseline, "target": "baseline-stock", "lost": 3}
    ratios = report.relay_ratios([hub, stock, baseline])
    assert [(r["pair"], r["overloaded"]) for r in ratios] == [
        ("hub / baseline", ["hub"]),
        ("hub / baseline-stock", ["hub", "baseline-stock"]),
    ]
    assert "overloaded (loss, or p99 over 100 ms): hub" in report.ratio_lines(ratios)


def test_redis_commands_per_patch_leave_out_the_harness_own_info_calls() -> None:
    start = {"info": 10, "evalsha": 100, "publish": 5}
    end = {"info": 14, "evalsha": 300, "publish": 105, "time": 20}
    figures = fanout.command_figures(start, end, delivered=100)
    assert figures["redis_commands"] == 320
    assert figures["redis_commands_per_patch"] == 3.2
    assert figures["redis_script_calls_per_patch"] == 2.0
    assert list(figures["redis_top_commands"]) == ["evalsha", "publish", "time"]


@pytest.mark.timeout(120)
def test_connections_mode_joins_everyone() -> None:
    argv = ["connections", "--connections", "30", "--target", "hub", "--hold-seconds", "1"]
    [run] = cli.main(argv)["runs"]
    assert run["clients"] == run["joined"] == 36  # 30 students and their 6 tutors
    assert run["failed"] == {}
    assert run["hub_rss_mib_before"] > 0 and "hub_rss_kib_per_connection" in run
    assert run["hub_idle_cpu_s_per_s"] >= 0 and run["hub_idle_cores_per_1k_connections"] >= 0


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


@pytest.mark.timeout(120)
def test_fanout_mode_relays_everything_on_node_one_and_reads_both_nodes_cpu() -> None:
    need_service("Redis", asyncio.run(redis_problem()))
    argv = ["fanout", "--sessions", "2", "--students", "2", "--seconds", "2", "--workers", "1",
            "--rest-seconds", "0", "--target", "baseline-redis", "--target", "hub-redis",
            "--redis-url", BENCH_REDIS_URL, "--progress-every", "0.5", "--annotate-every",
            "0.25"]  # fmt: skip
    out = cli.main(argv)
    assert [run["target"] for run in out["runs"]] == ["baseline-redis", "hub-redis"]
    # The event mix is the run's: 4 students report every 0.5 s, 2 tutors annotate every
    # 0.25 s, for 2 s (the defaults are 10 s and 2 s).
    hub_run = out["runs"][1]
    assert hub_run["mix"]["progress_every_s"] == 0.5
    assert hub_run["events_ok"]["exercise:progress"] >= 12, hub_run["events_ok"]
    assert hub_run["annotations_sent"] >= 14, hub_run["annotations_sent"]
    for run in out["runs"]:
        assert run["status"] == "ok", run.get("traceback") or run["status"]
        assert run["nodes"] == 2
        assert run["sent"] > 0
        assert run["acked"] == run["sent"] == run["delivered"]
        assert run["lost"] == run["duplicated"] == run["out_of_order"] == 0
        for key in ("busy_cpu_s", "busy_cpu_s_per_1k", "idle_cpu_s", "idle_cpu_s_per_1k",
                    "busy_with_redis_cpu_s_per_1k", "redis_commands_per_patch"):  # fmt: skip
            assert run[key] is not None, key
        # Every delivered patch went through Redis at least once (a publish, at least).
        assert run["redis_commands"] >= run["delivered"]
    assert {r["pair"] for r in out["ratios"]} == {"hub-redis / baseline-redis"}


@pytest.mark.timeout(150)
def test_fanout_mode_compares_two_hubs_on_one_redis_and_on_a_cluster_process_by_process() -> None:
    need_service("Redis", asyncio.run(redis_problem()))
    need_service("Redis Cluster", missing_tools(), hint="install redis-server and redis-cli")
    argv = ["fanout", "--sessions", "4", "--students", "1", "--seconds", "2", "--workers", "1",
            "--rest-seconds", "1", "--tutors-on-node-2", "--target", "hub-redis",
            "--target", "hub-cluster", "--redis-url", BENCH_REDIS_URL]  # fmt: skip
    out = cli.main(argv)
    single, cluster = out["runs"]
    for run in (single, cluster):
        assert run["status"] == "ok", run.get("traceback") or run["status"]
        assert run["tutors_on"] == "node 2"
        assert run["acked"] == run["sent"] == run["delivered"] > 0
        for key in ("busy_cpu_s_per_1k", "idle_cpu_s_per_1k", "redis_cpu_s_per_1k",
                    "hubs_with_redis_cpu_s_per_1k", "redis_hub_commands_per_patch",
                    "busy_rest_cpu_s_per_s", "redis_rest_cpu_s_per_s",
                    "hubs_with_redis_cpu_s_over_rest_per_1k"):  # fmt: skip
            assert run[key] is not None, key
        # Every patch crossed Redis to reach its tutor on node 2.
        assert run["redis_net_bytes_per_patch"] > 0
    assert [node["role"] for node in single["redis_nodes"]] == ["single"]
    assert single["redis_top_commands"].get("publish", 0) >= single["delivered"]
    # The cluster's six processes, each read: a primary and its replica per shard.
    roles = [node["role"] for node in cluster["redis_nodes"]]
    assert roles == ["primary", "replica"] * 3
    assert all(node["cpu_s"] is not None for node in cluster["redis_nodes"])
    assert cluster["redis_processes"] == 6 and cluster["cluster_started_in_s"] > 0
    # Session channels are sharded: SPUBLISH to a primary, SSUBSCRIBE on it.
    assert cluster["redis_top_commands"].get("spublish", 0) >= cluster["delivered"]
    primaries = [node for node in cluster["redis_nodes"] if node["role"] == "primary"]
    assert sum(node["shard_channels"] for node in primaries) >= 4
    # The replicas ran their primaries' writes, and were sent them.
    assert cluster["redis_replica_commands_per_patch"] > 0
    assert cluster["redis_repl_bytes_per_patch"] > 0
    assert "hub-cluster / hub-redis" in {r["pair"] for r in out["ratios"]}


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


# The only places a patch's path may call up the layers: the callbacks the higher layer
# registered (the route table's handler, and the server hook that answers an ack).
CALLBACKS_UP = {
    "realtime.gateway/gateway.Gateway._handler_of.<locals>.on_event",
    "realtime.gateway/server.HubServer.answer",
    "canvas/service.CanvasService._patch",
}


def test_hops_traces_a_patch_that_calls_up_the_layers_only_through_callbacks(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parent.parent
    out = cli.main(["hops", "--root", str(root), "--json", str(tmp_path / "hops.json")])
    (run,) = out["runs"]
    path = run["typical"]["path"]
    # The path runs from the frame's decode through the store and the database to the
    # tutor's queue and the student's ack, in order.
    stages = ["StrictPacket.decode", "CanvasService._patch", "batch.", "Outbox.emit", "Outbox.ack"]
    found = [next(i for i, name in enumerate(path) if stage in name) for stage in stages]
    assert found == sorted(found), list(zip(stages, found, strict=True))
    assert len(path) in run["hops"]
    assert run["upward_calls"] is not None
    assert set(run["upward_calls"]) <= CALLBACKS_UP, run["upward_calls"]


# A child that reports its own CPU seconds (all, system) and, told to, idles for a
# while, then burns about BURN_S of CPU, a good part of it in the kernel (reading
# /dev/zero), and reports again. Its name holds ") ": /proc/<pid>/stat shows the
# name in parentheses, before the fields that count.
BURN_S = 0.6
BURNER = textwrap.dedent(
    f"""
    import ctypes, os, sys, time

    ctypes.CDLL(None).prctl(15, b"burn) 1 2 (x", 0, 0, 0)  # PR_SET_NAME

    def report():
        t = os.times()
        print(time.process_time(), t.system, flush=True)

    report()
    sys.stdin.readline()
    time.sleep(0.3)  # time passes, CPU does not
    start = time.process_time()
    with open("/dev/zero", "rb", buffering=0) as zero:
        while time.process_time() - start < {BURN_S}:
            zero.read(1 << 20)
    report()
    sys.stdin.readline()
    """
)
# /proc counts CPU in clock ticks (1/100 s), user and system each rounded down.
CPU_TOLERANCE_S = 0.05


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[TargetProcess]:
    """The burner as a load target (the shape the runner measures)."""
    log_path = tmp_path / "burner.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    target = TargetProcess("burner", "burner", "", "", process, log_path, log)
    try:
        yield target
    finally:
        process.kill()
        target.stop()
        for pipe in (process.stdin, process.stdout):
            assert pipe is not None
            pipe.close()


def told(process: subprocess.Popen[str]) -> tuple[float, float]:
    """The CPU seconds the process reports next: all of them (to the nanosecond), and
    those in the kernel (to the clock tick)."""
    assert process.stdout is not None
    cpu, system = (float(x) for x in process.stdout.readline().split())
    return cpu, system


def go_on(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()


def test_cpu_seconds_and_the_window_count_the_cpu_a_process_burned(
    burner: TargetProcess,
) -> None:
    cpu_before, system_before = told(burner.process)
    assert abs(cpu_seconds(burner.pid) - cpu_before) <= CPU_TOLERANCE_S
    window = Window(burner)
    window.begin(0.0)  # a start instant already passed: measure from now
    go_on(burner.process)
    cpu_after, system_after = told(burner.process)
    measured = window.end()
    burned = cpu_after - cpu_before
    assert burned >= BURN_S
    assert system_after - system_before >= 0.1, "the burn was meant to be partly system time"
    assert abs(cpu_seconds(burner.pid) - cpu_after) <= CPU_TOLERANCE_S
    assert abs(measured["hub_cpu_s"] - burned) <= CPU_TOLERANCE_S, (measured, burned)
    # The window also slept 0.3 s: CPU seconds, not wall-clock ones.
    assert measured["window_s"] >= burned + 0.3
    go_on(burner.process)


@pytest.mark.timeout(120)
def test_relay_mode_reports_delivered_patches_per_hub_cpu_second() -> None:
    argv = ["relay", "--sessions", "1", "--students", "2", "--rate", "10", "--seconds", "2"]
    [run] = cli.main([*argv, "--target", "hub"])["runs"]
    assert run["delivered"] > 0 and run["hub_cpu_s"] > 0, run
    assert run["patches_per_hub_cpu_s"] == round(run["delivered"] / run["hub_cpu_s"], 1)
    # The hub-against-baseline ratio of that figure, for records of known figures.
    hub = {**run, "delivered": 900, "hub_cpu_s": 1.5, "patches_per_hub_cpu_s": 600.0}
    baseline = {**hub, "target": "baseline", "kind": "baseline", "patches_per_hub_cpu_s": 300.0}
    [ratios] = report.relay_ratios([hub, baseline])
    assert ratios["pair"] == "hub / baseline"
    assert ratios["patches_per_hub_cpu_s"] == 2.0


@pytest.mark.timeout(60)
def test_browser_mode_measures_the_control_center_while_students_draw(tmp_path: Path) -> None:
    need_chromium()
    argv = ["browser", "--students", "2", "--seconds", "3", "--json", str(tmp_path / "b.json")]
    [run] = cli.main(argv)["runs"]
    assert run["settled"], run
    assert run["sent"] > 0 and run["acked"] == run["sent"] and run["refused"] == {}
    assert run["strokes"] >= 2
    # Frames counted over the whole window (about 60 a second headless; at least a few).
    assert run["frames"] == run["frame_ms"]["n"] > 3 * run["seconds"]
    assert 0 < run["frame_ms"]["p50"] <= run["frame_ms"]["p95"] <= run["frame_ms"]["max"]
    assert 0 <= run["frames_over_50ms_share"] <= run["frames_over_33ms_share"] <= 1
    assert set(run["longtasks"]) == {"count", "total_ms", "longest_ms"}
    # Every stroke patch sent was seen on its tile, after it was sent.
    assert run["latency_ms"]["n"] == run["sent"] and run["latency_missing"] == 0
    assert run["latency_ms"]["p50"] >= 0
    assert run["tiles_equal_stored"] == 2
    assert run["heap_mib"]["start"] > 0 and run["heap_mib"]["end"] > 0
    assert run["hub_cpu_s"] > 0 and run["chromium_renderer_cpu_s"] > 0
    assert run["console_problems"] == [] and run["log_problems"] == []
    assert run["exit_code"] == 0
    assert "| hub | 2 |" in browser.table([run])


def test_a_target_whose_free_port_was_taken_meanwhile_goes_elsewhere(tmp_path: Path) -> None:
    """Another process (a hub of a test beside this one) may take the free port picked
    for a target before the target binds it, and answer its /healthz: the target was
    then taken for healthy, and the relay run failed on the other server's answer
    (KeyError 'stack', once in a CI run)."""
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    squatter = start_baseline(tmp_path / "first")
    taken = int(squatter.url.rsplit(":", 1)[1])
    picks = iter([taken, free_port()])
    try:
        with mock.patch.object(procs, "free_port", lambda: next(picks)):
            target = start_baseline(tmp_path / "second")
        try:
            assert target.url != squatter.url
            assert listens_on(target.process.pid, int(target.url.rsplit(":", 1)[1]))
        finally:
            target.stop()
    finally:
        squatter.stop()
