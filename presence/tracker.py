"""The presence interface.

A student is online in a session while at least one of their connections
has joined it. Backends report only transitions (offline -> online and back),
so the hub tells the staff room once per change, not once per tab.
"""

from __future__ import annotations

from typing import Protocol


class PresenceTracker(Protocol):
    """Counts joined connections per (session, student).

    Contract: ``connect`` returns True exactly when the count goes 0 -> 1,
    ``disconnect`` exactly when it goes 1 -> 0; calls with a connection id
    already counted (or not counted) are no-ops returning False, so a retried
    join or leave never double counts. Both are atomic per student.
    """

    async def connect(self, session_id: str, student_id: str, connection_id: str) -> bool: ...

    async def disconnect(self, session_id: str, student_id: str, connection_id: str) -> bool: ...

    async def online(self, session_id: str) -> set[str]:
        """The students of the session with at least one joined connection."""
        ...
