"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from typing_extensions import TypedDict

from persistence.db import ping
from rest.keys import ENGINE, METRICS, REDIS
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
    """Ready to serve: the database answers, and Redis when one is configured."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ping(request.app[ENGINE]), READY_CHECK_TIMEOUT_S)
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database check failed: %r", exc)
        checks["database"] = f"error: {type(exc).__name__}"
    redis = request.app[REDIS]
    if redis is not None:
        try:
            await asyncio.wait_for(redis.ping(), READY_CHECK_TIMEOUT_S)
            checks["redis"] = "ok"
        except Exception as exc:
            log.warning("readiness: redis check failed: %r", exc)
            checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
@documented(str, envelope=Envelope.BARE, media_type=CONTENT_TYPE_LATEST, public=True)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, in its text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
