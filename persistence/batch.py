"""Batch inserts for the canvas committer: one transaction per batch, rows by table.

The contract: ``insert`` stores every row or none (one transaction) and
raises if it could not; a batch that returned is durable. Batches run one at
a time (the committer awaits each).

On Postgres the batch goes through the async engine (asyncpg is natively
async). On a SQLite file it goes to connections of the writer's own, as one
call each. Through aiosqlite a batch was seven thread round trips (begin,
cursor, execute, close, commit...) and held SQLite's single write lock across
as many turns of the event loop, so a busy loop kept every other writer
waiting past its busy timeout ("database is locked").

The batch is written on the event loop itself when the write lock is free:
in WAL mode with ``synchronous=NORMAL`` a commit of a few rows is a few tens
of microseconds and syncs nothing, while handing it to a thread cost more
than the write (the wake-ups and the thread's fight for the GIL). That
connection never waits: its busy timeout is 0, and a batch that finds the
lock taken (an ORM write, another hub on the same file) goes to the writer's
thread, whose connection waits up to ``COMMITTER_BUSY_TIMEOUT_MS``. The
loop's connection does not checkpoint (a checkpoint syncs the file): it tells
the file's ``WalCheckpoints``, whose thread does.

Both run on the DBAPI connection itself, with each column's SQLAlchemy bind
processing (so rows read back as the ORM wrote them): a transaction through
SQLAlchemy's ``Connection`` cost several times the inserts it carried
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.db import WalCheckpoints, busy, sync_sqlite_engine, wal_checkpoints

Rows = Mapping[Table, list[dict[str, Any]]]

# The committer's thread may wait this long for another writer (it blocks no one).
COMMITTER_BUSY_TIMEOUT_MS = 30_000


def insert_into(table: Table, dialect: Dialect) -> Insert:
    """The INSERT of a batch; a table marked ``keep_first`` (its rows may be written
    twice, e.g. by two hubs) keeps the row already there: ON CONFLICT DO NOTHING."""
    if not table.info.get("keep_first"):
        return insert(table)
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"no INSERT keeping the first row for {dialect.name}")


class BatchWriter(Protocol):
    async def insert(self, rows: Rows) -> None: ...

    async def close(self) -> None: ...


class AsyncBatchWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rows: Rows) -> None:
        async with self._engine.begin() as connection:
            for table, values in rows.items():
                await connection.execute(insert_into(table, connection.dialect), values)

    async def close(self) -> None:
        return None


class SqliteBatchWriter:
    def __init__(self, url: URL, checkpoints: WalCheckpoints) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canvas-writer")
        self._engine: Engine = sync_sqlite_engine(
            url,
            busy_timeout_ms=COMMITTER_BUSY_TIMEOUT_MS,
            pool_size=2,  # one connection on the event loop, one on the thread
            max_overflow=0,
        )
        self._checkpoints = checkpoints
        self._inline: Any = None  # DBAPI connections, each made where it is used
        self._threaded: Any = None
        self._statements: dict[tuple[Table, tuple[str, ...]], _Statement] = {}

    async def insert(self, rows: Rows) -> None:
        if self._inline is None:
            self._inline = self._engine.raw_connection()
            # Never wait on the loop: a locked database goes to the thread instead.
            # Checkpoints (which sync the file) run on a thread too.
            self._inline.execute("PRAGMA busy_timeout=0")
            self._inline.execute("PRAGMA wal_autocheckpoint=0")
        try:
            self._write(self._inline, rows)
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            # Another writer holds the lock: wait for it on the thread.
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._write_threaded, rows
            )
            return
        self._checkpoints.wrote()

    def _write(self, connection: Any, rows: Rows) -> None:
        # The DBAPI connection itself: a transaction through SQLAlchemy's Connection
        # cost several times the inserts it carried (begin, execution context, params).
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

    def _on_thread(self) -> Any:
        if self._threaded is None:
            self._threaded = self._engine.raw_connection()
        return self._threaded

    def _write_threaded(self, rows: Rows) -> None:
        self._write(self._on_thread(), rows)

    def _statement(self, table: Table, columns: tuple[str, ...]) -> _Statement:
        statement = self._statements.get((table, columns))
        if statement is None:
            statement = _Statement.of(table, columns, self._engine.dialect)
            self._statements[(table, columns)] = statement
        return statement

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._threaded is not None:
            self._threaded.close()
            self._threaded = None
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
        sql = str(insert_into(table, dialect).compile(dialect=dialect, column_keys=list(columns)))
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
    checkpoints = wal_checkpoints(engine)  # a SQLite file's
    if checkpoints is not None:
        return SqliteBatchWriter(engine.url, checkpoints)
    return AsyncBatchWriter(engine)
