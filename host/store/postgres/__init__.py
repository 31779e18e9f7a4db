"""The PostgreSQL backend (asyncpg): many workers on many hosts share one database.

A group-commit writer per process (`database`), claims with leases, takeover and fenced
run writes (`runs`), everything else (`storage`); `throwaway` starts a local cluster for
tests and benchmarks.
"""

from .storage import DEFAULT_LEASE_MS, PostgresStorage

__all__ = ["DEFAULT_LEASE_MS", "PostgresStorage"]
