"""Small helpers shared by engine tests."""

from __future__ import annotations

from typing import Any

from host import DurableEngine, InstanceStatus, TenantId


async def start(engine: DurableEngine, tenant: TenantId, workflow: str, params: Any = None,
                id: str | None = None) -> str:
    return await engine.instances.create(tenant, workflow, params, id)


async def settle(engine: DurableEngine, tenant: TenantId, instance: str) -> InstanceStatus:
    """Run everything due at the current (manual) time, then report the instance."""
    await engine.run_until_idle()
    return await engine.instances.status(tenant, instance)


async def run_workflow(engine: DurableEngine, tenant: TenantId, workflow: str,
                       params: Any = None) -> InstanceStatus:
    return await settle(engine, tenant, await start(engine, tenant, workflow, params))


def step_names(status: InstanceStatus) -> list[tuple[str, str, str]]:
    return [(s["kind"], s["name"], s["state"]) for s in status.steps]


def guest_wasm(name: str) -> bytes:
    """A test guest built by `make guests` (the `built` fixture runs it)."""
    from conftest import BUILD
    return (BUILD / "guests" / f"{name}.wasm").read_bytes()


async def register_guest(engine: DurableEngine, tenant: str, name: str,
                         **limits: int) -> TenantId:
    tenant_id = TenantId(tenant)
    await engine.registry.register(tenant_id, guest_wasm(name))
    if limits:
        await engine.registry.set_limits(tenant_id, limits)
    return tenant_id
