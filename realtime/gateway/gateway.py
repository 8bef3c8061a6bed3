"""The gateway: connect with a token, dispatch client events to the features' routes.

Every client event goes through ``Gateway._dispatch``: it rate-limits the
caller, validates the payload with its route's pydantic model, finds the
caller's connection, refuses an expired token, runs the handler one event at a
time per connection (so a client's events take effect in the order it sent
them), and answers with the protocol's ack shape. A handler never raises to
python-socketio.

The gateway knows nothing of sessions beyond the ``Membership`` registry: the
session rooms feature joins and leaves them, and is told through
``on_disconnect`` when a socket goes.

Connects, events and disconnects run with the socket (its sid and caller, the
event, a validated short ``session_id``) bound to the log context
(``realtime.base.logs``); the connect and the disconnect are logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio
from pydantic import ValidationError

from realtime.base import logs
from realtime.base.errors import ErrorCode, HubError, validation_error
from realtime.base.events import AuthRefresh
from realtime.base.identity import Identity, TokenVerifier
from realtime.base.logbudget import LogBudget
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import TokenBucket
from realtime.base.tasks import stop
from realtime.gateway.addresses import client_address
from realtime.gateway.membership import Connection, Membership
from realtime.gateway.ports import Ack, AfterLock, Route
from realtime.gateway.server import LaterAck
from realtime.internals.engineio_websocket import open_sockets

log = logging.getLogger(__name__)

UNKNOWN_EVENT = "unknown"
# hub:closing code when the process stops: unlike TOKEN_EXPIRED, reconnecting helps.
SHUTTING_DOWN = "SHUTTING_DOWN"
# hub:closing code of a connection that joined no session in time.
JOIN_TIMEOUT = "JOIN_TIMEOUT"
# How long a stopping hub waits for its clients' transports to close.
CLOSE_WAIT_S = 2.0
# The longest a timer handle may be scheduled for; asyncio copes, but a token
# valid for years is better re-checked now and then.
MAX_EXPIRY_WAIT_S = 24 * 3600.0

# Told, under the connection's lock, that a socket disconnected.
DisconnectHook = Callable[[Connection], Awaitable[None]]
# Told who a new connection is, before it is accepted (the directory records them).
ConnectHook = Callable[[Identity], Awaitable[None]]


class Gateway:
    """Socket.IO connections, their tokens, and the dispatch of their events."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        verifier: TokenVerifier,
        metrics: HubMetrics,
        events_per_s: float = 50.0,
        event_burst: int = 100,
        join_deadline_s: float = 0.0,
    ) -> None:
        """``join_deadline_s``: close a connection that has joined no session that
        long after connecting (0: never)."""
        self.sio = sio
        self.members = Membership()
        self._verifier = verifier
        self._metrics = metrics
        self._events_per_s = events_per_s
        self._event_burst = event_burst
        self._join_deadline_s = join_deadline_s
        self._disconnect_hooks: list[DisconnectHook] = []
        self._connect_hooks: list[ConnectHook] = []
        self._background: set[asyncio.Task[None]] = set()  # token expiries
        self._stopping = False
        self._refusals = LogBudget(log)  # refused connects: a client may retry in a loop
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_unknown)
        self.add_routes([Route("auth:refresh", AuthRefresh, self._refresh)])

    def add_routes(self, routes: Iterable[Route[Any]]) -> None:
        """Handle these client events (each under its connection's lock)."""
        for route in routes:
            self.sio.on(route.event, self._handler_of(route))

    def on_connect(self, hook: ConnectHook) -> None:
        """Call ``hook`` with each verified identity before its connection is accepted."""
        self._connect_hooks.append(hook)

    def on_disconnect(self, hook: DisconnectHook) -> None:
        """Call ``hook`` when a socket disconnects, under its lock (it is already
        out of the registry)."""
        self._disconnect_hooks.append(hook)

    async def emit(
        self, event: str, data: Any, *, room: str | None = None, to: str | None = None
    ) -> None:
        """``Rooms``: send to a room or a socket, on every hub (see ``HubManager``)."""
        await self.sio.emit(event, data, room=room, to=to)

    async def enter_room(self, sid: str, room: str) -> None:
        await self.sio.enter_room(sid, room)

    async def leave_room(self, sid: str, room: str) -> None:
        await self.sio.leave_room(sid, room)

    # -- connection lifecycle ------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        request = environ.get("aiohttp.request")
        ip = client_address(request) if request is not None else None
        try:
            identity = self._verifier.verify(token)
        except HubError as exc:
            self._metrics.connects.labels(exc.code.value).inc()
            # The code only: the message may quote the token's parts (PyJWT's reasons).
            self._refusals.log(logging.INFO, "connect from %s refused: %s", ip, exc.code.value)
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code.value, "message": exc.message}
            ) from None
        with logs.bound(**_about(sid, identity)):
            await self._connected(sid, identity, ip)

    async def _connected(self, sid: str, identity: Identity, ip: str | None) -> None:
        for hook in self._connect_hooks:
            await hook(identity)
        connection = Connection(
            sid=sid,
            identity=identity,
            ip=ip,
            events=TokenBucket(self._events_per_s, self._event_burst),
        )
        self.members.add(connection)
        self._schedule_expiry(connection)
        if self._join_deadline_s > 0:
            asyncio.get_running_loop().call_later(
                self._join_deadline_s,
                self._start_join_check,
                connection,
                context=logs.fresh_context(**_about(sid, identity)),
            )
        self._metrics.connects.labels("ok").inc()
        self._metrics.connections.inc()
        log.info("connect from %s", ip, extra=logs.with_fields(remote=ip))

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.members.get(sid)
        if connection is None:
            return
        # python-socketio's reason is one of its own few strings ("transport close"...).
        why = reason[:40] if isinstance(reason, str) else "unknown"
        with logs.bound(**_about(sid, connection.identity)):
            await self._disconnected(connection, why)

    async def _disconnected(self, connection: Connection, why: str) -> None:
        sid = connection.sid
        async with connection.lock:
            if self.members.pop(sid) is not connection:
                return
            if connection.expiry is not None:
                connection.expiry.cancel()
            self._metrics.connections.dec()
            log.info("disconnect (%s)", why)
            for hook in self._disconnect_hooks:
                await hook(connection)

    def _schedule_expiry(self, connection: Connection) -> None:
        if connection.expiry is not None:
            connection.expiry.cancel()
        wait = min(max(connection.identity.seconds_left(), 0.0), MAX_EXPIRY_WAIT_S)
        # Labelled with its socket, not with the event (auth:refresh) that set it.
        connection.expiry = asyncio.get_running_loop().call_later(
            wait,
            self._start_expiry,
            connection,
            context=logs.fresh_context(**_about(connection.sid, connection.identity)),
        )

    def _start_join_check(self, connection: Connection) -> None:
        if (
            self._stopping
            or connection.sessions
            or self.members.get(connection.sid) is not connection
        ):
            return
        task = asyncio.create_task(self._close_unjoined(connection))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_unjoined(self, connection: Connection) -> None:
        self._metrics.dropped_connections.labels("join_timeout").inc()
        try:
            await self._close(
                connection.sid,
                JOIN_TIMEOUT,
                f"no session joined within {self._join_deadline_s:g} s of connecting",
            )
        except Exception:
            log.exception("disconnecting %s (no session joined) failed", connection.sid)

    def _start_expiry(self, connection: Connection) -> None:
        if self._stopping:
            return  # shutdown closes every socket anyway
        task = asyncio.create_task(self._expire(connection))
        self._background.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._background.discard)

    async def _expire(self, connection: Connection) -> None:
        if self.members.get(connection.sid) is not connection:
            return
        if connection.identity.seconds_left() > 0:
            self._schedule_expiry(connection)  # capped wait; not due yet
            return
        try:
            await self._close(connection.sid, ErrorCode.TOKEN_EXPIRED.value, "token has expired")
        except Exception:
            # A failing disconnect hook: logged here, not left in a task nobody awaits.
            log.exception("disconnecting %s (token expired) failed", connection.sid)

    async def _close(self, sid: str, code: str, message: str) -> None:
        """Tell a client why, then disconnect it."""
        await self.sio.emit("hub:closing", {"code": code, "message": message}, to=sid)
        await self.sio.disconnect(sid)

    async def _refresh(self, connection: Connection, payload: AuthRefresh) -> Ack:
        fresh = self._verifier.verify(payload.token)
        old = connection.identity
        if (fresh.user_id, fresh.role, fresh.center) != (old.user_id, old.role, old.center):
            raise HubError(
                ErrorCode.FORBIDDEN,
                "a refreshed token must carry the same sub, role and center as the connection's",
            )
        connection.identity = fresh
        self._schedule_expiry(connection)
        return {"expires_at": fresh.expires_at}

    async def disconnect_all(self) -> None:
        """Disconnect every client, telling each to reconnect (to this hub restarted, or
        another), so the process exits without waiting out its open websockets."""
        log.info("stopping: telling %d clients to reconnect", len(self.members))
        for connection in list(self.members):
            await self.sio.emit(
                "hub:closing",
                {"code": SHUTTING_DOWN, "message": "hub is shutting down; reconnect"},
                to=connection.sid,
            )
        transports = open_sockets(self.sio.eio)
        log.info("stopping: closing %d transports", transports)
        # Close the Engine.IO transports too: a Socket.IO-level disconnect leaves
        # the websocket open until the web server's shutdown timeout.
        if transports:
            try:
                await asyncio.wait_for(self._close_transports(), CLOSE_WAIT_S)
            except TimeoutError:
                # A client that stopped reading never takes its close packet; the web
                # server drops what is left when its own shutdown timeout runs out.
                log.warning("transports did not finish closing within %.0f s", CLOSE_WAIT_S)

    async def shutdown(self) -> None:
        """Stop the Socket.IO server's background work (after ``disconnect_all``).

        A token expiry under way is disconnecting its socket, and the disconnect hooks
        write to the database: it gets ``CLOSE_WAIT_S`` to finish before it is
        cancelled, so that the hub closes its database after it. Left running, it
        kept its connection past the engine's disposal, and that connection was never
        closed (a ResourceWarning when garbage-collected)."""
        self._stopping = True
        for connection in self.members:
            if connection.expiry is not None:
                connection.expiry.cancel()
        expiring = list(self._background)
        if expiring:
            await asyncio.wait(expiring, timeout=CLOSE_WAIT_S)
        await stop(expiring)
        await self.sio.shutdown()

    async def _close_transports(self) -> None:
        # Engine.IO's disconnect() of all fails on an empty set: sockets may close meanwhile.
        if open_sockets(self.sio.eio):
            await self.sio.eio.disconnect()

    # -- dispatch ------------------------------------------------------------

    def _handler_of(self, route: Route[Any]) -> Callable[..., Awaitable[Ack | LaterAck]]:
        async def on_event(sid: str, data: Any = None, *extra: Any) -> Ack | LaterAck:
            return await self._dispatch(route, sid, data, extra)

        return on_event

    async def _dispatch(
        self, route: Route[Any], sid: str, data: Any, extra: tuple[Any, ...]
    ) -> Ack | LaterAck:
        started = time.perf_counter()
        connection = self.members.get(sid)
        identity = connection.identity if connection is not None else None
        scope = logs.bind(**_about(sid, identity), event=route.event)
        try:
            return await self._dispatch_here(route, sid, data, extra, started)
        finally:
            logs.unbind(scope)

    async def _dispatch_here(
        self, route: Route[Any], sid: str, data: Any, extra: tuple[Any, ...], started: float
    ) -> Ack | LaterAck:
        try:
            result = await self._run(route, sid, data, extra)
        except Exception as exc:
            return self._answer(route.event, sid, started, exc)
        if not isinstance(result, AfterLock):
            return self._answer(route.event, sid, started, result)
        answer: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[object]) -> None:
            outcome = done.exception() if not done.cancelled() else asyncio.CancelledError()
            ack = result.ack if outcome is None else outcome
            answer.set_result(self._answer(route.event, sid, started, ack))

        asyncio.ensure_future(result.done).add_done_callback(settle)
        return LaterAck(answer)

    def _answer(self, event: str, sid: str, started: float, result: Ack | BaseException) -> Ack:
        """The ack for a handler's result or error, counted in the metrics."""
        if isinstance(result, HubError):
            ack, outcome = result.ack(), result.code.value
        elif isinstance(result, BaseException):
            if not isinstance(result, asyncio.CancelledError):
                log.error("handler for %r failed (sid %s)", event, sid, exc_info=result)
            ack = HubError(ErrorCode.INTERNAL, "internal error").ack()
            outcome = ErrorCode.INTERNAL.value
        else:
            ack, outcome = {"ok": True, **result}, "ok"
        self._metrics.events.labels(event, outcome).inc()
        self._metrics.event_seconds.labels(event).observe(time.perf_counter() - started)
        return ack

    async def _run(
        self, route: Route[Any], sid: str, data: Any, extra: tuple[Any, ...]
    ) -> Ack | AfterLock:
        connection = self.members.get(sid)
        self._rate_limit(connection)
        if extra:
            raise HubError(
                ErrorCode.VALIDATION_ERROR,
                f"{route.event} takes one payload object, got {1 + len(extra)} arguments",
            )
        try:
            payload = route.model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, f"invalid {route.event} payload") from None
        session_id = getattr(payload, "session_id", None)
        if logs.safe_id(session_id):
            logs.bind(session_id=session_id)  # undone with the event's scope (_dispatch)
        if connection is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "not connected")
        async with connection.lock:
            if self.members.get(sid) is not connection:
                raise HubError(ErrorCode.UNAUTHORIZED, "not connected")
            if connection.identity.seconds_left() <= 0:
                raise HubError(ErrorCode.TOKEN_EXPIRED, "token has expired")
            return await route.handler(connection, payload)

    def _rate_limit(self, connection: Connection | None) -> None:
        if connection is not None and not connection.events.take():
            raise HubError(
                ErrorCode.RATE_LIMITED,
                f"more than {self._events_per_s:g} events a second "
                f"(burst {self._event_burst}); slow down",
            )

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> Ack:
        shown = event[:64] if isinstance(event, str) else repr(event)[:64]
        try:
            self._rate_limit(self.members.get(sid))
            error = HubError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown event {shown!r}",
                details={"event": shown},
            )
        except HubError as exc:
            error = exc
        self._metrics.events.labels(UNKNOWN_EVENT, error.code.value).inc()
        return error.ack()


def _about(sid: str, identity: Identity | None) -> dict[str, str | None]:
    """The log context of a socket: its sid and who connected it."""
    if identity is None:
        return {"sid": sid}
    return {
        "sid": sid,
        "user_id": identity.user_id,
        "center_id": identity.center,
        "role": identity.role.value,
    }
