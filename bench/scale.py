"""Scale-out sections, on SQLite or PostgreSQL (`db` names the database; none: a SQLite
file in a temporary directory):

    python -m bench.scale SECTION '{"json": "params"}'

scale   N worker processes (`dwf worker --processes N`) drain a backlog of 10-step
        workflows, N = 1 and 2, with 100 instances running at once in total (the worker
        concurrency split between the processes). The rate is taken between 10% and 90%
        of the backlog complete, so process start-up and the tail are left out: from the
        completion that made 10% to the one that made 90%, at the times the workers
        recorded (`finished_at_ms`), read once the drain is past 90%.
rates   create_batch alone (instances/s, in batches of 1,000), then the same instances,
        each asleep until one instant after its first run, woken and completed by one
        in-process worker (wakes/s, from the clock's move to the last completion); then
        as many again run by `dwf worker --processes N`, N = 1 and 2 (`wake_processes`),
        asleep until one instant of the real clock, from it to the last completion.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from host import (
    DurableEngine,
    InstanceRequest,
    ManualClock,
    Status,
    Worker,
    eventloop,
    logs,
)
from host.store import is_postgres_url

from .common import emit, stop
from .ours import TENANT, _open

ROOT = Path(__file__).resolve().parent.parent


async def _fresh(params: dict[str, Any], tmp: Path) -> tuple[Path, str | None]:
    """A new, empty database: a directory for its SQLite file (and artifacts), and on the
    server a schema of its own."""
    directory = tmp / secrets.token_hex(4)
    directory.mkdir()
    url = params.get("db")
    if not url:
        return directory, None
    import asyncpg  # the product's driver; only the PostgreSQL runs need it here

    schema = f"bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return directory, f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def completion_times(engine: DurableEngine) -> list[int]:
    """When each complete instance finished (ms, the workers' clock), in order."""
    store: Any = engine.store
    sql = ("SELECT finished_at_ms FROM instances WHERE status = 'complete' "
           "ORDER BY finished_at_ms")
    if is_postgres_url(getattr(store.db, "url", "")):
        return [int(row[0]) for row in await store.db.fetchall(sql)]
    return [int(row[0]) for row in await store.db.fetchall(sql, ())]


async def count(engine: DurableEngine, status: Status) -> int:
    """How many instances are in `status` (one indexed count, either backend)."""
    store: Any = engine.store
    if is_postgres_url(getattr(store.db, "url", "")):
        return int(await store.db.fetchval(
            "SELECT count(*) FROM instances WHERE status = $1", status.value))
    row = await store.db.fetchone("SELECT count(*) AS n FROM instances WHERE status = ?",
                                  (status.value,))
    return int(row["n"])


# -- scale: 1 and 2 processes --------------------------------------------------------

def _workers(directory: Path, url: str | None, processes: int,
             concurrency: int) -> subprocess.Popen[bytes]:
    """`dwf worker` on the database, with `--processes` N above 1, `concurrency` instances
    running at once in total (split between the processes)."""
    db = url or directory / "dwf.sqlite3"
    env = {**os.environ, "DWF_LOG_LEVEL": "warning", "DWF_ARTIFACTS": str(directory / "art")}
    command = [sys.executable, "-m", "host.cli", "--db", str(db), "worker", "--concurrency",
               str(max(1, concurrency // processes))]
    if processes > 1:
        command += ["--processes", str(processes)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


async def _drain(directory: Path, url: str | None, processes: int, instances: int,
                 steps: int, concurrency: int) -> dict[str, Any]:
    engine = await _open(directory, db=url)
    workers = _workers(directory, url, processes, concurrency)
    try:
        for first in range(0, instances, 1000):
            await engine.instances.create_batch(TENANT, [
                InstanceRequest("steps", {"count": steps})
                for _ in range(first, min(instances, first + 1000))])
        # Polled rarely: the marks are the workers' own completion times, read after. (A
        # count every 10 ms, as this did, cost the server 5-15% of what it spent on the
        # workflows, on the cores the workers share with it.)
        first, last = math.ceil(instances * 0.1), math.ceil(instances * 0.9)
        deadline = time.monotonic() + 600
        while (done := await count(engine, Status.COMPLETE)) < last:
            if workers.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the workers stopped or stalled ({done} complete)")
            await asyncio.sleep(0.1)
        finished = await completion_times(engine)
        elapsed = (finished[last - 1] - finished[first - 1]) / 1000
        workflows = last - first
        return {"processes": processes, "steps_per_s": workflows * steps / elapsed,
                "workflows_per_s": workflows / elapsed, "instances": instances,
                "concurrency_total": concurrency}
    finally:
        stop(workers)
        await engine.close()


async def scale(params: dict[str, Any]) -> dict[str, Any]:
    instances = int(params.get("instances", 3000))
    steps = int(params.get("steps", 10))
    concurrency = int(params.get("concurrency", 100))
    result: dict[str, Any] = {"backend": "postgres" if params.get("db") else "sqlite"}
    with tempfile.TemporaryDirectory() as tmp:
        for processes in params.get("processes", [1, 2]):
            directory, url = await _fresh(params, Path(tmp))
            result[str(processes)] = await _drain(directory, url, int(processes), instances,
                                                  steps, concurrency)
    if "1" in result and "2" in result:
        result["two_over_one"] = result["2"]["steps_per_s"] / result["1"]["steps_per_s"]
    return result


# -- rates: create_batch, wake -------------------------------------------------------

async def rates(params: dict[str, Any]) -> dict[str, Any]:
    total = int(params.get("count", 20_000))
    batch = 1000
    clock = ManualClock(start_ms=int(time.time() * 1000))
    wake_at = clock.now_ms() + 3_600_000
    result: dict[str, Any] = {"backend": "postgres" if params.get("db") else "sqlite",
                              "count": total}
    with tempfile.TemporaryDirectory() as tmp:
        directory, url = await _fresh(params, Path(tmp))
        engine = await _open(directory, clock=clock, db=url)
        try:
            start = time.perf_counter()
            for first in range(0, total, batch):
                await engine.instances.create_batch(TENANT, [
                    InstanceRequest("sleeper", {"until_ms": wake_at})
                    for _ in range(first, min(total, first + batch))])
            result["create_batch_per_s"] = total / (time.perf_counter() - start)
            done = asyncio.Event()
            worker = asyncio.create_task(Worker(engine, 100).run(done))
            try:
                start = time.perf_counter()
                while await count(engine, Status.WAITING) < total:
                    await asyncio.sleep(0.05)
                result["first_run_per_s"] = total / (time.perf_counter() - start)
                clock.advance(wake_at - clock.now_ms() + 1)
                engine.due.set()
                start = time.perf_counter()
                while await count(engine, Status.COMPLETE) < total:
                    await asyncio.sleep(0.05)
                result["wake_per_s"] = total / (time.perf_counter() - start)
            finally:
                done.set()
                await worker
        finally:
            await engine.close()
        for processes in params.get("wake_processes", [1, 2]):
            result[f"wake_{processes}p"] = await _wake_by_processes(
                params, Path(tmp), total, int(processes), result["first_run_per_s"])
    return result


async def _wake_by_processes(params: dict[str, Any], tmp: Path, total: int, processes: int,
                             first_run_per_s: float) -> dict[str, Any]:
    """The same sleepers run by `dwf worker --processes N` (N = 1 too: the same conditions
    as N = 2), on the real clock, once the workers ran a first instance: they all sleep
    until one instant, chosen so that their first runs are done by then (twice as long as
    they took in-process, plus 3 s; checked, not assumed); wakes/s from that instant to the
    last completion."""
    directory, url = await _fresh(params, tmp)
    engine = await _open(directory, db=url)
    try:
        workers = _workers(directory, url, processes, 100)
        try:
            # The workers are up and hold the module once they ran one instance.
            await engine.instances.create(TENANT, "noop", None)
            while await count(engine, Status.COMPLETE) < 1:
                if workers.poll() is not None:
                    raise RuntimeError(f"the workers stopped (exit {workers.returncode})")
                await asyncio.sleep(0.05)
            total += 1  # counted complete below
            wake_at_ms = int(time.time() * 1000 + 2000 * total / first_run_per_s + 3000)
            for first in range(1, total, 1000):
                await engine.instances.create_batch(TENANT, [
                    InstanceRequest("sleeper", {"until_ms": wake_at_ms})
                    for _ in range(first, min(total, first + 1000))])
            while time.time() * 1000 < wake_at_ms - 300:
                await asyncio.sleep(0.05)
            asleep = await count(engine, Status.WAITING)
            if asleep < total - 1:
                raise RuntimeError(f"{asleep} of {total - 1} sleepers asleep 0.3 s before "
                                   "their wake time: the first runs took too long to measure "
                                   "wakes")
            start = time.perf_counter() + (wake_at_ms / 1000 - time.time())
            while await count(engine, Status.COMPLETE) < total:
                if workers.poll() is not None:
                    raise RuntimeError(f"the workers stopped (exit {workers.returncode})")
                await asyncio.sleep(0.05)
            return {"processes": processes,
                    "wake_per_s": (total - 1) / (time.perf_counter() - start)}
        finally:
            stop(workers)
    finally:
        await engine.close()


SECTIONS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "scale": scale, "rates": rates}


def main() -> None:
    logs.configure("warning")
    section = SECTIONS[sys.argv[1]]
    emit(eventloop.run(section(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))


if __name__ == "__main__":
    main()
