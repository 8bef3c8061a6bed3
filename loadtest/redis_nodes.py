"""The Redis servers behind a fan-out target, read around its window (issue 21).

One Redis is one ``RedisNode`` (role ``single``); a cluster is one per server,
primaries and replicas. The same readings are taken of every node, whichever
the side, so one Redis and a cluster compare on equal terms:

    INFO cpu           CPU seconds, user + system, of the whole server process
    INFO commandstats  calls by command (a ``redis.call`` inside a script counts too)
    INFO stats         client bytes in and out (``total_net_input_bytes`` /
                       ``total_net_output_bytes``; since Redis 7.0 without the
                       replication stream, which is ``total_net_repl_*_bytes``),
                       and the shard channels subscribed (``pubsubshard_channels``)
    CLUSTER INFO       cluster bus messages sent (a count: Redis gives no bytes for
                       the bus, which carries SPUBLISH from a primary to its replicas)

The harness's own reads are left out where they can be: ``INFO`` from the
commands, and ``INFO stats`` is read last at the start and first at the end,
so only one INFO stats reply per node (about 2 KB) falls inside the window's
bytes. Keys per node (``DBSIZE``) are read after the end, outside the window.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

# The harness's own reads, left out of the commands counted.
OWN_COMMANDS = ("info", "cluster|info", "dbsize")
# A replica's acks and sync to its primary: the cluster's upkeep, not the hub's work.
REPLICATION_COMMANDS = ("replconf", "psync", "sync")
REDIS_TIMEOUT_S = 5.0
TOP_COMMANDS = 5


@dataclass
class RedisNode:
    """One Redis server: ``single`` (one Redis), or a cluster's ``primary`` / ``replica``."""

    label: str
    role: str
    client: redis.Redis
    cluster: bool = False


@dataclass(frozen=True)
class Reading:
    """One node's counters at one moment; None where it did not answer."""

    cpu_s: float | None
    commands: dict[str, int] | None
    net_in: int | None
    net_out: int | None
    repl_out: int | None
    bus_sent: int | None


def node_client(host: str, port: int, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        db=db,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )


def _info(client: redis.Redis, section: str) -> dict[str, Any] | None:
    try:
        return dict(client.info(section))
    except redis.RedisError:
        return None


def read_start(node: RedisNode) -> Reading:
    """At the window's start: INFO stats last, so the replies before it do not count."""
    cpu, commands, bus = _cpu(node), _commands(node), _bus_sent(node)
    return _reading(node, cpu, commands, bus, _info(node.client, "stats"))


def read_end(node: RedisNode) -> Reading:
    """At the window's end: INFO stats first, so the replies after it do not count."""
    stats = _info(node.client, "stats")
    return _reading(node, _cpu(node), _commands(node), _bus_sent(node), stats)


def _reading(
    node: RedisNode,
    cpu: float | None,
    commands: dict[str, int] | None,
    bus: int | None,
    stats: dict[str, Any] | None,
) -> Reading:
    def stat(key: str) -> int | None:
        return int(stats[key]) if stats is not None and key in stats else None

    return Reading(
        cpu, commands, stat("total_net_input_bytes"), stat("total_net_output_bytes"),
        stat("total_net_repl_output_bytes"), bus,
    )  # fmt: skip


def _cpu(node: RedisNode) -> float | None:
    info = _info(node.client, "cpu")
    return None if info is None else float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _commands(node: RedisNode) -> dict[str, int] | None:
    """Calls so far by command; ``INFO commandstats`` names a subcommand ``cluster|info``."""
    info = _info(node.client, "commandstats")
    if info is None:
        return None
    return {key.removeprefix("cmdstat_"): int(v["calls"]) for key, v in info.items()}


def _bus_sent(node: RedisNode) -> int | None:
    if not node.cluster:
        return None
    try:
        info = node.client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None
    # redis-py parses the reply into a dict of strings.
    sent = info.get("cluster_stats_messages_sent") if isinstance(info, dict) else None
    return int(sent) if sent is not None else None


