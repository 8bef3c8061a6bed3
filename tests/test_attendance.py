"""Attendance: derived from joins (PRESENT or LATE by the grace period), bulk marks,
and exactly one catch-up package per absentee."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from persistence.models import CatchUpPackage
from tests.conftest import Hub, HubFactory
from tests.support import eventually, session_body
from tests.test_help import FakeClock

SESSIONS = "/api/v1/sessions"
BULK = "/api/v1/attendance/bulk"


async def session_starting_at(hub: Hub, clock: FakeClock, students: tuple[str, ...]) -> str:
    api = hub.as_("tutor-1", "TUTOR")
    starts = clock.now
    status, created = await api.post(
        SESSIONS,
        session_body(
            starts_at=starts.isoformat(), ends_at=(starts + timedelta(hours=1)).isoformat()
        ),
    )
    assert status == 201
    session_id: str = created["data"]["id"]
    for n, student in enumerate(students):
        await api.post(
            f"{SESSIONS}/{session_id}/enrollments",
            {
                "student_id": student,
                "course_id": "math",
                "lesson_id": f"L{n}",
                "level": "B",
                "exercise_content": {"sheet": n},
            },
        )
    return session_id


async def attendance(hub: Hub, session_id: str) -> dict[str, dict[str, Any]]:
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}/attendance")
    assert status == 200, got
    return {a["student_id"]: a for a in got["data"]}


async def test_present_or_late_by_the_grace_period(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await make_hub(clock=clock, late_after_s=300)
    session_id = await session_starting_at(hub, clock, ("early", "late", "never"))
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    clock.advance(299)
    early = await hub.connect("early", "STUDENT")
    await early.join(session_id)
    clock.advance(2)
    late = await hub.connect("late", "STUDENT")
    await late.join(session_id)
    updates = await eventually(
        lambda: len(tutor.events("attendance:update")) == 2 and tutor.events("attendance:update"),
        what="attendance updates",
    )
    assert [(u["student_id"], u["status"]) for u in updates] == [
        ("early", "PRESENT"),
        ("late", "LATE"),
    ]
    clock.advance(60)
    await early.sio.disconnect()
    left = await eventually(
        lambda: len(tutor.events("attendance:update")) == 3 and tutor.events("attendance:update"),
        what="left_at",
    )
    assert left[2]["student_id"] == "early" and left[2]["left_at"]
    got = await attendance(hub, session_id)
    assert (got["early"]["status"], got["late"]["status"], got["never"]["status"]) == (
        "PRESENT",
        "LATE",
        None,
    )
    assert got["early"]["total_time_s"] == 62
    assert got["early"]["joined_at"] and got["early"]["left_at"]


async def test_bulk_absent_creates_exactly_one_catch_up(hub: Hub) -> None:
    clock = FakeClock()
    session_id = await session_starting_at(hub, clock, ("s1", "s2"))
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    api = hub.as_("tutor-1", "TUTOR")
    marks = {
        "session_id": session_id,
        "records": [
            {"student_id": "s1", "status": "ABSENT", "notes": "ill"},
            {"student_id": "s2", "status": "EXCUSED"},
        ],
    }
    status, got = await api.post(BULK, marks)
    assert status == 200, got
    created = got["data"]["catch_ups_created"]
    assert [
        (c["student_id"], c["course_id"], c["lesson_id"], c["exercise_content"]) for c in created
    ] == [("s1", "math", "L0", {"sheet": 0})]
    # Again, and concurrently: still one package.
    results = await asyncio.gather(*(api.post(BULK, marks) for _ in range(3)))
    assert all(status == 200 for status, _ in results), results
    assert all(body["data"]["catch_ups_created"] == [] for _, body in results)
    async with hub.db() as db:
        count = await db.scalar(select(func.count()).select_from(CatchUpPackage))
    assert count == 1
    got_attendance = await attendance(hub, session_id)
    assert got_attendance["s1"]["status"] == "ABSENT"
    assert got_attendance["s1"]["catch_up"]["id"] == created[0]["id"]
    assert got_attendance["s1"]["notes"] == "ill" and got_attendance["s1"]["marked_by"] == "tutor-1"
    assert got_attendance["s2"]["catch_up"] is None
    await eventually(lambda: len(tutor.events("attendance:update")) >= 2, what="marks announced")


async def test_a_mark_is_not_overwritten_by_a_later_join(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await make_hub(clock=clock)
    session_id = await session_starting_at(hub, clock, ("s1",))
    await hub.as_("tutor-1", "TUTOR").post(
        BULK, {"session_id": session_id, "records": [{"student_id": "s1", "status": "EXCUSED"}]}
    )
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    got = await attendance(hub, session_id)
    assert got["s1"]["status"] == "EXCUSED" and got["s1"]["joined_at"]


async def test_bulk_refusals_change_nothing(hub: Hub) -> None:
    clock = FakeClock()
    session_id = await session_starting_at(hub, clock, ("s1",))
    api = hub.as_("tutor-1", "TUTOR")
    ok_mark = {"student_id": "s1", "status": "ABSENT"}
    cases = [
        (
            api,
            {
                "session_id": session_id,
                "records": [ok_mark, {"student_id": "s9", "status": "ABSENT"}],
            },
            404,
            "ENROLLMENT_NOT_FOUND",
        ),
        (api, {"session_id": session_id, "records": [ok_mark, ok_mark]}, 422, "VALIDATION_ERROR"),
        (api, {"session_id": session_id, "records": []}, 422, "VALIDATION_ERROR"),
        (
            api,
            {"session_id": session_id, "records": [{"student_id": "s1", "status": "GONE"}]},
            422,
            "VALIDATION_ERROR",
        ),
        (
            hub.as_("tutor-2", "TUTOR"),
            {"session_id": session_id, "records": [ok_mark]},
            403,
            "FORBIDDEN",
        ),
        (
            hub.as_("s1", "STUDENT"),
            {"session_id": session_id, "records": [ok_mark]},
            403,
            "FORBIDDEN",
        ),
        (
            hub.as_("adm", "CENTER_ADMIN", "c2"),
            {"session_id": session_id, "records": [ok_mark]},
            404,
            "SESSION_NOT_FOUND",
        ),
    ]
    for caller, body, status, code in cases:
        got_status, got = await caller.post(BULK, body)
        assert (got_status, got["errorCode"]) == (status, code), (body, got)
    got = await attendance(hub, session_id)
    assert got["s1"]["status"] is None and got["s1"]["catch_up"] is None
    status, got = await hub.as_("s1", "STUDENT").get(f"{SESSIONS}/{session_id}/attendance")
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
