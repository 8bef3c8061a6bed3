"""Course-session announcements, live: pushed once to the connected students of the
live sessions that meet for the course session when they become visible, and
replayed to a student who joins one of those live sessions while they are visible.

"Visible": not deleted, ``scheduled_for`` reached (or none), ``expires_at`` not
reached (or none). An announcement visible when it is made or changed is pushed
at once (the REST route asks); one that becomes visible later (``scheduled_for``)
is pushed by the hub leading the sweeps. Each is claimed in the database
(``pushed_at``) before it is sent, so it goes out once whichever hub sends it.
The receivers are the course session's ENROLLED and COMPLETED students, in each
of its live sessions that has not ended; the event is the live ``announcement``
with the announcement's own fields added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.models import (
    CourseSessionAnnouncement,
    CourseSessionEnrollment,
    LiveSession,
    SessionEnrollmentStatus,
    SessionStatus,
    utcnow,
)
from persistence.repositories import AnnouncementRepository, CourseSessionRepository
from persistence.views import iso
from realtime.base.names import student_room
from realtime.base.tasks import every
from realtime.bus.bus import SWEEPS, sweeps_lease_s
from realtime.gateway.membership import Connection, Joined, LiveRole
from realtime.gateway.ports import Lease, Rooms

log = logging.getLogger(__name__)

READERS = (SessionEnrollmentStatus.ENROLLED.value, SessionEnrollmentStatus.COMPLETED.value)


def announcement_event(
    announcement: CourseSessionAnnouncement, live_session_id: str
) -> dict[str, Any]:
    """The live ``announcement`` event for one live session."""
    return {
        "session_id": live_session_id,
        "text": announcement.message,
        "from": announcement.created_by,
        "student_id": None,
        "at": iso(announcement.scheduled_for or announcement.created_at),
        "course_session_id": announcement.course_session_id,
        "course_session_announcement_id": announcement.id,
        "title": announcement.title,
        "is_urgent": announcement.is_urgent,
        "scheduled_for": iso(announcement.scheduled_for),
        "expires_at": iso(announcement.expires_at),
    }


class CourseAnnouncements:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        reads: async_sessionmaker[AsyncSession],
        rooms: Rooms,
        lease: Lease,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._reads = reads
        self._rooms = rooms
        self._lease = lease
        self._clock = clock

    # -- pushing ------------------------------------------------------------

    async def push_due(self, only: str | None = None) -> int:
        """Claim and push every visible announcement not pushed yet (``only``: that one,
        if it is visible and not pushed yet); how many were."""
        now = self._clock()
        async with self._reads() as db:
            due = await AnnouncementRepository(db).due(now, only=only)
        pushed = 0
        for announcement in due:
            async with self._db.begin() as db:
                if not await AnnouncementRepository(db).claim(announcement.id, now):
                    continue  # another hub (or call) has it
                lives, readers = await self._audience(db, announcement.course_session_id)
            for live in lives:
                event = announcement_event(announcement, live.id)
                for student_id in readers:
                    await self._rooms.emit(
                        "announcement",
                        event,
                        room=student_room(live.center_id, live.id, student_id),
                    )
            pushed += 1
        return pushed

    async def _audience(
        self, db: AsyncSession, course_session_id: str
    ) -> tuple[list[LiveSession], list[str]]:
        lives = [
            live
            for live in await CourseSessionRepository(db).live_sessions(course_session_id)
            if live.status != SessionStatus.ENDED.value
        ]
        if not lives:
            return [], []
        readers = await db.scalars(
            select(CourseSessionEnrollment.student_id).where(
                CourseSessionEnrollment.course_session_id == course_session_id,
                CourseSessionEnrollment.is_deleted.is_(False),
                CourseSessionEnrollment.status.in_(READERS),
            )
        )
        return lives, list(readers)

    async def watch(self, every_s: float, stopping: asyncio.Event | None = None) -> None:
        """Background: push what became visible, every ``every_s`` seconds."""
        await every(
            every_s, partial(self.tick, sweeps_lease_s(every_s)), "announcement push", stopping
        )

    async def tick(self, lease_s: float) -> None:
        if await self._lease.lead(SWEEPS, lease_s):
            await self.push_due()

    # -- the session extension: replay on join -------------------------------

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        return {}

    async def joined(
        self, connection: Connection, joined: Joined, student_ids: list[str], since: dict[str, int]
    ) -> dict[str, Any]:
        """A student joining a live session that meets for a course session they are in
        gets the course's visible announcements as ``announcement`` events, oldest first."""
        if joined.role is not LiveRole.STUDENT or joined.student_id is None:
            return {}
        now = self._clock()
        async with self._reads() as db:
            live = await db.get(LiveSession, joined.session_id)
            if live is None or live.course_session_id is None:
                return {}
            status = await db.scalar(
                select(CourseSessionEnrollment.status).where(
                    CourseSessionEnrollment.course_session_id == live.course_session_id,
                    CourseSessionEnrollment.student_id == joined.student_id,
                    CourseSessionEnrollment.is_deleted.is_(False),
                )
            )
            if status not in READERS:
                return {}
            if await CourseSessionRepository(db).get(live.course_session_id) is None:
                return {}
            visible = await AnnouncementRepository(db).visible(live.course_session_id, now)
        for announcement in sorted(visible, key=lambda a: a.scheduled_for or a.created_at):
            await self._rooms.emit(
                "announcement", announcement_event(announcement, live.id), to=connection.sid
            )
        return {}

    async def left(self, joined: Joined, last_connection: bool) -> None:
        return None

    async def ended(self, session_id: str) -> None:
        return None
