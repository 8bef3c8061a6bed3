"""The bus of one hub process alone: nothing is shared, nothing is published."""

from __future__ import annotations

from realtime.bus.bus import FrameHandler, ReconnectHook


class Cluster:
    """One hub process alone: nothing is shared, nothing is published."""

    shared = False

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self._handlers: dict[bytes, FrameHandler] = {}
        self._reconnect_hooks: list[ReconnectHook] = []

    def on(self, kind: bytes, handler: FrameHandler) -> None:
        """Handle frames of ``kind`` that other hubs publish on watched channels."""
        self._handlers[kind] = handler

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Run ``hook`` after the subscription was down and is back: frames were lost."""
        self._reconnect_hooks.append(hook)

    async def watch(self, center_id: str, session_id: str) -> None:
        """Hear the session's frames from now on (a member of it is here)."""

    def unwatch(self, center_id: str, session_id: str) -> None:
        """Stop hearing the session (no member of it is here any more)."""

    def publish(self, channel: str, kind: bytes, payload: bytes) -> None:
        """Send a frame to the other hubs watching ``channel`` (in order, best effort)."""

    async def lead(self, name: str, lease_s: float) -> bool:
        """Whether this hub is the one to run the cluster-wide job ``name`` now: it holds
        the lease (taken if free, renewed if held, for ``lease_s``). Alone, always."""
        return True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
