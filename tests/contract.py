"""The hub's OpenAPI document as a contract every REST answer of the suite must meet.

``tests.support.Api`` checks each answer it gets against the document the hub
serves: the status must be one the operation declares (or an error status, whose
body is the error body) and the JSON body must match its schema. So every REST
call of every test also checks that the document tells the truth.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

_PARAMETER = re.compile(r"\{[^}]+\}")
_SEGMENT = "[^/]+"
_ERROR = {"$ref": "#/components/schemas/Error"}


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + _SEGMENT.join(map(re.escape, _PARAMETER.split(template))) + "$")


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self._components = document["components"]
        # Literal routes before templated ones ("/join" before "/{session_id}").
        self._paths = sorted(
            ((_pattern(path), operations) for path, operations in document["paths"].items()),
            key=lambda item: item[0].pattern.count(_SEGMENT),
        )
        self._validators: dict[int, jsonschema.protocols.Validator] = {}

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """Fail (AssertionError) if this answer is not one the document describes."""
        operation = self._operation(method, path.split("?", 1)[0])
        if operation is None:
            # A route the hub does not have: only an error answer is right.
            self._validate(_ERROR, body, f"{method} {path} -> {status}")
            return
        declared = operation["responses"].get(str(status))
        if declared is None:
            assert status >= 400, (
                f"{method} {path} answered {status}, which its operation does not declare "
                f"({sorted(operation['responses'])})"
            )
            declared = operation["responses"][f"{status // 100}XX"]
        content = declared.get("content")
        if content is None:
            assert body is None, f"{method} {path} -> {status}: expected no body, got {body!r}"
            return
        schema = content.get("application/json", {}).get("schema")
        if schema is not None:
            self._validate(schema, body, f"{method} {path} -> {status}")

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, operations in self._paths:
            if pattern.match(path) and method.lower() in operations:
                found: dict[str, Any] = operations[method.lower()]
                return found
        return None

    def _validate(self, schema: dict[str, Any], body: Any, what: str) -> None:
        validator = self._validators.get(id(schema))
        if validator is None:
            # The document's components beside the schema, so its "#/components/..."
            # references resolve.
            root = {**schema, "components": self._components}
            validator = jsonschema.Draft202012Validator(root)
            self._validators[id(schema)] = validator
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(the body)"
            raise AssertionError(
                f"{what}: the answer does not match the OpenAPI document at {where}: "
                f"{errors[0].message}"
            )
