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
connection pool. The batch runs on the DBAPI connection itself, with each
column's SQLAlchemy bind processing (so rows read back as the ORM wrote them):
a transaction through SQLAlchemy's ``Connection`` cost several times the
inserts it carried (``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy
from sqlalchemy import Table, event, insert
from sqlalchemy.engine import URL, Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.db import sqlite_pragmas
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
        self._connection: Any = None  # the DBAPI connection, made on the thread
        self._statements: dict[tuple[Table, tuple[str, ...]], _Statement] = {}

    async def insert(self, rows: Rows) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, rows)

    def _insert(self, rows: Rows) -> None:
        # The DBAPI connection itself: a transaction through SQLAlchemy's Connection
        # cost several times the inserts it carried (begin, execution context, params).
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for table, values in rows.items():
                statement = self._statement(table, tuple(values[0]))
                connection.executemany(statement.sql, [statement.params(row) for row in values])
            connection.execute("COMMIT")
        except BaseException:
            if connection.driver_connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _statement(self, table: Table, columns: tuple[str, ...]) -> _Statement:
        statement = self._statements.get((table, columns))
        if statement is None:
            statement = _Statement.of(table, columns, self._engine.dialect)
            self._statements[(table, columns)] = statement
        return statement

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()


@dataclass(frozen=True)
class _Statement:
    """An INSERT of some of a table's columns, with each column's SQLAlchemy bind
    processing (JSON, UTC timestamps), so rows are stored as the ORM stores them."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, table: Table, columns: tuple[str, ...], dialect: Dialect) -> _Statement:
        sql = str(insert(table).compile(dialect=dialect, column_keys=list(columns)))
        processors = tuple(
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
        )
        return cls(sql, columns, processors)

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(self.columns, self.processors, strict=True)
        )


def batch_writer(engine: AsyncEngine) -> BatchWriter:
    """The writer for ``engine``'s database (see the module docstring)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return SqliteBatchWriter(engine.url)
    return AsyncBatchWriter(engine)
