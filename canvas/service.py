"""Canvas events on the socket: ``canvas:patch`` and ``canvas:sync``, and the canvases
part of ``session:join``: routes, and a session extension of the session rooms."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canvas.document import Author, parse_ops
from canvas.relay import CanvasRelay
from canvas.store import CanvasKey, CanvasStore, CatchUp
from persistence.repositories import EnrollmentRepository
from realtime.base import logs
from realtime.base.errors import ErrorCode, HubError
from realtime.base.events import Id, Payload
from realtime.base.tasks import stop
from realtime.gateway.membership import Connection, Joined, LiveRole, Membership
from realtime.gateway.ports import Ack, AfterLock, Route, StudentActivity

log = logging.getLogger(__name__)


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
        store: CanvasStore,
        relay: CanvasRelay,
        *,
        reads: async_sessionmaker[AsyncSession],
        members: Membership,
        activity: StudentActivity,
        keep_s: float = 0.0,
    ) -> None:
        self.store = store
        self.relay = relay
        self._reads = reads
        self._members = members
        self._activity = activity
        # The canvases of a session nobody here watches any more are stored and freed
        # ``keep_s`` after (the presence grace period), and a canvas is compacted that
        # long after its student went offline, unless they come back first: a class
        # reconnecting after a network blip finds its canvases loaded, and a blip
        # writes no snapshots.
        self._keep_s = keep_s
        self._pending: dict[str | CanvasKey, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route[Any]]:
        return [
            Route("canvas:patch", CanvasPatch, self._patch),
            Route("canvas:sync", CanvasSync, self._sync),
        ]

    async def _patch(self, connection: Connection, payload: CanvasPatch) -> AfterLock:
        joined = self._members.joined(connection, payload.session_id)
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
            await self._activity.student_activity(joined)
        ref = {} if payload.client_ref is None else {"client_ref": payload.client_ref}
        seq = accepted.patch.seq

        def unless_stored(durable: asyncio.Future[None]) -> None:
            if durable.cancelled() or durable.exception() is not None:
                self.relay.unauthored(key, seq)

        accepted.durable.add_done_callback(unless_stored)
        return AfterLock(accepted.durable, {"seq": seq, **ref})

    async def _sync(self, connection: Connection, payload: CanvasSync) -> Ack:
        joined = self._members.joined(connection, payload.session_id)
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
        self._cancel(joined.session_id)
        if joined.student_id is not None:
            self._cancel(CanvasKey(joined.center_id, joined.session_id, joined.student_id))
        canvases = {}
        for student_id in student_ids:
            key = CanvasKey(joined.center_id, joined.session_id, student_id)
            canvases[student_id] = catch_up_view(
                await self.store.catch_up(key, since.get(student_id))
            )
        return {"canvases": canvases}

    async def left(self, joined: Joined, last_connection: bool) -> None:
        session_id = joined.session_id
        if not self._members.watched(session_id):
            await self._after_keep(session_id, lambda: self._release(session_id))
        elif last_connection and joined.student_id is not None:
            key = CanvasKey(joined.center_id, session_id, joined.student_id)
            await self._after_keep(key, lambda: self.store.compact(key))

    async def ended(self, session_id: str) -> None:
        for what in list(self._pending):
            if (what if isinstance(what, str) else what.session_id) == session_id:
                self._cancel(what)
        await self._release(session_id)

    async def close(self) -> None:
        """Drop what is pending (the store stores every loaded canvas as it closes)."""
        for what in list(self._pending):
            self._cancel(what)
        await stop(self._running)

    async def _release(self, session_id: str) -> None:
        """Store and free a session's canvases, unless someone here watches it again."""
        if self._members.watched(session_id):
            return
        await self.store.compact_session(session_id)
        await self.store.forget(session_id)
        log.info(
            "session %s: nobody here watches it; its canvases are stored and freed", session_id
        )

    async def _after_keep(
        self, what: str | CanvasKey, action: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``action`` after ``keep_s`` unless ``what`` is cancelled first (now if 0)."""
        if self._keep_s <= 0:
            await action()
            return
        self._cancel(what)
        # Runs after the socket (or REST call) that emptied it is done: labelled with the
        # session alone, not with that socket or request.
        session_id = what if isinstance(what, str) else what.session_id
        self._pending[what] = asyncio.get_running_loop().call_later(
            self._keep_s,
            self._start,
            what,
            action,
            context=logs.fresh_context(session_id=session_id),
        )

    def _start(
        self, what: str | CanvasKey, action: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        self._pending.pop(what, None)
        task = asyncio.create_task(action())
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "storing a canvas after its session emptied failed", exc_info=task.exception()
            )

    def _cancel(self, what: str | CanvasKey) -> None:
        pending = self._pending.pop(what, None)
        if pending is not None:
            pending.cancel()
