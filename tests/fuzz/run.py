"""Running the harness: hypothesis over each event and route, the stock JS client
that listens meanwhile, and the long run's command line (``python -m tests.fuzz``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.rest import operations, request_for, rest_batch
from tests.fuzz.sockets import bases, raw_batch, socket_batch
from tests.fuzz.values import EVENTS, WEIGHTED_ACTORS, mutated, raw_frame
from tests.fuzz.world import API, SESSIONS, WAIT_S, Finding, Tally, World, strict
from tests.processes import ROOT, HubProcess, spawn_hub
from tests.support import Client

# -- a stock JavaScript client ------------------------------------------------------

WATCH_SCRIPT = ROOT / "tests" / "js" / "fuzz_watch.mjs"
JS_WATCHERS = ("tutor", "student2", "supervisor")


class JsWatch:
    """``tests/js/fuzz_watch.mjs``: stock socket.io-client sockets of the first center's
    session that listen while the run fuzzes, and join again at the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, node: str, world: World, max_s: float) -> JsWatch:
        scenario = {
            "url": world.hub.url,
            "session_id": world.sessions["c1"],
            "tokens": {name: world.token(name, ttl_s=max_s + 3600) for name in JS_WATCHERS},
            "max_s": max_s,
        }
        proc = await asyncio.create_subprocess_exec(
            node,
            str(WATCH_SCRIPT),
            json.dumps(scenario),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT_S * 3)
        if line.strip() != b"ready":
            proc.kill()
            rest = await proc.stderr.read()
            raise AssertionError(f"fuzz_watch.mjs did not start: {line!r} {rest[-2000:]!r}")
        return cls(proc)

    async def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), WAIT_S * 6)
        assert self.proc.returncode == 0, f"fuzz_watch.mjs exited {self.proc.returncode}: {err!r}"
        seen: dict[str, Any] = json.loads(out)
        return seen


async def check_js(world: World, seen: dict[str, Any]) -> None:
    """The stock JS clients decoded everything (no disconnect), and the canvases they
    get equal what REST returns and what a fresh python-socketio join returns."""
    if seen["disconnects"]:
        raise Finding(f"a stock JS client was disconnected: {seen['disconnects']}")
    session_id = world.sessions["c1"]
    fresh = Client()
    await fresh.connect(world.hub.url, world.token("tutor"))
    try:
        python_join = await fresh.join(session_id)
    finally:
        await fresh.sio.disconnect()
    js_join = seen["joins"]["tutor"]
    assert js_join["ok"] and python_join["ok"], (js_join, python_join)
    assert sorted(js_join["canvases"]) == ["s1", "s2"], js_join["canvases"]
    for student, canvas in js_join["canvases"].items():
        path = f"{SESSIONS}/{session_id}/canvases/{student}"
        status, _, raw = await world.rest("GET", path, world.token("tutor"))
        assert status == 200, raw
        rest = strict(raw, f"GET {path}")["data"]
        theirs = python_join["canvases"][student]
        if not (canvas["doc"] == rest["doc"] == theirs["doc"]):
            raise Finding(
                f"canvas {student}: JS join {canvas['doc']}\nREST {rest['doc']}\n"
                f"python join {theirs['doc']}"
            )
        if not (canvas["seq"] == rest["seq"] == theirs["seq"]):
            raise Finding(f"canvas {student}: seqs {canvas['seq']} {rest['seq']} {theirs['seq']}")
        synced = seen["syncs"]["tutor"][student]
        if not synced["ok"] or synced["seq"] != canvas["seq"]:
            raise Finding(f"canvas {student}: JS canvas:sync since 0 {synced}")
        if "doc" in synced and synced["doc"] != canvas["doc"]:
            raise Finding(f"canvas {student}: JS canvas:sync doc {synced['doc']}")
    world.tally.add("JS clients", "checked")


# -- running --------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How much a run sends: batches of ``batch`` payloads, per event and per route."""

    per_event: int
    per_route: int
    raw_frames: int
    batch: int = 25
    compare_every: int = 1  # compare the state around every n-th batch


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, examples),
        deadline=None,
        database=None,
        derandomize=os.environ.get("HUB_FUZZ_SEED") is None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


def run_socket_events(
    runner: asyncio.Runner, world: World, budget: Budget, events: list[str] | None = None
) -> None:
    for event in events or list(EVENTS):
        fuzz_event(runner, world, budget, event)


def fuzz_event(runner: asyncio.Runner, world: World, budget: Budget, event: str) -> None:
    """``budget.per_event`` payloads of ``event``, in batches from one actor each."""
    count = [0]

    @hypothesis_settings(math.ceil(budget.per_event / budget.batch))
    @given(data=st.data())
    def batches(data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(WEIGHTED_ACTORS), label="actor")
        rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
        # Half the batches only hostile in ways always refused: those are compared.
        refused_only = data.draw(st.booleans(), label="refused only")
        payloads = [
            data.draw(mutated(event, bases(world, actor, event, rng), refused_only))
            for _ in range(budget.batch)
        ]
        count[0] += 1
        compare = count[0] % budget.compare_every == 0
        runner.run(socket_batch(world, actor, payloads, compare))

    batches()


def run_raw_frames(runner: asyncio.Runner, world: World, budget: Budget) -> None:
    @hypothesis_settings(math.ceil(budget.raw_frames / 3))
    @given(frames=st.lists(raw_frame, min_size=1, max_size=5))
    def fuzz_frames(frames: list[str | bytes]) -> None:
        runner.run(raw_batch(world, frames))

    fuzz_frames()


def run_rest(
    runner: asyncio.Runner,
    world: World,
    budget: Budget,
    document: dict[str, Any],
    only: Callable[[str, str], bool] = lambda method, path: True,
) -> None:
    for method, template, operation in operations(document):
        if only(method, template):
            fuzz_route(runner, world, budget, document, (method, template, operation))


