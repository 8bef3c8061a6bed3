"""The REST middleware's failure handling, on a small app served on loopback."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from realtime.base.config import Settings
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import KeyedBuckets
from rest.http import error_middleware
from tests.conftest import HubFactory


async def serve(handler: web.RequestHandler, metrics: HubMetrics) -> TestServer:
    middleware = error_middleware(
        metrics, TokenVerifier(Settings(jwt_secret="x" * 32)), KeyedBuckets(10, 10)
    )
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/thing", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server


async def test_a_client_gone_mid_request_is_not_logged_as_a_server_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def gone(request: web.Request) -> web.Response:
        raise ConnectionResetError("Cannot write to closing transport")

    metrics = HubMetrics(CollectorRegistry())
    server = await serve(gone, metrics)
    caplog.set_level(logging.INFO)
    try:
        async with aiohttp.ClientSession() as http, http.get(server.make_url("/thing")) as resp:
            # Here the connection is still open, so the answer arrives.
            assert resp.status == 499
    finally:
        await server.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "the client went away" in caplog.text
    counted = metrics.registry.get_sample_value(
        "hub_http_requests_total", {"method": "GET", "route": "/thing", "status": "499"}
    )
    assert counted == 1


async def test_an_unexpected_failure_is_logged_and_answered_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    server = await serve(broken, HubMetrics(CollectorRegistry()))
    try:
        async with aiohttp.ClientSession() as http, http.get(server.make_url("/thing")) as resp:
            assert resp.status == 500
            body = await resp.json()
    finally:
        await server.close()
    assert body["errorCode"] == "INTERNAL", body
    assert "GET /thing failed" in caplog.text


# -- CORS -----------------------------------------------------------------------

LMS = "https://lms.example"


async def test_cors_preflight_is_answered_without_a_token_for_allowed_origins(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(cors_origins=[LMS])
    preflight = {
        "Origin": LMS,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    async with hub.http.options(f"{hub.url}/api/v1/sessions", headers=preflight) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == LMS
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        allowed = resp.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
    # The real request still needs its token, and its answer carries the origin.
    token = hub.tokens("tutor-1", "TUTOR")
    headers = {"Origin": LMS, "Authorization": f"Bearer {token}"}
    async with hub.http.get(f"{hub.url}/api/v1/sessions", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == LMS
        assert "Access-Control-Allow-Credentials" not in resp.headers
    async with hub.http.get(f"{hub.url}/api/v1/sessions", headers={"Origin": LMS}) as resp:
        assert resp.status == 401
    # Another origin is not allowed to read; its preflight is refused.
    evil = {**preflight, "Origin": "https://evil.example"}
    async with hub.http.options(f"{hub.url}/api/v1/sessions", headers=evil) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert (await resp.json())["errorCode"] == "FORBIDDEN"


async def test_without_cors_origins_no_cross_origin_reads(make_hub: HubFactory) -> None:
    hub = await make_hub(cors_origins=[])
    preflight = {"Origin": LMS, "Access-Control-Request-Method": "GET"}
    async with hub.http.options(f"{hub.url}/api/v1/sessions", headers=preflight) as resp:
        assert resp.status == 405
        assert "Access-Control-Allow-Origin" not in resp.headers
    token = hub.tokens("tutor-1", "TUTOR")
    headers = {"Origin": LMS, "Authorization": f"Bearer {token}"}
    async with hub.http.get(f"{hub.url}/api/v1/sessions", headers=headers) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
