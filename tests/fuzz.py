"""A fuzzing harness for the hub (hardening issue 19): hostile payloads over real traffic.

It drives a real hub process on loopback (``tests/processes.py``) with

- every client -> hub Socket.IO event of ``docs/protocol.md``, from sockets of
  several roles in two centers, each joined where it may be: a valid payload
  mutated hostilely (a field dropped, an unknown field, a wrong type, an
  enum value it does not have, non-finite numbers, lone surrogates, NUL,
  nesting past 254 levels, huge strings, bad JSON Patch paths, several
  arguments, binary attachments, a payload that is not an object), sent as
  raw frames, several in flight at once;
- raw frames that are not Socket.IO packets, or broken ones;
- every REST operation of the hub's own OpenAPI document
  (``/api/v1/openapi.json``): path parameters, queries and bodies generated
  from its schemas, valid ones and hostile ones, with tokens of every role
  of two centers, none, and broken ones.

Properties, checked after each batch of payloads:

1. no ``INTERNAL`` ack, no 5xx, and every REST answer is one the document
   describes (``tests/contract.py``);
2. everything the hub sends back is strict JSON (RFC 8259: no ``NaN``,
   ``Infinity`` or lone surrogate), as a stock JavaScript client needs;
3. a payload the contract refuses is refused (``ok: false``);
4. a batch that was refused throughout changes nothing: the REST reads of
   both centers' sessions, enrollments, canvases, help and notes and a fresh
   observer's ``session:join`` ack are the same before and after;
5. the hub's log gains no traceback and no ERROR line.

At the end a stock JavaScript client (``tests/js/fuzz_watch.mjs``), which
listened as the tutor throughout, must not have been disconnected (its
answer to a packet it cannot parse), and the canvases it gets on a fresh join
must equal what REST returns and what a fresh Python join returns.

``tests/test_fuzz.py`` runs a short run in the suite; the long run is

    flock /tmp/bench.lock .venv/bin/python -m tests.fuzz --per-event 10000

(see ``docs/reliability.md``). Hypothesis draws every payload; batches are
bounded in count and each wait in time; only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import sys
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from yarl import URL

from canvas.service import CanvasPatch, CanvasSync
from realtime.base.config import Settings
from realtime.base.events import AuthRefresh, PresencePing, SessionJoin, SessionLeave
from realtime.base.identity import Role
from rooms.control import (
    AnnouncementSend,
    ExerciseAssign,
    ExerciseProgress,
    ModeSet,
    NoteAdd,
    SessionEnd,
)
from rooms.help import HelpAsk, HelpUpdate
from rooms.timers import TimerCancel, TimerStart
from tests.contract import Contract
from tests.processes import ROOT, HubProcess, spawn_hub
from tests.support import Client, session_body
from tests.test_strict_input import RawSocket

API = "/api/v1"
SESSIONS = f"{API}/sessions"
WAIT_S = 10.0  # the longest wait for one answer
MAX_MESSAGE_BYTES = Settings.model_fields["max_message_bytes"].default - 64  # less the prefix
ERROR_CODES = {
    "UNAUTHORIZED",
    "TOKEN_EXPIRED",
    "FORBIDDEN",
    "NOT_FOUND",
    "VALIDATION_ERROR",
    "CONFLICT",
    "RATE_LIMITED",
    "PAYLOAD_TOO_LARGE",
    "SESSION_ENDED",
    "NOT_JOINED",
}
# Every client -> hub event of docs/protocol.md, with the model its payload must fit.
EVENTS: dict[str, type[BaseModel]] = {
    "session:join": SessionJoin,
    "session:leave": SessionLeave,
    "auth:refresh": AuthRefresh,
    "canvas:patch": CanvasPatch,
    "canvas:sync": CanvasSync,
    "presence:ping": PresencePing,
    "mode:set": ModeSet,
    "exercise:assign": ExerciseAssign,
    "exercise:progress": ExerciseProgress,
    "note:add": NoteAdd,
    "help:request": HelpAsk,
    "help:update": HelpUpdate,
    "timer:start": TimerStart,
    "timer:cancel": TimerCancel,
    "announcement:send": AnnouncementSend,
    "session:end": SessionEnd,
}
LOG_PROBLEM = re.compile(r"Traceback|^\S+ \S+ (ERROR|CRITICAL) ", re.MULTILINE)

# -- what a finding looks like -------------------------------------------------------


class Finding(AssertionError):
    """A property the hub broke, with what was sent."""


@dataclass
class Tally:
    """What a run sent and what came back, per event and per route."""

    sent: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    compared: int = 0  # refused batches whose state was compared before and after
    closed: int = 0  # connections the hub closed (allowed for some frames)

    def add(self, what: str, outcome: str) -> None:
        self.sent[what] += 1
        self.outcomes[what][outcome] += 1


# -- strict JSON, as a JavaScript client decodes it ----------------------------------


def strict(text: str | bytes, what: str) -> Any:
    """``text`` decoded as RFC 8259 JSON (orjson refuses NaN, Infinity, 1e999 and lone
    surrogates, as JSON.parse or a UTF-8 decoder would); a Finding otherwise."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Finding(f"{what}: not strict JSON ({exc}): {str(text)[:300]}") from None


# -- hostile values --------------------------------------------------------------

