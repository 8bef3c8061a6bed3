"""Attendance: the connected intervals of each student, and the record staff see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    AttendanceInterval,
    AttendanceRecord,
    AttendanceStatus,
)

# Core tables, for executemany updates that skip the ORM's per-row bookkeeping.
INTERVALS: Table = AttendanceInterval.__table__  # type: ignore[assignment]
RECORDS: Table = AttendanceRecord.__table__  # type: ignore[assignment]


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
