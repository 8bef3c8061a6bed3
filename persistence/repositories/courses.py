"""Course sessions, their enrollments, announcements and settings.

Every query leaves soft-deleted rows out. A course session's status is read
through ``effective_status``: past its ``end_date`` with ``auto_expire_enabled``
it is EXPIRED at once, whatever the stored status says.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    SEATED,
    AttendanceRecord,
    Cohort,
    CourseSession,
    CourseSessionAnnouncement,
    CourseSessionCohort,
    CourseSessionEnrollment,
    CourseSessionSettings,
    CourseSessionStatus,
    LiveSession,
)
from persistence.repositories.links import LinkChange, sync_links
from persistence.repositories.paging import Page


def effective_status(now: datetime) -> ColumnElement[str]:
    """The status a course session reads as at ``now`` (SQL; see CourseSession.effective_status)."""
    return case(
        (
            and_(CourseSession.auto_expire_enabled.is_(True), CourseSession.end_date <= now),
            CourseSessionStatus.EXPIRED.value,
        ),
        else_=CourseSession.status,
    )


SORTABLE: dict[str, Any] = {
    "course_session_id": CourseSession.id,
    "session_name": CourseSession.session_name,
    "start_date": CourseSession.start_date,
    "end_date": CourseSession.end_date,
    "created_at": CourseSession.created_at,
    "updated_at": CourseSession.updated_at,
}


@dataclass(frozen=True, slots=True)
class CourseSessionQuery:
    """Filters for listing course sessions; ``None`` means "any"."""

    now: datetime
    center_id: str | None = None
    teacher_id: str | None = None
    course_id: str | None = None
    status: str | None = None
    starts_after: datetime | None = None
    ends_before: datetime | None = None
    sort_by: str = "created_at"
    descending: bool = True


class CourseSessionRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, session_id: str, *, for_update: bool = False) -> CourseSession | None:
        query = select(CourseSession).where(
            CourseSession.id == session_id, CourseSession.is_deleted.is_(False)
        )
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self._db.execute(query)).scalar_one_or_none()

    async def by_code(self, code: str) -> CourseSession | None:
        return await self._db.scalar(
            select(CourseSession).where(
                CourseSession.session_code == code, CourseSession.is_deleted.is_(False)
            )
        )

    async def code_taken(self, code: str) -> bool:
        found = await self._db.scalar(
            select(CourseSession.id).where(CourseSession.session_code == code)
        )
        return found is not None

    async def name_taken(
        self, center_id: str, teacher_id: str, course_id: str, name: str, *, but: str | None = None
    ) -> bool:
        query = select(CourseSession.id).where(
            CourseSession.center_id == center_id,
            CourseSession.teacher_id == teacher_id,
            CourseSession.course_id == course_id,
            CourseSession.session_name == name,
            CourseSession.is_deleted.is_(False),
        )
        if but is not None:
            query = query.where(CourseSession.id != but)
        return (await self._db.scalar(query.limit(1))) is not None

    def add(self, *rows: Any) -> None:
        self._db.add_all(rows)

    async def list(
        self, query: CourseSessionQuery, page: Page
    ) -> tuple[Sequence[CourseSession], int]:
        conditions: list[ColumnElement[bool]] = [CourseSession.is_deleted.is_(False)]
        if query.center_id is not None:
            conditions.append(CourseSession.center_id == query.center_id)
        if query.teacher_id is not None:
            conditions.append(CourseSession.teacher_id == query.teacher_id)
        if query.course_id is not None:
            conditions.append(CourseSession.course_id == query.course_id)
        if query.status is not None:
            conditions.append(effective_status(query.now) == query.status)
        if query.starts_after is not None:
            conditions.append(CourseSession.start_date >= query.starts_after)
        if query.ends_before is not None:
            conditions.append(CourseSession.end_date <= query.ends_before)
        column = SORTABLE[query.sort_by]
        order = [column.desc() if query.descending else column.asc(), CourseSession.id]
        total = await self._db.scalar(
            select(func.count()).select_from(CourseSession).where(*conditions)
        )
        rows = await self._db.scalars(
            select(CourseSession)
            .where(*conditions)
            .order_by(*order)
            .offset(page.offset)
            .limit(page.size)
        )
        return rows.all(), int(total or 0)

    async def enrolled_counts(self, session_ids: Sequence[str]) -> dict[str, int]:
        """How many students hold a seat (PENDING, ENROLLED, COMPLETED) in each session."""
        if not session_ids:
            return {}
        rows = await self._db.execute(
            select(CourseSessionEnrollment.course_session_id, func.count())
            .where(
                CourseSessionEnrollment.course_session_id.in_(session_ids),
                CourseSessionEnrollment.is_deleted.is_(False),
                CourseSessionEnrollment.status.in_(SEATED),
            )
            .group_by(CourseSessionEnrollment.course_session_id)
        )
        return {session_id: int(n) for session_id, n in rows.all()}

    async def settings(self, session_id: str) -> CourseSessionSettings | None:
        return await self._db.scalar(
            select(CourseSessionSettings).where(
                CourseSessionSettings.course_session_id == session_id,
                CourseSessionSettings.is_deleted.is_(False),
            )
        )

    async def live_sessions(self, session_id: str) -> Sequence[LiveSession]:
        rows = await self._db.scalars(
            select(LiveSession)
            .where(LiveSession.course_session_id == session_id)
            .order_by(LiveSession.starts_at, LiveSession.id)
        )
        return rows.all()

    async def live_attendance(self, session_id: str) -> dict[str, int]:
        """Attendance records of the session's live sessions, by status."""
        rows = await self._db.execute(
            select(AttendanceRecord.status, func.count())
            .join(LiveSession, LiveSession.id == AttendanceRecord.session_id)
            .where(LiveSession.course_session_id == session_id)
            .group_by(AttendanceRecord.status)
        )
        return {status: int(n) for status, n in rows.all()}


