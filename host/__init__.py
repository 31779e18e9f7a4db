"""dynamic-workflows host: durable, sandboxed tenant workflows compiled to WebAssembly.

The packages, lowest first (each imports only from those before it):
`core` (errors, ids, time, msgpack, limits, the data model), `sandbox` (wasm: the ABI,
stores, the isolate pool) and `store` (the storage interface and its SQLite backend),
`egress` (outbound HTTP and secrets a tenant is granted), `durable` (the engine, replay,
registry, worker), `http` (front door and /v1 API), and `cli` on top.
"""

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

__all__ = [
    "Clock", "DuplicateInstance", "DurableEngine", "DwfError", "InstanceHandle", "InstanceId",
    "InstanceRequest", "InstanceStatus", "InvalidInput", "InvalidModule", "InvalidState",
    "IsolatePool", "ManualClock", "ModuleInfo", "ModuleRegistry", "ModuleSha", "ModuleStub",
    "NotFound", "PoolConfig", "Status", "SystemClock", "TenantBinding", "TenantId",
    "TenantLimits", "UnknownInstance", "UnknownTenant", "UnknownWorkflow", "Worker",
]
