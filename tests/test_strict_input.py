"""Input the hub cannot hand on unchanged is refused, and undecodable packets are answered.

Regression tests for the hardening issue's findings 1 and 3 (main at 6746844):
the hub acked canvas values ``NaN``, ``Infinity``, ``1e999`` and a lone
surrogate, after which a stock JavaScript tutor's ``session:join`` ended in
``disconnect: parse error`` and REST served bare ``NaN``; and packets that did
not decode got no answer and logged an error traceback each.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from realtime.base import codec
from realtime.base.identity import Role
from tests.conftest import Hub
from tests.processes import HubProcess
from tests.support import eventually, session_body
from tests.test_canvas import live_session, patch, relayed, stroke
from tests.test_js_client import ROOT, create_session, run_node

SESSIONS = "/api/v1/sessions"
VALUES_SCRIPT = ROOT / "tests" / "js" / "values.mjs"

# Canvas values as raw JSON text: what a hand-written or Python client can send.
UNSAFE_VALUES = ["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '"\\udc00x"']


class RawSocket:
    """Socket.IO v5 over a websocket, written by hand, to send what no stock client would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str, token: str) -> RawSocket:
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        raw = cls(ws)
        opened = await raw.next()
        assert opened is not None and opened.startswith("0"), opened
        await ws.send_str("40" + json.dumps({"token": token}))
        connected = await raw.next()
        assert connected is not None and connected.startswith("40{"), connected
        return raw

    async def next(self) -> str | None:
        """The next Engine.IO packet (pings answered), or None once the hub closed."""
        while True:
            message = await self.ws.receive(timeout=5.0)
            if message.type != aiohttp.WSMsgType.TEXT:
                return None
            if message.data == "2":
                await self.ws.send_str("3")
                continue
            return str(message.data)

    async def call(self, ack_id: int, text: str) -> Any:
        """Send ``42<ack_id><text>``; the hub's ack for it."""
        await self.ws.send_str(f"42{ack_id}{text}")
        return await self.ack(ack_id)

    async def ack(self, ack_id: int) -> Any:
        prefix = f"43{ack_id}["
        while (packet := await self.next()) is not None:
            if packet.startswith(prefix):
                return json.loads(packet[len(prefix) - 1 :])[0]
        raise AssertionError(f"the hub closed the connection instead of acking {ack_id}")

    async def closed_by_hub(self) -> bool:
        while (packet := await self.next()) is not None:
            if packet.startswith("41"):  # a Socket.IO disconnect, then the close
                continue
        return True


def patch_text(session_id: str, value_json: str, element: str = "x") -> str:
    op = (
        f'{{"op":"add","path":"/elements/{element}","value":{{"type":"text","text":{value_json}}}}}'
    )
    return f'["canvas:patch",{{"session_id":"{session_id}","ops":[{op}]}}]'


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the codec ------------------------------------------------------------------


@pytest.mark.parametrize("text", [f"[{v}]" for v in UNSAFE_VALUES])
def test_the_wire_codec_refuses_what_stock_clients_do_not_decode_alike(text: str) -> None:
    with pytest.raises(ValueError):
        codec.loads(text)


def test_stored_values_from_before_the_strict_wire_read_as_the_relay_showed_them() -> None:
    stored = '{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e999, "e": "\\ud800", "f": 1.5}'
    assert codec.loads_stored(stored) == {
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "e": "?",
        "f": 1.5,
    }
    assert codec.loads_stored('{"n": 1}') == {"n": 1}


# -- a live hub -----------------------------------------------------------------


async def test_unsafe_canvas_values_are_refused_and_change_nothing(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    session_id, tutor, _ = await live_session(hub, ("s1",))
    raw = await RawSocket.connect(hub.http, hub.url, hub.tokens("s1", "STUDENT"))
    joined = await raw.call(1, json.dumps(["session:join", {"session_id": session_id}]))
    assert joined["ok"], joined
    for n, value in enumerate(UNSAFE_VALUES, start=2):
        ack = await raw.call(n, patch_text(session_id, value))
        assert ack["ok"] is False and ack["error"]["code"] == "VALIDATION_ERROR", (value, ack)
        assert ack["error"]["message"].startswith("undecodable packet: "), ack
    # The connection stays usable, and the first patch that counts is seq 1.
    ack = await raw.call(99, patch_text(session_id, '"fine"'))
    assert ack == {"ok": True, "seq": 1}
    await eventually(lambda: relayed(tutor, "s1"), what="the good patch relayed")
    assert [item["seq"] for item in relayed(tutor, "s1")] == [1]
    fresh = await hub.connect("tutor-1", "TUTOR")
    doc = (await fresh.join(session_id))["canvases"]["s1"]["doc"]
    assert doc["elements"] == {"x": {"type": "text", "text": "fine"}}
    status, body = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}/canvases/s1")
    assert status == 200 and body["data"]["doc"] == doc
    assert errors_logged(caplog) == []


