"""``python -m loadtest tenancy``: hub processes for the tenancy soak, and its table.

One hub, or several on one SQLite file and one Redis database (flushed first), each
a ``python -m realtime serve`` on a free loopback port; the soak itself is
``loadtest.tenancy``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import redis

from loadtest.procs import ROOT, TargetProcess, start_hub
from loadtest.tenancy import TenancyConfig, run_tenancy

REDIS_DBS = ("9", "10")
# Rate limits out of the way (a client awaits each ack; the soak is about who gets what).
HUB_SOAK_ENV = {
    "HUB_SOCKET_EVENTS_PER_S": "100000",
    "HUB_SOCKET_EVENT_BURST": "100000",
}


def check_redis_url(url: str) -> None:
    """The soak flushes its Redis database: only 9 or 10, never another's."""
    if url.rstrip("/").rsplit("/", 1)[-1] not in REDIS_DBS:
        raise ValueError(f"expected a Redis URL ending in /9 or /10, got {url}")


def soak(
    workdir: Path,
    *,
    hubs: int = 1,
    redis_url: str | None = None,
    events: int = 100_000,
    seconds: float = 600.0,
    centers: int = 3,
    hub_env: dict[str, str] | None = None,
    root: Path = ROOT,
) -> dict[str, Any]:
    """Start ``hubs`` hub processes on one SQLite file (and ``redis_url``, flushed
    first, for two or more), run the soak against them, stop them; the summary.
    (The command line takes only Redis databases 9 and 10: ``check_redis_url``.)"""
    if hubs > 1 and not redis_url:
        raise ValueError("several hubs share sessions only through Redis: give a redis_url")
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()
    secret = f"tenancy-{secrets.token_hex(16)}"
    env = {
        **HUB_SOAK_ENV,
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/tenancy.db",
        "HUB_JWT_SECRET": secret,
        **({"HUB_REDIS_URL": redis_url} if redis_url else {}),
        **(hub_env or {}),
    }
    targets: list[TargetProcess] = []
    start = time.monotonic()
    try:
        for n in range(1, hubs + 1):
            # One after another: only the first migrates the fresh database.
            targets.append(start_hub(workdir, root=root, extra_env=env, label=f"hub-{n}"))
        config = TenancyConfig(tuple(t.url for t in targets), secret, centers, events, seconds)
        summary = asyncio.run(run_tenancy(config))
        summary["hub_log_problems"] = [p for t in targets for p in t.log_problems()]
        summary["hub_alive_at_end"] = [t.process.poll() is None for t in targets]
    finally:
        for target in targets:
            target.stop()
    summary["wall_s"] = round(time.monotonic() - start, 1)
    summary["redis_url"] = redis_url
    return summary


def table(summary: dict[str, Any]) -> str:
    """The figures a reader wants first, as a Markdown table."""
    keys = [
        "hubs", "connections", "events_sent", "events_received", "violations",
        "refusals_accepted", "expected_deliveries", "missing", "missing_at_end", "load_s",
        "wall_s",
    ]  # fmt: skip
    rows = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    rows.append("| " + " | ".join(str(summary.get(k)) for k in keys) + " |")
    kinds = ", ".join(f"{k} {n}" for k, n in summary["violations_by_kind"].items())
    return "\n".join([*rows, "", f"violations by kind: {kinds}"])
