"""Structured logs: the text and JSON formats and the context of each line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from typing import Any

from pydantic import BaseModel

from realtime.base import logs

SESSIONS = "/api/v1/sessions"
ISO_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REQUIRED = ("ts", "level", "logger", "message")


# -- the formatters and the context, on their own ---------------------------------


def record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("realtime.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def formatted(formatter: logging.Formatter, made: logging.LogRecord) -> str:
    logs.ContextFields().filter(made)
    return formatter.format(made)


def test_the_text_format_appends_the_bound_context_only_when_there_is_one() -> None:
    text = logs.TextFormatter()
    assert formatted(text, record("hello")).endswith("realtime.test: hello")
    with logs.bound(request_id="r1", user_id="u1", center_id="c1", sid=None):
        line = formatted(text, record("hello %s", "there"))
    assert line.endswith("realtime.test: hello there [req=r1 center=c1 user=u1]"), line
    assert formatted(text, record("x", **logs.about(sid="s9"))).endswith("x [sid=s9]")


def test_a_json_line_has_the_fields_of_the_schema_and_no_other_record_attributes() -> None:
    with logs.bound(sid="abc", event="canvas:patch"):
        made = record("hello %s", "you", secret_extra="from a library")
        made.__dict__.update(logs.with_fields(status=200))
        line = json.loads(formatted(logs.JsonFormatter(), made))
    assert line.keys() == {"ts", "level", "logger", "message", "sid", "event", "status"}
    assert ISO_MS_UTC.fullmatch(line["ts"])
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "realtime.test",
        "hello you",
    )


class Note(BaseModel):
    words: int


def test_a_traceback_leaves_out_the_input_pydantic_quotes() -> None:
    try:
        # Built here, so that the source line in the traceback does not quote it.
        Note.model_validate({"words": "NOTE" + "MARKER free text"})
    except Exception:
        made = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = json.loads(formatted(logs.JsonFormatter(), made))
    assert "ValidationError" in line["exc"] and "words" in line["exc"], line["exc"]
    assert "NOTEMARKER" not in line["exc"]
    assert "NOTEMARKER" not in formatted(logs.TextFormatter(), made)


def test_a_client_request_id_is_kept_only_if_short_and_plain() -> None:
    assert logs.safe_id("abc-123_X.y:z")
    for bad in ("", "a" * 65, "has space", "semi;colon", "new\nline", 12, None):
        assert not logs.safe_id(bad), bad


async def test_a_task_started_in_a_fresh_context_does_not_carry_the_request_ids() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("realtime.test.background")
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFields())
    handler.setFormatter(logs.JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False

    async def later(name: str) -> None:
        await asyncio.sleep(0)
        logger.warning(name)

    try:
        with logs.bound(request_id="req-1", sid="sid-1"):
            inherited = asyncio.create_task(later("inherited"))
            fresh = asyncio.create_task(later("fresh"), context=logs.fresh_context(session_id="s1"))
        await asyncio.gather(inherited, fresh)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = {line["message"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["inherited"]["request_id"] == "req-1"  # what asyncio does by itself
    assert lines["fresh"]["session_id"] == "s1"
    assert "request_id" not in lines["fresh"] and "sid" not in lines["fresh"]
    assert logs.current() == {}