# Raw JSON texts a hand-written client can send and the wire must refuse.
UNSAFE_JSON = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"\\ud800"', '"a\\udfffb"']
text = st.text(max_size=40)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
huge_text = st.builds(lambda n, c: c * n, st.integers(1_000, 70_000), st.sampled_from("xé€😀"))
# Values of every JSON type, to put where another type belongs.
TYPED: dict[str, Any] = {
    "string": "zzz",
    "integer": 7,
    "number": 3.5,
    "boolean": True,
    "array": [1],
    "object": {"a": 1},
    "null": None,
}
# Types pydantic's lax mode turns into another (a bool is an int, an int a float).
COERCED = {
    "integer": {"boolean", "number"},
    "number": {"boolean", "integer"},
    "boolean": {"integer", "number"},
}


def types_of(schema: dict[str, Any]) -> set[str]:
    """The JSON types a field's schema admits (empty: anything)."""
    if "anyOf" in schema:
        return set().union(*(types_of(s) for s in schema["anyOf"]))
    if "$ref" in schema or "properties" in schema:
        return {"object"}
    if "enum" in schema or "const" in schema:
        return {"string"}
    kind = schema.get("type")
    if kind is None:
        return set()
    return set(kind) if isinstance(kind, list) else {kind}


def wrong_types(schema: dict[str, Any]) -> list[str]:
    admitted = types_of(schema)
    if not admitted:
        return []
    near = set().union(*(COERCED.get(t, set()) for t in admitted))
    return [t for t in TYPED if t not in admitted and t not in near]


class Payload:
    """One event to send: the JSON text of the event list (``["name", payload, ...]``),
    binary attachments, and whether the contract says the hub must refuse it."""

    def __init__(
        self,
        event: str,
        kind: str,
        text: str,
        must_refuse: bool,
        attachments: tuple[bytes, ...] = (),
    ) -> None:
        self.event = event
        self.kind = kind
        self.text = text
        self.must_refuse = must_refuse
        self.attachments = attachments

    def __repr__(self) -> str:  # hypothesis prints the draws of a failing example
        return f"Payload({self.kind}, must_refuse={self.must_refuse}, {shorten(self.text)})"


def shorten(text: str | bytes | None, keep: int = 300) -> str:
    if text is None or len(text) <= keep:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text)} long)"


def event_text(event: str, *args: Any) -> str:
    return json.dumps([event, *args], ensure_ascii=False)


def with_raw(event: str, payload: dict[str, Any], key: str, raw: str) -> str:
    """The event list with ``payload[key]`` replaced by raw JSON text."""
    marker = f"@@raw{secrets.token_hex(4)}@@"
    return event_text(event, {**payload, key: marker}).replace(f'"{marker}"', raw)


@st.composite
def mutated(draw: st.DrawFn, event: str, base: dict[str, Any]) -> Payload:
    """``base`` (a valid payload) sent as is or made hostile, one way drawn."""
    model = EVENTS[event]
    schema = model.model_json_schema()
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    keys = sorted(base) or ["session_id"]
    key = draw(st.sampled_from(keys))
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "drop",
                "extra",
                "wrong_type",
                "bad_enum",
                "unsafe_number",
                "nul",
                "deep",
                "huge",
                "arguments",
                "not_object",
                "binary",
                "odd_value",
                "big_int",
            ]
            + (["bad_path", "bad_op"] if event == "canvas:patch" else [])
        )
    )
    if kind == "valid":
        return Payload(event, kind, event_text(event, base), False)
    if kind == "drop":
        dropped = {k: v for k, v in base.items() if k != key}
        return Payload(event, kind, event_text(event, dropped), key in required)
    if kind == "extra":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in props))
        extra = {**base, name: draw(json_value)}
        return Payload(event, kind, event_text(event, extra), True)
    if kind == "wrong_type":
        choices = wrong_types(props.get(key, {}))
        if not choices:
            return Payload(event, "valid", event_text(event, base), False)
        value = TYPED[draw(st.sampled_from(choices))]
        return Payload(event, kind, event_text(event, {**base, key: value}), True)
    if kind == "bad_enum":
        field_schema = props.get(key, {})
        enum_ref = any("$ref" in s for s in field_schema.get("anyOf", [field_schema]))
        if not (enum_ref or "enum" in field_schema) or event == "exercise:assign":
            return Payload(event, "valid", event_text(event, base), False)
        value = draw(st.sampled_from(["", "active ", "nope", "OPEN", "teach"]))
        return Payload(event, kind, event_text(event, {**base, key: value}), True)
    if kind == "unsafe_number":
        raw = draw(st.sampled_from(UNSAFE_JSON))
        return Payload(event, kind, with_raw(event, base, key, raw), True)
    if kind == "nul":
        at = draw(st.integers(0, 3))
        value = str(base.get(key, "x"))
        value = value[:at] + "\x00" + value[at:]
        return Payload(event, kind, event_text(event, {**base, key: value}), True)
    if kind == "deep":
        depth = draw(st.integers(255, 1_500))
        deep = "[" * depth + '"deep"' + "]" * depth
        return Payload(event, kind, with_raw(event, base, key, deep), True)
    if kind == "huge":
        return Payload(event, kind, event_text(event, {**base, key: draw(huge_text)}), False)
    if kind == "arguments":
        more = draw(st.lists(json_value, min_size=1, max_size=40))
        return Payload(event, kind, event_text(event, base, *more), True)
    if kind == "not_object":
        value = draw(st.one_of(scalar, st.lists(scalar, max_size=3)))
        return Payload(event, kind, event_text(event, value), True)
    if kind == "binary":
        blob = draw(st.binary(max_size=64))
        placeholder = {"_placeholder": True, "num": 0}
        text_ = event_text(event, {**base, key: placeholder})
        return Payload(event, kind, text_, False, (blob,))
    if kind == "odd_value":
        # Anything JSON in place of the field: the hub may take it, never fail on it.
        return Payload(event, kind, event_text(event, {**base, key: draw(json_value)}), False)
    if kind == "big_int":
        value = draw(st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**20, 10**300, -1, 0]))
        return Payload(event, kind, event_text(event, {**base, key: value}), False)
    if kind == "bad_path":
        path = draw(
            st.sampled_from(
                [
                    "",
                    "/",
                    "elements",
                    "/elements",
                    "/elements/",
                    "/elements/a/b",
                    "/annotations/x",
                    "/nothing/x",
                    "/elements/~2",
                    "/-",
                    "/meta/x/0",
                    "//",
                ]
            )
        )
        ops = [{"op": "add", "path": path, "value": {"type": "stroke"}}]
        return Payload(event, kind, event_text(event, {**base, "ops": ops}), True)
    assert kind == "bad_op"
    op = draw(
        st.sampled_from(
            [
                {"op": "move", "from": "/elements/a", "path": "/elements/b"},
                {"op": "copy", "from": "/elements/a", "path": "/elements/b"},
                {"op": "test", "path": "/elements/a", "value": 1},
                {"op": "jump", "path": "/elements/a"},
                {"path": "/elements/a", "value": 1},
                {"op": "add", "path": "/elements/a"},
                {"op": "add", "path": 5, "value": 1},
                [],
                "add",
            ]
        )
    )
    return Payload(event, kind, event_text(event, {**base, "ops": [op]}), True)


