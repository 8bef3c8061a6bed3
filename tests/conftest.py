"""Fixtures: one database fixture parametrized over SQLite and Postgres, and a real hub on loopback.

Postgres and Redis are real services. Run by hand without them, the tests
that need them skip with the reason; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loadtest.redis_cluster import RedisClusterProcesses, missing_tools
from persistence import migrate
from persistence.db import create_engine, dispose, session_factory
from realtime.app import build_app
from realtime.base.config import Settings
from realtime.gateway.gateway import Gateway
from rest.keys import DB, ENGINE, GATEWAY, METRICS
from tests.processes import LOG_TAIL_CHARS, HubProcess, settings_env, spawn_hub, start_hub
from tests.support import KEPT_HUB_VARS as KEPT
from tests.support import TEST_SECRET, UNLIMITED, Api, Client, Tokens

POSTGRES_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

# Each pytest-xdist worker (gw0, gw1, ...) gets two Redis databases of its own, counted
# down from the one HUB_TEST_REDIS_URL names: the suite's, then the load tests'.
_BASE_REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _worker_redis_url(offset: int) -> str:
    base, _, db = _BASE_REDIS_URL.rpartition("/")
    number = int(db or 0) - 2 * WORKER - offset
    if number < 0:
        raise pytest.UsageError(f"too many test workers for the Redis databases below {db}")
    return f"{base}/{number}"


REDIS_URL = _worker_redis_url(0)
BENCH_REDIS_URL = _worker_redis_url(1)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_reachable: dict[str, str | None] = {}


def need_service(name: str, problem: str | None, *, hint: str = "start it") -> None:
    """Skip (by hand) or fail (in CI) when a service or tool the test needs is missing."""
    if problem is None:
        return
    message = f"{name} is not available ({problem})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the {name} tests", pytrace=False)
    pytest.skip(f"{message}; {hint} to run these tests")


async def postgres_problem() -> str | None:
    if "postgres" not in _reachable:
        dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close()
            _reachable["postgres"] = None
        except Exception as exc:
            _reachable["postgres"] = f"{POSTGRES_URL}: {exc!r}"
    return _reachable["postgres"]


async def redis_problem() -> str | None:
    if "redis" not in _reachable:
        client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await client.ping()
            _reachable["redis"] = None
        except Exception as exc:
            _reachable["redis"] = f"{REDIS_URL}: {exc!r}"
        finally:
            await client.aclose()
    return _reachable["redis"]


@pytest.fixture(autouse=True)
def _no_hub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's HUB_* variables must not change what the tests see.
    for name in list(os.environ):
        if name.startswith("HUB_") and not name.startswith("HUB_TEST_") and name not in KEPT:
            monkeypatch.delenv(name)


@dataclass(frozen=True)
class Database:
    kind: str
    url: str
    schema: str | None


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    """A fresh, empty database: a SQLite file, or a Postgres schema of the test's own."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path}/hub.db", None)
        return
    need_service("Postgres", await postgres_problem())
    schema = f"test_{uuid.uuid4().hex[:12]}"
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield Database("postgres", POSTGRES_URL, schema)
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database, migrated to the latest revision."""
    engine = create_engine(database.url, schema=database.schema)
    await migrate.upgrade(engine)
    yield engine
    await dispose(engine)


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.url,
        database_schema=database.schema,
        jwt_secret=TEST_SECRET,
        jwt_leeway_s=0,
        # Offline at once unless a test asks for a grace period.
        presence_grace_s=0,
        **UNLIMITED,  # type: ignore[arg-type]
    )


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings)


# The socket-level suites run twice: against one hub, and against a cluster of
# CLUSTER_NODES hubs sharing one Redis and one Postgres database, each client on
# the next hub in turn (a tutor and their students on different hubs). The
# cluster is CLUSTER_NODES hub processes (`python -m realtime serve`, uvloop, as
# deployed); suites that drive the hubs' clock (timers, presence, help,
# attendance) run the hubs in the test's process instead, each its own app on
# its own port, talking to the others only through Redis and Postgres.
CLUSTER_NODES = 3
CLUSTER_SUITES = {
    "test_sockets",
    "test_canvas",
    "test_control",
    "test_presence",
    "test_timers",
    "test_help",
    "test_attendance",
    "test_rest_enrollments",
    "test_rest_sessions",
    "test_course_live",
    "test_join_races",
}
PROCESS_SUITES = {
    "test_sockets",
    "test_canvas",
    "test_control",
    "test_rest_enrollments",
    "test_rest_sessions",
}
# These run a third time: CLUSTER_NODES hub processes on a Redis Cluster (3 primaries,
# 3 replicas; HUB_REDIS_CLUSTER_NODES), one cluster per test worker, emptied per test.
REDIS_CLUSTER_SUITES = {"test_sockets", "test_canvas", "test_control"}
SEVERAL_HUBS = ("cluster", "processes", "redis-cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = metafunc.module.__name__.rpartition(".")[2]
    if "topology" in metafunc.fixturenames and suite in CLUSTER_SUITES:
        topologies = ["single", "processes" if suite in PROCESS_SUITES else "cluster"]
        if suite in REDIS_CLUSTER_SUITES:
            topologies.append("redis-cluster")
        metafunc.parametrize("topology", topologies, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A cluster shares Postgres: several hubs on one SQLite file is not a deployment.
    dropped = [
        item
        for item in items
        if (callspec := getattr(item, "callspec", None)) is not None
        and callspec.params.get("topology") in SEVERAL_HUBS
        and callspec.params.get("database") == "sqlite"
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in set(dropped)]


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture
def hubs_redis_cluster(
    topology: str, request: pytest.FixtureRequest
) -> RedisClusterProcesses | None:
    """The worker's Redis Cluster for the redis-cluster topology (started by the first
    test that needs it), else None."""
    if topology != "redis-cluster":
        return None
    cluster: RedisClusterProcesses = request.getfixturevalue("_redis_cluster_session")
    return cluster


@dataclass
class Hub:
    """A real hub serving on loopback (or several sharing Redis), and ways to talk to it.

    ``url`` and ``app`` are the first hub's; ``client`` connects each new client to
    the next hub in turn.
    """

    url: str
    tokens: Tokens
    http: aiohttp.ClientSession
    clients: list[Client]
    # The hubs' database, as the tests read it.
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    urls: list[str] = field(default_factory=list)
    # In the test's process: the first hub's app, and all of them; else hub processes.
    app: web.Application | None = None
    apps: list[web.Application] = field(default_factory=list)
    servers: list[TestServer] = field(default_factory=list)
    processes: list[HubProcess] = field(default_factory=list)

    async def stop(self) -> None:
        """Stop the hub's servers (its clients lose their connections)."""
        for server in self.servers:
            await server.close()
        for process in self.processes:
            assert process.stop() == 0, process.log_tail()

    def api(self, token: str | None) -> Api:
        return Api(self.http, self.url, token)

    def gateway(self) -> Gateway:
        """The first hub's gateway (in-process hubs)."""
        assert self.app is not None, "a hub in the test's process"
        return self.app[GATEWAY]

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the first hub's metrics (in-process hubs); 0 if never set."""
        assert self.app is not None, "a hub in the test's process"
        value = self.app[METRICS].registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def as_(self, sub: str, role: str, center: str = "c1", **kw: Any) -> Api:
        return self.api(self.tokens(sub, role, center, **kw))

    async def client(self, token: str | None) -> Client:
        client = Client()
        urls = self.urls or [self.url]
        url = urls[len(self.clients) % len(urls)]
        self.clients.append(client)
        return await client.connect(url, token)

    async def connect(self, sub: str, role: str, center: str = "c1", **kw: Any) -> Client:
        return await self.client(self.tokens(sub, role, center, **kw))


