"""python-socketio's server with event handlers run inline, one socket's events in order.

Stock python-socketio starts a task for every incoming event
(``async_handlers=True``), so one socket's events race each other. Here the
handler runs inline, in the order Engine.IO reads the socket's packets: no
task per event (third pass in ``docs/benchmarks.md``, x1.13), and a socket's
events take effect one at a time by construction.

This overrides python-socketio 5's private ``_handle_event_internal`` and calls
its ``_trigger_event`` and ``not_handled``; ``tests/test_internals.py`` pins
their signatures. What a handler returned is handed to ``answer``, which a
subclass implements to send the client's ack.

A packet whose payload does not decode (not strict JSON, nested past the
decoder's depth limit, an event packet without an event list) reaches no
handler: it is handed to ``refuse`` with its ack id, if it carried one. Stock
python-socketio raised out of its message handler instead, which Engine.IO
logged as an error with a traceback and the client never heard of. The packet
class is python-socketio's public extension point (``serializer=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import socketio
from socketio import packet as sio_packet

from realtime.base.codec import CODEC
from realtime.internals import engineio_websocket

NAMESPACE = "/"
# The packet types a client may send (a CONNECT_ERROR comes only from a server).
_FROM_CLIENTS = {
    sio_packet.CONNECT,
    sio_packet.DISCONNECT,
    sio_packet.EVENT,
    sio_packet.ACK,
    sio_packet.BINARY_EVENT,
    sio_packet.BINARY_ACK,
}


@dataclass(frozen=True, slots=True)
class Undecodable:
    """The payload of a packet that did not decode, and why."""

    reason: str


class StrictPacket(sio_packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet that decodes whatever arrives. An event whose payload fails
    to decode, or is not a list starting with a name, carries ``[Undecodable]`` as
    its data (with the ack id, if the packet got that far), for the server to
    refuse; python-socketio reads ``data[0]`` of every event before dispatching.
    It decodes with the hub's strict codec unless the server is given another."""

    json = CODEC

    def __init__(self, *args: Any, encoded_packet: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)
        if encoded_packet is not None and not encoded_packet:
            # python-socketio decodes no empty message ("4"), leaving an event without data.
            self.packet_type = sio_packet.EVENT
            self.data = [Undecodable("an empty packet")]

    def decode(self, encoded_packet: Any) -> int:
        try:
            attachments = int(super().decode(encoded_packet))
        except Exception as exc:  # whatever the client sent: its fault, not ours
            return self._undecodable(f"{type(exc).__name__}: {exc}"[:200])
        # python-socketio's server raised (an ERROR traceback, no answer) on each of these.
        if self.packet_type not in _FROM_CLIENTS:
            return self._undecodable(f"a client sends no packet of type {self.packet_type}")
        binary = self.packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
        if binary and attachments < 1:
            # It would take the socket's next message, whatever it is, as an attachment.
            return self._undecodable("a binary packet without attachments")
        if self.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            if not (isinstance(self.data, list) and self.data):
                got = "nothing" if self.data is None else type(self.data).__name__
                return self._undecodable(f"expected an event list, got {got}")
            if not isinstance(self.data[0], str):
                # python-socketio looks the name up in a dict: a list or an object raised.
                return self._undecodable(
                    f"expected an event name first, got {type(self.data[0]).__name__}"
                )
        return attachments

    def _undecodable(self, reason: str) -> int:
        """Make this an event carrying ``[Undecodable(reason)]`` (keeping its ack id)."""
        self.packet_type = sio_packet.EVENT
        self.data = [Undecodable(reason)]
        return 0  # no binary attachments to wait for


class InlineDispatchServer(socketio.AsyncServer):  # type: ignore[misc]
    """An ``AsyncServer`` that runs handlers inline and serves websockets with
    ``engineio_websocket``'s driver; subclasses implement ``answer``."""

    def __init__(
        self,
        *,
        websocket_compression: bool = False,
        max_queued_bytes: int = 0,
        connect_within_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """``max_queued_bytes``, ``connect_within_s``: a websocket whose unsent packets
        hold more bytes, or that has not connected to the namespace within that many
        seconds of opening, is dropped (0: no bound; ``engineio_websocket.install``)."""
        super().__init__(async_handlers=False, serializer=StrictPacket, **kwargs)
        engineio_websocket.install(
            self.eio,
            compress=websocket_compression,
            max_queued_bytes=max_queued_bytes,
            admitted=self._connected,
            admit_within_s=connect_within_s,
            dropped=self.dropped,
        )

    def _connected(self, eio_sid: str) -> bool:
        return self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None

    def dropped(self, eio_sid: str, why: str) -> None:
        """The websocket ``eio_sid`` was dropped (``why``: "slow consumer", "not
        admitted", "ping timeout", "malformed packet"); its disconnect handlers run
        as it closes."""

    def answer(self, sid: str, ack_id: int, result: Any) -> None:
        """Send the client the ack ``ack_id`` for what its handler returned."""
        raise NotImplementedError

    async def refuse(self, sid: str, eio_sid: str, ack_id: int | None, reason: str) -> None:
        """A packet from ``sid`` did not decode (``reason``): answer its ack, if it
        asked for one, else end its connection (``eio_sid``): it cannot be told."""
        raise NotImplementedError

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
        if isinstance(data[0], Undecodable):
            await self.refuse(sid, eio_sid, id, data[0].reason)
            return
        result = await server._trigger_event(data[0], namespace, sid, *data[1:])
        if id is None or result is self.not_handled:
            return
        self.answer(sid, id, result)
