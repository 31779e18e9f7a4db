"""A CPU-hogging tenant beside a well-behaved one: the well-behaved one still finishes.

Latencies are reported (printed and written to build/reports/), never asserted: this is
a behaviour test, not a benchmark.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

from conftest import BUILD
from helpers import guest_wasm

from host import DurableEngine, Status, TenantId, Worker

GOOD_RUNS, HOGS, HOG_FUEL = 12, 8, 3_000_000_000


async def _good_latencies(engine: DurableEngine, tenant: TenantId) -> list[float]:
    latencies = []
    for n in range(GOOD_RUNS):
        began = time.perf_counter()
        instance = await engine.instances.create(tenant, "steps", {"count": 5})
        while not (await engine.instances.status(tenant, instance, with_steps=False)
                   ).status.finished:
            await asyncio.sleep(0.002)
        latencies.append((time.perf_counter() - began) * 1000)
        status = await engine.instances.status(tenant, instance, with_steps=False)
        assert (Status.COMPLETE, {"count": 5}) == (status.status, status.output), n
    return latencies


async def _sample_running(engine: DurableEngine, tenant: TenantId, counts: list[int]) -> None:
    while True:
        counts.append(len(await engine.instances.list(tenant, Status.RUNNING)))
        await asyncio.sleep(0.01)


async def test_well_behaved_tenant_completes_beside_a_cpu_hog(
        tmp_path: Path, db: str | Path, backend: str, built: Path) -> None:
    engine = await DurableEngine.open(db, artifacts=tmp_path / "artifacts")
    good, hog = TenantId("good"), TenantId("hog")
    await engine.registry.register(good, guest_wasm("testkit"))
    await engine.registry.register(hog, guest_wasm("infinite_loop"))
    await engine.registry.set_limits(hog, {"cpu_fuel": HOG_FUEL})
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(engine).run(stop))
    try:
        alone = await _good_latencies(engine, good)
        hogs = [await engine.instances.create(hog, "spin_outside") for _ in range(HOGS)]
        running_counts: list[int] = []
        sampler = asyncio.create_task(_sample_running(engine, hog, running_counts))
        await asyncio.sleep(0.2)  # let the hog occupy its share of the sandbox threads
        beside_hog = await _good_latencies(engine, good)
        sampler.cancel()
        for instance in hogs:  # don't wait for the rest of the hog's queue
            status = await engine.instances.status(hog, instance, with_steps=False)
            if not status.status.finished:
                await engine.instances.terminate(hog, instance)
    finally:
        stop.set()
        await worker
        await engine.close()

    # The hog was really hogging, and never beyond its concurrency quota.
    assert 1 <= max(running_counts) <= 2, running_counts
    report = {
        "good_runs": GOOD_RUNS, "hog_instances": HOGS, "hog_fuel": HOG_FUEL,
        "alone_ms": {"p50": statistics.median(alone), "max": max(alone)},
        "beside_hog_ms": {"p50": statistics.median(beside_hog), "max": max(beside_hog)},
    }
    (BUILD / "reports").mkdir(parents=True, exist_ok=True)
    name = "noisy_neighbour.json" if backend == "sqlite" else f"noisy_neighbour_{backend}.json"
    (BUILD / "reports" / name).write_text(json.dumps(report, indent=2))
    print(f"\nnoisy neighbour ({backend}), 5-step workflow latency:", json.dumps(report))
