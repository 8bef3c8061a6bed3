"""The fence around library internals (realtime/internals/): each private attribute
and signature the hub relies on, pinned, and the start-up check of versions.

A library upgrade that moves one of these fails here, by name, instead of
misbehaving under load.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio
import socketio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket
from packaging.version import Version
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from socketio import packet as sio_packet

from realtime.bus.bus_redis import redis_client
from realtime.internals import LIBRARIES, check_versions, mismatches
from realtime.internals import engineio_websocket as driver
from realtime.internals.redis_connection import (
    connection_options,
    is_plain,
    script_sha,
    script_source,
    set_script_sha,
    without_retries,
)
from realtime.internals.socketio_dispatch import InlineDispatchServer, StrictPacket, Undecodable
from tests.processes import ROOT


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def source(function: object) -> str:
    return inspect.getsource(function)  # type: ignore[arg-type]


# -- python-engineio ------------------------------------------------------------


def test_engineio_server_has_the_driver_table_and_socket_registry() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    eio = sio.eio
    assert eio.async_mode == "aiohttp"
    assert "websocket" in eio._async, "the driver table moved: realtime/internals cannot install"
    assert eio.sockets == {}
    assert eio.reason.TRANSPORT_CLOSE
    for name in ("ping_interval", "ping_timeout", "max_http_buffer_size"):
        assert hasattr(eio, name), name
    driver.install(eio)
    assert eio._async["websocket"] is driver.WebSocket
    assert driver.open_sockets(eio) == 0


def test_engineio_socket_calls_the_driver_with_its_handler() -> None:
    # The driver takes the socket from the bound handler Engine.IO passes it.
    upgrade = source(AsyncSocket._upgrade_websocket)
    assert re.search(r"_async\[['\"]websocket['\"]\]\(\s*self\._websocket_handler", upgrade)
    assert parameters(AsyncSocket._websocket_handler) == ["self", "ws"]


def test_engineio_socket_fields_and_methods_the_driver_uses() -> None:
    init = source(AsyncSocket.__init__) + source(AsyncSocket.__mro__[1].__init__)
    for field in ("queue", "connected", "upgraded", "upgrading", "closed", "server", "sid"):
        assert f"self.{field} =" in init, field
    # The heartbeat timer reads when the PING waiting for its PONG was sent (None: none).
    assert "self.last_ping = time.time()" in source(AsyncSocket._send_ping)
    assert "self.last_ping = None" in source(AsyncSocket.schedule_ping)
    assert parameters(AsyncSocket.receive) == ["self", "pkt"]
    close = inspect.signature(AsyncSocket.close).parameters
    assert {"wait", "abort", "reason"} <= set(close), list(close)
    assert inspect.iscoroutinefunction(AsyncSocket.receive)
    assert inspect.iscoroutinefunction(AsyncSocket.close)


def test_engineio_sockets_take_their_queue_from_the_server_hook() -> None:
    # install() replaces the hook; every use Engine.IO makes of the queue, by name.
    assert "self.queue = self.server.create_queue()" in source(AsyncSocket.__mro__[1].__init__)
    used = set(re.findall(r"self\.queue\.(\w+)", inspect.getsource(AsyncSocket)))
    assert used <= {"get", "get_nowait", "put", "put_nowait", "task_done", "join"}, used
    server = InlineDispatchServer(async_mode="aiohttp")
    assert isinstance(server.eio.create_queue(), driver.SendQueue)


async def test_send_queue_is_fifo_and_get_waits_for_a_put() -> None:
    queue = driver.SendQueue()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("a")
    await queue.put("b")
    assert await getter == "a"
    assert (queue.qsize(), queue.empty()) == (1, False)
    assert queue.get_nowait() == "b"
    assert queue.empty()


async def test_send_queue_get_cancelled_takes_nothing_and_passes_its_wake_up_on() -> None:
    queue = driver.SendQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)  # Engine.IO's long-polling wait
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("x")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "x"
    assert first.cancelled()
    assert queue.empty()


async def test_send_queue_join_waits_for_every_task_done() -> None:
    queue = driver.SendQueue()
    await asyncio.wait_for(queue.join(), 1)  # nothing put: at once
    queue.put_nowait(1)
    queue.put_nowait(2)
    joined = asyncio.create_task(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many"):
        queue.task_done()


def test_engineio_packets_and_errors_the_driver_uses() -> None:
    ping = eio_packet.Packet(encoded_packet="2probe")
    assert (ping.packet_type, ping.data) == (eio_packet.PING, "probe")
    assert eio_packet.Packet(eio_packet.PONG, data="probe").encode() == "3probe"
    assert eio_packet.packet_names[eio_packet.UPGRADE] == "UPGRADE"
    assert eio_packet.NOOP < len(eio_packet.packet_names)
    assert eio_packet.Packet(eio_packet.MESSAGE, "2[]").encode() == "42[]"
    assert issubclass(eio_exceptions.UnknownPacketError, Exception)
    assert issubclass(eio_exceptions.SocketIsClosedError, Exception)


# -- python-socketio ------------------------------------------------------------


def test_socketio_dispatch_hooks_keep_their_signatures() -> None:
    assert parameters(socketio.AsyncServer._handle_event_internal) == [
        "self",
        "server",
        "sid",
        "eio_sid",
        "data",
        "namespace",
        "id",
    ]
    assert parameters(socketio.AsyncServer._trigger_event)[:3] == ["self", "event", "namespace"]
    assert "return self.not_handled" in source(socketio.AsyncServer._trigger_event)
    assert socketio.AsyncServer(async_mode="aiohttp").not_handled is not None
    # Without async handlers the event runs inline, through the overridden method.
    handle = source(socketio.AsyncServer._handle_event)
    assert "async_handlers" in handle and "_handle_event_internal(" in handle


async def test_socketio_manager_room_registry() -> None:
    assert parameters(socketio.AsyncManager.get_participants) == ["self", "namespace", "room"]
    assert parameters(socketio.AsyncManager.eio_sid_from_sid) == ["self", "sid", "namespace"]
    manager = socketio.AsyncManager()
    manager.set_server(socketio.AsyncServer(async_mode="aiohttp"))
    manager.initialize()
    sid = await manager.connect("eio-1", "/")
    await manager.enter_room(sid, "/", "room-a")
    assert list(manager.get_participants("/", "room-a")) == [(sid, "eio-1")]
    assert manager.eio_sid_from_sid(sid, "/") == "eio-1"
    assert manager.sid_from_eio_sid("eio-1", "/") == sid  # the driver's admission check
    assert manager.sid_from_eio_sid("eio-2", "/") is None


def test_inline_dispatch_server_installs_the_driver_and_the_strict_packet() -> None:
    server = InlineDispatchServer(async_mode="aiohttp")
    assert server.async_handlers is False
    assert server.eio._async["websocket"] is driver.WebSocket
    assert server.packet_class is StrictPacket  # python-socketio's serializer= hook


def test_socketio_packet_decode_is_what_the_strict_packet_wraps() -> None:
    assert parameters(sio_packet.Packet.decode) == ["self", "encoded_packet"]
    assert "self.data = self.json.loads(" in source(sio_packet.Packet.decode)
    event = StrictPacket(encoded_packet='21["e",{"n":1}]')
    assert (event.packet_type, event.id, event.data) == (sio_packet.EVENT, 1, ["e", {"n": 1}])
    broken = StrictPacket(encoded_packet="27[NaN]")
    assert broken.id == 7 and isinstance(broken.data[0], Undecodable), broken.data


# -- redis-py -------------------------------------------------------------------


def test_redis_connection_settings() -> None:
    client = redis.asyncio.Redis.from_url("redis://user:pw@127.0.0.1:6390/3")
    options = connection_options(client)
    assert (options["host"], options["port"], options["db"]) == ("127.0.0.1", 6390, 3)
    assert (options["username"], options["password"]) == ("user", "pw")
    assert client.connection_pool.connection_class is Connection and is_plain(client)
    unix = redis.asyncio.Redis.from_url("unix:///tmp/redis.sock?db=2")
    assert unix.connection_pool.connection_class is UnixDomainSocketConnection
    assert connection_options(unix)["path"] == "/tmp/redis.sock" and is_plain(unix)
    tls = redis.asyncio.Redis.from_url("rediss://127.0.0.1:6390/0")
    assert not is_plain(tls)


async def test_redis_client_without_retries_keeps_the_settings_and_retries_nothing() -> None:
    hub = redis_client("rediss://user:pw@127.0.0.1:6390/3", client_name="hub-a")
    plain = without_retries(hub)
    options = connection_options(plain)
    for name in ("host", "port", "db", "username", "password", "client_name", "socket_timeout"):
        assert options[name] == connection_options(hub)[name], name
    assert (options["db"], options["client_name"]) == (3, "hub-a")
    assert plain.connection_pool.connection_class is hub.connection_pool.connection_class
    # What redis-py's PubSub reads through: the connection's Retry (none left to make).
    connection = plain.connection_pool.make_connection()
    assert connection.retry.get_retries() == 0
    assert hub.connection_pool.make_connection().retry.get_retries() > 0
    await plain.aclose()
    await hub.aclose()


def test_redis_script_sha_and_source() -> None:
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6390/0")
    script = client.register_script("return 1")
    assert isinstance(script, AsyncScript)
    assert script_source(script) == "return 1"
    assert re.fullmatch(r"[0-9a-f]{40}", script_sha(script))
    set_script_sha(script, "0" * 40)
    assert script.sha == "0" * 40


# -- the version check ----------------------------------------------------------


def test_versions_inside_every_range_pass() -> None:
    lowest = {name: str(min(Version(s.version) for s in spec)) for name, spec in LIBRARIES.items()}
    assert mismatches(lowest) == []
    assert mismatches() == [], "the locked versions must be the tested ones"
    assert check_versions() == []


def test_versions_outside_a_range_are_named() -> None:
    found = mismatches({"python-engineio": "4.10.0", "python-socketio": "5.18.1", "redis": None})
    assert [str(m) for m in found] == [
        "python-engineio <4.16,>=4.13 expected, 4.10.0 is installed",
        "redis <8.3,>=5.0.1 expected, not installed",
    ]


def test_a_hub_refuses_to_start_on_an_untested_engineio(tmp_path: Path) -> None:
    # An older python-engineio, as importlib.metadata sees it first on PYTHONPATH.
    fake = tmp_path / "python_engineio-4.9.0.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: python-engineio\nVersion: 4.9.0\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/hub.db",
    }
    command = [sys.executable, "-m", "realtime", "serve", "--port", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1, done.stderr.decode()
    assert (
        "hub not started: the hub relies on internals of libraries outside the versions it "
        "was written for: python-engineio <4.16,>=4.13 expected, 4.9.0 is installed"
    ) in done.stderr.decode()
    assert "hub serving" not in done.stderr.decode()

    allowed = subprocess.run(
        [sys.executable, "-c", "from realtime.internals import check_versions as c; "
         "print(c(allow_untested=True))"],
        cwd=ROOT, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert b"4.9.0" in allowed.stdout, allowed.stderr.decode()
