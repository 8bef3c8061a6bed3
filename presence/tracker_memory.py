"""In-process presence: the default for a single hub."""

from __future__ import annotations

import time
from datetime import datetime

from presence.activity import StudentKey
from presence.tracker import Arrival, Departure


class MemoryPresenceTracker:
    """Presence held in this process (see ``presence.tracker.PresenceTracker``)."""

    def __init__(self) -> None:
        # student -> joined connection ids
        self._connections: dict[StudentKey, set[str]] = {}
        # student -> (grace deadline, wall clock; the departure)
        self._leaving: dict[StudentKey, tuple[float, Departure]] = {}
        # (center, session) -> student -> last told status
        self._statuses: dict[tuple[str, str], dict[str, str]] = {}

    async def connect(self, key: StudentKey, connection_id: str) -> Arrival:
        held = self._connections.setdefault(key, set())
        if connection_id in held:
            return Arrival.ALREADY
        held.add(connection_id)
        if len(held) > 1:
            return Arrival.ALREADY
        return Arrival.RESUMED if self._leaving.pop(key, None) else Arrival.ONLINE

    async def disconnect(
        self, key: StudentKey, connection_id: str, left_at: datetime, grace_s: float
    ) -> bool:
        held = self._connections.get(key)
        if held is None or connection_id not in held:
            return False
        held.discard(connection_id)
        if held:
            return False
        del self._connections[key]
        if grace_s > 0:
            self._leaving[key] = (time.time() + grace_s, Departure(key, left_at))
        return True

    async def departures(self, everyone: bool = False) -> list[Departure]:
        now = time.time()
        due = [key for key, (deadline, _) in self._leaving.items() if everyone or deadline <= now]
        return [self._leaving.pop(key)[1] for key in due]

    async def record(self, key: StudentKey, status: str) -> None:
        center_id, session_id, student_id = key
        self._statuses.setdefault((center_id, session_id), {})[student_id] = status

    async def recorded(self, center_id: str, session_id: str) -> dict[str, str]:
        return dict(self._statuses.get((center_id, session_id), {}))

    def forget(self, center_id: str, session_id: str) -> None:
        self._statuses.pop((center_id, session_id), None)

    async def reap(self, now: datetime, grace_s: float) -> int:
        return 0  # one process: it is its only hub

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
