"""Engine.IO's websocket transport on aiohttp, without a task and a timer per packet.

python-engineio's websocket loop reads each packet through a new task wrapped
in ``asyncio.wait_for`` (a timer), its writer waits for each batch of packets
the same way, and its aiohttp driver asks ``inspect`` on every send whether
``send_str`` is a coroutine function. At the hub's load that per-packet
machinery cost more than the hub's own validation (``docs/benchmarks.md``,
fourth pass). This driver runs the same protocol as plain awaits.

The timeouts those waits carried are kept by other means. A peer that stops
answering pings is closed by Engine.IO's own service task (the ping timeout);
a timer per connection sees that and ends the writer, which closes the
websocket, which ends the read. Oversized messages are refused by aiohttp
(``max_msg_size``) and checked again here, as Engine.IO does.

It is installed per server (``install``) through Engine.IO's driver table, the
seam Engine.IO gives each async framework, and relies on python-engineio 4
internals (``AsyncSocket`` fields, ``receive``, ``close``), pinned by
``tests/test_internals.py``; the socket tests run every event through it.

``enqueue`` and ``open_sockets`` are the other two places the hub reaches into
an Engine.IO server: a socket's send queue, and its table of sockets.

``install`` also gives the server's sockets a ``SendQueue`` (through
``create_queue``, Engine.IO's own hook for the queue of its async mode): the
part of ``asyncio.Queue`` Engine.IO and this driver use, in about a third of
its memory, which every connection holds for its whole life.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web
from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket
from engineio.packet import Packet

log = logging.getLogger(__name__)


def enqueue(eio: Any, eio_sid: str, packet: Packet) -> bool:
    """Put ``packet`` on the send queue of ``eio``'s socket ``eio_sid``, where
    python-socketio's own sends end; False if that socket is gone or closed."""
    socket = eio.sockets.get(eio_sid)
    if socket is None or socket.closed:
        return False
    socket.queue.put_nowait(packet)
    return True


def open_sockets(eio: Any) -> int:
    """How many Engine.IO sockets ``eio`` holds (connected or closing)."""
    return len(eio.sockets)


def install(eio: Any, *, compress: bool = False) -> None:
    """Serve ``eio``'s websocket connections with this driver, each socket with a
    ``SendQueue`` (this server only); ``compress``: accept a client's
    permessage-deflate offer (browsers make one), and compress every frame sent to it."""
    if eio.async_mode == "aiohttp":
        eio._async = {**eio._async, "websocket": WebSocket}
        eio.websocket_compression = compress  # read by each WebSocket
        eio.create_queue = SendQueue


