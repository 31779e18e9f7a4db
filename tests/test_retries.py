"""Retries: attempts, backoff formulas and timing, non-retryable errors (manual clock)."""

from __future__ import annotations

import pytest
from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.sandbox.step_config import Backoff, RetryPolicy, StepConfigError, parse_step_config


@pytest.mark.parametrize(("backoff", "expected"), [
    (Backoff.CONSTANT, [1000, 1000, 1000, 1000]),
    (Backoff.LINEAR, [1000, 2000, 3000, 4000]),
    (Backoff.EXPONENTIAL, [1000, 2000, 4000, 8000]),
])
def test_backoff_formulas(backoff: Backoff, expected: list[int]) -> None:
    policy = RetryPolicy(limit=4, delay_ms=1000, backoff=backoff)
    assert expected == [policy.delay_before_retry(n) for n in range(1, 5)]


def test_documented_defaults() -> None:
    config = parse_step_config(None)
    assert (5, 10_000, Backoff.EXPONENTIAL, 600_000) == (
        config.retries.limit, config.retries.delay_ms, config.retries.backoff,
        config.timeout_ms)


@pytest.mark.parametrize("raw", [
    {"retries": {"limit": -1}}, {"retries": {"backoff": "fibonacci"}}, {"timeout_ms": 0},
    {"retries": {"delay_ms": "10s"}}, {"surprise": 1}, [1, 2],
])
def test_bad_step_config_is_rejected_with_a_reason(raw: object) -> None:
    with pytest.raises(StepConfigError):
        parse_step_config(raw)


async def _flaky(engine: DurableEngine, kit: TenantId, **params: object) -> str:
    return await start(engine, kit, "flaky", {"fail_attempts": 2, "limit": 5, "delay_ms": 1000,
                                              "backoff": "exponential", "non_retryable": False,
                                              **params})


@pytest.mark.parametrize(("backoff", "delays"), [
    ("exponential", [1000, 2000, 4000]), ("linear", [1000, 2000, 3000]),
    ("constant", [1000, 1000, 1000]),
])
async def test_retry_waits_follow_backoff_then_succeed(
        engine: DurableEngine, kit: TenantId, clock: ManualClock, backoff: str,
        delays: list[int]) -> None:
    instance = await _flaky(engine, kit, fail_attempts=3, backoff=backoff)
    for delay in delays:
        status = await settle(engine, kit, instance)
        assert (Status.WAITING, clock.now_ms() + delay) == (status.status, status.wake_at_ms)
        clock.advance(delay - 1)
        assert (await settle(engine, kit, instance)).status is Status.WAITING  # not early
        clock.advance(1)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"attempt": 4}) == (status.status, status.output)
    assert status.steps[0]["attempts"] == 4


async def test_retries_exhausted_fail_the_step_for_good(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await _flaky(engine, kit, fail_attempts=100, limit=2, backoff="constant")
    for _ in range(2):
        await settle(engine, kit, instance)
        clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "Flaky"
    step = status.steps[0]
    assert ("error", 3) == (step["state"], step["attempts"])


async def test_non_retryable_error_stops_at_the_first_attempt(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await _flaky(engine, kit, non_retryable=True)
    status = await settle(engine, kit, instance)
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "Fatal"
    assert status.steps[0]["attempts"] == 1


async def test_config_fields_left_zero_keep_the_defaults(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    """`{.limit = 2, .delay_ms = 100}` in C: backoff and timeout_ms stay 0 / NULL, which
    keep the host defaults (exponential, 10 min) instead of breaking the ABI."""
    instance = await start(engine, kit, "partial_config")
    for delay in (100, 200):  # exponential, from the 100 ms the config names
        status = await settle(engine, kit, instance)
        assert (Status.WAITING, clock.now_ms() + delay) == (status.status, status.wake_at_ms)
        clock.advance(delay)
    status = await settle(engine, kit, instance)
    assert (Status.ERRORED, "Nope") == (status.status, status.error and status.error["name"])
    assert [100, 200, None] == [a["retry_delay_ms"]
                                for a in status.steps[0]["attempt_history"]]
