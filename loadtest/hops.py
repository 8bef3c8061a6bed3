"""The path of one canvas patch through the hub, counted: function hops and package crossings.

Runs a hub in this process (SQLite, no Redis), joins a tutor and a student
with stock python-socketio clients over loopback, warms up, then traces
single ``canvas:patch`` events with ``sys.setprofile``: from the student's
emit until the student has its ack (the patch is durable) and the tutor has
the relayed patch. Every call into a function of the hub's packages in that
window is a hop (a coroutine resumed after an ``await`` is not a new one); a
hop whose nearest hub caller on the stack is in another package is a
crossing (a call the event loop starts, such as a done callback or a new
task, has no hub caller and is counted as an entry instead).

Run against any checkout, so before and after are counted the same way::

    python -m loadtest hops --root /tmp/before --root .

This file imports nothing of ``loadtest``: the ``hops`` mode runs it as a script
with the checkout first on ``PYTHONPATH``. It prints one JSON object.
"""

from __future__ import annotations

import asyncio
import collections
import dis
import importlib
import json
import sys
import tempfile
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

HUB_PACKAGES = ("realtime", "rooms", "canvas", "presence", "rest", "persistence")
# The sub-packages of realtime/ that are layers of their own (where the checkout has them).
REALTIME_LAYERS = ("base", "internals", "bus", "gateway")
# The layers, top first (pyproject.toml's contract); a crossing from a lower layer to a
# higher one is a callback the higher one registered (a route, a hook), never an import.
LAYERS = (
    ("rest",),
    ("rooms", "canvas"),
    ("presence",),
    ("realtime.gateway",),
    ("persistence", "realtime.bus"),
    ("realtime.internals",),
    ("realtime.base",),
)
PATCHES = 5
WARM_UP = 20
WAIT_S = 10.0


def package_of(filename: str, root: Path) -> str | None:
    """The hub package a source file belongs to (``realtime.gateway``...), or None."""
    try:
        parts = Path(filename).resolve().relative_to(root).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] not in HUB_PACKAGES:
        return None
    if parts[0] == "realtime" and len(parts) > 2 and parts[1] in REALTIME_LAYERS:
        return f"realtime.{parts[1]}"
    return parts[0]


