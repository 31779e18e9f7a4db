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


def is_postgres_url(location: str | Path) -> bool:
    """Whether `location` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


async def open_storage(location: str | Path, clock: Clock,
                       default_limits: TenantLimits = TenantLimits(), *,
                       synchronous: str = "NORMAL", lease_ms: int | None = None,
                       worker_id: str | None = None) -> Storage:
    """The storage at `location`: a `postgresql://` URL (asyncpg; `lease_ms` is how long
    this process's workers keep their instances without renewing) or a SQLite file path
    (`synchronous` is its PRAGMA). `worker_id` names this process's claims (default: one
    made from the host and pid). Each backend imports its driver only when chosen."""
    limits = LimitsParser(default_limits)
    if is_postgres_url(location):
        from .postgres import DEFAULT_LEASE_MS, PostgresStorage
        assert isinstance(location, str)
        return await PostgresStorage.open(location, clock, limits,
                                          lease_ms=lease_ms or DEFAULT_LEASE_MS,
                                          worker_id=worker_id)
    from .sqlite import SqliteStorage
    return await SqliteStorage.open(location, clock, limits, synchronous=synchronous,
                                    worker_id=worker_id)


__all__ = [
    "ActiveVersion", "BufferedEvent", "Claim", "EarlierWriteFailed", "InstanceQuery",
    "InstanceStatus", "ModuleInfo", "NewInstance", "PageCursor", "Prefetched", "RunInputs",
    "RunWrites", "SecretInfo", "Settled", "Storage", "TenantInfo", "TokenInfo", "Transition",
    "is_postgres_url", "open_storage",
]
