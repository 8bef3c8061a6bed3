"""The refusals, lookups and answers the course-session routes share."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.course_views import CourseSessionView, course_session_view
from persistence.models import (
    CourseSession,
    CourseSessionSettings,
    SessionEnrollmentStatus,
    utcnow,
)
from persistence.repositories import (
    CourseEnrollmentRepository,
    CourseSessionCohorts,
    CourseSessionQuery,
    CourseSessionRepository,
    LinkChange,
    Page,
    PeopleRepository,
    UnknownIds,
)
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Identity, Role
from rest.http import client_ip, identity, listing, parse_body, parse_query, record_change
from rest.keys import DB
from rest.schemas import (
    CourseSessionListQuery,
    SortOrder,
)
from rooms.access import (
    require_course_grader,
    require_course_manager,
    require_course_reader,
    require_course_staff,
    visible_course_session,
)

TEACHER = "/api/v1/teacher/sessions"
STUDENT = "/api/v1/student/sessions"
ADMIN = "/api/v1/admin/sessions"

M = TypeVar("M", bound=BaseModel)

# Session codes: no 0/O, 1/I/L to misread.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10

S = SessionEnrollmentStatus
# Which enrollment status staff may set from which.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.ENROLLED, S.DROPPED, S.EXPELLED}),
    S.ENROLLED: frozenset({S.COMPLETED, S.DROPPED, S.EXPELLED}),
    S.DROPPED: frozenset({S.ENROLLED}),
    S.COMPLETED: frozenset({S.ENROLLED}),
    S.EXPELLED: frozenset(),
}
# Whose announcements a student reads.
READERS = frozenset({S.ENROLLED.value, S.COMPLETED.value})


class CourseError(HubError):
    """A refusal with the design's HTTP status (400 or 422) rather than the code's own."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str,
        details: dict[str, Any] | None = None,
        code: ErrorCode = ErrorCode.VALIDATION_ERROR,
    ) -> None:
        super().__init__(code, message, details=details, error_code=error_code)
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status


def bad_request(
    message: str, field: str | None = None, error_code: str = "VALIDATION_ERROR"
) -> CourseError:
    details = {"field": field, "reason": message} if field is not None else None
    return CourseError(400, message, error_code=error_code, details=details)


def unprocessable(message: str, error_code: str) -> CourseError:
    return CourseError(422, message, error_code=error_code, code=ErrorCode.CONFLICT)


def conflict(message: str, error_code: str, field: str | None = None) -> HubError:
    details = {"field": field, "reason": message} if field is not None else None
    return HubError(ErrorCode.CONFLICT, message, error_code=error_code, details=details)


def expired(session: CourseSession) -> CourseError:
    return unprocessable(
        f"Session has expired (ended {session.end_date.isoformat()})", "SESSION_EXPIRED"
    )


