"""In-process presence: the default for a single hub."""

from __future__ import annotations


class MemoryPresenceTracker:
    """Presence held in this process (see ``presence.tracker.PresenceTracker``)."""

    def __init__(self) -> None:
        # session id -> student id -> joined connection ids
        self._sessions: dict[str, dict[str, set[str]]] = {}

    async def connect(self, session_id: str, student_id: str, connection_id: str) -> bool:
        held = self._sessions.setdefault(session_id, {}).setdefault(student_id, set())
        if connection_id in held:
            return False
        held.add(connection_id)
        return len(held) == 1

    async def disconnect(self, session_id: str, student_id: str, connection_id: str) -> bool:
        students = self._sessions.get(session_id, {})
        held = students.get(student_id)
        if held is None or connection_id not in held:
            return False
        held.discard(connection_id)
        if held:
            return False
        del students[student_id]
        if not students:
            del self._sessions[session_id]
        return True

    async def online(self, session_id: str) -> set[str]:
        return set(self._sessions.get(session_id, {}))
