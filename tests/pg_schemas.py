"""A schema per test on the PostgreSQL test server: as fresh as a new SQLite file, much
cheaper than a database per test. The URL selects it with `search_path` (asyncpg passes
unknown URL parameters to the server as settings)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

T = TypeVar("T")


def _on_a_thread(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a thread of its own: fixtures may be set up while
    the test's event loop exists."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(work()))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: B036 - re-raised on the caller's thread
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def create_schema(url: str) -> str:
    schema = f"t_{secrets.token_hex(6)}"

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        finally:
            await conn.close()
    _on_a_thread(create)
    return schema


def drop_schema(url: str, schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET lock_timeout = '5s'")
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        except asyncpg.PostgresError:
            pass  # a process still holding it: the throwaway cluster goes anyway
        finally:
            await conn.close()
    _on_a_thread(drop)


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


def database_dump(db: str | Path) -> str:
    """Every row of every table of a database (either backend), as text."""
    if not isinstance(db, str) or not db.startswith("postgresql://"):
        with sqlite3.connect(db) as conn:
            return "\n".join(conn.iterdump())

    async def dump() -> str:
        conn = await asyncpg.connect(db)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()")
            lines = []
            for (table,) in tables:
                rows = await conn.fetch(f"SELECT t::text FROM {table} t")
                lines += [row[0] for row in rows]
            return "\n".join(lines)
        finally:
            await conn.close()
    return _on_a_thread(dump)
