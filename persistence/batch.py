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
loop's connection does not checkpoint (a checkpoint syncs the file); the
thread copies the log into the database every ``CHECKPOINT_EVERY_S`` while
the loop commits.

Both run on the DBAPI connection itself, with each column's SQLAlchemy bind
processing (so rows read back as the ORM wrote them): a transaction through
SQLAlchemy's ``Connection`` cost several times the inserts it carried
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.db import busy, sync_sqlite_engine

Rows = Mapping[Table, list[dict[str, Any]]]
log = logging.getLogger(__name__)

# The committer's thread may wait this long for another writer (it blocks no one).
COMMITTER_BUSY_TIMEOUT_MS = 30_000
# How often the thread copies the WAL into the database while the loop commits.
CHECKPOINT_EVERY_S = 1.0


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
    def __init__(self, url: URL, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canvas-writer")
        self._engine: Engine = sync_sqlite_engine(
            url,
            busy_timeout_ms=COMMITTER_BUSY_TIMEOUT_MS,
            pool_size=2,  # one connection on the event loop, one on the thread
            max_overflow=0,
        )
        self._checkpoint_every_s = checkpoint_every_s
        self._inline: Any = None  # DBAPI connections, each made where it is used
        self._threaded: Any = None
        self._statements: dict[tuple[Table, tuple[str, ...]], _Statement] = {}
        self._unchecked = False  # the loop committed since the last checkpoint
        self._checkpointed = time.monotonic()
        self._checkpoint: asyncio.Future[None] | None = None

    async def insert(self, rows: Rows) -> None:
        loop = asyncio.get_running_loop()
        if self._inline is None:
            self._inline = self._engine.raw_connection()
            # Never wait on the loop: a locked database goes to the thread instead.
            # Checkpoints (which sync the file) run on the thread too.
            self._inline.execute("PRAGMA busy_timeout=0")
            self._inline.execute("PRAGMA wal_autocheckpoint=0")
        try:
            self._write(self._inline, rows)
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            # Another writer holds the lock: wait for it on the thread.
            await loop.run_in_executor(self._thread, self._write_threaded, rows)
            return
        self._unchecked = True
        if (
            self._checkpoint is None
            and time.monotonic() - self._checkpointed >= self._checkpoint_every_s
        ):
            self._unchecked = False
            self._checkpoint = loop.run_in_executor(self._thread, self._checkpoint_wal)
            self._checkpoint.add_done_callback(self._checkpoint_done)

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

    def _checkpoint_wal(self) -> None:
        # PASSIVE: copies what no reader still needs, without taking the write lock.
        self._on_thread().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        self._checkpointed = time.monotonic()
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed: %s", future.exception())

    def _statement(self, table: Table, columns: tuple[str, ...]) -> _Statement:
        statement = self._statements.get((table, columns))
        if statement is None:
            statement = _Statement.of(table, columns, self._engine.dialect)
            self._statements[(table, columns)] = statement
        return statement

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if self._unchecked:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint_wal)
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
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return SqliteBatchWriter(engine.url)
    return AsyncBatchWriter(engine)
