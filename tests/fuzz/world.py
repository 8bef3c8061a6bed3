"""The world a fuzz run drives: a hub process, two centers' sessions, a joined raw
socket per identity, and the checks every part shares (strict JSON, the log, the
state a refusal must leave alone)."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from yarl import URL

from realtime.base.config import Settings
from realtime.base.identity import Role
from tests.contract import Contract
from tests.processes import HubProcess
from tests.support import session_body
from tests.test_strict_input import RawSocket

API = "/api/v1"
SESSIONS = f"{API}/sessions"
WAIT_S = 10.0  # the longest wait for one answer
# A raw socket unread for longer is replaced (the hub pings every 25 s, and drops a socket
# that has not answered 20 s later).
FRESH_S = 15.0
MAX_MESSAGE_BYTES = Settings.model_fields["max_message_bytes"].default - 64  # less the prefix
ERROR_CODES = {
    "UNAUTHORIZED",
    "TOKEN_EXPIRED",
    "FORBIDDEN",
    "NOT_FOUND",
    "VALIDATION_ERROR",
    "CONFLICT",
    "RATE_LIMITED",
    "PAYLOAD_TOO_LARGE",
    "SESSION_ENDED",
    "NOT_JOINED",
}
LOG_PROBLEM = re.compile(r"Traceback|^\S+ \S+ (ERROR|CRITICAL) ", re.MULTILINE)


# -- what a finding looks like -------------------------------------------------------


class Finding(AssertionError):
    """A property the hub broke, with what was sent."""


@dataclass
class Tally:
    """What a run sent and what came back, per event and per route."""

    sent: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    compared: int = 0  # refused batches whose state was compared before and after
    closed: int = 0  # connections the hub closed (allowed for some frames)

    def add(self, what: str, outcome: str) -> None:
        self.sent[what] += 1
        self.outcomes[what][outcome] += 1


# -- strict JSON, as a JavaScript client decodes it ----------------------------------


def strict(text: str | bytes, what: str) -> Any:
    """``text`` decoded as RFC 8259 JSON (orjson refuses NaN, Infinity, 1e999 and lone
    surrogates, as JSON.parse or a UTF-8 decoder would); a Finding otherwise."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Finding(f"{what}: not strict JSON ({exc}): {str(text)[:300]}") from None


def shorten(text: str | bytes | None, keep: int = 300) -> str:
    if text is None or len(text) <= keep:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text)} long)"


def event_text(event: str, *args: Any) -> str:
    return json.dumps([event, *args], ensure_ascii=False)


# -- the world a run fuzzes --------------------------------------------------------

ACTORS: dict[str, tuple[str, Role, str]] = {
    # name: (sub, role, center)
    "tutor": ("tutor-1", Role.TUTOR, "c1"),
    "student": ("s1", Role.STUDENT, "c1"),
    "student2": ("s2", Role.STUDENT, "c1"),
    "supervisor": ("sup-1", Role.SUPERVISOR, "c1"),
    "admin": ("admin-1", Role.CENTER_ADMIN, "c1"),
    "super": ("root", Role.SUPER_ADMIN, "c1"),
    "stranger": ("s9", Role.STUDENT, "c1"),
    "other_tutor": ("tutor-2", Role.TUTOR, "c1"),
    "parent": ("p1", Role.PARENT, "c1"),
    "assessor": ("as-1", Role.ASSESSOR, "c1"),
    "c2_tutor": ("tutor-1", Role.TUTOR, "c2"),
    "c2_student": ("s1", Role.STUDENT, "c2"),
}


