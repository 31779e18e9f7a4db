"""Time as the engine sees it: injectable so tests can move it by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        self._now_ms += ms


LATEST_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest time the engine keeps. A later wake time (a sleep
or wait of i64-max, a retry delay doubled past it) is clamped to it: in practice, never."""


def clamped(ms: int) -> int:
    """`ms`, or LATEST_MS if later: every wake time fits the database and a calendar."""
    return min(ms, LATEST_MS)
