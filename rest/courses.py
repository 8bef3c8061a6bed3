"""Course sessions (the design of issue 16): teacher, student and admin routes.

A course session is a teacher's course over weeks; students join it by its
code. Everything here answers in the design's field names. Its validation
errors are ``400 VALIDATION_ERROR`` and its business refusals ``422`` (as the
design says), unlike the live-session routes; see docs/protocol.md, "Course
sessions".
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.course_views import (
    announcement_view,
    course_enrollment_view,
    course_session_view,
    settings_view,
    student_session_view,
)
from persistence.models import (
    SEATED,
    CourseSession,
    CourseSessionAnnouncement,
    CourseSessionEnrollment,
    CourseSessionSettings,
    CourseSessionStatus,
    Enrollment,
    SessionEnrollmentStatus,
    utcnow,
)
from persistence.repositories import (
    AnnouncementRepository,
    CourseEnrollmentRepository,
    CourseSessionQuery,
    CourseSessionRepository,
    EnrollmentRepository,
    Page,
    PeopleRepository,
    SessionRepository,
)
from persistence.views import enrollment_view
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Identity, Role
from rest.http import client_ip, identity, listing, parse_body, parse_query, record_change
from rest.keys import COURSE_ANNOUNCEMENTS, DB
from rest.schemas import (
    AnnouncementCreate,
    AnnouncementListQuery,
    AnnouncementUpdate,
    CourseEnrollmentListQuery,
    CourseSessionCreate,
    CourseSessionListQuery,
    CourseSessionUpdate,
    EnrollmentStatusUpdate,
    GradeUpdate,
    JoinByCode,
    SettingsUpdate,
    SortOrder,
    StudentAnnouncementQuery,
    StudentSessionListQuery,
)
from rest.sessions import readable_session, require_open
from rooms.access import (
    require_course_admin,
    require_course_manager,
    require_course_staff,
    require_course_student,
    require_manager,
    visible_course_session,
)

routes = web.RouteTableDef()

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


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}


async def _session(
    request: web.Request, db: AsyncSession, *, for_update: bool = False
) -> CourseSession:
    session_id = request.match_info["session_id"]
    found = await CourseSessionRepository(db).get(session_id, for_update=for_update)
    return visible_course_session(identity(request), found, session_id)


async def managed(
    request: web.Request, db: AsyncSession, *, for_update: bool = False
) -> CourseSession:
    """The URL's course session if the caller manages it (404 across centers, 403 within)."""
    who = identity(request)
    require_course_staff(who)
    session = await _session(request, db, for_update=for_update)
    require_course_manager(who, session)
    return session


async def _valid_teacher(db: AsyncSession, who: Identity, center_id: str, teacher_id: str) -> None:
    """A TUTOR of the center (the directory of people, or the caller's own token)."""
    if who.role is Role.TUTOR and who.user_id == teacher_id and who.center == center_id:
        return
    person = await PeopleRepository(db).get(center_id, teacher_id)
    if person is None or person.role != Role.TUTOR.value:
        raise bad_request(
            f"teacher_id {teacher_id!r} is not a teacher (TUTOR) of center {center_id!r}",
            "teacher_id",
        )


def _check_dates(start: datetime, end: datetime, deadline: datetime | None) -> None:
    if end <= start:
        raise bad_request("End date must be after start date", "end_date")
    if deadline is not None and deadline > end:
        raise bad_request("enrollment_deadline must not be after end_date", "enrollment_deadline")


async def _new_code(sessions: CourseSessionRepository) -> str:
    for _ in range(8):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if not await sessions.code_taken(code):
            return code
    raise HubError(ErrorCode.INTERNAL, "could not draw an unused session code")


def _duplicate_name() -> HubError:
    return conflict(
        "Session name already exists for this teacher and course",
        "DUPLICATE_SESSION_NAME",
        "session_name",
    )


# --- Teacher: course sessions ------------------------------------------------------------


