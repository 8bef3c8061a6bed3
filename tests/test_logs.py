"""Structured logs (docs/logging.md): the JSON format, the context of each line, the
access log, and what never reaches the log.

The integration test runs a real hub process with ``HUB_LOG_FORMAT=json`` and
reads what it wrote to stderr; the unit tests check the formatters and the
context on their own.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from pydantic import BaseModel, ValidationError

from realtime.base import logs
from realtime.base.config import Settings
from realtime.base.identity import Role
from tests.conftest import need_service
from tests.processes import HubProcess, RedisServer, spawn_hub
from tests.support import Client, eventually, session_body

SESSIONS = "/api/v1/sessions"
ISO_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REQUIRED = ("ts", "level", "logger", "message")


@pytest.fixture
def json_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub process logging JSON; a student's canvases are kept 0.3 s after the
    session empties (``HUB_PRESENCE_GRACE_S``), so their release is a timer."""
    hub = spawn_hub(
        tmp_path,
        f"logs-test-secret-{secrets.token_hex(16)}",
        settings={"HUB_LOG_FORMAT": "json", "HUB_PRESENCE_GRACE_S": "0.3"},
        forked=True,
    )
    try:
        hub.wait_healthy()
        yield hub
    finally:
        if hub.process.returncode is None:
            hub.stop()


