"""Cohorts over REST: CRUD within a center, members set from a list of ids (all or
nothing, only the difference written), roles, centers, soft deletion, rollback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from persistence.models import AuditEntry, Cohort, CohortMember
from persistence.repositories import AuditLog, PeopleRepository, Seen
from tests.conftest import Hub

COHORTS = "/api/v1/cohorts"
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def seed(hub: Hub, *people: tuple[str, str, str | None], center: str = "c1") -> None:
    async with hub.db.begin() as s:
        await PeopleRepository(s).seen(
            [Seen(center, user_id, role, name, None) for user_id, role, name in people], T0
        )


async def seed_center(hub: Hub) -> None:
    await seed(
        hub,
        ("s1", "STUDENT", "Ada"),
        ("s2", "STUDENT", "Bo"),
        ("s3", "STUDENT", "Cy"),
        ("s4", "STUDENT", "Di"),
        ("t1", "TUTOR", "Tess"),
    )
    await seed(hub, ("x1", "STUDENT", "Elsewhere"), center="c2")


def admin(hub: Hub, center: str = "c1") -> Any:
    return hub.as_("admin", "CENTER_ADMIN", center)


async def members(hub: Hub, cohort_id: str) -> dict[str, CohortMember]:
    async with hub.db() as s:
        rows = await s.scalars(select(CohortMember).where(CohortMember.cohort_id == cohort_id))
        return {m.student_id: m for m in rows}


async def cohort_rows(hub: Hub) -> list[Cohort]:
    async with hub.db() as s:
        return list(await s.scalars(select(Cohort)))


async def create(hub: Hub, name: str = "Year 7 A", student_ids: list[str] | None = None) -> Any:
    status, got = await admin(hub).post(
        COHORTS, {"name": name, "student_ids": student_ids or [], "description": "mornings"}
    )
    assert status == 201, got
    return got["data"]


async def test_create_with_ids_stores_the_cohort_and_its_members(hub: Hub) -> None:
    await seed_center(hub)
    data = await create(hub, student_ids=["s2", "s1"])
    assert data["center_id"] == "c1" and data["name"] == "Year 7 A"
    assert data["description"] == "mornings" and data["created_by"] == "admin"
    assert sorted(data["student_ids"]) == ["s1", "s2"] and data["member_count"] == 2
    assert (data["added"], data["removed"]) == (["s2", "s1"], [])
    status, listed = await admin(hub).get(f"{COHORTS}/{data['id']}/members")
    assert status == 200 and listed["pagination"]["total"] == 2
    assert {(m["student_id"], m["student_name"], m["added_by"]) for m in listed["data"]} == {
        ("s1", "Ada", "admin"),
        ("s2", "Bo", "admin"),
    }
    status, fetched = await hub.as_("sup", "SUPERVISOR").get(f"{COHORTS}/{data['id']}")
    assert status == 200 and sorted(fetched["data"]["student_ids"]) == ["s1", "s2"]
    status, listed = await hub.as_("t1", "TUTOR").get(COHORTS)
    assert status == 200 and [c["member_count"] for c in listed["data"]] == [2]
    async with hub.db() as s:
        (entry,) = await AuditLog(s).for_target("cohort", data["id"])
    assert (entry.action, entry.actor_id, entry.details) == (
        "cohort.create",
        "admin",
        {"name": "Year 7 A", "added": ["s2", "s1"]},
    )
    assert entry.ip == "127.0.0.1"


async def test_any_bad_id_in_a_create_writes_nothing(hub: Hub) -> None:
    await seed_center(hub)
    # Unknown, a tutor, another center's student: all named, nothing written.
    status, got = await admin(hub).post(
        COHORTS, {"name": "Year 7 A", "student_ids": ["s1", "ghost", "t1", "x1", "s2"]}
    )
    assert (status, got["errorCode"]) == (404, "STUDENT_NOT_FOUND")
    assert got["details"] == {"student_ids": ["ghost", "t1", "x1"]}
    assert "nothing was changed" in got["message"]
    assert await cohort_rows(hub) == []
    async with hub.db() as s:
        assert list(await s.scalars(select(CohortMember))) == []
        assert list(await s.scalars(select(AuditEntry))) == []
    # The same cohort with good ids is fine afterwards (the name was not taken).
    await create(hub, student_ids=["s1", "s2"])


async def test_patch_adds_and_removes_only_the_difference(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1", "s2", "s3"])
    before = await members(hub, cohort["id"])
    status, got = await admin(hub).patch(
        f"{COHORTS}/{cohort['id']}", {"student_ids": ["s3", "s2", "s4"], "name": "Year 7 B"}
    )
    assert status == 200, got
    data = got["data"]
    assert (data["added"], data["removed"]) == (["s4"], ["s1"])
    assert data["name"] == "Year 7 B" and data["member_count"] == 3
    after = await members(hub, cohort["id"])
    assert set(after) == {"s2", "s3", "s4"}
    for kept in ("s2", "s3"):  # rows kept are the same rows, untouched
        assert after[kept].created_at == before[kept].created_at
        assert after[kept].added_by == before[kept].added_by
    assert after["s4"].created_at > before["s3"].created_at
    # Without student_ids the members stay as they are.
    status, got = await admin(hub).patch(f"{COHORTS}/{cohort['id']}", {"description": None})
    assert status == 200 and got["data"]["description"] is None
    unchanged = await members(hub, cohort["id"])
    assert {k: v.created_at for k, v in unchanged.items()} == {
        k: v.created_at for k, v in after.items()
    }
    # An empty list empties it.
    status, got = await admin(hub).patch(f"{COHORTS}/{cohort['id']}", {"student_ids": []})
    assert status == 200 and got["data"]["removed"] == ["s2", "s3", "s4"]
    assert await members(hub, cohort["id"]) == {}


async def test_a_bad_id_in_a_patch_changes_nothing(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1", "s2"])
    before = await members(hub, cohort["id"])
    status, got = await admin(hub).patch(
        f"{COHORTS}/{cohort['id']}", {"name": "Renamed", "student_ids": ["s2", "s3", "x1"]}
    )
    assert (status, got["errorCode"], got["details"]) == (
        404,
        "STUDENT_NOT_FOUND",
        {"student_ids": ["x1"]},
    )
    after = await members(hub, cohort["id"])
    assert set(after) == {"s1", "s2"}
    assert {k: v.created_at for k, v in after.items()} == {
        k: v.created_at for k, v in before.items()
    }
    (row,) = await cohort_rows(hub)
    assert row.name == "Year 7 A"


async def test_a_failure_after_the_first_write_leaves_nothing_behind(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit entry is written last, after the cohort and its member rows were
    flushed: failing there rolls back all of them."""
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1", "s2"])
    before = await members(hub, cohort["id"])

    def fail(*_: Any, **__: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(AuditLog, "record", fail)
    status, got = await admin(hub).post(COHORTS, {"name": "Other", "student_ids": ["s3", "s4"]})
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    status, got = await admin(hub).patch(
        f"{COHORTS}/{cohort['id']}", {"name": "Renamed", "student_ids": ["s2", "s3", "s4"]}
    )
    assert (status, got["errorCode"]) == (500, "INTERNAL")
    monkeypatch.undo()
    rows = await cohort_rows(hub)
    assert [(c.id, c.name) for c in rows] == [(cohort["id"], "Year 7 A")]
    after = await members(hub, cohort["id"])
    assert set(after) == {"s1", "s2"}
    assert after["s1"].created_at == before["s1"].created_at
    async with hub.db() as s:
        assert len(list(await s.scalars(select(CohortMember)))) == 2


async def test_add_and_remove_members_one_call_at_a_time(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1"])
    before = await members(hub, cohort["id"])
    path = f"{COHORTS}/{cohort['id']}/members"
    status, got = await admin(hub).post(path, {"student_ids": ["s1", "s2", "s3"]})
    assert status == 200 and (got["data"]["added"], got["data"]["removed"]) == (["s2", "s3"], [])
    assert (await members(hub, cohort["id"]))["s1"].created_at == before["s1"].created_at
    status, got = await admin(hub).post(path, {"student_ids": ["s4", "ghost"]})
    assert (status, got["details"]) == (404, {"student_ids": ["ghost"]})
    status, got = await admin(hub).delete(f"{path}/s2")
    assert status == 200 and got["data"]["removed"] == ["s2"]
    assert sorted(got["data"]["student_ids"]) == ["s1", "s3"]
    status, got = await admin(hub).delete(f"{path}/s2")
    assert (status, got["errorCode"]) == (404, "MEMBER_NOT_FOUND")


async def test_names_are_unique_among_the_centers_live_cohorts(hub: Hub) -> None:
    await seed_center(hub)
    first = await create(hub, "Year 7 A")
    await create(hub, "Year 7 B")
    status, got = await admin(hub).post(COHORTS, {"name": "Year 7 A"})
    assert (status, got["errorCode"]) == (409, "COHORT_EXISTS")
    status, got = await admin(hub).patch(f"{COHORTS}/{first['id']}", {"name": "Year 7 B"})
    assert (status, got["errorCode"]) == (409, "COHORT_EXISTS")
    # Another center may use the same name.
    status, _ = await admin(hub, "c2").post(COHORTS, {"name": "Year 7 A"})
    assert status == 201


async def test_concurrent_creates_of_one_name_make_one_cohort(hub: Hub) -> None:
    await seed_center(hub)
    results = await asyncio.gather(
        *(admin(hub).post(COHORTS, {"name": "Race", "student_ids": ["s1"]}) for _ in range(4))
    )
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]
    assert len(await cohort_rows(hub)) == 1


async def test_deletion_is_soft(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1", "s2"])
    path = f"{COHORTS}/{cohort['id']}"
    assert (await hub.as_("sup", "SUPERVISOR").delete(path))[0] == 403
    status, got = await admin(hub).delete(path)
    assert status == 200 and sorted(got["data"]["student_ids"]) == ["s1", "s2"]
    for call in (
        admin(hub).get(path),
        admin(hub).patch(path, {"name": "x"}),
        admin(hub).delete(path),
    ):
        status, got = await call
        assert (status, got["errorCode"]) == (404, "COHORT_NOT_FOUND")
    status, listed = await admin(hub).get(COHORTS)
    assert listed["data"] == []
    status, listed = await hub.as_("s1", "STUDENT").get(COHORTS)
    assert listed["data"] == []
    (row,) = await cohort_rows(hub)
    assert row.deleted_at is not None and row.deleted_by == "admin"
    assert set(await members(hub, cohort["id"])) == {"s1", "s2"}  # kept, unseen
    await create(hub, cohort["name"])  # the name is free again


async def test_roles(hub: Hub) -> None:
    await seed_center(hub)
    mine = await create(hub, "Mine", ["s1", "s2"])
    other = await create(hub, "Other", ["s3"])
    for role in ("TUTOR", "SUPERVISOR", "STUDENT", "PARENT", "ASSESSOR"):
        status, got = await hub.as_("u", role).post(COHORTS, {"name": f"by {role}"})
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
        status, _ = await hub.as_("u", role).patch(f"{COHORTS}/{mine['id']}", {"name": "x"})
        assert status == 403, role
    status, got = await hub.as_("root", "SUPER_ADMIN", "hq").post(
        COHORTS, {"name": "From HQ", "center_id": "c1", "student_ids": ["s4"]}
    )
    assert status == 201 and got["data"]["center_id"] == "c1"
    # A student lists and reads only their cohorts, and never sees who else is in them.
    student = hub.as_("s1", "STUDENT")
    status, listed = await student.get(COHORTS)
    assert status == 200 and [c["name"] for c in listed["data"]] == ["Mine"]
    status, got = await student.get(f"{COHORTS}/{mine['id']}")
    assert status == 200 and "student_ids" not in got["data"]
    assert got["data"]["member_count"] == 2
    assert (await student.get(f"{COHORTS}/{other['id']}"))[0] == 403
    assert (await student.get(f"{COHORTS}/{mine['id']}/members"))[0] == 403
    assert (await student.get(COHORTS, student_id="s3"))[0] == 403
    for role in ("PARENT", "ASSESSOR"):
        assert (await hub.as_("u", role).get(COHORTS))[0] == 403
        assert (await hub.as_("u", role).get(f"{COHORTS}/{mine['id']}"))[0] == 403
    # Staff filter by student.
    status, listed = await hub.as_("t1", "TUTOR").get(COHORTS, student_id="s3")
    assert [c["name"] for c in listed["data"]] == ["Other"]


async def test_another_centers_cohorts_and_students_are_not_found(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1"])
    path = f"{COHORTS}/{cohort['id']}"
    outsider = admin(hub, "c2")
    for call in (
        outsider.get(path),
        outsider.patch(path, {"name": "mine now"}),
        outsider.delete(path),
        outsider.get(f"{path}/members"),
        outsider.post(f"{path}/members", {"student_ids": ["x1"]}),
        outsider.delete(f"{path}/members/s1"),
        hub.as_("x1", "STUDENT", "c2").get(path),
    ):
        status, got = await call
        assert (status, got["errorCode"]) == (404, "COHORT_NOT_FOUND")
    status, listed = await outsider.get(COHORTS)
    assert listed["data"] == []
    # c1's students are not c2's: a c2 cohort cannot take them.
    status, got = await outsider.post(COHORTS, {"name": "Mixed", "student_ids": ["x1", "s1"]})
    assert (status, got["details"]) == (404, {"student_ids": ["s1"]})
    assert (await outsider.get(COHORTS, center_id="c1"))[0] == 403
    status, listed = await hub.as_("root", "SUPER_ADMIN", "hq").get(COHORTS, center_id="c1")
    assert status == 200 and [c["id"] for c in listed["data"]] == [cohort["id"]]
    assert set(await members(hub, cohort["id"])) == {"s1"}


async def test_request_validation(hub: Hub) -> None:
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1"])
    for body in (
        {"name": ""},
        {"name": "A", "student_ids": ["s1", "s1"]},
        {"name": "A", "student_ids": "s1"},
        {"name": "A", "extra": 1},
        {"name": "A", "student_ids": [f"s{i}" for i in range(501)]},
    ):
        status, got = await admin(hub).post(COHORTS, body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), body
    for body in ({}, {"student_ids": None}, {"name": None}):
        status, got = await admin(hub).patch(f"{COHORTS}/{cohort['id']}", body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), body


async def test_concurrent_member_changes_of_one_cohort_take_turns(hub: Hub) -> None:
    """Each change locks the cohort's row: no two compute their difference from the same
    members, so none fails on the junction's key and the last one's list is what stays."""
    await seed_center(hub)
    cohort = await create(hub, student_ids=["s1"])
    path = f"{COHORTS}/{cohort['id']}"
    wanted = [["s1", "s2"], ["s2", "s3"], ["s1", "s3", "s4"], ["s4"], ["s2", "s3", "s4"]]
    results = await asyncio.gather(
        *(admin(hub).patch(path, {"student_ids": ids}) for ids in wanted),
        admin(hub).post(f"{path}/members", {"student_ids": ["s2"]}),
    )
    assert [status for status, _ in results] == [200] * 6, results
    final = set(await members(hub, cohort["id"]))
    answers = [set(body["data"]["student_ids"]) for _, body in results]
    assert final in answers
