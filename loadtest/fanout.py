"""Fan-out across nodes (issue 5): what one busy node costs a second, idle node on one Redis.

Each target runs one or two server processes; all the load of the relay mix
(every tutor and student of every session, see ``loadtest.scenario``) goes to
node 1, and node 2 runs with no clients:

    baseline              one bare python-socketio relay (``loadtest/baseline/relay.py``)
                          on the hub's loop, JSON library and Engine.IO driver
    baseline-redis        two of them on python-socketio's stock ``AsyncRedisManager``
                          (given the hub's JSON library too)
    baseline-stock        one bare relay on plain asyncio, stdlib json, stock driver
    baseline-stock-redis  two of those on the stock ``AsyncRedisManager``
    hub                   one hub
    hub-redis             two hubs with ``HUB_REDIS_URL``, one database and one secret
    hub-cluster           two hubs on a Redis Cluster of the run's own (3 primaries,
                          3 replicas of ``redis-server`` on loopback, started and
                          stopped around the target: ``loadtest.redis_cluster``), with
                          ``HUB_REDIS_CLUSTER_NODES``

Before the load, one client connects to node 2 and leaves again: a stock
server subscribes to its Redis channel only from its first client on, as any
node of a running cluster has. Then node 2's CPU is read over
``--rest-seconds`` of quiet (what it spends at rest,
``idle_rest_cpu_s_per_s``), and over the measured window: its CPU seconds
per 1,000 patches delivered on node 1 are what the busy node's traffic costs
it (``idle_cpu_s_over_rest``: less what it would have spent at rest; the
clock ticks at 100 Hz, so that estimate is coarse). Node 1's CPU per 1,000
delivered patches, with Redis against without, is what sharing costs the
busy node. Redis's own CPU (``INFO cpu``) and its commands
(``INFO commandstats``) are read around the window too, and for a target with
Redis the busy node's cost is also given with Redis's CPU added
(``busy_with_redis_cpu_s_per_1k``, issue 18): the work the hub hands to Redis
is not free. Both are the whole server's: anything else on that Redis server
(another database, another client) counts too, so run it on a quiet one.
Commands per delivered patch count each ``redis.call`` inside a Lua script
besides the ``EVALSHA`` that ran it, as Redis does (the script calls are also
given apart), and leave out the ``INFO`` calls this harness makes;
with ``--rest-seconds``, the commands the server ran during the rest (both
nodes idle, and whatever else uses that server) are also taken out at that
rate (``redis_commands_per_patch_over_rest``).

The Redis database (``--redis-url``, db 14 by default; never the tests' db 15)
is flushed before every target. Every Redis process is read the same way
(``loadtest.redis_nodes``): one Redis, or each of the cluster's six, gives its CPU
per 1,000 patches, commands and client bytes per patch, and the cluster's
primaries show how the load spreads over the shards (``redis_nodes`` in the
summary). For the two sides to compare, give ``--redis-url`` a Redis of the
run's own (a ``redis-server`` no one else uses): the cluster's are.
A target that breaks down (a node fails to
start or dies, a worker fails, patches go unacked or lost, a node logs errors)
says so in its ``status``, and the run goes on with the next target.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from loadtest import redis_nodes
from loadtest.procs import TargetProcess, start_baseline, start_hub
from loadtest.redis_cluster import HOST, RedisClusterProcesses, missing_tools
from loadtest.redis_nodes import RedisNode
from loadtest.runner import (
    SLACK_S,
    START_DELAY_S,
    generator_figures,
    plans_for,
    relay_figures,
    scrape_metrics,
)
from loadtest.scenario import RelayConfig, RelayWorker, mix_of
from loadtest.sessions import Tokens
from loadtest.wire import WireClient
from loadtest.workers import WorkerPool, split
from realtime.base.identity import Role

TARGETS = (
    "baseline", "baseline-redis", "baseline-stock", "baseline-stock-redis", "hub", "hub-redis",
    "hub-cluster",
)  # fmt: skip
TOP_COMMANDS = 5
# The harness's own reads of the server, and a replica's upkeep of its link to its
# primary, left out of the commands counted.
OWN_COMMANDS = (*redis_nodes.OWN_COMMANDS, *redis_nodes.REPLICATION_COMMANDS)
# Commands that run a script: commandstats also counts each redis.call inside one.
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
TESTS_REDIS_DB = "15"
REST_S = 5.0
PROBE_USER = "fanout-probe"
REDIS_TIMEOUT_S = 5.0
# Longer than the relay mode's 5 s: a saturated node's late deliveries are late, not lost.
DRAIN_S = 15.0


@dataclass(frozen=True)
class FanoutTarget:
    name: str
    kind: str  # "hub" or "baseline"
    redis: bool
    stock: bool = False  # a baseline on plain asyncio, stdlib json and Engine.IO's driver
    cluster: bool = False  # on a Redis Cluster of its own, not ``--redis-url``

    @property
    def nodes(self) -> int:
        return 2 if self.redis else 1


def fanout_target(name: str) -> FanoutTarget:
    if name not in TARGETS:
        raise ValueError(f"expected one of {', '.join(TARGETS)}, got {name!r}")
    if name == "hub-cluster":
        return FanoutTarget(name, "hub", redis=True, cluster=True)
    base = name.removesuffix("-redis")
    kind = "hub" if base == "hub" else "baseline"
    return FanoutTarget(name, kind, name.endswith("-redis"), stock=base == "baseline-stock")


def check_redis_url(url: str) -> None:
    """Refuse the tests' database: every target flushes the one it is given."""
    if url.rstrip("/").rsplit("/", 1)[-1] == TESTS_REDIS_DB:
        raise ValueError(f"expected a Redis db other than {TESTS_REDIS_DB} (the tests'), got {url}")


