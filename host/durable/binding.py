"""The tenant-bound instance API (the analogue of `wrapWorkflowBinding({tenantId})`).

A `TenantBinding` can only ever see and create its own tenant's instances: the tenant id is
fixed when the binding is made, never taken from the caller afterwards.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..core.ids import InstanceId, TenantId
from .instances import InstanceRequest, InstanceStatus, InstanceStore


class HasInstances(Protocol):
    """What a binding needs of its engine: its instances (a `DurableEngine` has them)."""

    @property
    def instances(self) -> InstanceStore: ...


class InstanceHandle:
    def __init__(self, binding: TenantBinding, instance_id: InstanceId) -> None:
        self._binding = binding
        self.id = instance_id

    @property
    def _store(self) -> InstanceStore:
        return self._binding.engine.instances

    async def status(self) -> InstanceStatus:
        return await self._store.status(self._binding.tenant_id, self.id)

    async def pause(self) -> None:
        await self._store.pause(self._binding.tenant_id, self.id)

    async def resume(self) -> None:
        await self._store.resume(self._binding.tenant_id, self.id)

    async def terminate(self) -> None:
        await self._store.terminate(self._binding.tenant_id, self.id)

    async def restart(self) -> None:
        await self._store.restart(self._binding.tenant_id, self.id)

    async def send_event(self, event_type: str, payload: Any = None) -> None:
        await self._store.send_event(self._binding.tenant_id, self.id, event_type, payload)


class TenantBinding:
    def __init__(self, engine: HasInstances, tenant_id: TenantId) -> None:
        self.engine = engine
        self.tenant_id = tenant_id

    async def create(self, workflow: str, params: Any = None,
                     id: str | None = None) -> InstanceHandle:
        created = await self.engine.instances.create(self.tenant_id, workflow, params, id)
        return InstanceHandle(self, created)

    async def create_batch(self, requests: list[InstanceRequest]) -> list[InstanceHandle]:
        created = await self.engine.instances.create_batch(self.tenant_id, requests)
        return [InstanceHandle(self, i) for i in created]

    async def get(self, instance_id: str) -> InstanceHandle:
        """A handle on an existing instance; UnknownInstance if this tenant has none."""
        status = await self.engine.instances.status(self.tenant_id, instance_id,
                                                    with_steps=False)
        return InstanceHandle(self, status.instance_id)