HubFactory = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def make_hub(
    settings: Settings,
    database: Database,
    topology: str,
    hubs_redis_cluster: RedisClusterProcesses | None,
    tmp_path: Path,
) -> AsyncIterator[HubFactory]:
    """Start hubs on 127.0.0.1 (with setting overrides); all stop at teardown.
    With the cluster, processes and redis-cluster topologies each call starts
    CLUSTER_NODES hubs sharing Redis."""
    servers: list[TestServer] = []
    processes: list[HubProcess] = []
    engines: list[AsyncEngine] = []
    hubs: list[Hub] = []
    nodes = 1
    if topology in ("cluster", "processes"):
        need_service("Redis", await redis_problem())
        settings = settings.model_copy(update={"redis_url": REDIS_URL})
        nodes = CLUSTER_NODES
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        await client.flushdb()  # one test's cluster at a time uses the test database
        await client.aclose()
    elif hubs_redis_cluster is not None:
        await empty_redis_cluster(hubs_redis_cluster)
        settings = settings.model_copy(update={"redis_cluster_nodes": hubs_redis_cluster.seeds})
        nodes = CLUSTER_NODES

    async def start(clock: Any = None, **overrides: Any) -> Hub:
        hub_settings = settings.model_copy(update=overrides) if overrides else settings
        if topology in ("processes", "redis-cluster"):
            assert clock is None, "hub processes keep their own time"
            return await start_processes(hub_settings)
        apps, urls, own = [], [], []
        for _ in range(nodes):  # one after another: the first migrates the database
            app = build_app(hub_settings, clock=clock) if clock else build_app(hub_settings)
            server = TestServer(app, host="127.0.0.1", port=0)
            await server.start_server()
            servers.append(server)
            own.append(server)
            apps.append(app)
            urls.append(str(server.make_url("")).rstrip("/"))
        hub = Hub(
            url=urls[0],
            tokens=Tokens(hub_settings),
            http=aiohttp.ClientSession(),
            clients=[],
            engine=apps[0][ENGINE],
            db=apps[0][DB],
            urls=urls if nodes > 1 else [],
            app=apps[0],
            apps=apps,
            servers=own,
        )
        hubs.append(hub)
        return hub

    async def start_processes(hub_settings: Settings) -> Hub:
        assert hub_settings.jwt_secret is not None
        secret = hub_settings.jwt_secret.get_secret_value()
        engine = create_engine(database.url, schema=database.schema)
        engines.append(engine)
        await migrate.upgrade(engine)  # here, once: the hubs start together
        env = settings_env(hub_settings.model_copy(update={"migrate_on_start": False}))
        n = len(processes)
        own = []
        for i in range(nodes):
            process = spawn_hub(tmp_path, secret, settings=env, name=f"hub-{n + i}", forked=True)
            own.append(process)
            processes.append(own[-1])
        for process in own:
            process.wait_healthy()
        hub = Hub(
            url=own[0].url,
            tokens=Tokens(hub_settings),
            http=aiohttp.ClientSession(),
            clients=[],
            engine=engine,
            db=session_factory(engine),
            urls=[p.url for p in own],
            processes=own,
        )
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        for client in hub.clients:
            if client.sio.connected:
                await client.sio.disconnect()
        await hub.http.close()
    for server in servers:
        await server.close()
    stopped = {p.url: p.stop() for p in processes}
    for engine in engines:
        await engine.dispose()
    await asyncio.sleep(0)
    if hubs_redis_cluster is not None:
        await hubs_redis_cluster.close_clients()  # opened in this test's loop
    crashed = [p.log_tail() for p in processes if stopped[p.url] != 0]
    assert not crashed, f"hub processes did not stop cleanly:\n{crashed}"


