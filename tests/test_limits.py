"""Connection limits (hardening issue, finding 6), from outside: a real hub on loopback,
stock and raw clients.

On main at 6746844 a peer that stopped answering pings was closed after 70-140 s
against a configured 45 s; a tutor that never read was buffered without bound;
connections that never joined, and any number of them from one address, were
held for good; half-sent HTTP requests were held for the keep-alive's 75 s; a
100 KB bearer token logged an ERROR with a traceback (and an excerpt of the token).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from typing import Any

import aiohttp
import pytest

from realtime.gateway.gateway import JOIN_TIMEOUT
from realtime.internals.engineio_websocket import PONG_GRACE_S
from tests.conftest import Hub, HubFactory
from tests.processes import HubProcess, start_hub
from tests.support import eventually
from tests.test_canvas import live_session, new_session
from tests.test_sockets import make_session

SOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"


def ws_url(hub: Hub) -> str:
    return hub.url.replace("http://", "ws://") + SOCKET_PATH


class RawWebSocket:
    """A websocket client on a plain socket, so a test decides when (and whether) it
    reads: aiohttp's and python-socketio's clients read whatever arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str, receive_buffer: int = 4096) -> RawWebSocket:
        host_port, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        if len(data) < 126:
            header = bytes([0x81, 0x80 | len(data)])
        else:
            header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.writer.write(header + mask + masked)

    async def receive(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (the server does not fragment these)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), 5)

    async def text(self) -> str:
        """The next text frame, answering pings on the way."""
        while True:
            opcode, payload = await self.receive()
            assert opcode == 1, (opcode, payload)
            if payload != b"2":
                return payload.decode()
            self.send("3")

    async def closed_within(self, seconds: float) -> float:
        """Read until the server ends the connection; how long that took (fails past
        ``seconds``)."""
        started = time.monotonic()
        async with asyncio.timeout(seconds):
            while await self.reader.read(65536):
                pass
        return time.monotonic() - started

    def close(self) -> None:
        self.writer.close()


async def socketio_connect(raw: RawWebSocket, token: str) -> None:
    assert (await raw.text()).startswith("0")  # Engine.IO open
    raw.send("40" + json.dumps({"token": token}))
    assert (await raw.text()).startswith("40{")


async def test_a_peer_that_stops_answering_pings_is_closed_within_seconds_of_the_setting(
    make_hub: HubFactory,
) -> None:
    """The deadline is the PING's time + ping_timeout (+ PONG_GRACE_S). The stock timers
    took up to a ping timeout more to see it, and the driver's check another interval
    + timeout: here 7 s after the PING where the setting says 3."""
    interval, timeout = 1.0, 3.0
    hub = await make_hub(ping_interval_s=interval, ping_timeout_s=timeout, presence_grace_s=0)
    session_id, tutor, _ = await live_session(hub, students=("s1", "s2"))
    async with hub.http.ws_connect(ws_url(hub), autoping=True) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0")
        await ws.send_str("40" + json.dumps({"token": hub.tokens("s3", "STUDENT")}))
        assert (await ws.receive_str(timeout=5)).startswith("40")
        # From here on the peer reads but never answers Engine.IO's pings ("2").
        assert await ws.receive_str(timeout=5) == "2"
        pinged = time.monotonic()
        message = await ws.receive(timeout=15)
        closed_after = time.monotonic() - pinged
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    assert timeout <= closed_after <= timeout + PONG_GRACE_S + 1.0, closed_after
    await eventually(lambda: len(hub.gateway().members) == 3, what="the socket gone")
    assert tutor.sio.connected and session_id


async def test_a_tutor_that_stops_reading_is_dropped_not_buffered(make_hub: HubFactory) -> None:
    hub = await make_hub(max_queued_bytes=64 * 1024, canvas_max_patch_bytes=64 * 1024)
    session_id = await new_session(hub, ("s1",))
    student = await hub.connect("s1", "STUDENT")
    assert (await student.join(session_id))["ok"]
    tutor = await RawWebSocket.open(ws_url(hub))
    await socketio_connect(tutor, hub.tokens("tutor-1", "TUTOR"))
    tutor.send("421" + json.dumps(["session:join", {"session_id": session_id}]))
    while not (await tutor.text()).startswith("431"):
        pass
    gateway = hub.gateway()
    assert len(gateway.members) == 2
    # The tutor reads no more. 20 KB strokes, each replacing the last (the canvas stays
    # small): the kernel's buffers fill, then the hub's queue passes its bound.
    points = [[n % 800, n % 600] for n in range(2_000)]
    for n in range(400):
        value = {"type": "stroke", "n": n, "points": points}
        ops = [{"op": "add", "path": "/elements/e1", "value": value}]
        ack = await student.call("canvas:patch", {"session_id": session_id, "ops": ops})
        assert ack["ok"], ack
        if len(gateway.members) == 1:
            break
    await eventually(lambda: len(gateway.members) == 1, what="the tutor dropped")
    dropped = hub.metric("hub_dropped_connections_total", why="slow_consumer")
    assert dropped == 1, dropped
    assert await tutor.closed_within(5) >= 0  # its transport is closed, not left open
    tutor.close()
    # The student goes on, and a tutor who reads gets everything from the database.
    ops = [{"op": "remove", "path": "/elements/e1"}]
    ack = await student.call("canvas:patch", {"session_id": session_id, "ops": ops})
    assert ack["ok"], ack
    again = await hub.connect("tutor-1", "TUTOR")
    joined = await again.join(session_id)
    assert joined["ok"] and joined["canvases"]["s1"]["seq"] == ack["seq"], joined["canvases"]


