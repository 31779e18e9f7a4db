"""Our engine's benchmark sections; each runs in a fresh process:

    python -m bench.ours SECTION '{"json": "params"}'

throughput   10-step workflows (benchkit `steps`) created and awaited by one sequential
             caller, then by 100 concurrent callers, with a Worker running in-process;
             wasm guest, journal commits, claims and settling all included. On SQLite, or
             on PostgreSQL when `db` is a URL (throughput-pg).
resume       an instance with N cached steps sleeps; the clock moves; one wake is timed
             from the claim to completion: module from the pool, journal loaded, N steps
             replayed, one new step run and committed, instance settled. Also the replay
             alone (no database) per cached step.
instantiate  module from the in-memory cache, from the on-disk artifact cache, and
             compiled cold; each followed by instantiating it and running a no-step
             workflow (what a wake pays before replay).
writer       the group-commit writer alone: 100 producers saving journal rows (each
             instance's fence read once, the rows of a commit in one INSERT), no guest:
             the writer against its ceiling.
sleepers     N instances sleeping until one instant (each ran once, up to its sleep):
             RSS of a fresh worker process on that database against one on an empty
             database, live sandboxes while they sleep, then the time to wake and
             complete them all.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from host import (
    DurableEngine,
    InstanceId,
    InstanceRequest,
    IsolatePool,
    ManualClock,
    PoolConfig,
    Status,
    SystemClock,
    TenantId,
    TenantLimits,
    Worker,
    eventloop,
    logs,
)
from host.core import codec
from host.core.model import AttemptRecord, StepKind, StepRecord, StepState
from host.durable.journal import ReplayJournal
from host.durable.run_event import invocation_event
from host.sandbox.pool import module_sha
from host.store import Claim
from host.store.sqlite import SqliteStorage
from host.store.sqlite.rows import load_journal

from .common import emit, latency_summary, percentile, rss_bytes, time_loop

ROOT = Path(__file__).resolve().parent.parent
BENCHKIT = ROOT / "build" / "bench" / "benchkit.wasm"
TENANT = TenantId("bench")


def _sqlite(engine: DurableEngine) -> SqliteStorage:
    """The engine's SQLite backend: these numbers are measured against SQLite's own."""
    assert isinstance(engine.store, SqliteStorage)
    return engine.store


async def _open(directory: Path, clock: Any = None, threads: int = 4,
                synchronous: str = "NORMAL",
                modules: dict[TenantId, Path] | None = None,
                db: str | None = None) -> DurableEngine:
    """An engine with `modules` registered (default: the benchkit as TENANT): on a SQLite
    file in `directory`, or on the PostgreSQL database `db` (a URL)."""
    engine = await DurableEngine.open(db or directory / "dwf.sqlite3",
                                      clock=clock or SystemClock(),
                                      pool_config=PoolConfig(threads=threads),
                                      synchronous=synchronous,
                                      artifacts=directory / "artifacts" if db else None)
    for tenant, wasm in (modules or {TENANT: BENCHKIT}).items():
        await engine.registry.register(tenant, wasm.read_bytes())
        # One tenant runs everything here: its fairness cap (default 2 running at once)
        # would measure the cap, not the runtime; the worker's concurrency is the limit.
        await engine.registry.set_limits(tenant, {"max_concurrent_invocations": 1000})
    return engine


async def _with_worker(engine: DurableEngine, concurrency: int,
                       body: Callable[[], Awaitable[Any]]) -> Any:
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(engine, concurrency).run(stop))
    try:
        return await body()
    finally:
        stop.set()
        await worker


async def _run_one(engine: DurableEngine, steps: int, tenant: TenantId = TENANT) -> float:
    start = time.perf_counter()
    instance = await engine.instances.create(tenant, "steps", {"count": steps})
    status = await engine.wait_finished(tenant, instance)
    if status is not Status.COMPLETE:
        raise RuntimeError(f"benchmark workflow ended {status.value}")
    return time.perf_counter() - start


async def _callers(engine: DurableEngine, callers: int, steps: int,
                   seconds: float, tenant: TenantId = TENANT) -> dict[str, Any]:
    """`callers` concurrent loops of create-and-await for `seconds` (after a warm-up)."""
    latencies: list[float] = []
    measuring = False
    stop_at = float("inf")

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            duration = await _run_one(engine, steps, tenant)
            if measuring:
                latencies.append(duration)

    stop_at = time.perf_counter() + seconds + min(1.0, seconds / 3) + 60
    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(min(1.0, seconds / 3))  # warm-up: pool, caches, every caller busy
    writer: Any = engine.store.db.writer  # type: ignore[attr-defined]  # either backend's
    assert writer is not None
    commits0, writes0 = writer.commits, writer.writes
    measuring, start = True, time.perf_counter()
    await asyncio.sleep(seconds)
    measuring, elapsed = False, time.perf_counter() - start
    done = len(latencies)
    commits, writes = writer.commits - commits0, writer.writes - writes0
    stop_at = 0.0
    await asyncio.gather(*tasks)
    return {"callers": callers, "workflows": done, "seconds": elapsed,
            "steps_per_s": done * steps / elapsed, "workflows_per_s": done / elapsed,
            "commits_per_s": commits / elapsed, "writes_per_commit": writes / max(1, commits),
            **latency_summary(latencies)}


async def throughput(params: dict[str, Any]) -> dict[str, Any]:
    steps = int(params.get("steps", 10))
    seconds = float(params.get("seconds", 5.0))
    callers = int(params.get("callers", 100))
    threads = int(params.get("threads", 4))
    concurrency = int(params.get("concurrency", callers))
    synchronous = str(params.get("synchronous", "NORMAL"))
    db = params.get("db")  # a PostgreSQL URL; none: a SQLite file
    with tempfile.TemporaryDirectory() as tmp:
        engine = await _open(Path(tmp), threads=threads, synchronous=synchronous, db=db)
        try:
            async def body() -> dict[str, Any]:
                sequential = await _callers(engine, 1, steps, seconds)
                concurrent = await _callers(engine, callers, steps, seconds)
                return {"sequential": sequential, "concurrent": concurrent}
            result: dict[str, Any] = await _with_worker(engine, concurrency, body)
        finally:
            await engine.close()
    return {**result, "steps_per_workflow": steps, "pool_threads": threads,
            "worker_concurrency": concurrency,
            "backend": "postgres" if db else "sqlite",
            "synchronous": "synchronous_commit on" if db else synchronous}


class _NullWriter:
    """A JournalWriter that commits nothing (replay alone, no database)."""

    def save(self, record: StepRecord) -> None:
        pass

    def save_all(self, records: list[StepRecord], *, pause_point: bool) -> None:
        pass

    def save_attempt(self, record: StepRecord, attempt: AttemptRecord) -> None:
        pass

    def take_event(self, record: StepRecord, event_type: str) -> bool:
        return False

    def create_instance(self, record: StepRecord, request: dict[str, Any]) -> None:
        raise NotImplementedError

    def send_event(self, record: StepRecord, request: dict[str, Any]) -> None:
        raise NotImplementedError


async def resume(params: dict[str, Any]) -> dict[str, Any]:
    counts = [int(n) for n in params.get("counts", [10, 100, 1000])]
    repeats = int(params.get("repeats", 15))
    clock = ManualClock()
    logger = structlog.get_logger("bench")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = await _open(Path(tmp), clock=clock)
        try:
            limits = await engine.registry.limits_for(TENANT)
            sha = (await engine.registry.active(TENANT)).sha256
            for count in counts:
                params_in = {"count": count, "sleep_ms": 1000}
                wakes: list[float] = []
                loads: list[float] = []
                for _ in range(repeats):
                    instance = await engine.instances.create(TENANT, "resume", params_in)
                    await engine.run_until_idle()  # runs `count` steps, then sleeps
                    clock.advance(1000)
                    start = time.perf_counter()
                    [claim] = await engine.claim_due(1)
                    await engine.run_claimed(claim)
                    wakes.append(time.perf_counter() - start)
                    status = await engine.instances.status(TENANT, instance, with_steps=False)
                    if status.status is not Status.COMPLETE:
                        raise RuntimeError(f"resume workflow ended {status.status.value}")
                    records, load_s = await engine.pool.call(
                        functools.partial(_timed_journal_load, engine, instance))
                    loads.append(load_s)
                # Replay alone: the same journal (minus the last step) and the event a wake
                # hands the guest, no database.
                records = records[:-1]
                stub = await engine.pool.get(TENANT, sha, lambda: engine.registry.wasm(sha))
                event = invocation_event(Claim(TENANT, InstanceId(instance), "bench"), "resume",
                                         codec.pack(params_in), 0, records, False, limits)

                def replay(records: list[StepRecord] = records, stub: Any = stub,
                           event: bytes = event) -> None:
                    journal = ReplayJournal(list(records), _NullWriter(), clock, limits)
                    stub.run_workflow(limits, event, journal, logger)
                replays = time_loop(replay, 0.5, min_runs=3)
                results[str(count)] = {
                    "wake_to_complete_ms": percentile(wakes, 50) * 1e3,
                    "wake_p99_ms": percentile(wakes, 99) * 1e3,
                    "journal_load_ms": percentile(loads, 50) * 1e3,
                    "replay_only_ms": percentile(replays, 50) * 1e3,
                    "replay_only_us_per_step": percentile(replays, 50) / (count + 1) * 1e6,
                    "repeats": repeats}
        finally:
            await engine.close()
    if len(counts) >= 2:
        low, high = min(counts), max(counts)
        slope = ((results[str(high)]["wake_to_complete_ms"]
                  - results[str(low)]["wake_to_complete_ms"]) / (high - low) * 1e3)
        results["us_per_cached_step"] = slope
    return results


def _timed_journal_load(engine: DurableEngine, instance: str) -> tuple[list[StepRecord], float]:
    """An instance's journal as a wake loads it (on a pool thread), and how long that took."""
    start = time.perf_counter()
    records = _sqlite(engine).db.read_blocking(
        lambda conn: load_journal(conn, TENANT, instance))
    return records, time.perf_counter() - start


