"""The Socket.IO server: python-socketio's, with one ordered queue per client.

Stock python-socketio starts a task for every incoming event
(``async_handlers=True``), so one socket's events race each other and the
hub had to serialize them again with a per-connection lock. Here handlers
run inline, in the order Engine.IO reads the socket's packets: no task per
event, and a socket's events take effect one at a time by construction.

A handler that must not hold up its socket's next event while it waits (a
canvas patch waits for its commit) returns a ``LaterAck``: the server
answers the client's ack when that future resolves, through the outbox.
Every ack is encoded once with the hub's codec.

The override of ``_handle_event_internal`` follows python-socketio 5's
private API; the socket tests exercise it on every event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import socketio

from realtime.outbox import NAMESPACE, Outbox


@dataclass(frozen=True, slots=True)
class LaterAck:
    """An ack answered when ``future`` resolves, with its result."""

    future: asyncio.Future[Any]


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(async_handlers=False, **kwargs)
        self.outbox = Outbox(self)

    async def _handle_event_internal(
        self,
        server: socketio.AsyncServer,
        sid: str,
        eio_sid: str,
        data: list[Any],
        namespace: str,
        id: int | None,
    ) -> None:
        if namespace != NAMESPACE:  # the hub serves only "/"; keep stock behaviour elsewhere
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
            return
        result = await server._trigger_event(data[0], namespace, sid, *data[1:])
        if id is None or result is self.not_handled:
            return
        if isinstance(result, LaterAck):
            ack_id = id

            def answer(done: asyncio.Future[Any]) -> None:
                if not done.cancelled():
                    self.outbox.ack(sid, ack_id, [done.result()])

            result.future.add_done_callback(answer)
            return
        self.outbox.ack(sid, id, [] if result is None else [result])
