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


def _shape_shifter() -> bytes:
    """A module whose dwf_describe names workflow `pay` when it may grow its memory by a
    MiB and `other` when it may not: its manifest depends on the registering tenant's
    limits."""
    import msgpack  # type: ignore[import-untyped]
    import wasmtime

    def data(value: object) -> tuple[str, int]:
        raw = msgpack.packb(value)
        return "".join(f"\\{byte:02x}" for byte in raw), len(raw)
    pay, pay_len = data({"abi": 1, "sdk": "wat", "workflows": ["pay"]})
    other, other_len = data({"abi": 1, "sdk": "wat", "workflows": ["other"]})
    return wasmtime.wat2wasm(f"""(module
      (import "dwf" "set_output" (func $set_output (param i32 i32)))
      (memory (export "memory") 2)
      (data (i32.const 512) "{pay}")
      (data (i32.const 1024) "{other}")
      (func (export "dwf_abi_version") (result i32) i32.const 1)
      (func (export "dwf_alloc") (param i32) (result i32) i32.const 4096)
      (func (export "dwf_free") (param i32 i32))
      (func (export "dwf_describe") (result i32)
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
          (then (call $set_output (i32.const 1024) (i32.const {other_len})))
          (else (call $set_output (i32.const 512) (i32.const {pay_len}))))
        i32.const 0)
      (func (export "dwf_run") (param i32 i32) (result i32) i32.const 0))""")


async def test_registering_a_tenants_bytes_under_other_limits_never_changes_its_workflows(
        engine: DurableEngine, testkit_wasm: bytes) -> None:
    victim, attacker = TenantId("victim"), TenantId("attacker")
    wasm = _shape_shifter()
    assert ("pay",) == (await engine.registry.register(victim, wasm)).workflows
    await engine.registry.register(attacker, testkit_wasm)
    await engine.registry.set_limits(attacker, {"memory_bytes": 3 * 65536})
    assert ("other",) == (await engine.registry.register(attacker, wasm)).workflows

    assert ("pay",) == (await engine.registry.active(victim)).workflows
    assert ["victim"] == [t.tenant_id for t in await engine.registry.tenants()
                          if t.workflows == ("pay",)]
    await start(engine, victim, "pay")  # still a workflow of the victim's module
