"""REST enrollments: add, list, get, update, remove, with capacity, roles and centers."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from persistence.models import AuditEntry
from tests.conftest import Hub, HubFactory
from tests.support import session_body

SESSIONS = "/api/v1/sessions"


async def new_session(hub: Hub, **body: object) -> str:
    status, created = await hub.as_("tutor-1", "TUTOR").post(SESSIONS, session_body(**body))
    assert status == 201, created
    return str(created["data"]["id"])


def enrollments(session_id: str, student_id: str | None = None) -> str:
    path = f"{SESSIONS}/{session_id}/enrollments"
    return f"{path}/{student_id}" if student_id else path


async def test_add_stores_the_students_own_course_lesson_level_and_content(hub: Hub) -> None:
    session_id = await new_session(hub)
    content = {"exercise": {"id": "ex-7", "items": [1, 2, 3]}, "notes": "fractions"}
    status, got = await hub.as_("tutor-1", "TUTOR").post(
        enrollments(session_id),
        {
            "student_id": "s1",
            "student_name": "Ada",
            "course_id": "math",
            "lesson_id": "L4",
            "level": "B1",
            "exercise_content": content,
        },
    )
    assert status == 201
    data = got["data"]
    assert data["id"] and data["session_id"] == session_id and data["center_id"] == "c1"
    assert (data["student_id"], data["course_id"], data["lesson_id"], data["level"]) == (
        "s1",
        "math",
        "L4",
        "B1",
    )
    assert data["exercise_content"] == content
    assert data["completed"] is False and data["notes"] is None
    status, fetched = await hub.as_("tutor-1", "TUTOR").get(enrollments(session_id, "s1"))
    assert status == 200 and fetched["data"] == data


async def test_one_enrollment_per_student_per_session(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    assert (await api.post(enrollments(session_id), {"student_id": "s1"}))[0] == 201
    status, got = await api.post(enrollments(session_id), {"student_id": "s1"})
    assert (status, got["errorCode"]) == (409, "ENROLLMENT_EXISTS")
    status, listed = await api.get(enrollments(session_id))
    assert listed["pagination"]["total"] == 1


async def test_concurrent_adds_neither_duplicate_nor_overfill(hub: Hub) -> None:
    session_id = await new_session(hub, max_students=3)
    api = hub.as_("tutor-1", "TUTOR")
    students = ["s1", "s1", "s2", "s3", "s4", "s5"]
    results = await asyncio.gather(
        *(api.post(enrollments(session_id), {"student_id": s}) for s in students)
    )
    created = [body["data"]["student_id"] for status, body in results if status == 201]
    refused = {body["errorCode"] for status, body in results if status != 201}
    assert len(created) == 3 and len(set(created)) == 3
    assert refused <= {"ENROLLMENT_EXISTS", "SESSION_FULL"}
    assert all(status in (201, 409) for status, _ in results)
    status, listed = await api.get(enrollments(session_id))
    assert sorted(e["student_id"] for e in listed["data"]) == sorted(created)


async def test_a_full_session_refuses_more_students(hub: Hub) -> None:
    session_id = await new_session(hub, max_students=2)
    api = hub.as_("tutor-1", "TUTOR")
    for student in ("s1", "s2"):
        assert (await api.post(enrollments(session_id), {"student_id": student}))[0] == 201
    status, got = await api.post(enrollments(session_id), {"student_id": "s3"})
    assert (status, got["errorCode"]) == (409, "SESSION_FULL")
    status, got = await api.patch(f"{SESSIONS}/{session_id}", {"max_students": 1})
    assert (status, got["errorCode"]) == (409, "SESSION_OVER_CAPACITY")


async def test_list_paginates(hub: Hub) -> None:
    session_id = await new_session(hub, max_students=12)
    api = hub.as_("tutor-1", "TUTOR")
    for n in range(7):
        await api.post(enrollments(session_id), {"student_id": f"s{n}"})
    status, got = await api.get(enrollments(session_id), page=2, limit=5)
    assert status == 200
    assert len(got["data"]) == 2
    assert got["pagination"] == {
        "page": 2,
        "limit": 5,
        "total": 7,
        "totalPages": 2,
        "hasNext": False,
        "hasPrev": True,
    }


async def test_update_records_completion_notes_and_assessment(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    await api.post(enrollments(session_id), {"student_id": "s1"})
    assessment = {"score": 8, "rubric": {"accuracy": "good"}}
    status, got = await api.patch(
        enrollments(session_id, "s1"),
        {"completed": True, "notes": "Worked well", "assessment_data": assessment},
    )
    assert status == 200
    assert (got["data"]["completed"], got["data"]["notes"]) == (True, "Worked well")
    assert got["data"]["assessment_data"] == assessment
    # Assessment after the session has ended is still allowed.
    await api.post(f"{SESSIONS}/{session_id}/end")
    status, got = await api.patch(enrollments(session_id, "s1"), {"notes": "Reviewed"})
    assert status == 200 and got["data"]["notes"] == "Reviewed"
    async with hub.db() as db:
        actions = (
            await db.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target_type == "enrollment")
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions == ["enrollment.add", "enrollment.update", "enrollment.update"]


async def test_update_validation_changes_nothing(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    _, added = await api.post(enrollments(session_id), {"student_id": "s1"})
    for body in (
        {},
        {"completed": None},
        {"completed": "maybe"},
        {"student_id": "s2"},
        {"assessment_data": [1, 2]},
        {"notes": "x" * 20_001},
    ):
        status, got = await api.patch(enrollments(session_id, "s1"), body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), body
    status, got = await api.get(enrollments(session_id, "s1"))
    assert got["data"] == added["data"]
    status, got = await api.patch(enrollments(session_id, "nobody"), {"notes": "x"})
    assert (status, got["errorCode"]) == (404, "ENROLLMENT_NOT_FOUND")


async def test_remove(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    await api.post(enrollments(session_id), {"student_id": "s1"})
    status, got = await api.delete(enrollments(session_id, "s1"))
    assert status == 200 and got["data"]["student_id"] == "s1"
    status, got = await api.delete(enrollments(session_id, "s1"))
    assert (status, got["errorCode"]) == (404, "ENROLLMENT_NOT_FOUND")
    status, got = await api.get(enrollments(session_id))
    assert got["data"] == []


async def test_ended_sessions_take_no_new_students(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    await api.post(enrollments(session_id), {"student_id": "s1"})
    await api.post(f"{SESSIONS}/{session_id}/end")
    status, got = await api.post(enrollments(session_id), {"student_id": "s2"})
    assert (status, got["errorCode"]) == (409, "SESSION_ENDED")
    status, got = await api.delete(enrollments(session_id, "s1"))
    assert (status, got["errorCode"]) == (409, "SESSION_ENDED")


async def test_roles_and_centers(hub: Hub) -> None:
    session_id = await new_session(hub)
    await hub.as_("tutor-1", "TUTOR").post(enrollments(session_id), {"student_id": "s1"})
    add = {"student_id": "s9"}
    # Managers of the session may add; others may not.
    assert (await hub.as_("adm", "CENTER_ADMIN").post(enrollments(session_id), add))[0] == 201
    for sub, role in (("tutor-2", "TUTOR"), ("sup", "SUPERVISOR"), ("s1", "STUDENT")):
        status, got = await hub.as_(sub, role).post(enrollments(session_id), {"student_id": "x"})
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
    # Supervisors read the roster; a student reads only their own enrollment.
    assert (await hub.as_("sup", "SUPERVISOR").get(enrollments(session_id)))[0] == 200
    status, got = await hub.as_("s1", "STUDENT").get(enrollments(session_id))
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    assert (await hub.as_("s1", "STUDENT").get(enrollments(session_id, "s1")))[0] == 200
    status, got = await hub.as_("s1", "STUDENT").get(enrollments(session_id, "s9"))
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("s1", "STUDENT").patch(
        enrollments(session_id, "s1"), {"completed": True}
    )
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    # Another center sees nothing at all.
    for method, path, body in (
        ("GET", enrollments(session_id), None),
        ("POST", enrollments(session_id), {"student_id": "z"}),
        ("GET", enrollments(session_id, "s1"), None),
        ("PATCH", enrollments(session_id, "s1"), {"notes": "x"}),
        ("DELETE", enrollments(session_id, "s1"), None),
    ):
        status, got = await hub.as_("adm", "CENTER_ADMIN", "c2").call(method, path, body)
        assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND"), (method, path)
    status, got = await hub.as_("tutor-1", "TUTOR").get(enrollments(session_id))
    assert sorted(e["student_id"] for e in got["data"]) == ["s1", "s9"]


async def test_bad_enrollment_bodies(hub: Hub) -> None:
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    for body in (
        {},
        {"student_id": ""},
        {"student_id": "s" * 129},
        {"student_id": "s1", "exercise_content": "text"},
        {"student_id": "s1", "level": ""},
        {"student_id": "s1", "grade": 3},
    ):
        status, got = await api.post(enrollments(session_id), body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), body
    status, got = await api.get(enrollments(session_id))
    assert got["data"] == []


async def test_oversized_body_is_refused(make_hub: HubFactory) -> None:
    hub = await make_hub(max_request_bytes=64 * 1024)
    session_id = await new_session(hub)
    api = hub.as_("tutor-1", "TUTOR")
    huge = {"student_id": "s1", "exercise_content": {"blob": "x" * (100 * 1024)}}
    status, got = await api.post(enrollments(session_id), huge)
    assert (status, got["errorCode"]) == (413, "PAYLOAD_TOO_LARGE")
    status, got = await api.get(enrollments(session_id))
    assert got["data"] == []
