"""What one SQLite read or canvas commit costs the hub's CPU, by path.

``python -m loadtest.sql_calls [--calls N]`` builds a fresh SQLite file (the
hub's schema, migrated) in a temporary directory and runs, N times each, one
call at a time, on uvloop:

- a read transaction (open a session, one ORM query by two columns, close),
  through aiosqlite (``async_sessionmaker`` on the async engine: what the
  hub's reads did) and inline (``persistence.db.read_session_factory``: what
  they do now);
- a canvas commit of one patch and of ten, through SQLAlchemy's
  ``Connection`` (what the committer's thread did) and through
  ``persistence.batch.SqliteBatchWriter`` (now: the DBAPI connection, on the
  loop when the lock is free).

It prints the process's CPU microseconds per call (per commit) for each, twice
(the first round warms up). It touches nothing but its temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import Table, event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from loadtest.redis_calls import per_call_us
from persistence import migrate
from persistence.batch import SqliteBatchWriter
from persistence.db import (
    WalCheckpoints,
    create_engine,
    dispose,
    read_session_factory,
    session_factory,
    sqlite_begin_immediate,
    sync_sqlite_engine,
)
from persistence.models import CanvasOp, Enrollment, LiveSession

MAX_CALLS = 20_000
OPS: Table = CanvasOp.__table__  # type: ignore[assignment]
STROKE = [[10 + 3 * i, 20 + 2 * i] for i in range(20)]
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def _a_session(engine: AsyncEngine) -> str:
    async with session_factory(engine).begin() as db:
        live = LiveSession(
            center_id="c1",
            title="Bench",
            tutor_id="t1",
            starts_at=AT,
            ends_at=AT + timedelta(hours=1),
            status="LIVE",
            max_students=5,
            settings={},
            created_by="t1",
        )
        db.add(live)
        await db.flush()
        db.add(Enrollment(center_id="c1", session_id=live.id, student_id="s1"))
    return live.id


async def measure(directory: Path, calls: int) -> list[dict[str, float]]:
    engine = create_engine(f"sqlite+aiosqlite:///{directory}/bench.db")
    await migrate.upgrade(engine)
    session_id = await _a_session(engine)
    threaded = async_sessionmaker(engine, expire_on_commit=False)
    inline = read_session_factory(engine)
    query = select(Enrollment).where(
        Enrollment.session_id == session_id, Enrollment.student_id == "s1"
    )
    # The committer before: its own engine, BEGIN IMMEDIATE, a Connection per batch.
    sync_engine = sync_sqlite_engine(engine.url, busy_timeout_ms=30_000)
    event.listen(sync_engine, "begin", sqlite_begin_immediate)
    checkpoints = WalCheckpoints(engine.url)
    writer = SqliteBatchWriter(engine.url, checkpoints)
    seqs = itertools.count(1)

    def rows(n: int) -> list[dict[str, Any]]:
        ops = [{"op": "add", "path": "/elements/e1", "value": {"points": STROKE}}]
        return [
            {
                "center_id": "c1",
                "session_id": session_id,
                "student_id": "s1",
                "seq": next(seqs),
                "epoch": "e1",
                "author": "student",
                "author_id": "s1",
                "ops": ops,
                "at": AT,
            }
            for _ in range(n)
        ]

    async def read(factory: async_sessionmaker[Any]) -> object:
        async with factory() as db:
            return (await db.execute(query)).scalar_one()

    async def batch(n: int) -> None:
        await writer.insert({OPS: rows(n)})

    def through_connection(n: int) -> None:
        values = rows(n)
        with sync_engine.begin() as connection:
            connection.execute(insert(OPS), values)

    rounds = []
    try:
        for _ in range(2):
            figures = {
                "read via aiosqlite": await per_call_us(calls, lambda: read(threaded)),
                "read inline": await per_call_us(calls, lambda: read(inline)),
            }
            for n in (1, 10):
                figures[f"commit {n} via Connection"] = await per_call_us(
                    calls // 10, functools.partial(asyncio.to_thread, through_connection, n)
                )
                figures[f"commit {n} via batch writer"] = await per_call_us(
                    calls // 10, functools.partial(batch, n)
                )
            rounds.append(figures)
    finally:
        await writer.close()
        await checkpoints.close()
        sync_engine.dispose()
        await dispose(engine)
    return rounds


async def _measure_in_temporary_directory(calls: int) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="sql-calls-") as tmp:
        return await measure(Path(tmp), calls)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sql_calls")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    if not 10 <= args.calls <= MAX_CALLS:
        parser.error(f"--calls must be in [10, {MAX_CALLS}]")
    for n, figures in enumerate(uvloop.run(_measure_in_temporary_directory(args.calls)), 1):
        line = ", ".join(f"{name} {us:.0f} us" for name, us in figures.items())
        print(f"round {n}: CPU per call: {line}")


if __name__ == "__main__":
    main()
