"""Step configuration (retries, timeout) as the guest sends it, with the documented defaults."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Backoff(enum.Enum):
    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class StepConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    limit: int = 5
    """Retries after the first attempt (so at most limit + 1 attempts)."""

    delay_ms: int = 10_000
    """Base delay before a retry."""

    backoff: Backoff = Backoff.EXPONENTIAL
    """How the delay grows with each retry."""

    def delay_before_retry(self, retry: int) -> int:
        """Milliseconds to wait before retry number `retry` (1-based)."""
        if self.backoff is Backoff.CONSTANT:
            return self.delay_ms
        if self.backoff is Backoff.LINEAR:
            return self.delay_ms * retry
        return int(self.delay_ms * 2 ** (retry - 1))


@dataclass(frozen=True, slots=True)
class StepConfig:
    retries: RetryPolicy = RetryPolicy()
    timeout_ms: int = 600_000
    """Wall-clock budget of one attempt of the step body."""


DEFAULT_STEP_CONFIG = StepConfig()
_MAX_MS = 365 * 24 * 3600 * 1000


def parse_step_config(raw: Any) -> StepConfig:
    """Read the guest's config map; unknown keys or bad values are the guest's error."""
    if raw is None:
        return DEFAULT_STEP_CONFIG
    if not isinstance(raw, dict):
        raise StepConfigError(f"step config must be a map, got {type(raw).__name__}")
    _reject_unknown(raw, {"retries", "timeout_ms"}, "step config")
    retries_raw = raw.get("retries", {})
    if not isinstance(retries_raw, dict):
        raise StepConfigError("step config `retries` must be a map")
    _reject_unknown(retries_raw, {"limit", "delay_ms", "backoff"}, "step config `retries`")
    defaults = RetryPolicy()
    backoff_name = retries_raw.get("backoff", defaults.backoff.value)
    try:
        backoff = Backoff(backoff_name)
    except ValueError:
        raise StepConfigError(f"unknown backoff {backoff_name!r}: use constant, linear "
                              "or exponential") from None
    policy = RetryPolicy(
        limit=_int_in(retries_raw, "limit", defaults.limit, 0, 10_000),
        delay_ms=_int_in(retries_raw, "delay_ms", defaults.delay_ms, 0, _MAX_MS),
        backoff=backoff,
    )
    timeout_ms = _int_in(raw, "timeout_ms", DEFAULT_STEP_CONFIG.timeout_ms, 1, _MAX_MS)
    return StepConfig(retries=policy, timeout_ms=timeout_ms)


def _reject_unknown(raw: dict[Any, Any], known: set[str], where: str) -> None:
    unknown = set(raw) - known
    if unknown:
        raise StepConfigError(f"{where} has unknown keys {sorted(map(str, unknown))}")


def _int_in(raw: dict[Any, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StepConfigError(f"step config `{key}` must be an integer in [{low}, {high}], "
                              f"got {value!r}")
    return value
