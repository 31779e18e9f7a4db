"""PostgreSQL failures that pass, told apart from the ones that do not.

A lost or refused connection (the server restarting, a network partition, too many
clients), a deadlock or serialization failure, a full disk: none says anything about the
write that met it, and the same write succeeds later. Callers get them as
`StorageUnavailable`, which the engine answers by putting work back (never by failing an
instance) and the worker by backing off, as for SQLite's (`host/store/sqlite/faults.py`);
everything else (a constraint, a bug) stays what it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from ...core.errors import StorageUnavailable

PASSING = (
    OSError,  # the connection itself: refused, reset, timed out
    asyncpg.InterfaceError,  # "connection is closed" and the like, on our side
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory, connections
    asyncpg.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.TransactionRollbackError,  # class 40: deadlock, serialization failure
    asyncpg.LockNotAvailableError,  # 55P03
)


def storage_error(exc: BaseException) -> BaseException:
    """`exc` as StorageUnavailable if it is a failure that passes, else `exc` itself."""
    if not isinstance(exc, PASSING):
        return exc
    translated = StorageUnavailable(f"the database is unavailable: {exc!r}; nothing was "
                                    "changed, retry later")
    translated.__cause__ = exc
    return translated


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise failures that pass as StorageUnavailable."""
    try:
        yield
    except PASSING as exc:
        raise storage_error(exc) from exc
