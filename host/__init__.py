"""dynamic-workflows host: durable, sandboxed tenant workflows compiled to WebAssembly.

The packages, lowest first (each imports only from those before it):
`core` (errors, ids, time, msgpack, limits, the data model), `sandbox` (wasm: the ABI,
stores, the isolate pool) and `store` (the storage interface and its SQLite backend),
`egress` (outbound HTTP and secrets a tenant is granted), `durable` (the engine, replay,
registry, worker), `http` (front door and /v1 API), and `cli` on top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.clock import Clock, ManualClock, SystemClock
    from .core.errors import (
        DuplicateInstance,
        DwfError,
        InvalidInput,
        InvalidModule,
        InvalidState,
        NotFound,
        UnknownInstance,
        UnknownTenant,
        UnknownWorkflow,
    )
    from .core.ids import InstanceId, ModuleSha, TenantId
    from .core.limits import TenantLimits
    from .durable.binding import InstanceHandle, TenantBinding
    from .durable.engine import DurableEngine
    from .durable.instances import InstanceRequest, InstanceStatus, Status
    from .durable.registry import ModuleInfo, ModuleRegistry
    from .durable.worker import Worker
    from .sandbox.pool import IsolatePool, ModuleStub, PoolConfig

_HOMES = {name: module for module, names in {
    ".core.clock": ("Clock", "ManualClock", "SystemClock"),
    ".core.errors": ("DuplicateInstance", "DwfError", "InvalidInput", "InvalidModule",
                     "InvalidState", "NotFound", "UnknownInstance", "UnknownTenant",
                     "UnknownWorkflow"),
    ".core.ids": ("InstanceId", "ModuleSha", "TenantId"),
    ".core.limits": ("TenantLimits",),
    ".durable.binding": ("InstanceHandle", "TenantBinding"),
    ".durable.engine": ("DurableEngine",),
    ".durable.instances": ("InstanceRequest", "InstanceStatus", "Status"),
    ".durable.registry": ("ModuleInfo", "ModuleRegistry"),
    ".durable.worker": ("Worker",),
    ".sandbox.pool": ("IsolatePool", "ModuleStub", "PoolConfig"),
}.items() for name in names}
"""Where each public name lives."""

__all__ = [
    "Clock", "DuplicateInstance", "DurableEngine", "DwfError", "InstanceHandle", "InstanceId",
    "InstanceRequest", "InstanceStatus", "InvalidInput", "InvalidModule", "InvalidState",
    "IsolatePool", "ManualClock", "ModuleInfo", "ModuleRegistry", "ModuleSha", "ModuleStub",
    "NotFound", "PoolConfig", "Status", "SystemClock", "TenantBinding", "TenantId",
    "TenantLimits", "UnknownInstance", "UnknownTenant", "UnknownWorkflow", "Worker",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'host' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value