async def test_a_connection_that_joins_no_session_in_time_is_told_and_closed(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(join_deadline_s=1.0)
    session_id = await make_session(hub)
    idle = await hub.connect("tutor-1", "TUTOR")
    joined = await hub.connect("tutor-1", "TUTOR")
    assert (await joined.join(session_id))["ok"]
    await asyncio.wait_for(idle.disconnected.wait(), 5)
    assert idle.events("hub:closing") == [
        {"code": JOIN_TIMEOUT, "message": "no session joined within 1 s of connecting"}
    ]
    await asyncio.sleep(0.5)
    assert joined.sio.connected
    assert (await joined.call("session:leave", {"session_id": session_id}))["ok"]
    # A websocket that never even connects to Socket.IO is dropped too (1008).
    raw = await RawWebSocket.open(ws_url(hub))
    assert (await raw.text()).startswith("0")
    opcode, payload = await raw.receive()
    assert (opcode, payload[2:]) == (8, b"not admitted"), (opcode, payload)
    assert int.from_bytes(payload[:2], "big") == 1008
    raw.close()
    assert hub.metric("hub_dropped_connections_total", why="join_timeout") == 1
    assert hub.metric("hub_dropped_connections_total", why="not_admitted") == 1


async def test_one_address_holds_at_most_so_many_socket_connections(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(max_connections_per_address=2)
    first = await hub.connect("tutor-1", "TUTOR")
    await hub.connect("tutor-1", "TUTOR")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.http.ws_connect(ws_url(hub))
    assert refused.value.status == 429
    async with hub.http.get(hub.url + "/socket.io/?EIO=4&transport=polling") as response:
        body = await response.json()
    assert response.status == 429, body
    assert body["errorCode"] == "RATE_LIMITED", body
    await first.sio.disconnect()
    await eventually(lambda: len(hub.gateway().members) == 1, what="one closed")
    third = await hub.connect("tutor-1", "TUTOR")
    assert third.sio.connected
    # X-Forwarded-For is not believed from an address that is not a trusted proxy.
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await hub.http.ws_connect(ws_url(hub), headers={"X-Forwarded-For": "10.0.0.9"})
    assert hub.metric("hub_refused_connections_total", limit="address_limit") == 3


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(max_connections_per_address=1, trusted_proxies=["127.0.0.1"])
    held = [
        await hub.http.ws_connect(ws_url(hub), headers={"X-Forwarded-For": address})
        for address in ("10.0.0.1", "10.0.0.2", "198.51.100.7, 10.0.0.3")
    ]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.http.ws_connect(ws_url(hub), headers={"X-Forwarded-For": "10.0.0.2"})
    assert refused.value.status == 429
    for ws in held:
        await ws.close()


async def test_a_request_body_that_does_not_arrive_in_time_is_a_408(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(http_body_timeout_s=0.5)
    host, port = hub.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    token = hub.tokens("tutor-1", "TUTOR")
    writer.write(
        f"POST /api/v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"title"'.encode()
    )
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body)["errorCode"] == "REQUEST_TIMEOUT", body


@pytest.fixture
def strict_hub_process(tmp_path: Any) -> Any:
    secret = "limits-test-secret-" + "x" * 32
    hub = start_hub(tmp_path, secret, settings={"HUB_HTTP_HEADER_TIMEOUT_S": "1"})
    try:
        yield hub
    finally:
        if hub.process.returncode is None:
            hub.stop()


async def test_half_sent_requests_are_closed_after_the_header_timeout(
    strict_hub_process: HubProcess,
) -> None:
    host, port = strict_hub_process.url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
    started = time.monotonic()
    for _, writer in connections:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never done
    for reader, writer in connections:
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert time.monotonic() - started < 3


async def test_a_header_too_large_logs_one_line_without_a_traceback_or_the_token(
    strict_hub_process: HubProcess,
) -> None:
    host, port = strict_hub_process.url.removeprefix("http://").split(":")
    secret = "zq" * 50_000  # a 100 KB bearer token
    for _ in range(5):
        reader, writer = await asyncio.open_connection(host, int(port))
        authorization = f"Authorization: Bearer {secret}\r\n"
        writer.write(f"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\n{authorization}\r\n".encode())
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.0 400")
        writer.close()
    await asyncio.sleep(0.2)
    log = strict_hub_process.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert "zqzq" not in log
    assert log.count("malformed HTTP request (400 LineTooLong)") == 1, log[-3000:]
