"""Tutor-student relationships over REST: many-to-many with subject, dates and an active
flag, history, "my students" and "my tutors", tutors' subjects, roles and centers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from persistence.models import TutorStudent
from persistence.repositories import AuditLog, ParentLinks, PeopleRepository, Seen
from tests.conftest import Hub
from tests.support import session_body

RELATIONSHIPS = "/api/v1/relationships"
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def seed(hub: Hub) -> None:
    people = [
        ("t1", "TUTOR", "Tess"),
        ("t2", "TUTOR", "Theo"),
        ("s1", "STUDENT", "Ada"),
        ("s2", "STUDENT", "Bo"),
        ("s3", "STUDENT", "Cy"),
    ]
    async with hub.db.begin() as s:
        await PeopleRepository(s).seen(
            [Seen("c1", u, role, name, None) for u, role, name in people]
            + [Seen("c2", "x1", "STUDENT", "Far", None), Seen("c2", "xt", "TUTOR", None, None)],
            T0,
        )
        ParentLinks(s).link("c1", "p1", "s1", by="admin")


def admin(hub: Hub, center: str = "c1") -> Any:
    return hub.as_("admin", "CENTER_ADMIN", center)


async def relate(hub: Hub, tutor: str, student: str, subject: str, **extra: Any) -> Any:
    status, got = await admin(hub).post(
        RELATIONSHIPS, {"tutor_id": tutor, "student_id": student, "subject": subject, **extra}
    )
    assert status == 201, got
    return got["data"]


async def stored(hub: Hub) -> list[TutorStudent]:
    async with hub.db() as s:
        return list(await s.scalars(select(TutorStudent)))


async def test_create_records_subject_dates_and_names(hub: Hub) -> None:
    await seed(hub)
    data = await relate(hub, "t1", "s1", "Math", start_date="2026-09-01", notes="Tuesdays")
    assert data["id"] and data["center_id"] == "c1"
    assert (data["tutor_id"], data["tutor_name"], data["student_id"], data["student_name"]) == (
        "t1",
        "Tess",
        "s1",
        "Ada",
    )
    assert (data["subject"], data["start_date"], data["end_date"], data["active"]) == (
        "Math",
        "2026-09-01",
        None,
        True,
    )
    assert (data["notes"], data["created_by"], data["ended_by"]) == ("Tuesdays", "admin", None)
    today = await relate(hub, "t1", "s1", "Physics")
    assert today["start_date"] == datetime.now(UTC).date().isoformat()
    status, got = await admin(hub).get(f"{RELATIONSHIPS}/{data['id']}")
    assert status == 200 and got["data"] == data
    async with hub.db() as s:
        (entry,) = await AuditLog(s).for_target("relationship", data["id"])
    assert (entry.action, entry.details) == (
        "relationship.create",
        {"tutor_id": "t1", "student_id": "s1", "subject": "Math"},
    )


async def test_ids_must_be_the_centers_tutor_and_student(hub: Hub) -> None:
    await seed(hub)
    cases = [
        ({"tutor_id": "ghost", "student_id": "s1"}, "TUTOR_NOT_FOUND"),
        ({"tutor_id": "s2", "student_id": "s1"}, "TUTOR_NOT_FOUND"),  # a student
        ({"tutor_id": "xt", "student_id": "s1"}, "TUTOR_NOT_FOUND"),  # c2's tutor
        ({"tutor_id": "t1", "student_id": "t2"}, "STUDENT_NOT_FOUND"),  # a tutor
        ({"tutor_id": "t1", "student_id": "x1"}, "STUDENT_NOT_FOUND"),  # c2's student
    ]
    for body, code in cases:
        status, got = await admin(hub).post(RELATIONSHIPS, {**body, "subject": "Math"})
        assert (status, got["errorCode"]) == (404, code), body
    assert await stored(hub) == []


async def test_one_active_relationship_per_pair_and_subject_with_history(hub: Hub) -> None:
    await seed(hub)
    first = await relate(hub, "t1", "s1", "Math", start_date="2026-01-10")
    status, got = await admin(hub).post(
        RELATIONSHIPS, {"tutor_id": "t1", "student_id": "s1", "subject": "Math"}
    )
    assert (status, got["errorCode"]) == (409, "RELATIONSHIP_EXISTS")
    assert got["details"] == {"relationship_id": first["id"]}
    status, ended = await admin(hub).post(
        f"{RELATIONSHIPS}/{first['id']}/end", {"end_date": "2026-06-30"}
    )
    assert status == 200
    assert (ended["data"]["active"], ended["data"]["end_date"], ended["data"]["ended_by"]) == (
        False,
        "2026-06-30",
        "admin",
    )
    # Ending again changes nothing (idempotent); a new one may start.
    status, again = await admin(hub).post(f"{RELATIONSHIPS}/{first['id']}/end")
    assert status == 200 and again["data"] == ended["data"]
    second = await relate(hub, "t1", "s1", "Math", start_date="2026-09-01")
    status, listed = await admin(hub).get(RELATIONSHIPS, tutor_id="t1", student_id="s1")
    assert [(r["id"], r["active"]) for r in listed["data"]] == [
        (second["id"], True),
        (first["id"], False),
    ]
    status, listed = await admin(hub).get(RELATIONSHIPS, status="ENDED")
    assert [r["id"] for r in listed["data"]] == [first["id"]]
    status, got = await admin(hub).post(
        f"{RELATIONSHIPS}/{second['id']}/end", {"end_date": "2026-08-01"}
    )
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    assert len(await stored(hub)) == 2  # nothing is ever deleted


async def test_my_students_and_my_tutors(hub: Hub) -> None:
    await seed(hub)
    await relate(hub, "t1", "s1", "Math")
    await relate(hub, "t2", "s1", "English")
    await relate(hub, "t1", "s2", "Math")
    old = await relate(hub, "t1", "s3", "Math", start_date="2025-01-01")
    await admin(hub).post(f"{RELATIONSHIPS}/{old['id']}/end", {"end_date": "2025-06-01"})

    status, got = await hub.as_("t1", "TUTOR").get("/api/v1/me/students")
    assert status == 200
    assert sorted((r["student_id"], r["student_name"]) for r in got["data"]) == [
        ("s1", "Ada"),
        ("s2", "Bo"),
    ]
    status, got = await hub.as_("t1", "TUTOR").get("/api/v1/me/students", status="ALL")
    assert sorted(r["student_id"] for r in got["data"]) == ["s1", "s2", "s3"]
    status, got = await hub.as_("t1", "TUTOR").get("/api/v1/tutors/me/students", status="ENDED")
    assert [r["student_id"] for r in got["data"]] == ["s3"]
    status, got = await hub.as_("s1", "STUDENT").get("/api/v1/me/tutors")
    assert status == 200
    assert sorted((r["tutor_id"], r["tutor_name"], r["subject"]) for r in got["data"]) == [
        ("t1", "Tess", "Math"),
        ("t2", "Theo", "English"),
    ]
    # Staff look at anyone's; a tutor only at their own; a parent at a linked child's.
    status, got = await hub.as_("sup", "SUPERVISOR").get("/api/v1/tutors/t1/students")
    assert status == 200 and got["pagination"]["total"] == 2
    assert (await hub.as_("t2", "TUTOR").get("/api/v1/tutors/t1/students"))[0] == 403
    assert (await hub.as_("s1", "STUDENT").get("/api/v1/me/students"))[0] == 403
    assert (await hub.as_("t1", "TUTOR").get("/api/v1/me/tutors"))[0] == 403
    status, got = await hub.as_("p1", "PARENT").get("/api/v1/students/s1/tutors")
    assert status == 200 and got["pagination"]["total"] == 2
    assert (await hub.as_("p1", "PARENT").get("/api/v1/students/s2/tutors"))[0] == 403
    assert (await hub.as_("s2", "STUDENT").get("/api/v1/students/s1/tutors"))[0] == 403
    status, got = await hub.as_("s2", "STUDENT").get("/api/v1/students/me/tutors")
    assert status == 200 and [r["tutor_id"] for r in got["data"]] == ["t1"]


async def test_a_relationship_ending_keeps_its_past_sessions(hub: Hub) -> None:
    await seed(hub)
    tutor = hub.as_("t1", "TUTOR")
    status, created = await tutor.post(
        "/api/v1/sessions",
        session_body("t1", starts_at="2026-11-22T15:00:00Z", ends_at="2026-11-22T16:00:00Z"),
    )
    assert status == 201
    session_id = created["data"]["id"]
    status, _ = await tutor.post(f"/api/v1/sessions/{session_id}/enrollments", {"student_id": "s1"})
    assert status == 201
    rel = await relate(hub, "t1", "s1", "Math", start_date="2026-11-01")
    other = await relate(hub, "t1", "s2", "Math", start_date="2026-11-01")
    path = f"{RELATIONSHIPS}/{rel['id']}/sessions"
    status, listed = await tutor.get(path)
    assert status == 200 and [s["id"] for s in listed["data"]] == [session_id]
    assert (await tutor.get(f"{RELATIONSHIPS}/{other['id']}/sessions"))[1]["data"] == []
    await admin(hub).post(f"{RELATIONSHIPS}/{rel['id']}/end", {"end_date": "2026-11-30"})
    status, listed = await tutor.get(path)
    assert status == 200 and [s["id"] for s in listed["data"]] == [session_id]
    status, listed = await hub.as_("s1", "STUDENT").get(path)
    assert status == 200 and [s["id"] for s in listed["data"]] == [session_id]
    assert (await tutor.get(f"/api/v1/sessions/{session_id}"))[0] == 200
    status, enrolled = await tutor.get(f"/api/v1/sessions/{session_id}/enrollments/s1")
    assert status == 200 and enrolled["data"]["student_id"] == "s1"


async def test_roles(hub: Hub) -> None:
    await seed(hub)
    rel = await relate(hub, "t1", "s1", "Math")
    path = f"{RELATIONSHIPS}/{rel['id']}"
    body = {"tutor_id": "t1", "student_id": "s2", "subject": "Math"}
    for role in ("TUTOR", "SUPERVISOR", "STUDENT", "PARENT", "ASSESSOR"):
        status, got = await hub.as_("someone", role).post(RELATIONSHIPS, body)
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
        assert (await hub.as_("someone", role).post(f"{path}/end"))[0] == 403, role
    status, got = await hub.as_("root", "SUPER_ADMIN", "hq").post(
        RELATIONSHIPS, {**body, "center_id": "c1"}
    )
    assert status == 201 and got["data"]["center_id"] == "c1"
    assert (await admin(hub).post(RELATIONSHIPS, {**body, "subject": "Art", "center_id": "c2"}))[
        0
    ] == 403
    # Readers of one relationship: staff, its tutor, its student, a linked parent.
    for who in (
        hub.as_("sup", "SUPERVISOR"),
        hub.as_("t1", "TUTOR"),
        hub.as_("s1", "STUDENT"),
        hub.as_("p1", "PARENT"),
    ):
        assert (await who.get(path))[0] == 200
    for who in (
        hub.as_("t2", "TUTOR"),
        hub.as_("s2", "STUDENT"),
        hub.as_("p2", "PARENT"),
        hub.as_("a", "ASSESSOR"),
    ):
        status, got = await who.get(path)
        assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    # Lists: a tutor and a student see only their own.
    status, got = await hub.as_("t2", "TUTOR").get(RELATIONSHIPS)
    assert status == 200 and got["data"] == []
    assert (await hub.as_("t2", "TUTOR").get(RELATIONSHIPS, tutor_id="t1"))[0] == 403
    status, got = await hub.as_("s1", "STUDENT").get(RELATIONSHIPS)
    assert [r["id"] for r in got["data"]] == [rel["id"]]
    assert (await hub.as_("p1", "PARENT").get(RELATIONSHIPS))[0] == 403
    status, got = await admin(hub).patch(path, {"notes": "Moved to Thursdays"})
    assert status == 200 and got["data"]["notes"] == "Moved to Thursdays"
    assert (await hub.as_("t1", "TUTOR").patch(path, {"notes": "x"}))[0] == 403


async def test_another_centers_relationships_and_people_are_not_found(hub: Hub) -> None:
    await seed(hub)
    rel = await relate(hub, "t1", "s1", "Math")
    path = f"{RELATIONSHIPS}/{rel['id']}"
    outsider = admin(hub, "c2")
    for call in (
        outsider.get(path),
        outsider.patch(path, {"notes": "x"}),
        outsider.post(f"{path}/end"),
        outsider.get(f"{path}/sessions"),
        hub.as_("xt", "TUTOR", "c2").get(path),
    ):
        status, got = await call
        assert (status, got["errorCode"]) == (404, "RELATIONSHIP_NOT_FOUND")
    status, got = await outsider.get(RELATIONSHIPS)
    assert got["data"] == []
    status, got = await outsider.get("/api/v1/tutors/t1/students")
    assert (status, got["errorCode"]) == (404, "TUTOR_NOT_FOUND")
    status, got = await outsider.get("/api/v1/students/s1/tutors")
    assert (status, got["errorCode"]) == (404, "STUDENT_NOT_FOUND")
    status, got = await outsider.put("/api/v1/tutors/t1/subjects", {"subjects": []})
    assert (status, got["errorCode"]) == (404, "TUTOR_NOT_FOUND")
    (row,) = await stored(hub)
    assert row.active and row.notes is None


async def test_tutor_subjects_and_levels(hub: Hub) -> None:
    await seed(hub)
    path = "/api/v1/tutors/t1/subjects"
    status, got = await hub.as_("t1", "TUTOR").put(
        "/api/v1/tutors/me/subjects",
        {"subjects": [{"subject": "Math", "level": "A-level"}, {"subject": "Physics"}]},
    )
    assert status == 200, got
    assert (got["data"]["added"], got["data"]["removed"]) == (["Math", "Physics"], [])
    math_created = got["data"]["subjects"][0]["created_at"]
    status, got = await admin(hub).put(
        path, {"subjects": [{"subject": "Math", "level": "IB"}, {"subject": "Chemistry"}]}
    )
    assert status == 200
    assert (got["data"]["added"], got["data"]["removed"]) == (["Chemistry"], ["Physics"])
    status, got = await hub.as_("s1", "STUDENT").get(path)
    assert status == 200
    assert [(s["subject"], s["level"]) for s in got["data"]["subjects"]] == [
        ("Chemistry", None),
        ("Math", "IB"),
    ]
    assert got["data"]["subjects"][1]["created_at"] == math_created
    assert (await hub.as_("t2", "TUTOR").put(path, {"subjects": []}))[0] == 403
    assert (await hub.as_("sup", "SUPERVISOR").put(path, {"subjects": []}))[0] == 403
    status, got = await admin(hub).put(
        path, {"subjects": [{"subject": "Math"}, {"subject": "Math"}]}
    )
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    status, got = await admin(hub).get("/api/v1/tutors/s1/subjects")
    assert (status, got["errorCode"]) == (404, "TUTOR_NOT_FOUND")
    status, got = await hub.as_("s1", "STUDENT").get("/api/v1/tutors/me/subjects")
    assert (status, got["errorCode"]) == (404, "TUTOR_NOT_FOUND")


async def test_concurrent_creates_of_one_relationship_make_one(hub: Hub) -> None:
    await seed(hub)
    body = {"tutor_id": "t1", "student_id": "s1", "subject": "Math"}
    results = await asyncio.gather(*(admin(hub).post(RELATIONSHIPS, body) for _ in range(4)))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]
    assert {b["errorCode"] for s, b in results if s == 409} == {"RELATIONSHIP_EXISTS"}
    assert len(await stored(hub)) == 1


async def test_a_failed_subjects_change_leaves_the_old_list(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal and the additions are written before the audit entry, which fails
    here: the tutor keeps exactly the subjects (and rows) they had."""
    await seed(hub)
    path = "/api/v1/tutors/t1/subjects"
    status, before = await admin(hub).put(
        path, {"subjects": [{"subject": "Math", "level": "A"}, {"subject": "Physics"}]}
    )
    assert status == 200

    def fail(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(AuditLog, "record", fail)
    status, got = await admin(hub).put(
        path, {"subjects": [{"subject": "Math", "level": "B"}, {"subject": "Art"}]}
    )
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    monkeypatch.undo()
    status, after = await admin(hub).get(path)
    assert after["data"]["subjects"] == before["data"]["subjects"]
