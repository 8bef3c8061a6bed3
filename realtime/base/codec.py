"""JSON for the wire and the database: orjson, with the standard library behind it.

orjson encodes and decodes several times faster than ``json``; the hub
spends a good part of each patch there (see ``docs/benchmarks.md``).

Input is strict JSON (RFC 8259): ``loads`` refuses ``NaN``, ``Infinity``, a
number too large for a double (``1e999``) and a lone surrogate escape
(``"\ud800"``), which no stock client decodes alike (JavaScript's
``JSON.parse`` refuses the first three; Postgres refuses the last), so the
hub never acks a value it could not hand to everyone unchanged. orjson reads an
integer beyond 64 bits as a float, as JavaScript reads every number
(``docs/protocol.md``). On output, integers beyond 64 bits, which orjson
refuses, fall back to ``json``.

``loads_stored`` reads the database's JSON columns: rows written before the
wire was strict may hold those values; they read as the relay showed them then
(``null``), so an old session still loads.

``CODEC`` has the ``dumps``/``loads`` signature python-socketio and
python-engineio expect of their ``json`` module.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Strict JSON; raises ``ValueError`` (``orjson.JSONDecodeError``) on anything else."""
    return orjson.loads(text)


def loads_stored(text: str | bytes) -> Any:
    """A stored JSON value; non-finite numbers written before the wire was strict read
    as ``null``, and lone surrogates as ``?``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        value = json.loads(text, parse_constant=_none, parse_float=_finite_or_none)
        return orjson.loads(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace"))


def _none(_text: str) -> None:
    return None


def _finite_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def encoded_bytes(value: Any) -> bytes:
    """Compact JSON as bytes of their own size, to keep in memory: the bytes orjson
    returns hold a buffer of at least 4 KiB (seen with tracemalloc: 4,089 bytes
    allocated for a 148-byte answer), nine times what a 460-byte stroke needs."""
    try:
        return orjson.dumps(value).decode().encode()
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def encoded(value: Any) -> orjson.Fragment:
    """``value`` encoded once, to embed as is in later ``dumps`` (orjson only)."""
    return orjson.Fragment(encoded_bytes(value))


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
