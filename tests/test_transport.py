"""The hub's Engine.IO websocket driver (``realtime.transport``), from outside: stock
and raw clients against a real hub on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import HubFactory
from tests.support import Client, eventually
from tests.test_sockets import make_session


async def test_a_client_that_starts_on_long_polling_upgrades_and_is_served(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub()
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = Client()
    # python-socketio's default: long-polling first, then the websocket upgrade.
    await student.sio.connect(hub.url, auth={"token": hub.tokens("s1", "STUDENT")}, wait_timeout=5)
    hub.clients.append(student)
    await eventually(lambda: student.sio.transport() == "websocket", what="the upgrade")
    assert (await student.join(session_id))["ok"] is True
    online = await eventually(lambda: tutor.events("presence:update"), what="online")
    assert online[0]["student_id"] == "s1"
    ack = await student.call(
        "exercise:progress", {"session_id": session_id, "exercise_id": "ex1", "progress_pct": 40}
    )
    assert ack == {"ok": True}, ack


async def test_a_peer_that_stops_answering_pings_is_closed_and_goes_offline(
    make_hub: HubFactory,
) -> None:
    """Engine.IO's ping timeout closes the socket; the driver then closes the websocket
    (no read is left waiting on a silent peer) and the disconnect handlers run."""
    hub = await make_hub(ping_interval_s=1, ping_timeout_s=1, presence_grace_s=0)
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    url = hub.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    async def next_packet(ws: aiohttp.ClientWebSocketResponse) -> str:
        """The next packet but pings, which are answered while the peer sets up (a join
        on a loaded machine can take longer than the 1 s ping interval)."""
        while (data := await ws.receive_str(timeout=5)) == "2":
            await ws.send_str("3")
        return data

    async with hub.http.ws_connect(url, autoping=True) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0")  # Engine.IO open
        await ws.send_str("40" + json.dumps({"token": hub.tokens("s1", "STUDENT")}))
        assert (await next_packet(ws)).startswith("40")
        await ws.send_str("421" + json.dumps(["session:join", {"session_id": session_id}]))
        ack = await next_packet(ws)
        assert ack.startswith("431") and json.loads(ack[3:])[0]["ok"] is True, ack
        await eventually(lambda: tutor.events("presence:update"), what="online")
        # From here on the peer reads but never answers Engine.IO's pings ("2").
        seen = []
        while (message := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            seen.append(message.data)
            pinged = time.monotonic()
        closed_after = time.monotonic() - pinged
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    assert seen and set(seen) == {"2"}, seen  # pinged; a ping timeout sends no CLOSE packet
    # Closed by the heartbeat: ping timeout (1 s) + grace (1 s) after the unanswered PING,
    # 2.0 s here alone; the bound leaves room for a loaded CI machine (from the join to
    # close took 5.6 s once there, against 3.0 s alone).
    assert closed_after < 5, closed_after
    updates = await eventually(
        lambda: len(tutor.events("presence:update")) == 2 and tutor.events("presence:update"),
        what="offline",
    )
    assert updates[1]["student_id"] == "s1" and updates[1]["status"] == "offline"


async def test_many_events_from_many_sockets_arrive_whole_and_in_order(
    make_hub: HubFactory,
) -> None:
    """Each socket's acks come back in the order its events were sent, with nothing
    lost, while other sockets send at the same time (one writer batch per wake-up)."""
    hub = await make_hub(socket_events_per_s=10_000, socket_event_burst=10_000)
    session_id = await make_session(hub, students=("s1", "s2", "s3"))
    students = [await hub.connect(s, "STUDENT") for s in ("s1", "s2", "s3")]
    for student in students:
        assert (await student.join(session_id))["ok"] is True

    acks: list[Any] = []

    async def send(student: Client) -> list[int]:
        order: list[int] = []
        done = asyncio.get_running_loop().create_future()

        def acked(n: int, ack: Any) -> None:
            order.append(n)
            acks.append(ack)
            if len(order) == 200:
                done.set_result(None)

        for n in range(200):
            await student.sio.emit(
                "exercise:progress",
                {"session_id": session_id, "exercise_id": "ex1", "progress_pct": n % 101},
                callback=lambda ack, n=n: acked(n, ack),
            )
        await asyncio.wait_for(done, 10)
        return order

    orders = await asyncio.gather(*(send(s) for s in students))
    assert all(order == list(range(200)) for order in orders)
    assert all(ack == {"ok": True} for ack in acks), acks[:3]


async def test_a_malformed_engineio_packet_drops_only_its_sender(
    make_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hub = await make_hub()
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    url = hub.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    for garbage in ("x", "", "9nine"):
        async with hub.http.ws_connect(url) as ws:
            assert (await ws.receive_str(timeout=5)).startswith("0")
            await ws.send_str(garbage)
            message = await ws.receive(timeout=5)
            while message.type == aiohttp.WSMsgType.TEXT:  # a ping may come first
                message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), garbage
    assert tutor.sio.connected
    assert (await tutor.call("session:leave", {"session_id": session_id})) == {"ok": True}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # Counted each, logged once (a client cannot grow the log faster than a line in 10 s).
    assert hub.metric("hub_dropped_connections_total", why="malformed_packet") == 3
    lines = [r for r in caplog.records if "dropped: malformed packet" in r.getMessage()]
    assert len(lines) == 1, caplog.text


@pytest.mark.parametrize("compression", [False, True])
async def test_websocket_compression_is_taken_only_when_the_hub_allows_it(
    make_hub: HubFactory, compression: bool
) -> None:
    """A client that offers permessage-deflate (as browsers and the stock socket.io-client
    do) gets it only with ``HUB_WEBSOCKET_COMPRESSION``; either way it is served."""
    hub = await make_hub(websocket_compression=compression)
    url = hub.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with hub.http.ws_connect(url, compress=15) as ws:
        assert bool(ws.compress) is compression, ws.compress  # what the handshake settled
        assert (await ws.receive_str(timeout=5)).startswith("0")  # Engine.IO open
        await ws.send_str("40" + json.dumps({"token": hub.tokens("s1", "STUDENT")}))
        assert (await ws.receive_str(timeout=5)).startswith("40")


async def test_a_client_s_engineio_close_ends_its_websocket_at_once(
    make_hub: HubFactory,
) -> None:
    """Found by the fuzzing harness: after a client's CLOSE packet ("1") the websocket
    stayed open until the heartbeat noticed (the ping timeout, 45 s by default)."""
    hub = await make_hub()
    url = hub.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with hub.http.ws_connect(url) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0")
        await ws.send_str("40" + json.dumps({"token": hub.tokens("s1", "STUDENT")}))
        assert (await ws.receive_str(timeout=5)).startswith("40")
        await ws.send_str("1")
        started = time.monotonic()
        message = await ws.receive(timeout=10)
        while message.type == aiohttp.WSMsgType.TEXT:  # a packet already on its way
            message = await ws.receive(timeout=10)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    assert time.monotonic() - started < 2
    await eventually(lambda: len(hub.gateway().members) == 0, what="the socket gone")
