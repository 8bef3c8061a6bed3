"""JSON for the wire and the database: orjson, with the standard library behind it.

orjson encodes and decodes several times faster than ``json``; the hub
spends a good part of each patch there (see ``docs/benchmarks.md``). It
refuses a few inputs the standard library takes (integers beyond 64 bits,
``NaN``), so those fall back to ``json`` and the hub behaves exactly as it did
with ``json`` alone: nothing a client could send before is now dropped.

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