# The session's own people most often: their payloads get past the permission checks.
class Wire(RawSocket):
    """A raw Socket.IO client that keeps several events in flight and collects their acks.
    It answers the hub's pings only while it reads (``last_read``)."""

    last_read = 0.0

    async def collect(self, ids: set[int], within: float = WAIT_S) -> tuple[dict[int, str], bool]:
        """The ack texts for ``ids`` (the JSON after ``43<id>``), and whether the hub closed."""
        got: dict[int, str] = {}
        self.last_read = time.monotonic()
        deadline = time.monotonic() + within
        while ids - set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Finding(f"no ack within {within} s for ids {sorted(ids - set(got))}")
            try:
                message = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                return got, True
            data = str(message.data)
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith("43"):
                found = re.match(r"43(\d+)", data)
                assert found is not None, data
                got[int(found.group(1))] = data[found.end() :]
            elif data.startswith("4"):
                strict(data[2:].lstrip("0123456789") or "null", f"the hub's packet {data[:40]}")
        self.last_read = time.monotonic()
        return got, False


class World:
    """A hub process, two centers' sessions, and a joined raw socket per actor."""

    def __init__(
        self, hub: HubProcess, http: aiohttp.ClientSession, tally: Tally, *, postgres: bool = False
    ) -> None:
        self.hub = hub
        self.postgres = postgres
        self.http = http
        self.tally = tally
        self.sessions: dict[str, str] = {}  # center -> session id
        self.wires: dict[str, Wire] = {}
        self.next_id = 1
        self.log_offset = 0
        self.contract: Contract | None = None
        self.ids: dict[str, list[str]] = defaultdict(list)  # help, timer, ... ids seen

    def token(self, actor: str, **kw: Any) -> str:
        sub, role, center = ACTORS[actor]
        return self.hub.token(sub, role, center, **kw)

    async def rest(
        self, method: str, path: str, token: str | None, **kw: Any
    ) -> tuple[int, Any, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kw.pop("headers", {}))
        url = URL(self.hub.url + path, encoded=True)
        async with self.http.request(method, url, headers=headers, **kw) as resp:
            raw = await resp.read()
            return resp.status, None, raw

    async def setup(self) -> None:
        async with self.http.get(self.hub.url + f"{API}/openapi.json") as resp:
            self.contract = Contract(await resp.json())
        for center, students in (("c1", ["s1", "s2"]), ("c2", ["s1"])):
            token = self.hub.token("tutor-1", Role.TUTOR, center)
            status, _, raw = await self.rest("POST", SESSIONS, token, json=session_body())
            assert status == 201, raw
            session_id = strict(raw, "create")["data"]["id"]
            self.sessions[center] = session_id
            for student in students:
                body = {"student_id": student, "student_name": f"Student {student}"}
                path = f"{SESSIONS}/{session_id}/enrollments"
                status, _, raw = await self.rest("POST", path, token, json=body)
                assert status == 201, raw
        await self.more_objects()
        for actor in ACTORS:
            await self.rejoin(actor)

    async def more_objects(self) -> None:
        """A cohort, a course session and its announcement in center c1, so that REST path
        parameters can name real rows (their ids go to ``self.ids``)."""
        admin = self.hub.token("admin-1", Role.CENTER_ADMIN, "c1")
        tutor = self.hub.token("tutor-1", Role.TUTOR, "c1")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        course = {
            "session_name": "Fuzzing",
            "teacher_id": "tutor-1",
            "course_id": "math-101",
            "start_date": start.isoformat(),
            "end_date": (start + timedelta(days=90)).isoformat(),
            "max_students": 30,
        }
        made = [
            ("cohort_id", "POST", f"{API}/cohorts", admin, {"name": "Y7", "student_ids": []}),
            ("course_session_id", "POST", f"{API}/teacher/sessions", tutor, course),
        ]
        for kind, method, path, token, body in made:
            status, _, raw = await self.rest(method, path, token, json=body)
            assert status == 201, (path, raw)
            data = strict(raw, path)["data"]
            self.ids[kind].append(data.get("id") or data[kind])
        path = f"{API}/teacher/sessions/{self.ids['course_session_id'][0]}/announcements"
        body = {"title": "Room", "message": "We meet in room 12."}
        status, _, raw = await self.rest("POST", path, tutor, json=body)
        assert status == 201, (path, raw)
        self.ids["announcement_id"].append(
            strict(raw, path)["data"]["course_session_announcement_id"]
        )

    async def rejoin(self, actor: str) -> None:
        """A connected raw socket for ``actor``, joined to its center's session."""
        wire = self.wires.get(actor)
        # A wire nobody read for a while missed the hub's pings and was let go.
        if wire is not None and time.monotonic() - wire.last_read > FRESH_S:
            await wire.ws.close()
        if wire is None or wire.ws.closed:
            wire = await Wire.connect(self.http, self.hub.url, self.token(actor))
            self.wires[actor] = wire
        session_id = self.sessions[ACTORS[actor][2]]
        n = self.take_id()
        await wire.ws.send_str(f"42{n}" + event_text("session:join", {"session_id": session_id}))
        acks, closed = await wire.collect({n})
        assert not closed, f"{actor}: closed on join"
        strict(acks[n], f"{actor}'s join ack")

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- the log ----------------------------------------------------------------

    def check_log(self, context: str) -> None:
        with self.hub.log_path.open("rb") as log:
            log.seek(self.log_offset)
            new = log.read().decode(errors="replace")
        self.log_offset += len(new.encode(errors="replace"))
        problem = LOG_PROBLEM.search(new)
        if problem is not None:
            start = max(0, problem.start() - 200)
            raise Finding(f"the hub logged a problem after {context}:\n{new[start : start + 3000]}")

    # -- the state a refusal must leave alone ----------------------------------------

    async def fingerprint(self) -> Any:
        """What REST and a fresh observer's join show of both centers' sessions."""
        seen: dict[str, Any] = {}
        for center, session_id in self.sessions.items():
            token = self.hub.token("admin-1", Role.CENTER_ADMIN, center)
            base = f"{SESSIONS}/{session_id}"
            reads = [base, f"{base}/enrollments", f"{base}/help", f"{base}/notes"]
            reads += [f"{base}/canvases/{s}" for s in ("s1", "s2")]
            for path in reads:
                status, _, raw = await self.rest("GET", path, token)
                seen[path] = (status, strip_volatile(strict(raw, f"GET {path}")))
            wire = await Wire.connect(self.http, self.hub.url, token)
            try:
                n = self.take_id()
                payload = {"session_id": session_id}
                await wire.ws.send_str(f"42{n}" + event_text("session:join", payload))
                acks, _ = await wire.collect({n})
                seen[f"join {center}"] = strip_volatile(strict(acks[n], "a fresh join"))
            finally:
                await wire.ws.close()
        return seen