# -- raw frames ----------------------------------------------------------------

raw_frame = st.one_of(
    st.sampled_from(
        [
            "42",
            "421",
            "421{}",
            "421[]",
            "421[1]",
            "421[null]",
            '421["session:join"',
            "4",
            "40",
            "41",
            "43",
            "431[]",
            "44",
            "45",
            "451-",
            '451-["x",{"_placeholder":true,"num":9}]',
            "46",
            "47",
            "9",
            "",
            "5",
            "6",
            "1",
            "3probe",
            "2probe",
        ]
    ),
    st.builds(lambda t: "42" + t, st.text(max_size=60)),
    st.builds(lambda n, t: f"42{n}" + t, st.integers(0, 2**70), st.text(max_size=60)),
    st.builds(lambda d: "421" + "[" * d + "]" * d, st.integers(200, 12_000)),
    st.builds(lambda v: "421" + json.dumps(["canvas:patch", v]), json_value),
    st.text(max_size=80),
    st.binary(max_size=80),
)

# -- the world a run fuzzes --------------------------------------------------------

ACTORS: dict[str, tuple[str, Role, str]] = {
    # name: (sub, role, center)
    "tutor": ("tutor-1", Role.TUTOR, "c1"),
    "student": ("s1", Role.STUDENT, "c1"),
    "student2": ("s2", Role.STUDENT, "c1"),
    "supervisor": ("sup-1", Role.SUPERVISOR, "c1"),
    "admin": ("admin-1", Role.CENTER_ADMIN, "c1"),
    "super": ("root", Role.SUPER_ADMIN, "c1"),
    "stranger": ("s9", Role.STUDENT, "c1"),
    "other_tutor": ("tutor-2", Role.TUTOR, "c1"),
    "parent": ("p1", Role.PARENT, "c1"),
    "assessor": ("as-1", Role.ASSESSOR, "c1"),
    "c2_tutor": ("tutor-1", Role.TUTOR, "c2"),
    "c2_student": ("s1", Role.STUDENT, "c2"),
}


# The session's own people most often: their payloads get past the permission checks.
WEIGHTED_ACTORS = ["tutor", "student"] * 4 + ["student2", "c2_tutor"] * 2 + sorted(ACTORS)


class Wire(RawSocket):
    """A raw Socket.IO client that keeps several events in flight and collects their acks."""

    async def collect(self, ids: set[int], within: float = WAIT_S) -> tuple[dict[int, str], bool]:
        """The ack texts for ``ids`` (the JSON after ``43<id>``), and whether the hub closed."""
        got: dict[int, str] = {}
        deadline = time.monotonic() + within
        while ids - set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Finding(f"no ack within {within} s for ids {sorted(ids - set(got))}")
            try:
                message = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                return got, True
            data = str(message.data)
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith("43"):
                found = re.match(r"43(\d+)", data)
                assert found is not None, data
                got[int(found.group(1))] = data[found.end() :]
            elif data.startswith("4"):
                strict(data[2:].lstrip("0123456789") or "null", f"the hub's packet {data[:40]}")
        return got, False


