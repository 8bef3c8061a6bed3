"""The Socket.IO side of the hub: connect with a token, join and leave sessions.

Every client event goes through ``LiveHub._dispatch``: it finds the caller's
connection, refuses an expired token, validates the payload with its
pydantic model, runs the handler one event at a time per connection (so a
client's events take effect in the order it sent them), and answers with the
protocol's ack shape. A handler never raises to python-socketio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import socketio
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import AttendanceRecord, LiveSession, SessionStatus, utcnow
from persistence.repositories import (
    AttendanceRecords,
    AttendanceRepository,
    AttendanceTotals,
    AuditLog,
    EnrollmentRepository,
    SessionRepository,
)
from persistence.views import attendance_view, enrollment_view, iso, session_view
from presence.activity import ActivityTracker, Status, StudentKey
from presence.tracker import Arrival, PresenceTracker
from realtime.base.codec import dumps, loads
from realtime.base.errors import ErrorCode, HubError, validation_error
from realtime.base.events import AuthRefresh, PresencePing, SessionJoin, SessionLeave
from realtime.base.identity import Identity, Role, TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.base.names import staff_room, student_room, students_room
from realtime.base.ratelimit import TokenBucket
from realtime.base.tasks import every
from realtime.bus.bus import CONTROL, SWEEPS, Bus, session_channel, sweeps_lease_s
from realtime.bus.bus_memory import Cluster
from realtime.internals.engineio_websocket import open_sockets
from realtime.server import LaterAck
from rooms.access import LiveRole, live_role, visible_session
from rooms.membership import Connection, Joined, Membership

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)
Ack = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AfterLock:
    """A handler's answer that completes after the handler has returned.

    The handler has already fixed the order of its effect (a patch has its
    seq); waiting for the rest (the patch becoming durable) must not hold up
    the connection's next event. The ack is ``{ok: true, **ack}`` once
    ``done`` resolves, or the error it raises.
    """

    done: Awaitable[object]
    ack: Ack = field(default_factory=dict)


Handler = Callable[[Connection, P], Awaitable["Ack | AfterLock"]]


class SessionExtension(Protocol):
    """A feature that keeps per-session state alongside membership (canvases, ...)."""

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        """Fields for the join ack read from the database, inside the join's one read-only
        transaction: use ``db`` only (no other session, no waiting on anything else)."""
        ...

    async def joined(
        self, connection: Connection, joined: Joined, student_ids: list[str], since: dict[str, int]
    ) -> dict[str, Any]:
        """Called after a socket joined (and is in its rooms) and the join's reads are
        done; returns fields for the ack."""
        ...

    async def left(self, joined: Joined, last_connection: bool) -> None:
        """Called after a socket left a session (``last_connection``: the student went offline)."""
        ...

    async def ended(self, session_id: str) -> None:
        """Called once a session has ended and every socket here has left it."""
        ...


UNKNOWN_EVENT = "unknown"
REMEMBERED_ENDINGS = 10_000
# hub:closing code when the process stops: unlike TOKEN_EXPIRED, reconnecting helps.
SHUTTING_DOWN = "SHUTTING_DOWN"
# How long a stopping hub waits for its clients' transports to close.
CLOSE_WAIT_S = 2.0
# The longest a timer handle may be scheduled for; asyncio copes, but a token
# valid for years is better re-checked now and then.
MAX_EXPIRY_WAIT_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    """A client event, the model its payload must match, and its handler."""

    event: str
    model: type[P]
    handler: Handler[P]


class LiveHub:
    """Socket.IO handlers for identity and session membership, plus the hooks
    the REST layer calls when a session ends or a student is removed."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        db: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession] | None = None,
        verifier: TokenVerifier,
        presence: PresenceTracker,
        metrics: HubMetrics,
        events_per_s: float = 50.0,
        event_burst: int = 100,
        clock: Callable[[], datetime] = utcnow,
        idle_after_s: float = 120.0,
        late_after_s: float = 300.0,
        grace_s: float = 0.0,
    ) -> None:
        self.sio = sio
        # The other hubs sharing sessions (a lone hub's does nothing).
        self.cluster: Bus = getattr(sio, "cluster", None) or Cluster()
        self.cluster.on(CONTROL, self._notice_from_elsewhere)
        self.cluster.on_reconnect(self._present_again)
        self._db = db
        # Read-only sessions (on SQLite they skip the write lock); extensions use them too.
        self.reads = reads or db
        self._verifier = verifier
        self.presence = presence
        self._metrics = metrics
        self._events_per_s = events_per_s
        self._event_burst = event_burst
        self.clock = clock
        self._late_after_s = late_after_s
        self._grace_s = grace_s
        self.activity = ActivityTracker()
        self._default_idle_after_s = idle_after_s
        self._idle_after_s: dict[str, float] = {}
        self.members = Membership()
        # Sessions ended while this process ran (the latest ones): their live events
        # get SESSION_ENDED rather than NOT_JOINED.
        self.ended: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()  # expiries, notices from other hubs
        # Whole presence sweeps run: a test waits for it to pass a value instead of sleeping.
        self.sweeps_done = 0

        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_unknown)
        self.extensions: list[SessionExtension] = []
        self.on("session:join", SessionJoin, self._join)
        self.on("session:leave", SessionLeave, self._leave)
        self.on("auth:refresh", AuthRefresh, self._refresh)
        self.on("presence:ping", PresencePing, self._ping)

    # -- connection lifecycle ------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            identity = self._verifier.verify(token)
        except HubError as exc:
            self._metrics.connects.labels(exc.code.value).inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code.value, "message": exc.message}
            ) from None
        request = environ.get("aiohttp.request")
        connection = Connection(
            sid=sid,
            identity=identity,
            ip=getattr(request, "remote", None),
            events=TokenBucket(self._events_per_s, self._event_burst),
        )
        self.members.add(connection)
        self._schedule_expiry(connection)
        self._metrics.connects.labels("ok").inc()
        self._metrics.connections.inc()
        log.debug("connect %s as %s/%s", sid, identity.role, identity.user_id)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.members.get(sid)
        if connection is None:
            return
        async with connection.lock:
            if self.members.pop(sid) is not connection:
                return
            if connection.expiry is not None:
                connection.expiry.cancel()
            self._metrics.connections.dec()
            for joined in list(connection.sessions.values()):
                try:
                    await self._leave_session(connection, joined)
                except Exception:
                    log.exception("leaving %s on disconnect of %s", joined.session_id, sid)

    def _schedule_expiry(self, connection: Connection) -> None:
        if connection.expiry is not None:
            connection.expiry.cancel()
        wait = min(max(connection.identity.seconds_left(), 0.0), MAX_EXPIRY_WAIT_S)
        connection.expiry = asyncio.get_running_loop().call_later(
            wait, self._start_expiry, connection
        )

    def _start_expiry(self, connection: Connection) -> None:
        task = asyncio.create_task(self._expire(connection))
        self._background.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._background.discard)

    async def _expire(self, connection: Connection) -> None:
        if self.members.get(connection.sid) is not connection:
            return
        if connection.identity.seconds_left() > 0:
            self._schedule_expiry(connection)  # capped wait; not due yet
            return
        await self.close(connection.sid, ErrorCode.TOKEN_EXPIRED.value, "token has expired")

    async def close(self, sid: str, code: str, message: str) -> None:
        """Tell a client why, then disconnect it."""
        await self.sio.emit("hub:closing", {"code": code, "message": message}, to=sid)
        await self.sio.disconnect(sid)

    async def shutdown(self) -> None:
        """Disconnect every client, telling each to reconnect (to this hub restarted, or
        another), so the process exits without waiting out its open websockets."""
        log.info("stopping: telling %d clients to reconnect", len(self.members))
        for connection in list(self.members):
            await self.sio.emit(
                "hub:closing",
                {"code": SHUTTING_DOWN, "message": "hub is shutting down; reconnect"},
                to=connection.sid,
            )
        transports = open_sockets(self.sio.eio)
        log.info("stopping: closing %d transports", transports)
        # Close the Engine.IO transports too: a Socket.IO-level disconnect leaves
        # the websocket open until the web server's shutdown timeout.
        if transports:
            try:
                await asyncio.wait_for(self._close_transports(), CLOSE_WAIT_S)
            except TimeoutError:
                # A client that stopped reading never takes its close packet; the web
                # server drops what is left when its own shutdown timeout runs out.
                log.warning("transports did not finish closing within %.0f s", CLOSE_WAIT_S)
        if not self.cluster.shared:
            # Nobody else will mark them offline. In a cluster the other hubs do, unless
            # the students come back to one of them within their grace period.
            offline = await self.stop_grace_timers()
            log.info("stopping: %d students in their grace period went offline", offline)
        await self.sio.shutdown()

    async def _close_transports(self) -> None:
        # Engine.IO's disconnect() of all fails on an empty set: sockets may close meanwhile.
        if open_sockets(self.sio.eio):
            await self.sio.eio.disconnect()

    # -- dispatch ------------------------------------------------------------

    def on(self, event: str, model: type[P], handler: Handler[P]) -> None:
        """Handle a client event: ``model`` validates its payload, ``handler`` runs
        under the connection's lock and returns the ack's fields (or ``AfterLock``)."""
        route = Route(event, model, handler)

        async def on_event(sid: str, data: Any = None, *extra: Any) -> Ack | LaterAck:
            return await self._dispatch(route, sid, data, extra)

        self.sio.on(event, on_event)

    async def _dispatch(
        self, route: Route[Any], sid: str, data: Any, extra: tuple[Any, ...]
    ) -> Ack | LaterAck:
        started = time.perf_counter()
        try:
            result = await self._run(route, sid, data, extra)
        except Exception as exc:
            return self._answer(route.event, sid, started, exc)
        if not isinstance(result, AfterLock):
            return self._answer(route.event, sid, started, result)
        answer: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[object]) -> None:
            outcome = done.exception() if not done.cancelled() else asyncio.CancelledError()
            ack = result.ack if outcome is None else outcome
            answer.set_result(self._answer(route.event, sid, started, ack))

        asyncio.ensure_future(result.done).add_done_callback(settle)
        return LaterAck(answer)

    def _answer(self, event: str, sid: str, started: float, result: Ack | BaseException) -> Ack:
        """The ack for a handler's result or error, counted in the metrics."""
        if isinstance(result, HubError):
            ack, outcome = result.ack(), result.code.value
        elif isinstance(result, BaseException):
            if not isinstance(result, asyncio.CancelledError):
                log.error("handler for %r failed (sid %s)", event, sid, exc_info=result)
            ack = HubError(ErrorCode.INTERNAL, "internal error").ack()
            outcome = ErrorCode.INTERNAL.value
        else:
            ack, outcome = {"ok": True, **result}, "ok"
        self._metrics.events.labels(event, outcome).inc()
        self._metrics.event_seconds.labels(event).observe(time.perf_counter() - started)
        return ack

    async def _run(
        self, route: Route[Any], sid: str, data: Any, extra: tuple[Any, ...]
    ) -> Ack | AfterLock:
        self._rate_limit(sid)
        if extra:
            raise HubError(
                ErrorCode.VALIDATION_ERROR,
                f"{route.event} takes one payload object, got {1 + len(extra)} arguments",
            )
        try:
            payload = route.model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, f"invalid {route.event} payload") from None
        connection = self.members.get(sid)
        if connection is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "not connected")
        async with connection.lock:
            if self.members.get(sid) is not connection:
                raise HubError(ErrorCode.UNAUTHORIZED, "not connected")
            if connection.identity.seconds_left() <= 0:
                raise HubError(ErrorCode.TOKEN_EXPIRED, "token has expired")
            return await route.handler(connection, payload)

    def _rate_limit(self, sid: str) -> None:
        connection = self.members.get(sid)
        if connection is not None and not connection.events.take():
            raise HubError(
                ErrorCode.RATE_LIMITED,
                f"more than {self._events_per_s:g} events a second "
                f"(burst {self._event_burst}); slow down",
            )

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> Ack:
        shown = event[:64] if isinstance(event, str) else repr(event)[:64]
        try:
            self._rate_limit(sid)
            error = HubError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown event {shown!r}",
                details={"event": shown},
            )
        except HubError as exc:
            error = exc
        self._metrics.events.labels(UNKNOWN_EVENT, error.code.value).inc()
        return error.ack()

    # -- session:join / session:leave ----------------------------------------

    async def _join(self, connection: Connection, payload: SessionJoin) -> Ack:
        identity = connection.identity
        now = self.clock()
        async with self.reads() as db:
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
        self._idle_after_s[session.id] = float(
            session.settings.get("idle_after_s") or self._default_idle_after_s
        )
        # Back within the grace period (RESUMED): the same stretch goes on.
        came_online = (
            joined.student_id is not None
            and await self.presence.connect(_student_key(joined), connection.sid) is Arrival.ONLINE
        )
        if came_online:
            await self._open_attendance(connection, joined, now, session.starts_at)
        # Joining is activity: a new tab of an idle student makes them active again.
        back_from_idle = joined.student_id is not None and self.activity.touch(
            _student_key(joined), now
        )
        if session.id not in connection.sessions:
            self._metrics.joined.inc()
        connection.sessions[session.id] = joined
        for room in _rooms_of(joined):
            await self.sio.enter_room(connection.sid, room)
        # Before the join's reads: what other hubs send from here on reaches this one.
        await self.cluster.watch(session.center_id, session.id)
        if came_online or back_from_idle:
            await self._announce_presence(_student_key(joined), Status.ACTIVE, now)
        recorded = await self.presence.recorded(session.center_id, session.id)
        async with self.reads() as db:
            roster = (
                [own] if own is not None else await EnrollmentRepository(db).for_session(session.id)
            )
            totals = await AttendanceRepository(db).totals_by_student(
                session.id, [e.student_id for e in roster if e is not None]
            )
            students = [
                _student_state(
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
        return {
            "you": {
                "user_id": identity.user_id,
                "name": identity.name,
                "role": role.value,
                "expires_at": identity.expires_at,
            },
            "session": session_view(session),
            "students": students,
            # help and timers stay empty until the control-center feature fills them.
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

    async def _open_attendance(
        self, connection: Connection, joined: Joined, now: datetime, starts_at: datetime
    ) -> None:
        assert joined.student_id is not None
        try:
            async with self._db.begin() as db:
                await AttendanceRepository(db).open_interval(
                    center_id=joined.center_id,
                    session_id=joined.session_id,
                    student_id=joined.student_id,
                    at=now,
                )
                record = await AttendanceRecords(db).joined(
                    center_id=joined.center_id,
                    session_id=joined.session_id,
                    student_id=joined.student_id,
                    at=now,
                    late_from=starts_at + timedelta(seconds=self._late_after_s),
                )
        except BaseException:
            # The join fails as a whole: the student is not counted online.
            await self.presence.disconnect(_student_key(joined), connection.sid, now, 0)
            raise
        await self.announce_attendance(joined.center_id, joined.session_id, record)

    async def announce_attendance(
        self, center_id: str, session_id: str, record: AttendanceRecord
    ) -> None:
        await self.sio.emit(
            "attendance:update",
            {"session_id": session_id, **attendance_view(record)},
            room=staff_room(center_id, session_id),
        )

    async def _leave(self, connection: Connection, payload: SessionLeave) -> Ack:
        await self._leave_session(connection, self.joined(connection, payload.session_id))
        return {}

    async def _leave_session(self, connection: Connection, joined: Joined) -> None:
        """Take a socket out of a session: rooms, presence and attendance."""
        if connection.sessions.pop(joined.session_id, None) is None:
            return
        self._metrics.joined.dec()
        for room in _rooms_of(joined):
            await self.sio.leave_room(connection.sid, room)
        left_at = self.clock()
        went_offline = joined.student_id is not None and await self.presence.disconnect(
            _student_key(joined), connection.sid, left_at, self._grace_s
        )
        here = self.members.in_session(joined.session_id)
        if joined.student_id is not None and not any(
            c.sessions.get(joined.session_id) == joined for c in here
        ):
            # This hub holds no connection of theirs any more: their activity is followed
            # where they are (here again if they come back).
            self.activity.stop(_student_key(joined))
        for extension in self.extensions:
            await extension.left(joined, went_offline)
        if not any(True for _ in self.members.in_session(joined.session_id)):
            self._idle_after_s.pop(joined.session_id, None)
            self.cluster.unwatch(joined.center_id, joined.session_id)
        if went_offline and self._grace_s <= 0:
            await self._go_offline(_student_key(joined), left_at)
        # Otherwise they are leaving: a sweep (on whichever hub) marks them offline once
        # their grace period runs out, unless they come back first (see watch_idle).

    async def _go_offline(self, key: StudentKey, left_at: datetime) -> None:
        center_id, session_id, student_id = key
        self.activity.stop(key)
        async with self._db.begin() as db:
            await AttendanceRepository(db).close_open(
                session_id=session_id, student_id=student_id, at=left_at
            )
            record = await AttendanceRecords(db).left(session_id, student_id, left_at)
        await self._announce_presence(key, Status.OFFLINE, left_at)
        if record is not None:
            await self.announce_attendance(center_id, session_id, record)

    async def _present_again(self) -> None:
        """Redis was away (and may have lost everything): count this hub's students in."""
        for connection in self.members:
            for joined in list(connection.sessions.values()):
                if joined.student_id is not None:
                    await self.presence.connect(_student_key(joined), connection.sid)

    async def stop_grace_timers(self) -> int:
        """A lone hub stopping: every student still in their grace period goes offline
        now, in one transaction; how many. Nobody is told: every connection is being
        closed, and a hub that left thousands in their grace period must still stop in
        seconds."""
        pending = await self.presence.departures(everyone=True)
        if not pending:
            return 0
        now = self.clock()
        students = [(d.key[1], d.key[2]) for d in pending]
        for departure in pending:
            self.activity.stop(departure.key)
        try:
            async with self._db.begin() as db:
                await AttendanceRepository(db).close_open_many(students, now)
                await AttendanceRecords(db).left_many(students, now)
        except Exception:
            log.exception("marking %d students offline at shutdown failed", len(pending))
        return len(pending)

    async def _announce_presence(self, key: StudentKey, status: Status, now: datetime) -> None:
        center_id, session_id, student_id = key
        await self.presence.record(key, status.value)
        async with self.reads() as db:
            totals = await AttendanceRepository(db).totals(session_id, student_id)
        await self.sio.emit(
            "presence:update",
            {
                "session_id": session_id,
                "student_id": student_id,
                "status": status.value,
                "since": iso(now),
                "session_time_s": round(totals.session_time_s(now), 3),
                "total_time_s": round(totals.total_time_s(now), 3),
            },
            room=staff_room(center_id, session_id),
        )

    # -- activity and idle ---------------------------------------------------

    async def student_activity(self, joined: Joined) -> None:
        """The student did something (drew, reported progress): active again if idle."""
        if joined.student_id is None:
            return
        now = self.clock()
        if self.activity.touch(_student_key(joined), now):
            await self._announce_presence(_student_key(joined), Status.ACTIVE, now)

    async def _ping(self, connection: Connection, payload: PresencePing) -> Ack:
        joined = self.joined(connection, payload.session_id)
        if joined.student_id is None:
            raise HubError(ErrorCode.FORBIDDEN, "only a student reports presence")
        key = _student_key(joined)
        if payload.state == "idle" or payload.focused is False:
            if self.activity.idle(key):
                await self._announce_presence(key, Status.IDLE, self.clock())
        else:
            await self.student_activity(joined)
        return {"status": (self.activity.status(key) or Status.ACTIVE).value}

    async def watch_idle(self, every_s: float) -> None:
        """Background: every ``every_s`` seconds, announce this hub's students who went
        idle; and on the hub that leads the sweeps, mark offline the students whose
        grace period ran out."""
        await every(every_s, partial(self.sweep, sweeps_lease_s(every_s)), "presence sweep")

    async def sweep(self, lease_s: float) -> None:
        now = self.clock()
        for key in self.activity.gone_idle(now, self._idle_threshold):
            await self._announce_presence(key, Status.IDLE, now)
        if await self.cluster.lead(SWEEPS, lease_s):
            await self.presence.reap(now, self._grace_s)
            for departure in await self.presence.departures():
                await self._go_offline(departure.key, departure.left_at)
        self.sweeps_done += 1

    def session_changed(self, session: LiveSession) -> None:
        """A session's settings changed (REST): live rules read the new values now
        (on every hub)."""
        idle_after_s = session.settings.get("idle_after_s")
        self._tell_elsewhere(session, {"notice": "settings", "idle_after_s": idle_after_s})
        self._settings_changed(session.id, idle_after_s)

    def _settings_changed(self, session_id: str, idle_after_s: float | None) -> None:
        if session_id in self._idle_after_s:
            self._idle_after_s[session_id] = float(idle_after_s or self._default_idle_after_s)

    def _idle_threshold(self, session_id: str) -> float:
        return self._idle_after_s.get(session_id, self._default_idle_after_s)

    async def _refresh(self, connection: Connection, payload: AuthRefresh) -> Ack:
        fresh = self._verifier.verify(payload.token)
        old = connection.identity
        if (fresh.user_id, fresh.role, fresh.center) != (old.user_id, old.role, old.center):
            raise HubError(
                ErrorCode.FORBIDDEN,
                "a refreshed token must carry the same sub, role and center as the connection's",
            )
        connection.identity = fresh
        self._schedule_expiry(connection)
        return {"expires_at": fresh.expires_at}

    def joined(self, connection: Connection, session_id: str) -> Joined:
        """The socket's place in a session it joined, or SESSION_ENDED / NOT_JOINED."""
        joined = connection.sessions.get(session_id)
        if joined is not None:
            return joined
        if session_id in self.ended:
            raise HubError(ErrorCode.SESSION_ENDED, f"session {session_id!r} has ended")
        raise HubError(ErrorCode.NOT_JOINED, f"not joined to session {session_id!r}")

    # -- hooks for the REST layer --------------------------------------------

    async def session_ended(self, session: LiveSession) -> None:
        """Tell everyone in the session it ended, and take their sockets out of it
        (on every hub)."""
        ended_at = iso(session.ended_at)
        self._tell_elsewhere(session, {"notice": "ended", "ended_at": ended_at})
        await self._session_ended(session.id, ended_at)

    async def _session_ended(self, session_id: str, ended_at: str | None) -> None:
        self.ended[session_id] = None
        if len(self.ended) > REMEMBERED_ENDINGS:
            self.ended.popitem(last=False)
        self._idle_after_s.pop(session_id, None)
        event = {"session_id": session_id, "ended_at": ended_at}
        for connection in self.members.in_session(session_id):
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
        for connection in self.members.in_session(session_id):
            joined = connection.sessions.get(session_id)
            if joined is not None and joined.student_id == student_id:
                await self._evict(connection, session_id, "session:removed", event)

    def _tell_elsewhere(self, session: LiveSession, notice: dict[str, Any]) -> None:
        if self.cluster.shared:
            notice = {**notice, "session_id": session.id}
            channel = session_channel(session.center_id, session.id)
            self.cluster.publish(channel, CONTROL, dumps(notice).encode())

    def _notice_from_elsewhere(self, payload: bytes) -> None:
        """Another hub ended a session, removed a student or changed settings."""
        notice = loads(payload)
        session_id = notice["session_id"]
        handling: Awaitable[None]
        if notice["notice"] == "ended":
            handling = self._session_ended(session_id, notice["ended_at"])
        elif notice["notice"] == "removed":
            handling = self._student_removed(session_id, notice["student_id"])
        elif notice["notice"] == "settings":
            self._settings_changed(session_id, notice["idle_after_s"])
            return
        else:
            return
        task = asyncio.ensure_future(handling)
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def _evict(
        self, connection: Connection, session_id: str, event: str, data: dict[str, Any]
    ) -> None:
        async with connection.lock:
            joined = connection.sessions.get(session_id)
            if joined is None:
                return
            await self.sio.emit(event, data, to=connection.sid)
            await self._leave_session(connection, joined)


def _student_key(joined: Joined) -> StudentKey:
    assert joined.student_id is not None
    return (joined.center_id, joined.session_id, joined.student_id)


def _student_state(
    enrollment: dict[str, Any],
    totals: AttendanceTotals,
    activity: Status | None,
    now: datetime,
) -> dict[str, Any]:
    online = totals.current_since is not None
    return {
        **enrollment,
        "status": (activity or Status.ACTIVE).value if online else Status.OFFLINE.value,
        "session_time_s": round(totals.session_time_s(now), 3),
        "total_time_s": round(totals.total_time_s(now), 3),
    }


def _rooms_of(joined: Joined) -> tuple[str, ...]:
    if joined.student_id is not None:
        return (
            student_room(joined.center_id, joined.session_id, joined.student_id),
            students_room(joined.center_id, joined.session_id),
        )
    return (staff_room(joined.center_id, joined.session_id),)


def _audit(db: AsyncSession, connection: Connection, action: str, session: LiveSession) -> None:
    identity: Identity = connection.identity
    AuditLog(db).record(
        center_id=session.center_id,
        actor_id=identity.user_id,
        actor_role=identity.role.value,
        action=action,
        target_type="session",
        target_id=session.id,
        ip=connection.ip,
    )
