"""PostgreSQL's group-commit writer, and a run's fenced writes on it: writes queued during
a commit share the next one; each is acknowledged only after its COMMIT; a failing write
fails alone and the order holds; a run whose instance was taken over writes nothing.

PostgreSQL only: these drive its writer directly (tests/test_group_commit.py does SQLite's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from conftest import fresh_database
from helpers import start

from host import DurableEngine, TenantId
from host.core.model import StepKind, StepRecord, StepState
from host.core.outcomes import Completed
from host.store.postgres.database import Batch, Database
from host.store.postgres.runs import new_worker_id

pytestmark = pytest.mark.postgres_only("drives PostgreSQL's writer and fences directly")


@pytest.fixture
async def pg(tmp_path: Any, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    url = fresh_database("postgres", tmp_path, request)
    assert isinstance(url, str)
    database = await Database.open(url, new_worker_id(), 10_000)
    await database.pool.execute("CREATE TABLE t (x integer PRIMARY KEY)")
    yield database
    await database.close()


def _insert(x: int, fail: bool = False) -> Callable[[Batch], Any]:
    async def op(batch: Batch) -> int:
        await batch.conn.execute("INSERT INTO t (x) VALUES ($1)", x)
        if fail:
            raise ValueError(f"write {x} fails")
        return x
    return op


async def _rows(db: Database) -> list[int]:
    return [row["x"] for row in await db.fetchall("SELECT x FROM t ORDER BY x")]


async def _busy_writer(db: Database) -> tuple[asyncio.Future[None], asyncio.Event]:
    """A write that holds the writer in its transaction until the event is set."""
    release = asyncio.Event()

    async def hold(batch: Batch) -> None:
        await release.wait()
    holding = asyncio.ensure_future(db.write(hold))
    await asyncio.sleep(0.02)
    return holding, release


async def test_writes_queued_during_a_commit_share_the_next_one(pg: Database) -> None:
    db = pg
    holding, release = await _busy_writer(db)
    commits = db.writer.commits
    writes = [asyncio.ensure_future(db.write(_insert(x))) for x in range(50)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in writes), "acknowledged before any commit"
    # Not visible to anyone else either: nothing is committed yet.
    assert [] == await _rows(db)
    release.set()
    await holding
    assert list(range(50)) == await asyncio.gather(*writes)
    assert commits + 2 == db.writer.commits  # the held one's, then all fifty in one
    assert list(range(50)) == await _rows(db)


async def test_a_failing_write_fails_alone_and_the_order_holds(pg: Database) -> None:
    db = pg
    holding, release = await _busy_writer(db)
    first = asyncio.ensure_future(db.write(_insert(1)))
    failing = asyncio.ensure_future(db.write(_insert(2, fail=True)))
    duplicate = asyncio.ensure_future(db.write(_insert(1)))  # a real constraint violation
    last = asyncio.ensure_future(db.write(_insert(3)))
    await asyncio.sleep(0.02)
    release.set()
    await holding
    assert 1 == await first
    with pytest.raises(ValueError, match="write 2 fails"):
        await failing
    with pytest.raises(asyncpg.UniqueViolationError):
        await duplicate
    assert 3 == await last
    assert [1, 3] == await _rows(db)


async def test_a_lone_failing_write_changes_nothing(pg: Database) -> None:
    db = pg
    with pytest.raises(ValueError):
        await db.write(_insert(7, fail=True))
    assert [] == await _rows(db)
    assert 8 == await db.write(_insert(8))


async def test_a_cancelled_write_that_has_not_started_never_runs(pg: Database) -> None:
    db = pg
    holding, release = await _busy_writer(db)
    cancelled = asyncio.ensure_future(db.write(_insert(1)))
    kept = asyncio.ensure_future(db.write(_insert(2)))
    await asyncio.sleep(0.02)
    cancelled.cancel()
    release.set()
    await holding
    assert 2 == await kept
    assert [2] == await _rows(db)


async def test_a_write_from_another_thread_blocks_until_committed(pg: Database) -> None:
    db = pg
    x = await asyncio.get_running_loop().run_in_executor(None, db.write_blocking, _insert(5))
    assert 5 == x
    assert [5] == await _rows(db)


# -- a run's writes ---------------------------------------------------------------------

def _step(position: int, state: StepState) -> StepRecord:
    return StepRecord(position, StepKind.DO, f"s{position}", 1, state, 0,
                      result=b"\xc0" if state is StepState.OK else None, attempts=1)


async def test_a_run_whose_instance_was_taken_over_writes_nothing(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 3})
    [claim] = await engine.claim_due(1)
    run = engine.store.run_writes(claim)
    await run.append_now([_step(0, StepState.OK)])
    # Another worker took the instance over (its lease ran out): a new run holds it.
    await engine.store.db.pool.execute(  # type: ignore[attr-defined]
        "UPDATE instances SET run_id = 'the-new-owner' WHERE instance_id = $1", instance)
    await run.append_now([_step(1, StepState.OK)])
    assert run.lost
    assert await run.settle_now(_completed()) is None
    assert [0] == [r.position for r in await engine.instances.steps(kit, instance)]


async def test_a_position_written_twice_in_one_commit_keeps_the_later_row(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 3})
    [claim] = await engine.claim_due(1)
    run = engine.store.run_writes(claim)
    holding, release = await _busy_writer(engine.store.db)  # type: ignore[attr-defined]
    run.append([_step(0, StepState.PENDING)])
    run.append([_step(0, StepState.OK), _step(1, StepState.OK)])
    release.set()
    await holding
    assert await run.settle_now(_completed()) is not None
    journal = await engine.instances.steps(kit, instance)
    assert [(0, StepState.OK), (1, StepState.OK)] == [(r.position, r.state) for r in journal]
    assert 3 == run.committed_count


def _completed() -> Any:
    return Completed(b"\xc0")

