"""Log lines a client can cause, within a budget: at most one per interval per kind.

A client that sends garbage in a loop must not be able to grow the log faster
than a fixed rate; what it does is counted in the metrics, and the log says
how many went unlogged since its last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


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