class World:
    """A hub process, two centers' sessions, and a joined raw socket per actor."""

    def __init__(self, hub: HubProcess, http: aiohttp.ClientSession, tally: Tally) -> None:
        self.hub = hub
        self.http = http
        self.tally = tally
        self.sessions: dict[str, str] = {}  # center -> session id
        self.wires: dict[str, Wire] = {}
        self.next_id = 1
        self.log_offset = 0
        self.contract: Contract | None = None
        self.ids: dict[str, list[str]] = defaultdict(list)  # help, timer, ... ids seen

    def token(self, actor: str, **kw: Any) -> str:
        sub, role, center = ACTORS[actor]
        return self.hub.token(sub, role, center, **kw)

    async def rest(
        self, method: str, path: str, token: str | None, **kw: Any
    ) -> tuple[int, Any, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kw.pop("headers", {}))
        url = URL(self.hub.url + path, encoded=True)
        async with self.http.request(method, url, headers=headers, **kw) as resp:
            raw = await resp.read()
            return resp.status, None, raw

    async def setup(self) -> None:
        async with self.http.get(self.hub.url + f"{API}/openapi.json") as resp:
            self.contract = Contract(await resp.json())
        for center, students in (("c1", ["s1", "s2"]), ("c2", ["s1"])):
            token = self.hub.token("tutor-1", Role.TUTOR, center)
            status, _, raw = await self.rest("POST", SESSIONS, token, json=session_body())
            assert status == 201, raw
            session_id = strict(raw, "create")["data"]["id"]
            self.sessions[center] = session_id
            for student in students:
                body = {"student_id": student, "student_name": f"Student {student}"}
                path = f"{SESSIONS}/{session_id}/enrollments"
                status, _, raw = await self.rest("POST", path, token, json=body)
                assert status == 201, raw
        for actor in ACTORS:
            await self.rejoin(actor)

    async def rejoin(self, actor: str) -> None:
        """A connected raw socket for ``actor``, joined to its center's session."""
        wire = self.wires.get(actor)
        if wire is None or wire.ws.closed:
            wire = await Wire.connect(self.http, self.hub.url, self.token(actor))
            self.wires[actor] = wire
        session_id = self.sessions[ACTORS[actor][2]]
        n = self.take_id()
        await wire.ws.send_str(f"42{n}" + event_text("session:join", {"session_id": session_id}))
        acks, closed = await wire.collect({n})
        assert not closed, f"{actor}: closed on join"
        strict(acks[n], f"{actor}'s join ack")

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- the log ----------------------------------------------------------------

    def check_log(self, context: str) -> None:
        with self.hub.log_path.open("rb") as log:
            log.seek(self.log_offset)
            new = log.read().decode(errors="replace")
        self.log_offset += len(new.encode(errors="replace"))
        problem = LOG_PROBLEM.search(new)
        if problem is not None:
            start = max(0, problem.start() - 200)
            raise Finding(f"the hub logged a problem after {context}:\n{new[start : start + 3000]}")

    # -- the state a refusal must leave alone ----------------------------------------

    async def fingerprint(self) -> Any:
        """What REST and a fresh observer's join show of both centers' sessions."""
        seen: dict[str, Any] = {}
        for center, session_id in self.sessions.items():
            token = self.hub.token("admin-1", Role.CENTER_ADMIN, center)
            base = f"{SESSIONS}/{session_id}"
            reads = [base, f"{base}/enrollments", f"{base}/help", f"{base}/notes"]
            reads += [f"{base}/canvases/{s}" for s in ("s1", "s2")]
            for path in reads:
                status, _, raw = await self.rest("GET", path, token)
                seen[path] = (status, strip_volatile(strict(raw, f"GET {path}")))
            wire = await Wire.connect(self.http, self.hub.url, token)
            try:
                n = self.take_id()
                payload = {"session_id": session_id}
                await wire.ws.send_str(f"42{n}" + event_text("session:join", payload))
                acks, _ = await wire.collect({n})
                seen[f"join {center}"] = strip_volatile(strict(acks[n], "a fresh join"))
            finally:
                await wire.ws.close()
        return seen


VOLATILE = {
    "status",  # a student's presence, the session's LIVE once the tutor joined
    "since",
    "session_time_s",
    "total_time_s",
    "expires_at",
    "started_at",
    "last_seen_at",
    "active_s",
    "idle_s",
    "escalated",
    "time_to_first_response_s",
    "time_to_resolve_s",
    "epoch",  # a canvas's epoch when it is loaded again
    "attendance",
    "focused",
}


