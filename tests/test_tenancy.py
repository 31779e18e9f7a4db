"""One tenant can never see, change, signal or run another tenant's things."""

from __future__ import annotations

import pytest
from helpers import run_workflow, settle, start

from host import DurableEngine, NotFound, Status, TenantId, UnknownInstance


@pytest.fixture
async def two_tenants(engine: DurableEngine, testkit_wasm: bytes,
                      built) -> tuple[TenantId, TenantId]:
    alice, bob = TenantId("alice"), TenantId("bob")
    await engine.registry.register(alice, testkit_wasm)
    await engine.registry.register(bob, (built / "tenants" / "acme.wasm").read_bytes())
    return alice, bob


async def test_instance_ids_are_per_tenant(engine: DurableEngine,
                                           two_tenants: tuple[TenantId, TenantId]) -> None:
    alice, bob = two_tenants
    await start(engine, alice, "echo", "alice's", id="same-id")
    await start(engine, bob, "onboarding", {"email": "b@example.com"}, id="same-id")
    assert (await engine.instances.status(alice, "same-id")).params == "alice's"
    assert (await engine.instances.status(bob, "same-id")).workflow == "onboarding"


async def test_guessing_another_tenants_id_finds_nothing(
        engine: DurableEngine, two_tenants: tuple[TenantId, TenantId]) -> None:
    alice, bob = two_tenants
    secret = await start(engine, alice, "waiter", {"type": "go", "timeout_ms": 60_000})
    await settle(engine, alice, secret)
    for action in (engine.instances.status, engine.instances.pause, engine.instances.resume,
                   engine.instances.terminate, engine.instances.restart):
        with pytest.raises(UnknownInstance):
            await action(bob, secret)
    with pytest.raises(UnknownInstance):
        await engine.instances.send_event(bob, secret, "go", "from bob")
    assert await engine.instances.list(bob) == []
    assert (await engine.instances.status(alice, secret)).status is Status.WAITING


async def test_a_tenant_cannot_run_or_activate_another_tenants_module(
        engine: DurableEngine, two_tenants: tuple[TenantId, TenantId]) -> None:
    alice, bob = two_tenants
    alice_module = (await engine.registry.active(alice)).sha256
    with pytest.raises(NotFound):
        await engine.registry.activate(bob, alice_module)
    assert (await engine.registry.active(bob)).workflows == ("onboarding",)


async def test_guest_binding_only_creates_its_own_tenants_instances(
        engine: DurableEngine, two_tenants: tuple[TenantId, TenantId]) -> None:
    alice, bob = two_tenants
    status = await run_workflow(engine, alice, "spawn", {"workflow": "echo", "id": "kid"})
    assert status.status is Status.COMPLETE
    child = await engine.instances.status(alice, "kid")
    assert (child.tenant_id, child.parent_instance_id) == (alice, status.instance_id)
    with pytest.raises(UnknownInstance):
        await engine.instances.status(bob, "kid")
    # Bob's module has no "echo"; a workflow name from another tenant's module is unknown.
    bob_spawn = await run_workflow(engine, alice, "spawn", {"workflow": "onboarding"})
    assert bob_spawn.error is not None and bob_spawn.error["name"] == "UnknownWorkflow"


async def test_guest_cannot_signal_another_tenants_instance(
        engine: DurableEngine, two_tenants: tuple[TenantId, TenantId], testkit_wasm: bytes) -> None:
    alice, _ = two_tenants
    mallory = TenantId("mallory")
    await engine.registry.register(mallory, testkit_wasm)
    victim = await start(engine, alice, "waiter", {"type": "go", "timeout_ms": 60_000})
    await settle(engine, alice, victim)
    attack = await run_workflow(engine, mallory, "notify",
                                {"instance_id": victim, "type": "go", "payload": "evil"})
    assert attack.error is not None and attack.error["name"] == "UnknownInstance"
    assert (await engine.instances.status(alice, victim)).status is Status.WAITING
