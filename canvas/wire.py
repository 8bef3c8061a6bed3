"""How canvas patches travel between hubs: as JSON in ``CANVAS`` frames on the
session's channel (``realtime.bus``).

A frame's payload is ``{"key": [center, session, student], "patches": [...]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from canvas.document import Author
from canvas.sequencer import Entry
from canvas.store import CanvasKey, Patch
from realtime.bus.bus import CANVAS, frame


def encode(patch: Patch) -> bytes:
    return orjson.dumps(
        {
            "seq": patch.seq,
            "epoch": patch.epoch,
            "author": patch.author.value,
            "author_id": patch.author_id,
            "ops": patch.fragment,
            "at": patch.at,
        }
    )


def decode(data: dict[str, Any]) -> Entry:
    ops: list[dict[str, Any]] = data["ops"]
    patch = Patch.of(
        int(data["seq"]),
        str(data["epoch"]),
        Author(data["author"]),
        str(data["author_id"]),
        ops,
        datetime.fromisoformat(data["at"]),
    )
    return Entry(patch, ops)


def canvas_frame(node_id: str, key: CanvasKey, patches: Sequence[Patch]) -> bytes:
    """The ``CANVAS`` frame of ``patches``."""
    head = b'{"key":' + orjson.dumps([key.center_id, key.session_id, key.student_id])
    body = b",".join(encode(p) for p in patches)
    return frame(node_id, CANVAS, head + b',"patches":[' + body + b"]}")


def read_frame(payload: bytes) -> tuple[CanvasKey, list[Entry]]:
    """The canvas and patches of a ``CANVAS`` frame's payload."""
    message = orjson.loads(payload)
    return CanvasKey(*message["key"]), [decode(p) for p in message["patches"]]
