"""Engine.IO's websocket transport on aiohttp, without a task and a timer per packet.

python-engineio's websocket loop reads each packet through a new task wrapped
in ``asyncio.wait_for`` (a timer), its writer waits for each batch of packets
the same way, and its aiohttp driver asks ``inspect`` on every send whether
``send_str`` is a coroutine function. At the hub's load that per-packet
machinery cost more than the hub's own validation (``docs/benchmarks.md``,
fourth pass). This driver runs the same protocol as plain awaits.

The timeouts those waits carried are kept by other means: one timer per
connection (``_watch``). A peer whose PONG has not come ``ping_timeout`` (plus
``PONG_GRACE_S``) after its PING is closed then: Engine.IO's own service task
visits each socket once per ``ping_timeout``, and with the stock timer it
took 70-140 s to close a silent peer under a 45 s setting. Oversized messages
are refused by aiohttp (``max_msg_size``) and checked again here, as Engine.IO
does.

Two more limits (``install``): a socket whose unsent packets pass
``max_queued_bytes`` (a client that stopped reading, or reads slower than it
is sent to) is dropped: what it had queued is discarded, the websocket closed
with 1008 and its transport aborted ``CLOSE_GRACE_S`` later; it can reconnect
and resume. And a socket not ``admitted`` (by the server that installed this)
within ``admit_within_s`` of opening is closed the same way.

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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket
from engineio.packet import Packet

from realtime.base.logbudget import LogBudget

log = logging.getLogger(__name__)
# Malformed packets are the client's doing: a line every 10 s at most, whoever sends them.
_malformed = LogBudget(log)

# How long past the ping timeout a PONG may still come (a busy loop reads late).
PONG_GRACE_S = 1.0
# How long a socket the server drops may take to send its close before its
# transport is aborted (a peer that does not read never takes it).
CLOSE_GRACE_S = 2.0


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


def install(
    eio: Any,
    *,
    compress: bool = False,
    max_queued_bytes: int = 0,
    admitted: Callable[[str], bool] | None = None,
    admit_within_s: float = 0.0,
    dropped: Callable[[str, str], None] | None = None,
) -> None:
    """Serve ``eio``'s websocket connections with this driver, each socket with a
    ``SendQueue`` (this server only).

    ``compress``: accept a client's permessage-deflate offer (browsers make one),
    and compress every frame sent to it. ``max_queued_bytes`` (0: no bound): drop
    a socket whose unsent packets hold more. ``admitted(sid)``: whether the socket
    ``sid`` may stay, asked ``admit_within_s`` after it opened (0: never).
    ``dropped(sid, why)`` is told of each socket dropped by these limits, the ping
    timeout or a malformed packet (``why``: "slow consumer", "not admitted", "ping
    timeout", "malformed packet"); without it, malformed packets are logged here."""
    if eio.async_mode == "aiohttp":
        eio._async = {**eio._async, "websocket": WebSocket}
        eio.create_queue = SendQueue
        # Read by each WebSocket.
        eio.hub_limits = Limits(compress, max_queued_bytes, admitted, admit_within_s, dropped)


class Limits:
    """What ``install`` was given, for each ``WebSocket`` of the server."""

    __slots__ = ("admit_within_s", "admitted", "compress", "dropped", "max_queued_bytes")

    def __init__(
        self,
        compress: bool,
        max_queued_bytes: int,
        admitted: Callable[[str], bool] | None,
        admit_within_s: float,
        dropped: Callable[[str, str], None] | None,
    ) -> None:
        self.compress = compress
        self.max_queued_bytes = max_queued_bytes
        self.admitted = admitted
        self.admit_within_s = admit_within_s
        self.dropped = dropped


NO_LIMITS = Limits(False, 0, None, 0.0, None)


class SendQueue:
    """An unbounded FIFO with the part of ``asyncio.Queue``'s interface Engine.IO's
    sockets and this driver use, and its semantics: ``get`` waits, a cancelled
    ``get`` takes nothing (and passes a wake-up it got on), ``join`` waits until
    every item put was ``task_done``.

    An ``asyncio.Queue`` is three deques and an Event (four more deque blocks):
    3.3 KB, a tenth of an idle connection's memory (tracemalloc). This keeps one
    deque, and makes the list of waiting getters and the Event of ``join`` only
    when they are needed.

    It also counts the bytes of the packets it holds: once those behind the next
    one to send pass ``limit`` (so one large packet, a join's canvases, always
    passes), ``overflow`` is called, once.
    """

    __slots__ = (
        "_bytes",
        "_finished",
        "_getters",
        "_items",
        "_unfinished",
        "limit",
        "overflow",
    )

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._finished: asyncio.Event | None = None
        self._bytes = 0
        self.limit = 0  # no bound
        self.overflow: Callable[[], None] | None = None

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._bytes += _size(item)
        self._unfinished += 1
        if self._finished is not None:
            self._finished.clear()
        self._wake_a_getter()
        if self.limit and self._bytes > self.limit and self.overflow is not None:
            if self._bytes - _size(self._items[0]) > self.limit:
                overflow, self.overflow = self.overflow, None
                overflow()

    def discard(self) -> None:
        """Drop every packet queued (as taken and done)."""
        self._unfinished -= len(self._items)
        self._items.clear()
        self._bytes = 0
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._taken()

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
        return self._taken()

    def _taken(self) -> Any:
        item = self._items.popleft()
        self._bytes -= _size(item)
        return item

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


def _size(item: Any) -> int:
    """About the bytes a queued Engine.IO packet will take on the wire."""
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 0


class WebSocket:
    """Engine.IO's websocket driver interface: called with the request's environ."""

    def __init__(self, handler: Any, server: Any) -> None:
        # ``handler`` is the socket's own ``_websocket_handler``: run ours on its socket.
        self.socket: AsyncSocket = handler.__self__
        self.server = server
        self.limits: Limits = getattr(server, "hub_limits", NO_LIMITS)
        self.ws = web.WebSocketResponse(
            max_msg_size=server.max_http_buffer_size, compress=self.limits.compress
        )
        self._request: web.BaseRequest | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._admission: asyncio.TimerHandle | None = None
        # Why the hub drops this socket (None: it has not): the writer's close code.
        self._dropped: str | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        self._request = environ["aiohttp.request"]
        await self.ws.prepare(self._request)
        socket = self.socket
        if socket.connected:
            # An upgrade from long-polling: the handshake, then the same loop.
            if not await self._upgrade():
                return self.ws
        else:
            socket.connected = True
            socket.upgraded = True
        if isinstance(socket.queue, SendQueue) and self.limits.max_queued_bytes:
            socket.queue.limit = self.limits.max_queued_bytes
            socket.queue.overflow = lambda: self._drop("slow consumer")
        if self.limits.admitted is not None and self.limits.admit_within_s > 0:
            self._admission = asyncio.get_running_loop().call_later(
                self.limits.admit_within_s, self._admit
            )
        writer = asyncio.create_task(self._write())
        self._watch()
        try:
            await self._read()
        finally:
            for timer in (self._watchdog, self._admission):
                if timer is not None:
                    timer.cancel()
            await socket.queue.put(None)  # the writer sends what is queued, then ends
            try:
                await writer
            finally:
                # Also when aiohttp cancels this handler because the connection is
                # gone: the disconnect handlers must still run.
                reason = socket.server.reason
                why = reason.PING_TIMEOUT if self._dropped == "ping timeout" else None
                await socket.close(wait=False, abort=True, reason=why or reason.TRANSPORT_CLOSE)
        return self.ws

    def _watch(self) -> None:
        """End the connection once Engine.IO closed the socket, or once the PONG to
        its PING is ``ping_timeout`` + ``PONG_GRACE_S`` late. One timer per
        connection, due at that deadline while a PING waits for its PONG, else after
        the shorter of the ping interval and timeout (the next PING goes out within
        the interval), so a silent peer is closed within seconds of the deadline."""
        socket = self.socket
        if socket.closed:
            self._end()
            # A peer that does not read never takes the CLOSE Engine.IO queued.
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._abort)
            return
        interval, timeout = self.server.ping_interval, self.server.ping_timeout
        wait = min(interval, timeout)
        sent = socket.last_ping  # set when a PING is queued, None once its PONG came
        if sent is not None:
            late = time.time() - (sent + timeout + PONG_GRACE_S)
            if late >= 0:
                self._drop("ping timeout")
                return
            wait = min(wait, -late)
        self._watchdog = asyncio.get_running_loop().call_later(wait, self._watch)

    def _admit(self) -> None:
        self._admission = None
        admitted = self.limits.admitted
        if admitted is not None and not self.socket.closed and not admitted(self.socket.sid):
            self._drop("not admitted")

    def _drop(self, why: str) -> None:
        """Drop the connection: discard what is queued for it, close the websocket
        (1008, ``why``) and abort the transport if that has not ended it soon."""
        if self._dropped is not None:
            return
        self._dropped = why
        if self.limits.dropped is not None:
            self.limits.dropped(self.socket.sid, why)
        if isinstance(self.socket.queue, SendQueue):
            self.socket.queue.discard()
        self._end()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._abort)

    def _end(self) -> None:
        """End the writer, which closes the websocket and so ends the read."""
        self.socket.queue.put_nowait(None)

    def _abort(self) -> None:
        transport = self._request.transport if self._request is not None else None
        if transport is not None:
            transport.abort()

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
            if self.limits.dropped is not None:
                self.limits.dropped(self.socket.sid, "malformed packet")
            else:
                _malformed.log(logging.INFO, "%s: malformed Engine.IO packet", self.socket.sid)
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
            if socket.closed:  # the client's CLOSE packet: end the connection now
                return

    async def _write(self) -> None:
        """Send what the socket queues, one packet at a time (what waits for a slow
        peer stays counted in the queue), until None is queued or the server closed
        the socket; then close the websocket."""
        socket, queue = self.socket, self.socket.queue
        try:
            while (item := await queue.get()) is not None:
                queue.task_done()  # ``close(wait=True)`` joins the queue
                await self._send(item.encode())
                if socket.closed and queue.empty():  # by the server: a disconnect
                    return
            queue.task_done()
        except Exception:
            return  # the peer is gone; the read ends with the websocket
        finally:
            if self._dropped is None:
                await self.ws.close()
            else:
                await self.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=self._dropped.encode()
                )

    async def _send(self, encoded: str | bytes) -> None:
        if isinstance(encoded, bytes):
            await self.ws.send_bytes(encoded)
        else:
            await self.ws.send_str(encoded)