def strip_volatile(value: Any) -> Any:
    """``value`` without what changes with time and presence alone."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


# -- socket events ------------------------------------------------------------------


def bases(world: World, actor: str, event: str, rng: random.Random) -> dict[str, Any]:
    """A valid-looking payload of ``event`` for ``actor``."""
    center = ACTORS[actor][2]
    sid = world.sessions[center]
    student = rng.choice(["s1", "s2", "s9"])
    own = ACTORS[actor][0]
    pick = lambda kind: rng.choice(world.ids[kind] or ["missing"])  # noqa: E731
    element = rng.choice(["a", "b", "c"])
    if event == "session:join":
        return {"session_id": sid, "since": {student: rng.randint(0, 5)}}
    if event in ("session:leave", "session:end"):
        return {"session_id": sid if event == "session:leave" else "not-this-one"}
    if event == "auth:refresh":
        return {"token": world.token(actor)}
    if event == "canvas:patch":
        if ACTORS[actor][1] == Role.STUDENT:
            path = rng.choice([f"/elements/{element}", "/meta/title"])
            return {"session_id": sid, "ops": [{"op": "add", "path": path, "value": {"n": 1}}]}
        ops = [{"op": "add", "path": f"/annotations/{element}", "value": {"type": "note"}}]
        return {"session_id": sid, "student_id": student, "ops": ops, "client_ref": "r1"}
    if event == "canvas:sync":
        return {
            "session_id": sid,
            "student_id": own if own.startswith("s") else student,
            "since": 0,
        }
    if event == "presence:ping":
        return {"session_id": sid, "state": rng.choice(["active", "idle"]), "focused": True}
    if event == "mode:set":
        return {"session_id": sid, "student_id": student, "mode": rng.choice(["TEACH", "OBSERVE"])}
    if event == "exercise:assign":
        exercise = {"id": "ex-1", "title": "Fractions", "level": rng.randint(1, 3)}
        return {"session_id": sid, "student_id": student, "exercise": exercise}
    if event == "exercise:progress":
        return {"session_id": sid, "exercise_id": "ex-1", "progress_pct": rng.randint(0, 100)}
    if event == "note:add":
        return {"session_id": sid, "student_id": student, "text": "good", "visibility": "PRIVATE"}
    if event == "help:request":
        priority = rng.choice(["LOW", "NORMAL", "HIGH", "URGENT"])
        return {"session_id": sid, "message": "stuck", "priority": priority, "exercise_id": "e"}
    if event == "help:update":
        status = rng.choice(["IN_PROGRESS", "RESOLVED", "CANCELLED"])
        return {"session_id": sid, "help_id": pick("help"), "status": status, "response": "ok"}
    if event == "timer:start":
        return {"session_id": sid, "label": "quiz", "duration_s": 600, "warn_before_s": 60}
    if event == "timer:cancel":
        return {"session_id": sid, "timer_id": pick("timer")}
    assert event == "announcement:send", event
    return {"session_id": sid, "text": "listen", "student_id": student}


def ack_of(text_: str, payload: Payload, actor: str) -> dict[str, Any]:
    decoded = strict(text_, f"{actor}'s ack for {payload.event} ({payload.kind})")
    if not isinstance(decoded, list) or len(decoded) != 1 or not isinstance(decoded[0], dict):
        raise Finding(f"ack is not one object: {text_[:300]} for {payload.text[:300]}")
    ack: dict[str, Any] = decoded[0]
    if ack.get("ok") is True:
        if payload.must_refuse:
            raise Finding(f"{actor}: accepted what the contract refuses: {payload.text[:500]}")
        return ack
    code = ack.get("error", {}).get("code") if ack.get("ok") is False else None
    if code not in ERROR_CODES:
        raise Finding(f"{actor}: ack {text_[:500]} for {payload.event}: {payload.text[:500]}")
    return ack


async def socket_batch(world: World, actor: str, payloads: list[Payload], compare: bool) -> None:
    """Send ``payloads`` from ``actor``'s socket, all in flight at once; check each ack,
    the log, and (``compare``) that a batch refused throughout changed nothing."""
    await world.rejoin(actor)
    before = await world.fingerprint() if compare else None
    wire = world.wires[actor]
    ids: dict[int, Payload] = {}
    for payload in payloads:
        n = world.take_id()
        ids[n] = payload
        if payload.attachments:
            await wire.ws.send_str(f"45{len(payload.attachments)}-{n}{payload.text}")
            for blob in payload.attachments:
                await wire.ws.send_bytes(blob)
        else:
            await wire.ws.send_str(f"42{n}{payload.text}")
    acks, closed = await wire.collect(set(ids))
    accepted = False
    # Only a message over HUB_MAX_MESSAGE_BYTES may close the connection (and lose the
    # acks of the batch's other payloads).
    oversized = any(len(p.text.encode()) > MAX_MESSAGE_BYTES for p in payloads)
    for n, payload in ids.items():
        if n not in acks:
            if not oversized:
                raise Finding(f"{actor}: closed with no ack for {payload.text[:500]}")
            world.tally.add(payload.event, "closed")
            continue
        ack = ack_of(acks[n], payload, actor)
        outcome = "ok" if ack["ok"] else ack["error"]["code"]
        world.tally.add(payload.event, outcome)
        if ack["ok"]:
            accepted = True
            remember(world, ack)
    if closed:
        world.tally.closed += 1
    world.check_log(f"{actor}'s batch of {[p.event for p in payloads]}")
    if before is not None and not accepted:
        after = await world.fingerprint()
        if after != before:
            raise Finding(
                f"a refused batch changed the state ({actor}): "
                f"{[p.text[:200] for p in payloads]}\n{diff(before, after)}"
            )
        world.tally.compared += 1


def remember(world: World, ack: dict[str, Any]) -> None:
    for kind in ("help_request", "timer"):
        if isinstance(ack.get(kind), dict) and "id" in ack[kind]:
            world.ids[kind.split("_")[0]].append(ack[kind]["id"])


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        f"{key}:\n  before {json.dumps(before.get(key))[:800]}"
        f"\n  after  {json.dumps(after.get(key))[:800]}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    return "\n".join(lines)


async def raw_batch(world: World, frames: list[str | bytes]) -> None:
    """Raw frames on a fresh socket: each gets an error ack, or the hub closes the
    connection; then the hub still answers others, and logs nothing."""
    wire = await Wire.connect(world.http, world.hub.url, world.token("student"))
    try:
        for frame in frames:
            if isinstance(frame, bytes):
                await wire.ws.send_bytes(frame)
            else:
                await wire.ws.send_str(frame)
            world.tally.add("raw frame", "sent")
        n = world.take_id()
        ping = event_text("presence:ping", {"session_id": "nope", "state": "active"})
        await wire.ws.send_str(f"42{n}{ping}")
        # After a Socket.IO disconnect ("41") the socket has left the namespace: the hub
        # rightly drops its later events, as python-socketio does.
        left = any(isinstance(f, str) and f.startswith("41") for f in frames)
        try:
            acks, closed = await wire.collect({n}, within=2.0 if left else WAIT_S)
        except Finding:
            if not left:
                raise
            acks, closed = {}, False
        if closed:
            world.tally.closed += 1
        else:
            for ack_id, text_ in acks.items():
                strict(text_, f"ack {ack_id} after raw frames {frames!r:.300}")
    finally:
        await wire.ws.close()
    await world.rejoin("tutor")  # the others are untouched
    world.check_log(f"raw frames {frames!r:.500}")


# -- REST ----------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")
NO_TOKEN = {"/healthz", "/readyz", "/metrics", f"{API}/openapi.json"}
hostile_text = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "..",
            "%00",
            "\x00",
            "a" * 129,
            "x" * 5000,
            "99999999999999999999",
            "-1",
            "NaN",
            "Infinity",
            "1e999",
            "true",
            "null",
            "[]",
            "{}",
            "😀",
            "\ud800",
            "/",
            "?",
            "#",
            "%",
            "'; drop table x;--",
        ]
    ),
    st.text(max_size=30),
)


@st.composite
def from_schema(
    draw: st.DrawFn, schema: dict[str, Any], components: dict[str, Any], depth: int = 0
) -> Any:
    """A value that mostly fits ``schema`` (OpenAPI's JSON Schema subset)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return draw(from_schema(components["schemas"][name], components, depth))
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema["oneOf"]
        return draw(from_schema(draw(st.sampled_from(options)), components, depth))
    if "allOf" in schema:
        return draw(from_schema(schema["allOf"][0], components, depth))
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = draw(st.sampled_from(kind))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        out = {}
        for name, sub in props.items():
            if name in required or draw(st.booleans()):
                out[name] = draw(from_schema(sub, components, depth + 1))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and depth < 3:
            for key in draw(st.lists(st.text(min_size=1, max_size=8), max_size=2)):
                out[key] = draw(from_schema(extra, components, depth + 1))
        return out
    if kind == "array":
        items = schema.get("items", {})
        size = draw(st.integers(schema.get("minItems", 0), min(schema.get("maxItems", 3), 3)))
        return [draw(from_schema(items, components, depth + 1)) for _ in range(size)]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return draw(st.sampled_from(["2026-12-07T10:00:00Z", "2026-12-08T11:30:00+00:00"]))
        if fmt == "date":
            return draw(st.sampled_from(["2026-12-07", "2027-01-31"]))
        if fmt == "email":
            return "someone@example.org"
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 20), 20)
        return draw(
            st.text(
                st.characters(codec="utf-8", exclude_characters="\x00"),
                min_size=low,
                max_size=max(low, high),
            )
        )
    if kind == "integer":
        low = schema.get("minimum", -5)
        high = schema.get("maximum", max(low, 0) + 100)
        return draw(st.integers(int(low), int(min(high, low + 10_000))))
    if kind == "number":
        low = schema.get("minimum", 0)
        return draw(st.floats(low, low + 1000, allow_nan=False))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    return draw(scalar)