async def test_a_stock_python_client_sending_nan_gets_a_validation_error(hub: Hub) -> None:
    # python-socketio encodes with the standard json module, which writes NaN.
    session_id, _, students = await live_session(hub, ("s1",))
    for value in (float("nan"), float("inf"), "\ud800"):
        ops = [{"op": "add", "path": "/elements/v", "value": {"type": "text", "text": value}}]
        ack = await patch(students["s1"], session_id, ops)
        assert ack["error"]["code"] == "VALIDATION_ERROR", (value, ack)
    assert (await patch(students["s1"], session_id, stroke("a")))["seq"] == 1


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


async def test_deeply_nested_values_are_a_validation_error_and_log_nothing(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """Hardening finding 2: a ~1 KB patch nested 500 deep was INTERNAL, with a
    RecursionError traceback per message in the log."""
    session_id, _, students = await live_session(hub, ("s1",))
    raw = await RawSocket.connect(hub.http, hub.url, hub.tokens("s1", "STUDENT"))
    assert (await raw.call(1, json.dumps(["session:join", {"session_id": session_id}])))["ok"]
    for n, depth in enumerate([255, 500, 900] * 10, start=2):
        value = "[" * depth + '"deep"' + "]" * depth
        ack = await raw.call(n, patch_text(session_id, value))
        assert ack["ok"] is False and ack["error"]["code"] == "VALIDATION_ERROR", ack
        assert "nested deeper than 254 levels" in json.dumps(ack["error"]), ack
    shallow = [{"op": "add", "path": "/elements/ok", "value": {"type": "x", "v": nested(200)}}]
    assert await patch(students["s1"], session_id, shallow) == {"ok": True, "seq": 1}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    "frame",
    [
        "421",  # an event with an ack id and no payload
        "421{}",  # a payload that is not an event list
        "421[]",  # an empty event list
        "421" + "[" * 10_000 + "]" * 10_000,  # nested past the decoder's depth limit
        '421["canvas:patch",{"session_id":',  # cut short
        # Found by tests/fuzz.py: an event name that is not a string (python-socketio
        # looked it up in a dict: TypeError, an ERROR traceback, no answer).
        '421[["canvas:patch"],{}]',
        '421[{"a":1}]',
        # Found by the harness's long run: packet types a client does not send
        # (CONNECT_ERROR, 7) raised in python-socketio's server.
        "441[]",
        "471[]",
    ],
)
async def test_an_undecodable_packet_with_an_ack_id_is_answered(
    hub: Hub, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    raw = await RawSocket.connect(hub.http, hub.url, hub.tokens("s1", "STUDENT"))
    await raw.ws.send_str(frame)
    ack = await raw.ack(1)
    assert ack["ok"] is False and ack["error"]["code"] == "VALIDATION_ERROR", ack
    # Still connected: the next event is handled.
    ack = await raw.call(2, '["presence:ping",{"session_id":"nope","state":"active"}]')
    assert ack["error"]["code"] == "NOT_JOINED", ack
    assert errors_logged(caplog) == []


# "4": an empty Socket.IO packet, found by tests/fuzz.py (python-socketio skipped
# decoding it and read the missing event list: TypeError, an ERROR traceback).
# "44{}", "47", '450-[...]' (a binary event without attachments, which took the next
# message as one): found by the harness's long run, each an ERROR traceback.
@pytest.mark.parametrize(
    "frame",
    ["42", "42[NaN]", b"\xff\xfe\x00garbage", "4", "42[[]]", "44{}", "47", '450-["x",{}]'],
)
async def test_an_undecodable_packet_without_an_ack_id_ends_only_its_connection(
    hub: Hub, caplog: pytest.LogCaptureFixture, frame: str | bytes
) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    raw = await RawSocket.connect(hub.http, hub.url, hub.tokens("s2", "STUDENT"))
    if isinstance(frame, bytes):
        await raw.ws.send_bytes(frame)
    else:
        await raw.ws.send_str(frame)
    assert await raw.closed_by_hub()
    # Nobody else noticed.
    assert (await patch(students["s1"], session_id, stroke("after")))["seq"] == 1
    await eventually(lambda: relayed(tutor, "s1"), what="the relay to the tutor")
    assert errors_logged(caplog) == []


async def test_a_rest_body_with_nan_is_refused_and_creates_nothing(hub: Hub) -> None:
    # pydantic's own JSON parser reads NaN; a free-form field stored it as null.
    api = hub.as_("tutor-1", "TUTOR")
    status, created = await api.post(SESSIONS, session_body())
    assert status == 201
    enrollments = f"{SESSIONS}/{created['data']['id']}/enrollments"
    for value in ("NaN", "Infinity", "1e999", '"\\ud800"'):
        body = f'{{"student_id": "s1", "exercise_content": {{"score": {value}}}}}'
        status, got = await api.call("POST", enrollments, data=body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), (value, got)
    status, listed = await api.get(enrollments)
    assert status == 200 and listed["data"] == []


@pytest.mark.slow
async def test_a_stock_js_tutor_decodes_everything_after_a_poisoning_attempt(
    node: str, hub_process: HubProcess
) -> None:
    hub = hub_process
    tutor_token = hub.token("tutor-1", Role.TUTOR)
    session_id = await create_session(hub, tutor_token, ["s1"])
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.connect(http, hub.url, hub.token("s1", Role.STUDENT))
        assert (await raw.call(1, json.dumps(["session:join", {"session_id": session_id}])))["ok"]
        for n, value in enumerate(UNSAFE_VALUES, start=2):
            ack = await raw.call(n, patch_text(session_id, value, element=f"v{n}"))
            assert ack["error"]["code"] == "VALIDATION_ERROR", ack
        await raw.ws.close()
    seen = await run_node(
        node,
        VALUES_SCRIPT,
        {
            "url": hub.url,
            "session_id": session_id,
            "tutor_token": tutor_token,
            "student_token": hub.token("s1", Role.STUDENT),
        },
    )
    assert seen["disconnects"] == [], seen
    assert seen["tutor_join"]["ok"], seen
    assert seen["surrogate_ack"]["error"]["code"] == "VALIDATION_ERROR", seen
    assert seen["stroke_ack"] == {"ok": True, "seq": 1}, seen
    stroke_value = {"type": "stroke", "points": [[1, 2]]}
    assert [item["ops"][0]["value"] for b in seen["relays"] for item in b["items"]] == [
        stroke_value
    ]
    assert seen["tutor_rejoin"]["canvases"]["s1"]["doc"]["elements"] == {"ok": stroke_value}


@pytest.mark.parametrize("path", ["/api/v1/sessions?status=%00", "/api/v1/people?search=a%00"])
async def test_a_nul_in_a_query_parameter_is_refused_on_every_database(
    hub: Hub, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As a NUL in a path parameter (tests/test_fuzz.py): refused before any query,
    where Postgres, which stores no NUL, would fail."""
    status, body = await hub.as_("tutor-1", "TUTOR").get(path)
    assert (status, body["errorCode"]) == (422, "VALIDATION_ERROR"), body
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("header", ["451-", '451-{"a":1}', '451-[{"_placeholder":true,"num":0}]'])
async def test_a_binary_event_that_is_no_event_list_ends_only_its_connection(
    hub: Hub, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    """Found by the harness's long run: a binary event with no event list (or a name
    that is an attachment) was handed on after its attachment came, and python-socketio
    read ``None[0]`` (an ERROR traceback)."""
    raw = await RawSocket.connect(hub.http, hub.url, hub.tokens("s1", "STUDENT"))
    await raw.ws.send_str(header)
    await raw.ws.send_bytes(b"attachment")
    assert await raw.closed_by_hub()
    assert errors_logged(caplog) == []
