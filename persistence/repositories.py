"""Repositories: the queries the hub runs, one class per aggregate.

Each takes an ``AsyncSession`` owned by the caller, so a change and its audit
entry commit in one transaction. None of them checks permissions; callers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    AttendanceInterval,
    AttendanceRecord,
    AttendanceStatus,
    AuditEntry,
    CanvasOp,
    CanvasSnapshot,
    Enrollment,
    LiveSession,
)

# Core tables, for executemany updates that skip the ORM's per-row bookkeeping.
INTERVALS: Table = AttendanceInterval.__table__  # type: ignore[assignment]
RECORDS: Table = AttendanceRecord.__table__  # type: ignore[assignment]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters for listing sessions; ``None`` means "any"."""

    center_id: str | None = None
    tutor_id: str | None = None
    status: str | None = None
    starts_from: datetime | None = None
    starts_before: datetime | None = None
    student_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


async def page_of(
    db: AsyncSession,
    model: type[T],
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    page: Page,
) -> tuple[Sequence[T], int]:
    """One page of ``model`` rows matching ``conditions``, and how many match in all."""
    total = await db.scalar(select(func.count()).select_from(model).where(*conditions))
    rows = await db.scalars(
        select(model).where(*conditions).order_by(*order_by).offset(page.offset).limit(page.size)
    )
    return rows.all(), int(total or 0)


class SessionRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, session_id: str, *, for_update: bool = False) -> LiveSession | None:
        query = select(LiveSession).where(LiveSession.id == session_id)
        if for_update:
            # Re-read the row under the lock even if this session already holds it.
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self._db.execute(query)).scalar_one_or_none()

    def add(self, session: LiveSession) -> None:
        self._db.add(session)

    async def list(self, query: SessionQuery, page: Page) -> tuple[Sequence[LiveSession], int]:
        return await page_of(
            self._db,
            LiveSession,
            _session_conditions(query),
            (LiveSession.starts_at, LiveSession.id),
            page,
        )


def _session_conditions(query: SessionQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.center_id is not None:
        conditions.append(LiveSession.center_id == query.center_id)
    if query.tutor_id is not None:
        conditions.append(LiveSession.tutor_id == query.tutor_id)
    if query.status is not None:
        conditions.append(LiveSession.status == query.status)
    if query.starts_from is not None:
        conditions.append(LiveSession.starts_at >= query.starts_from)
    if query.starts_before is not None:
        conditions.append(LiveSession.starts_at < query.starts_before)
    if query.student_id is not None:
        enrolled = select(Enrollment.session_id).where(Enrollment.student_id == query.student_id)
        conditions.append(LiveSession.id.in_(enrolled))
    return conditions


class EnrollmentRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, session_id: str, student_id: str) -> Enrollment | None:
        return (
            await self._db.execute(
                select(Enrollment).where(
                    Enrollment.session_id == session_id, Enrollment.student_id == student_id
                )
            )
        ).scalar_one_or_none()

    async def for_session(self, session_id: str) -> Sequence[Enrollment]:
        rows = await self._db.scalars(
            select(Enrollment)
            .where(Enrollment.session_id == session_id)
            .order_by(Enrollment.created_at, Enrollment.id)
        )
        return rows.all()

    async def page(self, session_id: str, page: Page) -> tuple[Sequence[Enrollment], int]:
        return await page_of(
            self._db,
            Enrollment,
            (Enrollment.session_id == session_id,),
            (Enrollment.created_at, Enrollment.id),
            page,
        )

    async def count(self, session_id: str) -> int:
        total = await self._db.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.session_id == session_id)
        )
        return int(total or 0)

    def add(self, enrollment: Enrollment) -> None:
        self._db.add(enrollment)

    async def delete(self, enrollment: Enrollment) -> None:
        await self._db.delete(enrollment)


@dataclass(frozen=True, slots=True)
class AttendanceTotals:
    """A student's connected time in one session."""

    first_joined_at: datetime | None
    current_since: datetime | None  # start of the open interval, if connected
    closed_seconds: float  # sum of the finished intervals

    def session_time_s(self, now: datetime) -> float:
        """Time in the current stretch (0 when not connected)."""
        return (now - self.current_since).total_seconds() if self.current_since else 0.0

    def total_time_s(self, now: datetime) -> float:
        return self.closed_seconds + self.session_time_s(now)


class AttendanceRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def open_interval(
        self, *, center_id: str, session_id: str, student_id: str, at: datetime
    ) -> None:
        """Start a connected stretch, closing any left open (a crash leaves one behind)."""
        await self.close_open(session_id=session_id, student_id=student_id, at=at)
        self._db.add(
            AttendanceInterval(
                center_id=center_id, session_id=session_id, student_id=student_id, joined_at=at
            )
        )

    async def close_open(self, *, session_id: str, student_id: str, at: datetime) -> None:
        await self._db.execute(
            update(AttendanceInterval)
            .where(
                AttendanceInterval.session_id == session_id,
                AttendanceInterval.student_id == student_id,
                AttendanceInterval.left_at.is_(None),
            )
            .values(left_at=at)
        )

    async def close_open_many(self, students: Sequence[tuple[str, str]], at: datetime) -> None:
        """``close_open`` for many (session_id, student_id) pairs in one executemany."""
        table = INTERVALS
        await self._db.execute(
            update(table)
            .where(
                table.c.session_id == bindparam("s"),
                table.c.student_id == bindparam("u"),
                table.c.left_at.is_(None),
            )
            .values(left_at=at),
            [{"s": s, "u": u} for s, u in students],
        )

    async def totals(self, session_id: str, student_id: str) -> AttendanceTotals:
        return (await self.totals_by_student(session_id, [student_id]))[student_id]

    async def totals_by_student(
        self, session_id: str, student_ids: Sequence[str]
    ) -> dict[str, AttendanceTotals]:
        """Each listed student's connected time in the session, in one query."""
        rows = (
            await self._db.execute(
                select(
                    AttendanceInterval.student_id,
                    AttendanceInterval.joined_at,
                    AttendanceInterval.left_at,
                )
                .where(
                    AttendanceInterval.session_id == session_id,
                    AttendanceInterval.student_id.in_(student_ids),
                )
                .order_by(AttendanceInterval.joined_at, AttendanceInterval.id)
            )
        ).all()
        first: dict[str, datetime] = {}
        closed: dict[str, float] = {}
        open_since: dict[str, datetime] = {}
        for student_id, joined, left in rows:
            first.setdefault(student_id, joined)
            if left is None:
                open_since[student_id] = joined
            else:
                closed[student_id] = closed.get(student_id, 0.0) + (left - joined).total_seconds()
        return {
            student_id: AttendanceTotals(
                first_joined_at=first.get(student_id),
                current_since=open_since.get(student_id),
                closed_seconds=closed.get(student_id, 0.0),
            )
            for student_id in student_ids
        }


