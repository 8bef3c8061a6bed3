"""The bus's interface, its frames and its channels (see the package's docstring)."""

from __future__ import annotations

import os
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from realtime.base.names import session_scope

# Kinds of frames.
EMIT = b"E"  # a Socket.IO event for a room: payload is "<room>\n<skip sid>\n<packet text>"
CANVAS = b"P"  # durable canvas patches (the canvas store's format)
CONTROL = b"C"  # a JSON notice between hubs (a session ended, a student was removed)
KIND_NAMES = {EMIT: "emit", CANVAS: "canvas", CONTROL: "control"}

FRAME_SEP = b"\x00"
_SENT_AT = struct.Struct("<d")
CHANNEL_PREFIX = "hub:s:"

# Cluster-wide jobs: one hub at a time holds a job's lease and runs it.
# The sweeps (presence departures, timers, alerts): lease name, and how many sweep
# intervals a leader that stopped sweeping keeps it before another hub takes over.
SWEEPS = "sweeps"
SWEEPS_LEASE_INTERVALS = 3

FrameHandler = Callable[[bytes], None]
ReconnectHook = Callable[[], Awaitable[None]]


class Bus(Protocol):
    """Frames between the hubs of a cluster, per session channel, and cluster-wide leases.

    Delivery is best effort and in order per publishing hub on each channel (not
    across channels: on Redis Cluster they live on different shards): a frame published
    while a hub is not watching the channel, or while its subscription is down,
    is not delivered to it (hooks registered with ``on_reconnect`` run after such
    an outage). A hub never receives its own frames.
    """

    node_id: str
    # Whether other hubs share the sessions (False: one process alone).
    shared: bool

    def on(self, kind: bytes, handler: FrameHandler) -> None:
        """Handle frames of ``kind`` that other hubs publish on watched channels."""

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Run ``hook`` after the subscription was down and is back: frames were lost."""

    async def watch(self, center_id: str, session_id: str) -> None:
        """Hear the session's frames from now on (a member of it is here)."""

    def unwatch(self, center_id: str, session_id: str) -> None:
        """Stop hearing the session (no member of it is here any more)."""

    def publish(self, channel: str, kind: bytes, payload: bytes) -> None:
        """Send a frame to the other hubs watching ``channel`` (in order, best effort)."""

    async def lead(self, name: str, lease_s: float) -> bool:
        """Whether this hub is the one to run the cluster-wide job ``name`` now: it holds
        the lease (taken if free, renewed if held, for ``lease_s``)."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop; publish what is queued first, and hand the leases held on to the others."""
        ...


def session_channel(center_id: str, session_id: str) -> str:
    """The channel of one session; every frame about the session goes on it."""
    return CHANNEL_PREFIX + session_scope(center_id, session_id)


def scope_channel(scope: str) -> str:
    """The channel of a session scope (``realtime.base.names.scope_of``)."""
    return CHANNEL_PREFIX + scope


def frame(node_id: str, kind: bytes, payload: bytes) -> bytes:
    return node_id.encode() + FRAME_SEP + kind + _SENT_AT.pack(time.time()) + payload


def unframe(message: bytes) -> tuple[str, bytes, bytes]:
    """``(node id, kind, payload)`` of a frame."""
    node, _, rest = message.partition(FRAME_SEP)
    return node.decode(), rest[:1], rest[1 + _SENT_AT.size :]


def sent_at(message: bytes) -> float:
    """When a frame was published (wall clock of the sending hub)."""
    _, _, rest = message.partition(FRAME_SEP)
    return float(_SENT_AT.unpack_from(rest, 1)[0])


def sweeps_lease_s(every_s: float) -> float:
    return SWEEPS_LEASE_INTERVALS * every_s


def new_node_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"
