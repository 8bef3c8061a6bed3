"""Who takes part: S sessions of one tutor and K students, set up through the hub's REST API.

Tokens are minted here with the target's secret (``realtime.base.identity.mint_token``).
The baseline relay serves no REST, so for it the sessions are only generated ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import aiohttp

from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token

CENTER = "bench"
REST_CONCURRENCY = 32
TOKEN_TTL_S = 4 * 3600
MAX_STUDENTS_PER_SESSION = 200


@dataclass(frozen=True)
class SessionPlan:
    session_id: str
    tutor_id: str
    student_ids: tuple[str, ...]


class Tokens:
    """Mints tokens for the bench center with one target's secret."""

    def __init__(self, secret: str) -> None:
        self._settings = Settings(jwt_secret=secret)

    def __call__(self, sub: str, role: Role) -> str:
        return mint_token(self._settings, sub=sub, role=role, center=CENTER, ttl_s=TOKEN_TTL_S)


def people(index: int, students: int) -> tuple[str, tuple[str, ...]]:
    """The tutor and student ids of session number ``index``."""
    return f"t{index}", tuple(f"s{index}-{k}" for k in range(students))


def generated_sessions(count: int, students: int) -> list[SessionPlan]:
    """Sessions that exist only as ids (for the baseline relay)."""
    return [SessionPlan(f"gen-{i}", *people(i, students)) for i in range(count)]


async def create_sessions(
    url: str, secret: str, count: int, students: int, concurrency: int = REST_CONCURRENCY
) -> list[SessionPlan]:
    """Create sessions and enrollments over REST, at most ``concurrency`` calls at a time."""
    if not 1 <= students <= MAX_STUDENTS_PER_SESSION:
        raise ValueError(
            f"expected 1-{MAX_STUDENTS_PER_SESSION} students a session, got {students}"
        )
    tokens = Tokens(secret)
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
            async with (
                gate,
                http.post(
                    f"{url}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"}
                ) as resp,
            ):
                if resp.status != 201:
                    raise RuntimeError(
                        f"POST {path}: expected 201, got {resp.status}: {await resp.text()}"
                    )
                data: dict[str, Any] = (await resp.json())["data"]
                return data

        async def one(index: int) -> SessionPlan:
            tutor, student_ids = people(index, students)
            token = tokens(tutor, Role.TUTOR)
            session = await post("/sessions", _session_body(index, tutor, students), token)
            await asyncio.gather(
                *(
                    post(f"/sessions/{session['id']}/enrollments", {"student_id": s}, token)
                    for s in student_ids
                )
            )
            return SessionPlan(session["id"], tutor, student_ids)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _session_body(index: int, tutor: str, students: int) -> dict[str, Any]:
    # Started a little ago and ending well after any run: no ending-soon or overtime alerts.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {
        "title": f"bench {index}",
        "tutor_id": tutor,
        "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
        "ends_at": (now + dt.timedelta(hours=3)).isoformat(),
        "max_students": students,
    }