class Request:
    """One REST request (a plain class: hypothesis prints it by its ``repr``)."""

    def __init__(
        self,
        method: str,
        template: str,
        path: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        content_type: str,
        token: str,
        must_refuse: bool,
    ) -> None:
        self.method = method
        self.template = template
        self.path = path
        self.query = query
        self.body = body
        self.content_type = content_type
        self.token = token
        self.must_refuse = must_refuse

    def __repr__(self) -> str:
        return (
            f"Request({self.method} {shorten(self.path)} query {shorten(str(self.query))} "
            f"body {shorten(self.body)} type {self.content_type!r} token {shorten(self.token, 40)})"
        )


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (method, path template, operation) of the document."""
    return [
        (method.upper(), path, item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]


@st.composite
def request_for(
    draw: st.DrawFn,
    world: World,
    document: dict[str, Any],
    method: str,
    template: str,
    operation: dict[str, Any],
) -> Request:
    components = document["components"]
    must_refuse = False
    known = {
        "session_id": list(world.sessions.values()),
        "student_id": ["s1", "s2", "s9"],
        "tutor_id": ["tutor-1", "tutor-2"],
        "user_id": ["tutor-1", "s1", "p1"],
        "parent_id": ["p1"],
    }

    def segment(name: str) -> str:
        value = draw(st.one_of(st.sampled_from(known.get(name, ["x1"])), hostile_text))
        return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")

    path = re.sub(r"\{(\w+)\}", lambda m: segment(m.group(1)), template)
    query: list[tuple[str, str]] = []
    for param in operation.get("parameters", []):
        if param["in"] != "query" or not draw(st.booleans()):
            continue
        value = draw(st.one_of(from_schema(param.get("schema", {}), components), hostile_text))
        as_text = json.dumps(value) if not isinstance(value, str) else value
        query.append((param["name"], as_text))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(st.text(min_size=1, max_size=8)), draw(hostile_text)))
    body: bytes | None = None
    content_type = "application/json"
    schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema")
    )
    if schema is not None or draw(st.integers(0, 4)) == 0:
        value = draw(from_schema(schema or {"type": "object"}, components))
        how = draw(
            st.sampled_from(
                ["valid", "valid", "unsafe", "nul", "deep", "not_json", "huge", "wrong", "empty"]
            )
        )
        text_ = json.dumps(value, ensure_ascii=False)
        if how == "unsafe" and isinstance(value, dict) and value:
            key = draw(st.sampled_from(sorted(value)))
            marker = f"@@raw{secrets.token_hex(4)}@@"
            text_ = json.dumps({**value, key: marker}).replace(
                f'"{marker}"', draw(st.sampled_from(UNSAFE_JSON))
            )
            must_refuse = method != "GET"
        elif how == "nul" and isinstance(value, dict) and value:
            key = draw(st.sampled_from(sorted(value)))
            text_ = json.dumps({**value, key: "a\x00b"})
        elif how == "deep":
            depth = draw(st.integers(100, 5_000))
            text_ = '{"x": ' + "[" * depth + "1" + "]" * depth + "}"
        elif how == "not_json":
            text_ = draw(st.sampled_from(["{", "nul", "[1,]", "{'a': 1}", "\ufeff{}", "{}{}"]))
            content_type = draw(st.sampled_from(["application/json", "text/plain", ""]))
        elif how == "huge":
            text_ = json.dumps({"x": "y" * draw(st.integers(10_000, 1_200_000))})
        elif how == "wrong":
            text_ = json.dumps(draw(json_value))
        elif how == "empty":
            text_ = ""
        body = text_.encode("utf-8", "surrogatepass")
    token_kind = draw(st.sampled_from([*ACTORS, *ACTORS, "none", "garbage", "huge", "expired"]))
    if token_kind in ACTORS:
        token = world.token(token_kind)
    elif token_kind == "expired":
        token = world.token("tutor", ttl_s=-3600)
    elif token_kind == "huge":
        # Under aiohttp's 8,190-byte header line: a longer one is an open defect
        # (test_fuzz.py::test_a_bearer_token_over_the_header_limit_...).
        token = "e" * draw(st.integers(1_000, 8_000))
    else:
        token = {"none": "", "garbage": "not.a.jwt"}[token_kind]
    return Request(method, template, path, query, body, content_type, token, must_refuse)


async def rest_batch(world: World, requests: list[Request], compare: bool) -> None:
    """Send ``requests``; check each answer, the log, and that refusals changed nothing."""
    assert world.contract is not None
    before = await world.fingerprint() if compare else None
    changed = False
    for req in requests:
        headers = {"Content-Type": req.content_type} if req.body is not None else {}
        path = req.path
        if req.query:
            path += "?" + urllib.parse.urlencode(
                [(k, v.encode("utf-8", "surrogatepass")) for k, v in req.query]
            )
        status, _, raw = await world.rest(
            req.method, path, req.token or None, data=req.body, headers=headers
        )
        what = f"{req.method} {path[:300]} body {req.body[:300] if req.body else None!r}"
        world.tally.add(f"{req.method} {req.template}", str(status))
        if status >= 500:
            raise Finding(f"{what} -> {status}: {raw[:500]!r}")
        if req.template == "/metrics" or status in (204, 304) or not raw:
            body: Any = None
        else:
            body = strict(raw, what)
        if req.template != "/metrics":
            try:
                world.contract.check(req.method, req.path.split("?")[0], status, body)
            except AssertionError as exc:
                raise Finding(f"{what}: {exc}") from None
        if req.must_refuse and status < 400:
            raise Finding(f"{what} -> {status}: accepted what the contract refuses")
        if req.method != "GET" and status < 400:
            changed = True
    world.check_log(f"REST batch {[(r.method, r.path[:80]) for r in requests]}")
    if before is not None and not changed:
        after = await world.fingerprint()
        if after != before:
            raise Finding(f"refused REST requests changed the state:\n{diff(before, after)}")
        world.tally.compared += 1


# -- a stock JavaScript client ------------------------------------------------------

WATCH_SCRIPT = ROOT / "tests" / "js" / "fuzz_watch.mjs"
JS_WATCHERS = ("tutor", "student2", "supervisor")


class JsWatch:
    """``tests/js/fuzz_watch.mjs``: stock socket.io-client sockets of the first center's
    session that listen while the run fuzzes, and join again at the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, node: str, world: World, max_s: float) -> JsWatch:
        scenario = {
            "url": world.hub.url,
            "session_id": world.sessions["c1"],
            "tokens": {name: world.token(name, ttl_s=max_s + 3600) for name in JS_WATCHERS},
            "max_s": max_s,
        }
        proc = await asyncio.create_subprocess_exec(
            node,
            str(WATCH_SCRIPT),
            json.dumps(scenario),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT_S * 3)
        if line.strip() != b"ready":
            proc.kill()
            rest = await proc.stderr.read()
            raise AssertionError(f"fuzz_watch.mjs did not start: {line!r} {rest[-2000:]!r}")
        return cls(proc)

    async def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), WAIT_S * 6)
        assert self.proc.returncode == 0, f"fuzz_watch.mjs exited {self.proc.returncode}: {err!r}"
        seen: dict[str, Any] = json.loads(out)
        return seen


