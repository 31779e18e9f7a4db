"""SIGKILL a real `dwf worker` process mid-workflow, again and again; nothing is lost.

Every step body of the ledger guest logs "ledger-run <i>" before its checkpoint, so the
worker's log is the ledger of side effects: each step must have run, and run twice only
when a kill landed between its body and its commit. Two workloads: a durable sleep after
every step (each invocation runs one step), and no pause at all (an invocation runs every
step, its guest ahead of its commits by up to the pipeline window); each with the ledger
written in C and in TypeScript.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sdk_guests import sdk_guest

from host import DurableEngine, Status, TenantId
from host.durable.invocation import PIPELINE_WINDOW

KILLS, CONCURRENCY = 4, 4


def _worker(db: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DWF_LOG_LEVEL": "info"}
    return subprocess.Popen(
        [sys.executable, "-m", "host.cli", "--db", str(db), "worker",
         "--concurrency", str(CONCURRENCY)],
        stderr=log_path.open("wb"), stdout=subprocess.DEVNULL, env=env)


def _wait_for_line(log_path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists() and text in log_path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {log_path}:\n{log_path.read_text()}")


async def _journaled_steps(db: Path, tenant: TenantId) -> int:
    engine = await DurableEngine.open(db)
    try:
        row = await engine.store.db.fetchone(
            "SELECT COUNT(*) AS n FROM steps WHERE tenant_id = ? AND kind = 'do' "
            "AND state = 'ok'", (tenant,))
        assert row is not None
        return int(row["n"])
    finally:
        await engine.close()


@pytest.mark.parametrize(("sdk", "instances", "steps", "gap_ms", "uncommitted_steps"), [
    # one step per invocation: at most that step is uncommitted when a kill lands
    pytest.param("c", 8, 40, 40, 1, id="sleep-after-every-step"),
    # two journal writes per step (the step, its zero-length sleep)
    pytest.param("c", 16, 1000, 0, PIPELINE_WINDOW // 2 + 1, id="steps-back-to-back"),
    # the same workload written with the TypeScript SDK (tests/guests/js/ledger.ts)
    pytest.param("ts", 8, 40, 40, 1, id="ts-sleep-after-every-step"),
    pytest.param("ts", 16, 1000, 0, PIPELINE_WINDOW // 2 + 1, id="ts-steps-back-to-back"),
])
async def test_sigkilled_worker_loses_nothing_and_reruns_only_uncommitted_steps(
        tmp_path: Path, built: Path, sdk: str, instances: int, steps: int, gap_ms: int,
        uncommitted_steps: int) -> None:
    db = tmp_path / "crash.sqlite3"
    tenant = TenantId("ledger")
    engine = await DurableEngine.open(db)
    try:
        # Registering compiles the module into the database's artifact cache, so every
        # worker starts running at once instead of compiling.
        await engine.registry.register(tenant, sdk_guest(sdk, "ledger"))
        ids = [await engine.instances.create(tenant, "ledger",
                                             {"steps": steps, "gap_ms": gap_ms}, f"ledger-{n}")
               for n in range(instances)]
    finally:
        await engine.close()

    rng = random.Random(20261124)
    logs, mid_workload_kills = [], 0
    for run in range(KILLS):
        log_path = tmp_path / f"worker-{run}.log"
        logs.append(log_path)
        process = _worker(db, log_path)
        _wait_for_line(log_path, "worker.started")
        time.sleep(rng.uniform(0.15, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        done = await _journaled_steps(db, tenant)
        mid_workload_kills += 0 < done < instances * steps

    final_log = tmp_path / "worker-final.log"
    logs.append(final_log)
    process = _worker(db, final_log)
    _wait_for_line(final_log, "worker.started")
    engine = await DurableEngine.open(db)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [await engine.instances.status(tenant, i) for i in ids]
            if all(s.status.finished for s in statuses):
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        await engine.close()

    assert mid_workload_kills >= 2, "the kills should land while work is in progress"
    assert all((Status.COMPLETE, {"steps": steps, "sum": sum(range(steps))})
               == (s.status, s.output) for s in statuses), [s.to_dict() for s in statuses]
    for status in statuses:
        work = [s for s in status.steps if s["kind"] == "do"]
        assert [({"i": i}, 1) for i in range(steps)] == [(s["result"], s["attempts"])
                                                         for s in work]

    runs: collections.Counter[tuple[str, str]] = collections.Counter()
    for log_path in logs:
        for line in log_path.read_text(errors="replace").splitlines():
            if '"guest.log"' in line:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a SIGKILL cut in half
                runs[(entry["instance_id"], entry["message"])] += 1
    expected = {(i, f"ledger-run {n}") for i in ids for n in range(steps)}
    assert expected <= set(runs), "every step body ran"
    reruns = sum(count - 1 for count in runs.values())
    # A body runs again only if its host died before the checkpoint committed: at most
    # the uncommitted steps of each running instance, per kill.
    assert reruns <= KILLS * CONCURRENCY * uncommitted_steps, runs.most_common(5)
