"""Which sockets are connected, who they are, and which sessions they joined (this process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from realtime.base.identity import Identity
from realtime.base.ratelimit import TokenBucket
from rooms.access import LiveRole


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
    """The process-local registry of connections. Not shared between hub processes."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}

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