async def check_js(world: World, seen: dict[str, Any]) -> None:
    """The stock JS clients decoded everything (no disconnect), and the canvases they
    get equal what REST returns and what a fresh python-socketio join returns."""
    if seen["disconnects"]:
        raise Finding(f"a stock JS client was disconnected: {seen['disconnects']}")
    session_id = world.sessions["c1"]
    fresh = Client()
    await fresh.connect(world.hub.url, world.token("tutor"))
    try:
        python_join = await fresh.join(session_id)
    finally:
        await fresh.sio.disconnect()
    js_join = seen["joins"]["tutor"]
    assert js_join["ok"] and python_join["ok"], (js_join, python_join)
    assert sorted(js_join["canvases"]) == ["s1", "s2"], js_join["canvases"]
    for student, canvas in js_join["canvases"].items():
        path = f"{SESSIONS}/{session_id}/canvases/{student}"
        status, _, raw = await world.rest("GET", path, world.token("tutor"))
        assert status == 200, raw
        rest = strict(raw, f"GET {path}")["data"]
        theirs = python_join["canvases"][student]
        if not (canvas["doc"] == rest["doc"] == theirs["doc"]):
            raise Finding(
                f"canvas {student}: JS join {canvas['doc']}\nREST {rest['doc']}\n"
                f"python join {theirs['doc']}"
            )
        if not (canvas["seq"] == rest["seq"] == theirs["seq"]):
            raise Finding(f"canvas {student}: seqs {canvas['seq']} {rest['seq']} {theirs['seq']}")
        synced = seen["syncs"]["tutor"][student]
        if not synced["ok"] or synced["seq"] != canvas["seq"]:
            raise Finding(f"canvas {student}: JS canvas:sync since 0 {synced}")
        if "doc" in synced and synced["doc"] != canvas["doc"]:
            raise Finding(f"canvas {student}: JS canvas:sync doc {synced['doc']}")
    world.tally.add("JS clients", "checked")


