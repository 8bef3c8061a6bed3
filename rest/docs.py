"""The hub describing itself: its OpenAPI document at ``/api/v1/openapi.json``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from realtime.base.codec import dumps
from rest.http import API_PREFIX
from rest.openapi import Envelope, build_document, documented, documented_routes
from rest.pages import PATHS as PAGE_PATHS

routes = web.RouteTableDef()

TITLE = "Tutor hub REST API"
DESCRIPTION = (
    "The REST side of the tutor hub (docs/protocol.md has the whole contract, the "
    "Socket.IO events included). Every /api/v1 route but this one takes "
    "`Authorization: Bearer <JWT>`."
)
# Paths that are not REST, each with everything under it: the Socket.IO endpoint, and
# the browser pages with their assets (rest/pages.py).
NOT_REST = ("/socket.io", *PAGE_PATHS)


def is_rest(path: str) -> bool:
    """Whether a route's path is REST: not one of ``NOT_REST`` nor under one (``/`` is
    the front page alone: nothing but ``//...`` is under it)."""
    return not any(path == p or path.startswith(p + "/") for p in NOT_REST)


# The document depends only on the route table, the same in every hub a process
# builds: made once per table.
_built: dict[tuple[tuple[str, str, int], ...], str] = {}


def _version() -> str:
    try:
        return version("tutor-hub")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def document_of(app: web.Application) -> str:
    covered = documented_routes(app, keep=is_rest)
    key = tuple(
        sorted(
            (r.method, r.resource.canonical if r.resource else "", id(r.handler)) for r in covered
        )
    )
    if key not in _built:
        document = build_document(covered, title=TITLE, version=_version(), description=DESCRIPTION)
        _built[key] = dumps(document)
    return _built[key]


@routes.get(API_PREFIX + "/openapi.json")
@documented(dict[str, Any], envelope=Envelope.BARE, public=True)
async def openapi_document(request: web.Request) -> web.Response:
    """This document: OpenAPI 3.1, generated from the hub's own routes."""
    return web.Response(text=document_of(request.app), content_type="application/json")
