"""Sessions: create, list (by day, tutor, status), get, update, end."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import CourseSession, LiveSession, SessionStatus
from persistence.repositories import (
    AuditLog,
    CourseSessionRepository,
    EnrollmentRepository,
    Page,
    ParentLinks,
    SessionQuery,
    SessionRepository,
)
from persistence.views import SessionView, session_view
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Identity, Role
from rest.http import client_ip, identity, listing, ok, parse_body, parse_query
from rest.keys import DB, SESSIONS
from rest.openapi import Envelope, documented
from rest.schemas import SessionCreate, SessionListQuery, SessionUpdate
from rooms.access import (
    SESSION_CREATOR_ROLES,
    can_read_work,
    family_scope,
    require_course_manager,
    require_manager,
    visible_session,
)
from rooms.control import mark_ended

routes = web.RouteTableDef()


def audit(
    request: web.Request,
    db_audit: AuditLog,
    who: Identity,
    action: str,
    session: LiveSession,
    details: dict[str, object] | None = None,
    *,
    target_type: str = "session",
    target_id: str | None = None,
) -> None:
    db_audit.record(
        center_id=session.center_id,
        actor_id=who.user_id,
        actor_role=who.role.value,
        action=action,
        target_type=target_type,
        target_id=target_id or session.id,
        ip=client_ip(request),
        details=details,
    )


async def linkable_course_session(
    db: AsyncSession, who: Identity, center_id: str, course_session_id: str
) -> CourseSession:
    """The course session a live session of ``center_id`` may meet for: one of that
    center, not deleted, that the caller manages."""
    course = await CourseSessionRepository(db).get(course_session_id)
    if course is None or course.center_id != center_id:
        raise HubError(
            ErrorCode.VALIDATION_ERROR,
            f"course_session_id {course_session_id!r} names no course session of center "
            f"{center_id!r}",
            details={"field": "course_session_id"},
        )
    require_course_manager(who, course)
    return course


def require_open(session: LiveSession) -> None:
    if session.status == SessionStatus.ENDED.value:
        raise HubError(ErrorCode.SESSION_ENDED, f"session {session.id!r} has ended")


@routes.post("/api/v1/sessions")
@documented(SessionView, body=SessionCreate, status=201)
async def create_session(request: web.Request) -> web.Response:
    """Create a live session (optionally meeting for a course session)."""
    who = identity(request)
    body = await parse_body(request, SessionCreate)
    if who.role not in SESSION_CREATOR_ROLES:
        raise HubError(ErrorCode.FORBIDDEN, f"role {who.role.value} may not create sessions")
    if who.role is Role.TUTOR and body.tutor_id != who.user_id:
        raise HubError(ErrorCode.FORBIDDEN, "a tutor may only create sessions they teach")
    if (
        body.center_id is not None
        and body.center_id != who.center
        and who.role is not Role.SUPER_ADMIN
    ):
        raise HubError(
            ErrorCode.FORBIDDEN, "only a super admin may create sessions in another center"
        )
    session = LiveSession(
        center_id=body.center_id or who.center,
        title=body.title,
        tutor_id=body.tutor_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        max_students=body.max_students,
        status=SessionStatus.SCHEDULED.value,
        settings={} if body.idle_after_s is None else {"idle_after_s": body.idle_after_s},
        created_by=who.user_id,
        course_session_id=body.course_session_id,
    )
    async with request.app[DB].begin() as db:
        if body.course_session_id is not None:
            await linkable_course_session(db, who, session.center_id, body.course_session_id)
        SessionRepository(db).add(session)
        await db.flush()
        audit(request, AuditLog(db), who, "session.create", session, {"title": session.title})
    return ok(session_view(session), status=201)


@routes.get("/api/v1/sessions")
@documented(SessionView, query=SessionListQuery, envelope=Envelope.PAGE)
async def list_sessions(request: web.Request) -> web.Response:
    """The live sessions the caller may read."""
    who = identity(request)
    params = parse_query(request, SessionListQuery)
    query = SessionQuery(
        center_id=who.center,
        tutor_id=params.tutor_id,
        status=params.status.value if params.status else None,
    )
    if who.role is Role.SUPER_ADMIN:
        query = replace(query, center_id=params.center_id)
    elif params.center_id is not None and params.center_id != who.center:
        raise HubError(ErrorCode.FORBIDDEN, "only a super admin may list another center's sessions")
    if who.role is Role.TUTOR:
        if params.tutor_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "a tutor may only list their own sessions")
        query = replace(query, tutor_id=who.user_id)
    elif who.role is Role.STUDENT:
        query = replace(query, student_ids=(who.user_id,))
    elif who.role is Role.PARENT:
        async with request.app[DB]() as db:
            children = await ParentLinks(db).children(who.center, who.user_id)
        query = replace(query, student_ids=tuple(children))
    if params.day is not None:
        start = datetime.combine(params.day, time.min, tzinfo=ZoneInfo(params.tz))
        query = replace(query, starts_from=start, starts_before=start + timedelta(days=1))
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        rows, total = await SessionRepository(db).list(query, page)
    return listing([session_view(s) for s in rows], page, total)


async def require_family(db: AsyncSession, who: Identity, session: LiveSession) -> list[str]:
    """The students of the session whose records the caller may read: a student
    themself, a parent their enrolled children; anyone else is FORBIDDEN."""
    if who.role is Role.STUDENT:
        if await EnrollmentRepository(db).get(session.id, who.user_id) is None:
            raise HubError(ErrorCode.FORBIDDEN, "not a member of this session")
        return [who.user_id]
    children = await ParentLinks(db).children(who.center, who.user_id)
    enrolled = await EnrollmentRepository(db).enrolled_among(session.id, children)
    return family_scope(who, children, enrolled)


async def readable_session(request: web.Request, db_session: SessionRepository) -> LiveSession:
    """The session of the URL if the caller may read it (404 across centers, 403 within)."""
    who = identity(request)
    session_id = request.match_info["session_id"]
    return visible_session(who, await db_session.get(session_id), session_id)


@routes.get("/api/v1/sessions/{session_id}")
@documented(SessionView)
async def get_session(request: web.Request) -> web.Response:
    """One live session."""
    who = identity(request)
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        if not can_read_work(who, session):
            await require_family(db, who, session)
    return ok(session_view(session))


@routes.patch("/api/v1/sessions/{session_id}")
@documented(SessionView, body=SessionUpdate)
async def update_session(request: web.Request) -> web.Response:
    """Change a live session's title, tutor, times or settings."""
    who = identity(request)
    body = await parse_body(request, SessionUpdate)
    async with request.app[DB].begin() as db:
        session = await readable_session(request, SessionRepository(db))
        require_manager(who, session)
        require_open(session)
        changes = body.model_dump(exclude_unset=True)
        if "tutor_id" in changes and changes["tutor_id"] != session.tutor_id:
            if who.role is Role.TUTOR:
                raise HubError(ErrorCode.FORBIDDEN, "a tutor may not hand a session to another")
        starts_at = changes.get("starts_at", session.starts_at)
        ends_at = changes.get("ends_at", session.ends_at)
        if ends_at <= starts_at:
            raise HubError(
                ErrorCode.VALIDATION_ERROR,
                "ends_at must be after starts_at",
                details={"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()},
            )
        if "max_students" in changes:
            enrolled = await EnrollmentRepository(db).count(session.id)
            if changes["max_students"] < enrolled:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"max_students {changes['max_students']} is below the {enrolled} enrolled",
                    error_code="SESSION_OVER_CAPACITY",
                )
        if changes.get("course_session_id") not in (None, session.course_session_id):
            await linkable_course_session(db, who, session.center_id, changes["course_session_id"])
        details = _jsonable(changes)
        if "idle_after_s" in changes:
            # None clears the session's own threshold (the center default applies).
            session.settings = {**session.settings, "idle_after_s": changes.pop("idle_after_s")}
        for name, value in changes.items():
            setattr(session, name, value)
        audit(request, AuditLog(db), who, "session.update", session, details)
    request.app[SESSIONS].session_changed(session)
    return ok(session_view(session))


@routes.post("/api/v1/sessions/{session_id}/end")
@documented(SessionView)
async def end_session(request: web.Request) -> web.Response:
    """End a live session now: everyone connected is told and leaves."""
    who = identity(request)
    async with request.app[DB].begin() as db:
        session = await readable_session(request, SessionRepository(db))
        require_manager(who, session)
        newly_ended = mark_ended(
            db, session, actor_id=who.user_id, actor_role=who.role.value, ip=client_ip(request)
        )
    if newly_ended:
        await request.app[SESSIONS].session_ended(session)
    return ok(session_view(session))


def _jsonable(changes: dict[str, object]) -> dict[str, object]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}
