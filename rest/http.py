"""REST conventions: the error body, the list envelope, bearer identity, body parsing.

Error body (any 4xx/5xx)::

    {"success": false, "statusCode": 404, "message": "...",
     "errorCode": "SESSION_NOT_FOUND", "details": {...}}

List envelope::

    {"success": true, "data": [...],
     "pagination": {"page", "limit", "total", "totalPages", "hasNext", "hasPrev"}}
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp_cors
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.repositories import AuditLog, Page
from realtime.base import codec, logs
from realtime.base.codec import loads
from realtime.base.errors import ErrorCode, HubError, refuse_nul, validation_error
from realtime.base.identity import Identity, TokenVerifier
from realtime.base.logbudget import LogBudget
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import KeyedBuckets
from realtime.gateway.addresses import SOCKET_PATH, client_address
from rest.openapi import check_declared, is_public

log = logging.getLogger(__name__)
# One line per request (``error_middleware``), apart from the hub's other lines.
access_log = logging.getLogger("realtime.access")

M = TypeVar("M", bound=BaseModel)
RestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/v1"
REQUEST_ID = "X-Request-ID"
# Scraped every few seconds: their access lines are DEBUG, not to drown the log.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# HTTP lets a client name any method (aiohttp's C parser takes those llhttp knows,
# its Python parser any token): the log and the metrics name these, OTHER the others.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDENTITY_KEY = web.RequestKey("identity", Identity)

# aiohttp's own refusals, given the protocol's codes.
_HTTP_ERROR_CODES: dict[int, str] = {
    403: ErrorCode.FORBIDDEN.value,  # a CORS preflight from an origin not allowed
    404: "ROUTE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",  # the body did not arrive in time (realtime.gateway.addresses)
    413: ErrorCode.PAYLOAD_TOO_LARGE.value,
}


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response({"success": True, "data": data}, status=status, dumps=codec.dumps)


def listing(data: Sequence[Any], page: Page, total: int) -> web.Response:
    pages = math.ceil(total / page.size) if total else 0
    return web.json_response(
        {
            "success": True,
            "data": list(data),
            "pagination": {
                "page": page.number,
                "limit": page.size,
                "total": total,
                "totalPages": pages,
                "hasNext": page.number < pages,
                "hasPrev": page.number > 1,
            },
        },
        dumps=codec.dumps,
    )


def error_response(
    status: int, error_code: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "success": False,
        "statusCode": status,
        "message": message,
        "errorCode": error_code,
    }
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status, dumps=codec.dumps)


def identity(request: web.Request) -> Identity:
    found: Identity | None = request.get(IDENTITY_KEY)
    if found is None:
        raise HubError(ErrorCode.UNAUTHORIZED, "a bearer token is required")
    return found


def client_ip(request: web.Request) -> str | None:
    return client_address(request)


def record_change(
    request: web.Request,
    db: AsyncSession,
    who: Identity,
    center_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Write the audit entry of a change, in the change's transaction: who, what,
    which center, from which address."""
    AuditLog(db).record(
        center_id=center_id,
        actor_id=who.user_id,
        actor_role=who.role.value,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=client_ip(request),
        details=details,
    )


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body as ``model``, or VALIDATION_ERROR saying what was wrong."""
    check_declared(request, model, "body")
    raw = await request.read()
    if not raw:
        raise HubError(ErrorCode.VALIDATION_ERROR, "expected a JSON object body, got nothing")
    refuse_nul(raw)
    try:
        loads(raw)  # strict JSON first: pydantic's parser reads NaN and Infinity
    except ValueError as exc:
        raise HubError(
            ErrorCode.VALIDATION_ERROR, f"expected a strict JSON body (RFC 8259): {exc}"
        ) from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc, "invalid request body") from None


def _refuse_nul_parameters(request: web.Request) -> None:
    """VALIDATION_ERROR for a NUL in a path or query parameter: Postgres stores none,
    so it would fail in the query (a 500 there, a 404 on SQLite); as ``refuse_nul``."""
    values = [*request.match_info.values(), *request.query.values()]
    if any("\x00" in value for value in values):
        raise HubError(
            ErrorCode.VALIDATION_ERROR, "path and query parameters may not contain NUL (\\u0000)"
        )


def parse_query(request: web.Request, model: type[M]) -> M:
    check_declared(request, model, "query")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc, "invalid query parameters") from None


# How long a browser may cache a preflight's answer.
CORS_MAX_AGE_S = 600
# nginx's status for a request whose client closed the connection first.
CLIENT_CLOSED = 499


IdentityHook = Callable[[Identity], Awaitable[None]]


def error_middleware(
    metrics: HubMetrics,
    verifier: TokenVerifier,
    limits: KeyedBuckets,
    on_identity: IdentityHook | None = None,
) -> Any:
    """Bearer identity and per-user rate limits for /api/v1, the error body for every
    failure, request metrics, the request id and the access log. ``on_identity``
    hears of each verified caller before its handler runs (the directory records
    them).

    Each request gets an id: the client's ``X-Request-ID`` if ``logs.safe_id``
    accepts it, else a new one; it is bound to the log context with the caller
    (once verified) for every line the request writes, and sent back in the
    response's ``X-Request-ID``. Socket.IO's requests get none: their events are
    logged by socket (``realtime.gateway``)."""

    gone = LogBudget(log)  # clients that hang up: their doing, a line every 10 s at most

    @web.middleware
    async def middleware(request: web.Request, handler: RestHandler) -> web.StreamResponse:
        if request.path.startswith(SOCKET_PATH):
            return await respond(request, handler)
        request_id = request.headers.get(REQUEST_ID, "")
        if not logs.safe_id(request_id):
            request_id = uuid.uuid4().hex
        scope = logs.bind(request_id=request_id)
        try:
            response = await respond(request, handler)
        except web.HTTPException as exc:  # a redirect
            exc.headers[REQUEST_ID] = request_id
            raise
        finally:
            logs.unbind(scope)
        if not response.prepared:
            response.headers[REQUEST_ID] = request_id
        return response

    async def respond(request: web.Request, handler: RestHandler) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_label(request)
        method = _method(request)
        try:
            if _api(request) and not _preflight(request) and not is_public(request):
                who = verifier.verify(_bearer(request))
                # Undone with the request's scope (``middleware``).
                logs.bind(user_id=who.user_id, center_id=who.center, role=who.role.value)
                if not limits.take(f"{who.center}\x00{who.user_id}"):
                    raise HubError(ErrorCode.RATE_LIMITED, "too many requests; slow down")
                request[IDENTITY_KEY] = who
                if on_identity is not None:
                    await on_identity(who)
            if _api(request):
                _refuse_nul_parameters(request)
            response = await handler(request)
        except HubError as exc:
            response = error_response(exc.http_status, exc.error_code, exc.message, exc.details)
        except web.HTTPException as exc:
            if exc.status < 400:
                _access(request, method, route, exc.status, started)
                raise
            error_code = _HTTP_ERROR_CODES.get(exc.status, "HTTP_ERROR")
            response = error_response(exc.status, error_code, exc.reason)
        except ConnectionError as exc:
            # The client went away mid-request (say, a websocket handshake it gave up
            # on): nothing failed here, and the answer will most likely not be read.
            gone.log(logging.INFO, "%s %s: the client went away (%s)", method, route, exc)
            response = error_response(CLIENT_CLOSED, "CLIENT_CLOSED", "the client went away")
        except Exception:
            log.exception("%s %s failed", method, route)
            response = error_response(500, ErrorCode.INTERNAL.value, "internal error")
        _access(request, method, route, response.status, started)
        metrics.http_requests.labels(method, route, str(response.status)).inc()
        metrics.http_seconds.labels(method, route).observe(time.perf_counter() - started)
        return response

    return middleware


def allow_cross_origin(app: web.Application, origins: Sequence[str]) -> None:
    """CORS for the routes under /api/v1, from ``origins`` (``["*"]``: any): preflights
    are answered without a token; a bearer token, not cookies, carries identity."""
    if not origins:
        return
    # aiohttp-cors has no type hints.
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        allow_headers=("Authorization", "Content-Type"),
        expose_headers=("X-Canvas-Seq", REQUEST_ID),
        allow_methods=("GET", "POST", "PUT", "PATCH", "DELETE"),
        max_age=CORS_MAX_AGE_S,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        if route.resource is not None and route.resource.canonical.startswith(API_PREFIX):
            cors.add(route)


def _api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX


def _preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HubError(ErrorCode.UNAUTHORIZED, "expected an 'Authorization: Bearer <token>' header")
    return token.strip()


def _method(request: web.Request) -> str:
    return request.method if request.method in METHODS else "OTHER"


def _access(request: web.Request, method: str, route: str, status: int, started: float) -> None:
    """The request's access line: the route's template, never its path or query."""
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    remote = client_address(request)
    quiet = route in QUIET_ROUTES or request.path.startswith(SOCKET_PATH)
    access_log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %d %.1f ms %s",
        method,
        route,
        status,
        duration_ms,
        remote,
        extra=logs.with_fields(
            method=method,
            route=route,
            status=status,
            duration_ms=duration_ms,
            remote=remote,
        ),
    )


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) else "unmatched"
