"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from typing_extensions import TypedDict

from persistence.db import ping
from realtime.base.errors import ErrorCode
from realtime.base.logbudget import LogBudget
from rest.http import error_response
from rest.keys import ENGINE, METRICS, REDIS, SETTINGS, STOPPING
from rest.openapi import Envelope, documented

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

READY_CHECK_TIMEOUT_S = 2.0


class Liveness(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    """``status`` is "ok" when every check is; each check says "ok" or its error."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


@routes.get("/healthz")
@documented(Liveness, envelope=Envelope.BARE, public=True)
async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@documented(Readiness, envelope=Envelope.BARE, public=True, also=(503,))
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers, and Redis when one is configured; not
    while the hub is stopping (``checks.hub`` then says "stopping")."""
    checks = await check_readiness(request.app)
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


async def check_readiness(app: web.Application) -> dict[str, str]:
    """Ask the database (and Redis, when configured) whether they answer; each check's
    "ok" or error, also reported as ``hub_dependency_up`` and ``hub_ready``."""
    checks = {"database": await _check("database", ping(app[ENGINE]))}
    redis = app[REDIS]
    if redis is not None:
        checks["redis"] = await _check("redis", redis.ping())
    metrics = app[METRICS]
    for dependency, outcome in checks.items():
        metrics.dependency_up.labels(dependency).set(outcome == "ok")
    if app[STOPPING].is_set():
        checks["hub"] = "stopping"
    metrics.ready.set(all(v == "ok" for v in checks.values()))
    return checks


async def _check(dependency: str, answer: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(answer, READY_CHECK_TIMEOUT_S)
    except Exception as exc:
        # Checked every few seconds and by every probe: one line a minute while it lasts.
        budget = _failures.setdefault(dependency, LogBudget(log, every_s=60.0))
        budget.log(logging.WARNING, "readiness: %s check failed: %r", dependency, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


_failures: dict[str, LogBudget] = {}


# On the public port, or on HUB_METRICS_PORT alone (``realtime.app``).
metrics_routes = web.RouteTableDef()


@metrics_routes.get("/metrics")
@documented(str, envelope=Envelope.BARE, media_type=CONTENT_TYPE_LATEST, public=True)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, in its text format; with ``Authorization: Bearer <token>``
    when the hub has a HUB_METRICS_TOKEN."""
    token = request.app[SETTINGS].metrics_token
    if token is not None and not _bearer_is(request, token.get_secret_value()):
        # Answered here, not raised: on HUB_METRICS_PORT no middleware makes error bodies.
        refused = error_response(
            401, ErrorCode.UNAUTHORIZED.value, "/metrics needs the hub's metrics bearer token"
        )
        refused.headers["WWW-Authenticate"] = "Bearer"
        return refused
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _bearer_is(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
