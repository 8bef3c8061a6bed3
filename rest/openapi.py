"""The OpenAPI 3.1 document of the hub's HTTP routes, generated from the routes.

Every handler declares its operation with ``@documented(...)``: the pydantic model
it parses its body or query with, the type of what it answers (a TypedDict, a
list of one, ...), its status and envelope. The document walks the application's
router, so a route cannot be missing from it or invented by it, and a route
without a declaration refuses to be documented (``UndocumentedRoute``).
``parse_body`` and ``parse_query`` (rest/http.py) check at every call that the
model a handler parses with is the one it declares, so the request side of the
document cannot drift from the code; the test suite checks every answer it gets
against the response side (tests/contract.py).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

H = TypeVar("H", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
_ATTRIBUTE = "__openapi_operation__"
_SCHEMAS = "#/components/schemas/"
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


class Envelope(Enum):
    """How an answer wraps the declared response type (see rest/http.py)."""

    DATA = "data"  # {"success": true, "data": <response>, "message"?: str}
    PAGE = "page"  # {"success": true, "data": [<response>...], "pagination": {...}}
    BARE = "bare"  # the response type is the whole body
    NONE = "none"  # no body (204)


@dataclass(frozen=True, slots=True)
class Operation:
    response: Any
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    status: int
    envelope: Envelope
    media_type: str
    public: bool
    # Other statuses answered with the same envelope and type (not the error body).
    also: tuple[int, ...]
    body_required: bool


class UndocumentedRoute(Exception):
    """A route whose handler has no ``@documented`` declaration."""


def documented(
    response: Any = None,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    envelope: Envelope = Envelope.DATA,
    media_type: str = "application/json",
    public: bool = False,
    also: tuple[int, ...] = (),
    body_required: bool = True,
) -> Callable[[H], H]:
    """Declare a handler's operation. ``response`` is the type of the answer's
    ``data`` (of each item for ``Envelope.PAGE``, of the whole body for
    ``Envelope.BARE``); ``public`` routes take no bearer token; ``also`` lists other
    statuses that answer the same way (a 503 readiness report, say); a body that may
    be left out is not ``body_required``."""
    if (response is None) != (envelope is Envelope.NONE):
        raise TypeError("a response type is declared exactly when the answer has a body")
    operation = Operation(
        response, body, query, status, envelope, media_type, public, also, body_required
    )

    def declare(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, operation)
        return handler

    return declare


def operation_of(handler: object) -> Operation | None:
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


def check_declared(
    request: web.Request, model: type[BaseModel], part: Literal["body", "query"]
) -> None:
    """Refuse (a programming error, so a 500) to parse with a model the route's
    declaration does not name."""
    handler = request.match_info.handler
    operation = operation_of(handler)
    declared = None if operation is None else getattr(operation, part)
    if declared is not model:
        raise TypeError(
            f"{getattr(handler, '__qualname__', handler)} parses its {part} as "
            f"{model.__name__} but declares {getattr(declared, '__name__', declared)}"
        )


def is_public(request: web.Request) -> bool:
    operation = operation_of(request.match_info.handler)
    return operation is not None and operation.public


def documented_routes(
    app: web.Application, *, keep: Callable[[str], bool] = lambda path: True
) -> list[web.AbstractRoute]:
    """The routes the document covers: every method route but HEAD and OPTIONS (which
    aiohttp and CORS add) whose path ``keep`` keeps."""
    return [
        route
        for route in app.router.routes()
        if route.method not in ("HEAD", "OPTIONS")
        and route.resource is not None
        and keep(route.resource.canonical)
    ]


def build_document(
    routes: Iterable[web.AbstractRoute], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; every one must be ``@documented``."""
    declared: list[tuple[web.AbstractRoute, Operation]] = []
    for route in routes:
        operation = operation_of(route.handler)
        if operation is None:
            raise UndocumentedRoute(
                f"{route.method} {_path(route)} ({_name(route)}) has no @documented declaration"
            )
        declared.append((route, operation))
    schemas, components = _schemas(operation for _, operation in declared)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route, operation in declared:
        operation_id = _name(route)
        if operation_id in operation_ids:
            raise ValueError(f"two routes are handled by functions named {operation_id!r}")
        operation_ids.add(operation_id)
        path = _path(route)
        paths.setdefault(path, {})[route.method.lower()] = _operation(
            route, operation, operation_id, schemas, components
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": {**components, **_COMMON_SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


# --- The parts of the document --------------------------------------------------------

_COMMON_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every 4xx and 5xx answer (docs/protocol.md, 'REST').",
        "properties": {
            "success": {"const": False},
            "statusCode": {"type": "integer"},
            "message": {"type": "string"},
            "errorCode": {"type": "string"},
            "details": {"type": "object"},
        },
        "required": ["success", "statusCode", "message", "errorCode"],
        "additionalProperties": False,
    },
    "Pagination": {
        "type": "object",
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
            "totalPages": {"type": "integer", "minimum": 0},
            "hasNext": {"type": "boolean"},
            "hasPrev": {"type": "boolean"},
        },
        "required": ["page", "limit", "total", "totalPages", "hasNext", "hasPrev"],
        "additionalProperties": False,
    },
}
_ERROR = {"$ref": _SCHEMAS + "Error"}
_ERRORS = {
    "4XX": {"description": "refused", "content": {"application/json": {"schema": _ERROR}}},
    "5XX": {"description": "failed", "content": {"application/json": {"schema": _ERROR}}},
}

