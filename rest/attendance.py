"""Attendance over REST: a session's attendance, and bulk marking with catch-up work.

Marking a student ABSENT creates a catch-up package for their lesson (course,
lesson, level and exercise content of their enrollment) in the same
transaction, exactly once per student and session however often they are
marked.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from typing_extensions import TypedDict

from persistence.models import AttendanceRecord, AttendanceStatus, CatchUpPackage, utcnow
from persistence.repositories import (
    AttendanceRecords,
    AttendanceRepository,
    AuditLog,
    EnrollmentRepository,
    SessionRepository,
)
from persistence.views import AttendanceView, IsoTime, attendance_view, iso
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.identity import Role
from rest.http import client_ip, identity, ok, parse_body
from rest.keys import DB, PRESENCE
from rest.openapi import documented
from rest.schemas import Body, Id
from rest.sessions import readable_session, require_family
from rooms.access import can_read_roster, require_manager, visible_session

routes = web.RouteTableDef()


class Mark(Body):
    student_id: Id
    status: AttendanceStatus
    notes: Annotated[str, StringConstraints(max_length=2_000)] | None = None


class BulkMarks(Body):
    session_id: Id
    records: Annotated[list[Mark], Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _each_student_once(self) -> Self:
        ids = [r.student_id for r in self.records]
        if len(ids) != len(set(ids)):
            raise ValueError("each student_id may appear once")
        return self


class CatchUpView(TypedDict):
    """Catch-up work for a student marked absent."""

    id: str
    session_id: str
    student_id: str
    course_id: str | None
    lesson_id: str | None
    level: str | None
    exercise_content: Any
    created_by: str
    created_at: IsoTime
    completed_at: IsoTime | None


class RosterAttendance(TypedDict):
    """An enrolled student's attendance: ``status`` is null until marked or seen."""

    student_id: str
    status: str | None
    joined_at: IsoTime | None
    left_at: IsoTime | None
    marked_by: str | None
    notes: str | None
    total_time_s: float
    catch_up: CatchUpView | None


class MarkResult(TypedDict):
    session_id: str
    records: list[AttendanceView]
    catch_ups_created: list[CatchUpView]


def catch_up_view(package: CatchUpPackage) -> CatchUpView:
    return {
        "id": package.id,
        "session_id": package.session_id,
        "student_id": package.student_id,
        "course_id": package.course_id,
        "lesson_id": package.lesson_id,
        "level": package.level,
        "exercise_content": package.exercise_content,
        "created_by": package.created_by,
        "created_at": iso(package.created_at),
        "completed_at": iso(package.completed_at),
    }


@routes.get("/api/v1/sessions/{session_id}/attendance")
@documented(list[RosterAttendance])
async def session_attendance(request: web.Request) -> web.Response:
    who = identity(request)
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        enrolled = await EnrollmentRepository(db).for_session(session.id)
        if not can_read_roster(who, session):
            if who.role is not Role.PARENT:
                raise HubError(ErrorCode.FORBIDDEN, "only the session's staff read its attendance")
            # A parent reads their own children's.
            mine = set(await require_family(db, who, session))
            enrolled = [e for e in enrolled if e.student_id in mine]
        records = await AttendanceRecords(db).for_session(session.id)
        totals = await AttendanceRepository(db).totals_by_student(
            session.id, [e.student_id for e in enrolled]
        )
        packages = {
            p.student_id: p
            for p in await db.scalars(
                select(CatchUpPackage).where(CatchUpPackage.session_id == session.id)
            )
        }
    now = utcnow()
    data: list[RosterAttendance] = []
    for enrollment in enrolled:
        record = records.get(enrollment.student_id)
        package = packages.get(enrollment.student_id)
        data.append(
            {
                "student_id": enrollment.student_id,
                "status": record.status if record is not None else None,
                "joined_at": iso(record.first_joined_at) if record is not None else None,
                "left_at": iso(record.last_left_at) if record is not None else None,
                "marked_by": record.marked_by if record is not None else None,
                "notes": record.notes if record is not None else None,
                "total_time_s": round(totals[enrollment.student_id].total_time_s(now), 3),
                "catch_up": catch_up_view(package) if package is not None else None,
            }
        )
    return ok(data)


@routes.post("/api/v1/attendance/bulk")
@documented(MarkResult, body=BulkMarks)
async def mark_attendance(request: web.Request) -> web.Response:
    body = await parse_body(request, BulkMarks)
    for attempt in range(2):
        try:
            result = await _mark(request, body)
            break
        except IntegrityError:
            # A concurrent mark created the same record or package first; once more
            # sees it and updates instead.
            if attempt:
                raise HubError(ErrorCode.CONFLICT, "attendance changed meanwhile; retry") from None
    session, records, created = result
    presence = request.app[PRESENCE]
    for record in records:
        await presence.announce_attendance(session.center_id, session.id, record)
    return ok(
        MarkResult(
            session_id=session.id,
            records=[attendance_view(r) for r in records],
            catch_ups_created=[catch_up_view(p) for p in created],
        )
    )


async def _mark(
    request: web.Request, body: BulkMarks
) -> tuple[Any, list[AttendanceRecord], list[CatchUpPackage]]:
    who = identity(request)
    async with request.app[DB].begin() as db:
        session = visible_session(
            who, await SessionRepository(db).get(body.session_id), body.session_id
        )
        require_manager(who, session)
        enrollments = {
            e.student_id: e for e in await EnrollmentRepository(db).for_session(session.id)
        }
        missing = [m.student_id for m in body.records if m.student_id not in enrollments]
        if missing:
            error = not_found("enrollment", missing[0])
            error.details = {"student_ids": missing}
            raise error
        attendance = AttendanceRecords(db)
        existing = {
            p.student_id
            for p in await db.scalars(
                select(CatchUpPackage).where(CatchUpPackage.session_id == session.id)
            )
        }
        records: list[AttendanceRecord] = []
        created: list[CatchUpPackage] = []
        for mark in body.records:
            record = await attendance.get(session.id, mark.student_id)
            if record is None:
                record = AttendanceRecord(
                    center_id=session.center_id, session_id=session.id, student_id=mark.student_id
                )
                db.add(record)
            record.status = mark.status.value
            record.marked_by = who.user_id
            record.notes = mark.notes
            records.append(record)
            if mark.status is AttendanceStatus.ABSENT and mark.student_id not in existing:
                enrollment = enrollments[mark.student_id]
                package = CatchUpPackage(
                    center_id=session.center_id,
                    session_id=session.id,
                    student_id=mark.student_id,
                    course_id=enrollment.course_id,
                    lesson_id=enrollment.lesson_id,
                    level=enrollment.level,
                    exercise_content=enrollment.exercise_content,
                    created_by=who.user_id,
                    created_at=utcnow(),
                )
                db.add(package)
                created.append(package)
        await db.flush()
        AuditLog(db).record(
            center_id=session.center_id,
            actor_id=who.user_id,
            actor_role=who.role.value,
            action="attendance.mark",
            target_type="session",
            target_id=session.id,
            ip=client_ip(request),
            details={
                "marks": {m.student_id: m.status.value for m in body.records},
                "catch_ups": [p.id for p in created],
            },
        )
    return session, records, created
