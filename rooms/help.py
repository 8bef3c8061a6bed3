"""Help requests: students ask, the tutor serves them in order of priority and age.

Serving order: requests being served (IN_PROGRESS, oldest first), then the
waiting ones (OPEN) by priority, highest first, then by age. A request that
has waited longer than its priority's target is escalated one level, so a
LOW request left for too long overtakes fresh NORMAL ones. Escalation is a
pure function of the clock, computed when the order is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typing_extensions import TypedDict

from persistence.models import HELP_ACTIVE, HelpPriority, HelpRequest, HelpStatus, utcnow
from persistence.views import IsoTime, iso
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.events import Id, Payload
from realtime.base.names import staff_room, student_room
from realtime.gateway.membership import Connection, Joined, LiveRole, Membership
from realtime.gateway.ports import Ack, JoinReads, Rooms, Route

Clock = Callable[[], datetime]
Message = Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
Response = Annotated[str, StringConstraints(max_length=2_000)]

RANK = {HelpPriority.LOW: 0, HelpPriority.NORMAL: 1, HelpPriority.HIGH: 2, HelpPriority.URGENT: 3}
DEFAULT_TARGETS_S: dict[HelpPriority, float] = {
    HelpPriority.URGENT: 60,
    HelpPriority.HIGH: 180,
    HelpPriority.NORMAL: 300,
    HelpPriority.LOW: 600,
}
# Who may move a request where: status now -> statuses it may go to.
TRANSITIONS = {
    HelpStatus.OPEN: {HelpStatus.IN_PROGRESS, HelpStatus.RESOLVED, HelpStatus.CANCELLED},
    HelpStatus.IN_PROGRESS: {HelpStatus.RESOLVED, HelpStatus.CANCELLED},
}


class HelpAsk(Payload):
    session_id: Id
    message: Message
    priority: HelpPriority = HelpPriority.NORMAL
    exercise_id: Id | None = None


class HelpUpdate(Payload):
    session_id: Id
    help_id: Id
    status: HelpStatus
    response: Response | None = None


def escalated(request: HelpRequest, now: datetime, targets: Mapping[HelpPriority, float]) -> bool:
    waited = (now - request.created_at).total_seconds()
    return (
        request.status == HelpStatus.OPEN.value and waited > targets[HelpPriority(request.priority)]
    )


def serving_order(
    requests: Sequence[HelpRequest], now: datetime, targets: Mapping[HelpPriority, float]
) -> list[HelpRequest]:
    """Active requests in the order the tutor should serve them."""
    serving = sorted(
        (r for r in requests if r.status == HelpStatus.IN_PROGRESS.value),
        key=lambda r: (r.first_response_at or r.created_at, r.id),
    )

    def waiting_key(r: HelpRequest) -> tuple[int, datetime, str]:
        rank = RANK[HelpPriority(r.priority)] + (1 if escalated(r, now, targets) else 0)
        return (-rank, r.created_at, r.id)

    waiting = sorted((r for r in requests if r.status == HelpStatus.OPEN.value), key=waiting_key)
    return serving + waiting


class HelpView(TypedDict):
    """A help request, with how long it waited for its first answer and its end."""

    id: str
    session_id: str
    student_id: str
    exercise_id: str | None
    message: str | None
    priority: str
    status: str
    response: str | None
    handled_by: str | None
    created_at: IsoTime
    first_response_at: IsoTime | None
    resolved_at: IsoTime | None
    escalated: bool
    time_to_first_response_s: float | None
    time_to_resolve_s: float | None


def help_view(
    request: HelpRequest, now: datetime, targets: Mapping[HelpPriority, float]
) -> HelpView:
    def seconds(later: datetime | None) -> float | None:
        return round((later - request.created_at).total_seconds(), 3) if later else None

    return {
        "id": request.id,
        "session_id": request.session_id,
        "student_id": request.student_id,
        "exercise_id": request.exercise_key or None,
        "message": request.message,
        "priority": request.priority,
        "status": request.status,
        "response": request.response,
        "handled_by": request.handled_by,
        "created_at": iso(request.created_at),
        "first_response_at": iso(request.first_response_at),
        "resolved_at": iso(request.resolved_at),
        "escalated": escalated(request, now, targets),
        "time_to_first_response_s": seconds(request.first_response_at),
        "time_to_resolve_s": seconds(request.resolved_at),
    }


async def active_requests(db: AsyncSession, session_id: str) -> Sequence[HelpRequest]:
    return (
        await db.scalars(
            select(HelpRequest).where(
                HelpRequest.session_id == session_id, HelpRequest.status.in_(HELP_ACTIVE)
            )
        )
    ).all()


class HelpDesk(JoinReads):
    """The ``help:request`` and ``help:update`` events and the help part of the join ack."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        reads: async_sessionmaker[AsyncSession],
        members: Membership,
        rooms: Rooms,
        clock: Clock = utcnow,
        targets_s: Mapping[HelpPriority, float] | None = None,
    ) -> None:
        self._db = db
        self._reads = reads
        self._members = members
        self._rooms = rooms
        self.clock = clock
        self.targets = dict(targets_s or DEFAULT_TARGETS_S)

    def routes(self) -> list[Route[Any]]:
        return [
            Route("help:request", HelpAsk, self._ask),
            Route("help:update", HelpUpdate, self._update),
        ]

    async def _ask(self, connection: Connection, payload: HelpAsk) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
        if joined.role is not LiveRole.STUDENT or joined.student_id is None:
            raise HubError(ErrorCode.FORBIDDEN, "only a student asks for help")
        now = self.clock()
        request = HelpRequest(
            center_id=joined.center_id,
            session_id=joined.session_id,
            student_id=joined.student_id,
            exercise_key=payload.exercise_id or "",
            message=payload.message,
            priority=payload.priority.value,
            status=HelpStatus.OPEN.value,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._db.begin() as db:
                db.add(request)
        except IntegrityError:
            raise HubError(
                ErrorCode.CONFLICT,
                "you already have an open help request for this exercise",
                error_code="HELP_ALREADY_OPEN",
            ) from None
        await self._announce(joined, request)
        return {"help_request": help_view(request, now, self.targets)}

    async def _update(self, connection: Connection, payload: HelpUpdate) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
        if joined.role is LiveRole.OBSERVER:
            raise HubError(ErrorCode.FORBIDDEN, "observers are read-only")
        now = self.clock()
        async with self._db.begin() as db:
            request = await db.get(HelpRequest, payload.help_id, with_for_update=True)
            if request is None or request.session_id != joined.session_id:
                raise not_found("help request", payload.help_id)
            if joined.role is LiveRole.STUDENT:
                if request.student_id != joined.student_id:
                    raise HubError(ErrorCode.FORBIDDEN, "a student updates only their own requests")
                if payload.status is not HelpStatus.CANCELLED:
                    raise HubError(ErrorCode.FORBIDDEN, "a student may only cancel a request")
            allowed = TRANSITIONS.get(HelpStatus(request.status), set())
            if payload.status not in allowed:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"a {request.status} request cannot become {payload.status.value}",
                )
            request.status = payload.status.value
            request.updated_at = now
            if payload.response is not None:
                request.response = payload.response
            if joined.role is LiveRole.TUTOR:
                request.handled_by = connection.identity.user_id
                if request.first_response_at is None:
                    request.first_response_at = now
            if payload.status in (HelpStatus.RESOLVED, HelpStatus.CANCELLED):
                request.resolved_at = now
        await self._announce(joined, request)
        return {"help_request": help_view(request, now, self.targets)}

    async def _announce(self, joined: Joined, changed: HelpRequest) -> None:
        """``help:updated`` to the staff (whole queue) and to the requesting student
        (their own requests only, and their first one's place in the queue); every
        other student waiting hears their new place (``help:position``): a request
        raised, taken or closed ahead of theirs moves them."""
        now = self.clock()
        async with self._reads() as db:
            order = serving_order(await active_requests(db, joined.session_id), now, self.targets)
        view = help_view(changed, now, self.targets)
        await self._rooms.emit(
            "help:updated",
            {"session_id": joined.session_id, "help_request": view, "queue": [r.id for r in order]},
            room=staff_room(joined.center_id, joined.session_id),
        )
        own = [r.id for r in order if r.student_id == changed.student_id]
        position = next(
            (i + 1 for i, r in enumerate(order) if r.student_id == changed.student_id), None
        )
        await self._rooms.emit(
            "help:updated",
            {
                "session_id": joined.session_id,
                "help_request": view,
                "queue": own,
                "position": position,
            },
            room=student_room(joined.center_id, joined.session_id, changed.student_id),
        )
        places: dict[str, int] = {}
        for place, request in enumerate(order, start=1):
            places.setdefault(request.student_id, place)
        for student_id, place in places.items():
            if student_id != changed.student_id:
                await self._rooms.emit(
                    "help:position",
                    {"session_id": joined.session_id, "position": place},
                    room=student_room(joined.center_id, joined.session_id, student_id),
                )

    # -- session extension ---------------------------------------------------

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        now = self.clock()
        order = serving_order(await active_requests(db, joined.session_id), now, self.targets)
        if joined.student_id is not None:
            order = [r for r in order if r.student_id == joined.student_id]
        return {"help": [help_view(r, now, self.targets) for r in order]}
