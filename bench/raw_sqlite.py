"""The raw SQLite limit on this disk, through Python's sqlite3 as our engine uses it.

- one at a time: one connection, BEGIN IMMEDIATE / INSERT one journal-sized row / COMMIT;
- group commit: 100 concurrent producers each submit a row and wait for its
  acknowledgement; one writer thread commits whatever is queued in one transaction as soon
  as its previous commit ended (no timer) and then acknowledges. Measured with producers
  as threads and as asyncio tasks; the faster (asyncio) is the ceiling our engine's 100
  concurrent instances are held against.

Same settings as the engine: WAL, busy_timeout; synchronous NORMAL (and FULL for one at a
time). Rows look like journal rows (the `steps` table's columns).

    python -m bench.raw_sqlite '{"seconds": 3, "producers": 100}'
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host import eventloop

from .common import emit

SCHEMA = """CREATE TABLE steps (
    tenant_id TEXT NOT NULL, instance_id TEXT NOT NULL, position INTEGER NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, occurrence INTEGER NOT NULL, state TEXT NOT NULL,
    result BLOB, error_name TEXT, error_message TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    wake_at_ms INTEGER, started_at_ms INTEGER NOT NULL, finished_at_ms INTEGER,
    PRIMARY KEY (tenant_id, instance_id, position)) STRICT, WITHOUT ROWID"""
INSERT = "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _row(producer: int, position: int) -> tuple[Any, ...]:
    now = time.time_ns() // 1_000_000
    return ("bench", f"instance-{producer:04d}", position, "do", "step", position + 1, "ok",
            b"\x81\xa1i\x05", None, None, 1, None, now, now)


def one_at_a_time(directory: Path, seconds: float, synchronous: str) -> dict[str, Any]:
    conn = _connect(directory / f"single-{synchronous}.sqlite3", synchronous)
    conn.execute(SCHEMA)
    commits = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, _row(0, commits))
        conn.execute("COMMIT")
        commits += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return {"commits_per_s": commits / elapsed, "commits": commits, "synchronous": synchronous}


def _commit_batches(conn: sqlite3.Connection, requests: queue.SimpleQueue[Any],
                    stats: dict[str, int], acknowledge: Callable[[list[Any]], object]) -> None:
    """The single writer: commit everything queued since the last commit, until None."""
    while True:
        first = requests.get()
        if first is None:
            return
        batch = [first]
        while True:
            try:
                item = requests.get_nowait()
            except queue.Empty:
                break
            if item is None:
                requests.put(None)
                break
            batch.append(item)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, [row for row, _ in batch])
        conn.execute("COMMIT")
        stats["rows"] += len(batch)
        stats["commits"] += 1
        acknowledge([waiter for _, waiter in batch])


def group_commit(directory: Path, seconds: float, producers: int) -> dict[str, Any]:
    conn = _connect(directory / "group.sqlite3", "NORMAL")
    conn.execute(SCHEMA)
    requests: queue.SimpleQueue[tuple[tuple[Any, ...], threading.Event] | None] = (
        queue.SimpleQueue())
    stop = threading.Event()
    stats = {"rows": 0, "commits": 0}

    def writer() -> None:
        def acknowledge(events: list[threading.Event]) -> None:
            for done in events:
                done.set()
        _commit_batches(conn, requests, stats, acknowledge)

    def producer(index: int) -> None:
        done = threading.Event()
        position = 0
        while not stop.is_set():
            done.clear()
            requests.put((_row(index, position), done))
            done.wait()
            position += 1

    writer_thread = threading.Thread(target=writer)
    writer_thread.start()
    threads = [threading.Thread(target=producer, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    time.sleep(min(0.5, seconds / 4))  # warm up: every producer in its loop
    rows0, commits0, start = stats["rows"], stats["commits"], time.perf_counter()
    time.sleep(seconds)
    rows, commits, elapsed = stats["rows"] - rows0, stats["commits"] - commits0, (
        time.perf_counter() - start)
    stop.set()
    for thread in threads:
        thread.join()
    requests.put(None)
    writer_thread.join()
    conn.close()
    return {"rows_per_s": rows / elapsed, "commits_per_s": commits / elapsed,
            "rows_per_commit": rows / max(1, commits), "producers": producers}


def group_commit_async(directory: Path, seconds: float, producers: int) -> dict[str, Any]:
    """`group_commit` with the producers as asyncio tasks: one wake-up per batch, not per row.

    Threads pay a wake-up each (and fight over the GIL); this is the higher of the two
    ceilings and the one the engine's concurrent throughput is compared with.
    """
    conn = _connect(directory / "group-async.sqlite3", "NORMAL")
    conn.execute(SCHEMA)
    stats = {"rows": 0, "commits": 0}

    async def run() -> tuple[int, int, float]:
        loop = asyncio.get_running_loop()
        requests: queue.SimpleQueue[tuple[tuple[Any, ...], asyncio.Future[None]] | None] = (
            queue.SimpleQueue())

        def acknowledge(futures: list[asyncio.Future[None]]) -> None:
            for future in futures:
                future.set_result(None)

        def writer() -> None:
            _commit_batches(conn, requests, stats,
                            lambda futures: loop.call_soon_threadsafe(acknowledge, futures))

        stop = False

        async def producer(index: int) -> None:
            position = 0
            while not stop:
                future: asyncio.Future[None] = loop.create_future()
                requests.put((_row(index, position), future))
                await future
                position += 1

        writer_thread = threading.Thread(target=writer)
        writer_thread.start()
        tasks = [asyncio.create_task(producer(i)) for i in range(producers)]
        await asyncio.sleep(min(0.5, seconds / 4))
        rows0, commits0, start = stats["rows"], stats["commits"], time.perf_counter()
        await asyncio.sleep(seconds)
        rows, commits = stats["rows"] - rows0, stats["commits"] - commits0
        elapsed = time.perf_counter() - start
        stop = True
        await asyncio.gather(*tasks)
        requests.put(None)
        writer_thread.join()
        return rows, commits, elapsed

    rows, commits, elapsed = eventloop.run(run())
    conn.close()
    return {"rows_per_s": rows / elapsed, "commits_per_s": commits / elapsed,
            "rows_per_commit": rows / max(1, commits), "producers": producers}


def main(params: dict[str, Any]) -> dict[str, Any]:
    seconds = float(params.get("seconds", 3.0))
    producers = int(params.get("producers", 100))
    with tempfile.TemporaryDirectory(dir=params.get("dir")) as tmp:
        directory = Path(tmp)
        return {"one_at_a_time": one_at_a_time(directory, seconds, "NORMAL"),
                "one_at_a_time_full": one_at_a_time(directory, seconds, "FULL"),
                "group_commit_threads": group_commit(directory, seconds, producers),
                "group_commit": group_commit_async(directory, seconds, producers)}


if __name__ == "__main__":
    emit(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
