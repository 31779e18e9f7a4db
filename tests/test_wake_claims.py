"""Waking many instances at once: a claim reads the journals of the instances it takes (one
query, within a budget), and what it read is used only while nothing changed since."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from helpers import settle, start

from host import DurableEngine, InstanceId, InstanceStatus, ManualClock, Status, TenantId
from host.core import codec
from host.core.model import StepKind, StepRecord, StepState
from host.core.outcomes import Completed, Failed
from host.store import Claim, Settled, rows
from host.store.postgres import PostgresStorage
from host.store.sqlite import SqliteStorage


async def _asleep(engine: DurableEngine, tenant: TenantId, count: int) -> list[str]:
    """`count` instances of the testkit's sleeper, each asleep after its first step."""
    instances = [await start(engine, tenant, "sleeper", {"ms": 1000}) for _ in range(count)]
    await engine.run_until_idle()
    return instances


async def test_a_claim_reads_each_woken_instances_whole_journal(
        engine: DurableEngine, kit: TenantId, testkit_wasm: bytes,
        clock: ManualClock) -> None:
    other = TenantId("other")
    await engine.registry.register(other, testkit_wasm)
    for tenant in (kit, other):
        await engine.registry.set_limits(tenant, {"max_concurrent_invocations": 10})
    asleep = {(kit, i) for i in await _asleep(engine, kit, 3)}
    asleep |= {(other, i) for i in await _asleep(engine, other, 2)}
    clock.advance(2000)
    claims = await engine.claim_due(10)
    assert asleep == {(c.tenant_id, c.instance_id) for c in claims}
    for claim in claims:
        assert claim.prefetched is not None and claim.prefetched.records is not None
        journal = (await engine.instances.status(claim.tenant_id, claim.instance_id)).steps
        assert [(s["name"], s["state"]) for s in journal] == [
            (r.name, r.state.value) for r in claim.prefetched.records]
    for claim in claims:
        await engine.run_claimed(claim)
    for tenant, instance in asleep:
        assert _woke_and_completed(await engine.instances.status(tenant, instance))


async def test_journals_past_the_claims_budget_are_read_by_their_runs(
        engine: DurableEngine, kit: TenantId, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await engine.registry.set_limits(kit, {"max_concurrent_invocations": 10})
    asleep = await _asleep(engine, kit, 3)
    # Room for the first journal (2 rows) and half the second: never a part of one.
    monkeypatch.setattr(rows, "PREFETCH_MOST_ROWS", 3)
    clock.advance(2000)
    claims = await engine.claim_due(10)
    found = [c.prefetched.records for c in claims if c.prefetched is not None]
    assert [2, None, None] == sorted((len(r) if r is not None else None for r in found),
                                     key=lambda n: n is None)
    for claim in claims:
        await engine.run_claimed(claim)
    for instance in asleep:
        status = await engine.instances.status(kit, instance)
        assert (Status.COMPLETE, 3, "done") == (status.status, len(status.steps),
                                                status.output)


async def _claimed_awake(engine: DurableEngine, kit: TenantId, clock: ManualClock
                         ) -> tuple[str, Claim]:
    """One sleeper, due now and claimed (not run yet)."""
    [instance] = await _asleep(engine, kit, 1)
    clock.advance(2000)
    [claim] = await engine.claim_due(1)
    return instance, claim


def _woke_and_completed(status: InstanceStatus) -> bool:
    return (Status.COMPLETE, ["before", "nap", "after"]) == (
        status.status, [s["name"] for s in status.steps])


async def test_a_pause_between_claim_and_run_is_seen_by_the_woken_run(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance, claim = await _claimed_awake(engine, kit, clock)
    await engine.instances.pause(kit, instance)
    await engine.run_claimed(claim)
    assert (await engine.instances.status(kit, instance)).status is Status.PAUSED
    await engine.instances.resume(kit, instance)
    assert _woke_and_completed(await settle(engine, kit, instance))


async def test_a_restart_between_claim_and_run_discards_the_journal_the_claim_read(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance, claim = await _claimed_awake(engine, kit, clock)
    await engine.instances.terminate(kit, instance)
    await engine.instances.restart(kit, instance)
    await engine.run_claimed(claim)  # the old run: it must write nothing
    status = await engine.instances.status(kit, instance)
    assert (Status.QUEUED, []) == (status.status, status.steps)
    await settle(engine, kit, instance)
    clock.advance(2000)
    assert _woke_and_completed(await settle(engine, kit, instance))


@contextlib.asynccontextmanager
async def _writer_held(engine: DurableEngine) -> AsyncIterator[None]:
    """Writes queued in the block wait for it to end, then share one commit."""
    store = engine.store
    if isinstance(store, SqliteStorage):
        release = await store.db.writer.park()
        try:
            yield
        finally:
            release()
        return
    assert isinstance(store, PostgresStorage)
    held = asyncio.Event()

    async def hold(batch: object) -> None:
        await held.wait()
    holding = asyncio.ensure_future(store.db.write(hold))
    await asyncio.sleep(0.02)
    try:
        yield
    finally:
        held.set()
        await holding


async def test_finished_runs_settled_in_one_commit_each_get_their_own_outcome(
        engine: DurableEngine, kit: TenantId) -> None:
    """Settling finished runs shares one UPDATE per commit: each still lands only while
    its run holds the instance, with its own status, output or error."""
    await engine.registry.set_limits(kit, {"max_concurrent_invocations": 10})
    instances = [await start(engine, kit, "steps", {"count": 3}) for _ in range(4)]
    claims = {claim.instance_id: claim for claim in await engine.claim_due(4)}
    runs = [engine.store.run_writes(claims[InstanceId(i)]) for i in instances]
    completed, failed, lost, broken = runs
    await engine.instances.terminate(kit, instances[2])  # under its run
    broken.failure = RuntimeError("its journal write failed")
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[Settled | None]] = [loop.create_future() for _ in runs]
    async with _writer_held(engine):
        for run in runs:
            run.append([StepRecord(0, StepKind.DO, "s0", 1, StepState.OK, 0, result=b"\xc0",
                                   attempts=1)])
        completed.settle(Completed(codec.pack("done")), waiters[0])
        failed.settle(Failed("Oops", "it failed"), waiters[1])
        lost.settle(Completed(codec.pack("late")), waiters[2])
        broken.settle(Completed(codec.pack("broken")), waiters[3])
    settled = await asyncio.gather(*waiters)
    assert [Status.COMPLETE, Status.ERRORED, None, Status.ERRORED] == [
        s.status if s is not None else None for s in settled]
    found = [await engine.instances.status(kit, i) for i in instances]
    assert [Status.COMPLETE, Status.ERRORED, Status.TERMINATED, Status.ERRORED] == [
        f.status for f in found]
    assert ["done", None, None, None] == [f.output for f in found]
    assert [None, "Oops", None, "HostError"] == [
        f.error["name"] if f.error else None for f in found]
    # The terminated run wrote nothing; the broken one's journal write was refused.
    assert [1, 1, 0, 0] == [len(f.steps) for f in found]
