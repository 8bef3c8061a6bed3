"""Cohorts (classes of students) and their members."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Cohort, CohortMember, utcnow
from persistence.repositories.links import Existing, LinkChange, sync_links
from persistence.repositories.paging import Page, page_of


class Cohorts:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, cohort_id: str, *, for_update: bool = False) -> Cohort | None:
        """The cohort unless deleted."""
        query = select(Cohort).where(Cohort.id == cohort_id, Cohort.deleted_at.is_(None))
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self._db.execute(query)).scalar_one_or_none()

    async def named(self, center_id: str, name: str) -> Cohort | None:
        return await self._db.scalar(
            select(Cohort).where(
                Cohort.center_id == center_id, Cohort.name == name, Cohort.deleted_at.is_(None)
            )
        )

    def add(self, cohort: Cohort) -> None:
        self._db.add(cohort)

    def delete(self, cohort: Cohort, by: str) -> None:
        cohort.deleted_at = utcnow()
        cohort.deleted_by = by

    async def page(
        self, center_id: str | None, page: Page, *, student_id: str | None = None
    ) -> tuple[Sequence[Cohort], int]:
        conditions: list[ColumnElement[bool]] = [Cohort.deleted_at.is_(None)]
        if center_id is not None:
            conditions.append(Cohort.center_id == center_id)
        if student_id is not None:
            member_of = select(CohortMember.cohort_id).where(CohortMember.student_id == student_id)
            if center_id is not None:
                member_of = member_of.where(CohortMember.center_id == center_id)
            conditions.append(Cohort.id.in_(member_of))
        return await page_of(self._db, Cohort, conditions, (Cohort.name, Cohort.id), page)

    async def member_counts(self, cohort_ids: Iterable[str]) -> dict[str, int]:
        ids = list(cohort_ids)
        if not ids:
            return {}
        rows = await self._db.execute(
            select(CohortMember.cohort_id, func.count())
            .where(CohortMember.cohort_id.in_(ids))
            .group_by(CohortMember.cohort_id)
        )
        counts = {str(row[0]): int(row[1]) for row in rows}
        return {i: counts.get(i, 0) for i in ids}


class CohortMembers:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def page(self, cohort_id: str, page: Page) -> tuple[Sequence[CohortMember], int]:
        return await page_of(
            self._db,
            CohortMember,
            (CohortMember.cohort_id == cohort_id,),
            (CohortMember.created_at, CohortMember.student_id),
            page,
        )

    async def all(self, cohort_id: str) -> Sequence[CohortMember]:
        rows = await self._db.scalars(
            select(CohortMember)
            .where(CohortMember.cohort_id == cohort_id)
            .order_by(CohortMember.created_at, CohortMember.student_id)
        )
        return rows.all()

    async def cohorts_of(self, center_id: str, student_id: str) -> list[str]:
        """The ids of the live cohorts a student is in (for what a student sees through
        their cohorts, such as course sessions linked to them)."""
        rows = await self._db.scalars(
            select(CohortMember.cohort_id)
            .join(Cohort, Cohort.id == CohortMember.cohort_id)
            .where(
                CohortMember.center_id == center_id,
                CohortMember.student_id == student_id,
                Cohort.deleted_at.is_(None),
            )
            .order_by(CohortMember.cohort_id)
        )
        return list(rows)

    async def is_member(self, cohort_id: str, student_id: str) -> bool:
        found = await self._db.scalar(
            select(CohortMember.student_id).where(
                CohortMember.cohort_id == cohort_id, CohortMember.student_id == student_id
            )
        )
        return found is not None

    async def set(
        self, cohort: Cohort, student_ids: Iterable[str], *, by: str, students: Existing
    ) -> LinkChange:
        """Make the members exactly ``student_ids`` (see ``sync_links``): all or nothing,
        only the difference written. ``students`` says which ids are students of the center."""
        return await sync_links(
            self._db,
            CohortMember.student_id,
            [CohortMember.cohort_id == cohort.id],
            student_ids,
            existing=students,
            make=lambda student_id: CohortMember(
                cohort_id=cohort.id, student_id=student_id, center_id=cohort.center_id, added_by=by
            ),
        )
