"""The role table of docs/protocol.md ("Every route and event by role"), walked cell by cell.

The test reads the table from the document and, for each role, calls every route and
emits every event as that role of center c1 on real objects of a real hub (both
databases): `yes` on an object that is not the caller's, `own` and `child` on one
that is theirs (allowed) and one that is not (refused), `no` on the caller's own
(refused). Then each role of center c2 (but SUPER_ADMIN) calls every route naming an
id with c1's ids, and must get exactly what an id that exists nowhere gets. The table
must name every route the app serves and every event the gateway handles, and no
other.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rest.docs import is_rest
from rest.keys import GATEWAY
from tests.conftest import Hub, HubFactory
from tests.support import Client, session_body

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
SECTION = "### Every route and event by role"
ROLES = ("SUPER_ADMIN", "CENTER_ADMIN", "SUPERVISOR", "TUTOR", "ASSESSOR", "PARENT", "STUDENT")
CELLS = {"yes", "own", "child", "no", "-"}
# The caller of each role, in either center (the same subs in c2, so that a check of
# the user id alone, without the center, would show).
SUB = {
    "SUPER_ADMIN": "super-1",
    "CENTER_ADMIN": "admin-1",
    "SUPERVISOR": "sup-1",
    "TUTOR": "tutor-1",
    "ASSESSOR": "assessor-1",
    "PARENT": "p1",
    "STUDENT": "s1",
}
# Objects are "mine" (the caller's, where they can have one) or "other" (the center's,
# not theirs); "nowhere" names ids that exist in no center.
Side = str


def role_table() -> dict[str, dict[str, str]]:
    """Row (``METHOD /path`` or event name) -> role -> cell, as the document states it."""
    text = PROTOCOL.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"expected one {SECTION!r} section in {PROTOCOL}"
    lines = iter(text.split(SECTION, 1)[1].splitlines())
    header = next(line for line in lines if line.startswith("|"))
    roles = [c.strip() for c in header.strip("|").split("|")][1:]
    assert tuple(roles) == ROLES, f"expected the columns {ROLES}, got {roles}"
    assert set(next(lines).replace("|", "").strip()) <= {"-"}, "expected the separator row"
    table: dict[str, dict[str, str]] = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines):
        name, *cells = (c.strip() for c in line.strip("|").split("|"))
        row = name.strip("`")
        assert row not in table, f"{row} is in the table twice"
        assert len(cells) == len(ROLES), f"{row}: expected {len(ROLES)} cells, got {cells}"
        assert set(cells) <= CELLS, f"{row}: cells must be among {sorted(CELLS)}: {cells}"
        table[row] = dict(zip(ROLES, cells, strict=True))
    return table


TABLE = role_table()

# Rows for routes a hub serves only in development (on the development secret, never
# in production: rest/dev.py). The suite's hubs run on a test secret, so these rows
# are walked on a development hub of their own below.
DEVELOPMENT_ONLY = {"POST /api/v1/dev/token"}


@dataclass
class Outcome:
    status: int | None  # REST status; None for an event
    code: str | None  # errorCode, or the ack's error code; None when it succeeded
    body: Any

    @property
    def ok(self) -> bool:
        if self.status is None:
            return isinstance(self.body, dict) and self.body.get("ok") is True
        return 200 <= self.status < 300

    def __str__(self) -> str:
        return f"{self.status or 'ack'} {self.code}: {json.dumps(self.body)[:300]}"


class World:
    """Center c1's objects, each in two: the caller's ("mine") and another's ("other")."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.admin = hub.as_("admin-1", "CENTER_ADMIN")
        self.tutors = {"mine": hub.as_("tutor-1", "TUTOR"), "other": hub.as_("tutor-2", "TUTOR")}
        self.ids: dict[Side, dict[str, str]] = {"mine": {}, "other": {}}
        self._count = itertools.count(1)
        self._sockets: dict[tuple[str, str], Client] = {}

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._count)}"

    async def build(self) -> None:
        people = [("tutor-1", "TUTOR"), ("tutor-2", "TUTOR"), ("p1", "PARENT"), ("p2", "PARENT")]
        people += [("s1", "STUDENT"), ("s2", "STUDENT")]
        await self.must(
            self.admin.post(
                "/api/v1/people/import",
                {"people": [{"user_id": u, "role": r} for u, r in people]},
            )
        )
        for parent, child in (("p1", "s1"), ("p2", "s2")):
            await self.must(
                self.admin.post(f"/api/v1/people/{parent}/children", {"student_id": child})
            )
        for side, tutor, student in (("mine", "tutor-1", "s1"), ("other", "tutor-2", "s2")):
            ids = self.ids[side]
            ids.update(tutor_id=tutor, student_id=student, parent_id=f"p{student[1]}")
            course = await self.course_session(side, published=True)
            ids["course_id"], ids["code"] = course["course_session_id"], course["session_code"]
            joined = await self.must(
                self.hub.as_(student, "STUDENT").post(
                    "/api/v1/student/sessions/join", {"session_code": ids["code"]}
                )
            )
            ids["enrollment_id"] = joined["course_session_enrollment_id"]
            ids["announcement_id"] = await self.announcement(side)
            ids["session_id"] = await self.live_session(side, course_session_id=ids["course_id"])
            ids["relationship_id"] = await self.relationship(side)
            ids["cohort_id"] = await self.cohort(side)
        # s2 is also in the tutor's own session: another student of "mine".
        await self.enroll("mine", "s2")

    @staticmethod
    async def must(call: Awaitable[tuple[int, Any]]) -> Any:
        status, got = await call
        assert 200 <= status < 300, got
        return got["data"] if isinstance(got, dict) else got

    async def course_session(self, side: Side, *, published: bool) -> dict[str, Any]:
        body = course_body(self.ids[side]["tutor_id"], self.unique("course"))
        if published:
            body["course_session_status"] = "PUBLISHED"
        return dict(await self.must(self.admin.post("/api/v1/teacher/sessions", body)))

    async def announcement(self, side: Side) -> str:
        path = f"/api/v1/teacher/sessions/{self.ids[side]['course_id']}/announcements"
        body = {"title": self.unique("notice"), "message": "The room has changed."}
        return str((await self.must(self.admin.post(path, body)))["course_session_announcement_id"])

    async def live_session(self, side: Side, **extra: Any) -> str:
        ids = self.ids[side]
        body = session_body(tutor_id=ids["tutor_id"], **extra)
        session_id = str((await self.must(self.admin.post("/api/v1/sessions", body)))["id"])
        await self.enroll(side, ids["student_id"], session_id)
        return session_id

    async def enroll(self, side: Side, student: str, session_id: str | None = None) -> str:
        path = f"/api/v1/sessions/{session_id or self.ids[side]['session_id']}/enrollments"
        await self.must(self.admin.post(path, {"student_id": student}))
        return student

    async def relationship(self, side: Side) -> str:
        ids = self.ids[side]
        body = {
            "tutor_id": ids["tutor_id"],
            "student_id": ids["student_id"],
            "subject": self.unique("maths"),
        }
        return str((await self.must(self.admin.post("/api/v1/relationships", body)))["id"])

    async def cohort(self, side: Side) -> str:
        body = {"name": self.unique("class"), "student_ids": [self.ids[side]["student_id"]]}
        return str((await self.must(self.admin.post("/api/v1/cohorts", body)))["id"])

    async def socket(self, sub: str, role: str, session_id: str) -> Client:
        """A helper's socket (a tutor or a student of c1), joined to the session."""
        if (sub, role) not in self._sockets:
            self._sockets[sub, role] = await self.hub.connect(sub, role)
        client = self._sockets[sub, role]
        ack = await client.join(session_id)
        assert ack["ok"], ack
        return client

    async def help_request(self, session_id: str, student: str) -> str:
        client = await self.socket(student, "STUDENT", session_id)
        ask = {"session_id": session_id, "message": "stuck", "exercise_id": self.unique("ex")}
        ack = await client.call("help:request", ask)
        assert ack["ok"], ack
        return str(ack["help_request"]["id"])

    async def timer(self, side: Side) -> str:
        session_id = self.ids[side]["session_id"]
        client = await self.socket(self.ids[side]["tutor_id"], "TUTOR", session_id)
        ack = await client.call(
            "timer:start", {"session_id": session_id, "label": "quiz", "duration_s": 600}
        )
        assert ack["ok"], ack
        return str(ack["timer"]["id"])