@contextmanager
def started_nodes(
    target: FanoutTarget,
    root: Path,
    workdir: Path,
    hub_env: dict[str, str],
    redis_url: str,
    nodes: list[TargetProcess],
    cluster_seeds: str | None = None,
) -> Iterator[list[TargetProcess]]:
    """Node 1, then node 2 (after node 1 answers, so only one migrates a fresh database).

    They go into ``nodes`` as they start, so a caller sees their logs even when one fails.
    """
    if cluster_seeds is not None:
        redis_env = {"HUB_REDIS_CLUSTER_NODES": cluster_seeds}
    else:
        redis_env = {"HUB_REDIS_URL": redis_url} if target.redis else {}
    shared = {
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/{target.name}.db",
        "HUB_JWT_SECRET": f"bench-{secrets.token_hex(16)}",
        **redis_env,
        **hub_env,
    }
    try:
        for n in range(1, target.nodes + 1):
            label = f"{target.name}-{n}"
            if target.kind == "hub":
                nodes.append(start_hub(workdir, root=root, extra_env=shared, label=label))
            else:
                url = redis_url if target.redis else None
                nodes.append(
                    start_baseline(workdir, label=label, redis_url=url, stock=target.stock)
                )
        yield nodes
    finally:
        for node in reversed(nodes):
            node.stop()


async def touch(url: str, secret: str) -> None:
    """One client connects to ``url`` and leaves: the node has had a client, as in a cluster."""
    async with aiohttp.ClientSession() as http:
        client = WireClient(http, url)
        await client.connect(Tokens(secret)(PROBE_USER, Role.TUTOR))
        await client.close()


def cpu_or_none(node: TargetProcess) -> float | None:
    try:
        return node.cpu_seconds()
    except (OSError, ValueError, IndexError):
        return None


def served_commands(servers: list[RedisNode]) -> dict[str, int] | None:
    """Calls so far by command where the hubs' commands run: one Redis, or every
    primary of a cluster (a replica runs its primary's writes again)."""
    served = [node for node in servers if node.role != "replica"]
    return redis_nodes.summed_commands([redis_nodes.read_start(node) for node in served])


async def _start_cluster(cluster: RedisClusterProcesses) -> None:
    try:
        await cluster.start()
    finally:  # its clients belong to this loop
        await cluster.close_clients()


