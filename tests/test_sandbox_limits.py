"""Hostile guests built from C: memory, stack, tables. Each fails only itself. CPU (fuel),
the wall clock, step timeouts and memory bombs are in the behaviour suite both SDKs pass:
test_sdk_conformance.py."""

from __future__ import annotations

import pytest
from helpers import register_guest, run_workflow, start

from host import DurableEngine, Status, TenantId

SMALL_FUEL = 50_000_000


@pytest.fixture
async def hog(engine: DurableEngine, built) -> TenantId:
    return await register_guest(engine, "hog", "infinite_loop", cpu_fuel=SMALL_FUEL)


async def test_module_needing_more_memory_than_allowed_fails_clearly(
        engine: DurableEngine, kit: TenantId) -> None:
    await engine.registry.set_limits(kit, {"memory_bytes": 65536})
    status = await run_workflow(engine, kit, "echo", 1)
    assert status.error is not None and status.error["name"] == "MemoryLimitExceeded"


@pytest.mark.parametrize(("frame", "in_step", "message"), [
    (0, True, "call stack exhausted (too deep recursion) in dive"),
    (0, False, "call stack exhausted (too deep recursion) in dive"),
    (1, True, "out-of-bounds memory access (a bad pointer, or the C stack overflowed) in dive"),
])
async def test_deep_recursion_traps_cleanly(engine: DurableEngine, built, frame: int,
                                            in_step: bool, message: str) -> None:
    tenant = await register_guest(engine, "deep", "deep_recursion")
    status = await run_workflow(engine, tenant, "recurse", {"frame": frame, "in_step": in_step})
    assert status.status is Status.ERRORED
    assert {"name": "GuestTrap", "message": f"wasm trap: {message}"} == status.error


async def test_host_keeps_serving_after_every_hostile_guest(
        engine: DurableEngine, kit: TenantId, hog: TenantId, built) -> None:
    bomber = await register_guest(engine, "bomber", "memory_bomb", memory_bytes=8 * 2**20)
    deep = await register_guest(engine, "deep", "deep_recursion")
    hostile = [await start(engine, hog, "spin_outside"), await start(engine, bomber, "bomb"),
               await start(engine, deep, "recurse")]
    good = await start(engine, kit, "steps", {"count": 3})
    await engine.run_until_idle()
    for tenant, instance in zip((hog, bomber, deep), hostile, strict=True):
        assert (await engine.instances.status(tenant, instance)).status is Status.ERRORED
    assert (await engine.instances.status(kit, good)).output == {"count": 3}


async def test_table_limit_refuses_growth_and_oversized_tables(engine: DurableEngine) -> None:
    from helpers import wat_guest
    grower = TenantId("grower")
    # dwf_run reports what table.grow answered: -1 when refused.
    await engine.registry.register(grower, wat_guest(
        [], "(call $set_output (i32.const 1024) (i32.const 1)) "
            "(i32.eq (table.grow $t (ref.null func) (i32.const 50000)) (i32.const -1))",
        {1024: b"\xc0"}, extra="(table $t 1 funcref)"))
    status = await run_workflow(engine, grower, "raw")
    assert (Status.ERRORED, "WorkflowError") == (status.status, status.error["name"])

    big = TenantId("big-table")
    await engine.registry.register(big, wat_guest([], "i32.const 0",
                                                  extra="(table 5 funcref)"))
    await engine.registry.set_limits(big, {"table_elements": 4})
    status = await run_workflow(engine, big, "raw")
    assert status.error is not None and status.error["name"] == "MemoryLimitExceeded"
    assert "table_elements=4" in status.error["message"]
