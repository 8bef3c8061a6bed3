"""Log lines: the text or JSON format, and the context a line is about.

The context (``FIELDS``: the REST request, the socket, its session and caller,
the client event) lives in one ``contextvars`` variable. The REST middleware
and the gateway bind it around each request, connect, event and disconnect
and reset it afterwards; ``ContextFields``, a filter on the handler, copies it
onto every record, so a line written anywhere below them says whom it
concerns. A record may add fields of its own with ``extra=about(...)``
(context) or ``extra=with_fields(...)`` (structured data, such as the access
log's ``route`` and ``status``).

asyncio copies the context into every task and timer it creates. Work that
outlives the request or event that started it (a loop, a timer, a batch of
several sockets' patches) is started in ``fresh_context()``, or it would carry
that request's ids on every line it ever writes.

Only values the hub produced or checked go into the context: a client's
``X-Request-ID`` only if ``safe_id`` accepts it, a session id only after its
payload was validated and only if short (``safe_id``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson
from pydantic import ValidationError

# Every context field, in the order lines show them, with its short name in text lines.
FIELDS: dict[str, str] = {
    "request_id": "req",
    "sid": "sid",
    "session_id": "session",
    "center_id": "center",
    "user_id": "user",
    "role": "role",
    "event": "event",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]

_EMPTY: Mapping[str, str] = {}
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "hub_log_context", default=_EMPTY
)
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def safe_id(value: object) -> bool:
    """Short (at most 64) and of ``[A-Za-z0-9._:-]``: fit for the log as it came."""
    return isinstance(value, str) and _SAFE_ID.fullmatch(value) is not None


def current() -> Mapping[str, str]:
    """The context fields bound here."""
    return _context.get()


def bind(**fields: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add ``fields`` (None: leave out) to the context; ``unbind`` the token after.
    A later ``bind`` in the same scope is undone by the first token's ``unbind``."""
    added = {k: v for k, v in fields.items() if v is not None}
    return _context.set({**_context.get(), **added})


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def fresh_context(**fields: str | None) -> contextvars.Context:
    """A copy of the current context with only ``fields`` bound: for a task or timer
    (``asyncio.create_task(..., context=)``, ``loop.call_later(..., context=)``) that
    must not carry the ids of the request or event that started it."""
    context = contextvars.copy_context()
    context.run(_context.set, {k: v for k, v in fields.items() if v is not None})
    return context


def about(**fields: str | None) -> dict[str, Any]:
    """``extra=`` for one line: context fields for it alone (over the bound ones)."""
    return {"hub_about": {k: v for k, v in fields.items() if v is not None}}


def with_fields(**fields: object) -> dict[str, Any]:
    """``extra=`` for one line: structured fields (JSON keys; text lines keep the message)."""
    return {"hub_fields": fields}


class ContextFields(logging.Filter):
    """Puts the bound context (and a line's own ``about``) on each record as
    ``hub_context``, for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = getattr(record, "hub_about", None)
        record.hub_context = {**_context.get(), **own} if own else _context.get()
        return True


def _context_of(record: logging.LogRecord) -> Mapping[str, str]:
    found = getattr(record, "hub_context", None)
    return found if found is not None else _context.get()


def _redacted(ei: Any, text: str) -> str:
    """A traceback without the input values pydantic puts in its messages."""
    exc, seen = ei[1], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            safe = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
            text = text.replace(
                str(exc), f"{exc.error_count()} validation error(s) for {exc.title}: {safe}"
            )
        exc = exc.__cause__ or exc.__context__
    return text


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, then `` [req=.. sid=.. session=.. center=.. user=.. ...]``
    when a context is bound."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context_of(record)
        if not context:
            return line
        shown = " ".join(f"{FIELDS[k]}={context[k]}" for k in FIELDS if k in context)
        return f"{line} [{shown}]"

    def formatException(self, ei: Any) -> str:
        return _redacted(ei, super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC, ms), ``level``, ``logger``,
    ``message``, the context fields that are set, the line's structured fields,
    and ``exc`` (the traceback) when there is one. Nothing else of the record:
    an attribute a library adds through ``extra=`` is not written."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
            **getattr(record, "hub_fields", _EMPTY),
        }
        if record.exc_info:
            line["exc"] = _redacted(record.exc_info, self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """The root logger writes to ``stream`` (stderr) at ``level`` in ``fmt``; any
    handler configured before is replaced. Python's warnings go through it too
    (logger ``py.warnings``), so that a JSON log holds nothing but JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFields())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    return handler
