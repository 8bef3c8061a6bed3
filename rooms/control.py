"""The tutor's control over a live session: Teach/Observe per student, assignments,
progress, notes, and ending the session: routes for the gateway."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import (
    Enrollment,
    EnrollmentEvent,
    EnrollmentEventKind,
    ExerciseAttempt,
    LiveSession,
    Mode,
    NoteVisibility,
    SessionStatus,
    TutorNote,
    utcnow,
)
from persistence.repositories import AuditLog, EnrollmentRepository, SessionRepository
from persistence.views import iso, note_view
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.events import Id, Payload
from realtime.base.names import staff_room, student_room, students_room
from realtime.gateway.membership import Connection, Joined, LiveRole, Membership
from realtime.gateway.ports import (
    Ack,
    AfterLock,
    JoinReads,
    Rooms,
    Route,
    SessionEnding,
    StudentActivity,
)

NoteText = Annotated[str, StringConstraints(min_length=1, max_length=5_000)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ModeSet(Payload):
    session_id: Id
    student_id: Id
    mode: Mode


class SessionEnd(Payload):
    session_id: Id


class NoteAdd(Payload):
    session_id: Id
    student_id: Id | None = None
    text: NoteText
    visibility: NoteVisibility


class Exercise(Payload):
    # Exercises come from the LMS with fields of their own; id and title are required.
    model_config = Payload.model_config | {"extra": "allow"}
    id: Id
    title: Title


class ExerciseAssign(Payload):
    session_id: Id
    student_id: Id
    exercise: Exercise


class ExerciseProgress(Payload):
    session_id: Id
    exercise_id: Id
    progress_pct: Annotated[int, Field(ge=0, le=100)]
    completed: bool = False


class AnnouncementSend(Payload):
    session_id: Id
    text: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
    student_id: Id | None = None


class ControlCenter(JoinReads):
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        members: Membership,
        rooms: Rooms,
        activity: StudentActivity,
        ending: SessionEnding,
    ) -> None:
        self._db = db
        self._members = members
        self._rooms = rooms
        self._activity = activity
        self._ending = ending

    def routes(self) -> list[Route[Any]]:
        return [
            Route("mode:set", ModeSet, self._set_mode),
            Route("session:end", SessionEnd, self._end),
            Route("note:add", NoteAdd, self._add_note),
            Route("exercise:assign", ExerciseAssign, self._assign),
            Route("exercise:progress", ExerciseProgress, self._progress),
            Route("announcement:send", AnnouncementSend, self._announce),
        ]

    # -- session extension ---------------------------------------------------

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        """``progress``: each student's latest report (their newest attempt), so a page
        opened mid-lesson shows where everyone is."""
        attempts = (
            await db.scalars(
                select(ExerciseAttempt)
                .where(
                    ExerciseAttempt.session_id == joined.session_id,
                    ExerciseAttempt.student_id.in_(student_ids),
                )
                .order_by(ExerciseAttempt.updated_at, ExerciseAttempt.id)
            )
        ).all()
        latest = {attempt.student_id: attempt for attempt in attempts}
        return {
            "progress": {
                student_id: {
                    "exercise_id": attempt.exercise_id,
                    "progress_pct": attempt.progress_pct,
                    "completed": attempt.completed_at is not None,
                    "at": iso(attempt.updated_at),
                }
                for student_id, attempt in latest.items()
            }
        }

    def _as_tutor(self, connection: Connection, session_id: str) -> Joined:
        joined = self._members.joined(connection, session_id)
        if joined.role is not LiveRole.TUTOR:
            raise HubError(
                ErrorCode.FORBIDDEN, f"only the session's tutor may do this, not a {joined.role}"
            )
        return joined

    async def _enrollment(self, db: AsyncSession, joined: Joined, student_id: str) -> Enrollment:
        enrollment = await EnrollmentRepository(db).get(joined.session_id, student_id)
        if enrollment is None:
            raise not_found("enrollment", student_id)
        return enrollment

    async def _to_student_and_staff(
        self, joined: Joined, student_id: str, event: str, data: dict[str, Any]
    ) -> None:
        await self._rooms.emit(event, data, room=staff_room(joined.center_id, joined.session_id))
        await self._rooms.emit(
            event, data, room=student_room(joined.center_id, joined.session_id, student_id)
        )

    async def _set_mode(self, connection: Connection, payload: ModeSet) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        async with self._db.begin() as db:
            enrollment = await self._enrollment(db, joined, payload.student_id)
            enrollment.mode = payload.mode.value
            _history(
                db,
                connection,
                joined,
                payload.student_id,
                EnrollmentEventKind.MODE,
                {"mode": payload.mode.value},
                utcnow(),
            )
            _audit(db, connection, joined, "mode.set", payload.student_id, {"mode": payload.mode})
        await self._to_student_and_staff(
            joined,
            payload.student_id,
            "mode:changed",
            {
                "session_id": joined.session_id,
                "student_id": payload.student_id,
                "mode": payload.mode.value,
            },
        )
        return {}

    async def _assign(self, connection: Connection, payload: ExerciseAssign) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        now = utcnow()
        assignment = {
            "exercise": payload.exercise.model_dump(mode="json"),
            "assigned_at": iso(now),
            "assigned_by": connection.identity.user_id,
        }
        async with self._db.begin() as db:
            enrollment = await self._enrollment(db, joined, payload.student_id)
            enrollment.assignment = assignment
            _history(
                db,
                connection,
                joined,
                payload.student_id,
                EnrollmentEventKind.ASSIGNMENT,
                {"exercise": assignment["exercise"]},
                now,
            )
            _audit(
                db,
                connection,
                joined,
                "exercise.assign",
                payload.student_id,
                {"exercise_id": payload.exercise.id},
            )
        await self._to_student_and_staff(
            joined,
            payload.student_id,
            "exercise:assigned",
            {"session_id": joined.session_id, "student_id": payload.student_id, **assignment},
        )
        return {"assignment": assignment}

    async def _progress(self, connection: Connection, payload: ExerciseProgress) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
        if joined.role is not LiveRole.STUDENT or joined.student_id is None:
            raise HubError(ErrorCode.FORBIDDEN, "only a student reports their own progress")
        await self._activity.student_activity(joined)
        now = utcnow()
        async with self._db.begin() as db:
            attempt = (
                await db.scalars(
                    select(ExerciseAttempt)
                    .where(
                        ExerciseAttempt.session_id == joined.session_id,
                        ExerciseAttempt.student_id == joined.student_id,
                        ExerciseAttempt.exercise_id == payload.exercise_id,
                        ExerciseAttempt.completed_at.is_(None),
                    )
                    .order_by(ExerciseAttempt.started_at.desc())
                    .limit(1)
                )
            ).first()
            if attempt is None:
                attempt = ExerciseAttempt(
                    center_id=joined.center_id,
                    session_id=joined.session_id,
                    student_id=joined.student_id,
                    exercise_id=payload.exercise_id,
                    started_at=now,
                )
                db.add(attempt)
            attempt.progress_pct = payload.progress_pct
            if payload.completed:
                attempt.completed_at = now
        await self._rooms.emit(
            "progress:update",
            {
                "session_id": joined.session_id,
                "student_id": joined.student_id,
                "exercise_id": payload.exercise_id,
                "progress_pct": payload.progress_pct,
                "completed": payload.completed,
            },
            room=staff_room(joined.center_id, joined.session_id),
        )
        return {}

    async def _add_note(self, connection: Connection, payload: NoteAdd) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        async with self._db.begin() as db:
            if payload.student_id is not None:
                await self._enrollment(db, joined, payload.student_id)
            note = TutorNote(
                center_id=joined.center_id,
                session_id=joined.session_id,
                student_id=payload.student_id,
                author_id=connection.identity.user_id,
                text=payload.text,
                visibility=payload.visibility.value,
                created_at=utcnow(),
            )
            db.add(note)
            await db.flush()
            _audit(
                db,
                connection,
                joined,
                "note.add",
                payload.student_id or "",
                {"note_id": note.id, "visibility": payload.visibility},
            )
        return {"note": note_view(note)}

    async def _announce(self, connection: Connection, payload: AnnouncementSend) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        data = {
            "session_id": joined.session_id,
            "text": payload.text,
            "from": connection.identity.user_id,
            "student_id": payload.student_id,
            "at": iso(utcnow()),
        }
        if payload.student_id is not None:
            async with self._db() as db:
                await self._enrollment(db, joined, payload.student_id)
            await self._to_student_and_staff(joined, payload.student_id, "announcement", data)
        else:
            await self._rooms.emit(
                "announcement", data, room=staff_room(joined.center_id, joined.session_id)
            )
            await self._rooms.emit(
                "announcement", data, room=students_room(joined.center_id, joined.session_id)
            )
        return {}

    async def _end(self, connection: Connection, payload: SessionEnd) -> AfterLock:
        joined = self._as_tutor(connection, payload.session_id)
        async with self._db.begin() as db:
            session = await SessionRepository(db).get(joined.session_id, for_update=True)
            if session is None:
                raise not_found("session", joined.session_id)
            newly_ended = mark_ended(
                db,
                session,
                actor_id=connection.identity.user_id,
                actor_role=connection.identity.role.value,
                ip=connection.ip,
            )

        async def tell_everyone() -> None:
            # After the lock: ending takes every socket, this one too, out of the session.
            if newly_ended:
                await self._ending.session_ended(session)

        return AfterLock(tell_everyone())


def mark_ended(
    db: AsyncSession, session: LiveSession, *, actor_id: str, actor_role: str, ip: str | None
) -> bool:
    """Mark a session ENDED and audit it; False if it had already ended."""
    if session.status == SessionStatus.ENDED.value:
        return False
    session.status = SessionStatus.ENDED.value
    session.ended_at = utcnow()
    AuditLog(db).record(
        center_id=session.center_id,
        actor_id=actor_id,
        actor_role=actor_role,
        action="session.end",
        target_type="session",
        target_id=session.id,
        ip=ip,
    )
    return True


def _history(
    db: AsyncSession,
    connection: Connection,
    joined: Joined,
    student_id: str,
    kind: EnrollmentEventKind,
    data: dict[str, Any],
    at: datetime,
) -> None:
    """The change's row in the enrollment's history (the replay timeline reads it)."""
    db.add(
        EnrollmentEvent(
            center_id=joined.center_id,
            session_id=joined.session_id,
            student_id=student_id,
            kind=kind.value,
            data=data,
            actor_id=connection.identity.user_id,
            at=at,
        )
    )


def _audit(
    db: AsyncSession,
    connection: Connection,
    joined: Joined,
    action: str,
    target_id: str,
    details: dict[str, Any],
) -> None:
    AuditLog(db).record(
        center_id=joined.center_id,
        actor_id=connection.identity.user_id,
        actor_role=connection.identity.role.value,
        action=action,
        target_type="enrollment" if target_id else "session",
        target_id=target_id or joined.session_id,
        ip=connection.ip,
        details={k: str(v) for k, v in details.items()},
    )
