"""A tutor's "my day": today's sessions with their students, open help requests,
absentees without catch-up work, and assessments still to write."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select
from typing_extensions import TypedDict

from persistence.models import (
    HELP_ACTIVE,
    AttendanceStatus,
    CatchUpPackage,
    HelpRequest,
    SessionStatus,
    utcnow,
)
from persistence.repositories import (
    AttendanceRecords,
    EnrollmentRepository,
    Page,
    SessionQuery,
    SessionRepository,
)
from persistence.views import SessionView, session_view
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Role
from rest.http import identity, ok, parse_query
from rest.keys import DB, HELP
from rest.openapi import documented
from rest.schemas import Body, TimeZoneName
from rooms.help import HelpView, help_view, serving_order

routes = web.RouteTableDef()

MAX_SESSIONS_A_DAY = 100


class DayQuery(Body):
    tz: TimeZoneName = "UTC"


class DayStudent(TypedDict):
    student_id: str
    student_name: str | None
    course_id: str | None
    lesson_id: str | None
    level: str | None
    mode: str
    attendance: str | None


class DaySession(SessionView):
    """One of the day's sessions, with its roster and how many ask for help."""

    students: list[DayStudent]
    open_help: int


class MissedLesson(TypedDict):
    """A student who missed a lesson and has no catch-up work yet."""

    session_id: str
    student_id: str
    student_name: str | None
    lesson_id: str | None
    attendance: str | None


class WaitingAssessment(TypedDict):
    session_id: str
    student_id: str
    student_name: str | None
    course_id: str | None
    lesson_id: str | None


class Day(TypedDict):
    """A tutor's day: sessions, open help, absentees without catch-up, assessments due."""

    date: str
    tz: str
    sessions: list[DaySession]
    open_help_requests: list[HelpView]
    absent_without_catch_up: list[MissedLesson]
    assessments_waiting: list[WaitingAssessment]


@routes.get("/api/v1/tutors/me/day")
@documented(Day, query=DayQuery)
async def my_day(request: web.Request) -> web.Response:
    """The calling tutor's day, in the time zone ``tz``."""
    who = identity(request)
    if who.role is not Role.TUTOR:
        raise HubError(ErrorCode.FORBIDDEN, "my day is a tutor's view")
    params = parse_query(request, DayQuery)
    zone = ZoneInfo(params.tz)
    now = utcnow()
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time.min, tzinfo=zone)
    query = replace(
        SessionQuery(center_id=who.center, tutor_id=who.user_id),
        starts_from=start,
        starts_before=start + timedelta(days=1),
    )
    desk = request.app[HELP]
    sessions_out: list[DaySession] = []
    open_help: list[HelpView] = []
    absent: list[MissedLesson] = []
    assessments: list[WaitingAssessment] = []
    async with request.app[DB]() as db:
        sessions, _ = await SessionRepository(db).list(query, Page(1, MAX_SESSIONS_A_DAY))
        for session in sessions:
            enrollments = await EnrollmentRepository(db).for_session(session.id)
            records = await AttendanceRecords(db).for_session(session.id)
            packages = {
                p.student_id
                for p in await db.scalars(
                    select(CatchUpPackage).where(CatchUpPackage.session_id == session.id)
                )
            }
            active = (
                await db.scalars(
                    select(HelpRequest).where(
                        HelpRequest.session_id == session.id,
                        HelpRequest.status.in_(HELP_ACTIVE),
                    )
                )
            ).all()
            over = session.status == SessionStatus.ENDED.value or session.ends_at <= now
            students: list[DayStudent] = []
            for e in enrollments:
                record = records.get(e.student_id)
                status = record.status if record is not None else None
                students.append(
                    {
                        "student_id": e.student_id,
                        "student_name": e.student_name,
                        "course_id": e.course_id,
                        "lesson_id": e.lesson_id,
                        "level": e.level,
                        "mode": e.mode,
                        "attendance": status,
                    }
                )
                missed = status == AttendanceStatus.ABSENT.value or (
                    over
                    and (record is None or record.first_joined_at is None)
                    and status != AttendanceStatus.EXCUSED.value
                )
                if missed and e.student_id not in packages:
                    absent.append(
                        {
                            "session_id": session.id,
                            "student_id": e.student_id,
                            "student_name": e.student_name,
                            "lesson_id": e.lesson_id,
                            "attendance": status,
                        }
                    )
                attended = record is not None and record.first_joined_at is not None
                if over and attended and e.assessment_data is None:
                    assessments.append(
                        {
                            "session_id": session.id,
                            "student_id": e.student_id,
                            "student_name": e.student_name,
                            "course_id": e.course_id,
                            "lesson_id": e.lesson_id,
                        }
                    )
            open_help += [
                help_view(r, desk.clock(), desk.targets)
                for r in serving_order(active, desk.clock(), desk.targets)
            ]
            sessions_out.append(
                DaySession(**session_view(session), students=students, open_help=len(active))
            )
    return ok(
        Day(
            date=today.isoformat(),
            tz=params.tz,
            sessions=sessions_out,
            open_help_requests=open_help,
            absent_without_catch_up=absent,
            assessments_waiting=assessments,
        )
    )
