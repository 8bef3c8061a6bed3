"""Live sessions that meet for a course session: the link, enrolling the course's
students in one call, live attendance in the course's analytics, and announcements
pushed live (SQLite and Postgres)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from persistence.models import AuditEntry, Enrollment
from tests.conftest import Hub
from tests.support import session_body
from tests.test_course_enrollments import join
from tests.test_course_sessions import ADMIN, TEACHER, directory, new_course

SESSIONS = "/api/v1/sessions"


async def course_with_students(hub: Hub, *students: str, **body: Any) -> dict[str, Any]:
    course = await new_course(hub, publish=True, **body)
    for student in students:
        assert (await join(hub, student, course["session_code"]))[0] == 201
    return course


async def test_a_live_session_names_its_course_session_or_none(hub: Hub) -> None:
    course = await new_course(hub)
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(SESSIONS, session_body())
    assert status == 201 and got["data"]["course_session_id"] is None
    plain = got["data"]["id"]
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=course["course_session_id"])
    )
    assert status == 201 and got["data"]["course_session_id"] == course["course_session_id"]
    for bad in ("nope",):
        status, got = await tutor.post(SESSIONS, session_body(course_session_id=bad))
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    other_center = await hub.as_("t9", "TUTOR", "c2").post(
        TEACHER,
        {
            k: v
            for k, v in course.items()
            if k in ("session_name", "course_id", "start_date", "end_date")
        }
        | {"teacher_id": "t9"},
    )
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=other_center[1]["data"]["course_session_id"])
    )
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    # Another tutor's course session: not theirs to link.
    await directory(hub, ("tutor-2", "TUTOR", None, None))
    status, got = await hub.as_("tutor-2", "TUTOR").post(
        SESSIONS, session_body("tutor-2", course_session_id=course["course_session_id"])
    )
    assert status == 403
    status, got = await tutor.patch(
        f"{SESSIONS}/{plain}", {"course_session_id": course["course_session_id"]}
    )
    assert status == 200 and got["data"]["course_session_id"] == course["course_session_id"]
    status, got = await tutor.patch(f"{SESSIONS}/{plain}", {"course_session_id": None})
    assert status == 200 and got["data"]["course_session_id"] is None


async def test_enrolled_students_join_the_live_session_in_one_call(hub: Hub) -> None:
    await directory(hub, ("s1", "STUDENT", "Ada", None))
    course = await course_with_students(hub, "s1", "s2", "s3", "s4")
    course_id = course["course_session_id"]
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{course_id}/enrollments"
    roster = {e["student_id"]: e for e in (await tutor.get(base))[1]["data"]}
    await tutor.patch(
        f"{base}/{roster['s4']['course_session_enrollment_id']}/status",
        {"enrollment_status": "DROPPED"},
    )
    status, got = await tutor.post(SESSIONS, session_body(course_session_id=course_id))
    live = got["data"]["id"]
    assert (await tutor.post(f"{SESSIONS}/{live}/enrollments", {"student_id": "s2"}))[0] == 201
    status, got = await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course")
    assert status == 201, got
    added = {e["student_id"]: e for e in got["data"]["added"]}
    assert sorted(added) == ["s1", "s3"] and got["data"]["already_enrolled"] == ["s2"]
    assert added["s1"]["student_name"] == "Ada" and added["s1"]["course_id"] == "math-101"
    status, got = await tutor.get(f"{SESSIONS}/{live}/enrollments")
    assert sorted(e["student_id"] for e in got["data"]) == ["s1", "s2", "s3"]
    status, got = await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course")
    assert status == 201 and got["data"]["added"] == []
    assert (await hub.as_("tutor-2", "TUTOR").post(f"{SESSIONS}/{live}/enrollments/from-course"))[
        0
    ] == 403
    status, got = await tutor.post(SESSIONS, session_body())
    status, got = await tutor.post(f"{SESSIONS}/{got['data']['id']}/enrollments/from-course")
    assert (status, got["errorCode"]) == (409, "NO_COURSE_SESSION")


async def test_over_capacity_nothing_is_added(hub: Hub) -> None:
    course = await course_with_students(hub, "s1", "s2", "s3")
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=course["course_session_id"], max_students=2)
    )
    live = got["data"]["id"]
    status, got = await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course")
    assert (status, got["errorCode"]) == (409, "SESSION_FULL")
    assert (await tutor.get(f"{SESSIONS}/{live}/enrollments"))[1]["pagination"]["total"] == 0


async def test_a_failure_after_the_first_enrollment_leaves_nothing(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rest.courses

    course = await course_with_students(hub, "s1", "s2", "s3")
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=course["course_session_id"])
    )
    live = got["data"]["id"]
    real = rest.courses.audit
    calls: list[str] = []

    def audit_then_fail(*args: Any, **kwargs: Any) -> None:
        calls.append(args[3])
        if len(calls) == 2:
            raise RuntimeError("injected after the first enrollment was written")
        real(*args, **kwargs)

    monkeypatch.setattr(rest.courses, "audit", audit_then_fail)
    status, got = await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course")
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    assert len(calls) == 2
    async with hub.db() as db:
        assert await db.scalar(select(func.count()).select_from(Enrollment)) == 0
        assert (
            await db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "enrollment.add")
            )
            == 0
        )
    monkeypatch.undo()
    status, got = await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course")
    assert status == 201 and len(got["data"]["added"]) == 3


async def test_course_analytics_include_live_attendance(hub: Hub) -> None:
    course = await course_with_students(hub, "s1", "s2", "s3")
    tutor = hub.as_("tutor-1", "TUTOR")
    lives = []
    for _ in range(2):
        status, got = await tutor.post(
            SESSIONS, session_body(course_session_id=course["course_session_id"])
        )
        lives.append(got["data"]["id"])
        assert (await tutor.post(f"{SESSIONS}/{lives[-1]}/enrollments/from-course"))[0] == 201
    await tutor.post(SESSIONS, session_body())  # not the course's
    marks = [("PRESENT", "LATE", "ABSENT"), ("PRESENT", "PRESENT", "EXCUSED")]
    for live, statuses in zip(lives, marks, strict=True):
        status, got = await tutor.post(
            "/api/v1/attendance/bulk",
            {
                "session_id": live,
                "records": [
                    {"student_id": s, "status": st}
                    for s, st in zip(("s1", "s2", "s3"), statuses, strict=True)
                ],
            },
        )
        assert status == 200, got
    status, got = await hub.as_("admin", "CENTER_ADMIN").get(
        f"{ADMIN}/{course['course_session_id']}/analytics"
    )
    assert status == 200
    assert got["data"]["live_attendance"] == {
        "live_sessions": 2,
        "records": 6,
        "by_status": {"ABSENT": 1, "EXCUSED": 1, "LATE": 1, "PRESENT": 3},
        "attendance_rate": 66.7,
    }