# -- running --------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How much a run sends: batches of ``batch`` payloads, per event and per route."""

    per_event: int
    per_route: int
    raw_frames: int
    batch: int = 25
    compare_every: int = 1  # compare the state around every n-th batch


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, examples),
        deadline=None,
        database=None,
        derandomize=os.environ.get("HUB_FUZZ_SEED") is None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


def run_socket_events(
    runner: asyncio.Runner, world: World, budget: Budget, events: list[str] | None = None
) -> None:
    for event in events or list(EVENTS):
        fuzz_event(runner, world, budget, event)


def fuzz_event(runner: asyncio.Runner, world: World, budget: Budget, event: str) -> None:
    """``budget.per_event`` payloads of ``event``, in batches from one actor each."""
    count = [0]

    @hypothesis_settings(math.ceil(budget.per_event / budget.batch))
    @given(data=st.data())
    def batches(data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(WEIGHTED_ACTORS), label="actor")
        rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
        payloads = [
            data.draw(mutated(event, bases(world, actor, event, rng))) for _ in range(budget.batch)
        ]
        count[0] += 1
        compare = count[0] % budget.compare_every == 0
        runner.run(socket_batch(world, actor, payloads, compare))

    batches()


def run_raw_frames(runner: asyncio.Runner, world: World, budget: Budget) -> None:
    @hypothesis_settings(math.ceil(budget.raw_frames / 3))
    @given(frames=st.lists(raw_frame, min_size=1, max_size=5))
    def fuzz_frames(frames: list[str | bytes]) -> None:
        runner.run(raw_batch(world, frames))

    fuzz_frames()


def run_rest(
    runner: asyncio.Runner,
    world: World,
    budget: Budget,
    document: dict[str, Any],
    only: Callable[[str, str], bool] = lambda method, path: True,
) -> None:
    for method, template, operation in operations(document):
        if only(method, template):
            fuzz_route(runner, world, budget, document, (method, template, operation))


def fuzz_route(
    runner: asyncio.Runner,
    world: World,
    budget: Budget,
    document: dict[str, Any],
    route: tuple[str, str, dict[str, Any]],
) -> None:
    """``budget.per_route`` requests to one REST operation, in batches."""
    batch = max(1, budget.batch // 5)

    @hypothesis_settings(math.ceil(budget.per_route / batch))
    @given(data=st.data())
    def batches(data: st.DataObject) -> None:
        requests = [data.draw(request_for(world, document, *route)) for _ in range(batch)]
        runner.run(rest_batch(world, requests, compare=True))

    batches()


def start(tmp: Path) -> HubProcess:
    hub = spawn_hub(tmp, f"fuzz-secret-{secrets.token_hex(16)}", forked=True)
    hub.wait_healthy()
    return hub


async def openapi(world: World) -> dict[str, Any]:
    async with world.http.get(world.hub.url + f"{API}/openapi.json") as resp:
        document: dict[str, Any] = await resp.json()
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--per-event", type=int, default=10_000, help="payloads per socket event")
    parser.add_argument("--per-route", type=int, default=200, help="requests per REST operation")
    parser.add_argument("--raw-frames", type=int, default=10_000, help="raw malformed frames")
    parser.add_argument("--batch", type=int, default=50, help="payloads in flight at once")
    parser.add_argument("--node", default="node", help="Node.js, with tests/js/node_modules")
    args = parser.parse_args(argv)
    budget = Budget(args.per_event, args.per_route, args.raw_frames, args.batch)
    started = time.monotonic()
    tally = Tally()
    findings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hub-fuzz-") as tmp, asyncio.Runner() as runner:
        hub = start(Path(tmp))
        http = runner.run(_session())
        world = World(hub, http, tally)
        try:
            runner.run(world.setup())
            document = runner.run(openapi(world))
            watch = runner.run(JsWatch.start(args.node, world, max_s=6 * 3600))
            # A finding ends its own part (after hypothesis shrank it); the run goes on.
            parts: list[tuple[str, Callable[[], None]]] = [
                (event, lambda event=event: fuzz_event(runner, world, budget, event))
                for event in EVENTS
            ]
            parts.append(("raw frames", lambda: run_raw_frames(runner, world, budget)))
            parts.append(
                ("JS clients", lambda: runner.run(check_js(world, runner.run(watch.finish()))))
            )
            parts += [
                (f"{r[0]} {r[1]}", lambda r=r: fuzz_route(runner, world, budget, document, r))
                for r in operations(document)
            ]
            for name, part in parts:
                try:
                    part()
                except Exception as exc:  # a finding, reported with the others
                    findings.append(f"{name}: {type(exc).__name__}: {str(exc)[:3000]}")
                    print(f"FINDING in {name}:\n{str(exc)[:3000]}", flush=True)
                print(f"{time.monotonic() - started:.0f} s: {name} done", flush=True)
            world.check_log("the run")
        finally:
            runner.run(http.close())
            code = hub.stop()
        wall = time.monotonic() - started
        print(report(tally, wall, hub, code))
        print(f"findings: {len(findings)}")
        for finding in findings:
            print(f"- {finding}")
    return 1 if findings else 0


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def report(tally: Tally, wall: float, hub: HubProcess, code: int | None) -> str:
    size = hub.log_path.stat().st_size if hub.log_path.exists() else 0
    lines = [
        f"wall time {wall:.0f} s; hub exit code {code}; hub log {size} bytes",
        f"refused batches compared before/after: {tally.compared}; "
        f"connections the hub closed: {tally.closed}",
    ]
    for what in sorted(tally.sent):
        outcomes = ", ".join(f"{k} {v}" for k, v in tally.outcomes[what].most_common())
        lines.append(f"{what}: {tally.sent[what]} ({outcomes})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
