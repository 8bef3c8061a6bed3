"""Sends hub events to rooms and sockets: one encode per event, no task per recipient.

python-socketio's ``emit`` to a room builds a packet (walking the whole
payload for binary parts), then starts one task per recipient and waits for
them all; with a stroke of points relayed per patch that was a tenth of the
hub's CPU. The outbox encodes the packet once, as Socket.IO v5 text, and puts
it straight on each recipient's Engine.IO send queue, the queue
python-socketio's own sends end in. Order per socket is the queue's order,
so events and acks to one socket leave in the order they were put.

The send queue is an Engine.IO internal, reached only through
``realtime.internals``; the manager's room registry is python-socketio's
public manager API. There is no separate test of it: every event the suites receive
came through it (``tests/test_transport.py`` checks order and wholeness under load).
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime.base.codec import dumps
from realtime.internals.engineio_websocket import enqueue
from realtime.internals.socketio_dispatch import NAMESPACE

# Socket.IO v5 packet types on the default namespace (no "/nsp," prefix).
_EVENT = "2"
_ACK = "3"


def packet_text(event: str, data: Any) -> str:
    """An event as Socket.IO v5 text on the default namespace (no data: no argument)."""
    return _EVENT + dumps([event] if data is None else [event, data])


class Outbox:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def emit(self, event: str, data: Any, *, room: str, skip_sid: str | None = None) -> int:
        """Send ``event`` to every socket of this process in ``room`` but ``skip_sid``;
        how many got it. Other hubs are not told (``HubManager.emit`` tells them)."""
        return self.send(self.targets(room, skip_sid), event, data)

    def deliver(self, room: str, skip_sid: str | None, text: str) -> int:
        """Put an encoded event (``packet_text``) on the queue of every socket in ``room``
        but ``skip_sid``; how many got it."""
        targets = self.targets(room, skip_sid)
        if not targets:
            return 0
        packet = eio_packet.Packet(eio_packet.MESSAGE, text)
        return sum(self._put(eio_sid, packet) for eio_sid in targets)

    def targets(self, room: str, skip_sid: str | None = None) -> list[str]:
        """The Engine.IO sessions of ``room`` but ``skip_sid``: ask first, and a caller
        builds no payload for a room nobody else is in."""
        return [
            eio_sid
            for sid, eio_sid in self._sio.manager.get_participants(NAMESPACE, room)
            if sid != skip_sid
        ]

    def send(self, targets: list[str], event: str, data: Any) -> int:
        """Send ``event`` to ``targets`` (see ``targets``), encoded once; how many got it."""
        if not targets:
            return 0
        packet = eio_packet.Packet(eio_packet.MESSAGE, packet_text(event, data))
        return sum(self._put(eio_sid, packet) for eio_sid in targets)

    def ack(self, sid: str, ack_id: int, args: list[Any]) -> bool:
        """Answer the client's event ``ack_id`` with ``args``."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return False
        text = f"{_ACK}{ack_id}{dumps(args)}"
        return self._put(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, text))

    def _put(self, eio_sid: str, packet: eio_packet.Packet) -> bool:
        return enqueue(self._sio.eio, eio_sid, packet)
