"""The fuzzing harness (``tests/fuzz/``) in the suite: a short run of each part.

Each test starts a hub process of its own (SQLite in the test's tmp dir) and
fuzzes it with a small budget; the long run (10,000 payloads per event) is
``python -m tests.fuzz`` (docs/reliability.md). A finding fails the test with
what was sent; hypothesis shrinks it first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Hub
from tests.fuzz.rest import operations
from tests.fuzz.run import (
    Budget,
    JsWatch,
    check_js,
    new_http,
    openapi,
    run_raw_frames,
    run_rest,
    run_socket_events,
    start,
)
from tests.fuzz.values import EVENTS
from tests.fuzz.world import Tally, World

# Each test stays well under the suite's 60 s per test, also under `-n 3` on 2 cores.
SHORT = Budget(per_event=30, per_route=4, raw_frames=60, batch=6)
EVENTS = list(EVENTS)
HALF = len(EVENTS) // 2


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    # The harness runs hypothesis' examples synchronously, each on this loop.
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def world(runner: asyncio.Runner, tmp_path: Path) -> Iterator[World]:
    hub = start(tmp_path)
    http = runner.run(new_http())
    world = World(hub, http, Tally())
    try:
        runner.run(world.setup())
        yield world
        world.check_log("the test")
    finally:
        runner.run(http.close())
        assert hub.stop() == 0, hub.log_tail()


@pytest.mark.slow
@pytest.mark.parametrize("events", [EVENTS[:HALF], EVENTS[HALF:]], ids=["first", "second"])
def test_socket_events_with_hostile_payloads(
    runner: asyncio.Runner, world: World, node: str, events: list[str]
) -> None:
    watch = runner.run(JsWatch.start(node, world, max_s=120))
    run_socket_events(runner, world, SHORT, events)
    runner.run(check_js(world, runner.run(watch.finish())))
    tally = world.tally
    assert set(tally.sent) == {*events, "JS clients"}, tally.sent
    assert all(tally.sent[event] >= SHORT.per_event for event in events), tally.sent
    # The properties were exercised: refusals compared, and some payloads accepted.
    assert tally.compared > 0
    assert sum(tally.outcomes[event]["ok"] for event in events) > 0, tally.outcomes


@pytest.mark.slow
def test_raw_malformed_frames(runner: asyncio.Runner, world: World) -> None:
    run_raw_frames(runner, world, SHORT)
    assert world.tally.sent["raw frame"] >= SHORT.raw_frames


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, 1, 2])
def test_rest_routes_with_hostile_requests(runner: asyncio.Runner, world: World, part: int) -> None:
    document = runner.run(openapi(world))
    routes = operations(document)
    mine = {(method, path) for method, path, _ in routes[part::3]}
    run_rest(runner, world, SHORT, document, only=lambda m, p: (m, p) in mine)
    assert {what for what in world.tally.sent} == {f"{m} {p}" for m, p in mine}
    assert world.tally.compared > 0


NUL_PATHS = [
    "/api/v1/sessions/\x00",
    "/api/v1/sessions/a\x00b/enrollments",
    "/api/v1/people/\x00",
    "/api/v1/cohorts/\x00",
    "/api/v1/relationships/\x00",
    "/api/v1/teacher/sessions/\x00",
]


@pytest.mark.parametrize("path", NUL_PATHS)
async def test_a_nul_in_a_path_parameter_is_refused_and_logs_no_traceback(
    hub: Hub,
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found by probing with the harness's hostile path parameters ("%00") on Postgres,
    # which stores no NUL: the query failed, the hub answered 500 INTERNAL and logged an
    # ERROR traceback (SQLite: 404). rest/http.py's middleware refuses it now.
    status, body = await hub.as_("tutor-1", "TUTOR").get(path)
    assert (status, body["errorCode"]) == (422, "VALIDATION_ERROR"), (status, body)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
