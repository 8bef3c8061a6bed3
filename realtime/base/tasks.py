"""Background tasks: repeating a job, and stopping tasks for sure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

CANCEL_ROUNDS = 20
CANCEL_WAIT_S = 0.25
# While a repeated job keeps failing, one line about it this often.
FAILING_LOG_EVERY_S = 60.0


async def every(
    interval_s: float,
    job: Callable[[], Awaitable[None]],
    what: str,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run ``job`` every ``interval_s`` seconds until ``stopping`` is set (then return
    between two runs, never in the middle of one) or until cancelled.

    A failure is logged with its traceback when it starts; while the job keeps
    failing (say Redis is away), one line a minute; and once when it works again.
    """
    stopping = stopping or asyncio.Event()
    failing_since: float | None = None
    said_at = 0.0
    while True:
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
            return
        except TimeoutError:
            pass
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            now = time.monotonic()
            if failing_since is None:
                failing_since = said_at = now
                log.exception("%s failed; trying again every %s s", what, interval_s)
            elif now - said_at >= FAILING_LOG_EVERY_S:
                said_at = now
                log.warning("%s still failing after %.0f s: %r", what, now - failing_since, exc)
        else:
            if failing_since is not None:
                log.warning("%s works again after %.0f s", what, time.monotonic() - failing_since)
                failing_since = None


async def wind_down(
    stopping: asyncio.Event, tasks: Iterable[asyncio.Task[object]], within_s: float
) -> None:
    """Ask repeating jobs to stop (``every``'s ``stopping``), give the runs under way
    ``within_s`` to finish what they started (a database round trip cut short can
    leave its connection behind), then cancel what is left."""
    stopping.set()
    pending = [task for task in tasks if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=within_s)
    await stop(pending)


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


async def watch_loop_lag(
    observe: Callable[[float], None], every_s: float, stopping: asyncio.Event
) -> None:
    """Observe how late the event loop wakes a sleep of ``every_s``, until ``stopping``:
    the time it spent in work that did not yield (a stall every client feels)."""
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        due = loop.time() + every_s
        await asyncio.sleep(every_s)
        observe(max(0.0, loop.time() - due))
