"""Log lines a client can cause, within a budget: at most one per interval per kind.

A client that sends garbage in a loop must not be able to grow the log faster
than a fixed rate; what it does is counted in the metrics, and the log says
how many went unlogged since its last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError


class LogBudget:
    """``log`` writes at most one line every ``every_s`` seconds; the rest are counted
    and reported on the next line written."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self._skipped = 0

    def log(self, level: int, message: str, *args: object) -> bool:
        """Log ``message % args`` at ``level`` if the budget allows; whether it did."""
        now = self._clock()
        if self._last is not None and now - self._last < self._every_s:
            self._skipped += 1
            return False
        skipped, self._skipped, self._last = self._skipped, 0, now
        if skipped:
            message += " (%d more like it in the last %.0f s, not logged)"
            args = (*args, skipped, self._every_s)
        self._logger.log(level, message, *args)
        return True


class MalformedRequests(logging.Filter):
    """For the logger aiohttp's server logs to: a request it could not parse (a
    header over its size limit, not HTTP at all) is the client's doing, logged by
    aiohttp as an ERROR with a traceback and an excerpt of the offending line
    (part of a bearer token, say). It becomes one INFO line naming the error's
    type, within a ``LogBudget``; other records pass as they are."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last: float | None = None
        self._skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every_s:
            self._skipped += 1
            return False
        skipped, self._skipped, self._last = self._skipped, 0, now
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = "malformed HTTP request (%s %s)%s"
        more = f" ({skipped} more like it in the last {self._every_s:.0f} s, not logged)"
        record.args = (exc.code, type(exc).__name__, more if skipped else "")
        record.exc_info = record.exc_text = None
        return True
