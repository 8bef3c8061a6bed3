"""The floor for the relay load: a bare python-socketio relay speaking the hub's events.

Same server stack as the hub (python-socketio ``AsyncServer`` on aiohttp),
none of the hub's work: a connect takes any token and reads its claims
without verifying them; ``session:join`` puts a tutor in the session's staff
room and a student in their own room; ``canvas:patch`` takes the next seq of an
in-memory counter per canvas, is acked at once and relayed at once, one
``canvas:patches`` per patch (no coalescing, no validation, no storage); a
tutor's annotation goes to that student's room. ``presence:ping``,
``exercise:progress``, ``help:request`` and ``help:update`` are acked
``{ok: true}`` and change nothing. There is no REST: the generator uses made-up
session ids against it. The difference between the hub's cost and this one's
is what the hub's features cost.

With ``--redis-url`` (or ``BASELINE_REDIS_URL``) it runs python-socketio's
stock ``AsyncRedisManager`` on that Redis: every emit is also published on
the one ``socketio`` channel that every such process subscribes to (from its
first client on) and decodes, as a cluster of stock servers does.

It runs like-for-like with the hub by default: uvloop (``--loop``), the hub's
codec ``realtime.base.codec.CODEC`` (orjson, ``--json``) for Socket.IO,
Engine.IO and the Redis manager, and the hub's Engine.IO websocket driver
(``realtime.internals.engineio_websocket``, ``--driver``). ``--stock`` is
plain asyncio, the standard ``json`` and Engine.IO's stock driver, as the
relay was before issue 18. One difference stays: python-socketio's stock
dispatch (a task per event), where the hub runs handlers inline. What it
runs, read off the running objects, is on ``/healthz`` (``stack``) and in its
first log line.

    python -m loadtest.baseline.relay --port P [--redis-url redis://127.0.0.1:6379/14]
    python -m loadtest.baseline.relay --port P --stock
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import engineio.packet
import jwt
import socketio
from aiohttp import web

from realtime.base.codec import CODEC
from realtime.internals import engineio_websocket

Ack = dict[str, Any]
LOOPS = ("uvloop", "asyncio")
JSONS = ("orjson", "stdlib")
DRIVERS = ("hub", "stock")
STACK: web.AppKey[dict[str, Any]] = web.AppKey("stack", dict)
log = logging.getLogger("baseline.relay")


@dataclass(frozen=True)
class Stack:
    """What the relay is built on: event loop, JSON library, Engine.IO websocket driver."""

    loop: str = "uvloop"
    json: str = "orjson"
    driver: str = "hub"


STOCK = Stack(loop="asyncio", json="stdlib", driver="stock")


class BaselineRelay:
    """Rooms and per-canvas seqs in memory; every handler is a few dict operations."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self.users: dict[str, tuple[str, str]] = {}
        self.seqs: dict[tuple[str, str], int] = {}
        self.help_ids = itertools.count(1)
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        sio.on("session:join", self.join)
        sio.on("canvas:patch", self.patch)
        for event in ("presence:ping", "exercise:progress", "help:update"):
            sio.on(event, self.ok)
        sio.on("help:request", self.help_request)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            claims = jwt.decode(token or "", options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            message = f"expected a JWT: {exc}"
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": "UNAUTHORIZED", "message": message}
            ) from None
        self.users[sid] = (str(claims.get("sub")), str(claims.get("role")))

    async def disconnect(self, sid: str, *args: Any) -> None:
        self.users.pop(sid, None)

    async def join(self, sid: str, data: dict[str, Any]) -> Ack:
        user, role = self.users[sid]
        session_id = data["session_id"]
        room = staff_room(session_id) if role == "TUTOR" else student_room(session_id, user)
        await self.sio.enter_room(sid, room)
        you = {"user_id": user, "role": role}
        return {"ok": True, "you": you, "session": {"id": session_id}, "students": [],
                "canvases": {}, "help": [], "timers": []}  # fmt: skip

    async def patch(self, sid: str, data: dict[str, Any]) -> Ack:
        user, role = self.users[sid]
        session_id = data["session_id"]
        tutor = role == "TUTOR"
        student = data["student_id"] if tutor else user
        seq = self.seqs.get((session_id, student), 0) + 1
        self.seqs[(session_id, student)] = seq
        item = {"student_id": student, "seq": seq, "author": "tutor" if tutor else "student",
                "ops": data["ops"]}  # fmt: skip
        room = student_room(session_id, student) if tutor else staff_room(session_id)
        await self.sio.emit(
            "canvas:patches", {"session_id": session_id, "items": [item]}, room=room
        )
        ack: Ack = {"ok": True, "seq": seq}
        if "client_ref" in data:
            ack["client_ref"] = data["client_ref"]
        return ack

    async def ok(self, sid: str, data: Any) -> Ack:
        return {"ok": True}

    async def help_request(self, sid: str, data: Any) -> Ack:
        return {"ok": True, "help_request": {"id": f"h{next(self.help_ids)}", "status": "OPEN"}}


