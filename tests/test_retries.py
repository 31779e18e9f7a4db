"""Retries: the backoff formulas, the documented defaults, step configs refused.

Retries as a workflow sees them (attempts, waits, non-retryable errors) are in the
behaviour suite both SDKs pass: test_sdk_conformance.py.
"""

from __future__ import annotations

import pytest

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
