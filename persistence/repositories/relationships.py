"""Tutor-student relationships and tutors' subjects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import TutorStudent, TutorSubject
from persistence.repositories.links import LinkChange, sync_links
from persistence.repositories.paging import Page, page_of


@dataclass(frozen=True, slots=True)
class RelationshipQuery:
    """Filters for listing relationships; ``None`` means "any"."""

    center_id: str | None = None
    tutor_id: str | None = None
    student_id: str | None = None
    subject: str | None = None
    active: bool | None = None


class Relationships:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, relationship_id: str, *, for_update: bool = False) -> TutorStudent | None:
        query = select(TutorStudent).where(TutorStudent.id == relationship_id)
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self._db.execute(query)).scalar_one_or_none()

    async def active_one(
        self, center_id: str, tutor_id: str, student_id: str, subject: str
    ) -> TutorStudent | None:
        return await self._db.scalar(
            select(TutorStudent).where(
                TutorStudent.center_id == center_id,
                TutorStudent.tutor_id == tutor_id,
                TutorStudent.student_id == student_id,
                TutorStudent.subject == subject,
                TutorStudent.active.is_(True),
            )
        )

    def add(self, relationship: TutorStudent) -> None:
        self._db.add(relationship)

    async def page(
        self, query: RelationshipQuery, page: Page
    ) -> tuple[Sequence[TutorStudent], int]:
        conditions: list[ColumnElement[bool]] = []
        if query.center_id is not None:
            conditions.append(TutorStudent.center_id == query.center_id)
        if query.tutor_id is not None:
            conditions.append(TutorStudent.tutor_id == query.tutor_id)
        if query.student_id is not None:
            conditions.append(TutorStudent.student_id == query.student_id)
        if query.subject is not None:
            conditions.append(TutorStudent.subject == query.subject)
        if query.active is not None:
            conditions.append(TutorStudent.active.is_(query.active))
        order = (TutorStudent.active.desc(), TutorStudent.start_date.desc(), TutorStudent.id)
        return await page_of(self._db, TutorStudent, conditions, order, page)


class TutorSubjects:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def of(self, center_id: str, tutor_id: str) -> Sequence[TutorSubject]:
        rows = await self._db.scalars(
            select(TutorSubject)
            .where(TutorSubject.center_id == center_id, TutorSubject.tutor_id == tutor_id)
            .order_by(TutorSubject.subject)
        )
        return rows.all()

    async def replace(
        self, center_id: str, tutor_id: str, levels: dict[str, str | None]
    ) -> LinkChange:
        """Make the tutor's subjects exactly ``levels`` (subject -> level): subjects kept
        keep their rows (their level updated), others are added or removed."""

        async def any_subject(subjects: Sequence[str]) -> Sequence[str]:
            return subjects

        owner = [TutorSubject.center_id == center_id, TutorSubject.tutor_id == tutor_id]
        change = await sync_links(
            self._db,
            TutorSubject.subject,
            owner,
            levels,
            existing=any_subject,
            make=lambda subject: TutorSubject(
                center_id=center_id, tutor_id=tutor_id, subject=subject, level=levels[subject]
            ),
        )
        if change.kept:
            for row in await self.of(center_id, tutor_id):
                if row.subject in change.kept and row.level != levels[row.subject]:
                    row.level = levels[row.subject]
        return change
