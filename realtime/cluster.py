"""Several hub processes sharing live sessions through Redis: channel names and framing.

Every message between hubs goes on the channel of one session; a hub
subscribes to a session's channel only while it has members of that session,
so a hub pays only for the sessions it hosts. A message is framed as
``<node id> NUL <kind byte> <payload>``: a hub drops its own echoes, and
routes the others by kind, without decoding the payload.
"""

from __future__ import annotations

# Kinds of frames.
EMIT = b"E"  # a Socket.IO event for a room: payload is "<room>\n<skip sid>\n<packet text>"
CANVAS = b"P"  # durable canvas patches (the canvas store's format)
CONTROL = b"C"  # a JSON notice between hubs (a session ended, a student removed)

_SEP = b"\x00"


def session_channel(center_id: str, session_id: str) -> str:
    """The channel of one session; every frame about the session goes on it."""
    return f"hub:c:{center_id}:s:{session_id}"


def frame(node_id: str, kind: bytes, payload: bytes) -> bytes:
    return node_id.encode() + _SEP + kind + payload


def unframe(message: bytes) -> tuple[str, bytes, bytes]:
    """``(node id, kind, payload)`` of a frame."""
    node, _, rest = message.partition(_SEP)
    return node.decode(), rest[:1], rest[1:]
