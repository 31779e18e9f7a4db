"""The SQLite backend: one file, WAL, a group-commit writer (`database`), the scheduler's
claims and each run's fenced writes (`runs`), everything else (`storage`)."""

from .storage import SqliteStorage

__all__ = ["SqliteStorage"]