class AuditLog:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    def record(
        self,
        *,
        center_id: str,
        actor_id: str,
        actor_role: str,
        action: str,
        target_type: str,
        target_id: str,
        ip: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._db.add(
            AuditEntry(
                center_id=center_id,
                actor_id=actor_id,
                actor_role=actor_role,
                action=action,
                target_type=target_type,
                target_id=target_id,
                ip=ip,
                details=details,
            )
        )

    async def for_target(self, target_type: str, target_id: str) -> Sequence[AuditEntry]:
        rows = await self._db.scalars(
            select(AuditEntry)
            .where(AuditEntry.target_type == target_type, AuditEntry.target_id == target_id)
            .order_by(AuditEntry.id)
        )
        return rows.all()


@dataclass(frozen=True, slots=True)
class StoredCanvas:
    """What the database holds for one canvas: its latest snapshot and the ops after it."""

    snapshot_seq: int
    snapshot_doc: dict[str, Any] | None
    epoch: str | None
    ops: Sequence[CanvasOp]


class CanvasRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def load(
        self, session_id: str, student_id: str, *, upto: int | None = None
    ) -> StoredCanvas:
        """The latest snapshot at or before ``upto`` (default: any) and the ops after it."""
        snap_query = select(CanvasSnapshot).where(
            CanvasSnapshot.session_id == session_id, CanvasSnapshot.student_id == student_id
        )
        if upto is not None:
            snap_query = snap_query.where(CanvasSnapshot.seq <= upto)
        snapshot = (
            await self._db.scalars(
                snap_query.order_by(CanvasSnapshot.seq.desc(), CanvasSnapshot.id.desc()).limit(1)
            )
        ).first()
        after = snapshot.seq if snapshot is not None else 0
        ops_query = select(CanvasOp).where(
            CanvasOp.session_id == session_id,
            CanvasOp.student_id == student_id,
            CanvasOp.seq > after,
        )
        if upto is not None:
            ops_query = ops_query.where(CanvasOp.seq <= upto)
        ops = (await self._db.scalars(ops_query.order_by(CanvasOp.seq))).all()
        epoch = ops[-1].epoch if ops else snapshot.epoch if snapshot is not None else None
        return StoredCanvas(
            snapshot_seq=after,
            snapshot_doc=snapshot.doc if snapshot is not None else None,
            epoch=epoch,
            ops=ops,
        )

    async def recent_ops(self, session_id: str, student_id: str, limit: int) -> Sequence[CanvasOp]:
        """The last ``limit`` ops of a canvas, oldest first."""
        rows = (
            await self._db.scalars(
                select(CanvasOp)
                .where(CanvasOp.session_id == session_id, CanvasOp.student_id == student_id)
                .order_by(CanvasOp.seq.desc())
                .limit(limit)
            )
        ).all()
        return rows[::-1]

    async def ops_between(
        self, session_id: str, student_id: str, first: int, last: int
    ) -> Sequence[CanvasOp]:
        """The ops of a canvas from seq ``first`` to ``last``, in seq order."""
        query = select(CanvasOp).where(
            CanvasOp.session_id == session_id,
            CanvasOp.student_id == student_id,
            CanvasOp.seq.between(first, last),
        )
        return (await self._db.scalars(query.order_by(CanvasOp.seq))).all()

    async def add_ops_keeping_stored(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``canvas_ops`` rows; a row already stored at the same seq of the same
        canvas is kept (the insert skips it, on Postgres and SQLite alike)."""
        bind = self._db.get_bind()
        dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(CanvasOp).on_conflict_do_nothing(
            index_elements=["session_id", "student_id", "seq"]
        )
        await self._db.execute(insert, list(rows))

    async def snapshots(
        self, session_id: str, student_id: str, page: Page
    ) -> tuple[Sequence[CanvasSnapshot], int]:
        return await page_of(
            self._db,
            CanvasSnapshot,
            (CanvasSnapshot.session_id == session_id, CanvasSnapshot.student_id == student_id),
            (CanvasSnapshot.seq.desc(), CanvasSnapshot.id.desc()),
            page,
        )


class AttendanceRecords:
    """Attendance per student and session: derived from joins unless marked by staff."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, session_id: str, student_id: str) -> AttendanceRecord | None:
        return (
            await self._db.scalars(
                select(AttendanceRecord).where(
                    AttendanceRecord.session_id == session_id,
                    AttendanceRecord.student_id == student_id,
                )
            )
        ).first()

    async def for_session(self, session_id: str) -> dict[str, AttendanceRecord]:
        rows = await self._db.scalars(
            select(AttendanceRecord).where(AttendanceRecord.session_id == session_id)
        )
        return {r.student_id: r for r in rows}

    async def joined(
        self,
        *,
        center_id: str,
        session_id: str,
        student_id: str,
        at: datetime,
        late_from: datetime,
    ) -> AttendanceRecord:
        """A student came online: their first join sets PRESENT or LATE (unless marked)."""
        status = (AttendanceStatus.LATE if at > late_from else AttendanceStatus.PRESENT).value
        record = await self.get(session_id, student_id)
        if record is None:
            record = AttendanceRecord(
                center_id=center_id,
                session_id=session_id,
                student_id=student_id,
                status=status,
                first_joined_at=at,
            )
            self._db.add(record)
        elif record.first_joined_at is None:
            record.first_joined_at = at
            if record.marked_by is None:
                record.status = status
        record.last_left_at = None
        return record

    async def left_many(self, students: Sequence[tuple[str, str]], at: datetime) -> None:
        """``left`` for many (session_id, student_id) pairs in one executemany."""
        table = RECORDS
        await self._db.execute(
            update(table)
            .where(table.c.session_id == bindparam("s"), table.c.student_id == bindparam("u"))
            .values(last_left_at=at),
            [{"s": s, "u": u} for s, u in students],
        )

    async def left(self, session_id: str, student_id: str, at: datetime) -> AttendanceRecord | None:
        record = await self.get(session_id, student_id)
        if record is not None:
            record.last_left_at = at
        return record
