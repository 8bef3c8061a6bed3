"""Active or idle: read from the work itself, not from the socket being open.

A joined student is ``active`` while they draw, report progress or ping
``active`` with focus; they become ``idle`` when nothing of that has happened
for the session's idle threshold, or at once when their client reports idle
or unfocused. Times come from the caller (the hub's clock), so tests move the
clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# (center_id, session_id, student_id)
StudentKey = tuple[str, str, str]


class Status(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    OFFLINE = "offline"


@dataclass(slots=True)
class _Activity:
    last: datetime
    status: Status


class ActivityTracker:
    """Activity of the online students of this process. Each method that changes a
    student's status returns whether it changed, so the caller announces changes once."""

    def __init__(self) -> None:
        self._students: dict[StudentKey, _Activity] = {}

    def status(self, key: StudentKey) -> Status | None:
        found = self._students.get(key)
        return found.status if found is not None else None

    def touch(self, key: StudentKey, now: datetime) -> bool:
        """Activity: the student is active from now (True if they were idle)."""
        found = self._students.get(key)
        if found is None:
            self._students[key] = _Activity(now, Status.ACTIVE)
            return False
        found.last = max(found.last, now)
        if found.status is Status.IDLE:
            found.status = Status.ACTIVE
            return True
        return False

    def idle(self, key: StudentKey) -> bool:
        """The client says the student is idle (True if they were active)."""
        found = self._students.get(key)
        if found is None or found.status is Status.IDLE:
            return False
        found.status = Status.IDLE
        return True

    def stop(self, key: StudentKey) -> None:
        self._students.pop(key, None)

    def gone_idle(self, now: datetime, idle_after_s: Callable[[str], float]) -> list[StudentKey]:
        """Mark idle, and return, the active students with no activity for their
        session's threshold (``idle_after_s(session_id)``)."""
        changed = []
        for key, activity in self._students.items():
            if activity.status is not Status.ACTIVE:
                continue
            if (now - activity.last).total_seconds() >= idle_after_s(key[1]):
                activity.status = Status.IDLE
                changed.append(key)
        return changed

    def idle_for(self, now: datetime, seconds: float) -> list[tuple[StudentKey, datetime]]:
        """Idle students with no activity for ``seconds``, and their last activity."""
        return [
            (key, activity.last)
            for key, activity in self._students.items()
            if activity.status is Status.IDLE and (now - activity.last).total_seconds() >= seconds
        ]
