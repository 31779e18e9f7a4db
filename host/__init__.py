"""dynamic-workflows host: durable, sandboxed tenant workflows compiled to WebAssembly."""

from .binding import InstanceHandle, TenantBinding
from .clock import Clock, ManualClock, SystemClock
from .engine import DurableEngine
from .errors import (
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
from .ids import InstanceId, ModuleSha, TenantId
from .instances import InstanceRequest, InstanceStatus, Status
from .limits import TenantLimits
from .pool import IsolatePool, ModuleStub, PoolConfig
from .registry import ModuleInfo, ModuleRegistry
from .worker import Worker

__all__ = [
    "Clock", "DuplicateInstance", "DurableEngine", "DwfError", "InstanceHandle", "InstanceId",
    "InstanceRequest", "InstanceStatus", "InvalidInput", "InvalidModule", "InvalidState",
    "IsolatePool", "ManualClock", "ModuleInfo", "ModuleRegistry", "ModuleSha", "ModuleStub",
    "NotFound", "PoolConfig", "Status", "SystemClock", "TenantBinding", "TenantId",
    "TenantLimits", "UnknownInstance", "UnknownTenant", "UnknownWorkflow", "Worker",
]
