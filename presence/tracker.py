"""The presence interface.

A student is online in a session while at least one of their connections
has joined it, on any hub. Backends report only transitions (offline ->
online and back), so the hub tells the staff room once per change, not once
per tab.

When the last connection leaves, the student may be *leaving* for a grace
period: coming back within it resumes the same stretch (no offline/online
pair for the tutor when a network flaps); ``departures`` hands out, once,
the students whose grace ran out, and the hub marks them offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from presence.activity import StudentKey


class Arrival(StrEnum):
    """What a joining connection means for its student's presence."""

    ALREADY = "already"  # another connection of theirs is here: nothing changes
    ONLINE = "online"  # they came online
    RESUMED = "resumed"  # back within the grace period: the same stretch goes on


@dataclass(frozen=True, slots=True)
class Departure:
    """A student whose grace period ran out: offline since ``left_at``."""

    key: StudentKey
    left_at: datetime


class PresenceTracker(Protocol):
    """Counts joined connections per student, and the students leaving.

    Contract: ``connect`` returns ONLINE or RESUMED exactly when the count goes
    0 -> 1, ``disconnect`` True exactly when it goes 1 -> 0; a connection id
    already counted (or not counted) changes nothing, so a retried join or
    leave never double counts. Each call is atomic per student, across hubs
    for a shared backend. A departure is handed out by ``departures`` once,
    unless the student came back first (then their ``connect`` said RESUMED).
    """

    async def connect(self, key: StudentKey, connection_id: str) -> Arrival: ...

    async def disconnect(
        self, key: StudentKey, connection_id: str, left_at: datetime, grace_s: float
    ) -> bool:
        """With ``grace_s`` > 0 a student whose last connection left is leaving until
        ``grace_s`` seconds (wall clock) from now; with 0 the caller marks them offline."""
        ...

    async def departures(self, everyone: bool = False) -> list[Departure]:
        """Claim the students whose grace period ran out (``everyone``: all leaving)."""
        ...

    async def record(self, key: StudentKey, status: str) -> None:
        """The status (active, idle, offline) the staff was last told for a student."""
        ...

    async def recorded(self, center_id: str, session_id: str) -> dict[str, str]:
        """The last told status of each student of a session that has one."""
        ...

    async def reap(self, now: datetime, grace_s: float) -> int:
        """Take out the connections of hubs that died (a shared backend); how many.
        Their students are leaving from ``now``, for ``grace_s`` (0: due at once);
        ``departures`` hands them out."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
