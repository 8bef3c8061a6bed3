"""Error codes shared by the Socket.IO acks and the REST error body."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError


class ErrorCode(StrEnum):
    UNAUTHORIZED = "UNAUTHORIZED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    SESSION_ENDED = "SESSION_ENDED"
    NOT_JOINED = "NOT_JOINED"
    INTERNAL = "INTERNAL"


# The HTTP status each code maps to in the REST layer.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.SESSION_ENDED: 409,
    ErrorCode.NOT_JOINED: 409,
    ErrorCode.INTERNAL: 500,
}


class HubError(Exception):
    """A refusal the client should see: a protocol code, a message and optional details.

    ``error_code`` is the finer REST ``errorCode`` (``SESSION_NOT_FOUND``); it
    defaults to ``code``.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.error_code = error_code or code.value

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def ack(self) -> dict[str, Any]:
        """The Socket.IO failure ack: ``{ok: false, error: {code, message, details?}}``."""
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"ok": False, "error": error}


def not_found(what: str, ident: str) -> HubError:
    return HubError(
        ErrorCode.NOT_FOUND,
        f"{what} {ident!r} not found",
        error_code=f"{what.upper().replace(' ', '_')}_NOT_FOUND",
    )


def validation_error(exc: ValidationError, message: str) -> HubError:
    """VALIDATION_ERROR listing each problem as ``{loc, msg, type}`` (never the input)."""
    errors = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return HubError(ErrorCode.VALIDATION_ERROR, message, details={"errors": errors})


# A JSON-escaped NUL (\u0000) not itself escaped by a backslash before it.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(encoded_json: str | bytes) -> None:
    """VALIDATION_ERROR if a JSON text holds a NUL character in any string.

    Postgres stores no NUL in text or JSONB; the hub refuses it on every
    backend alike rather than fail deep in a transaction.
    """
    text = (
        encoded_json.decode("utf-8", "replace") if isinstance(encoded_json, bytes) else encoded_json
    )
    if "\x00" in text or _ESCAPED_NUL.search(text):
        raise HubError(ErrorCode.VALIDATION_ERROR, "strings may not contain NUL (\\u0000)")


# Deepest nesting a payload may have: orjson encodes no deeper (its limit is 255
# levels), and every relay and stored copy goes through orjson.
MAX_DEPTH = 254


def contains_nul(value: Any) -> bool:
    """Whether any string (key or value) inside a decoded JSON value holds a NUL.
    Raises ``ValueError`` for a value nested deeper than ``MAX_DEPTH``."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # nested past orjson's limit, or an integer beyond 64 bits
        return _walk_for_nul(value)
    # JSON text escapes a NUL as \u0000. Encoding in C and searching the bytes is
    # far cheaper than walking a stroke's points in Python; the rare hit (an
    # escaped backslash before "u0000" matches too) is confirmed by the walk.
    return b"\\u0000" in encoded and _walk_for_nul(value)


def _walk_for_nul(value: Any) -> bool:
    # A loop, not recursion: a client chooses the depth.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and "\x00" in key:
                    return True
                stack.append((child, depth + 1))
    return False
