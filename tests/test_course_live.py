"""Live sessions that meet for a course session: the link, enrolling the course's
students in one call, live attendance in the course's analytics, and announcements
pushed live (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from persistence.models import AuditEntry, CourseSessionAnnouncement, Enrollment
from rest.keys import COURSE_ANNOUNCEMENTS
from tests.conftest import Hub, HubFactory
from tests.support import eventually, session_body
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
    import rest.courses.live

    course = await course_with_students(hub, "s1", "s2", "s3")
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=course["course_session_id"])
    )
    live = got["data"]["id"]
    real = rest.courses.live.audit
    calls: list[str] = []

    def audit_then_fail(*args: Any, **kwargs: Any) -> None:
        calls.append(args[3])
        if len(calls) == 2:
            raise RuntimeError("injected after the first enrollment was written")
        real(*args, **kwargs)

    monkeypatch.setattr(rest.courses.live, "audit", audit_then_fail)
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


async def live_for_course(hub: Hub, course: dict[str, Any], *extra_students: str) -> str:
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(
        SESSIONS, session_body(course_session_id=course["course_session_id"])
    )
    live = str(got["data"]["id"])
    assert (await tutor.post(f"{SESSIONS}/{live}/enrollments/from-course"))[0] == 201
    for student in extra_students:
        assert (await tutor.post(f"{SESSIONS}/{live}/enrollments", {"student_id": student}))[
            0
        ] == 201
    return live


def announcements_of(client: Any) -> list[dict[str, Any]]:
    return [e for e in client.events("announcement") if "course_session_announcement_id" in e]


async def test_a_visible_announcement_is_pushed_to_the_courses_connected_students(
    hub: Hub,
) -> None:
    course = await course_with_students(hub, "s1")
    live = await live_for_course(hub, course, "guest")
    s1 = await hub.connect("s1", "STUDENT")
    guest = await hub.connect("guest", "STUDENT")
    for client in (s1, guest):
        assert (await client.join(live))["ok"] is True
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{course['course_session_id']}/announcements"
    status, got = await tutor.post(
        base, {"title": "Room change", "message": "We meet in room 12 from today on."}
    )
    assert status == 201
    announcement_id = got["data"]["course_session_announcement_id"]
    await eventually(lambda: announcements_of(s1), what="the pushed announcement")
    (event,) = announcements_of(s1)
    assert event["session_id"] == live and event["text"] == "We meet in room 12 from today on."
    assert event["title"] == "Room change" and event["from"] == "tutor-1"
    assert event["course_session_announcement_id"] == announcement_id
    assert event["course_session_id"] == course["course_session_id"]
    # Not a student of the course: nothing; and one scheduled for later is not pushed yet.
    status, got = await tutor.post(
        base,
        {
            "title": "Later",
            "message": "Only tomorrow, please wait for it.",
            "scheduled_for": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
    )
    assert status == 201
    await asyncio.sleep(0.3)
    assert announcements_of(guest) == [] and len(announcements_of(s1)) == 1


async def test_a_scheduled_announcement_is_pushed_once_when_it_becomes_visible(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(presence_sweep_s=0.05)
    course = await course_with_students(hub, "s1")
    live = await live_for_course(hub, course)
    s1 = await hub.connect("s1", "STUDENT")
    assert (await s1.join(live))["ok"] is True
    status, got = await hub.as_("tutor-1", "TUTOR").post(
        f"{TEACHER}/{course['course_session_id']}/announcements",
        {
            "title": "Scheduled",
            "message": "This shows up at its scheduled time.",
            "scheduled_for": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
    )
    announcement_id = got["data"]["course_session_announcement_id"]
    await asyncio.sleep(0.3)
    assert announcements_of(s1) == []
    async with hub.db.begin() as db:
        await db.execute(
            update(CourseSessionAnnouncement)
            .where(CourseSessionAnnouncement.id == announcement_id)
            .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1))
        )
    await eventually(lambda: announcements_of(s1), what="the scheduled announcement")
    await asyncio.sleep(0.3)  # several more sweeps
    assert [e["course_session_announcement_id"] for e in announcements_of(s1)] == [announcement_id]
    async with hub.db() as db:
        row = await db.get(CourseSessionAnnouncement, announcement_id)
    assert row is not None and row.pushed_at is not None


async def test_a_student_who_joins_later_gets_the_active_announcements(hub: Hub) -> None:
    course = await course_with_students(hub, "s1", "s2")
    live = await live_for_course(hub, course, "guest")
    tutor = hub.as_("tutor-1", "TUTOR")
    base = f"{TEACHER}/{course['course_session_id']}/announcements"
    ids = {}
    for title in ("First one", "Second one", "Deleted one", "Expired one"):
        status, got = await tutor.post(base, {"title": title, "message": f"{title}, in full."})
        ids[title] = got["data"]["course_session_announcement_id"]
    await tutor.post(
        base,
        {
            "title": "Future one",
            "message": "Not visible until next week.",
            "scheduled_for": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
    )
    assert (await tutor.delete(f"{base}/{ids['Deleted one']}"))[0] == 204
    async with hub.db.begin() as db:
        await db.execute(
            update(CourseSessionAnnouncement)
            .where(CourseSessionAnnouncement.id == ids["Expired one"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    # s2 dropped out of the course: no replay.
    roster = {
        e["student_id"]: e
        for e in (await tutor.get(f"{TEACHER}/{course['course_session_id']}/enrollments"))[1][
            "data"
        ]
    }
    await tutor.patch(
        f"{TEACHER}/{course['course_session_id']}/enrollments/"
        f"{roster['s2']['course_session_enrollment_id']}/status",
        {"enrollment_status": "DROPPED"},
    )
    clients = {}
    for student in ("s1", "s2", "guest"):
        clients[student] = await hub.connect(student, "STUDENT")
        assert (await clients[student].join(live))["ok"] is True
    await eventually(lambda: len(announcements_of(clients["s1"])) == 2, what="the replay")
    assert [e["title"] for e in announcements_of(clients["s1"])] == ["First one", "Second one"]
    await asyncio.sleep(0.2)
    assert announcements_of(clients["s2"]) == [] and announcements_of(clients["guest"]) == []


async def test_concurrent_pushes_send_an_announcement_once(make_hub: HubFactory) -> None:
    hub = await make_hub(presence_sweep_s=60)
    course = await course_with_students(hub, "s1")
    live = await live_for_course(hub, course)
    s1 = await hub.connect("s1", "STUDENT")
    assert (await s1.join(live))["ok"] is True
    status, got = await hub.as_("tutor-1", "TUTOR").post(
        f"{TEACHER}/{course['course_session_id']}/announcements",
        {
            "title": "Scheduled",
            "message": "This shows up at its scheduled time.",
            "scheduled_for": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
    )
    async with hub.db.begin() as db:
        await db.execute(
            update(CourseSessionAnnouncement).values(
                scheduled_for=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
    assert hub.app is not None
    pusher = hub.app[COURSE_ANNOUNCEMENTS]
    assert sum(await asyncio.gather(*(pusher.push_due() for _ in range(4)))) == 1
    await eventually(lambda: announcements_of(s1), what="the announcement")
    await asyncio.sleep(0.2)
    assert len(announcements_of(s1)) == 1
