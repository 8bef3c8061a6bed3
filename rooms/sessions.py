"""Session rooms: joining and leaving a live session, and its ending.

``session:join`` checks who may join (``rooms.access``), makes a scheduled
session live on the tutor's first join, puts the socket in its rooms, counts a
student in (``presence.live``), and answers with the session, the roster and
what every session extension adds (canvases, help queue, timers), read in one
read-only transaction. The REST layer calls ``session_ended``,
``student_removed`` and ``session_changed``; each takes effect on every hub
(a notice on the session's bus channel).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import Enrollment, LiveSession, SessionStatus, utcnow
from persistence.repositories import (
    AttendanceRepository,
    AuditLog,
    EnrollmentRepository,
    SessionRepository,
)
from persistence.views import enrollment_view, iso, session_view
from presence.activity import Status
from presence.live import LivePresence, student_state
from realtime.base import logs
from realtime.base.codec import dumps, loads
from realtime.base.errors import ErrorCode, HubError
from realtime.base.events import SessionJoin, SessionLeave
from realtime.base.identity import Role
from realtime.base.metrics import HubMetrics
from realtime.base.names import staff_room, student_room, students_room
from realtime.base.tasks import wind_down
from realtime.bus.bus import CONTROL, Bus, session_channel
from realtime.gateway.membership import Connection, Joined, LiveRole, Membership
from realtime.gateway.ports import Ack, RoomEntry, Route, SessionExtension
from rooms.access import live_role, visible_session

log = logging.getLogger(__name__)


class SessionRooms:
    """Who is in which live session on this hub, and the hooks the REST layer calls."""

    def __init__(
        self,
        *,
        members: Membership,
        rooms: RoomEntry,
        presence: LivePresence,
        bus: Bus,
        db: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession],
        metrics: HubMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._members = members
        self._rooms = rooms
        self._presence = presence
        self._bus = bus
        self._db = db
        self._reads = reads
        self._metrics = metrics
        self.clock = clock
        self.extensions: list[SessionExtension] = []
        self._background: set[asyncio.Task[None]] = set()  # notices from other hubs
        self._stopping = asyncio.Event()
        bus.on(CONTROL, self._notice_from_elsewhere)

    def routes(self) -> list[Route[Any]]:
        return [
            Route("session:join", SessionJoin, self._join),
            Route("session:leave", SessionLeave, self._leave),
        ]

    def extend(self, extension: SessionExtension) -> None:
        """Tell ``extension`` of every join, leave and ending, and add to the join ack."""
        self.extensions.append(extension)

    # -- session:join --------------------------------------------------------

    async def _join(self, connection: Connection, payload: SessionJoin) -> Ack:
        identity = connection.identity
        now = self.clock()
        async with self._reads() as db:
            session = visible_session(
                identity, await SessionRepository(db).get(payload.session_id), payload.session_id
            )
            own = (
                await EnrollmentRepository(db).get(session.id, identity.user_id)
                if identity.role is Role.STUDENT
                else None
            )
        role = live_role(identity, session, enrolled=own is not None)
        if session.status == SessionStatus.ENDED.value:
            raise HubError(ErrorCode.SESSION_ENDED, f"session {session.id!r} has ended")
        if role is LiveRole.TUTOR and session.status == SessionStatus.SCHEDULED.value:
            session = await self._start(connection, session.id, now)
        joined = Joined(
            session_id=session.id,
            center_id=session.center_id,
            role=role,
            student_id=identity.user_id if role is LiveRole.STUDENT else None,
        )
        self._presence.watch(session.id, session.settings.get("idle_after_s"))
        if session.id not in connection.sessions:
            self._metrics.joined.inc()
        connection.sessions[session.id] = joined
        try:
            return await self._enter(connection, joined, session, own, now, payload)
        except Exception:
            # A join answered with an error leaves the socket out of the session.
            await self._leave_session(connection, joined, "session:join")
            raise

    async def _enter(
        self,
        connection: Connection,
        joined: Joined,
        session: LiveSession,
        own: Enrollment | None,
        now: datetime,
        payload: SessionJoin,
    ) -> Ack:
        """The rest of a join, once the socket counts as in the session."""
        identity = connection.identity
        role = joined.role
        active = joined.student_id is not None and await self._presence.arrive(
            connection, joined, now, session.starts_at
        )
        for room in _rooms_of(joined):
            await self._rooms.enter_room(connection.sid, room)
        # Before the join's reads: what other hubs send from here on reaches this one.
        await self._bus.watch(session.center_id, session.id)
        if active:
            await self._presence.announce_active(joined, now)
        recorded = await self._presence.recorded(session.center_id, session.id)
        async with self._reads() as db:
            # The session may have ended, or this student's enrollment gone, since the
            # reads above: an eviction then (on any hub) could not find this socket, and
            # the ending hub wrote the change before telling anyone. Read both again.
            await self._still_open(db, joined)
            if own is not None:
                own = await EnrollmentRepository(db).get(session.id, identity.user_id)
                if own is None:
                    raise HubError(ErrorCode.FORBIDDEN, "student is not enrolled in this session")
            roster = (
                [own] if own is not None else await EnrollmentRepository(db).for_session(session.id)
            )
            totals = await AttendanceRepository(db).totals_by_student(
                session.id, [e.student_id for e in roster if e is not None]
            )
            students = [
                student_state(
                    enrollment_view(e),
                    totals[e.student_id],
                    Status(recorded[e.student_id]) if e.student_id in recorded else None,
                    now,
                )
                for e in roster
                if e is not None
            ]
            student_ids = [s["student_id"] for s in students]
            # One read transaction for the roster and every extension's reads.
            extra: dict[str, Any] = {"canvases": {}, "help": [], "timers": []}
            for extension in self.extensions:
                extra.update(await extension.read_for_join(joined, student_ids, db))
        for extension in self.extensions:
            extra.update(
                await extension.joined(connection, joined, student_ids, payload.since or {})
            )
        log.info(
            "joined session %s as %s",
            session.id,
            role.value,
            extra=logs.about(session_id=session.id, center_id=session.center_id),
        )
        return {
            "you": {
                "user_id": identity.user_id,
                "name": identity.name,
                "role": role.value,
                "expires_at": identity.expires_at,
            },
            "session": session_view(session),
            "students": students,
            **extra,
        }

    async def _start(self, connection: Connection, session_id: str, now: datetime) -> LiveSession:
        """The tutor's first join makes a scheduled session live (once, if two race)."""
        async with self._db.begin() as db:
            session = await SessionRepository(db).get(session_id, for_update=True)
            if session is None:
                raise HubError(ErrorCode.NOT_FOUND, f"session {session_id!r} not found")
            if session.status == SessionStatus.SCHEDULED.value:
                session.status = SessionStatus.LIVE.value
                session.started_at = now
                _audit(db, connection, "session.start", session)
            elif session.status == SessionStatus.ENDED.value:
                raise HubError(ErrorCode.SESSION_ENDED, f"session {session_id!r} has ended")
        return session

    async def _still_open(self, db: AsyncSession, joined: Joined) -> None:
        """SESSION_ENDED if the session ended since the join first read it."""
        session = await SessionRepository(db).get(joined.session_id)
        if (
            session is None
            or session.status == SessionStatus.ENDED.value
            or self._members.has_ended(joined.session_id)
        ):
            raise HubError(ErrorCode.SESSION_ENDED, f"session {joined.session_id!r} has ended")

    # -- session:leave, and disconnects --------------------------------------

    async def _leave(self, connection: Connection, payload: SessionLeave) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
        await self._leave_session(connection, joined, "session:leave")
        return {}

    async def disconnected(self, connection: Connection) -> None:
        """The gateway's disconnect hook: the socket leaves every session it was in."""
        for joined in list(connection.sessions.values()):
            try:
                await self._leave_session(connection, joined, "disconnect")
            except Exception:
                log.exception("leaving %s on disconnect of %s", joined.session_id, connection.sid)

    async def _leave_session(self, connection: Connection, joined: Joined, why: str) -> None:
        """Take a socket out of a session: rooms, presence and attendance."""
        if connection.sessions.pop(joined.session_id, None) is None:
            return
        self._metrics.joined.dec()
        identity = connection.identity
        log.info(
            "left session %s (%s)",
            joined.session_id,
            why,
            # Also when a REST call or another hub ended the session: about this socket.
            extra=logs.about(
                sid=connection.sid,
                session_id=joined.session_id,
                center_id=joined.center_id,
                user_id=identity.user_id,
                role=identity.role.value,
            ),
        )
        for room in _rooms_of(joined):
            await self._rooms.leave_room(connection.sid, room)
        left_at = self.clock()
        went_offline = joined.student_id is not None and await self._presence.depart(
            connection.sid, joined, left_at
        )
        if joined.student_id is not None and not any(
            c.sessions.get(joined.session_id) == joined
            for c in self._members.in_session(joined.session_id)
        ):
            self._presence.not_here(joined)
        for extension in self.extensions:
            await extension.left(joined, went_offline)
        if not self._members.watched(joined.session_id):
            self._presence.unwatch(joined.session_id)
            self._bus.unwatch(joined.center_id, joined.session_id)
        await self._presence.departed(joined, went_offline, left_at)

    # -- hooks for the REST layer --------------------------------------------

    async def session_ended(self, session: LiveSession) -> None:
        """Tell everyone in the session it ended, and take their sockets out of it
        (on every hub)."""
        ended_at = iso(session.ended_at)
        self._tell_elsewhere(session, {"notice": "ended", "ended_at": ended_at})
        await self._session_ended(session.id, ended_at)

    async def _session_ended(self, session_id: str, ended_at: str | None) -> None:
        self._members.ended(session_id)
        self._presence.unwatch(session_id)
        event = {"session_id": session_id, "ended_at": ended_at}
        for connection in self._members.in_session(session_id):
            await self._evict(connection, session_id, "session:ended", event)
        for extension in self.extensions:
            await extension.ended(session_id)

    async def student_removed(self, session: LiveSession, student_id: str) -> None:
        """A student's enrollment was removed: their sockets leave the session now
        (on every hub)."""
        self._tell_elsewhere(session, {"notice": "removed", "student_id": student_id})
        await self._student_removed(session.id, student_id)

    async def _student_removed(self, session_id: str, student_id: str) -> None:
        event = {"session_id": session_id, "reason": "ENROLLMENT_REMOVED"}
        for connection in self._members.in_session(session_id):
            joined = connection.sessions.get(session_id)
            if joined is not None and joined.student_id == student_id:
                await self._evict(connection, session_id, "session:removed", event)

    def session_changed(self, session: LiveSession) -> None:
        """A session's settings changed (REST): live rules read the new values now
        (on every hub)."""
        idle_after_s = session.settings.get("idle_after_s")
        self._tell_elsewhere(session, {"notice": "settings", "idle_after_s": idle_after_s})
        self._presence.settings_changed(session.id, idle_after_s)

    def _tell_elsewhere(self, session: LiveSession, notice: dict[str, Any]) -> None:
        if self._bus.shared:
            notice = {**notice, "session_id": session.id}
            channel = session_channel(session.center_id, session.id)
            self._bus.publish(channel, CONTROL, dumps(notice).encode())

    def _notice_from_elsewhere(self, payload: bytes) -> None:
        """Another hub ended a session, removed a student or changed settings."""
        if self._stopping.is_set():
            return  # this hub has no connections left; the other hubs handle it
        notice = loads(payload)
        session_id = notice["session_id"]
        handling: Awaitable[None]
        if notice["notice"] == "ended":
            handling = self._session_ended(session_id, notice["ended_at"])
        elif notice["notice"] == "removed":
            handling = self._student_removed(session_id, notice["student_id"])
        elif notice["notice"] == "settings":
            self._presence.settings_changed(session_id, notice["idle_after_s"])
            return
        else:
            return
        task = asyncio.ensure_future(handling)
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def stop(self, within_s: float) -> None:
        """Take no more notices from other hubs and give those being handled
        ``within_s`` to finish (they write to the database, which closes next)."""
        await wind_down(self._stopping, list(self._background), within_s)

    async def _evict(
        self, connection: Connection, session_id: str, event: str, data: dict[str, Any]
    ) -> None:
        async with connection.lock:
            joined = connection.sessions.get(session_id)
            if joined is None:
                return
            await self._rooms.emit(event, data, to=connection.sid)
            await self._leave_session(connection, joined, event)


def _rooms_of(joined: Joined) -> tuple[str, ...]:
    if joined.student_id is not None:
        return (
            student_room(joined.center_id, joined.session_id, joined.student_id),
            students_room(joined.center_id, joined.session_id),
        )
    return (staff_room(joined.center_id, joined.session_id),)


def _audit(db: AsyncSession, connection: Connection, action: str, session: LiveSession) -> None:
    identity = connection.identity
    AuditLog(db).record(
        center_id=session.center_id,
        actor_id=identity.user_id,
        actor_role=identity.role.value,
        action=action,
        target_type="session",
        target_id=session.id,
        ip=connection.ip,
    )
