"""pause / resume / terminate / restart, version pinning, what a tenant cannot reach, a replay
that finishes early. Replay mismatches and the guest binding (children, events) are in the
behaviour suite both SDKs pass: test_sdk_conformance.py."""

from __future__ import annotations

import pytest
from helpers import change_workflow_under, run_workflow, settle, start

from host import (
    DurableEngine,
    InvalidState,
    ManualClock,
    Status,
    TenantId,
    UnknownInstance,
    UnknownTenant,
    UnknownWorkflow,
)


async def test_pause_holds_a_due_instance_until_resume(engine: DurableEngine, kit: TenantId,
                                                       clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 1000})
    await settle(engine, kit, instance)
    await engine.instances.pause(kit, instance)
    clock.advance(5000)
    assert (await settle(engine, kit, instance)).status is Status.PAUSED
    await engine.instances.resume(kit, instance)
    assert (await settle(engine, kit, instance)).status is Status.COMPLETE


async def test_pausing_a_running_instance_stops_it_at_the_next_step(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 3})
    [claim] = await engine.claim_due(1)
    await engine.instances.pause(kit, instance)
    assert (await engine.instances.status(kit, instance)).status is Status.WAITING_FOR_PAUSE
    await engine.run_claimed(claim)
    status = await engine.instances.status(kit, instance)
    assert (Status.PAUSED, 1) == (status.status, len(status.steps))
    await engine.instances.resume(kit, instance)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, 3) == (status.status, len(status.steps))


async def test_terminate_is_final(engine: DurableEngine, kit: TenantId,
                                  clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 1000})
    await settle(engine, kit, instance)
    await engine.instances.terminate(kit, instance)
    clock.advance(2000)
    status = await settle(engine, kit, instance)
    assert (Status.TERMINATED, ["ok", "pending"]) == (
        status.status, [s["state"] for s in status.steps])
    with pytest.raises(InvalidState):
        await engine.instances.resume(kit, instance)
    with pytest.raises(InvalidState):
        await engine.instances.terminate(kit, instance)


async def test_terminate_under_a_running_invocation_discards_its_work(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 3})
    [claim] = await engine.claim_due(1)
    await engine.instances.terminate(kit, instance)
    await engine.run_claimed(claim)
    status = await engine.instances.status(kit, instance)
    assert (Status.TERMINATED, []) == (status.status, status.steps)


async def test_restart_runs_again_from_an_empty_journal(engine: DurableEngine,
                                                        kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "fail")
    assert status.status is Status.ERRORED
    await engine.instances.restart(kit, status.instance_id)
    restarted = await engine.instances.status(kit, status.instance_id)
    assert (Status.QUEUED, None) == (restarted.status, restarted.error)
    assert (await settle(engine, kit, status.instance_id)).status is Status.ERRORED


async def test_instances_stay_pinned_to_the_module_they_started_with(
        engine: DurableEngine, kit: TenantId, built, clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 1000})
    await settle(engine, kit, instance)
    v1 = (await engine.registry.active(kit)).sha256

    # Version 2 of the tenant is a different program without a "sleeper" workflow.
    v2 = await engine.registry.register(kit, (built / "tenants" / "acme.wasm").read_bytes())
    assert (v2.version, v2.active) == (2, True)
    with pytest.raises(UnknownWorkflow):
        await engine.instances.create(kit, "sleeper", {"ms": 1})

    clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, v1) == (status.status, status.module_sha256)

    await engine.registry.activate(kit, "1")
    again = await start(engine, kit, "sleeper", {"ms": 0})
    assert (await engine.instances.status(kit, again)).module_sha256 == v1


