"""How canvas patches travel between hubs: as JSON in the Redis log and in ``CANVAS``
frames on the session's channel (``realtime.bus``).

A frame's payload is ``{"key": [center, session, student], "patches": [...]}``;
the advance script (``canvas/lua/advance.lua``) assembles it from a head, the
log's entries as they are stored, and a tail, so a patch is encoded once.
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

FRAME_TAIL = b"]}"


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


def decode(data: dict[str, Any], node: str = "") -> Entry:
    ops: list[dict[str, Any]] = data["ops"]
    patch = Patch.of(
        int(data["seq"]),
        str(data["epoch"]),
        Author(data["author"]),
        str(data["author_id"]),
        ops,
        datetime.fromisoformat(data["at"]),
    )
    return Entry(patch, ops, node)


def frame_start(node_id: str, key: CanvasKey) -> bytes:
    """The ``CANVAS`` frame of ``key``'s patches up to the first patch."""
    head = b'{"key":' + orjson.dumps([key.center_id, key.session_id, key.student_id])
    return frame(node_id, CANVAS, head + b',"patches":[')


def canvas_frame(node_id: str, key: CanvasKey, patches: Sequence[Patch]) -> bytes:
    """The ``CANVAS`` frame of ``patches``, as the advance script publishes it."""
    return frame_start(node_id, key) + b",".join(encode(p) for p in patches) + FRAME_TAIL


def read_frame(payload: bytes) -> tuple[CanvasKey, list[Entry]]:
    """The canvas and patches of a ``CANVAS`` frame's payload."""
    message = orjson.loads(payload)
    return CanvasKey(*message["key"]), [decode(p) for p in message["patches"]]
