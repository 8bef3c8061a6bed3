"""``python -m loadtest rollout``: a rolling restart of Redis-shared hubs behind nginx,
with students drawing throughout; whether anything acked was lost, doubled or
reordered, and how long the students took to recover.

The drill: N hubs (``python -m realtime serve``, one database, one Redis, one JWT
secret) on fixed loopback ports behind nginx, configured from
``docs/deploy/nginx.conf`` itself (``loadtest/rollout_nginx.py``); S sessions of a
tutor and K students (``loadtest/rollout_clients.py``) through nginx. After the
warm-up each hub in turn gets SIGTERM, is waited for, and is started again on
its port; once it answers ``/readyz`` the drill waits ``pause`` seconds before the
next. Then ``after`` seconds more, the students stop, the tutors catch up, and
the op log is read back over REST (``loadtest/rollout_report.py`` judges it).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from loadtest.procs import TargetProcess, free_port, start_hub
from loadtest.rollout_clients import Student, Tutor
from loadtest.rollout_nginx import DOCUMENTED_CONF, Nginx, nginx_binary, start_nginx
from loadtest.rollout_report import judge, read_stored
from loadtest.sessions import Tokens, create_sessions
from realtime.base.identity import Role

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
STOP_LIMIT_S = 30.0  # a hub still running this long after SIGTERM is killed (exit None)
READY_LIMIT_S = 30.0
CATCH_UP_S = 15.0
DRAIN_S = 10.0  # the students' last patches and acks after they are told to stop


class NginxMissing(RuntimeError):
    """The drill behind nginx was asked for and there is no nginx binary."""


@dataclass(frozen=True)
class RolloutConfig:
    hubs: int = 2
    sessions: int = 5
    students: int = 5
    rate: float = 5.0
    warm_up: float = 5.0
    pause: float = 5.0
    after: float = 5.0
    # SIGKILL instead of SIGTERM: a hub that dies, not one that stops (recovery time).
    kill: bool = False
    timeout: float = 180.0
    redis_url: str = DEFAULT_REDIS_URL
    database_url: str | None = None  # None: a SQLite file in the work directory
    direct: bool = False
    nginx_conf: Path = DOCUMENTED_CONF  # whose upstream servers and listen the drill replaces
    hub_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Fleet:
    """The hub processes (the current one on each port) and nginx."""

    env: dict[str, str]
    ports: list[int]
    hubs: list[TargetProcess] = field(default_factory=list)
    retired: list[TargetProcess] = field(default_factory=list)
    nginx: Nginx | None = None

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for hub in self.hubs:
            hub.stop()


def run_rollout(config: RolloutConfig, workdir: Path) -> dict[str, Any]:
    """Run the drill in ``workdir``; the summary (``summary["failures"]`` empty if it passed)."""
    binary = None if config.direct else nginx_binary()
    if not config.direct and binary is None:
        raise NginxMissing(
            "nginx is not installed (Debian package 'nginx'; /usr/sbin/nginx): the drill "
            "tests the documented nginx config; --direct connects to the hubs instead"
        )
    sentinel = (f"rollout:sentinel:{secrets.token_hex(8)}", secrets.token_hex(8))
    with redis.Redis.from_url(config.redis_url, socket_timeout=5) as store:
        store.flushdb()
        store.set(*sentinel)  # gone at the end: someone else flushed the database meanwhile
    schema = f"rollout_{uuid.uuid4().hex[:12]}" if config.database_url else None
    if schema:
        _postgres(config.database_url, f'CREATE SCHEMA "{schema}"')
    env = {
        "HUB_DATABASE_URL": config.database_url or f"sqlite+aiosqlite:///{workdir}/rollout.db",
        "HUB_JWT_SECRET": f"rollout-{secrets.token_hex(16)}",
        "HUB_REDIS_URL": config.redis_url,
        "HUB_TRUSTED_PROXIES": '["127.0.0.1"]',
        **({"HUB_DATABASE_SCHEMA": schema} if schema else {}),
        **config.hub_env,
    }
    fleet = Fleet(env, [free_port() for _ in range(config.hubs)])
    started = time.monotonic()
    try:
        for n, port in enumerate(fleet.ports, start=1):
            # One after another: only the first migrates the fresh database.
            fleet.hubs.append(start_hub(workdir, extra_env=env, label=f"hub{n}-1", port=port))
        if binary is not None:
            fleet.nginx = start_nginx(binary, workdir, fleet.ports, config.nginx_conf)
        summary = asyncio.run(_drill(config, workdir, fleet, started + config.timeout))
    finally:
        fleet.stop()
        if schema:
            _postgres(config.database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    summary["hub_exit_codes_at_end"] = {h.label: h.exit_code for h in fleet.hubs}
    summary["failures"] += [
        f"{label} exited with {code} when stopped at the end"
        for label, code in summary["hub_exit_codes_at_end"].items()
        if code != 0
    ]
    logs = fleet.retired + fleet.hubs
    summary["hub_log_problems"] = [f"{h.label}: {p}" for h in logs for p in h.log_problems()]
    summary["hub_log_warnings"] = [f"{h.label}: {w}" for h in logs for w in _warnings(h)]
    if fleet.nginx is not None:
        summary["nginx_log"] = fleet.nginx.log_summary()
    with redis.Redis.from_url(config.redis_url, socket_timeout=5) as store:
        summary["redis_kept"] = store.get(sentinel[0]) == sentinel[1].encode()
    if not summary["redis_kept"]:
        summary["failures"].append(
            f"INVALID: another process flushed {config.redis_url} during the drill (the "
            "hubs' keys went with it): run it again on a Redis database nobody else uses"
        )
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary


def _warnings(hub: TargetProcess, limit: int = 20) -> list[str]:
    lines = hub.log_path.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if " WARNING " in line][:limit]


def _postgres(url: str | None, statement: str) -> None:
    """Run one statement (the drill's own schema made or dropped) on ``url``."""
    assert url is not None

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _drill(
    config: RolloutConfig, workdir: Path, fleet: Fleet, deadline: float
) -> dict[str, Any]:
    remaining = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(_run(config, workdir, fleet, deadline), remaining)
    except TimeoutError:
        message = f"the drill did not finish within --timeout {config.timeout:g} s"
        raise RuntimeError(message) from None


async def _run(
    config: RolloutConfig, workdir: Path, fleet: Fleet, deadline: float
) -> dict[str, Any]:
    secret = fleet.env["HUB_JWT_SECRET"]
    tokens = Tokens(secret)
    hub_urls = [f"http://127.0.0.1:{p}" for p in fleet.ports]
    base = fleet.nginx.url if fleet.nginx is not None else hub_urls[0]
    urls = [base] if fleet.nginx is not None else hub_urls
    plans = await create_sessions(base, secret, config.sessions, config.students)
    tutors = [
        Tutor(p.tutor_id, tokens(p.tutor_id, Role.TUTOR), p.session_id, urls, index=i,
              students=p.student_ids)
        for i, p in enumerate(plans)
    ]  # fmt: skip
    students = [
        Student(s, tokens(s, Role.STUDENT), p.session_id, urls, index=i * len(plans) + k,
                rate=config.rate)
        for i, p in enumerate(plans) for k, s in enumerate(p.student_ids)
    ]  # fmt: skip
    stop_drawing, stop_watching = asyncio.Event(), asyncio.Event()
    watching = [asyncio.create_task(t.run(stop_watching, deadline)) for t in tutors]
    drawing: list[asyncio.Task[None]] = []
    try:
        await _settled(watching, lambda: all(t.link is not None for t in tutors), 30.0)
        drawing = [asyncio.create_task(s.run(stop_drawing, deadline)) for s in students]
        await asyncio.sleep(config.warm_up)
        drawn_before_roll = sum(len(s.acked) for s in students)
        restarts = []
        for index in range(config.hubs):
            if index:
                await asyncio.sleep(config.pause)
            restarts.append(await _restart(fleet, workdir, index, kill=config.kill))
            _fail_fast(drawing + watching)
        await asyncio.sleep(config.after)
        connections_at_end = {h.label: _connections(h) for h in fleet.hubs}
        stop_drawing.set()
        await _settled(drawing, lambda: False, DRAIN_S)
        await _settled(watching, lambda: _caught_up(tutors, students), CATCH_UP_S)
        stop_watching.set()
        await _settled(watching, lambda: False, DRAIN_S)
        rest_retries: Counter[int] = Counter()
        stored = await read_stored(base, tokens, plans, rest_retries)
    finally:
        for task in drawing + watching:
            task.cancel()
        await asyncio.gather(*drawing, *watching, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in [*tutors, *students]), return_exceptions=True)
    summary = judge(config.hubs, restarts, students, tutors, stored)
    summary["config"] = {k: str(v) if isinstance(v, Path) else v
                         for k, v in vars(config).items() if k != "hub_env"}  # fmt: skip
    summary["through"] = "nginx" if fleet.nginx is not None else "direct"
    summary["acked_before_roll"] = drawn_before_roll
    summary["hub_connections_at_end"] = connections_at_end
    summary["rest_retries"] = dict(rest_retries)
    return summary


