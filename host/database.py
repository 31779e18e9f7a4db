"""The SQLite database: connection settings, migrations, serialized transactions."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 10_000


def _migrations() -> list[tuple[int, str]]:
    """Numbered `.sql` files shipped in `host/migrations`, in order."""
    found = []
    for entry in resources.files("host.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.read_text()))
    return sorted(found)


class Database:
    """One aiosqlite connection; write transactions are serialized by an asyncio lock.

    SQLite allows one writer at a time anyway, and sharing one connection between
    coroutines needs the lock so two transactions never interleave their statements.
    """

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> Database:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write transaction
        # takes the write lock up front instead of failing to upgrade halfway through.
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = sqlite3.Row
        await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await connection.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a killed process (the guarantee we make); FULL also
        # survives power loss, at the cost of an fsync per commit.
        await connection.execute(f"PRAGMA synchronous = {synchronous}")
        await connection.execute("PRAGMA foreign_keys = ON")
        database = cls(connection, path)
        await database._migrate()
        return database

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            row = await (await conn.execute("PRAGMA user_version")).fetchone()
            current = row[0] if row is not None else 0
            for number, script in _migrations():
                if number > current:
                    for statement in _split_statements(script):
                        await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version = {number}")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                await self.connection.execute("ROLLBACK")
                raise
            else:
                await self.connection.execute("COMMIT")

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        async with self.connection.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        async with self.connection.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def close(self) -> None:
        await self.connection.close()


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if s]
