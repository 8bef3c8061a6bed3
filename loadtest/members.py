"""Joining a session over the wire client, and tallying what acks answered.

Shared by every scenario: connect with a token, ``session:join`` (with
``since`` on a re-join), and count ``{ok: false}`` acks by event and code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from loadtest.wire import ConnectRefused, Handler, ProtocolError, WireClient

JOIN_TIMEOUT_S = 60.0
# What a connect-and-join can fail with; scenarios count these by type.
JOIN_FAILURES = (
    ConnectRefused,
    ProtocolError,
    OSError,
    RuntimeError,
    TimeoutError,
    aiohttp.ClientError,
)


class Tally:
    """Acks by outcome: ``ok`` per event, and ``{event: {code: n}}`` for failures."""

    def __init__(self) -> None:
        self.ok: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()

    def ack(self, event: str, payload: Any) -> bool:
        if isinstance(payload, dict) and payload.get("ok") is True:
            self.ok[event] += 1
            return True
        code = payload.get("error", {}).get("code", "?") if isinstance(payload, dict) else "?"
        self.errors[(event, str(code))] += 1
        return False

    def error_summary(self) -> dict[str, dict[str, int]]:
        return _nested(self.errors)


async def connect_joined(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    session_id: str,
    since: dict[str, int] | None = None,
    client: WireClient | None = None,
    handlers: dict[str, Handler] | None = None,
) -> tuple[WireClient, dict[str, Any]]:
    """Connect (a new client, or ``client`` again) and join; the client and the join ack.

    ``handlers`` are registered before connecting: an event relayed right
    after the join ack is dispatched before this coroutine resumes.
    Raises ``RuntimeError`` when the join is refused.
    """
    client = client or WireClient(http, url)
    for event, handler in (handlers or {}).items():
        client.on(event, handler)
    async with asyncio.timeout(JOIN_TIMEOUT_S):
        await client.connect(token)
        payload: dict[str, Any] = {"session_id": session_id}
        if since:
            payload["since"] = since
        ack = await client.call("session:join", payload, timeout_s=JOIN_TIMEOUT_S)
    if not isinstance(ack, dict) or ack.get("ok") is not True:
        await client.close()
        raise RuntimeError(f"session:join {session_id}: expected ok, got {ack!r}")
    return client, ack


def merge_errors(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Sum the workers' ``errors`` maps."""
    total: Counter[tuple[str, str]] = Counter()
    for result in results:
        for event, codes in result.get("errors", {}).items():
            for code, n in codes.items():
                total[(event, code)] += n
    return _nested(total)


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (event, code), n in sorted(counts.items()):
        out.setdefault(event, {})[code] = n
    return out
