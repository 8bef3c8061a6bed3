"""Who is calling, by address, and how much of the hub one address may hold.

Every request goes through ``AddressLimits.middleware``, which:

- names the client's address: ``request.remote``, or, when that is one of the
  ``trusted`` proxies, the nearest address in ``X-Forwarded-For`` that is not
  (a client cannot pose as another by sending the header itself to a hub that
  trusts nobody); ``client_address`` reads it back;
- holds at most ``most`` open Socket.IO requests (websockets for their whole
  life, long polls while they wait) per address, refusing more with 429
  ``RATE_LIMITED`` before Engine.IO sees them;
- reads a REST request's body within ``body_timeout_s`` (aiohttp keeps it for
  the handler's ``read``; so handlers ask ``body_exists``, not ``can_read_body``,
  which is False once the body was read), so a client that sends its body
  slowly, or never, cannot hold a handler: 408. (Engine.IO reads its
  long-polling bodies from the stream itself: those are bounded by the address
  limit and Engine.IO's message size.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from realtime.base.errors import ErrorCode, HubError
from realtime.base.logbudget import LogBudget
from realtime.base.metrics import HubMetrics

log = logging.getLogger(__name__)

SOCKET_PATH = "/socket.io/"
_ADDRESS: web.RequestKey[str] = web.RequestKey("hub_client_address", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_address(request: web.BaseRequest) -> str | None:
    """The client's address as ``AddressLimits`` named it (``request.remote`` elsewhere)."""
    return request.get(_ADDRESS) or request.remote


class AddressLimits:
    def __init__(
        self,
        *,
        most: int,
        trusted: Collection[str] = (),
        body_timeout_s: float,
        metrics: HubMetrics,
    ) -> None:
        self._most = most
        self._trusted = frozenset(trusted)
        self._body_timeout_s = body_timeout_s
        self._metrics = metrics
        self._open: dict[str, int] = {}
        self._refusals = LogBudget(log)

    def open_from(self, address: str) -> int:
        """Socket.IO requests open from ``address``."""
        return self._open.get(address, 0)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        address = self._address(request)
        request[_ADDRESS] = address
        if not request.path.startswith(SOCKET_PATH):
            if request.body_exists:
                await self._read_body(request)
            return await handler(request)
        held = self._open.get(address, 0)
        if held >= self._most:
            self._metrics.refused_connections.labels("address_limit").inc()
            self._refusals.log(
                logging.INFO, "%s holds %d Socket.IO requests; refusing more", address, held
            )
            raise HubError(
                ErrorCode.RATE_LIMITED,
                f"at most {self._most} open connections per address; close some first",
            )
        self._open[address] = held + 1
        try:
            return await handler(request)
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def _address(self, request: web.Request) -> str:
        remote = request.remote or ""
        if remote not in self._trusted:
            return remote
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",")
        ]
        for hop in reversed(hops):  # the nearest first: each proxy appends its peer
            if hop and hop not in self._trusted:
                return hop
        return remote

    async def _read_body(self, request: web.Request) -> None:
        try:
            async with asyncio.timeout(self._body_timeout_s):
                await request.read()  # kept: the handler's read() returns it
        except TimeoutError:
            self._metrics.refused_connections.labels("body_timeout").inc()
            raise web.HTTPRequestTimeout(
                reason=f"the request body did not arrive within {self._body_timeout_s:g} s"
            ) from None