def course_body(teacher_id: str, name: str) -> dict[str, Any]:
    live = session_body()  # an hour from five minutes on
    return {
        "session_name": name,
        "teacher_id": teacher_id,
        "course_id": "math-101",
        "start_date": live["starts_at"],
        "end_date": live["ends_at"],
    }


Ids = dict[str, str]


@dataclass
class Call:
    """One row's call, made as a caller on a side's ids."""

    ids: Ids
    side: Side
    role: str


# A row's own objects (made fresh for each call when the call changes them), from the
# side's ids: the ids to put in the path or body, updated.
Fresh = Callable[[World, Call], Awaitable[Ids]]


@dataclass(frozen=True)
class Rest:
    method: str
    path: str
    body: Callable[[Call, World], Any] | None = None
    query: dict[str, Any] | None = None
    fresh: Fresh | None = None
    # A list: "mine" and "other" are checked by what it answers, not by a second call.
    listed: tuple[str, str] | None = None  # (the answer's id field, the ids' key)
    # Per role, a query naming someone else's, which the role may not make.
    other_query: dict[str, dict[str, str]] = field(default_factory=dict)
    # The path names people (their ids are center-free): another center's caller is
    # given ids none of them holds.
    people: bool = False
    # A student's "other" is another student of their own session.
    per_student: bool = False
    id_in_body: bool = False
    # A parent names the child the call is about (``student_id`` in the query).
    parent_names_child: bool = False


