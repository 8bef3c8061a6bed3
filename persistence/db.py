"""Engine and session factory for SQLite (embedded default) and Postgres."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from realtime.base import codec

log = logging.getLogger(__name__)

# Execution option of read-only sessions.
READ_ONLY = "hub_read_only"
# How long a read on the event loop may wait for SQLite (in WAL mode only a
# writer's recovery or a closing connection's checkpoint makes a reader wait).
INLINE_BUSY_TIMEOUT_MS = 200
# The sync engines whose sessions run on the loop, by the engine they stand in for
# and whether they only read (see _inline_engine).
_INLINE: weakref.WeakKeyDictionary[AsyncEngine, dict[bool, Engine]] = weakref.WeakKeyDictionary()
# How often a SQLite file's log is copied into it while the loop commits (WalCheckpoints).
CHECKPOINT_EVERY_S = 1.0
_CHECKPOINTS: weakref.WeakKeyDictionary[AsyncEngine, WalCheckpoints] = weakref.WeakKeyDictionary()
# Connections an inline engine keeps open between sessions (more are opened when
# needed, and closed when returned): opening one runs four PRAGMAs.
INLINE_POOL_SIZE = 16


def create_engine(url: str, *, echo: bool = False, schema: str | None = None) -> AsyncEngine:
    """An async engine for ``url``.

    SQLite gets foreign keys on, WAL, a busy timeout and ``BEGIN IMMEDIATE``
    transactions so that the hub's writers queue instead of failing.
    ``schema`` (Postgres only) sets the ``search_path``, which is how each
    test gets a schema of its own.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_pre_ping": True,
        "json_serializer": codec.dumps,
        "json_deserializer": codec.loads_stored,
        # A failed statement's error (logged with its traceback) shows the SQL, not the
        # values: canvas ops, notes, help messages (docs/logging.md).
        "hide_parameters": True,
    }
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # A file cannot drop the connection: no ping round trip per checkout.
        kwargs["pool_pre_ping"] = False
        engine = _create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas())
        event.listen(engine.sync_engine, "begin", sqlite_begin_immediate)
        return engine
    if schema is not None:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    kwargs.update(pool_size=10, max_overflow=10, pool_recycle=1800)
    return _create_async_engine(url, **kwargs)