# What changes with time and presence alone, not with what a client sends.
VOLATILE = {
    "since",
    "session_time_s",
    "total_time_s",
    "expires_at",
    "last_seen_at",
    "active_s",
    "idle_s",
    "escalated",  # help requests waiting past their priority's target
    "time_to_first_response_s",
    "time_to_resolve_s",
    "epoch",  # a canvas's epoch when it is loaded again
    "focused",
}
PRESENCE = {"active", "idle", "offline"}
# A timer ending this soon may end during the batch the fingerprint is taken around.
TIMER_MARGIN_S = 60.0


def strip_volatile(value: Any, key: str = "") -> Any:
    """``value`` without what changes with time and presence alone: a student's presence
    and time counters, timers about to end, the serving order escalation changes."""
    if isinstance(value, dict):
        return {
            k: strip_volatile(v, k)
            for k, v in value.items()
            if k not in VOLATILE and not (k == "status" and v in PRESENCE)
        }
    if isinstance(value, list):
        items = [strip_volatile(v) for v in value]
        if key == "timers":
            horizon = time.time() + TIMER_MARGIN_S
            items = [t for t in items if _epoch_s(t.get("ends_at")) > horizon]
        if all(isinstance(v, dict) and isinstance(v.get("id"), str) for v in items):
            items.sort(key=lambda v: v["id"])
        return items
    return value


def _epoch_s(iso: Any) -> float:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.inf


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        f"{key}:\n  before {json.dumps(before.get(key))[:800]}"
        f"\n  after  {json.dumps(after.get(key))[:800]}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    return "\n".join(lines)
