"""SQLite's group-commit writer: writes queued during a commit share the next one; each
write is acknowledged only after its COMMIT; a failing write is rolled back alone.

SQLite only: these drive its writer directly (tests/test_pg_group_commit.py does
PostgreSQL's)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from host.store.sqlite.database import Database, RowAppend, keeps_fences


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


class _Row(RowAppend):
    """An append to `t`, counting how many statements reached SQLite for it."""

    insert_sql = "INSERT INTO t (x) VALUES "
    placeholders = "(?)"

    def __init__(self, *xs: int, skip: bool = False) -> None:
        self.xs, self.skip = xs, skip
        self.failure: BaseException | None = None

    def rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return [] if self.skip else [(x,) for x in self.xs]

    def failed(self, exc: BaseException) -> None:
        self.failure = exc


async def _statements(db: Database, writes: list[Callable[[sqlite3.Connection], object]]
                      ) -> tuple[list[object], list[str]]:
    """Queue `writes` into one commit; returns their outcomes and the statements run."""
    assert db.writer is not None
    statements: list[str] = []
    db.writer._connection.set_trace_callback(statements.append)
    release = await db.writer.park()
    pending = [asyncio.ensure_future(db.write(w)) for w in writes]
    await asyncio.sleep(0.02)
    release()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    db.writer._connection.set_trace_callback(None)
    return outcomes, statements


async def test_consecutive_appends_reach_sqlite_as_one_insert(db: Database) -> None:
    writes: list[Callable[[sqlite3.Connection], object]] = [
        _Row(1), _Row(2), _Row(3, skip=True), _Row(4), _insert(10), _Row(5), _Row(6)]
    outcomes, statements = await _statements(db, writes)
    assert [None, None, None, None, 10, None, None] == outcomes
    inserts = [s for s in statements if s.startswith("INSERT INTO t (x) VALUES (")]
    # 1, 2 and 4 in one statement; the other write in between; 5 and 6 in one more.
    assert ["INSERT INTO t (x) VALUES (1), (2), (4)", "INSERT INTO t (x) VALUES (10)",
            "INSERT INTO t (x) VALUES (5), (6)"] == inserts
    assert [1, 2, 4, 5, 6, 10] == await _rows(db)


async def test_a_failing_row_fails_its_own_append_alone(db: Database) -> None:
    await db.write(_insert(2))
    duplicate = _Row(2)  # the primary key exists: the group's INSERT fails as a whole
    outcomes, _ = await _statements(db, [_Row(1), duplicate, _Row(3)])
    assert None is outcomes[0] and None is outcomes[2]
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert isinstance(duplicate.failure, sqlite3.IntegrityError)
    assert [1, 2, 3] == await _rows(db)


async def test_a_commit_from_another_connection_moves_the_writers_epoch(
        db: Database) -> None:
    assert db.writer is not None
    connection = db.writer._connection

    async def epoch() -> int:
        return await db.write(keeps_fences(lambda conn: conn.epoch))

    before = await epoch()
    assert before == await epoch(), "the writer's own commits do not move it"
    async with db.transaction() as conn:  # another connection commits
        await conn.execute("INSERT INTO t (x) VALUES (1)")
    assert before < await epoch()
    assert connection.epoch == await epoch()


async def test_a_lone_row_append_keeps_the_epoch(db: Database) -> None:
    """Journal rows committed alone move no fence: the runs of that epoch need not read
    theirs again (a lone one moved it, and every wake then read its journal twice)."""
    async def epoch() -> int:
        return await db.write(keeps_fences(lambda conn: conn.epoch))

    before = await epoch()
    await db.write(_Row(1))
    assert before == await epoch()
    await db.write(lambda conn: conn.execute("INSERT INTO t (x) VALUES (2)"))
    assert before < await epoch(), "a lone op not marked keeps_fences moves it"


async def test_only_a_peer_writers_fence_moving_commits_move_the_epoch(
        db: Database) -> None:
    """Another process's writer on the same file (`--processes N`): its claims, journal
    rows and settles keep every fence, so this writer's runs need not read theirs again;
    anything else it commits might have moved one."""
    peer = await Database.open(db.path)
    try:
        async def epoch() -> int:
            return await db.write(keeps_fences(lambda conn: conn.epoch))

        before = await epoch()
        await peer.write(keeps_fences(lambda conn: conn.execute("INSERT INTO t (x) VALUES (1)")))
        assert before == await epoch(), "a peer's fence-keeping commit leaves it"
        await peer.write(lambda conn: conn.execute("INSERT INTO t (x) VALUES (2)"))
        moved = await epoch()
        assert before < moved, "a peer's other commits move it"
        await peer.write(keeps_fences(lambda conn: conn.execute("INSERT INTO t (x) VALUES (3)")))
        assert moved == await epoch()
        async with peer.transaction() as conn:  # the peer's cold path (pause, terminate...)
            await conn.execute("INSERT INTO t (x) VALUES (4)")
        assert moved < await epoch()
    finally:
        await peer.close()


async def test_a_failing_row_after_a_full_insert_leaves_the_earlier_rows_alone(
        db: Database) -> None:
    assert db.writer is not None
    db.writer._max_params = 2  # two rows per INSERT: 1, 2 | 3, 4 | 5
    await db.write(_insert(3))
    duplicate = _Row(3)
    outcomes, statements = await _statements(
        db, [_Row(1), _Row(2), duplicate, _Row(4), _Row(5)])
    assert [None, None, None, None] == [outcomes[i] for i in (0, 1, 3, 4)]
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert "INSERT INTO t (x) VALUES (1), (2)" in statements
    assert [1, 2, 3, 4, 5] == await _rows(db)


async def test_an_append_of_several_rows_is_never_split_between_inserts(
        db: Database) -> None:
    assert db.writer is not None
    db.writer._max_params = 3  # three rows per INSERT, but an append's rows stay together
    outcomes, statements = await _statements(db, [_Row(1, 2), _Row(3, 4), _Row(5)])
    assert [None, None, None] == outcomes
    inserts = [s for s in statements if s.startswith("INSERT INTO t (x) VALUES (")]
    assert ["INSERT INTO t (x) VALUES (1), (2)", "INSERT INTO t (x) VALUES (3), (4), (5)"
            ] == inserts
    assert [1, 2, 3, 4, 5] == await _rows(db)


async def test_an_append_of_several_rows_fails_whole_when_one_row_fails(
        db: Database) -> None:
    await db.write(_insert(3))
    batch = _Row(2, 3, 4)  # 3 exists: none of 2, 3, 4 may land
    outcomes, _ = await _statements(db, [_Row(1), batch, _Row(5)])
    assert None is outcomes[0] and None is outcomes[2]
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert isinstance(batch.failure, sqlite3.IntegrityError)
    assert [1, 3, 5] == await _rows(db)


async def test_the_log_is_checkpointed_off_the_commit_path(tmp_path: Path) -> None:
    """The writer's connection never checkpoints (a checkpoint there ran inside its commit,
    and inside the file's turn that every process's writer takes); the checkpointer
    copies the log into the database file shortly after commits."""
    path = tmp_path / "db.sqlite3"
    database = await Database.open(path)
    try:
        assert database.writer is not None
        assert 0 == database.writer._connection.execute(  # noqa: SLF001
            "PRAGMA wal_autocheckpoint").fetchone()[0]
        await database.write(lambda conn: conn.execute(
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
        before = path.stat().st_size
        for index in range(40):  # 40 commits of 64 KiB: ~2.5 MiB in the log
            await database.write(lambda conn, i=index: conn.execute(
                "INSERT INTO blobs (id, body) VALUES (?, ?)", (i, bytes(65536))))
        for _ in range(200):  # (the count moves just after the copy)
            if path.stat().st_size >= before + 40 * 65536 and \
                    database.writer.checkpoints.checkpoints:
                break
            await asyncio.sleep(0.05)
        assert path.stat().st_size >= before + 40 * 65536, "the log was never checkpointed"
        assert database.writer.checkpoints.checkpoints >= 1
        assert 40 == (await database.fetchall("SELECT count(*) AS n FROM blobs"))[0]["n"]
    finally:
        await database.close()