def cluster_nodes(cluster: RedisClusterProcesses) -> list[RedisNode]:
    """Each primary, then its replica, labelled by shard: ``primary 1``, ``replica 1``."""
    out = []
    for index, primary in enumerate(cluster.primaries, start=1):
        for node, role in ((primary, "primary"), (cluster.replica_of(primary), "replica")):
            client = redis_nodes.node_client(HOST, node.port)
            out.append(RedisNode(f"{role} {index} :{node.port}", role, client, cluster=True))
    return out


def command_figures(
    start: dict[str, int] | None, end: dict[str, int] | None, delivered: int
) -> dict[str, Any]:
    """Redis commands over the window: in all, per delivered patch, the most called.

    Redis counts each ``redis.call`` inside a Lua script as a command of its own,
    besides the ``EVALSHA`` that ran it; the script calls are also given apart, so
    a reader can tell round trips from work done inside one.
    """
    if start is None or end is None:
        return {"redis_commands": None, "redis_commands_per_patch": None,
                "redis_script_calls_per_patch": None}  # fmt: skip
    calls = {
        name: n - start.get(name, 0)
        for name, n in end.items()
        if name not in OWN_COMMANDS and n > start.get(name, 0)
    }
    total = sum(calls.values())
    scripts = sum(calls.get(name, 0) for name in SCRIPT_COMMANDS)
    top = sorted(calls.items(), key=lambda item: -item[1])[:TOP_COMMANDS]
    return {
        "redis_commands": total,
        "redis_commands_per_patch": round(total / delivered, 2) if delivered else None,
        "redis_script_calls_per_patch": round(scripts / delivered, 2) if delivered else None,
        "redis_top_commands": dict(top),
    }


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else round(sum(v or 0.0 for v in values), 2)


def _delta(end: float | None, start: float | None) -> float | None:
    return round(end - start, 2) if end is not None and start is not None else None


def _per_1k(cpu: float | None, delivered: int) -> float | None:
    return round(cpu * 1000 / delivered, 4) if cpu is not None and delivered else None


