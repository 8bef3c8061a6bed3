"""Which sockets are connected, who they are, and which sessions they joined (this process)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Identity
from realtime.base.ratelimit import TokenBucket

# Sessions whose end this process remembers (the latest ones).
REMEMBERED_ENDINGS = 10_000


class LiveRole(StrEnum):
    """The part a socket plays in a session it joined."""

    TUTOR = "TUTOR"
    OBSERVER = "OBSERVER"
    STUDENT = "STUDENT"

    @property
    def is_staff(self) -> bool:
        return self is not LiveRole.STUDENT


@dataclass(frozen=True, slots=True)
class Joined:
    """A socket's place in one session."""

    session_id: str
    center_id: str
    role: LiveRole
    # The student whose canvas and room this socket speaks for (students only).
    student_id: str | None


@dataclass(slots=True)
class Connection:
    sid: str
    identity: Identity
    ip: str | None
    events: TokenBucket
    sessions: dict[str, Joined] = field(default_factory=dict)
    expiry: asyncio.TimerHandle | None = None
    # Held while one of this socket's events (or its disconnect) is handled, so
    # they take effect one at a time in arrival order (asyncio.Lock is FIFO).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Membership:
    """The process-local registry of connections and their sessions. Not shared
    between hub processes."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}
        # Sessions ended while this process ran: their live events get SESSION_ENDED
        # rather than NOT_JOINED.
        self._ended: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    def add(self, connection: Connection) -> None:
        self._connections[connection.sid] = connection

    def get(self, sid: str) -> Connection | None:
        return self._connections.get(sid)

    def pop(self, sid: str) -> Connection | None:
        return self._connections.pop(sid, None)

    def in_session(self, session_id: str) -> Iterator[Connection]:
        return (c for c in list(self._connections.values()) if session_id in c.sessions)

    def watched(self, session_id: str) -> bool:
        """Whether any socket on this hub is in the session."""
        return any(session_id in c.sessions for c in self._connections.values())

    def joined(self, connection: Connection, session_id: str) -> Joined:
        """The socket's place in a session it joined, or SESSION_ENDED / NOT_JOINED."""
        joined = connection.sessions.get(session_id)
        if joined is not None:
            return joined
        if session_id in self._ended:
            raise HubError(ErrorCode.SESSION_ENDED, f"session {session_id!r} has ended")
        raise HubError(ErrorCode.NOT_JOINED, f"not joined to session {session_id!r}")

    def has_ended(self, session_id: str) -> bool:
        """Whether this process saw the session end (recently)."""
        return session_id in self._ended

    def ended(self, session_id: str) -> None:
        """Remember that a session ended (live events for it get SESSION_ENDED)."""
        self._ended[session_id] = None
        if len(self._ended) > REMEMBERED_ENDINGS:
            self._ended.popitem(last=False)
