"""A lean Socket.IO v5 / Engine.IO v4 client over aiohttp websockets, for load generation.

It measures nothing itself. It exists because python-socketio's ``AsyncClient``
spends more CPU per event than a generator sharing two cores with the hub can
afford. It speaks only what the load needs: the default namespace, the
websocket transport (``GET /socket.io/?EIO=4&transport=websocket``), text
packets (no binary attachments), events with and without acks, and answers to
the server's pings:

- server ``0{open}``; client ``40{"token": ...}``; server ``40{"sid"}`` or
  ``44{connect error}``;
- events ``42["name", data]``, with an ack id ``42<id>["name", data]``;
  acks from the server ``43<id>[data]``;
- server ping ``2``, client pong ``3``; ``41`` or ``1`` ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the loadtest extra
    orjson = None  # type: ignore[assignment]

if TYPE_CHECKING:
    # Text frames arrive as bytes (``decode_text=False``): orjson parses them as they are.
    WebSocket = aiohttp.ClientWebSocketResponse[Literal[False]]

Handler = Callable[[Any], object]
AckCallback = Callable[[Any], object]

CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 10.0
TEXT = aiohttp.WSMsgType.TEXT
_DIGITS = frozenset(b"0123456789")


def dumps(value: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    return orjson.loads(data) if orjson is not None else json.loads(data)


class ConnectRefused(Exception):
    """The hub answered the Socket.IO connect with ``44``: ``data`` is ``{code, message}``."""

    def __init__(self, data: Any) -> None:
        super().__init__(f"connect refused: {data!r}")
        self.data = data


class ProtocolError(Exception):
    """The server sent something this client does not expect."""


class WireClient:
    """One Socket.IO connection; handlers and ack callbacks run in the reader task.

    ``abort()`` drops the TCP connection without a close frame, as a lost
    network would. Pending acks are then never called (``call`` times out);
    ``on_close`` runs when the connection has ended, however it ended.
    """

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
        self._ws: WebSocket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {}
        self._acks: dict[int, AckCallback] = {}
        self._next_id = 0
        self.sid: str | None = None
        self.on_close: Callable[[], None] | None = None
        # Called with every event's name and payload, known to ``on`` or not (before its handler).
        self.on_any: Callable[[str, Any], object] | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and self.sid is not None

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    def on(self, event: str, handler: Handler) -> None:
        self._handlers[event] = handler

    async def connect(self, token: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
        """Open the websocket and the default namespace; the sid, or ``ConnectRefused``."""
        async with asyncio.timeout(timeout_s):
            ws = await self._http.ws_connect(self._url, autoping=True, decode_text=False)
            self._ws = ws
            try:
                await self._expect_open(ws)
                await ws.send_frame(b"40" + dumps({"token": token}), TEXT)
                self.sid = await self._expect_connect(ws)
            except BaseException:
                await ws.close()
                raise
        self._acks.clear()
        self._reader = asyncio.create_task(self._read(ws))
        return self.sid

    async def emit(self, event: str, data: Any, on_ack: AckCallback | None = None) -> None:
        """Send an event; ``on_ack(payload)`` runs when the server's ack arrives."""
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError(f"cannot send {event!r}: not connected")
        head = b"42"
        if on_ack is not None:
            self._next_id += 1
            self._acks[self._next_id] = on_ack
            head += str(self._next_id).encode()
        await ws.send_frame(head + dumps([event, data]), TEXT)

    async def call(self, event: str, data: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """Send an event and wait for its ack payload."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(payload: Any) -> None:
            if not future.done():
                future.set_result(payload)

        await self.emit(event, data, done)
        async with asyncio.timeout(timeout_s):
            return await future

    def abort(self) -> None:
        """Drop the connection at once, without a close frame."""
        ws = self._ws
        self.sid = None
        sock = ws.get_extra_info("socket") if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        """Leave the namespace and close the websocket."""
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.send_frame(b"41", TEXT)
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.sid = None

    async def _expect_open(self, ws: WebSocket) -> None:
        data = await self._receive_text(ws)
        if not data.startswith(b"0"):
            raise ProtocolError(f"expected the Engine.IO open packet '0{{...}}', got {data[:80]!r}")

    async def _expect_connect(self, ws: WebSocket) -> str:
        while True:
            data = await self._receive_text(ws)
            if data == b"2":
                await ws.send_frame(b"3", TEXT)
            elif data.startswith(b"40"):
                sid: str = loads(data[2:])["sid"]
                return sid
            elif data.startswith(b"44"):
                raise ConnectRefused(loads(data[2:]))
            else:
                raise ProtocolError(f"expected '40' or '44' after connecting, got {data[:80]!r}")

    @staticmethod
    async def _receive_text(ws: WebSocket) -> bytes:
        msg = await ws.receive()
        if msg.type is not TEXT:
            raise ProtocolError(f"expected a text frame, got {msg.type.name}: {msg.data!r}")
        data: bytes = msg.data
        return data

    async def _read(self, ws: WebSocket) -> None:
        try:
            async for msg in ws:
                if msg.type is TEXT:
                    if msg.data == b"2":
                        await ws.send_frame(b"3", TEXT)
                    elif msg.data[:1] == b"4":
                        self._socketio(msg.data)
                    elif msg.data[:1] == b"1":
                        break
        except (ConnectionError, aiohttp.ClientError):
            pass
        finally:
            self.sid = None
            self._acks.clear()
            if not ws.closed:
                await ws.close()
            if self.on_close is not None:
                self.on_close()

    def _socketio(self, data: bytes) -> None:
        kind = data[1:2]
        end = 2
        while end < len(data) and data[end] in _DIGITS:
            end += 1
        if kind == b"2":
            name, *args = loads(data[end:])
            if self.on_any is not None:
                self.on_any(name, args[0] if args else None)
            handler = self._handlers.get(name)
            if handler is not None:
                handler(args[0] if args else None)
        elif kind == b"3":
            callback = self._acks.pop(int(data[2:end]), None)
            if callback is not None:
                args = loads(data[end:])
                callback(args[0] if args else None)
        elif kind == b"1":
            self.sid = None