def answer(data: Any, *, status: int = 200, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if message is not None:
        body["message"] = message
    return web.json_response(body, status=status)


async def body_of(request: web.Request, model: type[M]) -> M:
    try:
        return await parse_body(request, model)
    except HubError as exc:
        raise _as_400(exc) from None


def query_of(request: web.Request, model: type[M]) -> M:
    try:
        return parse_query(request, model)
    except HubError as exc:
        raise _as_400(exc) from None


def _as_400(exc: HubError) -> HubError:
    if exc.code is not ErrorCode.VALIDATION_ERROR:
        return exc
    return CourseError(400, exc.message, error_code=exc.error_code, details=exc.details)


def audit(
    request: web.Request,
    db: AsyncSession,
    who: Identity,
    action: str,
    center_id: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    record_change(request, db, who, center_id, action, target_type, target_id, details)


def touched(row: Any, request: web.Request, who: Identity) -> None:
    row.updated_by = who.user_id
    row.updated_ip = client_ip(request)
    row.updated_at = utcnow()


def created(request: web.Request, who: Identity) -> dict[str, Any]:
    return {"created_by": who.user_id, "created_ip": client_ip(request)}


def jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}


async def course_session(
    request: web.Request, db: AsyncSession, *, for_update: bool = False
) -> CourseSession:
    session_id = request.match_info["session_id"]
    found = await CourseSessionRepository(db).get(session_id, for_update=for_update)
    return visible_course_session(identity(request), found, session_id)


async def readable(request: web.Request, db: AsyncSession) -> CourseSession:
    """The URL's course session if the caller may read it as staff: its managers, the
    center's supervisors and assessors (404 across centers, 403 within)."""
    session = await course_session(request, db)
    require_course_reader(identity(request), session)
    return session


async def graded(request: web.Request, db: AsyncSession) -> CourseSession:
    """The URL's course session if the caller may grade its enrollments: its managers
    and the center's assessors."""
    session = await course_session(request, db)
    require_course_grader(identity(request), session)
    return session


async def managed(
    request: web.Request, db: AsyncSession, *, for_update: bool = False
) -> CourseSession:
    """The URL's course session if the caller manages it (404 across centers, 403 within)."""
    who = identity(request)
    require_course_staff(who)
    session = await course_session(request, db, for_update=for_update)
    require_course_manager(who, session)
    return session


async def valid_teacher(db: AsyncSession, who: Identity, center_id: str, teacher_id: str) -> None:
    """A TUTOR of the center (the directory of people, or the caller's own token)."""
    if who.role is Role.TUTOR and who.user_id == teacher_id and who.center == center_id:
        return
    person = await PeopleRepository(db).get(center_id, teacher_id)
    if person is None or person.role != Role.TUTOR.value:
        raise bad_request(
            f"teacher_id {teacher_id!r} is not a teacher (TUTOR) of center {center_id!r}",
            "teacher_id",
        )


async def link_cohorts(
    db: AsyncSession, who: Identity, session: CourseSession, cohort_ids: Sequence[str]
) -> LinkChange:
    """Offer the session to exactly ``cohort_ids``, only the difference written; any id
    that is not a live cohort of the session's center refuses the whole request."""
    try:
        return await CourseSessionCohorts(db).set(session, cohort_ids, by=who.user_id)
    except UnknownIds as exc:
        message = (
            f"not cohorts of center {session.center_id!r}: {', '.join(exc.ids)}; "
            "nothing was changed"
        )
        raise CourseError(
            400,
            message,
            error_code="COHORT_NOT_FOUND",
            details={"field": "cohort_ids", "reason": message, "cohort_ids": list(exc.ids)},
        ) from None


async def staff_view(
    db: AsyncSession, session: CourseSession, now: datetime, *, enrolled_count: int | None = None
) -> CourseSessionView:
    """The course session as its managers see it: with the cohorts it is offered to."""
    linked = await CourseSessionCohorts(db).of_sessions([session.id])
    return course_session_view(
        session, now, enrolled_count=enrolled_count, cohort_ids=linked[session.id]
    )


def check_dates(start: datetime, end: datetime, deadline: datetime | None) -> None:
    if end <= start:
        raise bad_request("End date must be after start date", "end_date")
    if deadline is not None and deadline > end:
        raise bad_request("enrollment_deadline must not be after end_date", "enrollment_deadline")


async def new_code(sessions: CourseSessionRepository) -> str:
    for _ in range(8):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if not await sessions.code_taken(code):
            return code
    raise HubError(ErrorCode.INTERNAL, "could not draw an unused session code")


def duplicate_name() -> HubError:
    return conflict(
        "Session name already exists for this teacher and course",
        "DUPLICATE_SESSION_NAME",
        "session_name",
    )


async def require_seat(db: AsyncSession, session: CourseSession) -> None:
    if session.max_students is None:
        return
    if await CourseEnrollmentRepository(db).seated(session.id) >= session.max_students:
        raise unprocessable(
            f"Maximum student capacity reached ({session.max_students})", "SESSION_FULL"
        )


async def settings_of(db: AsyncSession, session: CourseSession) -> CourseSessionSettings:
    found = await CourseSessionRepository(db).settings(session.id)
    if found is None:  # every session is made with its settings
        raise HubError(ErrorCode.INTERNAL, f"course session {session.id!r} has no settings")
    return found


def session_query(
    params: CourseSessionListQuery, now: datetime, **scope: Any
) -> CourseSessionQuery:
    return CourseSessionQuery(
        now=now,
        course_id=params.course_id,
        status=params.status.value if params.status else None,
        starts_after=params.start_date,
        ends_before=params.end_date,
        sort_by=params.sort_by.value,
        descending=params.sort_order is SortOrder.DESC,
        **scope,
    )


async def center_listing(
    request: web.Request, params: CourseSessionListQuery, *, teacher_id: str | None
) -> web.Response:
    """The course sessions of the caller's center (every center's for a super admin),
    filtered by ``params`` and ``teacher_id``."""
    who = identity(request)
    scope: dict[str, Any] = {"teacher_id": teacher_id}
    if who.role is not Role.SUPER_ADMIN:
        scope["center_id"] = who.center
    query = session_query(params, utcnow(), **scope)
    return await session_listing(request, query, Page(params.page, params.limit))


async def session_listing(
    request: web.Request, query: CourseSessionQuery, page: Page
) -> web.Response:
    async with request.app[DB]() as db:
        sessions = CourseSessionRepository(db)
        rows, total = await sessions.list(query, page)
        counts = await sessions.enrolled_counts([s.id for s in rows])
        linked = await CourseSessionCohorts(db).of_sessions(s.id for s in rows)
    return listing(
        [
            course_session_view(
                s, query.now, enrolled_count=counts.get(s.id, 0), cohort_ids=linked[s.id]
            )
            for s in rows
        ],
        page,
        total,
    )
