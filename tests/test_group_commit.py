"""The group-commit writer: writes queued during a commit share the next one; each write is
acknowledged only after its COMMIT; a failing write is rolled back alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from host.database import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "db.sqlite3")
    await database.write(lambda conn: conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    yield database
    await database.close()


def _insert(x: int, fail: bool = False) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        if fail:
            raise ValueError(f"write {x} fails")
        return x
    return op


async def _rows(db: Database) -> list[int]:
    return [row["x"] for row in await db.fetchall("SELECT x FROM t ORDER BY x")]


async def test_writes_queued_during_a_commit_share_the_next_one(db: Database) -> None:
    assert db.writer is not None
    release = await db.writer.park()  # the writer is "busy": everything below queues up
    commits = db.writer.commits
    writes = [asyncio.ensure_future(db.write(_insert(x))) for x in range(50)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in writes), "acknowledged before any commit"
    release()
    assert list(range(50)) == await asyncio.gather(*writes)
    assert commits + 1 == db.writer.commits
    assert list(range(50)) == await _rows(db)


async def test_a_failing_write_is_rolled_back_alone(db: Database) -> None:
    assert db.writer is not None
    release = await db.writer.park()
    commits = db.writer.commits
    first = asyncio.ensure_future(db.write(_insert(1)))
    failing = asyncio.ensure_future(db.write(_insert(2, fail=True)))
    duplicate = asyncio.ensure_future(db.write(_insert(1)))  # IntegrityError
    last = asyncio.ensure_future(db.write(_insert(3)))
    await asyncio.sleep(0.02)  # all four queued behind the parked writer
    release()
    assert 1 == await first
    with pytest.raises(ValueError, match="write 2 fails"):
        await failing
    with pytest.raises(sqlite3.IntegrityError):
        await duplicate
    assert 3 == await last
    assert commits + 1 == db.writer.commits
    assert [1, 3] == await _rows(db)


async def test_a_lone_failing_write_changes_nothing(db: Database) -> None:
    with pytest.raises(ValueError):
        await db.write(_insert(7, fail=True))
    assert [] == await _rows(db)
    assert 8 == await db.write(_insert(8))


async def test_a_cancelled_write_that_has_not_started_never_runs(db: Database) -> None:
    assert db.writer is not None
    release = await db.writer.park()
    cancelled = asyncio.ensure_future(db.write(_insert(1)))
    kept = asyncio.ensure_future(db.write(_insert(2)))
    await asyncio.sleep(0.02)
    cancelled.cancel()
    await asyncio.sleep(0.02)  # the cancellation reaches the queued write
    release()
    assert 2 == await kept
    assert [2] == await _rows(db)


async def test_a_transaction_parks_the_writer_and_both_commit_in_order(db: Database) -> None:
    async with db.transaction() as conn:
        pending = asyncio.ensure_future(db.write(_insert(2)))
        await conn.execute("INSERT INTO t (x) VALUES (1)")
        await asyncio.sleep(0.02)
        assert not pending.done(), "the writer committed inside someone else's transaction"
    assert 2 == await pending
    assert [1, 2] == await _rows(db)


async def test_a_write_from_another_thread_blocks_until_committed(db: Database) -> None:
    x = await asyncio.get_running_loop().run_in_executor(None, db.write_blocking, _insert(5))
    assert 5 == x
    assert [5] == await _rows(db)
