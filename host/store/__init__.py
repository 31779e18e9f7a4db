"""Storage: the interface the durable engine uses (`interface`, `records`) and its backends.

The engine never sees SQL or a connection; `open_storage` picks the backend for a location.
"""

from __future__ import annotations

from pathlib import Path

from ..core.clock import Clock
from ..core.limits import LimitsParser, TenantLimits
from .interface import EarlierWriteFailed, RunWrites, Storage
from .records import (
    ActiveVersion,
    BufferedEvent,
    Claim,
    InstanceQuery,
    InstanceStatus,
    ModuleInfo,
    NewInstance,
    PageCursor,
    Prefetched,
    RunInputs,
    SecretInfo,
    Settled,
    TenantInfo,
    TokenInfo,
    Transition,
)


async def open_storage(location: str | Path, clock: Clock,
                       default_limits: TenantLimits = TenantLimits(), *,
                       synchronous: str = "NORMAL") -> Storage:
    """The storage at `location`: a SQLite file path."""
    from .sqlite import SqliteStorage
    return await SqliteStorage.open(location, clock, LimitsParser(default_limits),
                                    synchronous=synchronous)


__all__ = [
    "ActiveVersion", "BufferedEvent", "Claim", "EarlierWriteFailed", "InstanceQuery",
    "InstanceStatus", "ModuleInfo", "NewInstance", "PageCursor", "Prefetched", "RunInputs",
    "RunWrites", "SecretInfo", "Settled", "Storage", "TenantInfo", "TokenInfo", "Transition",
    "open_storage",
]
