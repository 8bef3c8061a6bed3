"""Assessors, parents and supervisors do their jobs over REST, and nothing more.

ASSESSOR reads the enrollments and canvases of their center's sessions and writes
assessments (clearing the tutor's "assessments waiting"); PARENT reads their linked
children's sessions, attendance and the notes written for parents; SUPERVISOR
reads across the center and writes nothing. A real hub, both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Hub
from tests.support import session_body

SESSIONS = "/api/v1/sessions"


async def live_session_with(hub: Hub, *students: str, center: str = "c1") -> str:
    tutor = hub.as_("tutor-1", "TUTOR", center=center)
    now = datetime.now(UTC).replace(microsecond=0)
    status, created = await tutor.post(
        SESSIONS,
        session_body(starts_at=now.isoformat(), ends_at=(now + timedelta(hours=1)).isoformat()),
    )
    assert status == 201, created
    session_id = str(created["data"]["id"])
    for student in students:
        status, got = await tutor.post(
            f"{SESSIONS}/{session_id}/enrollments", {"student_id": student}
        )
        assert status == 201, got
    return session_id


async def link(hub: Hub, parent: str, *children: str) -> None:
    admin = hub.as_("admin", "CENTER_ADMIN")
    await hub.as_(parent, "PARENT").get(f"/api/v1/people/{parent}")
    for child in children:
        await hub.as_(child, "STUDENT").get(f"/api/v1/people/{child}")
        status, got = await admin.post(f"/api/v1/people/{parent}/children", {"student_id": child})
        assert status == 201, got


async def test_an_assessor_reads_the_work_and_assesses_it(hub: Hub) -> None:
    session_id = await live_session_with(hub, "s1", "s2")
    tutor = await hub.connect("tutor-1", "TUTOR")
    assert (await tutor.join(session_id))["ok"]
    student = await hub.connect("s1", "STUDENT")
    assert (await student.join(session_id))["ok"]
    assert (await tutor.call("session:end", {"session_id": session_id}))["ok"]
    day = hub.as_("tutor-1", "TUTOR")
    status, got = await day.get("/api/v1/tutors/me/day")
    assert [a["student_id"] for a in got["data"]["assessments_waiting"]] == ["s1"]

    assessor = hub.as_("as-1", "ASSESSOR")
    status, got = await assessor.get(SESSIONS)
    assert status == 200 and [s["id"] for s in got["data"]] == [session_id]
    assert (await assessor.get(f"{SESSIONS}/{session_id}"))[0] == 200
    status, got = await assessor.get(f"{SESSIONS}/{session_id}/enrollments")
    assert status == 200 and [e["student_id"] for e in got["data"]] == ["s1", "s2"]
    assert (await assessor.get(f"{SESSIONS}/{session_id}/enrollments/s1"))[0] == 200
    assert (await assessor.get(f"{SESSIONS}/{session_id}/canvases/s1"))[0] == 200

    assessment = {"assessment_data": {"grade": 86, "comment": "fractions solid"}}
    path = f"{SESSIONS}/{session_id}/enrollments/s1/assessment"
    status, got = await assessor.put(path, assessment)
    assert status == 200, got
    assert got["data"]["assessment_data"] == assessment["assessment_data"]
    status, got = await day.get("/api/v1/tutors/me/day")
    assert got["data"]["assessments_waiting"] == []

    # Assessing is all an assessor writes.
    status, _ = await assessor.patch(f"{SESSIONS}/{session_id}/enrollments/s1", {"notes": "x"})
    assert status == 403
    assert (await assessor.post(SESSIONS, session_body()))[0] == 403
    # Another center's assessor finds nothing.
    other = hub.as_("as-9", "ASSESSOR", center="c2")
    status, got = await other.put(path, assessment)
    assert status == 404 and got["errorCode"] == "SESSION_NOT_FOUND"


async def test_assessments_are_for_managers_and_assessors_only(hub: Hub) -> None:
    session_id = await live_session_with(hub, "s1")
    path = f"{SESSIONS}/{session_id}/enrollments/s1/assessment"
    body = {"assessment_data": {"grade": 70}}
    for who, role in [("sup", "SUPERVISOR"), ("s1", "STUDENT"), ("p1", "PARENT")]:
        status, got = await hub.as_(who, role).put(path, body)
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
    assert (await hub.as_("tutor-1", "TUTOR").put(path, body))[0] == 200
    status, got = await hub.as_("as-1", "ASSESSOR").put(
        f"{SESSIONS}/{session_id}/enrollments/nobody/assessment", body
    )
    assert status == 404 and got["errorCode"] == "ENROLLMENT_NOT_FOUND"
    status, got = await hub.as_("as-1", "ASSESSOR").put(path, {"assessment_data": [1]})
    assert status == 422


async def test_a_parent_reads_their_childrens_sessions_attendance_and_parent_notes(
    hub: Hub,
) -> None:
    ours = await live_session_with(hub, "s1", "s2")
    other = await live_session_with(hub, "s2")
    await link(hub, "p1", "s1")
    tutor = await hub.connect("tutor-1", "TUTOR")
    assert (await tutor.join(ours))["ok"]
    for student, visibility in [("s1", "PARENT"), ("s1", "STUDENT"), ("s2", "PARENT")]:
        note = {"session_id": ours, "student_id": student, "text": f"{student} {visibility}"}
        assert (await tutor.call("note:add", {**note, "visibility": visibility}))["ok"]
    marks = {
        "session_id": ours,
        "records": [
            {"student_id": "s1", "status": "PRESENT"},
            {"student_id": "s2", "status": "ABSENT"},
        ],
    }
    assert (await hub.as_("tutor-1", "TUTOR").post("/api/v1/attendance/bulk", marks))[0] == 200

    parent = hub.as_("p1", "PARENT")
    status, got = await parent.get(SESSIONS)
    assert status == 200 and [s["id"] for s in got["data"]] == [ours]
    assert (await parent.get(f"{SESSIONS}/{ours}"))[0] == 200
    status, got = await parent.get(f"{SESSIONS}/{other}")
    assert status == 403
    status, got = await parent.get(f"{SESSIONS}/{ours}/attendance")
    assert status == 200 and [(r["student_id"], r["status"]) for r in got["data"]] == [
        ("s1", "PRESENT")
    ]
    status, got = await parent.get(f"{SESSIONS}/{ours}/notes")
    assert status == 200 and [n["text"] for n in got["data"]] == ["s1 PARENT"]
    # Nothing else of the session: not the roster, not the work, not help.
    for path in ("enrollments", "enrollments/s1", "canvases/s1", "help"):
        assert (await parent.get(f"{SESSIONS}/{ours}/{path}"))[0] == 403, path
    # A parent with no child in the session reads nothing of it.
    await link(hub, "p2", "s9")
    for path in ("", "/attendance", "/notes"):
        assert (await hub.as_("p2", "PARENT").get(f"{SESSIONS}/{ours}{path}"))[0] == 403, path


async def test_a_supervisor_reads_across_the_center_and_writes_nothing(hub: Hub) -> None:
    session_id = await live_session_with(hub, "s1")
    supervisor = hub.as_("sup", "SUPERVISOR")
    for path in ("", "/enrollments", "/enrollments/s1", "/attendance", "/notes", "/help"):
        assert (await supervisor.get(f"{SESSIONS}/{session_id}{path}"))[0] == 200, path
    assert (await supervisor.get("/api/v1/people"))[0] == 200
    writes = [
        supervisor.patch(f"{SESSIONS}/{session_id}", {"title": "Mine now"}),
        supervisor.post(f"{SESSIONS}/{session_id}/enrollments", {"student_id": "s2"}),
        supervisor.post(f"{SESSIONS}/{session_id}/end"),
        supervisor.post("/api/v1/people/import", {"people": [{"user_id": "x", "role": "STUDENT"}]}),
    ]
    for write in writes:
        status, got = await write
        assert status == 403, got


async def test_a_student_not_enrolled_reads_nothing_of_the_session(hub: Hub) -> None:
    """Not even an empty list: the session is not theirs (issue 19, finding 5)."""
    session_id = await live_session_with(hub, "s1")
    outsider = hub.as_("s2", "STUDENT")
    for path in ("", "/notes", "/help", "/attendance", "/enrollments/s1", "/canvases/s1"):
        status, got = await outsider.get(f"{SESSIONS}/{session_id}{path}")
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), path
    enrolled = hub.as_("s1", "STUDENT")
    for path in ("/notes", "/help"):
        status, got = await enrolled.get(f"{SESSIONS}/{session_id}{path}")
        assert (status, got["data"]) == (200, []), path