async def _settled(tasks: list[asyncio.Task[None]], done: Any, within: float) -> None:
    """Wait until ``done()`` or every task ended (at most ``within`` s); a task's error raised."""
    end = time.monotonic() + within
    while time.monotonic() < end and not done() and not all(t.done() for t in tasks):
        _fail_fast(tasks)
        await asyncio.sleep(0.05)
    _fail_fast(tasks)


def _fail_fast(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _caught_up(tutors: list[Tutor], students: list[Student]) -> bool:
    last = {s.user_id: max(s.acked, default=0) for s in students}
    return all(c.seq >= last[s] for t in tutors for s, c in t.canvases.items())


def _connections(hub: TargetProcess) -> int | None:
    """The hub's ``hub_connections`` gauge (open Socket.IO connections), or None."""
    text = hub.get_text("/metrics") if hub.process.poll() is None else None
    for line in (text or "").splitlines():
        if line.startswith("hub_connections "):
            return int(float(line.split()[1]))
    return None


async def _restart(fleet: Fleet, workdir: Path, index: int, *, kill: bool) -> dict[str, Any]:
    """SIGTERM (``kill``: SIGKILL) hub ``index``, wait for its exit, start it again on
    its port, wait for ``/readyz``; what happened, with timings in seconds."""
    old, port = fleet.hubs[index], fleet.ports[index]
    connections = await asyncio.to_thread(_connections, old)
    started = time.monotonic()
    sent = signal.SIGKILL if kill else signal.SIGTERM
    old.process.send_signal(sent)
    with suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(old.process.wait, STOP_LIMIT_S)
    stop_s = time.monotonic() - started
    exit_code = old.process.poll()  # None: still running after STOP_LIMIT_S (then killed)
    await asyncio.to_thread(old.stop)
    fleet.retired.append(old)
    generation = sum(h.label.startswith(f"hub{index + 1}-") for h in fleet.retired) + 1
    label = f"hub{index + 1}-{generation}"

    def start() -> TargetProcess:
        # Into the fleet from the thread itself: should the drill be cancelled meanwhile
        # (--timeout, Ctrl-C), asyncio.run waits for this thread, then the fleet stops it.
        fleet.hubs[index] = start_hub(workdir, extra_env=fleet.env, label=label, port=port)
        return fleet.hubs[index]

    new = await asyncio.to_thread(start)
    ready_s = await _ready(new)
    return {
        "hub": old.label, "port": port, "connections_at_sigterm": connections,
        "signal": sent.name, "exit_code": exit_code,
        "expected_exit_code": -signal.SIGKILL if kill else 0,
        "stop_s": round(stop_s, 2), "restarted_as": new.label,
        "sigterm_to_ready_s": round(ready_s - started, 2), "sigterm_at": started,
    }  # fmt: skip


async def _ready(hub: TargetProcess) -> float:
    """When ``/readyz`` first answered 200 (monotonic)."""
    end = time.monotonic() + READY_LIMIT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            with suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{hub.url}/readyz", timeout=aiohttp.ClientTimeout(2)) as r:
                    if r.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{hub.label} did not answer /readyz 200 within {READY_LIMIT_S} s")
