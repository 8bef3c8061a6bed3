"""Course sessions offered to cohorts (the course_session_cohorts junction), on SQLite and
Postgres: create with ids all or nothing, PATCH by difference, rollback after the first
write, centers, what students see through their cohorts, deleted cohorts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from persistence.models import (
    AuditEntry,
    CourseSession,
    CourseSessionCohort,
    CourseSessionSettings,
)
from persistence.repositories import AuditLog
from tests.conftest import Hub
from tests.test_cohorts import seed
from tests.test_course_sessions import STUDENT, TEACHER, course_body

COHORTS = "/api/v1/cohorts"


def tutor(hub: Hub) -> Any:
    return hub.as_("tutor-1", "TUTOR")


def admin(hub: Hub, center: str = "c1") -> Any:
    return hub.as_("admin", "CENTER_ADMIN", center)


def student(hub: Hub, user_id: str, center: str = "c1") -> Any:
    return hub.as_(user_id, "STUDENT", center)


async def cohort(hub: Hub, name: str, student_ids: list[str], center: str = "c1") -> str:
    status, got = await admin(hub, center).post(COHORTS, {"name": name, "student_ids": student_ids})
    assert status == 201, got
    return str(got["data"]["id"])


async def classes(hub: Hub) -> dict[str, str]:
    """Cohorts A (s1), B (s2), C (s1, s3) of center c1 and X (x1) of c2; s4 in none."""
    await seed(hub, *((s, "STUDENT", None) for s in ("s1", "s2", "s3", "s4")))
    await seed(hub, ("x1", "STUDENT", None), center="c2")
    return {
        "A": await cohort(hub, "A", ["s1"]),
        "B": await cohort(hub, "B", ["s2"]),
        "C": await cohort(hub, "C", ["s1", "s3"]),
        "X": await cohort(hub, "X", ["x1"], center="c2"),
    }


async def offered(
    hub: Hub, cohort_ids: list[str], *, publish: bool = True, **body: Any
) -> dict[str, Any]:
    status, got = await tutor(hub).post(TEACHER, course_body(cohort_ids=cohort_ids, **body))
    assert status == 201, got
    if publish:
        path = f"{TEACHER}/{got['data']['course_session_id']}/publish"
        status, got = await tutor(hub).patch(path)
        assert status == 200, got
    return dict(got["data"])


async def links(hub: Hub, session_id: str | None = None) -> dict[str, CourseSessionCohort]:
    async with hub.db() as db:
        query = select(CourseSessionCohort)
        if session_id is not None:
            query = query.where(CourseSessionCohort.course_session_id == session_id)
        return {link.cohort_id: link for link in await db.scalars(query)}


async def count(hub: Hub, model: Any) -> int:
    async with hub.db() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def session_audits(hub: Hub) -> list[AuditEntry]:
    async with hub.db() as db:
        rows = await db.scalars(
            select(AuditEntry).where(AuditEntry.target_type == "course_session")
        )
        return list(rows)


async def test_create_with_cohort_ids_links_them_and_staff_answers_carry_them(hub: Hub) -> None:
    ids = await classes(hub)
    created = await offered(hub, [ids["B"], ids["A"]], publish=False)
    session_id = created["course_session_id"]
    assert sorted(created["cohort_ids"]) == sorted([ids["A"], ids["B"]])
    rows = await links(hub, session_id)
    assert set(rows) == {ids["A"], ids["B"]}
    assert {(r.added_by, r.center_id) for r in rows.values()} == {("tutor-1", "c1")}
    status, got = await admin(hub).get(f"{TEACHER}/{session_id}")
    assert status == 200 and sorted(got["data"]["cohort_ids"]) == sorted(created["cohort_ids"])
    status, got = await tutor(hub).get(TEACHER)
    assert status == 200 and len(got["data"]) == 1
    assert sorted(got["data"][0]["cohort_ids"]) == sorted(created["cohort_ids"])
    status, got = await admin(hub).get("/api/v1/admin/sessions")
    assert sorted(got["data"][0]["cohort_ids"]) == sorted(created["cohort_ids"])
    status, got = await tutor(hub).patch(f"{TEACHER}/{session_id}/publish")
    assert status == 200 and sorted(got["data"]["cohort_ids"]) == sorted(created["cohort_ids"])
    async with hub.db() as db:
        (entry, _) = await AuditLog(db).for_target("course_session", session_id)
    assert entry.action == "course_session.create"
    assert entry.details is not None and entry.details["cohort_ids"] == [ids["B"], ids["A"]]
    # Without cohort_ids a session is offered to none.
    status, got = await tutor(hub).post(TEACHER, course_body(session_name="Plain"))
    assert status == 201 and got["data"]["cohort_ids"] == []


async def test_any_bad_cohort_id_in_a_create_writes_nothing(hub: Hub) -> None:
    ids = await classes(hub)
    assert (await admin(hub).delete(f"{COHORTS}/{ids['C']}"))[0] == 200
    # Unknown, another center's, a deleted one: all named, nothing written.
    wanted = [ids["A"], "ghost", ids["X"], ids["C"], ids["B"]]
    status, got = await tutor(hub).post(TEACHER, course_body(cohort_ids=wanted))
    assert (status, got["errorCode"]) == (400, "COHORT_NOT_FOUND"), got
    assert got["details"]["cohort_ids"] == ["ghost", ids["X"], ids["C"]]
    assert got["details"]["field"] == "cohort_ids"
    assert "nothing was changed" in got["message"]
    for model in (CourseSession, CourseSessionSettings, CourseSessionCohort):
        assert await count(hub, model) == 0, model
    assert await session_audits(hub) == []
    # The same session with good ids is fine afterwards (its name was not taken).
    created = await offered(hub, [ids["A"], ids["B"]], publish=False)
    assert len(created["cohort_ids"]) == 2


async def test_another_centers_cohorts_are_refused_on_patch_too(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"]], publish=False)
    path = f"{TEACHER}/{session['course_session_id']}"
    status, got = await admin(hub).patch(path, {"cohort_ids": [ids["A"], ids["X"]]})
    assert (status, got["errorCode"], got["details"]["cohort_ids"]) == (
        400,
        "COHORT_NOT_FOUND",
        [ids["X"]],
    )
    # The other center's admin cannot reach this session at all.
    status, got = await admin(hub, "c2").patch(path, {"cohort_ids": [ids["X"]]})
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    assert set(await links(hub)) == {ids["A"]}


async def test_patch_adds_and_removes_only_the_difference(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"], ids["B"]], publish=False)
    path = f"{TEACHER}/{session['course_session_id']}"
    before = await links(hub)
    status, got = await admin(hub).patch(
        path, {"cohort_ids": [ids["B"], ids["C"]], "session_name": "Renamed"}
    )
    assert status == 200, got
    assert got["data"]["session_name"] == "Renamed"
    assert sorted(got["data"]["cohort_ids"]) == sorted([ids["B"], ids["C"]])
    after = await links(hub)
    assert set(after) == {ids["B"], ids["C"]}
    # The link kept is the same row, untouched; only the new one is the admin's.
    assert after[ids["B"]].created_at == before[ids["B"]].created_at
    assert after[ids["B"]].added_by == "tutor-1"
    assert after[ids["C"]].added_by == "admin"
    assert after[ids["C"]].created_at > before[ids["B"]].created_at
    entry = (await session_audits(hub))[-1]
    assert entry.action == "course_session.update" and entry.details is not None
    assert entry.details["cohort_ids"] == {"added": [ids["C"]], "removed": [ids["A"]]}
    assert entry.details["session_name"] == "Renamed"
    # Without cohort_ids the links stay as they are.
    status, got = await tutor(hub).patch(path, {"max_students": 12})
    assert status == 200 and sorted(got["data"]["cohort_ids"]) == sorted([ids["B"], ids["C"]])
    assert {k: v.created_at for k, v in (await links(hub)).items()} == {
        k: v.created_at for k, v in after.items()
    }
    # The same list again writes nothing; an empty list clears.
    status, got = await tutor(hub).patch(path, {"cohort_ids": [ids["C"], ids["B"]]})
    assert status == 200
    assert (await session_audits(hub))[-1].details == {"cohort_ids": {"added": [], "removed": []}}
    status, got = await tutor(hub).patch(path, {"cohort_ids": []})
    assert status == 200 and got["data"]["cohort_ids"] == []
    assert await links(hub) == {}


async def test_a_bad_cohort_id_in_a_patch_changes_nothing(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"], ids["B"]], publish=False)
    path = f"{TEACHER}/{session['course_session_id']}"
    before = await links(hub)
    audits = len(await session_audits(hub))
    status, got = await tutor(hub).patch(
        path, {"session_name": "Renamed", "cohort_ids": [ids["C"], "ghost"]}
    )
    assert (status, got["errorCode"], got["details"]["cohort_ids"]) == (
        400,
        "COHORT_NOT_FOUND",
        ["ghost"],
    )
    assert {k: v.created_at for k, v in (await links(hub)).items()} == {
        k: v.created_at for k, v in before.items()
    }
    status, got = await tutor(hub).get(path)
    assert got["data"]["session_name"] == session["session_name"]
    assert len(await session_audits(hub)) == audits


async def test_a_failure_after_the_first_write_leaves_nothing_behind(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit entry is written after the session, its settings and every link row
    (and, on PATCH, after the removed links were deleted): failing there rolls back all."""
    import rest.courses.teacher

    ids = await classes(hub)
    session = await offered(hub, [ids["A"], ids["B"]], publish=False)
    path = f"{TEACHER}/{session['course_session_id']}"
    before = await links(hub)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected after the rows were written")

    monkeypatch.setattr(rest.courses.teacher, "audit", broken)
    status, got = await tutor(hub).post(
        TEACHER, course_body(session_name="Other", cohort_ids=[ids["A"], ids["C"]])
    )
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    status, got = await tutor(hub).patch(
        path, {"session_name": "Renamed", "cohort_ids": [ids["B"], ids["C"]]}
    )
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    monkeypatch.undo()
    assert await count(hub, CourseSession) == 1
    assert await count(hub, CourseSessionSettings) == 1
    after = await links(hub)
    assert {k: (v.course_session_id, v.created_at) for k, v in after.items()} == {
        k: (v.course_session_id, v.created_at) for k, v in before.items()
    }
    status, got = await tutor(hub).get(path)
    assert got["data"]["session_name"] == session["session_name"]
    assert [e.action for e in await session_audits(hub)] == ["course_session.create"]