async def instantiate_costs(wasm: bytes, seconds: float,
                            caches: tuple[str, ...] = ("memory", "disk", "cold_compile"),
                            ) -> dict[str, Any]:
    """Module get (from memory, the on-disk artifact, or compiled cold) + instantiate + a
    no-step workflow (`noop`): what a wake pays before replay, per cache."""
    sha = module_sha(wasm)
    limits = TenantLimits()
    logger = structlog.get_logger("bench")
    event = codec.pack({"payload": None, "timestamp": 0, "instance_id": "i",
                        "workflow": "noop"})

    async def load() -> bytes:
        return wasm

    def run(stub: Any) -> None:
        journal = ReplayJournal([], _NullWriter(), ManualClock(), limits)
        outcome = stub.run_workflow(limits, event, journal, logger)
        if type(outcome).__name__ != "Completed":
            raise RuntimeError(f"the noop workflow did not complete: {outcome}")

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp) / "artifacts"
        pools = {
            "memory": IsolatePool(artifacts),
            # max_modules=0: nothing stays in memory, every get reads the artifact.
            "disk": IsolatePool(artifacts, PoolConfig(max_modules=0)),
            "cold_compile": IsolatePool(None, PoolConfig(max_modules=0)),
        }
        try:
            for name in caches:
                pool = pools[name]
                await pool.get(TENANT, sha, load)  # fills memory / writes the artifact
                gets: list[float] = []
                totals: list[float] = []
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline or len(gets) < 3:
                    start = time.perf_counter()
                    stub = await pool.get(TENANT, sha, load)
                    got = time.perf_counter()
                    run(stub)
                    gets.append(got - start)
                    totals.append(time.perf_counter() - start)
                results[name] = {"get_ms": percentile(gets, 50) * 1e3,
                                 "get_and_run_noop_ms": percentile(totals, 50) * 1e3,
                                 "samples": len(gets)}
        finally:
            for pool in pools.values():
                pool.close()
    return results


