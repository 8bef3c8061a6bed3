"""Enrollments: a student in a session with their own course, lesson, level and content."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from persistence.models import Enrollment
from persistence.repositories import AuditLog, EnrollmentRepository, Page, SessionRepository
from persistence.views import EnrollmentView, enrollment_view
from realtime.base.errors import ErrorCode, HubError, not_found
from rest.http import identity, listing, ok, parse_body, parse_query
from rest.keys import DB, SESSIONS
from rest.openapi import Envelope, documented
from rest.schemas import AssessmentWrite, EnrollmentCreate, EnrollmentUpdate, PageQuery
from rest.sessions import audit, readable_session, require_open
from rooms.access import (
    can_assess,
    can_manage,
    can_read_work,
    require_manager,
    require_student_reader,
)

routes = web.RouteTableDef()

BASE = "/api/v1/sessions/{session_id}/enrollments"


@routes.post(BASE)
@documented(EnrollmentView, body=EnrollmentCreate, status=201)
async def add_enrollment(request: web.Request) -> web.Response:
    """Enroll a student in a live session, with their course, lesson and level."""
    who = identity(request)
    body = await parse_body(request, EnrollmentCreate)
    try:
        async with request.app[DB].begin() as db:
            sessions = SessionRepository(db)
            session = await readable_session(request, sessions)
            require_manager(who, session)
            # Lock the session row so concurrent adds cannot overfill it (Postgres;
            # SQLite transactions are already serialized by BEGIN IMMEDIATE).
            await sessions.get(session.id, for_update=True)
            require_open(session)
            enrollments = EnrollmentRepository(db)
            if await enrollments.get(session.id, body.student_id) is not None:
                raise _already_enrolled(body.student_id)
            if await enrollments.count(session.id) >= session.max_students:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session is full ({session.max_students} students)",
                    error_code="SESSION_FULL",
                )
            enrollment = Enrollment(
                center_id=session.center_id,
                session_id=session.id,
                completed=False,
                **body.model_dump(),
            )
            enrollments.add(enrollment)
            await db.flush()
            audit(
                request,
                AuditLog(db),
                who,
                "enrollment.add",
                session,
                {"student_id": body.student_id},
                target_type="enrollment",
                target_id=enrollment.id,
            )
    except IntegrityError:
        # Lost a race with an identical add.
        raise _already_enrolled(body.student_id) from None
    return ok(enrollment_view(enrollment), status=201)


def _already_enrolled(student_id: str) -> HubError:
    return HubError(
        ErrorCode.CONFLICT,
        f"student {student_id!r} is already enrolled in this session",
        error_code="ENROLLMENT_EXISTS",
    )


@routes.get(BASE)
@documented(EnrollmentView, query=PageQuery, envelope=Envelope.PAGE)
async def list_enrollments(request: web.Request) -> web.Response:
    """A live session's roster."""
    who = identity(request)
    params = parse_query(request, PageQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        if not can_read_work(who, session):
            raise HubError(ErrorCode.FORBIDDEN, "only the session's staff may list its students")
        rows, total = await EnrollmentRepository(db).page(session.id, page)
    return listing([enrollment_view(e) for e in rows], page, total)


@routes.get(BASE + "/{student_id}")
@documented(EnrollmentView)
async def get_enrollment(request: web.Request) -> web.Response:
    """One student's enrollment in a live session."""
    who = identity(request)
    student_id = request.match_info["student_id"]
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        require_student_reader(who, session, student_id)
        enrollment = await EnrollmentRepository(db).get(session.id, student_id)
    if enrollment is None:
        raise not_found("enrollment", student_id)
    return ok(enrollment_view(enrollment))


@routes.patch(BASE + "/{student_id}")
@documented(EnrollmentView, body=EnrollmentUpdate)
async def update_enrollment(request: web.Request) -> web.Response:
    """Change a student's course, lesson, level, work or notes."""
    who = identity(request)
    student_id = request.match_info["student_id"]
    body = await parse_body(request, EnrollmentUpdate)
    async with request.app[DB].begin() as db:
        session = await readable_session(request, SessionRepository(db))
        require_manager(who, session)
        enrollment = await EnrollmentRepository(db).get(session.id, student_id)
        if enrollment is None:
            raise not_found("enrollment", student_id)
        changes = body.model_dump(exclude_unset=True)
        for name, value in changes.items():
            setattr(enrollment, name, value)
        audit(
            request,
            AuditLog(db),
            who,
            "enrollment.update",
            session,
            {"student_id": student_id, "fields": sorted(changes)},
            target_type="enrollment",
            target_id=enrollment.id,
        )
    return ok(enrollment_view(enrollment))


@routes.put(BASE + "/{student_id}/assessment")
@documented(EnrollmentView, body=AssessmentWrite)
async def assess(request: web.Request) -> web.Response:
    """Write a student's assessment (the session's managers and its center's assessors);
    also after the session ended, when assessment happens. It clears the student from
    the tutor's "assessments waiting"."""
    who = identity(request)
    student_id = request.match_info["student_id"]
    body = await parse_body(request, AssessmentWrite)
    async with request.app[DB].begin() as db:
        session = await readable_session(request, SessionRepository(db))
        if not (can_manage(who, session) or can_assess(who, session)):
            raise HubError(
                ErrorCode.FORBIDDEN,
                "only the session's managers and its center's assessors write assessments",
            )
        enrollment = await EnrollmentRepository(db).get(session.id, student_id)
        if enrollment is None:
            raise not_found("enrollment", student_id)
        enrollment.assessment_data = body.assessment_data
        audit(
            request,
            AuditLog(db),
            who,
            "enrollment.assess",
            session,
            {"student_id": student_id},
            target_type="enrollment",
            target_id=enrollment.id,
        )
    return ok(enrollment_view(enrollment))


@routes.delete(BASE + "/{student_id}")
@documented(EnrollmentView)
async def remove_enrollment(request: web.Request) -> web.Response:
    """Remove a student from a live session (answers the enrollment removed)."""
    who = identity(request)
    student_id = request.match_info["student_id"]
    async with request.app[DB].begin() as db:
        session = await readable_session(request, SessionRepository(db))
        require_manager(who, session)
        require_open(session)
        enrollments = EnrollmentRepository(db)
        enrollment = await enrollments.get(session.id, student_id)
        if enrollment is None:
            raise not_found("enrollment", student_id)
        await enrollments.delete(enrollment)
        audit(
            request,
            AuditLog(db),
            who,
            "enrollment.remove",
            session,
            {"student_id": student_id},
            target_type="enrollment",
            target_id=enrollment.id,
        )
    await request.app[SESSIONS].student_removed(session, student_id)
    return ok(enrollment_view(enrollment))