@pytest.fixture
async def hub(make_hub: HubFactory) -> Hub:
    return await make_hub()


# The stock JavaScript client the tests drive the hub with.
JS_DIR = Path(__file__).resolve().parent / "js"
NPM_CI_TIMEOUT_S = 180.0


def need_tool(name: str, problem: str | None) -> None:
    need_service(name, problem, hint="install Node.js 18+ and npm")


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with ``tests/js/node_modules`` installed."""
    node_exe = shutil.which("node")
    need_tool("node", None if node_exe else "no `node` executable on PATH")
    assert node_exe is not None
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        npm = shutil.which("npm")
        need_tool("npm", None if npm else "tests/js/node_modules is missing and there is no `npm`")
        assert npm is not None
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            need_tool("npm ci", f"did not finish within {NPM_CI_TIMEOUT_S:.0f} s in {JS_DIR}")
        else:
            need_tool(
                "npm ci",
                None
                if done.returncode == 0
                else f"exited {done.returncode} in {JS_DIR}: {done.stderr[-LOG_TAIL_CHARS:]}",
            )
    return node_exe


@pytest.fixture
async def redis_cluster(tmp_path: Path) -> AsyncIterator[RedisClusterProcesses]:
    """A Redis Cluster of the test's own on loopback (3 primaries, 3 replicas), for tests
    that kill, restart or reshard it; every server is killed at teardown."""
    need_service("Redis Cluster", missing_tools(), hint="install redis-server and redis-cli 7+")
    cluster = RedisClusterProcesses(tmp_path / "redis-cluster")
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


def _long_lived_cluster(workdir: Path) -> Iterator[RedisClusterProcesses]:
    """A cluster for a module- or session-scoped fixture, started outside the tests'
    event loops; killed when the fixture ends."""
    need_service("Redis Cluster", missing_tools(), hint="install redis-server and redis-cli 7+")
    cluster = RedisClusterProcesses(workdir)

    async def start() -> None:
        try:
            await cluster.start()
        finally:
            await cluster.close_clients()  # bound to this loop, not the tests'

    try:
        asyncio.run(start())
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture(scope="module")
def _redis_cluster_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterProcesses]:
    yield from _long_lived_cluster(tmp_path_factory.mktemp("redis-cluster"))


@pytest.fixture
async def redis_cluster_shared(
    _redis_cluster_module: RedisClusterProcesses,
) -> AsyncIterator[RedisClusterProcesses]:
    """One Redis Cluster for the tests of a module that leave it whole (no kills, no
    migrations): it takes about 2.5 s to start. The per-node clients a test opens are
    closed after it, in its event loop."""
    yield _redis_cluster_module
    await _redis_cluster_module.close_clients()


@pytest.fixture(scope="session")
def _redis_cluster_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterProcesses]:
    # One per test worker (a session each), for the redis-cluster topology.
    yield from _long_lived_cluster(tmp_path_factory.mktemp("hubs-redis-cluster"))


async def empty_redis_cluster(cluster: RedisClusterProcesses) -> None:
    """A shared cluster as a test's own: whole, every primary's keys gone (FLUSHALL
    empties the one node it is sent to), and no connection left subscribed to a
    channel (an earlier test's hub could otherwise hear this test's frames)."""
    nodes = [node for node in cluster.nodes if node.alive]

    async def left_over() -> str | None:
        for node in nodes:
            channels = await node.command("PUBSUB CHANNELS")
            shard_channels = await node.command("PUBSUB SHARDCHANNELS")
            if channels or shard_channels:
                return f"{node.address} has subscribers on {channels} {shard_channels}"
        for primary in cluster.primaries:
            if await primary.command("DBSIZE"):
                return f"{primary.address} still has keys"
        return None

    try:
        await cluster.wait_settled()
        for primary in cluster.primaries:
            await primary.command("FLUSHALL")
        for node in nodes:
            await node.command("CLIENT KILL", "TYPE", "pubsub")
        await cluster.until("an empty cluster", left_over, within=5.0)
    finally:
        await cluster.close_clients()  # opened in this test's loop


@pytest.fixture
def hub_process(tmp_path: Any) -> Iterator[HubProcess]:
    """A hub subprocess of the test's own; stopped (if the test did not) at teardown."""
    hub = start_hub(tmp_path, secret=f"hub-process-test-secret-{secrets.token_hex(16)}")
    try:
        yield hub
    finally:
        if hub.process.returncode is None:
            hub.stop()