async def instantiate(params: dict[str, Any]) -> dict[str, Any]:
    return await instantiate_costs(BENCHKIT.read_bytes(), float(params.get("seconds", 1.0)))


async def sleepers(params: dict[str, Any]) -> dict[str, Any]:
    count = int(params.get("count", 100_000))
    concurrency = int(params.get("concurrency", 8))
    threads = int(params.get("threads", 4))
    batch = 1000
    clock = ManualClock(start_ms=int(time.time() * 1000))
    wake_at = clock.now_ms() + 3_600_000
    result: dict[str, Any] = {"count": count}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        engine = await _open(directory, clock=clock, threads=threads)
        try:
            async def fall_asleep() -> None:
                start = time.perf_counter()
                for first in range(0, count, batch):
                    await engine.instances.create_batch(TENANT, [
                        InstanceRequest("sleeper", {"until_ms": wake_at})
                        for _ in range(first, min(count, first + batch))])
                result["create_s"] = time.perf_counter() - start
                await _until(engine, "waiting", count)  # each ran once, up to its sleep
                result["all_asleep_s"] = time.perf_counter() - start
                gc.collect()
                result["live_sandboxes_sleeping"] = sum(
                    1 for o in gc.get_objects() if type(o).__name__ == "_Invocation")
                result["rss_same_process_bytes"] = rss_bytes()
            await _with_worker(engine, concurrency, fall_asleep)
        finally:
            await engine.close()

        # What sleeping instances cost a host: a fresh worker process on this database
        # (nothing due for an hour) against one on a database with no instance at all.
        empty = directory / "empty"
        empty.mkdir()
        await (await _open(empty)).close()
        result["rss_worker_empty_db_bytes"] = _idle_worker_rss(empty / "dwf.sqlite3")
        result["rss_worker_sleeping_db_bytes"] = _idle_worker_rss(directory / "dwf.sqlite3")

        engine = await _open_existing(directory, clock, threads)
        try:
            async def wake_all() -> None:
                clock.advance(wake_at - clock.now_ms() + 1)
                engine.due.set()
                start = time.perf_counter()
                await _until(engine, "complete", count)
                result["wake_all_s"] = time.perf_counter() - start
                result["woken_per_s"] = count / result["wake_all_s"]
            await _with_worker(engine, concurrency, wake_all)
        finally:
            await engine.close()
    result["rss_per_sleeping_instance_bytes"] = (
        result["rss_worker_sleeping_db_bytes"] - result["rss_worker_empty_db_bytes"]) / count
    return result


