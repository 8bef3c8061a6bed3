"""Live sessions and their enrollments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    Enrollment,
    LiveSession,
)
from persistence.repositories.paging import Page, page_of


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters for listing sessions; ``None`` means "any"."""

    center_id: str | None = None
    tutor_id: str | None = None
    status: str | None = None
    starts_from: datetime | None = None
    starts_before: datetime | None = None
    # Sessions any of these students is enrolled in (a student: their own; a parent:
    # their children's).
    student_ids: tuple[str, ...] | None = None


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
    if query.student_ids is not None:
        enrolled = select(Enrollment.session_id).where(Enrollment.student_id.in_(query.student_ids))
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

    async def enrolled_among(self, session_id: str, student_ids: Sequence[str]) -> list[str]:
        """Which of ``student_ids`` are enrolled in the session."""
        if not student_ids:
            return []
        rows = await self._db.scalars(
            select(Enrollment.student_id).where(
                Enrollment.session_id == session_id, Enrollment.student_id.in_(student_ids)
            )
        )
        return list(rows)

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
