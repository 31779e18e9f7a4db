"""Soak: tens of thousands of paused invocations must not grow the host's native memory.

Every pause (a retry delay, a durable sleep, a wait for an event) ends its invocation by a
host import raising out of the guest; each of those once leaked ~1.8 KB of native memory
(wasmtime's failure report was never freed), 1.8 GB per million pauses. The process RSS is
measured across many pauses through the real engine, guest and database.

CI runs it small (`DWF_SOAK_PAUSES`, default 5,000: the leak would show as ~9 MB, the
bound is 1.2 MB); a long run: `DWF_SOAK_PAUSES=100000 pytest -m soak`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from host import DurableEngine, ManualClock, Status, TenantId

PAUSES = int(os.environ.get("DWF_SOAK_PAUSES", "5000"))
RETRIES_PER_INSTANCE = 250  # pauses of one instance: its step fails, retried at once
MAX_GROWTH_PER_PAUSE = 256  # bytes; the leak was ~1,800


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _pause_round(engine: DurableEngine, clock: ManualClock, tenant: TenantId,
                       retrying: int) -> int:
    """Instances that pause: `retrying` retry RETRIES_PER_INSTANCE times each, and one
    sleeps and one waits for an event. Returns how many pauses they made."""
    retriers = [await engine.instances.create(tenant, "flaky", {
        "fail_attempts": RETRIES_PER_INSTANCE, "limit": RETRIES_PER_INSTANCE,
        "delay_ms": 0}) for _ in range(retrying)]
    sleeper = await engine.instances.create(tenant, "sleeper", {"ms": 1000})
    waiter = await engine.instances.create(tenant, "waiter", {"type": "go"})
    await engine.run_until_idle()
    assert Status.WAITING == (await engine.instances.status(tenant, sleeper)).status
    await engine.instances.send_event(tenant, waiter, "go", {"n": 1})
    clock.advance(1000)
    await engine.run_until_idle()
    for instance in [*retriers, sleeper, waiter]:
        assert Status.COMPLETE == (await engine.instances.status(tenant, instance)).status
    return retrying * RETRIES_PER_INSTANCE + 2


@pytest.mark.soak
async def test_pauses_do_not_grow_native_memory(engine: DurableEngine, clock: ManualClock,
                                                testkit_wasm: bytes, tmp_path: Path) -> None:
    tenant = TenantId("soak")
    await engine.registry.register(tenant, testkit_wasm)
    await engine.registry.set_limits(tenant, {"max_concurrent_invocations": 4})
    await _pause_round(engine, clock, tenant, 4)  # warm up: caches, pools, the database
    before = _rss_bytes()
    paused = 0
    while paused < PAUSES:
        paused += await _pause_round(engine, clock, tenant, 4)
    growth = _rss_bytes() - before
    assert growth <= MAX_GROWTH_PER_PAUSE * paused, (
        f"RSS grew {growth} bytes over {paused} pauses ({growth / paused:.0f} bytes each)")
