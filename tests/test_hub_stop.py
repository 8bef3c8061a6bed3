"""A stopping hub closes its database only after the database work its own
background tasks have under way."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select

from realtime.gateway.membership import Connection
from rest.keys import DB, ENGINE, GATEWAY
from tests.conftest import HubFactory

# Longer than a hub takes to stop with nothing to wait for: the hook is still in its
# transaction when the hub would have closed the database.
HOOK_S = 0.5


async def test_a_hub_stopped_while_an_expired_token_is_being_disconnected_waits_for_it(
    make_hub: HubFactory,
) -> None:
    """Regression (the "KNOWN LEAK" ResourceWarnings: an asyncpg connection of an
    in-process hub garbage-collected unclosed). A token's expiry disconnects its socket
    from a task of the gateway's own, whose disconnect hooks write to the database
    (leaving the session, attendance); nothing waited for that task, so a hub stopped
    meanwhile disposed its engine with the hook's connection checked out, and that
    connection, handed back afterwards to the disposed pool, was never closed. Caught
    in ``test_a_token_inside_the_leeway_keeps_its_socket_until_the_leeway_runs_out``,
    whose client sees the disconnect before the hooks have run."""
    hub = await make_hub()
    assert hub.app is not None
    app = hub.app
    engine = app[ENGINE].sync_engine
    checked_out: set[int] = set()
    at_dispose: list[int] = []
    event.listen(engine, "checkout", lambda _conn, record, _proxy: checked_out.add(id(record)))
    event.listen(engine, "checkin", lambda _conn, record: checked_out.discard(id(record)))
    event.listen(engine, "engine_disposed", lambda _engine: at_dispose.append(len(checked_out)))
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow_hook(_connection: Connection) -> None:
        async with app[DB].begin() as db:
            await db.scalar(select(1))
            started.set()
            await asyncio.sleep(HOOK_S)  # stands for database work slower than the stop
        finished.set()

    app[GATEWAY].on_disconnect(slow_hook)
    await hub.connect("s1", "STUDENT", ttl_s=1)
    await asyncio.wait_for(started.wait(), 5)  # the token expired: its socket is going
    await hub.stop()
    assert finished.is_set(), "the hub stopped before the expired socket's hooks finished"
    assert at_dispose == [0], f"connections checked out when the engine was disposed: {at_dispose}"