def sqlite_pragmas(
    busy_timeout_ms: int = 5000, *, checkpoints: bool = True
) -> Callable[[Any, ConnectionPoolEntry], None]:
    """The ``connect`` listener that sets up each SQLite connection; ``checkpoints``
    False: its commits never copy the log into the database (see WalCheckpoints)."""

    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Hand transaction control to SQLAlchemy (see sqlite_begin_immediate).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return on_connect


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions; ``factory.begin()`` for a transaction that writes."""
    if engine.dialect.name == "sqlite":
        return SerializedWrites(engine, expire_on_commit=False)
    return async_sessionmaker(engine, expire_on_commit=False)


class SerializedWrites(async_sessionmaker[AsyncSession]):
    """SQLite: ``begin()`` transactions take turns in the event loop.

    SQLite has one writer. Without this every concurrent write transaction's
    thread waited in SQLite's busy handler, and under load (a loop slow to get
    back to the transaction holding the lock) some gave up after the busy
    timeout: "database is locked", a 500 for a REST call. Queued here they wait
    in order, without a timeout. A write transaction must not open another.

    On a SQLite file a turn's transaction runs on the event loop through the
    standard driver when it gets the write lock at once (``BEGIN IMMEDIATE``
    with a busy timeout of 0), as the read sessions do; when another writer
    holds the lock (the canvas committer's thread, another process) it runs
    through aiosqlite, whose thread waits for the lock.
    """

    def __init__(self, engine: AsyncEngine, **kw: Any) -> None:
        super().__init__(engine, **kw)
        self._turn = asyncio.Lock()
        self._inline: async_sessionmaker[AsyncSession] | None = None
        self._checkpoints: WalCheckpoints | None = None
        if _is_sqlite_file(engine):
            inline = _inline_engine(engine, False)
            self._inline = async_sessionmaker(sync_session_class=_bound_to(inline), **kw)
            self._checkpoints = wal_checkpoints(engine)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        async with self._turn:
            session = await self._inline_transaction()
            if session is None:
                async with super().begin() as session:
                    yield session
                return
            try:
                yield session
                await session.commit()
                if self._checkpoints is not None:
                    self._checkpoints.wrote()
            except BaseException:
                await session.rollback()
                raise
            finally:
                await session.close()

    async def _inline_transaction(self) -> AsyncSession | None:
        """A session on the loop that holds the write lock, or None if it is taken."""
        if self._inline is None:
            return None
        session = self._inline()
        try:
            session.sync_session.connection()  # BEGIN IMMEDIATE, now (sync: a stdlib driver)
        except OperationalError as exc:
            await session.close()
            if busy(exc.orig):
                return None
            raise
        return session


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads.

    On a SQLite file they read on the event loop itself, through the standard
    library's driver: in WAL mode a read never waits for a writer, and a query
    of a few rows is microseconds of SQLite work, while through aiosqlite each
    statement was several hops to a thread and back (a read transaction of one
    query: 550-860 us of CPU against 170-190 us inline, ``python -m
    loadtest.sql_calls``). They do not take the
    write lock, so a reconnect storm's joins read side by side. Elsewhere
    (Postgres) they are the engine's own sessions.
    """
    if not _is_sqlite_file(engine):
        return async_sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
    inline = _inline_engine(engine, True)
    return async_sessionmaker(sync_session_class=_bound_to(inline), expire_on_commit=False)


def sync_sqlite_engine(
    url: URL, *, busy_timeout_ms: int, checkpoints: bool = True, **kw: Any
) -> Engine:
    """A sync engine (the standard library's driver) on the SQLite file of ``url``, set up
    as every hub connection is (``sqlite_pragmas``, the hub's JSON codec)."""
    engine = sqlalchemy.create_engine(
        url.set(drivername="sqlite"),
        json_serializer=codec.dumps,
        json_deserializer=codec.loads_stored,
        hide_parameters=True,  # as create_engine's
        **kw,
    )
    pragmas = sqlite_pragmas(busy_timeout_ms=busy_timeout_ms, checkpoints=checkpoints)
    event.listen(engine, "connect", pragmas)
    return engine


def _inline_engine(engine: AsyncEngine, read_only: bool) -> Engine:
    """The sync engine on ``engine``'s SQLite file whose sessions run on the loop:
    reads wait at most ``INLINE_BUSY_TIMEOUT_MS``, writes never wait."""
    engines = _INLINE.setdefault(engine, {})
    inline = engines.get(read_only)
    if inline is None:
        inline = sync_sqlite_engine(
            engine.url,
            busy_timeout_ms=INLINE_BUSY_TIMEOUT_MS if read_only else 0,
            checkpoints=False,  # a checkpoint syncs the file: WalCheckpoints' thread does it
            pool_size=INLINE_POOL_SIZE,
            # Never make the loop wait for a connection: a session held across an
            # await elsewhere takes another one.
            max_overflow=-1,
        ).execution_options(**{READ_ONLY: read_only})
        event.listen(inline, "begin", sqlite_begin_immediate)
        engines[read_only] = inline
    return inline


def busy(exc: BaseException | None) -> bool:
    """Whether a driver error is SQLite's "database is locked" (or "table is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _is_sqlite_file(engine: AsyncEngine) -> bool:
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


def _bound_to(inline: Engine) -> type[Session]:
    class InlineSession(Session):
        """A sync session on ``inline``, whatever bind ``AsyncSession`` passes."""

        def __init__(self, bind: Any = None, **kw: Any) -> None:
            super().__init__(bind=inline, **kw)

    return InlineSession


def wal_checkpoints(engine: AsyncEngine) -> WalCheckpoints | None:
    """The checkpointer of ``engine``'s SQLite file (one per engine), None elsewhere."""
    if not _is_sqlite_file(engine):
        return None
    checkpoints = _CHECKPOINTS.get(engine)
    if checkpoints is None:
        checkpoints = _CHECKPOINTS[engine] = WalCheckpoints(engine.url)
    return checkpoints


class WalCheckpoints:
    """Copies a SQLite file's write-ahead log into the database on a thread of its own.

    The connections that commit on the event loop (the ORM's write sessions, the
    canvas committer's) never checkpoint (``wal_autocheckpoint=0``). SQLite's
    automatic checkpoint runs in the commit that finds the log past a thousand
    pages, and it copies the log and syncs the file: on the loop that was 30-70
    ms stalls in ORM commits while growing canvases' snapshots filled the log
    (``docs/benchmarks.md``). Instead, each commit on the loop says so (``wrote``)
    and the thread copies the log in, at most every ``every_s`` (PASSIVE: it
    takes no lock a writer or reader waits for).
    """

    def __init__(self, url: URL, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._engine = sync_sqlite_engine(url, busy_timeout_ms=0, pool_size=1, max_overflow=0)
        self._every_s = every_s
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._connection: Any = None  # made on the thread
        self._unchecked = False  # a commit since the running or last checkpoint began
        self._last = time.monotonic()
        self._running: asyncio.Future[None] | None = None
        self._closed = False

    def wrote(self) -> None:
        """A commit on the loop: checkpoint now unless one ran within ``every_s``. Once
        closed, nothing: a stopping hub's last handlers may still commit, and what they
        wrote stays in the log until the file's last connection closes or the next
        hub's checkpoint."""
        self._unchecked = True
        if self._closed:
            return
        if self._running is None and time.monotonic() - self._last >= self._every_s:
            self._start()

    def _start(self) -> asyncio.Future[None]:
        self._unchecked = False
        running = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
        running.add_done_callback(self._done)
        self._running = running
        return running

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _done(self, future: asyncio.Future[None]) -> None:
        self._running = None
        self._last = time.monotonic()
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed: %s", future.exception())

    async def close(self) -> None:
        """Checkpoint what is unchecked, then close."""
        self._closed = True
        if self._running is not None:
            await asyncio.wait([self._running])
        if self._unchecked:
            await asyncio.wait([self._start()])
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()


async def dispose(engine: AsyncEngine) -> None:
    """Close ``engine``'s connections, those its inline sessions opened and its checkpointer."""
    checkpoints = _CHECKPOINTS.pop(engine, None)
    if checkpoints is not None:
        await checkpoints.close()
    for inline in _INLINE.pop(engine, {}).values():
        inline.dispose()
    await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer. A read: on SQLite it must not take
    the write lock (``sqlite_begin_immediate``), or a readiness check would queue
    behind the writers, and one given up on would hold the lock from them."""
    async with engine.connect() as conn:
        reader = await conn.execution_options(**{READ_ONLY: True})
        await reader.execute(text("SELECT 1"))


def sqlite_begin_immediate(conn: Connection) -> None:
    # SQLite has one writer. A deferred transaction that read before another
    # writer committed cannot upgrade to a write (SQLITE_BUSY_SNAPSHOT, no
    # retry helps), so every transaction that may write takes the write lock up
    # front and waits its turn under busy_timeout instead. Read-only sessions
    # (see read_session_factory) read a snapshot without it.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