async def rest(
    hub: HubProcess,
    method: str,
    path: str,
    token: str,
    body: Any = None,
    request_id: str | None = None,
) -> tuple[int, Any, str]:
    """(status, body, the response's X-Request-ID)."""
    headers = {"Authorization": f"Bearer {token}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, hub.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(), resp.headers.get("X-Request-ID", "")


def read_lines(hub: HubProcess) -> list[dict[str, Any]]:
    """Every line of the hub's output, each a JSON object with the required keys."""
    lines = []
    for raw in hub.log_path.read_text().splitlines():
        line = json.loads(raw)  # fails on any line that is not JSON
        assert isinstance(line, dict), raw
        assert all(key in line for key in REQUIRED), raw
        assert ISO_MS_UTC.fullmatch(line["ts"]), raw
        lines.append(line)
    return lines


def one(lines: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [line for line in lines if all(line.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_json_lines_carry_their_request_socket_and_session_and_no_secrets(
    json_hub: HubProcess,
) -> None:
    hub = json_hub
    marker = f"CANVASMARKER{secrets.token_hex(8)}"
    bad_token = "eyJhbGciOiJIUzI1NiJ9.BADTOKENMARKER" + secrets.token_hex(40) + ".x"
    unsafe_id = "REQIDMARKER" + "y" * 70
    tutor = hub.token("tutor-1", Role.TUTOR)

    status, created, echoed = await rest(
        hub, "POST", SESSIONS, tutor, session_body("tutor-1"), "create-0001"
    )
    assert status == 201, created
    assert echoed == "create-0001"
    session_id = created["data"]["id"]
    for student in ("s1", "s2"):
        status, _, _ = await rest(
            hub, "POST", f"{SESSIONS}/{session_id}/enrollments", tutor, {"student_id": student}
        )
        assert status == 201
    status, _, echoed = await rest(
        hub, "GET", f"{SESSIONS}/{session_id}", tutor, request_id="read-0002"
    )
    assert (status, echoed) == (200, "read-0002")
    # A request id that is not short and plain is replaced by one of the hub's.
    status, _, replaced = await rest(
        hub, "GET", f"{SESSIONS}/{session_id}", tutor, request_id=unsafe_id
    )
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", replaced), replaced
    # A method HTTP allows but no route takes: logged as OTHER.
    status, _, _ = await rest(hub, "PROPFIND", SESSIONS, tutor)
    assert status == 405
    # A bad token, over REST and on a socket (and in auth:refresh, below).
    status, _, _ = await rest(hub, "GET", SESSIONS, bad_token)
    assert status == 401
    refused = Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(hub.url, bad_token)

    student = await Client().connect(hub.url, hub.token("s1", Role.STUDENT))
    sid = student.sio.get_sid("/")
    try:
        assert (await student.join(session_id))["ok"]
        patch = {
            "session_id": session_id,
            "ops": [{"op": "add", "path": "/elements/e1", "value": {"text": marker}}],
        }
        assert (await student.call("canvas:patch", patch))["ok"]
        # Refused, with the marker in its path: the refusal's message is not logged.
        bad = {"op": "test", "path": f"/elements/{marker}", "value": marker}
        ack = await student.call("canvas:patch", {"session_id": session_id, "ops": [bad]})
        assert not ack["ok"]
        refresh = await student.call("auth:refresh", {"token": bad_token})
        assert refresh["error"]["code"] == "UNAUTHORIZED", refresh
        assert (await student.call("session:leave", {"session_id": session_id}))["ok"]
    finally:
        await student.sio.disconnect()
    await eventually(
        lambda: "stored and freed" in hub.log_path.read_text(), what="the canvases' release"
    )
    assert hub.stop() == 0

    text = hub.log_path.read_text()
    for secret in (marker, "BADTOKENMARKER", bad_token[:40], "REQIDMARKER"):
        assert secret not in text, secret
    lines = read_lines(hub)

    # The access log: the route's template, never the session's id; the caller.
    read = one(lines, logger="realtime.access", request_id="read-0002")
    assert read["route"] == "/api/v1/sessions/{session_id}"
    assert (read["method"], read["status"], read["remote"]) == ("GET", 200, "127.0.0.1")
    assert isinstance(read["duration_ms"], float)
    assert (read["user_id"], read["center_id"], read["role"]) == ("tutor-1", "c1", "TUTOR")
    assert session_id not in read["message"] and session_id not in read["route"]
    create = one(lines, logger="realtime.access", request_id="create-0001")
    assert (create["method"], create["route"], create["status"]) == ("POST", SESSIONS, 201)
    one(lines, logger="realtime.access", request_id=replaced)
    assert one(lines, logger="realtime.access", status=405)["method"] == "OTHER"
    unauthenticated = one(lines, logger="realtime.access", status=401)
    assert "user_id" not in unauthenticated
    # /healthz is polled: DEBUG, below the hub's INFO.
    assert not [line for line in lines if line.get("route") == "/healthz"]

    # The socket: connect, join, leave, disconnect, each with its sid and caller.
    mine = [line for line in lines if line.get("sid") == sid]
    for line in mine:
        assert (line["user_id"], line["center_id"], line["role"]) == ("s1", "c1", "STUDENT")
        assert "request_id" not in line
    connect = one(mine, message="connect from 127.0.0.1")
    assert connect["remote"] == "127.0.0.1"
    joined = one(mine, message=f"joined session {session_id} as STUDENT")
    assert (joined["session_id"], joined["event"]) == (session_id, "session:join")
    left = one(mine, message=f"left session {session_id} (session:leave)")
    assert left["session_id"] == session_id
    assert [line for line in mine if line["message"].startswith("disconnect (")]

    # Started by the leave, logged 0.3 s later: labelled with the session, not the socket.
    released = one(lines, logger="canvas.service")
    assert released["session_id"] == session_id
    assert not {"sid", "event", "user_id", "request_id"} & released.keys(), released


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_timer_started_by_a_rest_call_is_not_labelled_with_its_request_id(
    json_hub: HubProcess,
) -> None:
    """Removing the only student over REST evicts their socket; the session's canvases
    are freed by a timer the REST call started. Before: that timer copied the request's
    context, and its line carried the request's id."""
    hub = json_hub
    tutor = hub.token("tutor-1", Role.TUTOR)
    _, created, _ = await rest(hub, "POST", SESSIONS, tutor, session_body("tutor-1"))
    session_id = created["data"]["id"]
    await rest(hub, "POST", f"{SESSIONS}/{session_id}/enrollments", tutor, {"student_id": "s1"})
    student = await Client().connect(hub.url, hub.token("s1", Role.STUDENT))
    try:
        assert (await student.join(session_id))["ok"]
        status, _, _ = await rest(
            hub, "DELETE", f"{SESSIONS}/{session_id}/enrollments/s1", tutor, request_id="evict-1"
        )
        assert status in (200, 204)
        await eventually(lambda: student.events("session:removed"), what="session:removed")
        await eventually(
            lambda: "stored and freed" in hub.log_path.read_text(), what="the canvases' release"
        )
    finally:
        await student.sio.disconnect()
    assert hub.stop() == 0
    lines = read_lines(hub)
    evicted = one(
        lines, request_id="evict-1", message=f"left session {session_id} (session:removed)"
    )
    assert evicted["user_id"] == "s1"  # the socket's, over the REST caller's
    released = one(lines, logger="canvas.service")
    assert "request_id" not in released, released
    assert released["session_id"] == session_id


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_the_lease_tasks_a_canvas_patch_starts_log_as_the_hub(tmp_path: Path) -> None:
    """With Redis, a hub's first canvas append starts the tasks that keep its canvas
    lease (canvas/sequencer_leased.py), inside that socket's canvas:patch. Before,
    they copied the event's context and every line they wrote, for the hub's whole
    life, carried that socket's sid and user."""
    if shutil.which("redis-server") is None:
        need_service("redis-server", "not on PATH", hint="install redis-server")
    redis = RedisServer(tmp_path)  # the test's own: it is killed below
    await redis.start()
    hub = spawn_hub(
        tmp_path,
        f"logs-test-secret-{secrets.token_hex(16)}",
        settings={"HUB_LOG_FORMAT": "json", "HUB_REDIS_URL": redis.url},
        forked=True,
    )
    try:
        hub.wait_healthy()
        tutor = hub.token("tutor-1", Role.TUTOR)
        _, created, _ = await rest(hub, "POST", SESSIONS, tutor, session_body("tutor-1"))
        session_id = created["data"]["id"]
        await rest(hub, "POST", f"{SESSIONS}/{session_id}/enrollments", tutor, {"student_id": "s1"})
        student = await Client().connect(hub.url, hub.token("s1", Role.STUDENT))
        try:
            assert (await student.join(session_id))["ok"]
            ops = [{"op": "add", "path": "/elements/e1", "value": 1}]
            ack = await student.call("canvas:patch", {"session_id": session_id, "ops": ops})
            assert ack["ok"], ack
            redis.stop()
            await eventually(
                lambda: "listening for canvas requests failed" in hub.log_path.read_text(),
                within=10,
                what="the lease listener's warning",
            )
        finally:
            await student.sio.disconnect()
    finally:
        hub.stop()
        redis.stop()
    lease = [line for line in read_lines(hub) if line["logger"] == "canvas.sequencer_leased"]
    assert lease
    for line in lease:
        assert not {"sid", "event", "user_id", "session_id"} & line.keys(), line


# -- the formatters and the context, on their own ---------------------------------


def record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("realtime.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def formatted(formatter: logging.Formatter, made: logging.LogRecord) -> str:
    logs.ContextFields().filter(made)
    return formatter.format(made)


def test_the_text_format_appends_the_bound_context_only_when_there_is_one() -> None:
    text = logs.TextFormatter()
    assert formatted(text, record("hello")).endswith("realtime.test: hello")
    with logs.bound(request_id="r1", user_id="u1", center_id="c1", sid=None):
        line = formatted(text, record("hello %s", "there"))
    assert line.endswith("realtime.test: hello there [req=r1 center=c1 user=u1]"), line
    assert formatted(text, record("x", **logs.about(sid="s9"))).endswith("x [sid=s9]")


def test_a_json_line_has_the_fields_of_the_schema_and_no_other_record_attributes() -> None:
    with logs.bound(sid="abc", event="canvas:patch"):
        made = record("hello %s", "you", secret_extra="from a library")
        made.__dict__.update(logs.with_fields(status=200))
        line = json.loads(formatted(logs.JsonFormatter(), made))
    assert line.keys() == {"ts", "level", "logger", "message", "sid", "event", "status"}
    assert ISO_MS_UTC.fullmatch(line["ts"])
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "realtime.test",
        "hello you",
    )


class Note(BaseModel):
    words: int


def test_a_traceback_leaves_out_the_input_pydantic_quotes() -> None:
    try:
        # Built here, so that the source line in the traceback does not quote it.
        Note.model_validate({"words": "NOTE" + "MARKER free text"})
    except Exception:
        made = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = json.loads(formatted(logs.JsonFormatter(), made))
    assert "ValidationError" in line["exc"] and "words" in line["exc"], line["exc"]
    assert "NOTEMARKER" not in line["exc"]
    assert "NOTEMARKER" not in formatted(logs.TextFormatter(), made)


def test_hub_log_format_is_text_by_default_and_takes_json_and_nothing_else() -> None:
    assert Settings().log_format == "text"
    assert Settings(log_format="json").log_format == "json"
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="xml")


def test_a_client_request_id_is_kept_only_if_short_and_plain() -> None:
    assert logs.safe_id("abc-123_X.y:z")
    for bad in ("", "a" * 65, "has space", "semi;colon", "new\nline", 12, None):
        assert not logs.safe_id(bad), bad


async def test_a_task_started_in_a_fresh_context_does_not_carry_the_request_ids() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("realtime.test.background")
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFields())
    handler.setFormatter(logs.JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False

    async def later(name: str) -> None:
        await asyncio.sleep(0)
        logger.warning(name)

    try:
        with logs.bound(request_id="req-1", sid="sid-1"):
            inherited = asyncio.create_task(later("inherited"))
            fresh = asyncio.create_task(later("fresh"), context=logs.fresh_context(session_id="s1"))
        await asyncio.gather(inherited, fresh)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = {line["message"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["inherited"]["request_id"] == "req-1"  # what asyncio does by itself
    assert lines["fresh"]["session_id"] == "s1"
    assert "request_id" not in lines["fresh"] and "sid" not in lines["fresh"]
    assert logs.current() == {}
