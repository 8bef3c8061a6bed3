"""Course sessions: students joining by code, the settings' rules, enrollment status and
grades, announcements, settings, the admin list and analytics (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from persistence.models import (
    AuditEntry,
    CourseSession,
    CourseSessionAnnouncement,
    CourseSessionEnrollment,
)
from tests.conftest import Hub
from tests.test_course_sessions import (
    ADMIN,
    STUDENT,
    TEACHER,
    directory,
    new_course,
    set_columns,
)


async def join(hub: Hub, student: str, code: str, center: str = "c1") -> tuple[int, Any]:
    return await hub.as_(student, "STUDENT", center).post(f"{STUDENT}/join", {"session_code": code})


async def configure(hub: Hub, session_id: str, **settings: Any) -> dict[str, Any]:
    body = {"reminder_days_before_expiry": 7, **settings}
    status, got = await hub.as_("tutor-1", "TUTOR").call(
        "PUT", f"{TEACHER}/{session_id}/settings", body
    )
    assert status == 200, got
    return dict(got["data"])


async def test_join_by_code(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    code, session_id = session["session_code"], session["course_session_id"]
    status, got = await join(hub, "s1", f"  {code.lower()} ")
    assert status == 201, got
    assert got["message"] == "Successfully enrolled in session"
    data = got["data"]
    assert data["course_session_id"] == session_id and data["student_id"] == "s1"
    assert data["enrollment_status"] == "ENROLLED" and data["course_session_enrollment_id"]
    assert data["enrolled_at"]
    status, got = await join(hub, "s1", code)
    assert (status, got["errorCode"]) == (409, "ALREADY_ENROLLED")
    status, got = await join(hub, "s1", "WRONGCODE1")
    assert (status, got["errorCode"]) == (409, "INVALID_SESSION_CODE")
    status, got = await join(hub, "s5", code, center="c2")
    assert (status, got["errorCode"]) == (409, "INVALID_SESSION_CODE")
    draft = await new_course(hub, session_name="Draft one")
    status, got = await join(hub, "s1", draft["session_code"])
    assert (status, got["errorCode"]) == (409, "INVALID_SESSION_CODE")
    status, got = await hub.as_("tutor-1", "TUTOR").post(f"{STUDENT}/join", {"session_code": code})
    assert status == 403
    status, got = await join(hub, "s1", "")
    assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR")
    status, got = await hub.as_("s1", "STUDENT").get(STUDENT)
    assert status == 200 and got["pagination"]["total"] == 1
    item = got["data"][0]
    assert (item["course_session_id"], item["enrollment_status"]) == (session_id, "ENROLLED")
    assert item["course_session_status"] == "PUBLISHED" and item["completion_percentage"] == 0
    status, got = await hub.as_("s1", "STUDENT").get(f"{STUDENT}/{session_id}")
    assert status == 200 and got["data"]["session_name"] == session["session_name"]
    status, got = await hub.as_("s2", "STUDENT").get(f"{STUDENT}/{session_id}")
    assert (status, got["message"]) == (403, "Students can only access enrolled sessions")
    status, got = await hub.as_("s2", "STUDENT", "c2").get(f"{STUDENT}/{session_id}")
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")


async def test_approval_makes_a_join_pending_until_staff_enroll(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    session_id = session["course_session_id"]
    settings = await configure(hub, session_id, require_approval_for_enrollment=True)
    assert settings["require_approval_for_enrollment"] is True
    status, got = await join(hub, "s1", session["session_code"])
    assert status == 201 and got["data"]["enrollment_status"] == "PENDING"
    assert "approval" in got["message"]
    enrollment_id = got["data"]["course_session_enrollment_id"]
    status, got = await join(hub, "s1", session["session_code"])
    assert (status, got["errorCode"]) == (409, "ALREADY_ENROLLED")
    student = hub.as_("s1", "STUDENT")
    status, got = await student.get(f"{STUDENT}/{session_id}/announcements")
    assert status == 403
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.get(f"{TEACHER}/{session_id}/enrollments", status="PENDING")
    assert [e["course_session_enrollment_id"] for e in got["data"]] == [enrollment_id]
    path = f"{TEACHER}/{session_id}/enrollments/{enrollment_id}"
    assert (await hub.as_("tutor-2", "TUTOR").patch(path + "/status", {}))[0] == 400
    status, got = await hub.as_("tutor-2", "TUTOR").patch(
        path + "/status", {"enrollment_status": "ENROLLED"}
    )
    assert status == 403
    status, got = await tutor.patch(path + "/status", {"enrollment_status": "ENROLLED"})
    assert status == 200 and got["data"]["enrollment_status"] == "ENROLLED"
    status, got = await student.get(f"{STUDENT}/{session_id}/announcements")
    assert status == 200
    async with hub.db() as db:
        entry = (
            await db.scalars(
                select(AuditEntry).where(AuditEntry.action == "course_enrollment.status")
            )
        ).one()
    assert entry.details == {"student_id": "s1", "from": "PENDING", "to": "ENROLLED"}
    assert (entry.actor_id, entry.center_id, entry.ip) == ("tutor-1", "c1", "127.0.0.1")


async def test_capacity_counts_pending_and_enrolled_and_holds_under_concurrency(
    hub: Hub,
) -> None:
    session = await new_course(hub, publish=True, max_students=3)
    code = session["session_code"]
    results = await asyncio.gather(*(join(hub, f"s{i}", code) for i in range(8)))
    assert sorted(status for status, _ in results) == [201] * 3 + [422] * 5
    assert {got["errorCode"] for status, got in results if status == 422} == {"SESSION_FULL"}
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{TEACHER}/{session['course_session_id']}")
    assert got["data"]["enrolled_count"] == 3
    # A student who drops frees the seat.
    joined = next(got["data"]["student_id"] for status, got in results if status == 201)
    status, _ = await hub.as_(joined, "STUDENT").delete(
        f"{STUDENT}/{session['course_session_id']}/enrollment"
    )
    assert status == 200
    assert (await join(hub, "late", code))[0] == 201
    status, got = await hub.as_("tutor-1", "TUTOR").patch(
        f"{TEACHER}/{session['course_session_id']}", {"max_students": 2}
    )
    assert (status, got["errorCode"]) == (422, "SESSION_OVER_CAPACITY")


async def test_the_deadline_refuses_joins_unless_late_enrollment_is_allowed(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    session_id = session["course_session_id"]
    await set_columns(
        hub,
        CourseSession,
        session_id,
        enrollment_deadline=datetime.now(UTC) - timedelta(minutes=1),
    )
    status, got = await join(hub, "s1", session["session_code"])
    assert (status, got["errorCode"], got["message"]) == (
        400,
        "ENROLLMENT_DEADLINE_PASSED",
        "Cannot enroll after enrollment deadline",
    )
    await configure(hub, session_id, allow_late_enrollment=True)
    assert (await join(hub, "s1", session["session_code"]))[0] == 201


async def test_dropping_follows_the_settings_and_a_student_may_come_back(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    session_id, code = session["course_session_id"], session["session_code"]
    await join(hub, "s1", code)
    student = hub.as_("s1", "STUDENT")
    await configure(hub, session_id, allow_student_drop=False)
    status, got = await student.delete(f"{STUDENT}/{session_id}/enrollment")
    assert (status, got["errorCode"]) == (403, "DROP_NOT_ALLOWED")
    await configure(hub, session_id, allow_student_drop=True)
    status, got = await student.delete(f"{STUDENT}/{session_id}/enrollment")
    assert status == 200 and got["data"]["enrollment_status"] == "DROPPED"
    assert got["data"]["dropped_at"]
    status, got = await student.delete(f"{STUDENT}/{session_id}/enrollment")
    assert (status, got["errorCode"]) == (422, "INVALID_STATUS_TRANSITION")
    assert (await student.get(STUDENT, status="DROPPED"))[1]["pagination"]["total"] == 1
    status, got = await join(hub, "s1", code)
    assert status == 201 and got["data"]["enrollment_status"] == "ENROLLED"
    assert (await hub.as_("s2", "STUDENT").delete(f"{STUDENT}/{session_id}/enrollment"))[0] == 403


async def test_status_transitions_grades_and_the_roster(hub: Hub) -> None:
    await directory(hub, ("s1", "STUDENT", "John Doe", "john@example.com"))
    session = await new_course(hub, publish=True)
    session_id = session["course_session_id"]
    ids = {}
    for student in ("s1", "s2"):
        ids[student] = (await join(hub, student, session["session_code"]))[1]["data"][
            "course_session_enrollment_id"
        ]
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{session_id}/enrollments"
    status, got = await tutor.get(base)
    roster = {e["student_id"]: e for e in got["data"]}
    assert roster["s1"]["student"] == {"full_name": "John Doe", "email_address": "john@example.com"}
    assert roster["s2"]["student"] == {"full_name": None, "email_address": None}
    assert got["pagination"]["limit"] == 20 and got["pagination"]["total"] == 2
    status, got = await tutor.patch(
        f"{base}/{ids['s1']}/grade", {"final_grade": 85, "completion_percentage": 90}
    )
    assert status == 200 and (got["data"]["final_grade"], got["data"]["completion_percentage"]) == (
        85,
        90,
    )
    for bad in ({"final_grade": 101, "completion_percentage": 5}, {"final_grade": 50}):
        status, got = await tutor.patch(f"{base}/{ids['s1']}/grade", bad)
        assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), bad
    status, got = await tutor.patch(
        f"{base}/{ids['s1']}/status", {"enrollment_status": "COMPLETED"}
    )
    assert status == 200 and got["data"]["completion_date"]
    status, got = await tutor.patch(f"{base}/{ids['s2']}/status", {"enrollment_status": "EXPELLED"})
    assert status == 200
    status, got = await tutor.patch(f"{base}/{ids['s2']}/status", {"enrollment_status": "ENROLLED"})
    assert (status, got["errorCode"]) == (422, "INVALID_STATUS_TRANSITION")
    status, got = await tutor.patch(f"{base}/{ids['s2']}/grade", {"completion_percentage": 5})
    assert (status, got["errorCode"]) == (422, "INVALID_ENROLLMENT_STATUS")
    status, got = await join(hub, "s2", session["session_code"])
    assert (status, got["errorCode"]) == (403, "ENROLLMENT_EXPELLED")
    status, got = await tutor.patch(f"{base}/nope/status", {"enrollment_status": "ENROLLED"})
    assert (status, got["errorCode"], got["message"]) == (
        404,
        "ENROLLMENT_NOT_FOUND",
        "Session enrollment not found",
    )
    other = await new_course(hub, session_name="Other", publish=True)
    status, got = await tutor.patch(
        f"{TEACHER}/{other['course_session_id']}/enrollments/{ids['s1']}/grade",
        {"completion_percentage": 5},
    )
    assert (status, got["errorCode"]) == (404, "ENROLLMENT_NOT_FOUND")
    status, got = await tutor.get(base, status="EXPELLED")
    assert [e["student_id"] for e in got["data"]] == ["s2"]


async def test_announcements_honour_schedule_and_expiry_for_students(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    session_id = session["course_session_id"]
    await join(hub, "s1", session["session_code"])
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{session_id}/announcements"
    now = datetime.now(UTC)
    bodies = {
        "now": {"title": "Welcome all", "message": "Welcome to the course, everyone!"},
        "later": {
            "title": "Exam soon",
            "message": "The exam is next week, revise chapters 1-4.",
            "is_urgent": True,
            "scheduled_for": (now + timedelta(days=2)).isoformat(),
        },
        "ending": {
            "title": "Short lived",
            "message": "This one expires in a minute or so.",
            "expires_at": (now + timedelta(minutes=1)).isoformat(),
        },
    }
    ids = {}
    for key, body in bodies.items():
        status, got = await tutor.post(base, body)
        assert status == 201, got
        ids[key] = got["data"]["course_session_announcement_id"]
    assert got["data"]["title"] == "Short lived" and got["data"]["is_urgent"] is False
    status, got = await tutor.post(base, bodies["now"])
    assert (status, got["errorCode"]) == (409, "DUPLICATE_ANNOUNCEMENT_TITLE")
    for bad in (
        {"title": "x", "message": "long enough message"},
        {"title": "ok title", "message": "short"},
        {
            "title": "Window",
            "message": "expires before it shows",
            "scheduled_for": (now + timedelta(days=2)).isoformat(),
            "expires_at": (now + timedelta(days=1)).isoformat(),
        },
    ):
        status, got = await tutor.post(base, bad)
        assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), bad
    student = hub.as_("s1", "STUDENT")
    status, got = await student.get(f"{STUDENT}/{session_id}/announcements")
    assert status == 200
    assert {a["course_session_announcement_id"] for a in got["data"]} == {
        ids["now"],
        ids["ending"],
    }
    await set_columns(
        hub,
        CourseSessionAnnouncement,
        ids["ending"],
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    await set_columns(
        hub,
        CourseSessionAnnouncement,
        ids["later"],
        scheduled_for=datetime.now(UTC) - timedelta(seconds=1),
    )
    status, got = await student.get(f"{STUDENT}/{session_id}/announcements")
    assert [a["course_session_announcement_id"] for a in got["data"]] == [ids["later"], ids["now"]]
    status, got = await tutor.get(base)
    assert got["pagination"]["total"] == 3
    assert (await tutor.get(base, activeOnly="true"))[1]["pagination"]["total"] == 2
    status, got = await tutor.get(base, isUrgent="true")
    assert [a["course_session_announcement_id"] for a in got["data"]] == [ids["later"]]
    status, got = await tutor.patch(f"{base}/{ids['now']}", {"title": "Welcome, all"})
    assert status == 200 and got["data"]["title"] == "Welcome, all"
    status, got = await tutor.patch(f"{base}/{ids['now']}", {"title": "Exam soon"})
    assert (status, got["errorCode"]) == (409, "DUPLICATE_ANNOUNCEMENT_TITLE")
    assert (await tutor.delete(f"{base}/{ids['now']}"))[0] == 204
    status, got = await tutor.patch(f"{base}/{ids['now']}", {"title": "Again"})
    assert (status, got["errorCode"]) == (404, "ANNOUNCEMENT_NOT_FOUND")
    assert (await tutor.delete(f"{base}/{ids['now']}"))[0] == 404
    status, got = await student.get(f"{STUDENT}/{session_id}/announcements")
    assert [a["course_session_announcement_id"] for a in got["data"]] == [ids["later"]]
    assert (await tutor.post(base, bodies["now"]))[0] == 201  # its title is free again
    async with hub.db() as db:
        row = await db.get(CourseSessionAnnouncement, ids["now"])
    assert row is not None and row.is_deleted and row.deleted_by == "tutor-1"
    assert (await hub.as_("s2", "STUDENT").get(f"{STUDENT}/{session_id}/announcements"))[0] == 403
    assert (await hub.as_("tutor-2", "TUTOR").get(base))[0] == 403


async def test_settings_validation_and_round_trip(hub: Hub) -> None:
    session = await new_course(hub)
    path = f"{TEACHER}/{session['course_session_id']}/settings"
    tutor = hub.as_("tutor-1", "TUTOR")
    scale = {"A": {"min": 85, "max": 100}, "B": {"min": 75, "max": 84}}
    settings = await configure(
        hub,
        session["course_session_id"],
        reminder_days_before_expiry=5,
        grading_scale=scale,
        attendance_tracking_enabled=True,
    )
    assert settings["grading_scale"] == scale and settings["reminder_days_before_expiry"] == 5
    assert settings["allow_student_discussions"] is True
    status, got = await tutor.get(path)
    assert got["data"] == settings
    for bad in (
        {"reminder_days_before_expiry": 31},
        {"reminder_days_before_expiry": 0},
        {},
        {"reminder_days_before_expiry": 5, "grading_scale": {"A": {"min": 90, "max": 80}}},
        {"reminder_days_before_expiry": 5, "grading_scale": {"A": {"min": 90, "max": 101}}},
        {"reminder_days_before_expiry": 5, "grading_scale": []},
        {"reminder_days_before_expiry": 5, "allow_late_enrollment": None},
    ):
        status, got = await tutor.call("PUT", path, bad)
        assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), bad
    assert (await hub.as_("tutor-2", "TUTOR").get(path))[0] == 403
    assert (await hub.as_("s1", "STUDENT").get(path))[0] == 403
    async with hub.db() as db:
        entries = (
            await db.scalars(
                select(AuditEntry).where(AuditEntry.action == "course_settings.update")
            )
        ).all()
    assert len(entries) == 1 and entries[0].details is not None
    assert entries[0].details["reminder_days_before_expiry"] == 5


async def test_admin_list_and_analytics(hub: Hub) -> None:
    await directory(hub, ("tutor-2", "TUTOR", None, None))
    session = await new_course(hub, publish=True)
    session_id = session["course_session_id"]
    await hub.as_("admin", "CENTER_ADMIN").post(
        TEACHER,
        {
            **{k: v for k, v in session.items() if k in ("start_date", "end_date", "course_id")},
            "session_name": "By tutor 2",
            "teacher_id": "tutor-2",
        },
    )
    admin = hub.as_("admin", "CENTER_ADMIN")
    status, got = await admin.get(ADMIN)
    assert status == 200 and got["pagination"]["total"] == 2 and got["pagination"]["limit"] == 10
    status, got = await admin.get(ADMIN, teacherId="tutor-2")
    assert [s["session_name"] for s in got["data"]] == ["By tutor 2"]
    assert (await hub.as_("admin", "CENTER_ADMIN", "c2").get(ADMIN))[1]["pagination"]["total"] == 0
    assert (await hub.as_("root", "SUPER_ADMIN", "c9").get(ADMIN))[1]["pagination"]["total"] == 2
    assert (await hub.as_("tutor-1", "TUTOR").get(ADMIN))[0] == 403
    ids = {}
    for student in ("s1", "s2", "s3", "s4"):
        ids[student] = (await join(hub, student, session["session_code"]))[1]["data"][
            "course_session_enrollment_id"
        ]
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{session_id}/enrollments"
    await tutor.patch(
        f"{base}/{ids['s1']}/grade", {"completion_percentage": 100, "final_grade": 90}
    )
    await tutor.patch(f"{base}/{ids['s1']}/status", {"enrollment_status": "COMPLETED"})
    await tutor.patch(f"{base}/{ids['s2']}/grade", {"completion_percentage": 40, "final_grade": 70})
    await tutor.patch(f"{base}/{ids['s3']}/grade", {"completion_percentage": 85})
    await hub.as_("s4", "STUDENT").delete(f"{STUDENT}/{session_id}/enrollment")
    await configure(hub, session_id, require_approval_for_enrollment=True)
    await join(hub, "s5", session["session_code"])
    status, got = await admin.get(f"{ADMIN}/{session_id}/analytics")
    assert status == 200, got
    data = got["data"]
    assert data["session_overview"] == {
        "total_enrolled": 4,
        "pending_requests": 1,
        "completion_rate": 25.0,
        "average_grade": 80.0,
        "dropout_rate": 25.0,
        "active_students": 3,
    }
    assert data["performance_metrics"] == {
        "average_completion_percentage": 75.0,
        "students_above_80_percent": 2,
        "students_below_50_percent": 1,
    }
    today = datetime.now(UTC).date().isoformat()
    assert data["enrollment_timeline"] == [{"date": today, "enrollments": 5}]
    assert data["live_attendance"]["live_sessions"] == 0
    assert (await tutor.get(f"{ADMIN}/{session_id}/analytics"))[0] == 200
    assert (await hub.as_("tutor-2", "TUTOR").get(f"{ADMIN}/{session_id}/analytics"))[0] == 403
    status, got = await hub.as_("admin", "CENTER_ADMIN", "c2").get(
        f"{ADMIN}/{session_id}/analytics"
    )
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    async with hub.db() as db:
        rows = (await db.scalars(select(CourseSessionEnrollment))).all()
    assert len(rows) == 5