def commands_by_name(start: Reading, end: Reading) -> dict[str, int] | None:
    """Calls over the window by command, less the harness's reads."""
    if start.commands is None or end.commands is None:
        return None
    before = start.commands
    return {
        name: n - before.get(name, 0)
        for name, n in end.commands.items()
        if name not in OWN_COMMANDS and n > before.get(name, 0)
    }


def hub_commands(calls: dict[str, int]) -> int:
    """The calls the hubs made (the replication upkeep left out)."""
    return sum(n for name, n in calls.items() if name not in REPLICATION_COMMANDS)


def _delta(end: float | None, start: float | None, digits: int = 2) -> float | None:
    return round(end - start, digits) if end is not None and start is not None else None


def _per(value: float | None, delivered: int, scale: float = 1.0) -> float | None:
    return round(value * scale / delivered, 4) if value is not None and delivered else None


def node_figures(
    node: RedisNode, start: Reading, end: Reading, delivered: int, keys: int | None
) -> dict[str, Any]:
    """One node's share of the window: CPU, commands, bytes, per 1,000 patches or per patch."""
    cpu = _delta(end.cpu_s, start.cpu_s)
    calls = commands_by_name(start, end)
    commands = hub_commands(calls) if calls is not None else None
    net_in = _delta(end.net_in, start.net_in, 0)
    net_out = _delta(end.net_out, start.net_out, 0)
    repl_out = _delta(end.repl_out, start.repl_out, 0)
    top = sorted((calls or {}).items(), key=lambda item: -item[1])[:TOP_COMMANDS]
    return {
        "label": node.label, "role": node.role, "cpu_s": cpu,
        "cpu_s_per_1k": _per(cpu, delivered, 1000), "commands": commands,
        "commands_per_patch": _per(commands, delivered), "top_commands": dict(top),
        "net_in_bytes": net_in, "net_out_bytes": net_out,
        "net_bytes_per_patch": _per(_sum(net_in, net_out), delivered),
        "repl_out_bytes_per_patch": _per(repl_out, delivered),
        "bus_messages_per_patch": _per(_delta(end.bus_sent, start.bus_sent, 0), delivered),
        "keys": keys,
    }  # fmt: skip


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v or 0.0 for v in values)


def keys_and_channels(node: RedisNode) -> tuple[int | None, int | None]:
    """Keys in the node's database and shard channels subscribed on it (after the window)."""
    try:
        keys = int(node.client.dbsize())
        stats = dict(node.client.info("stats"))
    except redis.RedisError:
        return None, None
    channels = stats.get("pubsubshard_channels")
    return keys, int(channels) if channels is not None else None


def totals(rows: list[dict[str, Any]], delivered: int) -> dict[str, Any]:
    """Sums over the nodes: every node's CPU; the hubs' commands where they ran them
    (one Redis, or the primaries: a replica runs the primaries' writes again); client
    bytes in and out of every node; the replication stream apart."""
    served = [r for r in rows if r["role"] != "replica"]
    cpu = _sum(*(r["cpu_s"] for r in rows))
    commands = _sum(*(r["commands"] for r in served))
    replica_commands = _sum(*(r["commands"] for r in rows if r["role"] == "replica"))
    net = _sum(*(_sum(r["net_in_bytes"], r["net_out_bytes"]) for r in rows))
    return {
        "redis_processes": len(rows),
        "redis_cpu_s": round(cpu, 2) if cpu is not None else None,
        "redis_cpu_s_per_1k": _per(cpu, delivered, 1000),
        "redis_hub_commands_per_patch": _per(commands, delivered),
        "redis_replica_commands_per_patch": _per(replica_commands, delivered),
        "redis_net_bytes_per_patch": _per(net, delivered),
        "redis_repl_bytes_per_patch": _per(_sum(*(r["repl_out_bytes_per_patch"] for r in rows)), 1),
    }


def summed_commands(readings: list[Reading]) -> dict[str, int] | None:
    """Calls by command summed over nodes (the ones the hubs' commands ran on)."""
    if any(r.commands is None for r in readings):
        return None
    total: Counter[str] = Counter()
    for reading in readings:
        total.update(reading.commands or {})
    return dict(total)
