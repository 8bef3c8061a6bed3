"""JSON for the wire and the database: orjson, with the standard library behind it.

orjson encodes and decodes several times faster than ``json``; the hub
spends a good part of each patch there (see ``docs/benchmarks.md``). What
orjson refuses falls back to ``json``, so nothing a client could send before
is dropped now: ``NaN`` and ``Infinity`` on input, integers beyond 64 bits on
output. One difference remains, settled in ``docs/protocol.md``: orjson
reads an integer beyond 64 bits as a float, as JavaScript reads every number.

``CODEC`` has the ``dumps``/``loads`` signature python-socketio and
python-engineio expect of their ``json`` module.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def encoded(value: Any) -> orjson.Fragment:
    """``value`` encoded once, to embed as is in later ``dumps`` (orjson only)."""
    return orjson.Fragment(dumps(value))


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(json.dumps(value, separators=(",", ":")).encode())


class Codec:
    """The ``json`` module python-socketio is given (it passes ``separators``)."""

    @staticmethod
    def dumps(value: Any, *_args: Any, **_kwargs: Any) -> str:
        return dumps(value)

    @staticmethod
    def loads(text: str | bytes, *_args: Any, **_kwargs: Any) -> Any:
        return loads(text)


CODEC = Codec()
