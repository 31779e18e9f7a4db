"""The PostgreSQL server the benchmark's `-pg` sections share, and a database per section.

`DWF_BENCH_POSTGRES` names a server to use (a URL of a database whose user may create
databases); else a throwaway cluster (`host.store.postgres.throwaway`) is started for the
run with the server's default durability (fsync and synchronous_commit on: a commit is on
disk before it is acknowledged, for us and for DBOS alike) and stopped after it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from host.store.postgres import throwaway


@contextmanager
def server() -> Iterator[str]:
    """A URL of the server for the whole run."""
    given = os.environ.get("DWF_BENCH_POSTGRES")
    if given:
        yield given
        return
    cluster = throwaway.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def fresh_database(url: str, name: str) -> str:
    """Create (again) the database `name` on the server of `url`; its URL."""
    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    asyncio.run(create())
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