@routes.post(TEACHER)
async def create_course_session(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_staff(who)
    body = await body_of(request, CourseSessionCreate)
    if who.role is Role.TUTOR and body.teacher_id != who.user_id:
        raise HubError(ErrorCode.FORBIDDEN, "a teacher may only create sessions they teach")
    now = utcnow()
    if body.start_date < now:
        raise bad_request("start_date cannot be in the past for a new session", "start_date")
    _check_dates(body.start_date, body.end_date, body.enrollment_deadline)
    center_id = who.center
    try:
        async with request.app[DB].begin() as db:
            sessions = CourseSessionRepository(db)
            await _valid_teacher(db, who, center_id, body.teacher_id)
            if await sessions.name_taken(
                center_id, body.teacher_id, body.course_id, body.session_name
            ):
                raise _duplicate_name()
            published = body.course_session_status is CourseSessionStatus.PUBLISHED
            session = CourseSession(
                center_id=center_id,
                session_name=body.session_name,
                session_description=body.session_description,
                teacher_id=body.teacher_id,
                course_id=body.course_id,
                status=body.course_session_status.value,
                start_date=body.start_date,
                end_date=body.end_date,
                max_students=body.max_students,
                enrollment_deadline=body.enrollment_deadline,
                session_timezone=body.session_timezone,
                session_code=await _new_code(sessions),
                auto_expire_enabled=body.auto_expire_enabled,
                published_at=now if published else None,
                **created(request, who),
            )
            sessions.add(session)
            await db.flush()
            settings = CourseSessionSettings(
                center_id=center_id, course_session_id=session.id, **created(request, who)
            )
            sessions.add(settings)
            await db.flush()
            audit(
                request,
                db,
                who,
                "course_session.create",
                center_id,
                "course_session",
                session.id,
                {"session_name": session.session_name, "status": session.status},
            )
    except IntegrityError:
        # Lost a race with a session of the same name (the partial unique index).
        raise _duplicate_name() from None
    return answer(
        course_session_view(session, now, enrolled_count=0),
        status=201,
        message="Course session created successfully",
    )


def _session_query(
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


async def _session_listing(
    request: web.Request, query: CourseSessionQuery, page: Page
) -> web.Response:
    async with request.app[DB]() as db:
        sessions = CourseSessionRepository(db)
        rows, total = await sessions.list(query, page)
        counts = await sessions.enrolled_counts([s.id for s in rows])
    return listing(
        [course_session_view(s, query.now, enrolled_count=counts.get(s.id, 0)) for s in rows],
        page,
        total,
    )


@routes.get(TEACHER)
async def list_teacher_sessions(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_staff(who)
    params = query_of(request, CourseSessionListQuery)
    scope: dict[str, Any] = {}
    if who.role is Role.TUTOR:
        if params.teacher_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "Teachers can only access assigned sessions")
        scope = {"center_id": who.center, "teacher_id": who.user_id}
    elif who.role is Role.CENTER_ADMIN:
        scope = {"center_id": who.center, "teacher_id": params.teacher_id}
    else:
        scope = {"teacher_id": params.teacher_id}
    query = _session_query(params, utcnow(), **scope)
    return await _session_listing(request, query, Page(params.page, params.limit))


@routes.get(TEACHER + "/{session_id}")
async def get_course_session(request: web.Request) -> web.Response:
    async with request.app[DB]() as db:
        session = await managed(request, db)
        count = await CourseEnrollmentRepository(db).seated(session.id)
    return answer(course_session_view(session, utcnow(), enrolled_count=count))


@routes.patch(TEACHER + "/{session_id}")
async def update_course_session(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, CourseSessionUpdate)
    changes = body.model_dump(exclude_unset=True)
    now = utcnow()
    try:
        async with request.app[DB].begin() as db:
            session = await managed(request, db, for_update=True)
            status = session.effective_status(now)
            if status == CourseSessionStatus.EXPIRED:
                raise expired(session)
            if "teacher_id" in changes and changes["teacher_id"] != session.teacher_id:
                if who.role is Role.TUTOR:
                    raise HubError(
                        ErrorCode.FORBIDDEN, "a teacher may not hand a session to another"
                    )
                await _valid_teacher(db, who, session.center_id, changes["teacher_id"])
            if status == CourseSessionStatus.PUBLISHED:
                locked = sorted(
                    name
                    for name in ("course_id", "start_date")
                    if name in changes and changes[name] != getattr(session, name)
                )
                if locked:
                    raise unprocessable(
                        f"a published session's {', '.join(locked)} cannot change",
                        "SESSION_PUBLISHED",
                    )
            if "start_date" in changes and changes["start_date"] != session.start_date:
                if changes["start_date"] < now:
                    raise bad_request("start_date cannot be moved into the past", "start_date")
            _check_dates(
                changes.get("start_date", session.start_date),
                changes.get("end_date", session.end_date),
                changes.get("enrollment_deadline", session.enrollment_deadline),
            )
            sessions = CourseSessionRepository(db)
            if {"session_name", "teacher_id", "course_id"} & changes.keys() and (
                await sessions.name_taken(
                    session.center_id,
                    changes.get("teacher_id", session.teacher_id),
                    changes.get("course_id", session.course_id),
                    changes.get("session_name", session.session_name),
                    but=session.id,
                )
            ):
                raise _duplicate_name()
            seated = await CourseEnrollmentRepository(db).seated(session.id)
            if changes.get("max_students") is not None and changes["max_students"] < seated:
                raise unprocessable(
                    f"max_students {changes['max_students']} is below the {seated} enrolled",
                    "SESSION_OVER_CAPACITY",
                )
            for name, value in changes.items():
                setattr(session, name, value)
            touched(session, request, who)
            audit(
                request,
                db,
                who,
                "course_session.update",
                session.center_id,
                "course_session",
                session.id,
                _jsonable(changes),
            )
    except IntegrityError:
        raise _duplicate_name() from None
    return answer(
        course_session_view(session, now, enrolled_count=seated),
        message="Course session updated successfully",
    )


@routes.patch(TEACHER + "/{session_id}/publish")
async def publish_course_session(request: web.Request) -> web.Response:
    who = identity(request)
    now = utcnow()
    async with request.app[DB].begin() as db:
        session = await managed(request, db, for_update=True)
        status = session.effective_status(now)
        if status == CourseSessionStatus.EXPIRED:
            raise expired(session)
        if status != CourseSessionStatus.DRAFT:
            raise unprocessable(
                f"Can only publish draft sessions; this one is {status}",
                "INVALID_STATUS_TRANSITION",
            )
        session.status = CourseSessionStatus.PUBLISHED.value
        session.published_at = now
        touched(session, request, who)
        audit(
            request,
            db,
            who,
            "course_session.publish",
            session.center_id,
            "course_session",
            session.id,
        )
    return answer(
        course_session_view(session, now), message="Course session published successfully"
    )


@routes.delete(TEACHER + "/{session_id}")
async def delete_course_session(request: web.Request) -> web.Response:
    who = identity(request)
    now = utcnow()
    async with request.app[DB].begin() as db:
        session = await managed(request, db, for_update=True)
        enrollments = await CourseEnrollmentRepository(db).all(session.id)
        if enrollments:
            raise unprocessable(
                f"Cannot delete a session with enrollments ({len(enrollments)})",
                "SESSION_HAS_ENROLLMENTS",
            )
        session.is_deleted = True
        session.is_active = False
        session.deleted_at = now
        session.deleted_by = who.user_id
        touched(session, request, who)
        audit(
            request,
            db,
            who,
            "course_session.delete",
            session.center_id,
            "course_session",
            session.id,
        )
    return web.Response(status=204)


# --- Teacher: enrollments ----------------------------------------------------------------


async def _enrollment(
    db: AsyncSession, session: CourseSession, enrollment_id: str
) -> CourseSessionEnrollment:
    found = await CourseEnrollmentRepository(db).by_id(session.id, enrollment_id)
    if found is None:
        raise HubError(
            ErrorCode.NOT_FOUND, "Session enrollment not found", error_code="ENROLLMENT_NOT_FOUND"
        )
    return found


@routes.get(TEACHER + "/{session_id}/enrollments")
async def list_course_enrollments(request: web.Request) -> web.Response:
    params = query_of(request, CourseEnrollmentListQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await managed(request, db)
        rows, total = await CourseEnrollmentRepository(db).page(
            session.id, page, status=params.status.value if params.status else None
        )
        people = await PeopleRepository(db).by_ids(session.center_id, [e.student_id for e in rows])
    return listing(
        [course_enrollment_view(e, people.get(e.student_id), with_student=True) for e in rows],
        page,
        total,
    )


@routes.patch(TEACHER + "/{session_id}/enrollments/{enrollment_id}/status")
async def update_enrollment_status(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, EnrollmentStatusUpdate)
    target = body.enrollment_status.value
    now = utcnow()
    async with request.app[DB].begin() as db:
        session = await managed(request, db, for_update=True)
        enrollment = await _enrollment(db, session, request.match_info["enrollment_id"])
        before = enrollment.status
        if target != before:
            if target not in TRANSITIONS[before]:
                raise unprocessable(
                    f"an enrollment cannot go from {before} to {target}",
                    "INVALID_STATUS_TRANSITION",
                )
            if target == S.ENROLLED:
                if session.effective_status(now) == CourseSessionStatus.EXPIRED:
                    raise expired(session)
                if before not in SEATED:
                    await _require_seat(db, session)
            enrollment.status = target
            if target == S.DROPPED:
                enrollment.dropped_at = now
            elif target == S.COMPLETED:
                enrollment.completion_date = now
            elif target == S.ENROLLED:
                enrollment.dropped_at = None
                enrollment.completion_date = None
            touched(enrollment, request, who)
            audit(
                request,
                db,
                who,
                "course_enrollment.status",
                session.center_id,
                "course_enrollment",
                enrollment.id,
                {"student_id": enrollment.student_id, "from": before, "to": target},
            )
    return answer(course_enrollment_view(enrollment), message="Enrollment status updated")


@routes.patch(TEACHER + "/{session_id}/enrollments/{enrollment_id}/grade")
async def update_enrollment_grade(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, GradeUpdate)
    async with request.app[DB].begin() as db:
        session = await managed(request, db)
        enrollment = await _enrollment(db, session, request.match_info["enrollment_id"])
        if enrollment.status not in READERS:
            raise unprocessable(
                f"only an ENROLLED or COMPLETED enrollment is graded, not {enrollment.status}",
                "INVALID_ENROLLMENT_STATUS",
            )
        changes = body.model_dump(exclude_unset=True)
        for name, value in changes.items():
            setattr(enrollment, name, value)
        touched(enrollment, request, who)
        audit(
            request,
            db,
            who,
            "course_enrollment.grade",
            session.center_id,
            "course_enrollment",
            enrollment.id,
            {"student_id": enrollment.student_id, **changes},
        )
    return answer(course_enrollment_view(enrollment), message="Grade updated")


async def _require_seat(db: AsyncSession, session: CourseSession) -> None:
    if session.max_students is None:
        return
    if await CourseEnrollmentRepository(db).seated(session.id) >= session.max_students:
        raise unprocessable(
            f"Maximum student capacity reached ({session.max_students})", "SESSION_FULL"
        )


# --- Teacher: announcements --------------------------------------------------------------


def _announcement_not_found() -> HubError:
    return HubError(
        ErrorCode.NOT_FOUND, "Session announcement not found", error_code="ANNOUNCEMENT_NOT_FOUND"
    )


def _duplicate_title() -> HubError:
    return conflict(
        "An announcement with this title already exists in this session",
        "DUPLICATE_ANNOUNCEMENT_TITLE",
        "title",
    )


@routes.post(TEACHER + "/{session_id}/announcements")
async def create_announcement(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, AnnouncementCreate)
    now = utcnow()
    if body.expires_at is not None and body.expires_at <= now:
        raise bad_request("expires_at must be in the future", "expires_at")
    try:
        async with request.app[DB].begin() as db:
            session = await managed(request, db)
            announcements = AnnouncementRepository(db)
            if await announcements.title_taken(session.id, body.title):
                raise _duplicate_title()
            announcement = CourseSessionAnnouncement(
                center_id=session.center_id,
                course_session_id=session.id,
                **body.model_dump(),
                **created(request, who),
            )
            db.add(announcement)
            await db.flush()
            audit(
                request,
                db,
                who,
                "course_announcement.create",
                session.center_id,
                "course_announcement",
                announcement.id,
                {"course_session_id": session.id, "title": announcement.title},
            )
    except IntegrityError:
        raise _duplicate_title() from None
    await request.app[COURSE_ANNOUNCEMENTS].push_due(announcement.id)
    return answer(announcement_view(announcement), status=201, message="Announcement created")


@routes.get(TEACHER + "/{session_id}/announcements")
async def list_announcements(request: web.Request) -> web.Response:
    params = query_of(request, AnnouncementListQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await managed(request, db)
        rows, total = await AnnouncementRepository(db).page(
            session.id,
            page,
            now=utcnow(),
            is_urgent=params.is_urgent,
            unexpired_only=params.active_only,
        )
    return listing([announcement_view(a) for a in rows], page, total)


@routes.patch(TEACHER + "/{session_id}/announcements/{announcement_id}")
async def update_announcement(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, AnnouncementUpdate)
    changes = body.model_dump(exclude_unset=True)
    try:
        async with request.app[DB].begin() as db:
            session = await managed(request, db)
            announcements = AnnouncementRepository(db)
            announcement = await announcements.get(
                session.id, request.match_info["announcement_id"]
            )
            if announcement is None:
                raise _announcement_not_found()
            scheduled_for = changes.get("scheduled_for", announcement.scheduled_for)
            expires_at = changes.get("expires_at", announcement.expires_at)
            if scheduled_for is not None and expires_at is not None and expires_at <= scheduled_for:
                raise bad_request("expires_at must be after scheduled_for", "expires_at")
            if "title" in changes and await announcements.title_taken(
                session.id, changes["title"], but=announcement.id
            ):
                raise _duplicate_title()
            for name, value in changes.items():
                setattr(announcement, name, value)
            if "scheduled_for" in changes and announcement.pushed_at is not None:
                # Rescheduled: pushed again when it becomes visible at its new time.
                if scheduled_for is not None and scheduled_for > utcnow():
                    announcement.pushed_at = None
            touched(announcement, request, who)
            audit(
                request,
                db,
                who,
                "course_announcement.update",
                session.center_id,
                "course_announcement",
                announcement.id,
                _jsonable(changes),
            )
    except IntegrityError:
        raise _duplicate_title() from None
    await request.app[COURSE_ANNOUNCEMENTS].push_due(announcement.id)
    return answer(announcement_view(announcement), message="Announcement updated")


@routes.delete(TEACHER + "/{session_id}/announcements/{announcement_id}")
async def delete_announcement(request: web.Request) -> web.Response:
    who = identity(request)
    async with request.app[DB].begin() as db:
        session = await managed(request, db)
        announcement = await AnnouncementRepository(db).get(
            session.id, request.match_info["announcement_id"]
        )
        if announcement is None:
            raise _announcement_not_found()
        announcement.is_deleted = True
        announcement.is_active = False
        announcement.deleted_at = utcnow()
        announcement.deleted_by = who.user_id
        touched(announcement, request, who)
        audit(
            request,
            db,
            who,
            "course_announcement.delete",
            session.center_id,
            "course_announcement",
            announcement.id,
        )
    return web.Response(status=204)


# --- Teacher: settings -------------------------------------------------------------------


async def _settings(db: AsyncSession, session: CourseSession) -> CourseSessionSettings:
    found = await CourseSessionRepository(db).settings(session.id)
    if found is None:  # every session is made with its settings
        raise HubError(ErrorCode.INTERNAL, f"course session {session.id!r} has no settings")
    return found


@routes.get(TEACHER + "/{session_id}/settings")
async def get_settings(request: web.Request) -> web.Response:
    async with request.app[DB]() as db:
        session = await managed(request, db)
        settings = await _settings(db, session)
    return answer(settings_view(settings))


@routes.put(TEACHER + "/{session_id}/settings")
async def put_settings(request: web.Request) -> web.Response:
    who = identity(request)
    body = await body_of(request, SettingsUpdate)
    changes = body.model_dump(exclude_unset=True)
    async with request.app[DB].begin() as db:
        session = await managed(request, db)
        settings = await _settings(db, session)
        for name, value in changes.items():
            setattr(settings, name, value)
        touched(settings, request, who)
        audit(
            request,
            db,
            who,
            "course_settings.update",
            session.center_id,
            "course_session",
            session.id,
            changes,
        )
    return answer(settings_view(settings), message="Session settings updated")


# --- Students ----------------------------------------------------------------------------


def _invalid_code() -> HubError:
    return conflict("Invalid session code", "INVALID_SESSION_CODE", "session_code")


@routes.post(STUDENT + "/join")
async def join_by_code(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_student(who)
    body = await body_of(request, JoinByCode)
    code = body.session_code.strip().upper()
    now = utcnow()
    try:
        async with request.app[DB].begin() as db:
            sessions = CourseSessionRepository(db)
            found = await sessions.by_code(code)
            if found is None or found.center_id != who.center:
                raise _invalid_code()
            # Lock the session so concurrent joins cannot overfill it (Postgres; SQLite
            # writers are serialized).
            session = await sessions.get(found.id, for_update=True)
            if session is None:
                raise _invalid_code()
            status = session.effective_status(now)
            if status == CourseSessionStatus.EXPIRED:
                raise expired(session)
            if status != CourseSessionStatus.PUBLISHED:
                raise _invalid_code()  # a draft is not open to anyone yet
            settings = await _settings(db, session)
            enrollments = CourseEnrollmentRepository(db)
            enrollment = await enrollments.get(session.id, who.user_id)
            if enrollment is not None and enrollment.status in SEATED:
                raise conflict("Student already enrolled in this session", "ALREADY_ENROLLED")
            if enrollment is not None and enrollment.status == S.EXPELLED:
                raise HubError(
                    ErrorCode.FORBIDDEN,
                    "an expelled student cannot join this session again",
                    error_code="ENROLLMENT_EXPELLED",
                )
            if (
                session.enrollment_deadline is not None
                and now > session.enrollment_deadline
                and not settings.allow_late_enrollment
            ):
                raise bad_request(
                    "Cannot enroll after enrollment deadline",
                    error_code="ENROLLMENT_DEADLINE_PASSED",
                )
            await _require_seat(db, session)
            new_status = S.PENDING if settings.require_approval_for_enrollment else S.ENROLLED
            if enrollment is None:
                enrollment = CourseSessionEnrollment(
                    center_id=session.center_id,
                    course_session_id=session.id,
                    student_id=who.user_id,
                    enrolled_at=now,
                    status=new_status.value,
                    completion_percentage=0,
                    **created(request, who),
                )
                db.add(enrollment)
                await db.flush()
            else:  # came back after dropping
                enrollment.status = new_status.value
                enrollment.enrolled_at = now
                enrollment.dropped_at = None
                touched(enrollment, request, who)
            audit(
                request,
                db,
                who,
                "course_enrollment.join",
                session.center_id,
                "course_enrollment",
                enrollment.id,
                {"course_session_id": session.id, "status": new_status.value},
            )
    except IntegrityError:
        raise conflict("Student already enrolled in this session", "ALREADY_ENROLLED") from None
    message = (
        "Enrollment requested; it awaits approval"
        if new_status is S.PENDING
        else "Successfully enrolled in session"
    )
    return answer(course_enrollment_view(enrollment), status=201, message=message)


@routes.get(STUDENT)
async def list_student_sessions(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_student(who)
    params = query_of(request, StudentSessionListQuery)
    page = Page(params.page, params.limit)
    now = utcnow()
    async with request.app[DB]() as db:
        rows, total = await CourseEnrollmentRepository(db).of_student(
            who.center,
            who.user_id,
            page,
            now=now,
            status=params.status.value if params.status else None,
            active_only=params.active_only,
        )
    return listing([student_session_view(e, s, now) for e, s in rows], page, total)


async def _own_enrollment(
    request: web.Request, db: AsyncSession, *, for_update: bool = False
) -> tuple[CourseSession, CourseSessionEnrollment]:
    who = identity(request)
    require_course_student(who)
    session = await _session(request, db, for_update=for_update)
    enrollment = await CourseEnrollmentRepository(db).get(session.id, who.user_id)
    if enrollment is None:
        raise HubError(ErrorCode.FORBIDDEN, "Students can only access enrolled sessions")
    return session, enrollment


@routes.get(STUDENT + "/{session_id}")
async def get_student_session(request: web.Request) -> web.Response:
    now = utcnow()
    async with request.app[DB]() as db:
        session, enrollment = await _own_enrollment(request, db)
    view = student_session_view(enrollment, session, now)
    view["max_students"] = session.max_students
    view["enrollment_deadline"] = course_session_view(session, now)["enrollment_deadline"]
    return answer(view)


@routes.delete(STUDENT + "/{session_id}/enrollment")
async def drop_session(request: web.Request) -> web.Response:
    who = identity(request)
    now = utcnow()
    async with request.app[DB].begin() as db:
        session, enrollment = await _own_enrollment(request, db, for_update=True)
        if session.effective_status(now) == CourseSessionStatus.EXPIRED:
            raise expired(session)
        if enrollment.status not in (S.PENDING, S.ENROLLED):
            raise unprocessable(
                f"an enrollment that is {enrollment.status} cannot be dropped",
                "INVALID_STATUS_TRANSITION",
            )
        settings = await _settings(db, session)
        if not settings.allow_student_drop:
            raise HubError(
                ErrorCode.FORBIDDEN,
                "this session's settings do not let students drop out",
                error_code="DROP_NOT_ALLOWED",
            )
        before = enrollment.status
        enrollment.status = S.DROPPED.value
        enrollment.dropped_at = now
        touched(enrollment, request, who)
        audit(
            request,
            db,
            who,
            "course_enrollment.drop",
            session.center_id,
            "course_enrollment",
            enrollment.id,
            {"course_session_id": session.id, "from": before},
        )
    return answer(course_enrollment_view(enrollment), message="Dropped from session")


@routes.get(STUDENT + "/{session_id}/announcements")
async def list_student_announcements(request: web.Request) -> web.Response:
    params = query_of(request, StudentAnnouncementQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session, enrollment = await _own_enrollment(request, db)
        if enrollment.status not in READERS:
            raise HubError(
                ErrorCode.FORBIDDEN,
                f"announcements are for enrolled students; this enrollment is {enrollment.status}",
            )
        rows, total = await AnnouncementRepository(db).page(
            session.id, page, now=utcnow(), visible_only=True
        )
    return listing([announcement_view(a) for a in rows], page, total)


# --- Admin -------------------------------------------------------------------------------


@routes.get(ADMIN)
async def list_admin_sessions(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_admin(who)
    params = query_of(request, CourseSessionListQuery)
    scope: dict[str, Any] = {"teacher_id": params.teacher_id}
    if who.role is not Role.SUPER_ADMIN:
        scope["center_id"] = who.center
    query = _session_query(params, utcnow(), **scope)
    return await _session_listing(request, query, Page(params.page, params.limit))


@routes.get(ADMIN + "/{session_id}/analytics")
async def session_analytics(request: web.Request) -> web.Response:
    who = identity(request)
    require_course_staff(who)
    async with request.app[DB]() as db:
        session = await _session(request, db)
        require_course_manager(who, session)
        enrollments = await CourseEnrollmentRepository(db).all(session.id)
        sessions = CourseSessionRepository(db)
        live = await sessions.live_sessions(session.id)
        attendance = await sessions.live_attendance(session.id)
    return answer(analytics(enrollments, len(live), attendance))


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def analytics(
    enrollments: list[CourseSessionEnrollment] | Any, live_sessions: int, attendance: dict[str, int]
) -> dict[str, Any]:
    admitted = [e for e in enrollments if e.status != S.PENDING]
    left = [e for e in admitted if e.status in (S.DROPPED, S.EXPELLED)]
    active = [e for e in admitted if e.status in (S.ENROLLED, S.COMPLETED)]
    completed = [e for e in admitted if e.status == S.COMPLETED]
    grades = [e.final_grade for e in admitted if e.final_grade is not None]
    timeline: dict[str, int] = {}
    for e in enrollments:
        day = e.enrolled_at.date().isoformat()
        timeline[day] = timeline.get(day, 0) + 1
    progress = [e.completion_percentage for e in active]
    records = sum(attendance.values())
    attended = attendance.get("PRESENT", 0) + attendance.get("LATE", 0)
    return {
        "session_overview": {
            "total_enrolled": len(admitted),
            "pending_requests": len(enrollments) - len(admitted),
            "completion_rate": _pct(len(completed), len(admitted)),
            "average_grade": round(sum(grades) / len(grades), 1) if grades else None,
            "dropout_rate": _pct(len(left), len(admitted)),
            "active_students": len(active),
        },
        "enrollment_timeline": [
            {"date": day, "enrollments": n} for day, n in sorted(timeline.items())
        ],
        "performance_metrics": {
            "average_completion_percentage": (
                round(sum(progress) / len(progress), 1) if progress else 0.0
            ),
            "students_above_80_percent": sum(1 for p in progress if p >= 80),
            "students_below_50_percent": sum(1 for p in progress if p < 50),
        },
        "live_attendance": {
            "live_sessions": live_sessions,
            "records": records,
            "by_status": dict(sorted(attendance.items())),
            "attendance_rate": _pct(attended, records),
        },
    }


# --- Live sessions meeting for a course session ------------------------------------------


@routes.post("/api/v1/sessions/{session_id}/enrollments/from-course")
async def enroll_from_course(request: web.Request) -> web.Response:
    """Enroll in a live session, in one call, every student ENROLLED in the course session
    it meets for (those already in it are left as they are); all or nothing."""
    who = identity(request)
    try:
        async with request.app[DB].begin() as db:
            live_sessions = SessionRepository(db)
            live = await readable_session(request, live_sessions)
            require_manager(who, live)
            await live_sessions.get(live.id, for_update=True)
            require_open(live)
            if live.course_session_id is None:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session {live.id!r} meets for no course session",
                    error_code="NO_COURSE_SESSION",
                )
            course = await CourseSessionRepository(db).get(live.course_session_id)
            if course is None:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session {live.id!r} meets for a deleted course session",
                    error_code="NO_COURSE_SESSION",
                )
            enrolled = [
                e.student_id
                for e in await CourseEnrollmentRepository(db).all(course.id)
                if e.status == S.ENROLLED
            ]
            live_enrollments = EnrollmentRepository(db)
            present = {e.student_id for e in await live_enrollments.for_session(live.id)}
            new = [s for s in enrolled if s not in present]
            if len(present) + len(new) > live.max_students:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session is full ({live.max_students} students): {len(present)} enrolled, "
                    f"{len(new)} more from the course session",
                    error_code="SESSION_FULL",
                )
            people = await PeopleRepository(db).by_ids(live.center_id, new)
            added = []
            for student_id in new:
                person = people.get(student_id)
                enrollment = Enrollment(
                    center_id=live.center_id,
                    session_id=live.id,
                    student_id=student_id,
                    student_name=person.name if person is not None else None,
                    course_id=course.course_id,
                    completed=False,
                )
                live_enrollments.add(enrollment)
                await db.flush()
                audit(
                    request,
                    db,
                    who,
                    "enrollment.add",
                    live.center_id,
                    "enrollment",
                    enrollment.id,
                    {
                        "session_id": live.id,
                        "student_id": student_id,
                        "course_session_id": course.id,
                    },
                )
                added.append(enrollment)
    except IntegrityError:
        # A concurrent add of one of them: nothing of this call was kept.
        raise HubError(
            ErrorCode.CONFLICT,
            "the session's enrollments changed meanwhile; retry",
            error_code="ENROLLMENT_EXISTS",
        ) from None
    return answer(
        {
            "session_id": live.id,
            "course_session_id": course.id,
            "added": [enrollment_view(e) for e in added],
            "already_enrolled": sorted(present & set(enrolled)),
        },
        status=201,
        message=f"{len(added)} students enrolled from the course session",
    )
