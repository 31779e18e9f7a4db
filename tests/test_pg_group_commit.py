"""PostgreSQL's group-commit writer, and a run's fenced writes on it: writes queued during
a commit share the next one; each is acknowledged only after its COMMIT; a failing write
fails alone and the order holds; a run whose instance was taken over writes nothing.
The writes of a kind in a batch (journal rows, settles, creations) are one statement, each
write still succeeding or failing alone; a claim runs after the settles beside it.

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

from host import DurableEngine, InstanceRequest, Status, TenantId
from host.core.errors import DuplicateInstance, UnknownWorkflow
from host.core.ids import InstanceId
from host.core.model import DUE_NOW, StepKind, StepRecord, StepState
from host.core.outcomes import (
    Completed,
    Failed,
    Interrupted,
    Outcome,
    Suspended,
    SuspendReason,
)
from host.store.interface import RunWrites
from host.store.postgres.database import Batch, Database
from host.store.postgres.runs import new_worker_id
from host.store.records import NewInstance

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


def _writer_db(engine: DurableEngine) -> Database:
    db: Database = engine.store.db  # type: ignore[attr-defined]
    return db


async def _claimed(engine: DurableEngine, kit: TenantId, count: int
                   ) -> tuple[list[str], list[RunWrites]]:
    if count > 1:  # over the default cap of running instances
        await engine.registry.set_limits(kit, {"max_concurrent_invocations": count})
    ids = [await start(engine, kit, "steps", {"count": 1}) for _ in range(count)]
    claims = sorted(await engine.claim_due(count), key=lambda c: ids.index(c.instance_id))
    assert [c.instance_id for c in claims] == ids
    return ids, [engine.store.run_writes(claim) for claim in claims]


# -- merged writes: one statement a kind, each write alone in its outcome ---------------

async def test_settles_of_one_batch_each_land_and_a_fenced_out_one_changes_nothing(
        engine: DurableEngine, kit: TenantId) -> None:
    db = _writer_db(engine)
    ids, runs = await _claimed(engine, kit, 3)
    await db.pool.execute("UPDATE instances SET run_id = 'the-new-owner' "
                          "WHERE instance_id = $1", ids[1])
    holding, release = await _busy_writer(db)
    commits = db.writer.commits
    settles = [asyncio.ensure_future(run.settle_now(outcome)) for run, outcome in zip(
        runs, [_completed(), _completed(), Failed("Boom", "it broke")], strict=True)]
    await asyncio.sleep(0.02)
    release.set()
    await holding
    done, lost, failed = await asyncio.gather(*settles)
    assert commits + 2 == db.writer.commits  # the held write's, then the three settles'
    assert done is not None and done.status is Status.COMPLETE
    assert lost is None and runs[1].lost and not runs[0].lost and not runs[2].lost
    assert failed is not None and failed.status is Status.ERRORED
    rows = {row["instance_id"]: row for row in await db.fetchall(
        "SELECT instance_id, status, run_id, output, error_name, finished_at_ms "
        "FROM instances")}
    assert ("complete", None, b"\xc0") == (rows[ids[0]]["status"], rows[ids[0]]["run_id"],
                                           rows[ids[0]]["output"])
    # The new owner's instance is as it left it: running, its run, no end.
    assert ("running", "the-new-owner", None) == (
        rows[ids[1]]["status"], rows[ids[1]]["run_id"], rows[ids[1]]["finished_at_ms"])
    assert ("errored", "Boom") == (rows[ids[2]]["status"], rows[ids[2]]["error_name"])


async def test_every_kind_of_settle_in_one_batch(engine: DurableEngine, kit: TenantId) -> None:
    db = _writer_db(engine)
    ids, runs = await _claimed(engine, kit, 4)
    now = engine.clock.now_ms()
    await engine.instances.send_event(kit, ids[0], "go", {"early": True})  # while it runs
    holding, release = await _busy_writer(db)
    outcomes: list[Outcome] = [Suspended(SuspendReason.WAIT_FOR_EVENT, now + 60_000, "go"),
                Suspended(SuspendReason.SLEEP, now + 5_000),
                Suspended(SuspendReason.PAUSE, now + 7_000),
                Interrupted("storage went away")]
    settles = [asyncio.ensure_future(run.settle_now(outcome))
               for run, outcome in zip(runs, outcomes, strict=True)]
    await asyncio.sleep(0.02)
    release.set()
    await holding
    settled = await asyncio.gather(*settles)
    assert [s.status if s else None for s in settled] == [
        Status.WAITING, Status.WAITING, Status.PAUSED, Status.QUEUED]
    # The event came while the run was suspending: due at once, not at its deadline.
    assert settled[0] is not None and DUE_NOW == settled[0].wake_at_ms
    assert settled[1] is not None and now + 5_000 == settled[1].wake_at_ms
    rows = {row["instance_id"]: tuple(row)[1:] for row in await db.fetchall(
        "SELECT instance_id, status, wake_at_ms, waiting_event_type, run_id FROM instances")}
    assert rows[ids[0]] == ("waiting", DUE_NOW, "go", None)
    assert rows[ids[1]] == ("waiting", now + 5_000, None, None)
    assert rows[ids[2]] == ("paused", None, None, None)  # the claim cleared its wake time
    assert rows[ids[3]] == ("queued", DUE_NOW, None, None)


async def test_creations_of_one_batch_each_succeed_or_fail_alone(
        engine: DurableEngine, kit: TenantId) -> None:
    db = _writer_db(engine)
    await start(engine, kit, "steps", {"count": 1}, id="taken")
    holding, release = await _busy_writer(db)
    commits = db.writer.commits

    def create(*ids: str, workflow: str = "steps") -> asyncio.Future[list[InstanceId]]:
        return asyncio.ensure_future(engine.instances.create_batch(
            kit, [InstanceRequest(workflow, {"count": 1}, i) for i in ids]))
    first = create("a1", "a2")
    clashes_with_stored = create("b1", "taken")
    clashes_with_first = create("c1", "a2")
    unknown_workflow = create("e1", workflow="no-such-workflow")
    last = create("f1")
    await asyncio.sleep(0.05)
    release.set()
    await holding
    assert ["a1", "a2"] == await first
    for refused, clash in ((clashes_with_stored, "taken"), (clashes_with_first, "a2")):
        with pytest.raises(DuplicateInstance, match=repr(clash)):
            await refused
    with pytest.raises(UnknownWorkflow):
        await unknown_workflow
    assert ["f1"] == await last
    assert commits + 2 == db.writer.commits  # all five in one commit
    stored = {row[0] for row in await db.fetchall("SELECT instance_id FROM instances")}
    assert {"taken", "a1", "a2", "f1"} == stored  # nothing of a refused creation
    assert {"queued"} == {row[0] for row in await db.fetchall("SELECT status FROM instances")}


async def test_a_creation_that_breaks_fails_alone_beside_good_ones(
        engine: DurableEngine, kit: TenantId) -> None:
    db = _writer_db(engine)
    holding, release = await _busy_writer(db)

    def prepare(*ids: str, broken: bool = False) -> Any:
        def decide(active: Any) -> list[NewInstance]:
            if broken:
                raise RuntimeError("a bug in prepare")
            return [NewInstance(InstanceId(i), "steps", b"\x80") for i in ids]
        return decide
    good = asyncio.ensure_future(engine.store.create_instances(kit, 1, prepare("g1")))
    broken = asyncio.ensure_future(engine.store.create_instances(
        kit, 1, prepare("x1", broken=True)))
    twice_in_itself = asyncio.ensure_future(engine.store.create_instances(
        kit, 2, prepare("d1", "d1")))
    also_good = asyncio.ensure_future(engine.store.create_instances(kit, 1, prepare("g2")))
    await asyncio.sleep(0.02)
    release.set()
    await holding
    assert ["g1"] == await good
    with pytest.raises(RuntimeError, match="a bug in prepare"):
        await broken
    with pytest.raises(DuplicateInstance, match="'d1'"):
        await twice_in_itself
    assert ["g2"] == await also_good
    stored = {row[0] for row in await db.fetchall("SELECT instance_id FROM instances")}
    assert {"g1", "g2"} == stored


async def test_a_claim_does_not_wait_for_the_writers_batch(
        engine: DurableEngine, kit: TenantId) -> None:
    db = _writer_db(engine)
    await engine.registry.set_limits(kit, {"max_concurrent_invocations": 1})
    [first], [run] = await _claimed(engine, kit, 1)
    second = await start(engine, kit, "steps", {"count": 1})
    holding, release = await _busy_writer(db)
    settle = asyncio.ensure_future(run.settle_now(_completed()))
    # A transaction of its own: it claims while the writer's batch is open, and counts
    # only what is committed (the settle is not yet: the tenant's one slot is taken).
    assert [] == await asyncio.wait_for(engine.claim_due(5), 5)
    release.set()
    await holding
    assert (await settle) is not None
    assert [second] == [c.instance_id for c in await engine.claim_due(5)]
    assert first != second


async def test_a_lookup_of_an_instance_by_key_reads_no_other_instance_on_an_empty_table(
        engine: DurableEngine, kit: TenantId) -> None:
    """A lookup of one instance by its key, planned once per connection, generic, often
    while the table is young (the statement PostgreSQL ran to check each journal row's
    foreign key, until migration 0008 dropped it; the check of an event's still is): it
    must find the instance by both key columns in an index, never fetch the tenant's
    instances and filter them (an index led by the tenant alone did that: 0.1-0.3 ms a
    journal row, growing with the table, most of the server's time)."""
    async with _writer_db(engine).connection() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(
            "PREPARE key_check (text, text) AS SELECT 1 FROM ONLY instances x WHERE "
            "tenant_id OPERATOR(pg_catalog.=) $1 AND instance_id OPERATOR(pg_catalog.=) $2 "
            "FOR KEY SHARE OF x")
        plan = "\n".join(row[0] for row in await conn.fetch(
            "EXPLAIN EXECUTE key_check('kit', 'x')"))
        await conn.execute("DEALLOCATE key_check")
        await conn.execute("RESET plan_cache_mode")
    assert "Index Cond: ((tenant_id = $1) AND (instance_id = $2))" in plan, plan
    assert "Filter" not in plan, plan
