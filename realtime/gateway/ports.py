"""What a feature plugs into the gateway with, and the narrow interfaces it is given.

A feature (the canvas, the control center, help, timers, presence, session
rooms) declares its client events as a list of ``Route`` (the way aiohttp
takes a route table) and, if it keeps per-session state, implements
``SessionExtension``. The assembly (``realtime.app``) hands each feature only
what it uses: the ``Membership`` (who is connected here and in which
sessions), ``Rooms`` (send an event to a room or one socket, on every hub),
``StudentActivity``, ``IdleStudents`` and the sweep ``Lease``. No feature
holds the gateway itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import LiveSession
from realtime.gateway.membership import Connection, Joined

P = TypeVar("P", bound=BaseModel)
Ack = dict[str, Any]
# (center_id, session_id, student_id)
StudentKey = tuple[str, str, str]


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


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    """A client event, the model its payload must match, and its handler.

    The handler runs under the connection's lock, after rate limiting and
    validation, and returns the ack's fields (or ``AfterLock``); a ``HubError``
    it raises becomes the error ack.
    """

    event: str
    model: type[P]
    handler: Handler[P]


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


class Rooms(Protocol):
    """Sends an event to a room, or to one socket, on every hub that has members there."""

    async def emit(
        self, event: str, data: Any, *, room: str | None = None, to: str | None = None
    ) -> None: ...


class RoomEntry(Rooms, Protocol):
    """``Rooms``, and putting a socket in a room or taking it out (this hub)."""

    async def enter_room(self, sid: str, room: str) -> None: ...

    async def leave_room(self, sid: str, room: str) -> None: ...


class StudentActivity(Protocol):
    async def student_activity(self, joined: Joined) -> None:
        """The student did something (drew, reported progress): active again if idle."""
        ...


class IdleStudents(Protocol):
    def idle_for(self, now: datetime, seconds: float) -> list[tuple[StudentKey, datetime]]:
        """This hub's idle students with no activity for ``seconds``, and their last."""
        ...


class SessionEnding(Protocol):
    async def session_ended(self, session: LiveSession) -> None:
        """Tell everyone in the session it ended and take their sockets out (every hub)."""
        ...


class Lease(Protocol):
    async def lead(self, name: str, lease_s: float) -> bool:
        """Whether this hub holds (and now renews) the lease ``name`` among the hubs."""
        ...


class JoinReads:
    """The base of a ``SessionExtension`` that only adds fields read at join time: it has
    nothing to do when a socket joined or left or the session ended."""

    async def joined(
        self, connection: Connection, joined: Joined, student_ids: list[str], since: dict[str, int]
    ) -> dict[str, Any]:
        return {}

    async def left(self, joined: Joined, last_connection: bool) -> None:
        return None

    async def ended(self, session_id: str) -> None:
        return None
