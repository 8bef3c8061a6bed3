"""The Socket.IO server: python-socketio's, with one ordered queue per client,
and room events shared with the other hubs of a cluster.

Handlers run inline, in the order Engine.IO reads the socket's packets
(``realtime.internals.socketio_dispatch``). A handler that must not hold up
its socket's next event while it waits (a canvas patch waits for its commit)
returns a ``LaterAck``: the server answers the client's ack when that future
resolves, through the outbox.
Every ack is encoded once with the hub's codec.

``HubManager`` replaces python-socketio's client manager for ``emit`` to a
room: the event is encoded once, put on the queues of this process's
sockets in the room, and, when several hubs share sessions, published once
on the session's channel for the hubs that have members there (see
``realtime.bus``). Rooms, ``skip_sid`` and acks behave as stock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import socketio

from realtime.base.errors import ErrorCode, HubError
from realtime.base.logbudget import LogBudget
from realtime.base.metrics import HubMetrics
from realtime.base.names import scope_of
from realtime.bus.bus import EMIT, Bus, scope_channel
from realtime.bus.bus_memory import Cluster
from realtime.gateway.outbox import Outbox, packet_text
from realtime.internals.socketio_dispatch import NAMESPACE, InlineDispatchServer


@dataclass(frozen=True, slots=True)
class LaterAck:
    """An ack answered when ``future`` resolves, with its result."""

    future: asyncio.Future[Any]


class HubManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's manager, with room events shared through the cluster."""

    def __init__(self, cluster: Bus) -> None:
        super().__init__()
        self.cluster = cluster
        self.outbox: Outbox | None = None
        cluster.on(EMIT, self._emitted_elsewhere)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        plain = (
            self.outbox is not None
            and namespace == NAMESPACE
            and room is not None
            and callback is None
            and not isinstance(data, tuple)
            and not isinstance(skip_sid, list)
        )
        if not plain:
            await super().emit(event, data, namespace, room, skip_sid, callback, **kwargs)
            return
        assert self.outbox is not None and room is not None
        text = packet_text(event, data)
        self.outbox.deliver(room, skip_sid, text)
        scope = scope_of(room)
        if scope is not None and self.cluster.shared:
            header = orjson.dumps([room, skip_sid])
            self.cluster.publish(scope_channel(scope), EMIT, header + b"\n" + text.encode())

    def _emitted_elsewhere(self, payload: bytes) -> None:
        """Another hub emitted to a room: deliver to this process's sockets in it."""
        if self.outbox is None:
            return
        header, _, text = payload.partition(b"\n")
        room, skip_sid = orjson.loads(header)
        self.outbox.deliver(room, skip_sid, text.decode())


log = logging.getLogger(__name__)
# The event label of packets that did not decode, in ``hub_events_total``.
UNDECODABLE = "<undecodable>"


class HubServer(InlineDispatchServer):
    def __init__(
        self,
        *,
        cluster: Bus | None = None,
        metrics: HubMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        manager = HubManager(cluster if cluster is not None else Cluster())
        super().__init__(client_manager=manager, **kwargs)
        self.outbox = Outbox(self)
        manager.outbox = self.outbox
        self.cluster = manager.cluster
        self._metrics = metrics
        self._undecodable_log = LogBudget(log)
        self._dropped_log = LogBudget(log)

    async def refuse(self, sid: str, eio_sid: str, ack_id: int | None, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.events.labels(UNDECODABLE, ErrorCode.VALIDATION_ERROR.value).inc()
        self._undecodable_log.log(logging.INFO, "%s: undecodable packet (%s)", sid, reason)
        if ack_id is not None:
            error = HubError(ErrorCode.VALIDATION_ERROR, f"undecodable packet: {reason}")
            self.outbox.ack(sid, ack_id, [error.ack()])
        else:
            await self.eio.disconnect(eio_sid)

    def dropped(self, eio_sid: str, why: str) -> None:
        if self._metrics is not None:
            self._metrics.dropped_connections.labels(why.replace(" ", "_")).inc()
        self._dropped_log.log(logging.INFO, "websocket %s dropped: %s", eio_sid, why)

    def answer(self, sid: str, ack_id: int, result: Any) -> None:
        if isinstance(result, LaterAck):

            def answer_later(done: asyncio.Future[Any]) -> None:
                if not done.cancelled():
                    self.outbox.ack(sid, ack_id, [done.result()])

            result.future.add_done_callback(answer_later)
            return
        self.outbox.ack(sid, ack_id, [] if result is None else [result])
