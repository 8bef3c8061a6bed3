"""Live presence and attendance: who is online, active or idle, and for how long.

A student's sockets (several tabs, several hubs) count as one presence
(``PresenceTracker``); their activity (drawing, progress, pings) as one
active/idle status per hub that holds a socket of theirs (``ActivityTracker``).
Coming online opens an attendance interval; going offline, once the grace
period has run out without them coming back, closes it. Staff see each change
as ``presence:update`` and ``attendance:update``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import AttendanceRecord, utcnow
from persistence.repositories import AttendanceRecords, AttendanceRepository, AttendanceTotals
from persistence.views import attendance_view, iso
from presence.activity import ActivityTracker, Status, StudentKey
from presence.tracker import Arrival, PresenceTracker
from realtime.base.errors import ErrorCode, HubError
from realtime.base.events import PresencePing
from realtime.base.names import staff_room
from realtime.base.tasks import every
from realtime.bus.bus import SWEEPS, Bus, sweeps_lease_s
from realtime.gateway.membership import Connection, Joined, Membership
from realtime.gateway.ports import Ack, Rooms, Route

log = logging.getLogger(__name__)


def student_key(joined: Joined) -> StudentKey:
    assert joined.student_id is not None
    return (joined.center_id, joined.session_id, joined.student_id)


def student_state(
    enrollment: Mapping[str, Any],
    totals: AttendanceTotals,
    activity: Status | None,
    now: datetime,
) -> dict[str, Any]:
    """A roster entry: the enrollment with its presence and times in session."""
    online = totals.current_since is not None
    return {
        **enrollment,
        "status": (activity or Status.ACTIVE).value if online else Status.OFFLINE.value,
        "session_time_s": round(totals.session_time_s(now), 3),
        "total_time_s": round(totals.total_time_s(now), 3),
    }


class LivePresence:
    """Presence, activity and attendance of the students connected to this hub."""

    def __init__(
        self,
        tracker: PresenceTracker,
        *,
        db: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession],
        rooms: Rooms,
        members: Membership,
        bus: Bus,
        clock: Callable[[], datetime] = utcnow,
        idle_after_s: float = 120.0,
        late_after_s: float = 300.0,
        grace_s: float = 0.0,
    ) -> None:
        self.tracker = tracker
        self.activity = ActivityTracker()
        self._db = db
        self._reads = reads
        self._rooms = rooms
        self._members = members
        self._bus = bus
        self.clock = clock
        self._default_idle_after_s = idle_after_s
        self._idle_after_s: dict[str, float] = {}
        self._late_after_s = late_after_s
        self.grace_s = grace_s
        # Whole presence sweeps run: a test waits for it to pass a value instead of sleeping.
        self.sweeps_done = 0
        bus.on_reconnect(self._present_again)

    def routes(self) -> list[Route[Any]]:
        return [Route("presence:ping", PresencePing, self._ping)]

    # -- arriving and leaving --------------------------------------------------

    def watch(self, session_id: str, idle_after_s: float | None) -> None:
        """Someone here joined the session: follow its idle threshold."""
        self._idle_after_s[session_id] = float(idle_after_s or self._default_idle_after_s)

    def unwatch(self, session_id: str) -> None:
        """Nobody here is in the session any more."""
        self._idle_after_s.pop(session_id, None)

    def settings_changed(self, session_id: str, idle_after_s: float | None) -> None:
        if session_id in self._idle_after_s:
            self.watch(session_id, idle_after_s)

    async def arrive(
        self, connection: Connection, joined: Joined, now: datetime, starts_at: datetime
    ) -> bool:
        """A student's socket joined: count it, open their attendance if they came
        online (back within the grace period, the same stretch goes on), and touch
        their activity. True if staff are to hear they are active."""
        key = student_key(joined)
        came_online = await self.tracker.connect(key, connection.sid) is Arrival.ONLINE
        if came_online:
            await self._open_attendance(connection, joined, now, starts_at)
        # Joining is activity: a new tab of an idle student makes them active again.
        back_from_idle = self.activity.touch(key, now)
        return came_online or back_from_idle

    async def announce_active(self, joined: Joined, now: datetime) -> None:
        await self._announce_presence(student_key(joined), Status.ACTIVE, now)

    async def depart(self, sid: str, joined: Joined, left_at: datetime) -> bool:
        """A student's socket left. True if it was their last socket anywhere."""
        return await self.tracker.disconnect(student_key(joined), sid, left_at, self.grace_s)

    def not_here(self, joined: Joined) -> None:
        """This hub holds no socket of the student's any more: their activity is
        followed where they are (here again if they come back)."""
        self.activity.stop(student_key(joined))

    async def departed(self, joined: Joined, went_offline: bool, left_at: datetime) -> None:
        """After the other features heard of the departure: with no grace period, the
        student is offline now. Otherwise a sweep (on whichever hub) marks them offline
        once their grace period runs out, unless they come back first."""
        if went_offline and self.grace_s <= 0:
            await self._go_offline(student_key(joined), left_at)

    async def recorded(self, center_id: str, session_id: str) -> dict[str, str]:
        """The recorded status of each online student of the session."""
        return await self.tracker.recorded(center_id, session_id)

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
            await self.tracker.disconnect(student_key(joined), connection.sid, now, 0)
            raise
        await self.announce_attendance(joined.center_id, joined.session_id, record)

    async def announce_attendance(
        self, center_id: str, session_id: str, record: AttendanceRecord
    ) -> None:
        await self._rooms.emit(
            "attendance:update",
            {"session_id": session_id, **attendance_view(record)},
            room=staff_room(center_id, session_id),
        )

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
        for connection in self._members:
            for joined in list(connection.sessions.values()):
                if joined.student_id is not None:
                    await self.tracker.connect(student_key(joined), connection.sid)

    async def stop_grace_timers(self) -> int:
        """A lone hub stopping: every student still in their grace period goes offline
        now, in one transaction; how many. Nobody is told: every connection is being
        closed, and a hub that left thousands in their grace period must still stop in
        seconds."""
        pending = await self.tracker.departures(everyone=True)
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
        await self.tracker.record(key, status.value)
        async with self._reads() as db:
            totals = await AttendanceRepository(db).totals(session_id, student_id)
        await self._rooms.emit(
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
        """``StudentActivity``: the student did something (drew, reported progress):
        active again if idle."""
        if joined.student_id is None:
            return
        now = self.clock()
        if self.activity.touch(student_key(joined), now):
            await self._announce_presence(student_key(joined), Status.ACTIVE, now)

    async def _ping(self, connection: Connection, payload: PresencePing) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
        if joined.student_id is None:
            raise HubError(ErrorCode.FORBIDDEN, "only a student reports presence")
        key = student_key(joined)
        if payload.state == "idle" or payload.focused is False:
            if self.activity.idle(key):
                await self._announce_presence(key, Status.IDLE, self.clock())
        else:
            await self.student_activity(joined)
        return {"status": (self.activity.status(key) or Status.ACTIVE).value}

    async def watch_idle(self, every_s: float, stopping: asyncio.Event | None = None) -> None:
        """Background: every ``every_s`` seconds, announce this hub's students who went
        idle; and on the hub that leads the sweeps, mark offline the students whose
        grace period ran out."""
        await every(
            every_s, partial(self.sweep, sweeps_lease_s(every_s)), "presence sweep", stopping
        )

    async def sweep(self, lease_s: float) -> None:
        now = self.clock()
        for key in self.activity.gone_idle(now, self._idle_threshold):
            await self._announce_presence(key, Status.IDLE, now)
        if await self._bus.lead(SWEEPS, lease_s):
            await self.tracker.reap(now, self.grace_s)
            for departure in await self.tracker.departures():
                await self._go_offline(departure.key, departure.left_at)
        self.sweeps_done += 1

    def _idle_threshold(self, session_id: str) -> float:
        return self._idle_after_s.get(session_id, self._default_idle_after_s)
