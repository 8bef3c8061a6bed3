"""Canvas events on the socket: ``canvas:patch`` and ``canvas:sync``, and the canvases
part of ``session:join``. Plugs into ``LiveHub`` as a session extension."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from canvas.document import Author, parse_ops
from canvas.relay import CanvasRelay
from canvas.store import CanvasKey, CatchUp
from canvas.store_database import DatabaseCanvasStore
from persistence.repositories import EnrollmentRepository
from realtime.errors import ErrorCode, HubError
from realtime.events import Id, Payload
from realtime.sockets import Ack, AfterLock, LiveHub
from rooms.access import LiveRole
from rooms.membership import Connection, Joined


class CanvasPatch(Payload):
    session_id: Id
    student_id: Id | None = None
    ops: list[Any]
    client_ref: Annotated[str, StringConstraints(max_length=64)] | int | None = None


class CanvasSync(Payload):
    session_id: Id
    student_id: Id
    since: Annotated[int, Field(ge=0)]


def catch_up_view(catch: CatchUp) -> dict[str, Any]:
    """``{seq, epoch, ops: [{seq, author, ops}]}`` or ``{seq, epoch, doc}``."""
    view: dict[str, Any] = {"seq": catch.position.offset, "epoch": catch.position.epoch}
    if catch.patches is not None:
        view["ops"] = [p.wire() for p in catch.patches]
    else:
        view["doc"] = catch.doc
    return view


class CanvasService:
    def __init__(
        self,
        hub: LiveHub,
        store: DatabaseCanvasStore,
        relay: CanvasRelay,
    ) -> None:
        self.store = store
        self.relay = relay
        self._reads = hub.reads
        self._hub = hub
        hub.on("canvas:patch", CanvasPatch, self._patch)
        hub.on("canvas:sync", CanvasSync, self._sync)
        hub.extensions.append(self)

    async def _patch(self, connection: Connection, payload: CanvasPatch) -> AfterLock:
        joined = self._hub.joined(connection, payload.session_id)
        if joined.role is LiveRole.OBSERVER:
            raise HubError(ErrorCode.FORBIDDEN, "observers are read-only")
        if joined.role is LiveRole.STUDENT:
            if payload.student_id not in (None, joined.student_id):
                raise HubError(ErrorCode.FORBIDDEN, "a student writes only their own canvas")
            student_id, author = joined.student_id, Author.STUDENT
        else:
            if payload.student_id is None:
                raise HubError(ErrorCode.VALIDATION_ERROR, "the tutor names the student_id")
            await self._require_enrolled(joined, payload.student_id)
            student_id, author = payload.student_id, Author.TUTOR
        assert student_id is not None
        ops = parse_ops(payload.ops, self.store.limits)
        key = CanvasKey(joined.center_id, joined.session_id, student_id)
        accepted = await self.store.append(key, author, connection.identity.user_id, ops)
        self.relay.authored(key, accepted.patch.seq, connection.sid)
        if author is Author.STUDENT:
            await self._hub.student_activity(joined)
        ref = {} if payload.client_ref is None else {"client_ref": payload.client_ref}
        seq = accepted.patch.seq

        def unless_stored(durable: asyncio.Future[None]) -> None:
            if durable.cancelled() or durable.exception() is not None:
                self.relay.unauthored(key, seq)

        accepted.durable.add_done_callback(unless_stored)
        return AfterLock(accepted.durable, {"seq": seq, **ref})

    async def _sync(self, connection: Connection, payload: CanvasSync) -> Ack:
        joined = self._hub.joined(connection, payload.session_id)
        await self._require_readable(joined, payload.student_id)
        key = CanvasKey(joined.center_id, joined.session_id, payload.student_id)
        return catch_up_view(await self.store.catch_up(key, payload.since))

    async def _require_readable(self, joined: Joined, student_id: str) -> None:
        if joined.role is LiveRole.STUDENT:
            if student_id != joined.student_id:
                raise HubError(ErrorCode.FORBIDDEN, "a student reads only their own canvas")
            return
        await self._require_enrolled(joined, student_id)

    async def _require_enrolled(self, joined: Joined, student_id: str) -> None:
        async with self._reads() as db:
            enrolled = await EnrollmentRepository(db).get(joined.session_id, student_id)
        if enrolled is None:
            raise HubError(
                ErrorCode.NOT_FOUND, f"student {student_id!r} is not enrolled in this session"
            )

    # -- session extension ---------------------------------------------------

    async def read_for_join(
        self, joined: Joined, student_ids: list[str], db: AsyncSession
    ) -> dict[str, Any]:
        return {}  # canvases come from the store, after the join's reads

    async def joined(
        self, connection: Connection, joined: Joined, student_ids: list[str], since: dict[str, int]
    ) -> dict[str, Any]:
        canvases = {}
        for student_id in student_ids:
            key = CanvasKey(joined.center_id, joined.session_id, student_id)
            canvases[student_id] = catch_up_view(
                await self.store.catch_up(key, since.get(student_id))
            )
        return {"canvases": canvases}

    async def left(self, joined: Joined, last_connection: bool) -> None:
        if not any(True for _ in self._hub.members.in_session(joined.session_id)):
            # Nobody here watches the session any more: store and free its canvases.
            await self.store.compact_session(joined.session_id)
            await self.store.forget(joined.session_id)
        elif last_connection and joined.student_id is not None:
            key = CanvasKey(joined.center_id, joined.session_id, joined.student_id)
            await self.store.compact(key)

    async def ended(self, session_id: str) -> None:
        await self.store.compact_session(session_id)
        await self.store.forget(session_id)
