"""The canvas committer's batch writer on a real SQLite file and a real Postgres schema."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.batch import SqliteBatchWriter, batch_writer
from persistence.db import CHECKPOINT_EVERY_S, WalCheckpoints, dispose, session_factory
from persistence.models import CanvasOp, CanvasSnapshot
from tests.conftest import Database
from tests.support import WAITED_ON_THE_LOOP_S, longest_loop_turn
from tests.test_persistence import a_session as live_session

AT = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
# SQLite's single write lock and write-ahead log.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
OPS = [{"op": "add", "path": "/elements/e1", "value": {"type": "stroke", "points": [[1, 2]]}}]


async def a_session(engine: AsyncEngine) -> str:
    async with session_factory(engine).begin() as db:
        session = live_session()
        db.add(session)
    return session.id


def op_row(session_id: str, seq: int) -> dict[str, object]:
    return {
        "center_id": "c1",
        "session_id": session_id,
        "student_id": "s1",
        "seq": seq,
        "epoch": "e1",
        "author": "student",
        "author_id": "s1",
        "ops": OPS,
        "at": AT,
    }


def file_size(path: str) -> int:
    return os.path.getsize(path)


def sqlite_path(database: Database) -> str:
    return database.url.split(":///", 1)[1]


def snapshot_row(session_id: str, seq: int, doc: dict[str, object]) -> dict[str, object]:
    return {
        "center_id": "c1",
        "session_id": session_id,
        "student_id": "s1",
        "seq": seq,
        "epoch": "e1",
        "doc": doc,
        "created_at": AT,
    }


DOC = {"elements": {"e1": {"type": "stroke"}}, "annotations": {}, "meta": {}}


async def test_rows_read_back_as_the_orm_writes_them(engine: AsyncEngine) -> None:
    session_id = await a_session(engine)
    writer = batch_writer(engine)
    snapshot = snapshot_row(session_id, 2, DOC)
    tables = (CanvasOp.__table__, CanvasSnapshot.__table__)
    await writer.insert({tables[0]: [op_row(session_id, 1), op_row(session_id, 2)]})
    await writer.insert({tables[1]: [snapshot]})
    await writer.close()

    async with session_factory(engine)() as db:
        ops = (await db.scalars(select(CanvasOp).order_by(CanvasOp.seq))).all()
        snap = (await db.scalars(select(CanvasSnapshot))).one()
    assert [(op.seq, op.ops, op.at, op.epoch) for op in ops] == [
        (1, OPS, AT, "e1"),
        (2, OPS, AT, "e1"),
    ]
    assert (snap.seq, snap.doc, snap.created_at) == (2, snapshot["doc"], AT)


async def test_a_snapshot_written_twice_keeps_the_first_and_an_op_never_does(
    engine: AsyncEngine,
) -> None:
    """Regression: two hubs holding replicas of one canvas each stored the same timed
    snapshot (two rows at one seq). Snapshots keep the first row; a second op at a
    taken seq is still refused (it would be a lost or forked patch)."""
    session_id = await a_session(engine)
    writer = batch_writer(engine)
    later = {"elements": {}, "annotations": {}, "meta": {"second": True}}
    snapshots = CanvasSnapshot.__table__
    await writer.insert({snapshots: [snapshot_row(session_id, 1, DOC)]})
    await writer.insert({snapshots: [snapshot_row(session_id, 1, later)]})
    await writer.insert({CanvasOp.__table__: [op_row(session_id, 1)]})
    with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
        await writer.insert({CanvasOp.__table__: [op_row(session_id, 1)]})
    await writer.close()
    async with session_factory(engine)() as db:
        kept = (await db.scalars(select(CanvasSnapshot))).all()
        ops = (await db.scalars(select(CanvasOp))).all()
    assert [(s.seq, s.doc) for s in kept] == [(1, DOC)]
    assert len(ops) == 1


async def test_a_batch_is_all_or_nothing(engine: AsyncEngine) -> None:
    session_id = await a_session(engine)
    writer = batch_writer(engine)
    await writer.insert({CanvasOp.__table__: [op_row(session_id, 1)]})
    with pytest.raises(Exception, match=r"(?i)unique"):
        # seq 2 is new, seq 1 is taken: neither is stored.
        await writer.insert({CanvasOp.__table__: [op_row(session_id, 2), op_row(session_id, 1)]})
    await writer.insert({CanvasOp.__table__: [op_row(session_id, 3)]})  # the writer goes on
    await writer.close()
    async with session_factory(engine)() as db:
        seqs = (await db.scalars(select(CanvasOp.seq).order_by(CanvasOp.seq))).all()
    assert seqs == [1, 3]


@SQLITE_ONLY
async def test_a_locked_sqlite_file_is_waited_for_off_the_loop(
    engine: AsyncEngine, database: Database
) -> None:
    session_id = await a_session(engine)
    writer = batch_writer(engine)
    assert isinstance(writer, SqliteBatchWriter)
    await writer.insert({CanvasOp.__table__: [op_row(session_id, 1)]})  # on the loop

    other = sqlite3.connect(sqlite_path(database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    insert = asyncio.create_task(writer.insert({CanvasOp.__table__: [op_row(session_id, 2)]}))
    # It waits for the lock off the loop: the thread's connection waits up to 30 s,
    # the loop's gives up at once.
    assert await longest_loop_turn() < WAITED_ON_THE_LOOP_S
    assert not insert.done()
    other.execute("COMMIT")
    await asyncio.wait_for(insert, 10)
    other.close()
    await writer.close()

    async with session_factory(engine)() as db:
        seqs = (await db.scalars(select(CanvasOp.seq).order_by(CanvasOp.seq))).all()
    assert seqs == [1, 2]


@SQLITE_ONLY
async def test_the_loop_s_commits_are_checkpointed_into_the_file(
    engine: AsyncEngine, database: Database
) -> None:
    session_id = await a_session(engine)
    await engine.dispose()  # nothing else checkpoints
    path = sqlite_path(database)
    checkpoint = sqlite3.connect(path, isolation_level=None)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()
    size = file_size(path)

    checkpoints = WalCheckpoints(engine.url, every_s=0)
    writer = SqliteBatchWriter(engine.url, checkpoints)
    rows = [op_row(session_id, seq) for seq in range(1, 2001)]
    for start in range(0, len(rows), 100):
        await writer.insert({CanvasOp.__table__: rows[start : start + 100]})
    for _ in range(200):  # the checkpoint runs on the thread, not awaited by insert
        if file_size(path) > size:
            break
        await asyncio.sleep(0.01)
    assert file_size(path) > size
    await writer.close()


@SQLITE_ONLY
async def test_write_sessions_on_the_loop_leave_checkpoints_to_a_thread(
    engine: AsyncEngine, database: Database
) -> None:
    """Regression: the ORM's write sessions on the loop ran SQLite's automatic
    checkpoint in the commit that found the log past a thousand pages (30-70 ms
    stalls at 100 sessions). They never checkpoint now; a thread copies what they
    committed into the file."""
    session_id = await a_session(engine)
    path = sqlite_path(database)
    size = file_size(path)
    factory = session_factory(engine)
    async with factory.begin() as db:
        setting = db.sync_session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint")
        assert setting.scalar() == 0
    big = {"elements": {f"e{n}": {"points": [[n, n + 0.5]] * 400} for n in range(20)}}
    encoded = len(json.dumps(big, separators=(",", ":")))
    for seq in range(1, 60):  # 59 x 100 KB: past SQLite's automatic checkpoint (4 MB)
        async with factory.begin() as db:
            db.add(CanvasSnapshot(**snapshot_row(session_id, seq, big)))
        await asyncio.sleep(0.02)  # a checkpoint at most every second (CHECKPOINT_EVERY_S)
    await dispose(engine)  # checkpoints what is left
    assert file_size(path) > size + 59 * encoded


@SQLITE_ONLY
async def test_a_write_session_that_commits_after_the_engine_is_disposed_succeeds(
    engine: AsyncEngine, database: Database
) -> None:
    """A socket event handled while the hub stops (its loop busy, aiohttp's shutdown
    timeout out) may commit after the database was closed. The commit used to tell
    the closed checkpointer, whose thread was gone: "cannot schedule new futures after
    shutdown", the handler failed (seen in a fan-out at 300 sessions)."""
    factory = session_factory(engine)
    session_id = await a_session(engine)  # the checkpointer started
    await dispose(engine)
    await asyncio.sleep(CHECKPOINT_EVERY_S)  # the next commit would start a checkpoint
    async with factory.begin() as db:
        db.add(CanvasSnapshot(**snapshot_row(session_id, 1, {"elements": {}})))
    async with factory() as db:
        assert await db.scalar(select(CanvasSnapshot.seq)) == 1
