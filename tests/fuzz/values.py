"""Hostile values and payloads: what the harness puts where valid data belongs."""

from __future__ import annotations

import functools
import json
import secrets
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from canvas.service import CanvasPatch, CanvasSync
from realtime.base.events import AuthRefresh, PresencePing, SessionJoin, SessionLeave
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
from tests.fuzz.world import ACTORS, event_text, shorten

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


def with_raw(event: str, payload: dict[str, Any], key: str, raw: str) -> str:
    """The event list with ``payload[key]`` replaced by raw JSON text."""
    marker = f"@@raw{secrets.token_hex(4)}@@"
    return event_text(event, {**payload, key: marker}).replace(f'"{marker}"', raw)


# The hostile ways the contract refuses whatever the state (see ``mutated``).
REFUSED_KINDS = [
    "drop",
    "extra",
    "wrong_type",
    "unsafe_number",
    "nul",
    "deep",
    "arguments",
    "not_object",
]


@functools.cache
def schema_of(event: str) -> dict[str, Any]:
    """The JSON schema of ``event``'s payload (pydantic builds it anew on each call)."""
    return EVENTS[event].model_json_schema()


@st.composite
def mutated(
    draw: st.DrawFn, event: str, base: dict[str, Any], refused_only: bool = False
) -> Payload:
    """``base`` (a valid payload) sent as is or made hostile, one way drawn;
    ``refused_only``: only ways the contract refuses."""
    schema = schema_of(event)
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    keys = sorted(base) or ["session_id"]
    key = draw(st.sampled_from(keys))
    if refused_only:
        kind = draw(
            st.sampled_from(
                REFUSED_KINDS + (["bad_path", "bad_op"] if event == "canvas:patch" else [])
            )
        )
        if kind == "drop":
            key = draw(st.sampled_from(sorted(required & set(keys))))
        elif kind == "wrong_type" and not wrong_types(props.get(key, {})):
            kind = "extra"
    else:
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
        # docs/protocol.md, Patches: a path at or above a section, or in no section, is
        # refused; the second list depends on the canvas and the sender.
        refused = ["", "/", "elements", "/elements", "/meta", "/nothing/x", "/-", "//"]
        refused += ["/elements/~2", "/elements/a~"]
        maybe = ["/elements/", "/elements/a/b", "/annotations/x", "/meta/x/0", "/elements/a/-"]
        path = draw(st.sampled_from(refused if refused_only else refused + maybe))
        ops = [{"op": "add", "path": path, "value": {"type": "stroke"}}]
        return Payload(event, kind, event_text(event, {**base, "ops": ops}), path in refused)
    assert kind == "bad_op"
    refused_ops: list[Any] = [
        {"op": "jump", "path": "/elements/a"},
        {"path": "/elements/a", "value": 1},
        {"op": "add", "path": "/elements/a"},
        {"op": "add", "path": 5, "value": 1},
        {"op": "add", "path": "/elements/a", "value": 1, "extra": 1},
        {"op": "move", "path": "/elements/b"},
        {"op": "add", "path": "/elements/" + "i" * 129, "value": 1},
        [],
        "add",
        None,
    ]
    # RFC 6902 ops the hub serves: taken or refused by the canvas's state.
    maybe_ops: list[Any] = [
        {"op": "move", "from": "/elements/a", "path": "/elements/b"},
        {"op": "copy", "from": "/elements/a", "path": "/elements/b"},
        {"op": "copy", "from": "/annotations/a", "path": "/elements/b"},
        {"op": "test", "path": "/elements/a", "value": 1},
        {"op": "test", "path": "/elements/a", "value": {"n": 1}},
        {"op": "remove", "path": "/elements/a"},
        {"op": "replace", "path": "/meta/title", "value": None},
    ]
    op = draw(st.sampled_from(refused_ops if refused_only else refused_ops + maybe_ops))
    ops = [op] if draw(st.booleans()) else [{"op": "add", "path": "/elements/c", "value": 2}, op]
    return Payload(event, kind, event_text(event, {**base, "ops": ops}), op in refused_ops)


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


WEIGHTED_ACTORS = ["tutor", "student"] * 4 + ["student2", "c2_tutor"] * 2 + sorted(ACTORS)