async def _open_existing(directory: Path, clock: Any, threads: int) -> DurableEngine:
    return await DurableEngine.open(directory / "dwf.sqlite3", clock=clock,
                                    pool_config=PoolConfig(threads=threads))


def _idle_worker_rss(db: Path) -> int:
    """RSS of a fresh process running a worker on `db` for a second (`idle_worker`)."""
    process = subprocess.run(
        [sys.executable, "-m", "bench.ours", "idle_worker", json.dumps({"db": str(db)})],
        capture_output=True, text=True, check=True, cwd=ROOT)
    line = next(line for line in process.stdout.splitlines()
                if line.startswith("BENCH-RESULT "))
    rss: int = json.loads(line.removeprefix("BENCH-RESULT "))["rss_bytes"]
    return rss


async def idle_worker(params: dict[str, Any]) -> dict[str, Any]:
    engine = await DurableEngine.open(Path(params["db"]))
    try:
        async def idle() -> int:
            await asyncio.sleep(1.0)  # the worker polls, claims nothing
            gc.collect()
            return rss_bytes()
        rss: int = await _with_worker(engine, 8, idle)
    finally:
        await engine.close()
    return {"rss_bytes": rss}


async def writer(params: dict[str, Any]) -> dict[str, Any]:
    """The group-commit writer alone: 100 producers saving journal rows, no guest.

    Each write is what a step costs the database (its row, in the commit's one multi-row
    INSERT, and its instance's fence, read once per instance while nothing moves it),
    submitted from the event loop like the raw SQLite benchmark's asyncio producers, so
    the two numbers compare the writer with its ceiling.
    """
    seconds = float(params.get("seconds", 3.0))
    producers = int(params.get("producers", 100))
    with tempfile.TemporaryDirectory() as tmp:
        engine = await _open(Path(tmp))
        try:
            ids = await engine.instances.create_batch(
                TENANT, [InstanceRequest("steps", {"count": 1}) for _ in range(producers)])
            claims = await engine.claim_due(producers)
            assert len(claims) == len(ids)
            running = True
            done = 0

            async def producer(claim: Any) -> None:
                nonlocal done
                position = 0
                run = engine.store.run_writes(claim)  # one per invocation, as the journal has
                while running:
                    now = engine.clock.now_ms()
                    record = StepRecord(position, StepKind.DO, "step", position + 1,
                                        StepState.OK, now, codec.pack({"i": position}),
                                        attempts=1, finished_at_ms=now)
                    await run.append_now([record])
                    position += 1
                    done += 1

            tasks = [asyncio.create_task(producer(claim)) for claim in claims]
            await asyncio.sleep(min(0.5, seconds / 4))
            writer_stats = _sqlite(engine).db.writer
            assert writer_stats is not None
            done0, commits0, start = done, writer_stats.commits, time.perf_counter()
            await asyncio.sleep(seconds)
            writes, commits = done - done0, writer_stats.commits - commits0
            elapsed = time.perf_counter() - start
            running = False
            await asyncio.gather(*tasks)
        finally:
            await engine.close()
    return {"writes_per_s": writes / elapsed, "writes_per_commit": writes / max(1, commits),
            "producers": producers}


async def _until(engine: DurableEngine, status: str, expected: int) -> None:
    while True:
        row = await _sqlite(engine).db.fetchone(
            "SELECT COUNT(*) AS n FROM instances WHERE status = ?", (status,))
        if row is not None and row["n"] >= expected:
            return
        await asyncio.sleep(0.2)


SECTIONS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "throughput": throughput, "resume": resume, "instantiate": instantiate,
    "sleepers": sleepers, "idle_worker": idle_worker, "writer": writer}


def main() -> None:
    logs.configure("warning")  # the runtime is measured, not its info logs
    section = sys.argv[1]
    params = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    emit(eventloop.run(SECTIONS[section](params)))


if __name__ == "__main__":
    main()