@pytest.mark.parametrize(
    "cohort_ids", [["a", "a"], [""], "a", [1], None], ids=["twice", "empty", "str", "int", "null"]
)
async def test_cohort_ids_validation_is_400(hub: Hub, cohort_ids: Any) -> None:
    status, got = await tutor(hub).post(TEACHER, course_body(cohort_ids=cohort_ids))
    assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), got
    assert await count(hub, CourseSession) == 0
    created = await offered(hub, [], publish=False)
    status, got = await tutor(hub).patch(
        f"{TEACHER}/{created['course_session_id']}", {"cohort_ids": cohort_ids}
    )
    assert (status, got["errorCode"]) == (400, "VALIDATION_ERROR"), got


# --- What students see ---------------------------------------------------------------------


async def listed(hub: Hub, user_id: str, query: str = "") -> list[dict[str, Any]]:
    status, got = await student(hub, user_id).get(STUDENT + query)
    assert status == 200, got
    return list(got["data"])


async def test_a_cohort_member_sees_a_published_session_offered_to_the_cohort(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"], ids["C"]])
    session_id = session["course_session_id"]
    (row,) = await listed(hub, "s1")
    assert row["course_session_id"] == session_id
    assert row["course_session_status"] == "PUBLISHED"
    # Offered, not joined: no enrollment; the code is how they join.
    assert row["enrollment_status"] is None and row["course_session_enrollment_id"] is None
    assert row["session_code"] == session["session_code"]
    assert row["via_cohort_ids"] == sorted([ids["A"], ids["C"]])
    assert "cohort_ids" not in row  # never the session's other cohorts
    status, got = await student(hub, "s1").get(f"{STUDENT}/{session_id}")
    assert status == 200 and got["data"]["enrollment_status"] is None
    assert got["data"]["via_cohort_ids"] == sorted([ids["A"], ids["C"]])
    (row,) = await listed(hub, "s3")
    assert row["via_cohort_ids"] == [ids["C"]]
    # Joining turns the offer into the enrollment: one row, ENROLLED.
    status, got = await student(hub, "s1").post(
        f"{STUDENT}/join", {"session_code": session["session_code"]}
    )
    assert status == 201, got
    (row,) = await listed(hub, "s1")
    assert row["enrollment_status"] == "ENROLLED" and row["course_session_enrollment_id"]
    assert [r["course_session_id"] for r in await listed(hub, "s1", "?status=ENROLLED")] == [
        session_id
    ]
    assert await listed(hub, "s3", "?status=ENROLLED") == []
    assert [r["course_session_id"] for r in await listed(hub, "s3", "?activeOnly=true")] == [
        session_id
    ]
    # Announcements and dropping still need an enrollment.
    status, got = await student(hub, "s3").get(f"{STUDENT}/{session_id}/announcements")
    assert status == 403
    assert (await student(hub, "s3").delete(f"{STUDENT}/{session_id}/enrollment"))[0] == 403


async def test_no_student_sees_a_session_through_a_cohort_they_are_not_in(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"]])
    path = f"{STUDENT}/{session['course_session_id']}"
    for user_id in ("s2", "s4"):  # another cohort's; no cohort's
        assert await listed(hub, user_id) == []
        status, got = await student(hub, user_id).get(path)
        assert status == 403, got
    # Another center's student, even in a cohort of theirs: not found.
    status, got = await student(hub, "x1", "c2").get(path)
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    assert (await student(hub, "x1", "c2").get(STUDENT))[1]["data"] == []
    # A draft is offered to no one yet; a student who leaves the cohort no longer sees it.
    draft = await offered(hub, [ids["A"]], publish=False, session_name="Draft")
    assert [r["course_session_id"] for r in await listed(hub, "s1")] == [
        session["course_session_id"]
    ]
    assert (await student(hub, "s1").get(f"{STUDENT}/{draft['course_session_id']}"))[0] == 403
    assert (await admin(hub).delete(f"{COHORTS}/{ids['A']}/members/s1"))[0] == 200
    assert await listed(hub, "s1") == []
    assert (await student(hub, "s1").get(path))[0] == 403
    # Unlinking the cohort, or deleting the session, hides it as well.
    assert (await admin(hub).post(f"{COHORTS}/{ids['A']}/members", {"student_ids": ["s1"]}))[
        0
    ] == 200
    assert len(await listed(hub, "s1")) == 1
    teacher_path = f"{TEACHER}/{session['course_session_id']}"
    assert (await tutor(hub).patch(teacher_path, {"cohort_ids": []}))[0] == 200
    assert await listed(hub, "s1") == []
    assert (await tutor(hub).patch(teacher_path, {"cohort_ids": [ids["A"]]}))[0] == 200
    assert (await tutor(hub).delete(teacher_path))[0] == 204
    assert await listed(hub, "s1") == []
    assert (await student(hub, "s1").get(path))[1]["errorCode"] == "SESSION_NOT_FOUND"


async def test_a_deleted_cohort_keeps_its_links_as_history_but_offers_nothing(hub: Hub) -> None:
    ids = await classes(hub)
    session = await offered(hub, [ids["A"], ids["B"]])
    path = f"{TEACHER}/{session['course_session_id']}"
    # s1 joins; s2 only sees the offer.
    status, _ = await student(hub, "s1").post(
        f"{STUDENT}/join", {"session_code": session["session_code"]}
    )
    assert status == 201
    assert (await admin(hub).delete(f"{COHORTS}/{ids['A']}"))[0] == 200
    assert (await admin(hub).delete(f"{COHORTS}/{ids['B']}"))[0] == 200
    # The rows stay; staff answers and students no longer count them.
    assert set(await links(hub)) == {ids["A"], ids["B"]}
    status, got = await tutor(hub).get(path)
    assert got["data"]["cohort_ids"] == []
    assert await listed(hub, "s2") == []
    # An enrollment is the student's own: it does not go with the cohort.
    (row,) = await listed(hub, "s1")
    assert row["enrollment_status"] == "ENROLLED" and row["via_cohort_ids"] == []
    # A PATCH neither removes nor re-adds a deleted cohort's link.
    status, got = await tutor(hub).patch(path, {"cohort_ids": [ids["C"]]})
    assert status == 200 and got["data"]["cohort_ids"] == [ids["C"]]
    assert (await session_audits(hub))[-1].details == {
        "cohort_ids": {"added": [ids["C"]], "removed": []}
    }
    assert set(await links(hub)) == {ids["A"], ids["B"], ids["C"]}
    status, got = await tutor(hub).patch(path, {"cohort_ids": [ids["A"]]})
    assert (status, got["details"]["cohort_ids"]) == (400, [ids["A"]])