def _live_cohorts(center_id: str) -> Select[Any]:
    return select(Cohort.id).where(Cohort.center_id == center_id, Cohort.deleted_at.is_(None))


def offered_through(cohort_ids: Collection[str]) -> ColumnElement[bool]:
    """The course sessions these cohorts are offered: linked to one of them and published
    (a draft is open to no one yet). The caller passes live cohorts only."""
    linked = select(CourseSessionCohort.course_session_id).where(
        CourseSessionCohort.cohort_id.in_(cohort_ids)
    )
    return and_(
        CourseSession.status == CourseSessionStatus.PUBLISHED.value,
        CourseSession.id.in_(linked),
    )


class CourseSessionCohorts:
    """The cohorts a course session is offered to. Only live cohorts count: a soft-deleted
    cohort's links stay as rows (history) but are not read, not changed, and offer nothing."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def of_sessions(self, session_ids: Iterable[str]) -> dict[str, list[str]]:
        """Each session's live cohorts, in the order they were linked (staff answers)."""
        ids = list(session_ids)
        if not ids:
            return {}
        rows = await self._db.execute(
            select(CourseSessionCohort.course_session_id, CourseSessionCohort.cohort_id)
            .join(Cohort, Cohort.id == CourseSessionCohort.cohort_id)
            .where(CourseSessionCohort.course_session_id.in_(ids), Cohort.deleted_at.is_(None))
            .order_by(CourseSessionCohort.created_at, CourseSessionCohort.cohort_id)
        )
        linked: dict[str, list[str]] = {i: [] for i in ids}
        for session_id, cohort_id in rows.all():
            linked[session_id].append(cohort_id)
        return linked

    async def through(
        self, session_ids: Iterable[str], cohort_ids: Collection[str]
    ) -> dict[str, list[str]]:
        """Through which of ``cohort_ids`` (a student's live cohorts) each session is offered
        (none for a draft)."""
        ids = list(session_ids)
        linked: dict[str, list[str]] = {i: [] for i in ids}
        if not ids or not cohort_ids:
            return linked
        rows = await self._db.execute(
            select(CourseSessionCohort.course_session_id, CourseSessionCohort.cohort_id)
            .join(CourseSession, CourseSession.id == CourseSessionCohort.course_session_id)
            .where(
                CourseSessionCohort.course_session_id.in_(ids),
                CourseSessionCohort.cohort_id.in_(cohort_ids),
                offered_through(cohort_ids),
            )
            .order_by(CourseSessionCohort.cohort_id)
        )
        for session_id, cohort_id in rows.all():
            linked[session_id].append(cohort_id)
        return linked

    async def set(
        self, session: CourseSession, cohort_ids: Iterable[str], *, by: str
    ) -> LinkChange:
        """Link exactly ``cohort_ids`` (see ``sync_links``): all or nothing, only the
        difference written. Each must be a live cohort of the session's center; links to
        deleted cohorts are left as they are."""
        live = _live_cohorts(session.center_id)

        async def existing(ids: Sequence[str]) -> Collection[str]:
            return set(await self._db.scalars(live.where(Cohort.id.in_(ids))))

        return await sync_links(
            self._db,
            CourseSessionCohort.cohort_id,
            [
                CourseSessionCohort.course_session_id == session.id,
                CourseSessionCohort.cohort_id.in_(live),
            ],
            cohort_ids,
            existing=existing,
            make=lambda cohort_id: CourseSessionCohort(
                course_session_id=session.id,
                cohort_id=cohort_id,
                center_id=session.center_id,
                added_by=by,
            ),
        )


class CourseEnrollmentRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    def _live(self) -> ColumnElement[bool]:
        return CourseSessionEnrollment.is_deleted.is_(False)

    async def get(self, session_id: str, student_id: str) -> CourseSessionEnrollment | None:
        return await self._db.scalar(
            select(CourseSessionEnrollment).where(
                CourseSessionEnrollment.course_session_id == session_id,
                CourseSessionEnrollment.student_id == student_id,
                self._live(),
            )
        )

    async def by_id(self, session_id: str, enrollment_id: str) -> CourseSessionEnrollment | None:
        return await self._db.scalar(
            select(CourseSessionEnrollment).where(
                CourseSessionEnrollment.course_session_id == session_id,
                CourseSessionEnrollment.id == enrollment_id,
                self._live(),
            )
        )

    async def seated(self, session_id: str) -> int:
        total = await self._db.scalar(
            select(func.count())
            .select_from(CourseSessionEnrollment)
            .where(
                CourseSessionEnrollment.course_session_id == session_id,
                CourseSessionEnrollment.status.in_(SEATED),
                self._live(),
            )
        )
        return int(total or 0)

    async def page(
        self, session_id: str, page: Page, *, status: str | None = None
    ) -> tuple[Sequence[CourseSessionEnrollment], int]:
        conditions = [CourseSessionEnrollment.course_session_id == session_id, self._live()]
        if status is not None:
            conditions.append(CourseSessionEnrollment.status == status)
        total = await self._db.scalar(
            select(func.count()).select_from(CourseSessionEnrollment).where(*conditions)
        )
        rows = await self._db.scalars(
            select(CourseSessionEnrollment)
            .where(*conditions)
            .order_by(CourseSessionEnrollment.enrolled_at, CourseSessionEnrollment.id)
            .offset(page.offset)
            .limit(page.size)
        )
        return rows.all(), int(total or 0)

    async def all(self, session_id: str) -> Sequence[CourseSessionEnrollment]:
        rows = await self._db.scalars(
            select(CourseSessionEnrollment)
            .where(CourseSessionEnrollment.course_session_id == session_id, self._live())
            .order_by(CourseSessionEnrollment.enrolled_at, CourseSessionEnrollment.id)
        )
        return rows.all()

    async def of_student(
        self,
        center_id: str,
        student_id: str,
        page: Page,
        *,
        now: datetime,
        status: str | None = None,
        active_only: bool = False,
        cohort_ids: Collection[str] = (),
    ) -> tuple[Sequence[tuple[CourseSessionEnrollment | None, CourseSession]], int]:
        """The sessions a student sees: those they have an enrollment in, and those offered
        to ``cohort_ids`` (their live cohorts) that they have not joined (enrollment None)."""
        e = CourseSessionEnrollment
        theirs = and_(
            e.course_session_id == CourseSession.id, e.student_id == student_id, self._live()
        )
        seen: list[ColumnElement[bool]] = [e.id.is_not(None)]
        if cohort_ids:
            seen.append(offered_through(cohort_ids))
        conditions: list[ColumnElement[bool]] = [
            CourseSession.center_id == center_id,
            CourseSession.is_deleted.is_(False),
            or_(*seen),
        ]
        if status is not None:
            conditions.append(e.status == status)
        if active_only:
            conditions.append(effective_status(now) == CourseSessionStatus.PUBLISHED.value)
        total = await self._db.scalar(
            select(func.count()).select_from(CourseSession).outerjoin(e, theirs).where(*conditions)
        )
        rows = await self._db.execute(
            select(e, CourseSession)
            .select_from(CourseSession)
            .outerjoin(e, theirs)
            .where(*conditions)
            .order_by(CourseSession.start_date, CourseSession.id)
            .offset(page.offset)
            .limit(page.size)
        )
        return [(enrollment, session) for enrollment, session in rows.all()], int(total or 0)


class AnnouncementRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, session_id: str, announcement_id: str) -> CourseSessionAnnouncement | None:
        return await self._db.scalar(
            select(CourseSessionAnnouncement).where(
                CourseSessionAnnouncement.course_session_id == session_id,
                CourseSessionAnnouncement.id == announcement_id,
                CourseSessionAnnouncement.is_deleted.is_(False),
            )
        )

    async def title_taken(self, session_id: str, title: str, *, but: str | None = None) -> bool:
        query = select(CourseSessionAnnouncement.id).where(
            CourseSessionAnnouncement.course_session_id == session_id,
            CourseSessionAnnouncement.title == title,
            CourseSessionAnnouncement.is_deleted.is_(False),
        )
        if but is not None:
            query = query.where(CourseSessionAnnouncement.id != but)
        return (await self._db.scalar(query.limit(1))) is not None

    async def page(
        self,
        session_id: str,
        page: Page,
        *,
        now: datetime,
        is_urgent: bool | None = None,
        unexpired_only: bool = False,
        visible_only: bool = False,
    ) -> tuple[Sequence[CourseSessionAnnouncement], int]:
        a = CourseSessionAnnouncement
        conditions: list[ColumnElement[bool]] = [
            a.course_session_id == session_id,
            a.is_deleted.is_(False),
        ]
        if is_urgent is not None:
            conditions.append(a.is_urgent.is_(is_urgent))
        if unexpired_only or visible_only:
            conditions.append(or_(a.expires_at.is_(None), a.expires_at > now))
        if visible_only:
            conditions.append(a.is_active.is_(True))
            conditions.append(or_(a.scheduled_for.is_(None), a.scheduled_for <= now))
        total = await self._db.scalar(select(func.count()).select_from(a).where(*conditions))
        rows = await self._db.scalars(
            select(a)
            .where(*conditions)
            .order_by(a.is_urgent.desc(), func.coalesce(a.scheduled_for, a.created_at).desc(), a.id)
            .offset(page.offset)
            .limit(page.size)
        )
        return rows.all(), int(total or 0)

    async def visible(self, session_id: str, now: datetime) -> Sequence[CourseSessionAnnouncement]:
        rows, _ = await self.page(session_id, Page(1, 100), now=now, visible_only=True)
        return rows

    async def due(
        self, now: datetime, limit: int = 100, *, only: str | None = None
    ) -> Sequence[CourseSessionAnnouncement]:
        """Visible announcements not yet pushed live (of sessions not deleted); ``only``:
        that one announcement, if it is such."""
        a = CourseSessionAnnouncement
        query = select(a) if only is None else select(a).where(a.id == only)
        rows = await self._db.scalars(
            query.join(CourseSession, CourseSession.id == a.course_session_id)
            .where(
                a.pushed_at.is_(None),
                a.is_deleted.is_(False),
                a.is_active.is_(True),
                or_(a.scheduled_for.is_(None), a.scheduled_for <= now),
                or_(a.expires_at.is_(None), a.expires_at > now),
                CourseSession.is_deleted.is_(False),
            )
            .order_by(a.created_at, a.id)
            .limit(limit)
        )
        return rows.all()

    async def claim(self, announcement_id: str, now: datetime) -> bool:
        """Mark an announcement pushed; False when another hub (or call) already did."""
        result = await self._db.execute(
            update(CourseSessionAnnouncement)
            .where(
                CourseSessionAnnouncement.id == announcement_id,
                CourseSessionAnnouncement.pushed_at.is_(None),
            )
            .values(pushed_at=now)
        )
        return bool(getattr(result, "rowcount", 0))
