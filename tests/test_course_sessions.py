"""Course sessions over REST (/api/v1/teacher|student|admin/sessions), on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from persistence.models import (
    AuditEntry,
    CourseSession,
    CourseSessionSettings,
)
from persistence.repositories import PeopleRepository, Seen
from tests.conftest import Hub

TEACHER = "/api/v1/teacher/sessions"
STUDENT = "/api/v1/student/sessions"
ADMIN = "/api/v1/admin/sessions"


def course_body(teacher_id: str = "tutor-1", **overrides: Any) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    body: dict[str, Any] = {
        "session_name": "Spring - Advanced Mathematics",
        "session_description": "Calculus and linear algebra",
        "teacher_id": teacher_id,
        "course_id": "math-101",
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=90)).isoformat(),
        "max_students": 30,
        "session_timezone": "America/New_York",
    }
    body.update(overrides)
    return body


async def directory(hub: Hub, *people: tuple[str, str, str | None, str | None]) -> None:
    """Record people (user_id, role, name, email) of center c1 as their tokens would."""
    async with hub.db.begin() as db:
        await PeopleRepository(db).seen(
            [Seen("c1", user, role, name, email) for user, role, name, email in people],
            datetime.now(UTC),
        )


async def new_course(hub: Hub, *, publish: bool = False, **body: Any) -> dict[str, Any]:
    tutor = hub.as_(body.get("teacher_id", "tutor-1"), "TUTOR")
    status, got = await tutor.post(TEACHER, course_body(**body))
    assert status == 201, got
    if publish:
        status, got = await tutor.patch(f"{TEACHER}/{got['data']['course_session_id']}/publish")
        assert status == 200, got
    return dict(got["data"])


async def set_columns(hub: Hub, model: Any, row_id: str, **values: Any) -> None:
    async with hub.db.begin() as db:
        await db.execute(update(model).where(model.id == row_id).values(**values))


# --- Teacher routes ----------------------------------------------------------------------


async def test_create_answers_the_design_fields_with_a_code_and_default_settings(hub: Hub) -> None:
    body = course_body()
    status, got = await hub.as_("tutor-1", "TUTOR").post(TEACHER, body)
    assert status == 201, got
    assert got["message"] == "Course session created successfully"
    data = got["data"]
    assert data["course_session_id"] and isinstance(data["course_session_id"], str)
    for name in ("session_name", "session_description", "teacher_id", "course_id", "max_students"):
        assert data[name] == body[name]
    assert data["course_session_status"] == "DRAFT"
    assert data["tenant_id"] == "c1" and data["session_timezone"] == "America/New_York"
    assert data["auto_expire_enabled"] is True and data["is_active"] is True
    assert data["is_deleted"] is False and data["enrolled_count"] == 0
    assert len(data["session_code"]) == 10 and data["session_code"].isalnum()
    assert data["start_date"] == body["start_date"].replace("+00:00", "Z")
    status, settings = await hub.as_("tutor-1", "TUTOR").get(
        f"{TEACHER}/{data['course_session_id']}/settings"
    )
    assert status == 200
    assert settings["data"]["course_session_id"] == data["course_session_id"]
    assert settings["data"]["allow_late_enrollment"] is False
    assert settings["data"]["require_approval_for_enrollment"] is False
    assert settings["data"]["reminder_days_before_expiry"] == 7
    async with hub.db() as db:
        entry = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "course_session.create"))
        ).one()
    assert (entry.center_id, entry.actor_id, entry.target_id) == (
        "c1",
        "tutor-1",
        data["course_session_id"],
    )
    assert entry.ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"session_name": "x"}, "session_name"),
        ({"end_date": "2020-01-01T00:00:00Z"}, "end_date"),
        ({"start_date": "2020-01-01T00:00:00Z"}, "start_date"),
        ({"max_students": 0}, "max_students"),
        ({"course_session_status": "EXPIRED"}, None),
        ({"session_timezone": "Mars/Base"}, "session_timezone"),
        ({"start_date": "2030-01-01T00:00:00"}, "start_date"),
        ({"enrollment_deadline": "2099-01-01T00:00:00Z"}, "enrollment_deadline"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_create_validation_is_400(
    hub: Hub, overrides: dict[str, Any], field: str | None
) -> None:
    status, got = await hub.as_("tutor-1", "TUTOR").post(TEACHER, course_body(**overrides))
    assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), got
    assert got["statusCode"] == 400
    if field is not None:
        assert field in str(got.get("details")), got
    async with hub.db() as db:
        assert await db.scalar(select(func.count()).select_from(CourseSession)) == 0


async def test_teacher_id_must_be_a_tutor_of_the_center(hub: Hub) -> None:
    await directory(hub, ("tutor-2", "TUTOR", "Grace", None), ("s9", "STUDENT", "Sam", None))
    admin = hub.as_("admin-1", "CENTER_ADMIN")
    for teacher in ("nobody", "s9"):
        status, got = await admin.post(TEACHER, course_body(teacher_id=teacher))
        assert (status, got["errorCode"], got["details"]["field"]) == (
            400,
            "VALIDATION_ERROR",
            "teacher_id",
        )
    status, got = await admin.post(TEACHER, course_body(teacher_id="tutor-2"))
    assert status == 201 and got["data"]["teacher_id"] == "tutor-2"
    # A tutor creates only sessions they teach.
    status, got = await hub.as_("tutor-1", "TUTOR").post(TEACHER, course_body(teacher_id="tutor-2"))
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("s9", "STUDENT").post(TEACHER, course_body(teacher_id="tutor-2"))
    assert status == 403


async def test_session_names_are_unique_per_teacher_and_course_until_deleted(hub: Hub) -> None:
    first = await new_course(hub)
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.post(TEACHER, course_body())
    assert (status, got["errorCode"], got["details"]["field"]) == (
        409,
        "DUPLICATE_SESSION_NAME",
        "session_name",
    )
    assert (await tutor.post(TEACHER, course_body(course_id="physics")))[0] == 201
    other = await new_course(hub, session_name="Another name")
    status, got = await tutor.patch(
        f"{TEACHER}/{other['course_session_id']}", {"session_name": first["session_name"]}
    )
    assert (status, got["errorCode"]) == (409, "DUPLICATE_SESSION_NAME")
    assert (await tutor.delete(f"{TEACHER}/{first['course_session_id']}"))[0] == 204
    assert (await tutor.post(TEACHER, course_body()))[0] == 201


async def test_concurrent_creates_of_one_name_make_one_session(hub: Hub) -> None:
    tutor = hub.as_("tutor-1", "TUTOR")
    results = await asyncio.gather(*(tutor.post(TEACHER, course_body()) for _ in range(4)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409], results
    assert {got["errorCode"] for status, got in results if status == 409} == {
        "DUPLICATE_SESSION_NAME"
    }


async def test_a_failure_after_the_first_write_leaves_nothing(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rest.courses.teacher

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected after the session and settings rows were written")

    monkeypatch.setattr(rest.courses.teacher, "audit", broken)
    status, got = await hub.as_("tutor-1", "TUTOR").post(TEACHER, course_body())
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    async with hub.db() as db:
        for model in (CourseSession, CourseSessionSettings, AuditEntry):
            assert await db.scalar(select(func.count()).select_from(model)) == 0, model
    monkeypatch.undo()
    assert (await hub.as_("tutor-1", "TUTOR").post(TEACHER, course_body()))[0] == 201


async def test_who_may_read_a_course_session(hub: Hub) -> None:
    session = await new_course(hub)
    path = f"{TEACHER}/{session['course_session_id']}"
    status, got = await hub.as_("tutor-1", "TUTOR").get(path)
    assert status == 200 and got["data"]["session_code"] == session["session_code"]
    assert (await hub.as_("admin", "CENTER_ADMIN").get(path))[0] == 200
    assert (await hub.as_("root", "SUPER_ADMIN", center="elsewhere").get(path))[0] == 200
    status, got = await hub.as_("tutor-2", "TUTOR").get(path)
    assert (status, got["message"]) == (403, "You can only manage your own course sessions")
    assert (await hub.as_("s1", "STUDENT").get(path))[0] == 403
    for api in (hub.as_("tutor-1", "TUTOR", center="c2"), hub.as_("a", "CENTER_ADMIN", "c2")):
        status, got = await api.get(path)
        assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{TEACHER}/nope")
    assert (status, got["errorCode"], got["message"]) == (
        404,
        "SESSION_NOT_FOUND",
        "Course session with ID nope not found",
    )


async def test_teacher_list_is_scoped_filtered_sorted_and_paged(hub: Hub) -> None:
    await directory(hub, ("tutor-2", "TUTOR", None, None))
    names = ["Bravo", "Alpha", "Charlie"]
    for name in names:
        await new_course(hub, session_name=name)
    await new_course(hub, session_name="Delta", course_id="physics", publish=True)
    await hub.as_("admin", "CENTER_ADMIN").post(
        TEACHER, course_body(teacher_id="tutor-2", session_name="Other")
    )
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.get(TEACHER, sortBy="session_name", sortOrder="asc", limit=2)
    assert status == 200
    assert [s["session_name"] for s in got["data"]] == ["Alpha", "Bravo"]
    assert got["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 4,
        "totalPages": 2,
        "hasNext": True,
        "hasPrev": False,
    }
    assert got["data"][0]["enrolled_count"] == 0
    status, got = await tutor.get(TEACHER, status="PUBLISHED")
    assert [s["session_name"] for s in got["data"]] == ["Delta"]
    status, got = await tutor.get(TEACHER, courseId="physics")
    assert [s["session_name"] for s in got["data"]] == ["Delta"]
    status, got = await tutor.get(TEACHER)
    assert got["pagination"]["limit"] == 10 and got["pagination"]["total"] == 4
    status, got = await hub.as_("admin", "CENTER_ADMIN").get(TEACHER)
    assert got["pagination"]["total"] == 5
    status, got = await hub.as_("admin", "CENTER_ADMIN", center="c2").get(TEACHER)
    assert got["pagination"]["total"] == 0
    for bad in ({"sortBy": "teacher_id"}, {"limit": 101}, {"status": "OPEN"}, {"course_id": "x"}):
        status, got = await tutor.get(TEACHER, **bad)
        assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), bad


async def test_publish_and_what_may_change_after(hub: Hub) -> None:
    session = await new_course(hub)
    path = f"{TEACHER}/{session['course_session_id']}"
    tutor = hub.as_("tutor-1", "TUTOR")
    status, got = await tutor.patch(path, {"session_name": "Renamed", "course_id": "math-102"})
    assert status == 200 and got["data"]["course_id"] == "math-102"
    status, got = await tutor.patch(path + "/publish")
    assert status == 200 and got["message"] == "Course session published successfully"
    assert got["data"]["course_session_status"] == "PUBLISHED"
    assert got["data"]["session_code"] == session["session_code"]
    status, got = await tutor.patch(path + "/publish")
    assert (status, got["errorCode"]) == (422, "INVALID_STATUS_TRANSITION")
    status, got = await tutor.patch(path, {"course_id": "math-103"})
    assert (status, got["errorCode"]) == (422, "SESSION_PUBLISHED")
    status, got = await tutor.patch(path, {"max_students": 35, "session_description": None})
    assert status == 200 and got["data"]["max_students"] == 35
    assert got["data"]["session_description"] is None
    status, got = await tutor.patch(path, {"end_date": session["start_date"]})
    assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR")
    status, got = await tutor.patch(path, {"teacher_id": "tutor-2"})
    assert status == 403
    status, got = await tutor.patch(path, {})
    assert status == 400
    async with hub.db() as db:
        actions = (
            await db.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target_id == session["course_session_id"])
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions == [
        "course_session.create",
        "course_session.update",
        "course_session.publish",
        "course_session.update",
    ]


async def test_delete_is_soft_and_hides_the_session_everywhere(hub: Hub) -> None:
    session = await new_course(hub)
    session_id = session["course_session_id"]
    tutor = hub.as_("tutor-1", "TUTOR")
    assert (await hub.as_("tutor-2", "TUTOR").delete(f"{TEACHER}/{session_id}"))[0] == 403
    status, got = await tutor.delete(f"{TEACHER}/{session_id}")
    assert (status, got) == (204, None)
    assert (await tutor.get(f"{TEACHER}/{session_id}"))[1]["errorCode"] == "SESSION_NOT_FOUND"
    assert (await tutor.delete(f"{TEACHER}/{session_id}"))[0] == 404
    assert (await tutor.get(TEACHER))[1]["pagination"]["total"] == 0
    assert (await hub.as_("admin", "CENTER_ADMIN").get(ADMIN))[1]["pagination"]["total"] == 0
    async with hub.db() as db:
        row = await db.get(CourseSession, session_id)
    assert row is not None and row.is_deleted and not row.is_active
    assert row.deleted_by == "tutor-1" and row.deleted_at is not None
    status, got = await hub.as_("s1", "STUDENT").post(
        f"{STUDENT}/join", {"session_code": session["session_code"]}
    )
    assert (status, got["errorCode"]) == (409, "INVALID_SESSION_CODE")


async def test_a_session_with_enrollments_is_not_deleted(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    await hub.as_("s1", "STUDENT").post(
        f"{STUDENT}/join", {"session_code": session["session_code"]}
    )
    status, got = await hub.as_("tutor-1", "TUTOR").delete(
        f"{TEACHER}/{session['course_session_id']}"
    )
    assert (status, got["errorCode"]) == (422, "SESSION_HAS_ENROLLMENTS")


async def test_past_its_end_date_a_session_reads_expired_everywhere_at_once(hub: Hub) -> None:
    session = await new_course(hub, publish=True)
    session_id, code = session["course_session_id"], session["session_code"]
    keep = await new_course(hub, publish=True, session_name="No auto expiry")
    student = hub.as_("s1", "STUDENT")
    assert (await student.post(f"{STUDENT}/join", {"session_code": code}))[0] == 201
    past = datetime.now(UTC) - timedelta(days=1)
    await set_columns(hub, CourseSession, session_id, end_date=past, start_date=past - timedelta(1))
    await set_columns(
        hub, CourseSession, keep["course_session_id"], end_date=past, auto_expire_enabled=False
    )
    tutor = hub.as_("tutor-1", "TUTOR")
    assert (await tutor.get(f"{TEACHER}/{session_id}"))[1]["data"][
        "course_session_status"
    ] == "EXPIRED"
    status, got = await tutor.get(TEACHER, status="EXPIRED")
    assert [s["course_session_id"] for s in got["data"]] == [session_id]
    status, got = await tutor.get(TEACHER, status="PUBLISHED")
    assert [s["course_session_id"] for s in got["data"]] == [keep["course_session_id"]]
    status, got = await hub.as_("admin", "CENTER_ADMIN").get(ADMIN, status="EXPIRED")
    assert [s["course_session_id"] for s in got["data"]] == [session_id]
    status, got = await student.get(STUDENT)
    assert got["data"][0]["course_session_status"] == "EXPIRED"
    assert (await student.get(STUDENT, activeOnly="true"))[1]["pagination"]["total"] == 0
    assert (await student.get(f"{STUDENT}/{session_id}"))[1]["data"][
        "course_session_status"
    ] == "EXPIRED"
    status, got = await hub.as_("s2", "STUDENT").post(f"{STUDENT}/join", {"session_code": code})
    assert (status, got["errorCode"], got["message"].startswith("Session has expired")) == (
        422,
        "SESSION_EXPIRED",
        True,
    )
    status, got = await student.delete(f"{STUDENT}/{session_id}/enrollment")
    assert (status, got["errorCode"]) == (422, "SESSION_EXPIRED")
    status, got = await tutor.patch(f"{TEACHER}/{session_id}", {"session_name": "Later"})
    assert (status, got["errorCode"]) == (422, "SESSION_EXPIRED")
    # Without auto-expiry it stays published.
    status, got = await hub.as_("s2", "STUDENT").post(
        f"{STUDENT}/join", {"session_code": keep["session_code"]}
    )
    assert status == 201


async def test_only_admins_hand_a_session_to_another_tutor_of_the_center(hub: Hub) -> None:
    await directory(hub, ("tutor-2", "TUTOR", None, None), ("p1", "PARENT", None, None))
    session = await new_course(hub, publish=True)
    path = f"{TEACHER}/{session['course_session_id']}"
    admin = hub.as_("admin", "CENTER_ADMIN")
    for teacher in ("p1", "nobody"):
        status, got = await admin.patch(path, {"teacher_id": teacher})
        assert (status, got["details"]["field"]) == (400, "teacher_id"), teacher
    status, got = await admin.patch(path, {"teacher_id": "tutor-2"})
    assert status == 200 and got["data"]["teacher_id"] == "tutor-2"
    assert (await hub.as_("tutor-1", "TUTOR").get(path))[0] == 403
    assert (await hub.as_("tutor-2", "TUTOR").get(path))[0] == 200
    # tutor-1 is in the directory: their token recorded them.
    status, got = await hub.as_("root", "SUPER_ADMIN", "hq").patch(path, {"teacher_id": "tutor-1"})
    assert status == 200 and got["data"]["tenant_id"] == "c1"
