"""One student's session as stored, for the replay timeline: every row with a time that
concerns them, and their canvas's op log a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    Alert,
    AttendanceInterval,
    AuditEntry,
    CanvasOp,
    CanvasSnapshot,
    EnrollmentEvent,
    ExerciseAttempt,
    HelpRequest,
    Timer,
)

# The audit action of a staff attendance mark (rest/attendance.py).
ATTENDANCE_MARK = "attendance.mark"


@dataclass(frozen=True, slots=True)
class StudentRows:
    """What the database holds about one student in one session, the canvas aside."""

    help: Sequence[HelpRequest]
    alerts: Sequence[Alert]
    events: Sequence[EnrollmentEvent]
    intervals: Sequence[AttendanceInterval]
    # Staff attendance marks naming this student (the audit log keeps each mark).
    marks: Sequence[tuple[AuditEntry, str]]
    attempts: Sequence[ExerciseAttempt]
    # The student's own timers and the whole session's.
    timers: Sequence[Timer]


class StudentHistory:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def rows(self, session_id: str, student_id: str) -> StudentRows:
        help = await self._db.scalars(
            select(HelpRequest).where(
                HelpRequest.session_id == session_id, HelpRequest.student_id == student_id
            )
        )
        alerts = await self._db.scalars(
            select(Alert).where(Alert.session_id == session_id, Alert.student_id == student_id)
        )
        events = await self._db.scalars(
            select(EnrollmentEvent).where(
                EnrollmentEvent.session_id == session_id, EnrollmentEvent.student_id == student_id
            )
        )
        intervals = await self._db.scalars(
            select(AttendanceInterval).where(
                AttendanceInterval.session_id == session_id,
                AttendanceInterval.student_id == student_id,
            )
        )
        audit = await self._db.scalars(
            select(AuditEntry).where(
                AuditEntry.target_type == "session",
                AuditEntry.target_id == session_id,
                AuditEntry.action == ATTENDANCE_MARK,
            )
        )
        marks = [
            (entry, str(status))
            for entry in audit
            if (status := ((entry.details or {}).get("marks") or {}).get(student_id)) is not None
        ]
        attempts = await self._db.scalars(
            select(ExerciseAttempt).where(
                ExerciseAttempt.session_id == session_id, ExerciseAttempt.student_id == student_id
            )
        )
        timers = await self._db.scalars(
            select(Timer).where(
                Timer.session_id == session_id,
                or_(Timer.student_id == student_id, Timer.student_id.is_(None)),
            )
        )
        return StudentRows(
            help=help.all(),
            alerts=alerts.all(),
            events=events.all(),
            intervals=intervals.all(),
            marks=marks,
            attempts=attempts.all(),
            timers=timers.all(),
        )

    async def patches_after(
        self, session_id: str, student_id: str, after_seq: int, limit: int
    ) -> Sequence[CanvasOp]:
        """At most ``limit`` ops of the canvas after ``after_seq``, in seq order."""
        query = (
            select(CanvasOp)
            .where(
                CanvasOp.session_id == session_id,
                CanvasOp.student_id == student_id,
                CanvasOp.seq > after_seq,
            )
            .order_by(CanvasOp.seq)
            .limit(limit)
        )
        return (await self._db.scalars(query)).all()

    async def first_seq(self, session_id: str, student_id: str) -> int | None:
        """The lowest seq the op log still holds (None: no op stored)."""
        first: int | None = await self._db.scalar(
            select(func.min(CanvasOp.seq)).where(
                CanvasOp.session_id == session_id, CanvasOp.student_id == student_id
            )
        )
        return first

    async def snapshot_from(
        self, session_id: str, student_id: str, seq: int
    ) -> CanvasSnapshot | None:
        """The earliest snapshot at or after ``seq``."""
        query = (
            select(CanvasSnapshot)
            .where(
                CanvasSnapshot.session_id == session_id,
                CanvasSnapshot.student_id == student_id,
                CanvasSnapshot.seq >= seq,
            )
            .order_by(CanvasSnapshot.seq, CanvasSnapshot.id)
            .limit(1)
        )
        return (await self._db.scalars(query)).first()
