"""Timers and alerts: the tutor's countdowns and the hub's own warnings.

Every alert fires once. A tutor timer is claimed with an ``UPDATE ... WHERE
fired_at IS NULL`` (one claimant wins); the hub's alerts are rows with a
unique (session, kind, subject) key. Both are stored, so a restarted hub (or
another hub on the same database) never fires them again, and a timer whose
end passed while no hub ran fires when one starts. Time comes from the hub's
clock, checked every ``every_s`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import (
    Alert,
    HelpPriority,
    HelpRequest,
    HelpStatus,
    LiveSession,
    SessionStatus,
    Timer,
    utcnow,
)
from persistence.repositories import EnrollmentRepository
from persistence.views import iso
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.events import Id, Payload
from realtime.base.metrics import HubMetrics
from realtime.base.names import staff_room, student_room, students_room
from realtime.base.tasks import every
from realtime.bus.bus import SWEEPS, sweeps_lease_s
from realtime.gateway.membership import Connection, Joined, LiveRole, Membership
from realtime.gateway.ports import Ack, IdleStudents, JoinReads, Lease, Rooms, Route
from rooms.help import HelpDesk

log = logging.getLogger(__name__)

MAX_TIMER_S = 8 * 3600
MAX_REMEMBERED_ALERTS = 50_000


class AlertKind(StrEnum):
    TIMER_WARNING = "TIMER_WARNING"
    TIMER_END = "TIMER_END"
    SESSION_ENDING = "SESSION_ENDING"
    SESSION_OVERTIME = "SESSION_OVERTIME"
    STUDENT_IDLE = "STUDENT_IDLE"
    HELP_WAITING = "HELP_WAITING"


class TimerStart(Payload):
    session_id: Id
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    duration_s: Annotated[float, Field(gt=0, le=MAX_TIMER_S)]
    student_id: Id | None = None
    warn_before_s: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _warning_inside(self) -> TimerStart:
        if self.warn_before_s is not None and self.warn_before_s >= self.duration_s:
            raise ValueError("warn_before_s must be shorter than duration_s")
        return self


class TimerCancel(Payload):
    session_id: Id
    timer_id: Id


def timer_view(timer: Timer) -> dict[str, Any]:
    return {
        "id": timer.id,
        "session_id": timer.session_id,
        "student_id": timer.student_id,
        "label": timer.label,
        "starts_at": iso(timer.starts_at),
        "ends_at": iso(timer.ends_at),
        "warn_at": iso(timer.warn_at),
        "created_by": timer.created_by,
    }


class Timers(JoinReads):
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        help_desk: HelpDesk,
        *,
        reads: async_sessionmaker[AsyncSession],
        members: Membership,
        rooms: Rooms,
        idle: IdleStudents,
        lease: Lease,
        clock: Callable[[], datetime] = utcnow,
        session_ending_warn_s: float = 300.0,
        idle_alert_s: float = 300.0,
        metrics: HubMetrics | None = None,
    ) -> None:
        self._db = db
        self._reads = reads
        self._members = members
        self._rooms = rooms
        self._idle = idle
        self._lease = lease
        self._clock = clock
        self._help = help_desk
        self._ending_warn = timedelta(seconds=session_ending_warn_s)
        self._idle_alert_s = idle_alert_s
        self._metrics = metrics
        # Alert keys known to have fired, so each tick does not ask the database again.
        self._fired: set[tuple[str, str, str]] = set()

    def routes(self) -> list[Route[Any]]:
        return [
            Route("timer:start", TimerStart, self._start),
            Route("timer:cancel", TimerCancel, self._cancel),
        ]

    # -- events -------------------------------------------------------------

    def _as_tutor(self, connection: Connection, session_id: str) -> Joined:
        joined = self._members.joined(connection, session_id)
        if joined.role is not LiveRole.TUTOR:
            raise HubError(ErrorCode.FORBIDDEN, "only the session's tutor runs timers")
        return joined

    async def _start(self, connection: Connection, payload: TimerStart) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        now = self._clock()
        ends_at = now + timedelta(seconds=payload.duration_s)
        async with self._db.begin() as db:
            if payload.student_id is not None:
                if (
                    await EnrollmentRepository(db).get(joined.session_id, payload.student_id)
                    is None
                ):
                    raise not_found("enrollment", payload.student_id)
            timer = Timer(
                center_id=joined.center_id,
                session_id=joined.session_id,
                student_id=payload.student_id,
                label=payload.label,
                created_by=connection.identity.user_id,
                starts_at=now,
                ends_at=ends_at,
                warn_at=(
                    ends_at - timedelta(seconds=payload.warn_before_s)
                    if payload.warn_before_s is not None
                    else None
                ),
            )
            db.add(timer)
        view = timer_view(timer)
        await self._tell(timer, "timer:started", {"session_id": joined.session_id, "timer": view})
        return {"timer": view}

    async def _cancel(self, connection: Connection, payload: TimerCancel) -> Ack:
        joined = self._as_tutor(connection, payload.session_id)
        async with self._db.begin() as db:
            timer = await db.get(Timer, payload.timer_id, with_for_update=True)
            if timer is None or timer.session_id != joined.session_id:
                raise not_found("timer", payload.timer_id)
            if timer.fired_at is not None or timer.cancelled_at is not None:
                raise HubError(ErrorCode.CONFLICT, "the timer has already ended or been cancelled")
            timer.cancelled_at = self._clock()
        await self._tell(
            timer, "timer:cancelled", {"session_id": joined.session_id, "timer": timer_view(timer)}
        )
        return {}

    async def _tell(self, timer: Timer, event: str, data: dict[str, Any]) -> None:
        """Staff, and the timer's student (or every student for a session-wide timer)."""
        await self._rooms.emit(event, data, room=staff_room(timer.center_id, timer.session_id))
        room = (
            student_room(timer.center_id, timer.session_id, timer.student_id)
            if timer.student_id is not None
            else students_room(timer.center_id, timer.session_id)
        )
        await self._rooms.emit(event, data, room=room)

    # -- session extension ---------------------------------------------------

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        timers = (
            await db.scalars(
                select(Timer)
                .where(
                    Timer.session_id == joined.session_id,
                    Timer.fired_at.is_(None),
                    Timer.cancelled_at.is_(None),
                )
                .order_by(Timer.ends_at)
            )
        ).all()
        if joined.student_id is not None:
            timers = [t for t in timers if t.student_id in (None, joined.student_id)]
        return {"timers": [timer_view(t) for t in timers]}

    # -- the watch ------------------------------------------------------------

    async def watch(self, every_s: float, stopping: asyncio.Event | None = None) -> None:
        """Background: fire what is due, every ``every_s`` seconds."""
        await every(every_s, partial(self.tick, sweeps_lease_s(every_s)), "timer tick", stopping)

    async def tick(self, lease_s: float) -> None:
        """Fire due timers and raise alerts. What the database says (timers, session
        ends, help waiting) only the hub leading the sweeps reads; each is claimed in
        the database besides, so it fires once whichever hub reads it. Idle alerts come
        from this hub's own students."""
        now = self._clock()
        if await self._lease.lead(SWEEPS, lease_s):
            await self._fire_timers(now)
            await self._session_alerts(now)
            await self._help_alerts(now)
        else:
            self._report_help_queue(now, [])  # the leading hub reports it
        await self._idle_alerts(now)

    async def _fire_timers(self, now: datetime) -> None:
        for column, kind in (
            (Timer.warn_at, AlertKind.TIMER_WARNING),
            (Timer.ends_at, AlertKind.TIMER_END),
        ):
            claim = Timer.warned_at if kind is AlertKind.TIMER_WARNING else Timer.fired_at
            async with self._reads() as db:
                due = (
                    await db.scalars(
                        select(Timer).where(
                            Timer.fired_at.is_(None),
                            Timer.cancelled_at.is_(None),
                            claim.is_(None),
                            column.is_not(None),
                            column <= now,
                        )
                    )
                ).all()
            for timer in due:
                async with self._db.begin() as db:
                    # Only the hub whose UPDATE changes the row fires it.
                    won = await db.execute(
                        update(Timer)
                        .where(Timer.id == timer.id, claim.is_(None), Timer.cancelled_at.is_(None))
                        .values({claim.key: now})
                    )
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    await self._alert_timer(timer, kind)

    async def _alert_timer(self, timer: Timer, kind: AlertKind) -> None:
        data = {
            "session_id": timer.session_id,
            "timer_id": timer.id,
            "kind": kind.value,
            "label": timer.label,
            "student_id": timer.student_id,
        }
        self._count(kind)
        await self._tell(timer, "timer:alert", data)

    async def _session_alerts(self, now: datetime) -> None:
        async with self._reads() as db:
            sessions = (
                await db.scalars(
                    select(LiveSession).where(
                        LiveSession.status == SessionStatus.LIVE.value,
                        LiveSession.ends_at <= now + self._ending_warn,
                    )
                )
            ).all()
        for session in sessions:
            ending = await self._raise(
                session.center_id,
                session.id,
                AlertKind.SESSION_ENDING,
                "",
                None,
                f"{session.title} ends at {iso(session.ends_at)}",
                now,
            )
            if ending is not None:
                await self._rooms.emit(
                    "timer:alert", ending, room=students_room(session.center_id, session.id)
                )
            if session.ends_at <= now:
                await self._raise(
                    session.center_id,
                    session.id,
                    AlertKind.SESSION_OVERTIME,
                    "",
                    None,
                    f"{session.title} is past its end",
                    now,
                )

    async def _idle_alerts(self, now: datetime) -> None:
        for (center_id, session_id, student_id), last in self._idle.idle_for(
            now, self._idle_alert_s
        ):
            # One alert per idle stretch: the stretch is named by its last activity.
            await self._raise(
                center_id,
                session_id,
                AlertKind.STUDENT_IDLE,
                f"{student_id}@{iso(last)}",
                student_id,
                f"{student_id} idle since {iso(last)}",
                now,
            )

    async def _help_alerts(self, now: datetime) -> None:
        async with self._reads() as db:
            # Only live sessions: a request left open in an old session alerts nobody.
            waiting = (
                await db.scalars(
                    select(HelpRequest)
                    .join(LiveSession, LiveSession.id == HelpRequest.session_id)
                    .where(
                        HelpRequest.status == HelpStatus.OPEN.value,
                        LiveSession.status == SessionStatus.LIVE.value,
                    )
                )
            ).all()
        self._report_help_queue(now, waiting)
        for request in waiting:
            target = self._help.targets[HelpPriority(request.priority)]
            if (now - request.created_at).total_seconds() > target:
                await self._raise(
                    request.center_id,
                    request.session_id,
                    AlertKind.HELP_WAITING,
                    request.id,
                    request.student_id,
                    f"help request waiting since {iso(request.created_at)}",
                    now,
                    help_id=request.id,
                )

    def _count(self, kind: AlertKind) -> None:
        if self._metrics is not None:
            self._metrics.alerts.labels(kind.value).inc()

    def _report_help_queue(self, now: datetime, waiting: Sequence[HelpRequest]) -> None:
        """The help queue's gauges: open requests, the oldest one's wait and those past
        their target, by priority."""
        if self._metrics is None:
            return
        for priority in HelpPriority:
            waits = [
                (now - r.created_at).total_seconds() for r in waiting if r.priority == priority
            ]
            target = self._help.targets[priority]
            self._metrics.help_waiting.labels(priority.value).set(len(waits))
            self._metrics.help_oldest_wait.labels(priority.value).set(max(waits, default=0.0))
            self._metrics.help_overdue.labels(priority.value).set(sum(w > target for w in waits))

    async def _raise(
        self,
        center_id: str,
        session_id: str,
        kind: AlertKind,
        subject: str,
        student_id: str | None,
        label: str,
        now: datetime,
        *,
        help_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Store and send an alert to the staff unless it fired before; what was sent.
        ``help_id`` (HELP_WAITING only) names the request; it is also the stored subject."""
        key = (session_id, kind.value, subject)
        if key in self._fired:
            return None
        if len(self._fired) > MAX_REMEMBERED_ALERTS:
            # Only a cache: the unique key in the database still says what fired.
            self._fired.clear()
        try:
            async with self._db.begin() as db:
                db.add(
                    Alert(
                        center_id=center_id,
                        session_id=session_id,
                        kind=kind.value,
                        subject=subject,
                        student_id=student_id,
                        label=label,
                        fired_at=now,
                    )
                )
        except IntegrityError:
            self._fired.add(key)  # fired before (by this hub, or another, or before a restart)
            return None
        self._fired.add(key)
        self._count(kind)
        data = {
            "session_id": session_id,
            "kind": kind.value,
            "label": label,
            "student_id": student_id,
            "at": iso(now),
        }
        if help_id is not None:
            data["help_id"] = help_id
        await self._rooms.emit("timer:alert", data, room=staff_room(center_id, session_id))
        return data
