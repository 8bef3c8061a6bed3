"""``sync_links``, the many-to-many piece behind every create-with-ids and differential
PATCH: on both databases, in the caller's transaction, only the difference, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from persistence.db import session_factory
from persistence.models import Cohort, CohortMember, TutorSubject
from persistence.repositories import (
    CohortMembers,
    Cohorts,
    LinkChange,
    PeopleRepository,
    Seen,
    TutorSubjects,
    UnknownIds,
    people_in_role,
    sync_links,
)

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


class Injected(Exception):
    pass


@pytest.fixture
async def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    factory = session_factory(engine)
    async with factory.begin() as s:
        await PeopleRepository(s).seen(
            [Seen("c1", f"s{i}", "STUDENT", None, None) for i in range(1, 6)]
            + [Seen("c1", "t1", "TUTOR", None, None), Seen("c2", "x1", "STUDENT", None, None)],
            T0,
        )
    return factory


async def a_cohort(db: async_sessionmaker[AsyncSession], students: list[str]) -> Cohort:
    async with db.begin() as s:
        cohort = Cohort(center_id="c1", name="A", created_by="admin")
        s.add(cohort)
        await s.flush()
        await CohortMembers(s).set(
            cohort, students, by="admin", students=people_in_role(s, "c1", "STUDENT")
        )
    return cohort


async def rows(db: async_sessionmaker[AsyncSession]) -> dict[str, CohortMember]:
    async with db() as s:
        return {m.student_id: m for m in await s.scalars(select(CohortMember))}


async def sync(
    s: AsyncSession,
    cohort: Cohort,
    wanted: list[str],
    make: Callable[[str], CohortMember] | None = None,
) -> LinkChange:
    return await sync_links(
        s,
        CohortMember.student_id,
        [CohortMember.cohort_id == cohort.id],
        wanted,
        existing=people_in_role(s, "c1", "STUDENT"),
        make=make
        or (
            lambda i: CohortMember(cohort_id=cohort.id, student_id=i, center_id="c1", added_by="b")
        ),
    )


async def test_only_the_difference_is_written(db: async_sessionmaker[AsyncSession]) -> None:
    cohort = await a_cohort(db, ["s1", "s2", "s3"])
    before = await rows(db)
    async with db.begin() as s:
        change = await sync(s, cohort, ["s3", "s4", "s2", "s5", "s4"])
    assert change == LinkChange(added=("s4", "s5"), removed=("s1",), kept=("s3", "s2"))
    after = await rows(db)
    assert set(after) == {"s2", "s3", "s4", "s5"}
    for kept in ("s2", "s3"):
        assert (after[kept].created_at, after[kept].added_by) == (
            before[kept].created_at,
            "admin",
        )
    assert after["s4"].added_by == "b"
    async with db.begin() as s:
        same = await sync(s, cohort, ["s2", "s3", "s4", "s5"])
    assert not same.changed


async def test_unknown_ids_are_named_before_anything_is_written(
    db: async_sessionmaker[AsyncSession],
) -> None:
    cohort = await a_cohort(db, ["s1"])
    with pytest.raises(UnknownIds) as raised:
        async with db.begin() as s:
            await sync(s, cohort, ["s2", "nobody", "t1", "x1"])
    assert raised.value.ids == ("nobody", "t1", "x1")
    assert set(await rows(db)) == {"s1"}


async def test_a_failure_after_the_first_write_rolls_everything_back(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """The delete of the removed links runs first; a failure while the added ones are
    built (after that write) leaves the links as they were."""
    cohort = await a_cohort(db, ["s1", "s2"])
    before = await rows(db)
    deleted_first: list[bool] = []

    def make(student_id: str) -> CohortMember:
        if student_id == "s4":
            raise Injected
        return CohortMember(
            cohort_id=cohort.id, student_id=student_id, center_id="c1", added_by="b"
        )

    with pytest.raises(Injected):
        async with db.begin() as s:
            try:
                await sync(s, cohort, ["s3", "s4"], make)
            finally:
                left = await s.scalars(select(CohortMember.student_id))
                deleted_first.append(set(left) == set())
    assert deleted_first == [True]  # the delete had run inside the transaction
    after = await rows(db)
    assert {k: v.created_at for k, v in after.items()} == {
        k: v.created_at for k, v in before.items()
    }


async def test_a_failure_after_the_owner_is_written_leaves_no_owner_and_no_links(
    db: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(Injected):
        async with db.begin() as s:
            cohort = Cohort(center_id="c1", name="B", created_by="admin")
            s.add(cohort)
            await s.flush()  # the first write
            await sync(s, cohort, ["s1", "s2"])  # and the links
            raise Injected
    async with db() as s:
        assert list(await s.scalars(select(Cohort))) == []
    assert await rows(db) == {}


async def test_the_junction_keys_one_link_per_pair_and_cascades(
    db: async_sessionmaker[AsyncSession],
) -> None:
    cohort = await a_cohort(db, ["s1"])
    with pytest.raises(IntegrityError):
        async with db.begin() as s:
            s.add(CohortMember(cohort_id=cohort.id, student_id="s1", center_id="c1", added_by="b"))
    async with db.begin() as s:
        await s.delete(await s.get(Cohort, cohort.id))
    assert await rows(db) == {}


async def test_a_tutors_subjects_reuse_it(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        await TutorSubjects(s).replace("c1", "t1", {"Math": "A-level", "Physics": None})
    async with db() as s:
        before = {r.subject: r for r in await TutorSubjects(s).of("c1", "t1")}
    async with db.begin() as s:
        change = await TutorSubjects(s).replace("c1", "t1", {"Math": "IB", "Chemistry": "GCSE"})
    assert (change.added, change.removed, change.kept) == (("Chemistry",), ("Physics",), ("Math",))
    async with db() as s:
        after = {r.subject: r for r in await TutorSubjects(s).of("c1", "t1")}
        other = await s.scalars(select(TutorSubject).where(TutorSubject.center_id == "c2"))
        assert list(other) == []
    assert set(after) == {"Math", "Chemistry"}
    assert (after["Math"].id, after["Math"].level) == (before["Math"].id, "IB")
    assert after["Math"].created_at == before["Math"].created_at


async def test_a_students_live_cohorts(db: async_sessionmaker[AsyncSession]) -> None:
    kept = await a_cohort(db, ["s1", "s2"])
    async with db.begin() as s:
        gone = Cohort(center_id="c1", name="Gone", created_by="admin")
        s.add(gone)
        await s.flush()
        s.add(CohortMember(cohort_id=gone.id, student_id="s1", center_id="c1", added_by="a"))
        Cohorts(s).delete(gone, by="admin")
    async with db() as s:
        members = CohortMembers(s)
        assert await members.cohorts_of("c1", "s1") == [kept.id]
        assert await members.cohorts_of("c2", "s1") == []
        assert await members.cohorts_of("c1", "s3") == []