@dataclass(frozen=True)
class Event:
    payload: Callable[[Call, World], Any]
    fresh: Fresh | None = None
    per_student: bool = False
    # The event needs no joined session.
    sessionless: bool = False


def params_of(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


COURSE_PREFIXES = ("/api/v1/teacher/", "/api/v1/student/", "/api/v1/admin/")


def fill(path: str, ids: Ids) -> str:
    course = path.startswith(COURSE_PREFIXES)
    return re.sub(
        r"\{(\w+)\}",
        lambda m: ids["course_id" if course and m[1] == "session_id" else m[1]],
        path,
    )


# -- fresh objects for calls that change what they touch ------------------------------


async def fresh_live_session(world: World, call: Call) -> Ids:
    return {**call.ids, "session_id": await world.live_session(call.side)}


async def fresh_enrollment(world: World, call: Call) -> Ids:
    student = await world.enroll(call.side, world.unique("sx"), call.ids["session_id"])
    return {**call.ids, "student_id": student}


async def fresh_draft(world: World, call: Call) -> Ids:
    course = await world.course_session(call.side, published=False)
    return {**call.ids, "course_id": course["course_session_id"]}


async def fresh_published(world: World, call: Call) -> Ids:
    course = await world.course_session(call.side, published=True)
    return {**call.ids, "course_id": course["course_session_id"], "code": course["session_code"]}


async def fresh_joined(world: World, call: Call) -> Ids:
    """A course session the side's student has joined (theirs to drop)."""
    ids = await fresh_published(world, call)
    student = world.hub.as_(world.ids[call.side]["student_id"], "STUDENT")
    await world.must(student.post("/api/v1/student/sessions/join", {"session_code": ids["code"]}))
    return ids


async def fresh_announcement(world: World, call: Call) -> Ids:
    return {**call.ids, "announcement_id": await world.announcement(call.side)}


async def fresh_link(world: World, call: Call) -> Ids:
    parent = world.unique("px")
    await world.must(
        world.admin.post(
            "/api/v1/people/import", {"people": [{"user_id": parent, "role": "PARENT"}]}
        )
    )
    return {**call.ids, "parent_id": parent}


async def fresh_linked(world: World, call: Call) -> Ids:
    ids = await fresh_link(world, call)
    path = f"/api/v1/people/{ids['parent_id']}/children"
    await world.must(world.admin.post(path, {"student_id": ids["student_id"]}))
    return ids


async def fresh_relationship(world: World, call: Call) -> Ids:
    return {**call.ids, "relationship_id": await world.relationship(call.side)}


async def fresh_cohort(world: World, call: Call) -> Ids:
    return {**call.ids, "cohort_id": await world.cohort(call.side)}


async def fresh_help(world: World, call: Call) -> Ids:
    # Another's request: another student's (for a student, one of their own session).
    student = "s1" if call.side == "mine" else "s2"
    return {**call.ids, "help_id": await world.help_request(call.ids["session_id"], student)}


async def fresh_timer(world: World, call: Call) -> Ids:
    return {**call.ids, "timer_id": await world.timer(call.side)}


def unique(prefix: str) -> Callable[[Call, World], str]:
    return lambda call, world: world.unique(prefix)


SESSIONS = "/api/v1/sessions"
TEACHER = "/api/v1/teacher/sessions"
STUDENT = "/api/v1/student/sessions"
ALL = {"limit": 100}

REST_ROWS: dict[str, Rest] = {
    spec.method + " " + spec.path: spec
    for spec in [
        Rest("GET", "/healthz"),
        Rest("GET", "/readyz"),
        Rest("GET", "/metrics"),
        Rest("GET", "/api/v1/openapi.json"),
        Rest(
            "POST",
            "/api/v1/dev/token",
            body=lambda c, w: {"sub": "someone", "role": "STUDENT", "center": "c1"},
        ),
        Rest(
            "POST",
            SESSIONS,
            body=lambda c, w: session_body(tutor_id=c.ids["tutor_id"]),
        ),
        Rest(
            "GET",
            SESSIONS,
            query=ALL,
            listed=("id", "session_id"),
            other_query={"TUTOR": {"tutor_id": "tutor-2"}},
        ),
        Rest("GET", SESSIONS + "/{session_id}"),
        Rest("PATCH", SESSIONS + "/{session_id}", body=lambda c, w: {"title": "Renamed"}),
        Rest("POST", SESSIONS + "/{session_id}/end", fresh=fresh_live_session),
        Rest(
            "POST",
            SESSIONS + "/{session_id}/enrollments",
            body=lambda c, w: {"student_id": w.unique("sx")},
        ),
        Rest("GET", SESSIONS + "/{session_id}/enrollments"),
        Rest("GET", SESSIONS + "/{session_id}/enrollments/{student_id}", per_student=True),
        Rest(
            "PATCH",
            SESSIONS + "/{session_id}/enrollments/{student_id}",
            body=lambda c, w: {"notes": "works hard"},
            per_student=True,
        ),
        Rest(
            "PUT",
            SESSIONS + "/{session_id}/enrollments/{student_id}/assessment",
            body=lambda c, w: {"assessment_data": {"grade": 80}},
            per_student=True,
        ),
        Rest(
            "DELETE",
            SESSIONS + "/{session_id}/enrollments/{student_id}",
            fresh=fresh_enrollment,
        ),
        Rest("POST", SESSIONS + "/{session_id}/enrollments/from-course"),
        Rest("GET", SESSIONS + "/{session_id}/canvases/{student_id}", per_student=True),
        Rest("GET", SESSIONS + "/{session_id}/canvases/{student_id}/svg", per_student=True),
        Rest("GET", SESSIONS + "/{session_id}/canvases/{student_id}/snapshots", per_student=True),
        Rest("GET", SESSIONS + "/{session_id}/canvases/{student_id}/timeline", per_student=True),
        Rest("GET", SESSIONS + "/{session_id}/help"),
        Rest("GET", SESSIONS + "/{session_id}/attendance"),
        Rest(
            "POST",
            "/api/v1/attendance/bulk",
            body=lambda c, w: {
                "session_id": c.ids["session_id"],
                "records": [{"student_id": c.ids["student_id"], "status": "PRESENT"}],
            },
            id_in_body=True,
        ),
        Rest("GET", SESSIONS + "/{session_id}/notes"),
        Rest("GET", "/api/v1/tutors/me/day"),
        Rest("GET", "/api/v1/people", query=ALL, listed=("user_id", "student_id")),
        Rest("GET", "/api/v1/people/{user_id}", people=True),
        Rest(
            "POST",
            "/api/v1/people/import",
            body=lambda c, w: {"people": [{"user_id": w.unique("sx"), "role": "STUDENT"}]},
        ),
        Rest("GET", "/api/v1/people/{parent_id}/children", people=True),
        Rest(
            "POST",
            "/api/v1/people/{parent_id}/children",
            body=lambda c, w: {"student_id": c.ids["student_id"]},
            fresh=fresh_link,
            people=True,
        ),
        Rest(
            "DELETE",
            "/api/v1/people/{parent_id}/children/{student_id}",
            fresh=fresh_linked,
            people=True,
        ),
        Rest(
            "POST",
            "/api/v1/relationships",
            body=lambda c, w: {
                "tutor_id": c.ids["tutor_id"],
                "student_id": c.ids["student_id"],
                "subject": w.unique("physics"),
            },
        ),
        Rest(
            "GET",
            "/api/v1/relationships",
            query=ALL,
            listed=("id", "relationship_id"),
            other_query={"TUTOR": {"tutor_id": "tutor-2"}, "STUDENT": {"student_id": "s2"}},
        ),
        Rest("GET", "/api/v1/relationships/{relationship_id}"),
        Rest(
            "PATCH",
            "/api/v1/relationships/{relationship_id}",
            body=lambda c, w: {"notes": "weekly"},
        ),
        Rest("POST", "/api/v1/relationships/{relationship_id}/end", fresh=fresh_relationship),
        Rest("GET", "/api/v1/relationships/{relationship_id}/sessions"),
        Rest("GET", "/api/v1/me/students", query=ALL, listed=("id", "relationship_id")),
        Rest("GET", "/api/v1/me/tutors", query=ALL, listed=("id", "relationship_id")),
        Rest("GET", "/api/v1/tutors/{tutor_id}/students", people=True),
        Rest("GET", "/api/v1/students/{student_id}/tutors", people=True),
        Rest("GET", "/api/v1/tutors/{tutor_id}/subjects", people=True),
        Rest(
            "PUT",
            "/api/v1/tutors/{tutor_id}/subjects",
            body=lambda c, w: {"subjects": [{"subject": "maths", "level": "A-level"}]},
            people=True,
        ),
        Rest(
            "POST",
            "/api/v1/cohorts",
            body=lambda c, w: {"name": w.unique("class"), "student_ids": [c.ids["student_id"]]},
        ),
        Rest(
            "GET",
            "/api/v1/cohorts",
            query=ALL,
            listed=("id", "cohort_id"),
            other_query={"STUDENT": {"student_id": "s2"}},
        ),
        Rest("GET", "/api/v1/cohorts/{cohort_id}"),
        Rest(
            "PATCH",
            "/api/v1/cohorts/{cohort_id}",
            body=lambda c, w: {"description": "Tuesday group"},
        ),
        Rest("DELETE", "/api/v1/cohorts/{cohort_id}", fresh=fresh_cohort),
        Rest("GET", "/api/v1/cohorts/{cohort_id}/members"),
        Rest(
            "POST",
            "/api/v1/cohorts/{cohort_id}/members",
            body=lambda c, w: {"student_ids": [c.ids["student_id"]]},
        ),
        Rest("DELETE", "/api/v1/cohorts/{cohort_id}/members/{student_id}", fresh=fresh_cohort),
        Rest(
            "POST",
            TEACHER,
            body=lambda c, w: course_body(c.ids["tutor_id"], w.unique("course")),
        ),
        Rest(
            "GET",
            TEACHER,
            query=ALL,
            listed=("course_session_id", "course_id"),
            other_query={"TUTOR": {"teacherId": "tutor-2"}},
        ),
        Rest("GET", TEACHER + "/{session_id}"),
        Rest(
            "PATCH",
            TEACHER + "/{session_id}",
            body=lambda c, w: {"session_description": "Now with proofs"},
        ),
        Rest("PATCH", TEACHER + "/{session_id}/publish", fresh=fresh_draft),
        Rest("DELETE", TEACHER + "/{session_id}", fresh=fresh_draft),
        Rest("GET", TEACHER + "/{session_id}/enrollments"),
        Rest(
            "PATCH",
            TEACHER + "/{session_id}/enrollments/{enrollment_id}/status",
            body=lambda c, w: {"enrollment_status": "ENROLLED"},
        ),
        Rest(
            "PATCH",
            TEACHER + "/{session_id}/enrollments/{enrollment_id}/grade",
            body=lambda c, w: {"completion_percentage": 50},
        ),
        Rest(
            "POST",
            TEACHER + "/{session_id}/announcements",
            body=lambda c, w: {"title": w.unique("notice"), "message": "Bring a calculator."},
        ),
        Rest("GET", TEACHER + "/{session_id}/announcements"),
        Rest(
            "PATCH",
            TEACHER + "/{session_id}/announcements/{announcement_id}",
            body=lambda c, w: {"is_urgent": True},
        ),
        Rest(
            "DELETE",
            TEACHER + "/{session_id}/announcements/{announcement_id}",
            fresh=fresh_announcement,
        ),
        Rest("GET", TEACHER + "/{session_id}/settings"),
        Rest(
            "PUT",
            TEACHER + "/{session_id}/settings",
            body=lambda c, w: {"reminder_days_before_expiry": 3},
        ),
        Rest(
            "POST",
            STUDENT + "/join",
            body=lambda c, w: {"session_code": c.ids["code"]},
            fresh=fresh_published,
            id_in_body=True,
        ),
        Rest(
            "GET",
            STUDENT,
            query=ALL,
            listed=("course_session_id", "course_id"),
            other_query={"PARENT": {"student_id": "s2"}, "STUDENT": {"student_id": "s2"}},
            parent_names_child=True,
        ),
        Rest("GET", STUDENT + "/{session_id}"),
        Rest("DELETE", STUDENT + "/{session_id}/enrollment", fresh=fresh_joined),
        Rest("GET", STUDENT + "/{session_id}/announcements", parent_names_child=True),
        Rest(
            "GET",
            "/api/v1/admin/sessions",
            query=ALL,
            listed=("course_session_id", "course_id"),
        ),
        Rest("GET", "/api/v1/admin/sessions/{session_id}/analytics"),
    ]
}


def _patch(call: Call, world: World) -> dict[str, Any]:
    name = world.unique("e")
    if call.role == "STUDENT":
        op = {"op": "add", "path": f"/elements/{name}", "value": {"type": "text", "text": "x"}}
        named = {} if call.side == "mine" else {"student_id": call.ids["student_id"]}
        return {"session_id": call.ids["session_id"], "ops": [op], **named}
    op = {"op": "add", "path": f"/annotations/{name}", "value": {"type": "text", "text": "ok"}}
    return {"session_id": call.ids["session_id"], "student_id": call.ids["student_id"], "ops": [op]}


def _on(*fields: str, **values: Any) -> Callable[[Call, World], dict[str, Any]]:
    return lambda call, world: {**{f: call.ids[f] for f in fields}, **values}


EVENT_ROWS: dict[str, Event] = {
    "auth:refresh": Event(
        lambda call, world: {
            "token": world.hub.tokens(
                SUB[call.role] if call.side == "mine" else "someone-else", call.role
            )
        },
        sessionless=True,
    ),
    "session:join": Event(_on("session_id")),
    "session:leave": Event(_on("session_id")),
    "canvas:patch": Event(_patch, per_student=True),
    "canvas:sync": Event(_on("session_id", "student_id", since=0), per_student=True),
    "presence:ping": Event(_on("session_id", state="active")),
    "mode:set": Event(_on("session_id", "student_id", mode="TEACH")),
    "exercise:assign": Event(
        _on("session_id", "student_id", exercise={"id": "ex-1", "title": "Fractions"})
    ),
    "exercise:progress": Event(_on("session_id", exercise_id="ex-1", progress_pct=40)),
    "note:add": Event(_on("session_id", "student_id", text="Good work", visibility="PRIVATE")),
    "help:request": Event(
        lambda call, world: {
            "session_id": call.ids["session_id"],
            "message": "stuck",
            "exercise_id": world.unique("ex"),
        }
    ),
    "help:update": Event(
        _on("session_id", "help_id", status="CANCELLED"), fresh=fresh_help, per_student=True
    ),
    "timer:start": Event(_on("session_id", label="quiz", duration_s=300)),
    "timer:cancel": Event(_on("session_id", "timer_id"), fresh=fresh_timer),
    "announcement:send": Event(_on("session_id", text="Five minutes left")),
    "session:end": Event(_on("session_id"), fresh=fresh_live_session),
}


# -- making the calls ----------------------------------------------------------------


class Caller:
    """One role's identity in one center: its REST token and (lazily) its socket."""

    def __init__(self, world: World, role: str, center: str) -> None:
        self.world = world
        self.role = role
        self.token = world.hub.tokens(SUB[role], role, center)
        self._client: Client | None = None

    async def rest(self, spec: Rest, call: Call, *, query: dict[str, Any] | None = None) -> Outcome:
        body = spec.body(call, self.world) if spec.body else None
        if query is None and spec.parent_names_child and self.role == "PARENT":
            query = {**(spec.query or {}), "student_id": call.ids["student_id"]}
        public = set(TABLE[f"{spec.method} {spec.path}"].values()) == {"-"}
        headers = {} if public else {"Authorization": f"Bearer {self.token}"}
        async with self.world.hub.http.request(
            spec.method,
            self.world.hub.url + fill(spec.path, call.ids),
            json=body,
            params=query if query is not None else spec.query,
            headers=headers,
        ) as resp:
            text = await resp.text()
        try:
            got = json.loads(text) if text else None
        except ValueError:
            got = text[:100]
        code = got.get("errorCode") if isinstance(got, dict) else None
        return Outcome(resp.status, code, got)

    async def emit(self, event: str, spec: Event, call: Call) -> Outcome:
        if self._client is None:
            self._client = await self.world.hub.client(self.token)
        payload = spec.payload(call, self.world)
        if not spec.sessionless and event != "session:join":
            await self._client.join(call.ids["session_id"])  # refused for some: fine
        ack = await self._client.call(event, payload)
        code = None if ack.get("ok") else ack["error"]["code"]
        return Outcome(None, code, ack)


def side_ids(world: World, side: Side, role: str, per_student: bool) -> Ids:
    if side == "nowhere":
        keys = {*world.ids["mine"], "user_id", "help_id", "timer_id"}
        return {key: f"nowhere-{key}" for key in keys} | {"code": "ZZZZZZZZZZ"}
    if side == "other" and role == "STUDENT" and per_student:
        # A student's "other" is another student's data in their own session.
        return {**world.ids["mine"], "student_id": world.ids["other"]["student_id"]}
    ids = dict(world.ids[side])
    ids["user_id"] = SUB[role] if side == "mine" else ids["student_id"]
    return ids


async def call_row(caller: Caller, row: str, side: Side) -> Outcome:
    world = caller.world
    spec: Rest | Event | None = REST_ROWS.get(row) or EVENT_ROWS.get(row)
    assert spec is not None, f"no way to walk the row {row}"
    call = Call(side_ids(world, side, caller.role, spec.per_student), side, caller.role)
    if spec.fresh is not None and side != "nowhere":
        call = Call(await spec.fresh(world, call), side, caller.role)
    if isinstance(spec, Rest):
        return await caller.rest(spec, call)
    return await caller.emit(row, spec, call)


def may_join(role: str, side: Side, row: str) -> bool:
    """Whether the caller could join the session a live call was made on (by the table)."""
    event = EVENT_ROWS[row]
    if event.sessionless:
        return True
    join = TABLE["session:join"][role]
    # A student's "other" object is in their own session.
    on_own = side == "mine" or (event.per_student and role == "STUDENT")
    return join == "yes" or (join == "own" and on_own)


def refused(row: str, role: str, side: Side, got: Outcome) -> str | None:
    """What is wrong with ``got`` as a refusal (None: it is one)."""
    if row == "session:join":
        expected = "FORBIDDEN"
    elif got.status is not None:
        if got.status == 403 and got.code == "FORBIDDEN":
            return None
        return f"expected 403 FORBIDDEN, got {got}"
    else:
        expected = "FORBIDDEN" if may_join(role, side, row) else "NOT_JOINED"
    return None if got.code == expected else f"expected the error ack {expected}, got {got}"


def listed(got: Outcome, key: str) -> set[str]:
    return {str(item[key]) for item in got.body["data"]}


async def walk(caller: Caller, row: str, cell: str) -> list[str]:
    """The row's cell for the caller's role, checked; what was wrong, if anything."""
    world, role = caller.world, caller.role
    rest = REST_ROWS.get(row)
    problems: list[str] = []
    if cell == "-":
        got = await call_row(caller, row, "mine")
        return [] if got.ok else [f"public: expected a success, got {got}"]
    side = "other" if cell == "yes" else "mine"
    got = await call_row(caller, row, side)
    if cell == "no":
        return [f"no: {wrong}"] if (wrong := refused(row, role, "mine", got)) else []
    if not got.ok:
        return [f"{cell}: expected a success on {side}, got {got}"]
    if rest is not None and rest.listed is not None:
        key, ids_key = rest.listed
        ids = listed(got, key)
        want = world.ids[side].get(ids_key, world.ids[side]["student_id"])
        if want not in ids:
            problems.append(f"{cell}: expected {want} ({side}) in the list, got {sorted(ids)}")
        if cell in ("own", "child"):
            theirs_not = world.ids["other"].get(ids_key, world.ids["other"]["student_id"])
            if theirs_not in ids:
                problems.append(f"{cell}: {theirs_not} is not theirs and is listed")
            if (query := rest.other_query.get(role)) is not None:
                other = await caller.rest(
                    rest, Call(world.ids["mine"], "mine", role), query={**ALL, **query}
                )
                if wrong := refused(row, role, "mine", other):
                    problems.append(f"{cell}: asking for someone else's ({query}): {wrong}")
        return problems
    if cell in ("own", "child") and not is_about_nothing(row):
        other = await call_row(caller, row, "other")
        if wrong := refused(row, role, "other", other):
            problems.append(f"{cell}: not theirs: {wrong}")
    return problems


def is_about_nothing(row: str) -> bool:
    """A route that names no object and takes no ids: there is no "other" to try."""
    return row in ("GET /api/v1/tutors/me/day",)


# -- the tests -------------------------------------------------------------------------


def served(hub: Hub) -> tuple[set[str], set[str]]:
    assert hub.app is not None
    routes = {
        f"{route.method} {route.resource.canonical}"
        for route in hub.app.router.routes()
        if route.method not in ("HEAD", "OPTIONS") and route.resource is not None
    }
    routes = {r for r in routes if is_rest(r.split(" ", 1)[1])}
    events = set(hub.app[GATEWAY].sio.handlers["/"]) - {"connect", "disconnect", "*"}
    return routes, events


async def test_the_table_names_every_route_and_event_and_nothing_else(hub: Hub) -> None:
    routes, events = served(hub)
    assert routes - set(TABLE) == set(), "routes served but not in the role table"
    assert events - set(TABLE) == set(), "events handled but not in the role table"
    assert set(TABLE) - routes - events == DEVELOPMENT_ONLY, "rows for nothing the hub serves"
    assert set(TABLE) <= set(REST_ROWS) | set(EVENT_ROWS), "rows this test cannot walk"


async def test_a_development_hub_serves_its_rows_and_each_role_may_call_them(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(jwt_secret=None)  # the development secret
    routes, _ = served(hub)
    assert DEVELOPMENT_ONLY <= routes, "a development hub serves its development routes"
    assert routes - set(TABLE) == set(), "routes served but not in the role table"
    world = World(hub)
    await world.build()
    problems = []
    for role in ROLES:
        caller = Caller(world, role, "c1")
        for row in sorted(DEVELOPMENT_ONLY):
            problems += [f"{row} as {role}: {p}" for p in await walk(caller, row, TABLE[row][role])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_does_what_the_table_says(hub: Hub, role: str) -> None:
    world = World(hub)
    await world.build()
    caller = Caller(world, role, "c1")
    problems = []
    for row, cells in TABLE.items():
        if row in DEVELOPMENT_ONLY:
            continue  # not served by this hub: walked on a development hub
        problems += [f"{row} as {role}: {p}" for p in await walk(caller, row, cells[role])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", [r for r in ROLES if r != "SUPER_ADMIN"])
async def test_another_centers_ids_answer_as_ids_that_exist_nowhere(hub: Hub, role: str) -> None:
    world = World(hub)
    await world.build()
    caller = Caller(world, role, "c2")
    problems = []
    for row in TABLE:
        rest = REST_ROWS.get(row)
        names_ids = row in EVENT_ROWS and not EVENT_ROWS[row].sessionless
        if rest is not None:
            names_ids = bool(params_of(rest.path)) or rest.id_in_body
        if not names_ids:
            continue
        # c1's own ids; people by ids no c2 caller holds (a person id is center-free).
        side = "other" if rest is not None and rest.people else "mine"
        theirs = await call_row(caller, row, side)
        nowhere = await call_row(caller, row, "nowhere")
        if theirs.ok or (theirs.status, theirs.code) != (nowhere.status, nowhere.code):
            problems.append(f"{row} as {role} of c2: c1's ids: {theirs}; no such ids: {nowhere}")
        elif theirs.status not in (None, 403, 404) and theirs.code != "INVALID_SESSION_CODE":
            problems.append(f"{row} as {role} of c2: expected 403 or 404, got {theirs}")
    assert not problems, "\n".join(problems)
