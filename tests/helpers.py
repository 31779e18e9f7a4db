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