async def test_the_active_version_is_read_with_its_limits_and_follows_a_rollback(
        engine: DurableEngine, kit: TenantId, built) -> None:
    """What every front-door request reads: one row by the tenant's key."""
    v1 = await engine.registry.active(kit)
    await engine.registry.set_limits(kit, {"max_concurrent_invocations": 7})
    v2 = await engine.registry.register(kit, (built / "tenants" / "acme.wasm").read_bytes())
    active, limits = await engine.registry.active_with_limits(kit)
    assert (active, limits.max_concurrent_invocations) == (v2, 7)
    assert "onboarding" in active.workflows and active.active
    await engine.registry.activate(kit, "1")
    active, _ = await engine.registry.active_with_limits(kit)
    assert (active.sha256, active.version, active.workflows) == (v1.sha256, 1, v1.workflows)
    with pytest.raises(UnknownTenant):
        await engine.registry.active_with_limits(TenantId("nobody"))


async def test_a_tenant_cannot_reach_another_tenants_instances(
        engine: DurableEngine, kit: TenantId, testkit_wasm: bytes) -> None:
    other = TenantId("other")
    await engine.registry.register(other, testkit_wasm)
    victim = await start(engine, kit, "waiter", {"type": "ping", "timeout_ms": 60_000})
    await settle(engine, kit, victim)

    for action in (engine.instances.status, engine.instances.pause,
                   engine.instances.terminate, engine.instances.restart):
        with pytest.raises(UnknownInstance):
            await action(other, victim)
    attack = await run_workflow(engine, other, "notify",
                                {"instance_id": victim, "type": "ping", "payload": "evil"})
    assert attack.status is Status.ERRORED
    assert (await engine.instances.status(kit, victim)).status is Status.WAITING


async def test_finishing_before_the_recorded_steps_is_nondeterminism(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 1000})
    await settle(engine, kit, instance)
    # Code that changed under the sleeping instance: now it just echoes and finishes.
    await change_workflow_under(engine, instance, "echo")
    clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert status.error is not None
    assert status.error["name"] == "NondeterminismError"
    assert "finished after 0 journal positions, but 2 were recorded (position 0 was do " \
           "'before')" in status.error["message"]


async def test_instances_are_listed_by_every_filter_newest_first_in_pages(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    from host.durable.instances import decode_cursor
    from host.store.records import InstanceQuery

    made = []
    for n in range(5):  # one a millisecond apart: newest first is the reverse
        made.append(await start(engine, kit, "echo" if n % 2 else "sleeper",
                                {"ms": 60_000} if n % 2 == 0 else {"x": n}, f"list-{n}"))
        clock.advance(1)
    other = TenantId("other")
    await engine.registry.register(other, (await engine.registry.wasm(
        (await engine.registry.active(kit)).sha256)))
    await start(engine, other, "echo", {"x": 9}, "list-9")
    await engine.run_until_idle()

    async def ids(**fields: object) -> list[str]:
        page = await engine.instances.page(InstanceQuery(**fields))  # type: ignore[arg-type]
        return [found.instance_id for found in page.instances]
    created = (await engine.instances.status(kit, "list-2")).created_at_ms
    assert ["list-4", "list-3", "list-2", "list-1", "list-0"] == await ids(tenant_id=kit)
    assert ["list-9"] == await ids(tenant_id=other)
    assert ["list-4", "list-2", "list-0"] == await ids(tenant_id=kit, status=Status.WAITING)
    assert ["list-3", "list-1"] == await ids(tenant_id=kit, workflow="echo")
    assert ["list-3"] == await ids(tenant_id=kit, id_contains="t-3")
    assert ["list-2", "list-1", "list-0"] == await ids(tenant_id=kit,
                                                       created_before_ms=created + 1)
    assert ["list-4", "list-3", "list-2"] == await ids(tenant_id=kit, created_from_ms=created)
    assert [] == await ids(tenant_id=kit, parent_instance_id="list-0")
    first = await engine.instances.page(InstanceQuery(kit, limit=2))
    assert first.next_cursor is not None
    rest = await ids(tenant_id=kit, after=decode_cursor(first.next_cursor), limit=10)
    assert (["list-4", "list-3"], ["list-2", "list-1", "list-0"]) == (
        [found.instance_id for found in first.instances], rest)
