"""Waking many instances at once: a claim reads the journals of the instances it takes (one
query, within a budget), and what it read is used only while nothing changed since."""

from __future__ import annotations

import pytest
from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.store import rows


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
        status = await engine.instances.status(tenant, instance)
        assert (Status.COMPLETE, ["before", "nap", "after"]) == (
            status.status, [s["name"] for s in status.steps])


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


async def test_a_pause_between_claim_and_run_is_seen_by_the_woken_run(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    [instance] = await _asleep(engine, kit, 1)
    clock.advance(2000)
    [claim] = await engine.claim_due(1)
    await engine.instances.pause(kit, instance)
    await engine.run_claimed(claim)
    assert (await engine.instances.status(kit, instance)).status is Status.PAUSED
    await engine.instances.resume(kit, instance)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, ["before", "nap", "after"]) == (
        status.status, [s["name"] for s in status.steps])


async def test_a_restart_between_claim_and_run_discards_the_journal_the_claim_read(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    [instance] = await _asleep(engine, kit, 1)
    clock.advance(2000)
    [claim] = await engine.claim_due(1)
    await engine.instances.terminate(kit, instance)
    await engine.instances.restart(kit, instance)
    await engine.run_claimed(claim)  # the old run: it must write nothing
    status = await engine.instances.status(kit, instance)
    assert (Status.QUEUED, []) == (status.status, status.steps)
    await settle(engine, kit, instance)
    clock.advance(2000)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, ["before", "nap", "after"]) == (
        status.status, [s["name"] for s in status.steps])