def fuzz_route(
    runner: asyncio.Runner,
    world: World,
    budget: Budget,
    document: dict[str, Any],
    route: tuple[str, str, dict[str, Any]],
) -> None:
    """``budget.per_route`` requests to one REST operation, in batches."""
    batch = max(1, budget.batch // 5)

    @hypothesis_settings(math.ceil(budget.per_route / batch))
    @given(data=st.data())
    def batches(data: st.DataObject) -> None:
        requests = [data.draw(request_for(world, document, *route)) for _ in range(batch)]
        runner.run(rest_batch(world, requests, compare=True))

    batches()


MAX_FINDING_CHARS = 30_000


def start(tmp: Path, database_url: str | None = None, schema: str | None = None) -> HubProcess:
    """A hub process on loopback: SQLite in ``tmp``, or ``database_url`` (Postgres, its
    tables in ``schema``, which must exist)."""
    env = {}
    if database_url is not None:
        env["HUB_DATABASE_URL"] = database_url
        if schema is not None:
            env["HUB_DATABASE_SCHEMA"] = schema
    hub = spawn_hub(tmp, f"fuzz-secret-{secrets.token_hex(16)}", settings=env, forked=True)
    hub.wait_healthy()
    return hub


async def postgres_schema(database_url: str, create: bool, schema: str) -> None:
    """Create (or drop) the run's own schema in the Postgres database."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        sql = f'CREATE SCHEMA "{schema}"' if create else f'DROP SCHEMA "{schema}" CASCADE'
        await conn.execute(sql)
    finally:
        await conn.close()


async def openapi(world: World) -> dict[str, Any]:
    async with world.http.get(world.hub.url + f"{API}/openapi.json") as resp:
        document: dict[str, Any] = await resp.json()
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--per-event", type=int, default=10_000, help="payloads per socket event")
    parser.add_argument("--per-route", type=int, default=200, help="requests per REST operation")
    parser.add_argument("--raw-frames", type=int, default=10_000, help="raw malformed frames")
    parser.add_argument("--batch", type=int, default=50, help="payloads in flight at once")
    parser.add_argument("--node", default="node", help="Node.js, with tests/js/node_modules")
    parser.add_argument(
        "--database-url",
        help="a Postgres URL (postgresql+asyncpg://...) for the hub, in a schema of the run's"
        " own; default: SQLite in a temporary directory",
    )
    parser.add_argument(
        "--compare-every", type=int, default=1, help="compare the state around every n-th batch"
    )
    args = parser.parse_args(argv)
    budget = Budget(args.per_event, args.per_route, args.raw_frames, args.batch, args.compare_every)
    started = time.monotonic()
    tally = Tally()
    findings: list[str] = []
    schema = f"fuzz_{secrets.token_hex(6)}"
    postgres = args.database_url is not None
    with tempfile.TemporaryDirectory(prefix="hub-fuzz-") as tmp, asyncio.Runner() as runner:
        if postgres:
            runner.run(postgres_schema(args.database_url, True, schema))
        hub = start(Path(tmp), args.database_url, schema if postgres else None)
        http = runner.run(new_http())
        world = World(hub, http, tally, postgres=postgres)
        try:
            runner.run(world.setup())
            document = runner.run(openapi(world))
            watch = runner.run(JsWatch.start(args.node, world, max_s=6 * 3600))
            # A finding ends its own part (after hypothesis shrank it); the run goes on.
            parts: list[tuple[str, Callable[[], None]]] = [
                (event, lambda event=event: fuzz_event(runner, world, budget, event))
                for event in EVENTS
            ]
            parts.append(("raw frame", lambda: run_raw_frames(runner, world, budget)))
            parts.append(
                ("JS clients", lambda: runner.run(check_js(world, runner.run(watch.finish()))))
            )
            parts += [
                (f"{r[0]} {r[1]}", lambda r=r: fuzz_route(runner, world, budget, document, r))
                for r in operations(document)
            ]
            for name, part in parts:
                try:
                    part()
                except Exception as exc:  # a finding, reported with the others
                    # The whole of it: hypothesis' groups name their failures only inside.
                    told = "".join(traceback.format_exception(exc))[-MAX_FINDING_CHARS:]
                    findings.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
                    print(f"FINDING in {name}:\n{told}", flush=True)
                outcomes = ", ".join(f"{k} {v}" for k, v in tally.outcomes[name].most_common())
                print(
                    f"{time.monotonic() - started:.0f} s: {name} done: {tally.sent[name]} sent"
                    f" ({outcomes}); {tally.compared} refused batches compared so far",
                    flush=True,
                )
            world.check_log("the run")
        finally:
            runner.run(http.close())
            code = hub.stop()
            if postgres:
                runner.run(postgres_schema(args.database_url, False, schema))
        wall = time.monotonic() - started
        print(report(tally, wall, hub, code))
        print(f"findings: {len(findings)}")
        for finding in findings:
            print(f"- {finding}")
    return 1 if findings else 0


async def new_http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def report(tally: Tally, wall: float, hub: HubProcess, code: int | None) -> str:
    size = hub.log_path.stat().st_size if hub.log_path.exists() else 0
    lines = [
        f"wall time {wall:.0f} s; hub exit code {code}; hub log {size} bytes",
        f"refused batches compared before/after: {tally.compared}; "
        f"connections the hub closed: {tally.closed}",
    ]
    for what in sorted(tally.sent):
        outcomes = ", ".join(f"{k} {v}" for k, v in tally.outcomes[what].most_common())
        lines.append(f"{what}: {tally.sent[what]} ({outcomes})")
    return "\n".join(lines)
