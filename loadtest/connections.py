"""Idle connections, one worker's share: every tutor and student connects, joins, and waits.

Measured here: how many connected and joined, how many failed (by error), and
each client's connect-plus-join time. The parent reads the target's memory
before the workers connect and after they all have, for the RSS per connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from loadtest.members import JOIN_FAILURES, connect_joined
from loadtest.sessions import SessionPlan, Tokens
from loadtest.wire import WireClient
from realtime.base.identity import Role


@dataclass(frozen=True)
class ConnectionsConfig:
    url: str
    secret: str
    sessions: tuple[SessionPlan, ...]
    concurrency: int = 100


class IdleWorker:
    """Tokens are minted in ``prepare``; ``run`` connects everyone and returns once all joined."""

    def __init__(self, config: ConnectionsConfig) -> None:
        self.config = config
        self.members: list[tuple[str, str]] = []
        self.clients: list[WireClient] = []
        self.failed: Counter[str] = Counter()
        self.join_ms: list[float] = []
        self._http: aiohttp.ClientSession | None = None

    async def prepare(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        self._http = http
        tokens = Tokens(self.config.secret)
        for plan in self.config.sessions:
            self.members.append((tokens(plan.tutor_id, Role.TUTOR), plan.session_id))
            for student in plan.student_ids:
                self.members.append((tokens(student, Role.STUDENT), plan.session_id))
        return {"clients": len(self.members)}

    async def run(self, start_at: float) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        gate = asyncio.Semaphore(self.config.concurrency)
        await asyncio.gather(*(self._join(gate, token, sid) for token, sid in self.members))
        return {
            "clients": len(self.members),
            "joined": len(self.clients),
            "failed": dict(self.failed),
            "join_ms": self.join_ms,
        }

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)

    async def _join(self, gate: asyncio.Semaphore, token: str, session_id: str) -> None:
        assert self._http is not None
        async with gate:
            began = time.perf_counter()
            try:
                client, _ = await connect_joined(self._http, self.config.url, token, session_id)
            except JOIN_FAILURES as exc:
                self.failed[type(exc).__name__] += 1
                return
            self.join_ms.append((time.perf_counter() - began) * 1000)
            self.clients.append(client)
