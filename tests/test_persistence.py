"""Persistence on SQLite and Postgres: migrations, models, repositories."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, delete, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from persistence import migrate
from persistence.db import dispose, read_session_factory, session_factory
from persistence.models import (
    AttendanceInterval,
    Base,
    CanvasSnapshot,
    Enrollment,
    LiveSession,
)
from persistence.repositories import (
    AttendanceRepository,
    AuditLog,
    EnrollmentRepository,
    Page,
    SessionQuery,
    SessionRepository,
)
from tests.conftest import Database
from tests.support import WAITED_ON_THE_LOOP_S, longest_loop_turn, migrations_head

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

HEAD = migrations_head()


@pytest.fixture
def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


def a_session(center: str = "c1", tutor: str = "t1", start: datetime = T0) -> LiveSession:
    return LiveSession(
        center_id=center,
        title="Reading",
        tutor_id=tutor,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        status="SCHEDULED",
        max_students=5,
        settings={},
        created_by=tutor,
    )


async def test_migrations_build_exactly_the_models(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    assert await migrate.current_revision(engine) == HEAD


async def test_migrations_are_idempotent_and_reversible(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)  # already at head: nothing to do
    await migrate.downgrade(engine, "base")
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == HEAD


async def test_every_foreign_key_is_covered_by_an_index(engine: AsyncEngine) -> None:
    def uncovered(connection: Connection) -> list[str]:
        inspector = inspect(connection)
        missing = []
        for table in inspector.get_table_names():
            leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(table)}
            leading |= {
                tuple(uq["column_names"][:1]) for uq in inspector.get_unique_constraints(table)
            }
            # A primary key is backed by an index on both databases.
            leading.add(tuple(inspector.get_pk_constraint(table)["constrained_columns"][:1]))
            for fk in inspector.get_foreign_keys(table):
                if tuple(fk["constrained_columns"][:1]) not in leading:
                    missing.append(f"{table}.{fk['constrained_columns']}")
        return missing

    async with engine.connect() as conn:
        assert await conn.run_sync(uncovered) == []


async def test_every_table_carries_its_center() -> None:
    for table in Base.metadata.sorted_tables:
        assert "center_id" in table.columns, table.name
        assert not table.columns["center_id"].nullable, table.name


async def test_timestamps_come_back_aware_and_in_utc(db: async_sessionmaker[AsyncSession]) -> None:
    plus_two = T0.astimezone(ZoneInfo("Africa/Cairo"))
    async with db.begin() as s:
        row = a_session(start=plus_two)
        s.add(row)
    async with db() as s:
        loaded = await SessionRepository(s).get(row.id)
    assert loaded is not None
    assert loaded.starts_at == T0 and loaded.starts_at.utcoffset() == timedelta(0)
    assert loaded.created_at.tzinfo is not None


async def test_read_sessions_read_what_writers_committed(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    """On SQLite the reads run on the event loop through the standard driver, a
    connection pool of their own: they must see each commit, read while a writer
    holds the lock (WAL), and give back aware timestamps and JSON as the ORM does."""
    reads = read_session_factory(engine)
    async with db.begin() as s:
        first = a_session()
        first.settings = {"idle_after_s": 30}
        s.add(first)
    async with reads() as s:
        loaded = await SessionRepository(s).get(first.id)
    assert loaded is not None
    assert (loaded.starts_at, loaded.settings) == (T0, {"idle_after_s": 30})

    async with db.begin() as s:  # a writer holds the lock...
        second = a_session(tutor="t2")
        s.add(second)
        await s.flush()
        async with reads() as r:  # ...and a read sees the last commit, at once
            rows = (await r.scalars(select(LiveSession.tutor_id))).all()
        assert rows == ["t1"]
    async with reads() as r:
        rows = (await r.scalars(select(LiveSession.tutor_id).order_by(LiveSession.tutor_id))).all()
    assert rows == ["t1", "t2"]
    await dispose(engine)  # closes the read pool too; the engine reconnects on use
    async with reads() as r:
        assert await r.get(LiveSession, second.id) is not None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_write_that_finds_the_sqlite_lock_taken_waits_off_the_loop(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], database: Database
) -> None:
    """Write transactions run on the loop when the lock is free; when another
    connection holds it, they wait on aiosqlite's thread, and the loop runs on."""
    async with db.begin() as s:  # on the loop
        s.add(a_session(tutor="t1"))
    other = sqlite3.connect(database.url.split(":///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with db.begin() as s:
            s.add(a_session(tutor="t2"))

    writing = asyncio.create_task(write())
    assert await longest_loop_turn() < WAITED_ON_THE_LOOP_S  # nobody waited on the loop
    assert not writing.done()
    other.execute("ROLLBACK")
    other.close()
    await asyncio.wait_for(writing, 10)
    with pytest.raises(IntegrityError):  # a failed transaction on the loop rolls back whole
        async with db.begin() as s:
            s.add(a_session(tutor="t3"))
            await s.flush()
            s.add(Enrollment(center_id="c9", session_id="no-such-session", student_id="s1"))
    async with db() as s:
        tutors = (
            await s.scalars(select(LiveSession.tutor_id).order_by(LiveSession.tutor_id))
        ).all()
    assert tutors == ["t1", "t2"]


async def test_naive_datetimes_are_refused(db: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        async with db.begin() as s:
            s.add(a_session(start=datetime(2026, 11, 22, 9)))


async def test_session_query_filters_and_pages(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        rows = [
            a_session("c1", "t1", T0),
            a_session("c1", "t2", T0 + timedelta(hours=2)),
            a_session("c1", "t1", T0 + timedelta(days=1)),
            a_session("c2", "t1", T0),
        ]
        s.add_all(rows)
        await s.flush()
        s.add(Enrollment(center_id="c1", session_id=rows[1].id, student_id="s1", completed=False))
    async with db() as s:
        repo = SessionRepository(s)
        found, total = await repo.list(SessionQuery(center_id="c1"), Page(1, 2))
        assert total == 3 and [r.id for r in found] == [rows[0].id, rows[1].id]
        found, total = await repo.list(
            SessionQuery(
                center_id="c1", tutor_id="t1", starts_from=T0, starts_before=T0 + timedelta(days=1)
            ),
            Page(1, 10),
        )
        assert [r.id for r in found] == [rows[0].id]
        found, _ = await repo.list(SessionQuery(student_ids=("s1",)), Page(1, 10))
        assert [r.id for r in found] == [rows[1].id]


async def test_one_enrollment_per_student_is_enforced_by_the_database(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        session = a_session()
        s.add(session)
    with pytest.raises(IntegrityError):
        async with db.begin() as s:
            for _ in range(2):
                s.add(
                    Enrollment(
                        center_id="c1", session_id=session.id, student_id="s1", completed=False
                    )
                )


async def test_deleting_a_session_cascades(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        session = a_session()
        s.add(session)
        await s.flush()
        s.add(Enrollment(center_id="c1", session_id=session.id, student_id="s1", completed=False))
        s.add(
            AttendanceInterval(center_id="c1", session_id=session.id, student_id="s1", joined_at=T0)
        )
        s.add(
            CanvasSnapshot(
                center_id="c1",
                session_id=session.id,
                student_id="s1",
                seq=3,
                epoch="e1",
                doc={"elements": {}, "annotations": {}, "meta": {}},
            )
        )
    async with db.begin() as s:
        await s.execute(delete(LiveSession).where(LiveSession.id == session.id))
    async with db() as s:
        for model in (Enrollment, AttendanceInterval, CanvasSnapshot):
            assert (await s.scalars(select(model))).all() == [], model.__name__


async def test_attendance_totals_sum_closed_intervals_and_the_open_one(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        session = a_session()
        s.add(session)
    async with db.begin() as s:
        repo = AttendanceRepository(s)
        await repo.open_interval(center_id="c1", session_id=session.id, student_id="s1", at=T0)
        await repo.close_open(session_id=session.id, student_id="s1", at=T0 + timedelta(minutes=10))
        await repo.open_interval(
            center_id="c1", session_id=session.id, student_id="s1", at=T0 + timedelta(minutes=15)
        )
        # A crash can leave an interval open; opening again closes it first.
        await repo.open_interval(
            center_id="c1", session_id=session.id, student_id="s1", at=T0 + timedelta(minutes=20)
        )
    async with db() as s:
        repo = AttendanceRepository(s)
        totals = await repo.totals(session.id, "s1")
        now = T0 + timedelta(minutes=30)
        assert totals.first_joined_at == T0
        assert totals.current_since == T0 + timedelta(minutes=20)
        assert totals.closed_seconds == 15 * 60
        assert totals.session_time_s(now) == 10 * 60
        assert totals.total_time_s(now) == 25 * 60
        both = await repo.totals_by_student(session.id, ["s1", "s2"])
        assert both["s2"].first_joined_at is None and both["s2"].total_time_s(now) == 0


async def test_audit_entries_are_kept_in_order(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        log = AuditLog(s)
        for action in ("session.create", "session.update"):
            log.record(
                center_id="c1",
                actor_id="t1",
                actor_role="TUTOR",
                action=action,
                target_type="session",
                target_id="x",
                ip="127.0.0.1",
                details={"k": [1, 2]},
            )
    async with db() as s:
        entries = await AuditLog(s).for_target("session", "x")
    assert [e.action for e in entries] == ["session.create", "session.update"]
    assert entries[0].details == {"k": [1, 2]}


async def test_enrollment_counts(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        session = a_session()
        s.add(session)
        await s.flush()
        repo = EnrollmentRepository(s)
        for n in range(3):
            repo.add(
                Enrollment(
                    center_id="c1", session_id=session.id, student_id=f"s{n}", completed=False
                )
            )
    async with db() as s:
        repo = EnrollmentRepository(s)
        assert await repo.count(session.id) == 3
        assert [e.student_id for e in await repo.for_session(session.id)] == ["s0", "s1", "s2"]
