"""Per-attempt history: every attempt of a step.do body, its times, outcome and error, and
the delay before the next, kept for the latest ATTEMPTS_KEPT attempts of each step."""

from __future__ import annotations

from typing import Any

from helpers import register_guest, settle, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.core.model import ATTEMPTS_KEPT


def _history(status: Any, position: int = 0) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = status.steps[position]["attempt_history"]
    return history


async def test_each_attempt_is_recorded_with_its_times_error_and_retry_delay(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "flaky", {"fail_attempts": 2, "limit": 5,
                                                  "delay_ms": 1000, "backoff": "linear"})
    started = []
    for delay in (1000, 2000):
        started.append(clock.now_ms())
        await settle(engine, kit, instance)
        clock.advance(delay)
    started.append(clock.now_ms())
    status = await settle(engine, kit, instance)
    assert Status.COMPLETE is status.status
    expected = [
        {"attempt": 1, "state": "error", "started_at_ms": started[0],
         "finished_at_ms": started[0], "retry_delay_ms": 1000,
         "error": {"name": "Flaky", "message": "attempt 1 fails"}},
        {"attempt": 2, "state": "error", "started_at_ms": started[1],
         "finished_at_ms": started[1], "retry_delay_ms": 2000,
         "error": {"name": "Flaky", "message": "attempt 2 fails"}},
        {"attempt": 3, "state": "ok", "started_at_ms": started[2],
         "finished_at_ms": started[2], "retry_delay_ms": None, "error": None},
    ]
    assert expected == _history(status)
    assert 3 == status.steps[0]["attempts"]


async def test_a_step_that_succeeds_at_once_shows_its_one_attempt(
        engine: DurableEngine, kit: TenantId) -> None:
    status = await settle(engine, kit, await start(engine, kit, "steps", {"count": 2}))
    assert Status.COMPLETE is status.status
    for step in status.steps:
        assert [{"attempt": 1, "state": "ok", "started_at_ms": step["started_at_ms"],
                 "finished_at_ms": step["finished_at_ms"], "error": None,
                 "retry_delay_ms": None}] == step["attempt_history"]
    # Nothing is stored for them: the journal row tells it.
    assert [] == await engine.store.attempts(kit, status.instance_id)


async def test_a_non_retryable_failure_is_one_final_attempt(
        engine: DurableEngine, kit: TenantId) -> None:
    status = await settle(engine, kit, await start(engine, kit, "flaky",
                                                   {"non_retryable": True}))
    assert Status.ERRORED is status.status
    [attempt] = _history(status)
    assert ("error", {"name": "Fatal", "message": "asked to fail for good"}, None) == (
        attempt["state"], attempt["error"], attempt["retry_delay_ms"])


async def test_only_the_latest_attempts_of_a_step_are_kept(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    total = ATTEMPTS_KEPT + 6
    instance = await start(engine, kit, "flaky", {"fail_attempts": total - 1, "limit": total,
                                                  "delay_ms": 1, "backoff": "constant"})
    for _ in range(total):
        await settle(engine, kit, instance)
        clock.advance(1)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, total) == (status.status, status.steps[0]["attempts"])
    history = _history(status)
    assert list(range(total - ATTEMPTS_KEPT + 1, total + 1)) == [a["attempt"] for a in history]
    assert ["error"] * (ATTEMPTS_KEPT - 1) + ["ok"] == [a["state"] for a in history]


async def test_a_trap_in_a_step_body_is_a_failed_attempt_in_the_history(
        engine: DurableEngine, clock: ManualClock) -> None:
    tenant = await register_guest(engine, "batchkit", "batchkit")
    instance = await start(engine, tenant, "trap_once", {"count": 2})
    await settle(engine, tenant, instance)
    clock.advance(10_000)
    status = await settle(engine, tenant, instance)
    assert Status.COMPLETE is status.status
    first, second = _history(status, 2)
    assert ("error", "GuestTrap", 10_000) == (first["state"], first["error"]["name"],
                                             first["retry_delay_ms"])
    assert ("ok", 2) == (second["state"], second["attempt"])


async def test_restart_forgets_the_attempts(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "flaky", {"fail_attempts": 100, "limit": 1,
                                                  "delay_ms": 5, "backoff": "constant"})
    await settle(engine, kit, instance)
    clock.advance(5)
    assert 2 == len(_history(await settle(engine, kit, instance)))
    await engine.instances.restart(kit, instance)
    assert [] == await engine.store.attempts(kit, instance)
    assert 1 == len(_history(await settle(engine, kit, instance)))