class Tracer:
    """Counts calls into hub code while ``on``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.on = False
        self._packages: dict[str, str | None] = {}
        self._starts: dict[CodeType, int] = {}
        self._seen: dict[int, FrameType] = {}  # frames kept alive, so ids stay unique
        self.hops: list[tuple[str, str, str | None]] = []  # (package, function, caller package)

    def package(self, frame: FrameType) -> str | None:
        filename = frame.f_code.co_filename
        if filename not in self._packages:
            self._packages[filename] = package_of(filename, self.root)
        return self._packages[filename]

    def fresh(self, frame: FrameType) -> bool:
        """Whether the frame is starting, not a coroutine resumed after an ``await``."""
        code = frame.f_code
        if code not in self._starts:
            resumes = (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")
            self._starts[code] = next(resumes, 0)
        return frame.f_lasti <= self._starts[code]

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call" or id(frame) in self._seen:
            return
        package = self.package(frame)
        if package is None or not self.fresh(frame):
            return  # a resumed coroutine goes on with a hop counted when it started
        self._seen[id(frame)] = frame
        caller = frame.f_back
        while caller is not None and self.package(caller) is None:
            caller = caller.f_back
        module = Path(frame.f_code.co_filename).stem
        name = f"{package}/{module}.{frame.f_code.co_qualname}"
        self.hops.append((package, name, None if caller is None else self.package(caller)))

    def take(self) -> list[tuple[str, str, str | None]]:
        hops, self.hops = self.hops, []
        self._seen.clear()
        return hops


def _imports() -> tuple[Any, Any, Any, Any]:
    """build_app, Settings, Role and mint_token, wherever the checkout keeps them."""
    app = importlib.import_module("realtime.app")
    try:
        config = importlib.import_module("realtime.base.config")
        identity = importlib.import_module("realtime.base.identity")
    except ImportError:  # before the base layer had a folder of its own
        config = importlib.import_module("realtime.config")
        identity = importlib.import_module("realtime.identity")
    return app.build_app, config.Settings, identity.Role, identity.mint_token


async def _trace(root: Path, workdir: Path) -> dict[str, Any]:
    import aiohttp
    import socketio
    from aiohttp import web

    build_app, Settings, Role, mint_token = _imports()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{workdir}/hops.db",
        jwt_secret="hops-" + "x" * 32,
        presence_sweep_s=60,
    )
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"

    def token(sub: str, role: Any) -> str:
        return str(mint_token(settings, sub=sub, role=role, center="center-1"))

    tutor_token, student_token = token("tutor-1", Role.TUTOR), token("student-1", Role.STUDENT)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tutor_token}"}) as http:
        body = {
            "title": "hops",
            "tutor_id": "tutor-1",
            "starts_at": "2030-01-01T10:00:00+00:00",
            "ends_at": "2030-01-01T11:00:00+00:00",
        }
        async with http.post(f"{url}/api/v1/sessions", json=body) as response:
            session_id = (await response.json())["data"]["id"]
        path = f"{url}/api/v1/sessions/{session_id}/enrollments"
        async with http.post(path, json={"student_id": "student-1"}) as response:
            assert response.status == 201, await response.text()

    relayed: asyncio.Queue[Any] = asyncio.Queue()
    tutor, student = socketio.AsyncClient(), socketio.AsyncClient()
    tutor.on("canvas:patches", relayed.put_nowait)
    await tutor.connect(url, auth={"token": tutor_token}, transports=["websocket"])
    await student.connect(url, auth={"token": student_token}, transports=["websocket"])
    for client in (tutor, student):
        joined = await client.call("session:join", {"session_id": session_id})
        assert joined["ok"], joined

    tracer = Tracer(root)
    sys.setprofile(tracer)
    counts = []
    try:
        for n in range(WARM_UP + PATCHES):
            ops = [{"op": "add", "path": f"/elements/e{n}", "value": {"type": "pen", "n": n}}]
            tracer.on = n >= WARM_UP
            ack = await student.call(
                "canvas:patch", {"session_id": session_id, "ops": ops}, timeout=WAIT_S
            )
            await asyncio.wait_for(relayed.get(), WAIT_S)
            tracer.on = False
            assert ack["ok"], ack
            if n >= WARM_UP:
                counts.append(tracer.take())
    finally:
        sys.setprofile(None)
    await tutor.disconnect()
    await student.disconnect()
    await runner.cleanup()
    return _summary(counts)


def _layer(package: str) -> int | None:
    return next((n for n, layer in enumerate(LAYERS) if package in layer), None)


def _summary(runs: list[list[tuple[str, str, str | None]]]) -> dict[str, Any]:
    def crossings(hops: list[tuple[str, str, str | None]]) -> list[tuple[str, str]]:
        return [(caller, package) for package, _, caller in hops if caller not in (None, package)]

    def top(package: str) -> str:
        return package.split(".")[0]

    def upward(hops: list[tuple[str, str, str | None]]) -> list[str] | None:
        """The functions called from a lower layer (None: a checkout without them)."""
        found = []
        for package, name, caller in hops:
            if caller is None or caller == package:
                continue
            below, above = _layer(caller), _layer(package)
            if below is None or above is None:
                return None
            if below > above:
                found.append(name)
        return found

    typical = sorted(runs, key=len)[(len(runs) - 1) // 2]  # the median run
    pairs = collections.Counter(f"{a} -> {b}" for a, b in crossings(typical))
    return {
        "hops": [len(run) for run in runs],
        "crossings": [len(crossings(run)) for run in runs],
        "crossings_top_level": [
            sum(1 for a, b in crossings(run) if top(a) != top(b)) for run in runs
        ],
        "upward_calls": upward(typical),
        "entries_from_loop": [sum(1 for *_, caller in run if caller is None) for run in runs],
        "typical": {
            "crossings_by_pair": dict(pairs.most_common()),
            "packages": dict(collections.Counter(p for p, _, _ in typical).most_common()),
            "path": [name for _, name, _ in typical],
        },
    }


def main() -> None:
    root = Path.cwd().resolve()
    with tempfile.TemporaryDirectory(prefix="hops-") as workdir:
        summary = asyncio.run(_trace(root, Path(workdir)))
    print(json.dumps({"root": str(root), **summary}))


if __name__ == "__main__":
    main()
