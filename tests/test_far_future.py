"""Times past what the engine stores: a sleep, a wait or a retry delay of i64-max.

They used to end the instance with HostError (SQLite cannot hold now + i64-max: an
OverflowError) or, stored, crash `dwf status`. Every wake time is now clamped to
9999-12-31T23:59:59.999Z, which in practice is never (guest_sdk/ABI.md, Types).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from helpers import run_workflow, settle, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.core.clock import LATEST_MS

I64_MAX = 2 ** 63 - 1


async def test_a_sleep_of_i64_max_waits_until_the_latest_time(engine: DurableEngine,
                                                              kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "sleeper", {"ms": I64_MAX})
    assert (Status.WAITING, LATEST_MS) == (status.status, status.wake_at_ms)
    assert ("sleep", "nap", "pending", LATEST_MS) == tuple(
        status.steps[1][k] for k in ("kind", "name", "state", "wake_at_ms"))


async def test_sleep_until_past_the_latest_time_is_clamped(engine: DurableEngine,
                                                           kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "sleep_until", {"until_ms": I64_MAX})
    assert (Status.WAITING, LATEST_MS) == (status.status, status.wake_at_ms)


async def test_a_wait_with_an_i64_max_timeout_waits_and_takes_its_event(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter", {"type": "go", "timeout_ms": I64_MAX})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, LATEST_MS) == (status.status, status.wake_at_ms)
    await engine.instances.send_event(kit, instance, "go", {"ok": True})
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"ok": True}) == (status.status, status.output)


async def test_exponential_retries_never_push_the_wake_time_past_the_latest(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    """A year's delay doubled 40 times is far past year 9999: the retries keep going."""
    year_ms = 365 * 24 * 3600 * 1000
    instance = await start(engine, kit, "flaky", {"fail_attempts": 40, "limit": 40,
                                                  "delay_ms": year_ms,
                                                  "backoff": "exponential"})
    wakes = []
    status = await settle(engine, kit, instance)
    while status.status is Status.WAITING:
        assert status.wake_at_ms is not None
        wakes.append(status.wake_at_ms)
        clock.advance(status.wake_at_ms - clock.now_ms())
        status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"attempt": 41}) == (status.status, status.output)
    # Once the clock reaches the latest time, the rest are due at once.
    assert LATEST_MS == wakes[-1] and wakes == sorted(wakes)


def test_dwf_status_shows_far_wake_times_even_past_the_latest(tmp_path: Path,
                                                              built: Path) -> None:
    """Clamped: 9999-12-31. Stored by an older host past it: the raw number, no crash."""
    env = {**os.environ, "DWF_DB": str(tmp_path / "dwf.sqlite3"), "DWF_LOG_LEVEL": "warning"}

    def dwf(*args: str, expect: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert (expect, "") == (done.returncode, done.stderr)
        return done.stdout

    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    dwf("run", "kit", "sleeper", "--id", "long", "--params", f'{{"ms": {I64_MAX}}}', "--wait",
        "--timeout", "3", expect=1)  # it does not finish: it sleeps
    assert "wakes at  9999-12-31 23:59:59.999" in dwf("status", "kit", "long")
    with sqlite3.connect(tmp_path / "dwf.sqlite3") as conn:
        conn.execute("UPDATE instances SET wake_at_ms = ?", (I64_MAX,))
        conn.execute("UPDATE steps SET wake_at_ms = ?, finished_at_ms = ?",
                     (I64_MAX, -I64_MAX))
    shown = dwf("status", "kit", "long")
    assert f"wakes at  {I64_MAX} ms" in shown
    assert str(-I64_MAX) in dwf("history", "kit", "long")