class SendQueue:
    """An unbounded FIFO with the part of ``asyncio.Queue``'s interface Engine.IO's
    sockets and this driver use, and its semantics: ``get`` waits, a cancelled
    ``get`` takes nothing (and passes a wake-up it got on), ``join`` waits until
    every item put was ``task_done``.

    An ``asyncio.Queue`` is three deques and an Event (four more deque blocks):
    3.3 KB, a tenth of an idle connection's memory (tracemalloc). This keeps one
    deque, and makes the list of waiting getters and the Event of ``join`` only
    when they are needed.
    """

    __slots__ = ("_finished", "_getters", "_items", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._finished: asyncio.Event | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._unfinished += 1
        if self._finished is not None:
            self._finished.clear()
        self._wake_a_getter()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case it was not woken
                if getter in self._getters:
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    self._wake_a_getter()  # woken, then cancelled: the item is another's
                raise
        return self._items.popleft()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        if self._unfinished > 0:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()

    def _wake_a_getter(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class WebSocket:
    """Engine.IO's websocket driver interface: called with the request's environ."""

    def __init__(self, handler: Any, server: Any) -> None:
        # ``handler`` is the socket's own ``_websocket_handler``: run ours on its socket.
        self.socket: AsyncSocket = handler.__self__
        self.server = server
        self.ws = web.WebSocketResponse(
            max_msg_size=server.max_http_buffer_size,
            compress=getattr(server, "websocket_compression", False),
        )
        self._watchdog: asyncio.TimerHandle | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        await self.ws.prepare(environ["aiohttp.request"])
        socket = self.socket
        if socket.connected:
            # An upgrade from long-polling: the handshake, then the same loop.
            if not await self._upgrade():
                return self.ws
        else:
            socket.connected = True
            socket.upgraded = True
        writer = asyncio.create_task(self._write())
        self._watch()
        try:
            await self._read()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            await socket.queue.put(None)  # the writer sends what is queued, then ends
            try:
                await writer
            finally:
                # Also when aiohttp cancels this handler because the connection is
                # gone: the disconnect handlers must still run.
                await socket.close(
                    wait=False, abort=True, reason=socket.server.reason.TRANSPORT_CLOSE
                )
        return self.ws

    def _watch(self) -> None:
        """Once Engine.IO has closed the socket (its ping timeout queues no CLOSE
        packet), end the writer, which closes the websocket and so ends the read.
        Checked every ping interval + timeout, the longest the stock loop waited for
        a packet: one timer per connection instead of one per packet."""
        if self.socket.closed:
            self.socket.queue.put_nowait(None)
            return
        period = self.server.ping_interval + self.server.ping_timeout
        self._watchdog = asyncio.get_running_loop().call_later(period, self._watch)

    async def _upgrade(self) -> bool:
        """Engine.IO's probe: PING "probe" answered with PONG "probe", then UPGRADE."""
        socket = self.socket
        socket.upgrading = True  # sends wait on the polling side meanwhile
        try:
            probe = await self._receive()
            if probe is None or (probe.packet_type, probe.data) != (packet.PING, "probe"):
                return False
            await self._send(packet.Packet(packet.PONG, data="probe").encode())
            await socket.queue.put(packet.Packet(packet.NOOP))  # ends the pending poll
            upgrade = await self._receive()
            if upgrade is None or upgrade.packet_type != packet.UPGRADE:
                socket.upgraded = False
                return False
            socket.upgraded = True
            return True
        finally:
            socket.upgrading = False

    async def _receive(self) -> packet.Packet | None:
        """The next Engine.IO packet, or None once the websocket closed or failed."""
        try:
            message = await self.ws.receive()
        except Exception:
            return None
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        if len(message.data) > self.server.max_http_buffer_size:
            return None  # aiohttp refuses these first; Engine.IO's own limit too
        try:
            received = packet.Packet(encoded_packet=message.data)
        except Exception:  # garbage: no type digit, a bad payload
            received = None
        if received is None or not 0 <= received.packet_type < len(packet.packet_names):
            # The client's fault, not the hub's: close its connection, log no error.
            log.info("%s: malformed Engine.IO packet; closing", self.socket.sid)
            return None
        return received

    async def _read(self) -> None:
        socket = self.socket
        while (received := await self._receive()) is not None:
            try:
                await socket.receive(received)
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                return
            except Exception:
                log.exception("%s: Engine.IO receive failed", socket.sid)

    async def _write(self) -> None:
        """Send what the socket queues, a batch per wake-up, until None is queued or
        the server closed the socket; then close the websocket."""
        socket, queue = self.socket, self.socket.queue
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                for _ in batch:
                    queue.task_done()  # ``close(wait=True)`` joins the queue
                for item in batch:
                    if item is None:
                        return
                    await self._send(item.encode())
                if socket.closed:  # by the server: ping timeout, disconnect
                    return
        except Exception:
            return  # the peer is gone; the read ends with the websocket
        finally:
            await self.ws.close()

    async def _send(self, encoded: str | bytes) -> None:
        if isinstance(encoded, bytes):
            await self.ws.send_bytes(encoded)
        else:
            await self.ws.send_str(encoded)
