"""Helpers for the tests: REST calls, Socket.IO clients, tokens and deadline polling."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token
from tests.contract import Contract

TEST_SECRET = "test-secret-for-the-tutor-hub-suite-0123456789"
# Rate limits for every hub of the suite: high enough that no test meets them on any
# machine. The tests of rate limiting set their own.
UNLIMITED: dict[str, float] = {
    "socket_events_per_s": 100_000,
    "socket_event_burst": 100_000,
    "rest_requests_per_s": 100_000,
    "rest_request_burst": 100_000,
    # Every test client comes from 127.0.0.1.
    "max_connections_per_address": 100_000,
}
# HUB_* variables a developer's or CI's environment passes on to the hubs under
# test (`make canary` sets it); every other HUB_* variable is dropped.
KEPT_HUB_VARS = ("HUB_ALLOW_UNTESTED_LIBRARIES",)


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    within: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(
        self, sub: str, role: Role | str, center: str = "c1", *, ttl_s: float = 600, **kw: Any
    ) -> str:
        return mint_token(
            self._settings, sub=sub, role=Role(role), center=center, ttl_s=ttl_s, **kw
        )


OPENAPI = "/api/v1/openapi.json"
# Each hub's contract (by its base URL), and one contract per distinct document.
_contracts: dict[str, Contract] = {}
_by_document: dict[str, Contract] = {}


class Api:
    """A REST caller with one identity. Returns (status, body), after checking the
    answer against the hub's OpenAPI document (tests/contract.py)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self._http = http
        self._base = base_url
        self._token = token

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | str | None = None,
    ) -> tuple[int, Any]:
        contract = await self._contract()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        async with self._http.request(
            method, self._base + path, json=json, params=params, data=data, headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
        contract.check(method, path, resp.status, body)
        return resp.status, body

    async def _contract(self) -> Contract:
        """The OpenAPI document of the hub, fetched once per hub, as a contract."""
        if self._base not in _contracts:
            async with self._http.get(self._base + OPENAPI) as resp:
                assert resp.status == 200, f"{OPENAPI}: {resp.status}"
                text = await resp.text()
            if text not in _by_document:
                _by_document[text] = Contract(json.loads(text))
            _contracts[self._base] = _by_document[text]
        return _contracts[self._base]

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("GET", path, params=params or None)

    async def post(self, path: str, json: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, json)

    async def put(self, path: str, json: Any = None) -> tuple[int, Any]:
        return await self.call("PUT", path, json)

    async def patch(self, path: str, json: Any = None) -> tuple[int, Any]:
        return await self.call("PATCH", path, json)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)


# A turn of the event loop this long means something waited on it (a lock, a busy
# timeout); the turns measured are 10 ms sleeps.
WAITED_ON_THE_LOOP_S = 0.5


async def longest_loop_turn(turns: int = 20, every_s: float = 0.01) -> float:
    """Sleep ``turns`` times; the longest one took, in seconds (a blocked loop shows)."""
    ticks = [time.monotonic()]
    for _ in range(turns):
        await asyncio.sleep(every_s)
        ticks.append(time.monotonic())
    return max(b - a for a, b in itertools.pairwise(ticks))


def session_body(tutor_id: str = "tutor-1", **overrides: Any) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    body: dict[str, Any] = {
        "title": "Algebra and reading",
        "tutor_id": tutor_id,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
    }
    body.update(overrides)
    return body


class Client:
    """A stock python-socketio AsyncClient that records what the hub sends it."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self.url = ""  # the hub it connected to

        @self.sio.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            self.received[event].append(data)

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.connect_error = data

        @self.sio.event
        async def disconnect(*_: Any) -> None:
            self.disconnected.set()

    async def connect(self, url: str, token: str | None) -> Client:
        auth = {"token": token} if token is not None else None
        self.url = url
        await self.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
        return self

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=5)

    async def join(self, session_id: str, **extra: Any) -> Any:
        return await self.call("session:join", {"session_id": session_id, **extra})

    def events(self, name: str) -> list[Any]:
        return self.received.get(name, [])


def migrations_head() -> str:
    """The migrations' one head (two would mean a merge left the chain forked), which is
    also the highest numbered file."""
    from alembic.script import ScriptDirectory

    from persistence import migrate

    (head,) = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    versions = Path(migrate.__file__).parent / "migrations" / "versions"
    assert head == sorted(path.stem[:4] for path in versions.glob("0*.py"))[-1]
    return str(head)