def staff_room(session_id: str) -> str:
    return f"s:{session_id}:staff"


def student_room(session_id: str, student_id: str) -> str:
    return f"s:{session_id}:u:{student_id}"


class RedisErrorFormatter(logging.Formatter):
    """Adds the ``redis_exception`` python-socketio's Redis manager passes as ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        detail = getattr(record, "redis_exception", None)
        return f"{text} ({detail})" if detail else text


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "stack": request.app[STACK]})


def build_app(redis_url: str | None = None, stack: Stack = Stack()) -> web.Application:
    codec: Any = CODEC if stack.json == "orjson" else None  # None: python-socketio's ``json``
    manager = socketio.AsyncRedisManager(redis_url, json=codec) if redis_url else None
    # A logger of our own: the manager's Redis errors reach the log as "... ERROR ...".
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        logger=log,
        engineio_logger=False,
        json=codec,
    )
    if stack.driver == "hub":
        engineio_websocket.install(sio.eio)
    app = web.Application()
    sio.attach(app)
    BaselineRelay(sio)
    app.router.add_get("/healthz", healthz)
    app[STACK] = {"asked": asdict(stack)}

    async def read_stack(app: web.Application) -> None:
        # Read off the running objects, so a reader can check what "like-for-like" ran.
        loop = type(asyncio.get_running_loop())
        websocket = sio.eio._async["websocket"]
        app[STACK].update(
            loop=f"{loop.__module__}.{loop.__qualname__}",
            socketio_json=_json_name(sio.packet_class.json),
            engineio_json=_json_name(engineio.packet.Packet.json),
            redis_manager_json=_json_name(manager.json) if manager is not None else "-",
            driver=f"{websocket.__module__}.{websocket.__qualname__}",
        )
        log.warning("baseline relay runs %s", json.dumps(app[STACK]))

    app.on_startup.append(read_stack)
    return app


def _json_name(module: Any) -> str:
    """``orjson (realtime.base.codec.CODEC)``, or the module's name (stock: ``engineio.json``,
    python-engineio's wrapper of the standard ``json``)."""
    if module is CODEC:
        return "orjson (realtime.base.codec.CODEC)"
    return str(getattr(module, "__name__", repr(module)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BASELINE_REDIS_URL") or None,
        help="share emits through socketio.AsyncRedisManager on this Redis",
    )
    parser.add_argument("--loop", choices=LOOPS, help="default uvloop (the hub's); stock: asyncio")
    parser.add_argument("--json", choices=JSONS, help="default orjson (the hub's CODEC)")
    parser.add_argument("--driver", choices=DRIVERS,
                        help="Engine.IO websocket driver; default the hub's")  # fmt: skip
    parser.add_argument("--stock", action="store_true",
                        help="asyncio, stdlib json, stock driver; --loop etc. win")  # fmt: skip
    args = parser.parse_args()
    base = STOCK if args.stock else Stack()
    stack = Stack(
        loop=args.loop or base.loop, json=args.json or base.json, driver=args.driver or base.driver
    )
    handler = logging.StreamHandler()
    handler.setFormatter(RedisErrorFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    web.run_app(
        build_app(args.redis_url, stack),
        host="127.0.0.1",
        port=args.port,
        print=None,
        loop=new_event_loop(stack.loop),
    )


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """As the hub's ``realtime.cli.new_event_loop`` (not imported: the CLI sits atop the hub)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


if __name__ == "__main__":
    main()
