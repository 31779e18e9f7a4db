"""SQLite failures that pass, told apart from the ones that do not.

Another process holding the write lock past the busy timeout, a full disk, an I/O error:
none of them says anything about the write that met it, and the same write succeeds once
the lock is released or space is freed. Callers get them as `StorageUnavailable`, which
the engine answers by putting work back (never by failing an instance) and the worker by
backing off; everything else (a constraint, a bug) stays what it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from ...core.errors import StorageUnavailable

DEFAULT_BUSY_TIMEOUT_MS = 10_000
BUSY_TIMEOUT_ENV = "DWF_SQLITE_BUSY_TIMEOUT_MS"

_HINTS = {
    sqlite3.SQLITE_BUSY: "another process holds its write lock",
    sqlite3.SQLITE_LOCKED: "another connection holds a lock on it",
    sqlite3.SQLITE_FULL: "the disk is full: free some space",
    sqlite3.SQLITE_IOERR: "an I/O error: check the disk",
    sqlite3.SQLITE_PROTOCOL: "its lock protocol failed under contention",
    sqlite3.SQLITE_NOMEM: "SQLite ran out of memory",
    sqlite3.SQLITE_CANTOPEN: "its file cannot be opened: check the path's permissions and space",
}


def busy_timeout_ms() -> int:
    """How long a connection waits for another's write lock before failing (env
    DWF_SQLITE_BUSY_TIMEOUT_MS, default 10 s)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "")
    return int(raw) if raw.isdigit() else DEFAULT_BUSY_TIMEOUT_MS


def storage_error(exc: BaseException) -> BaseException:
    """`exc` as StorageUnavailable if it is a failure that passes, else `exc` itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return exc
    hint = _HINTS.get(code & 0xFF)  # the primary code, without an extended code's bits
    if hint is None:
        return exc
    translated = StorageUnavailable(f"the database is unavailable: {exc} ({hint}); "
                                    "nothing was changed, retry later")
    translated.__cause__ = exc
    return translated


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise failures that pass as StorageUnavailable."""
    try:
        yield
    except sqlite3.Error as exc:
        error = storage_error(exc)
        if error is exc:
            raise
        raise error from exc