def run_fanout(
    target: FanoutTarget,
    args: argparse.Namespace,
    root: Path,
    workdir: Path,
    hub_env: dict[str, str],
) -> dict[str, Any]:
    """One target: all load on node 1; both nodes' CPU; a ``status`` naming any breakdown."""
    summary: dict[str, Any] = {
        "target": target.name, "kind": target.kind, "nodes": target.nodes,
        "redis": target.redis, "root": str(root), "sessions": args.sessions,
        "students_per_session": args.students, "rate_hz": args.rate, "seconds": args.seconds,
        "mix": dataclasses.asdict(mix_of(args)),
    }  # fmt: skip
    problems: list[str] = []
    nodes: list[TargetProcess] = []
    store = redis.Redis.from_url(
        args.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    servers = [RedisNode("redis", "single", store)] if target.redis else []
    cluster: RedisClusterProcesses | None = None
    try:
        seeds = None
        if target.cluster:
            missing = missing_tools()
            if missing is not None:
                raise RuntimeError(f"expected redis-server and redis-cli: {missing}")
            cluster = RedisClusterProcesses(workdir / "cluster")
            asyncio.run(_start_cluster(cluster))
            summary["cluster_started_in_s"] = round(cluster.started_in_s or 0.0, 2)
            servers, seeds = cluster_nodes(cluster), cluster.seeds
        else:
            try:
                store.flushdb()
            except redis.RedisError as exc:
                if target.redis:
                    raise RuntimeError(f"expected Redis at {args.redis_url}: {exc}") from None
        with started_nodes(target, root, workdir, hub_env, args.redis_url, nodes, seeds):
            summary.update(_measure(nodes, args, servers, problems))
    except Exception as exc:
        # A breakdown is a result: report it in the target's row and go on.
        problems.insert(0, f"broke: {_last_line(exc)}")
        summary["traceback"] = traceback.format_exc()[-3000:]
    finally:
        for server in servers:
            server.client.close()
        store.close()
        if cluster is not None:
            cluster.kill()
    for node in nodes:
        found = node.log_problems(limit=1000)
        summary.setdefault("exit_codes", {})[node.label] = node.exit_code
        if node.stack:  # a baseline's own account of its loop, JSON library, driver
            summary.setdefault("stacks", {})[node.label] = node.stack
        summary.setdefault("log_problems", {})[node.label] = found[:5]
        if found:
            problems.append(f"{node.label} logged {len(found)} errors")
    summary["status"] = "; ".join(problems) if problems else "ok"
    return summary


def _measure(
    nodes: list[TargetProcess],
    args: argparse.Namespace,
    servers: list[RedisNode],
    problems: list[str],
) -> dict[str, Any]:
    busy, idle = nodes[0], nodes[1] if len(nodes) > 1 else None
    plans = plans_for(busy, args.sessions, args.students)
    tutor_url = idle.url if idle is not None and args.tutors_on_node_2 else ""
    configs = [
        RelayConfig(
            busy.url,
            busy.secret,
            tuple(part),
            args.rate,
            args.seconds,
            DRAIN_S,
            tutor_url=tutor_url,
            mix=mix_of(args),
        )
        for part in split(plans, args.workers)
    ]
    out: dict[str, Any] = {
        "workers": len(configs),
        "tutors_on": "node 2" if tutor_url else "node 1",
    }
    with WorkerPool(RelayWorker, configs) as pool:
        pool.ready()
        if idle is not None:
            asyncio.run(touch(idle.url, busy.secret))
            if args.rest_seconds > 0:
                out.update(_rest(busy, idle, servers, args.rest_seconds))
        start_at = time.perf_counter() + START_DELAY_S
        pool.go(start_at)
        time.sleep(max(0.0, start_at - time.perf_counter()))
        cpu_start = [cpu_or_none(node) for node in nodes]
        redis_start = [redis_nodes.read_start(server) for server in servers]
        results = pool.done(args.seconds + SLACK_S)
        cpu_end = [cpu_or_none(node) for node in nodes]
        redis_end = [redis_nodes.read_end(server) for server in servers]
        window_s = time.perf_counter() - start_at
        # After the CPU readings: not counted.
        out["hub_metrics"] = scrape_metrics(busy)
        if idle is not None:
            out["hub_metrics_node_2"] = scrape_metrics(idle)
        keys = [redis_nodes.keys_and_channels(server) for server in servers]
    for node in nodes:
        if node.process.poll() is not None:
            problems.append(f"{node.label} exited with {node.process.returncode} under load")
    figures, _ = relay_figures(results, args.seconds)
    delivered = figures["delivered"]
    busy_cpu = _delta(cpu_end[0], cpu_start[0])
    idle_cpu = _delta(cpu_end[1], cpu_start[1]) if idle is not None else None
    # What node 2 spends anyway (its own timers), taken out: what the traffic costs it.
    rest_rate = out.get("idle_rest_cpu_s_per_s")
    over_rest = (
        round(idle_cpu - rest_rate * window_s, 2)
        if idle_cpu is not None and rest_rate is not None
        else None
    )
    rows = [
        {**redis_nodes.node_figures(server, start, end, delivered, n_keys),
         "shard_channels": channels}
        for server, start, end, (n_keys, channels) in zip(
            servers, redis_start, redis_end, keys, strict=True
        )
    ]  # fmt: skip
    redis_totals = redis_nodes.totals(rows, delivered) if rows else {}
    redis_s = redis_totals.get("redis_cpu_s")
    # Without Redis (one node), the server's CPU is someone else's: nothing to add.
    busy_with_redis = _sum(busy_cpu, redis_s) if len(nodes) > 1 else busy_cpu
    both_with_redis = _sum(busy_cpu, idle_cpu, redis_s) if len(nodes) > 1 else busy_cpu
    served = [i for i, server in enumerate(servers) if server.role != "replica"]
    commands = command_figures(
        redis_nodes.summed_commands([redis_start[i] for i in served]) if served else None,
        redis_nodes.summed_commands([redis_end[i] for i in served]) if served else None,
        delivered,
    )
    # What the server ran anyway (both nodes at rest, and any other client), taken out.
    rest_calls = out.get("redis_rest_commands_per_s")
    over_rest_calls = (
        round((commands["redis_commands"] - rest_calls * window_s) / delivered, 2)
        if commands["redis_commands"] is not None and rest_calls is not None and delivered
        else None
    )
    # Everything the two hubs and Redis spend at rest (every client joined, nothing
    # drawn), taken out: a window that waited out a lost patch's drain is not
    # charged for its quiet seconds.
    rest_rates = [out.get(k) for k in ("busy_rest_cpu_s_per_s", "idle_rest_cpu_s_per_s",
                                       "redis_rest_cpu_s_per_s")]  # fmt: skip
    all_over_rest = (
        round(both_with_redis - sum(rest_rates) * window_s, 2)  # type: ignore[arg-type]
        if both_with_redis is not None and None not in rest_rates and len(nodes) > 1
        else None
    )
    unacked = figures["sent"] - figures["acked"]
    for key, n in (("unacked", unacked), ("lost", figures["lost"]),
                   ("duplicated", figures["duplicated"]),
                   ("out of order", figures["out_of_order"]),
                   ("annotations lost", figures["annotations_lost"]),
                   ("skipped (100 in flight)", figures["skipped"])):  # fmt: skip
        if n:
            problems.append(f"{n} {key}")
    if figures["errors"]:
        problems.append(f"error acks {figures['errors']}")
    return {
        **out,
        **figures,
        "unacked": unacked,
        "window_s": round(window_s, 2),
        "busy_cpu_s": busy_cpu,
        "busy_cpu_s_per_1k": _per_1k(busy_cpu, delivered),
        "idle_cpu_s": idle_cpu,
        "idle_cpu_s_per_1k": _per_1k(idle_cpu, delivered),
        "idle_cpu_s_over_rest": over_rest,
        "idle_cpu_s_over_rest_per_1k": _per_1k(over_rest, delivered),
        "redis_cpu_s": redis_s,
        # With Redis: the busy node and the Redis server (the work it handed over).
        "busy_with_redis_cpu_s": busy_with_redis,
        "busy_with_redis_cpu_s_per_1k": _per_1k(busy_with_redis, delivered),
        # Both hubs and every Redis process: what the whole deployment spent.
        "hubs_with_redis_cpu_s_per_1k": _per_1k(both_with_redis, delivered),
        "hubs_with_redis_cpu_s_over_rest_per_1k": _per_1k(all_over_rest, delivered),
        **commands,
        **{key: value for key, value in redis_totals.items() if key != "redis_cpu_s"},
        "redis_nodes": rows,
        "redis_commands_per_patch_over_rest": over_rest_calls,
        **generator_figures(results),
    }


def _rest(
    busy: TargetProcess, idle: TargetProcess, servers: list[RedisNode], seconds: float
) -> dict[str, Any]:
    """What both nodes and Redis spend over ``seconds`` at rest, every client joined and
    nothing drawn: CPU per second of each node and of all the Redis processes, and the
    commands the hubs' Redis ran."""
    cpu_start = [cpu_or_none(busy), cpu_or_none(idle)]
    redis_start = [redis_nodes.read_start(server).cpu_s for server in servers]
    commands_start = served_commands(servers)
    time.sleep(seconds)
    cpu = [_delta(cpu_or_none(node), at) for node, at in zip((busy, idle), cpu_start, strict=True)]
    redis_end = [redis_nodes.read_end(server).cpu_s for server in servers]
    redis_s = _sum(*(_delta(end, at) for end, at in zip(redis_end, redis_start, strict=True)))
    calls = command_figures(commands_start, served_commands(servers), 1)["redis_commands"]

    def rate(value: float | None, digits: int = 3) -> float | None:
        return round(value / seconds, digits) if value is not None else None

    return {
        "busy_rest_cpu_s_per_s": rate(cpu[0]),
        "idle_rest_cpu_s_per_s": rate(cpu[1]),
        "redis_rest_cpu_s_per_s": rate(redis_s),
        "redis_rest_commands_per_s": rate(calls, 1),
    }


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text}"[:300]
