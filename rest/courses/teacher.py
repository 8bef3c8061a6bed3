"""A teacher's course sessions: create, list, read, update, publish, delete."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from persistence.course_views import CourseSessionView
from persistence.models import (
    CourseSession,
    CourseSessionSettings,
    CourseSessionStatus,
    utcnow,
)
from persistence.repositories import (
    CourseEnrollmentRepository,
    CourseSessionRepository,
)
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Role
from rest.courses.common import (
    TEACHER,
    answer,
    audit,
    bad_request,
    body_of,
    center_listing,
    check_dates,
    created,
    duplicate_name,
    expired,
    jsonable,
    link_cohorts,
    managed,
    new_code,
    query_of,
    readable,
    staff_view,
    touched,
    unprocessable,
    valid_teacher,
)
from rest.http import identity
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import (
    CourseSessionCreate,
    CourseSessionListQuery,
    CourseSessionUpdate,
)
from rooms.access import COURSE_READER_ROLES, require_course_staff

routes = web.RouteTableDef()


# --- Teacher: course sessions ------------------------------------------------------------


@routes.post(TEACHER)
@documented(CourseSessionView, body=CourseSessionCreate, status=201)
async def create_course_session(request: web.Request) -> web.Response:
    """Create a course session (DRAFT) with its settings and a join code."""
    who = identity(request)
    require_course_staff(who)
    body = await body_of(request, CourseSessionCreate)
    if who.role is Role.TUTOR and body.teacher_id != who.user_id:
        raise HubError(ErrorCode.FORBIDDEN, "a teacher may only create sessions they teach")
    now = utcnow()
    if body.start_date < now:
        raise bad_request("start_date cannot be in the past for a new session", "start_date")
    check_dates(body.start_date, body.end_date, body.enrollment_deadline)
    center_id = who.center
    try:
        async with request.app[DB].begin() as db:
            sessions = CourseSessionRepository(db)
            await valid_teacher(db, who, center_id, body.teacher_id)
            if await sessions.name_taken(
                center_id, body.teacher_id, body.course_id, body.session_name
            ):
                raise duplicate_name()
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
                session_code=await new_code(sessions),
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
            cohorts = await link_cohorts(db, who, session, body.cohort_ids)
            audit(
                request,
                db,
                who,
                "course_session.create",
                center_id,
                "course_session",
                session.id,
                {
                    "session_name": session.session_name,
                    "status": session.status,
                    "cohort_ids": list(cohorts.added),
                },
            )
            view = await staff_view(db, session, now, enrolled_count=0)
    except IntegrityError:
        # Lost a race with a session of the same name (the partial unique index).
        raise duplicate_name() from None
    return answer(
        view,
        status=201,
        message="Course session created successfully",
    )


@routes.get(TEACHER)
@documented(CourseSessionView, query=CourseSessionListQuery, envelope=Envelope.PAGE)
async def list_teacher_sessions(request: web.Request) -> web.Response:
    """The course sessions the caller manages (a tutor: their own), or reads (the
    center's supervisors and assessors: all of the center's)."""
    who = identity(request)
    if who.role not in COURSE_READER_ROLES:
        require_course_staff(who)
    params = query_of(request, CourseSessionListQuery)
    teacher_id = params.teacher_id
    if who.role is Role.TUTOR:
        if teacher_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "Teachers can only access assigned sessions")
        teacher_id = who.user_id
    return await center_listing(request, params, teacher_id=teacher_id)


@routes.get(TEACHER + "/{session_id}")
@documented(CourseSessionView)
async def get_course_session(request: web.Request) -> web.Response:
    """One course session, with its enrolled count."""
    async with request.app[DB]() as db:
        session = await readable(request, db)
        count = await CourseEnrollmentRepository(db).seated(session.id)
        view = await staff_view(db, session, utcnow(), enrolled_count=count)
    return answer(view)


@routes.patch(TEACHER + "/{session_id}")
@documented(CourseSessionView, body=CourseSessionUpdate)
async def update_course_session(request: web.Request) -> web.Response:
    """Change a course session."""
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
                await valid_teacher(db, who, session.center_id, changes["teacher_id"])
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
            check_dates(
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
                raise duplicate_name()
            seated = await CourseEnrollmentRepository(db).seated(session.id)
            if changes.get("max_students") is not None and changes["max_students"] < seated:
                raise unprocessable(
                    f"max_students {changes['max_students']} is below the {seated} enrolled",
                    "SESSION_OVER_CAPACITY",
                )
            cohort_ids = changes.pop("cohort_ids", None)
            for name, value in changes.items():
                setattr(session, name, value)
            details = jsonable(changes)
            if cohort_ids is not None:
                cohorts = await link_cohorts(db, who, session, cohort_ids)
                details["cohort_ids"] = {
                    "added": list(cohorts.added),
                    "removed": list(cohorts.removed),
                }
            touched(session, request, who)
            audit(
                request,
                db,
                who,
                "course_session.update",
                session.center_id,
                "course_session",
                session.id,
                details,
            )
            await db.flush()
            view = await staff_view(db, session, now, enrolled_count=seated)
    except IntegrityError:
        raise duplicate_name() from None
    return answer(
        view,
        message="Course session updated successfully",
    )


@routes.patch(TEACHER + "/{session_id}/publish")
@documented(CourseSessionView)
async def publish_course_session(request: web.Request) -> web.Response:
    """Publish a DRAFT course session: students may join it."""
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
        view = await staff_view(db, session, now)
    return answer(view, message="Course session published successfully")


@routes.delete(TEACHER + "/{session_id}")
@documented(envelope=Envelope.NONE, status=204)
async def delete_course_session(request: web.Request) -> web.Response:
    """Delete a course session (soft: the rows stay)."""
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
