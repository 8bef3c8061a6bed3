"""Batch inserts for the canvas committer: one transaction per batch, rows by table.

The contract: ``insert`` stores every row or none (one transaction) and
raises if it could not; a batch that returned is durable. Batches run one at
a time (the committer awaits each).

On Postgres the batch goes through the async engine (asyncpg is natively
async). On a SQLite file it goes to a connection of its own, on a thread of
its own, as one call: through aiosqlite a batch was seven thread round trips
(begin, cursor, execute, close, commit...) and held SQLite's single write
lock across as many turns of the event loop, so a busy loop kept every other
writer waiting past its busy timeout ("database is locked"). Here the lock is
held only while SQLite works, and the committer never waits for the async
connection pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import sqlalchemy
from sqlalchemy import Table, event, insert
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.db import sqlite_begin_immediate, sqlite_pragmas
from realtime import codec

Rows = Mapping[Table, list[dict[str, Any]]]
# The committer's thread may wait this long for another writer (it blocks no one).
COMMITTER_BUSY_TIMEOUT_MS = 30_000


class BatchWriter(Protocol):
    async def insert(self, rows: Rows) -> None: ...

    async def close(self) -> None: ...


class AsyncBatchWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rows: Rows) -> None:
        async with self._engine.begin() as connection:
            for table, values in rows.items():
                await connection.execute(insert(table), values)

    async def close(self) -> None:
        return None


class SqliteBatchWriter:
    def __init__(self, url: URL) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canvas-writer")
        self._engine: Engine = sqlalchemy.create_engine(
            url.set(drivername="sqlite"),
            json_serializer=codec.dumps,
            json_deserializer=codec.loads,
            pool_size=1,
            max_overflow=0,
        )
        event.listen(
            self._engine, "connect", sqlite_pragmas(busy_timeout_ms=COMMITTER_BUSY_TIMEOUT_MS)
        )
        event.listen(self._engine, "begin", sqlite_begin_immediate)

    async def insert(self, rows: Rows) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, rows)

    def _insert(self, rows: Rows) -> None:
        with self._engine.begin() as connection:
            for table, values in rows.items():
                connection.execute(insert(table), values)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=True)


def batch_writer(engine: AsyncEngine) -> BatchWriter:
    """The writer for ``engine``'s database (see the module docstring)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return SqliteBatchWriter(engine.url)
    return AsyncBatchWriter(engine)
