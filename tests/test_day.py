"""A tutor's "my day": today's sessions, students, open help, absentees, assessments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Hub
from tests.support import eventually, session_body

SESSIONS = "/api/v1/sessions"
DAY = "/api/v1/tutors/me/day"


async def session_at(
    hub: Hub, start: datetime, tutor: str = "tutor-1", students: tuple[str, ...] = ()
) -> str:
    api = hub.as_(tutor, "TUTOR")
    status, created = await api.post(
        SESSIONS,
        session_body(
            tutor, starts_at=start.isoformat(), ends_at=(start + timedelta(hours=1)).isoformat()
        ),
    )
    assert status == 201, created
    session_id: str = created["data"]["id"]
    for n, student in enumerate(students):
        await api.post(
            f"{SESSIONS}/{session_id}/enrollments",
            {
                "student_id": student,
                "student_name": student.upper(),
                "course_id": "math",
                "lesson_id": f"L{n}",
                "level": "A",
            },
        )
    return session_id


async def test_my_day(hub: Hub) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done = await session_at(hub, midnight + timedelta(minutes=1), students=("a1", "a2", "a3", "a4"))
    upcoming = await session_at(hub, max(now, midnight + timedelta(minutes=2)), students=("b1",))
    await session_at(hub, midnight + timedelta(days=1, hours=1), students=("c1",))
    await session_at(hub, midnight + timedelta(minutes=3), tutor="tutor-2", students=("d1",))

    tutor_api = hub.as_("tutor-1", "TUTOR")
    a1 = await hub.connect("a1", "STUDENT")
    assert (await a1.join(done))["ok"]
    await a1.sio.disconnect()
    await tutor_api.post(
        "/api/v1/attendance/bulk",
        {
            "session_id": done,
            "records": [
                {"student_id": "a3", "status": "ABSENT"},
                {"student_id": "a4", "status": "EXCUSED"},
            ],
        },
    )
    await tutor_api.post(f"{SESSIONS}/{done}/end")
    b1 = await hub.connect("b1", "STUDENT")
    await b1.join(upcoming)
    asked = await b1.call("help:request", {"session_id": upcoming, "message": "help"})
    assert asked["ok"]

    async def a1_left() -> bool:
        status, got = await tutor_api.get(f"{SESSIONS}/{done}/attendance")
        return any(a["student_id"] == "a1" and a["left_at"] for a in got["data"])

    await eventually(a1_left, what="a1's attendance closed")
    status, got = await tutor_api.get(DAY, tz="UTC")
    assert status == 200, got
    day = got["data"]
    assert day["date"] == now.date().isoformat() and day["tz"] == "UTC"
    assert [s["id"] for s in day["sessions"]] == [done, upcoming]
    first = day["sessions"][0]
    # LATE unless this runs within the grace period after the 00:01 start.
    a1_status = "LATE" if now > midnight + timedelta(minutes=1, seconds=300) else "PRESENT"
    assert [
        (s["student_id"], s["course_id"], s["lesson_id"], s["level"], s["attendance"])
        for s in first["students"]
    ] == [
        ("a1", "math", "L0", "A", a1_status),
        ("a2", "math", "L1", "A", None),
        ("a3", "math", "L2", "A", "ABSENT"),
        ("a4", "math", "L3", "A", "EXCUSED"),
    ]
    assert day["sessions"][1]["open_help"] == 1
    assert [h["id"] for h in day["open_help_requests"]] == [asked["help_request"]["id"]]
    assert [(a["session_id"], a["student_id"]) for a in day["absent_without_catch_up"]] == [
        (done, "a2")
    ]
    assert [(a["session_id"], a["student_id"]) for a in day["assessments_waiting"]] == [
        (done, "a1")
    ]
    # Writing the assessment takes it off the list.
    await tutor_api.patch(f"{SESSIONS}/{done}/enrollments/a1", {"assessment_data": {"score": 7}})
    status, got = await tutor_api.get(DAY)
    assert got["data"]["assessments_waiting"] == []


async def test_my_day_refusals(hub: Hub) -> None:
    status, got = await hub.as_("adm", "CENTER_ADMIN").get(DAY)
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("tutor-1", "TUTOR").get(DAY, tz="Nowhere/Land")
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    status, got = await hub.api(None).get(DAY)
    assert (status, got["errorCode"]) == (401, "UNAUTHORIZED")