SchemaKey = tuple[str, str]


def _schemas(operations: Iterable[Operation]) -> tuple[dict[SchemaKey, Any], dict[str, Any]]:
    """JSON Schemas of every declared type, with the named ones as components."""
    adapters: dict[SchemaKey, tuple[SchemaKey, Literal["validation", "serialization"], Any]] = {}
    for operation in operations:
        for model in (operation.body, operation.query):
            if model is not None:
                key = (_type_key(model), "validation")
                adapters[key] = (key, "validation", TypeAdapter(model))
        if operation.response is not None and operation.media_type == "application/json":
            key = (_type_key(operation.response), "serialization")
            adapters[key] = (key, "serialization", TypeAdapter(operation.response))
    by_key, definitions = TypeAdapter.json_schemas(
        list(adapters.values()), ref_template=_SCHEMAS + "{model}"
    )
    components: dict[str, Any] = definitions.get("$defs", {})
    for schema in components.values():
        # Answers are closed: a field the document does not name is a drift.
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return {key: schema for (key, _), schema in by_key.items()}, components


def _type_key(declared: Any) -> str:
    return repr(declared)


def _operation(
    route: web.AbstractRoute,
    operation: Operation,
    operation_id: str,
    schemas: dict[SchemaKey, Any],
    components: dict[str, Any],
) -> dict[str, Any]:
    summary, description = _docstring(route.handler, operation_id)
    found: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [_tag(route)],
    }
    if description:
        found["description"] = description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(_path(route))
    ]
    if operation.query is not None:
        parameters += _query_parameters(
            schemas[(_type_key(operation.query), "validation")], components
        )
    if parameters:
        found["parameters"] = parameters
    if operation.body is not None:
        found["requestBody"] = {
            "required": operation.body_required,
            "content": {
                "application/json": {"schema": schemas[(_type_key(operation.body), "validation")]}
            },
        }
    answered = _response(operation, schemas)
    found["responses"] = {
        **_ERRORS,
        **{str(status): answered for status in (operation.status, *operation.also)},
    }
    if operation.public:
        found["security"] = []
    return found


def _response(operation: Operation, schemas: dict[SchemaKey, Any]) -> dict[str, Any]:
    if operation.envelope is Envelope.NONE:
        return {"description": "done, no body"}
    if operation.media_type != "application/json":
        return {
            "description": "ok",
            "content": {operation.media_type: {"schema": {"type": "string"}}},
        }
    inner = schemas[(_type_key(operation.response), "serialization")]
    if operation.envelope is Envelope.BARE:
        schema = inner
    elif operation.envelope is Envelope.PAGE:
        schema = {
            "type": "object",
            "properties": {
                "success": {"const": True},
                "data": {"type": "array", "items": inner},
                "pagination": {"$ref": _SCHEMAS + "Pagination"},
            },
            "required": ["success", "data", "pagination"],
            "additionalProperties": False,
        }
    else:
        schema = {
            "type": "object",
            "properties": {
                "success": {"const": True},
                "data": inner,
                "message": {"type": "string"},
            },
            "required": ["success", "data"],
            "additionalProperties": False,
        }
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


def _query_parameters(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].removeprefix(_SCHEMAS)]
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "title"},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _path(route: web.AbstractRoute) -> str:
    assert route.resource is not None
    return route.resource.canonical


def _name(route: web.AbstractRoute) -> str:
    return str(getattr(route.handler, "__name__", type(route.handler).__name__))


def _tag(route: web.AbstractRoute) -> str:
    module = str(getattr(route.handler, "__module__", "hub"))
    return module.removeprefix("rest.").replace(".", " ")


def _docstring(handler: object, operation_id: str) -> tuple[str, str]:
    text = inspect.getdoc(handler) or ""
    if not text:
        return operation_id.replace("_", " ").capitalize(), ""
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()
