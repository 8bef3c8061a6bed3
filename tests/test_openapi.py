"""The OpenAPI document at /api/v1/openapi.json: valid OpenAPI 3.1, naming exactly the
hub's routes, and kept honest on both sides (the request models handlers parse with,
the answers the suite gets: tests/contract.py checks every one)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from typing_extensions import TypedDict

from realtime.base.config import Settings
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import KeyedBuckets
from rest.docs import is_rest
from rest.http import error_middleware, ok, parse_body
from rest.openapi import UndocumentedRoute, build_document, documented, documented_routes
from tests.conftest import Hub
from tests.contract import Contract
from tests.support import OPENAPI


async def document_of(hub: Hub) -> dict[str, Any]:
    async with hub.http.get(hub.url + OPENAPI) as resp:  # no token: the document is public
        assert resp.status == 200
        assert resp.content_type == "application/json"
        found: dict[str, Any] = await resp.json()
        return found


async def test_the_document_is_valid_openapi_3_1(hub: Hub) -> None:
    document = await document_of(hub)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on anything invalid


async def test_the_document_names_every_route_of_the_hub_and_no_other(hub: Hub) -> None:
    assert hub.app is not None
    document = await document_of(hub)
    documented_ = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.method, route.resource.canonical)
        for route in hub.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS")
    }
    not_rest = {(m, p) for m, p in served if not is_rest(p)}
    assert {p for _, p in not_rest} >= {"/socket.io/", "/", "/tutor", "/student"}, (
        "the Socket.IO endpoint and the pages are served and left out"
    )
    assert documented_ == served - not_rest
    # The REST routes of the design (a sample that must be there by name).
    for route in [
        ("POST", "/api/v1/teacher/sessions"),
        ("POST", "/api/v1/student/sessions/join"),
        ("GET", "/api/v1/admin/sessions/{session_id}/analytics"),
        ("GET", "/api/v1/sessions/{session_id}/canvases/{student_id}"),
        ("GET", OPENAPI),
    ]:
        assert route in documented_


async def test_only_the_document_and_health_are_public(hub: Hub) -> None:
    document = await document_of(hub)
    public = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if operation.get("security") == []
    }
    assert public == {OPENAPI, "/healthz", "/readyz", "/metrics"}
    async with hub.http.get(hub.url + "/api/v1/sessions") as resp:
        assert resp.status == 401


async def test_request_bodies_and_queries_name_their_models(hub: Hub) -> None:
    operations = (await document_of(hub))["paths"]
    create = operations["/api/v1/sessions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SessionCreate"
    }
    listing = {p["name"] for p in operations["/api/v1/sessions"]["get"]["parameters"]}
    assert {"page", "limit", "tutor_id", "status"} <= listing
    assert operations["/api/v1/teacher/sessions/{session_id}"]["delete"]["responses"]["204"] == {
        "description": "done, no body"
    }


class Thing(TypedDict):
    id: str


class ThingIn(BaseModel):
    name: str


class OtherIn(BaseModel):
    other: str


async def _undeclared(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_a_declaration_cannot_be_documented() -> None:
    app = web.Application()
    app.router.add_get("/api/v1/things", _undeclared)
    with pytest.raises(UndocumentedRoute, match="GET /api/v1/things"):
        build_document(documented_routes(app), title="t", version="0")


async def test_a_handler_parsing_a_model_it_does_not_declare_fails_loudly() -> None:
    @documented(Thing, body=ThingIn)
    async def drifted(request: web.Request) -> web.Response:
        await parse_body(request, OtherIn)
        return ok({"id": "1"})

    middleware = error_middleware(
        HubMetrics(CollectorRegistry()),
        TokenVerifier(Settings(jwt_secret="x" * 32)),
        KeyedBuckets(10, 10),
    )
    app = web.Application(middlewares=[middleware])
    app.router.add_post("/things", drifted)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url("/things"), json={"other": "x"}) as resp:
                assert resp.status == 500
                assert (await resp.json())["errorCode"] == "INTERNAL"
    finally:
        await server.close()


def _contract() -> Contract:
    @documented(Thing)
    async def get_thing(request: web.Request) -> web.Response:
        return ok({"id": "1"})

    app = web.Application()
    app.router.add_get("/api/v1/things/{thing_id}", get_thing)
    return Contract(build_document(documented_routes(app), title="t", version="0"))


def test_the_contract_takes_an_answer_the_document_describes() -> None:
    contract = _contract()
    contract.check("GET", "/api/v1/things/7", 200, {"success": True, "data": {"id": "7"}})
    error = {"success": False, "statusCode": 404, "message": "no", "errorCode": "NOT_FOUND"}
    contract.check("GET", "/api/v1/things/7", 404, error)


@pytest.mark.parametrize(
    ("status", "body", "complaint"),
    [
        (200, {"success": True, "data": {"id": 7}}, "data/id"),
        (200, {"success": True, "data": {"id": "7", "extra": 1}}, "data"),
        (200, {"success": True}, "'data' is a required property"),
        (201, {"success": True, "data": {"id": "7"}}, "does not declare"),
        (404, {"error": "no"}, "does not match"),
    ],
)
def test_the_contract_refuses_an_answer_the_document_does_not_describe(
    status: int, body: Any, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        _contract().check("GET", "/api/v1/things/7", status, body)
