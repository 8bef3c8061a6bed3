"""A course session's enrollments, as its staff see and change them: status and grade."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.course_views import CourseEnrollmentView, course_enrollment_view
from persistence.models import (
    SEATED,
    CourseSession,
    CourseSessionEnrollment,
    CourseSessionStatus,
    utcnow,
)
from persistence.repositories import (
    CourseEnrollmentRepository,
    Page,
    PeopleRepository,
)
from realtime.base.errors import ErrorCode, HubError
from rest.courses.common import (
    READERS,
    TEACHER,
    TRANSITIONS,
    S,
    answer,
    audit,
    body_of,
    expired,
    graded,
    managed,
    query_of,
    readable,
    require_seat,
    touched,
    unprocessable,
)
from rest.http import identity, listing
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import (
    CourseEnrollmentListQuery,
    EnrollmentStatusUpdate,
    GradeUpdate,
)

routes = web.RouteTableDef()


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
@documented(CourseEnrollmentView, query=CourseEnrollmentListQuery, envelope=Envelope.PAGE)
async def list_course_enrollments(request: web.Request) -> web.Response:
    """A course session's enrollments, with each student's name and email."""
    params = query_of(request, CourseEnrollmentListQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await readable(request, db)
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
@documented(CourseEnrollmentView, body=EnrollmentStatusUpdate)
async def update_enrollment_status(request: web.Request) -> web.Response:
    """Move an enrollment to another status (approve, complete, drop, expel)."""
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
                    await require_seat(db, session)
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
@documented(CourseEnrollmentView, body=GradeUpdate)
async def update_enrollment_grade(request: web.Request) -> web.Response:
    """Set an enrollment's grade and completion (its managers, the center's assessors)."""
    who = identity(request)
    body = await body_of(request, GradeUpdate)
    async with request.app[DB].begin() as db:
        session = await graded(request, db)
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
