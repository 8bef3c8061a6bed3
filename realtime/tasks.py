"""Stopping background tasks for sure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

CANCEL_ROUNDS = 20
CANCEL_WAIT_S = 0.25


async def stop(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel ``tasks`` and wait until they are done.

    One ``cancel()`` is not always enough: a cancellation that lands while a
    library is inside its own timeout handling can be swallowed (seen with
    redis-py reads under ``asyncio.timeout``), and the task then goes back to
    its loop. Cancel again until each is done, a bounded number of times.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(CANCEL_ROUNDS):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
    for task in pending:
        log.warning("task %s did not stop when cancelled", task.get_name())
