"""What invocations did, counted for `/metrics` and traced for OpenTelemetry, off the hot path.

An invocation records its steps into an `InvocationTally` on its pool thread: a tuple per
attempt, two clock reads, no lock, no metric object. When it has settled, the engine adds
the tally to `EngineStats` on the event loop (one thread: plain arithmetic is safe) and,
when tracing is on, turns it into spans (`tracing.py`). Nothing else about metrics or
traces runs while a guest runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..core.ids import TenantId
from ..core.model import Status, StepRecord
from ..core.tally import LATENCY_BOUNDS_S, Buckets
from ..sandbox.guest import Usage

StepTiming = tuple[str, int, str, str | None, int, int]
"""One attempt of a step the host ran (step_do ... step_ok / step_fail):
(name, attempt, outcome, error name, start ns, end ns), times by `time.perf_counter_ns()`.
`outcome` is "ok", "retry" (failed, another attempt follows) or "error" (failed for good)."""

BatchTiming = tuple[list[StepRecord], int, int]
"""Steps the guest ran in a batch without asking (ABI proposal 0002), each a first attempt
that succeeded: (their records, start ns, end ns). The host did not time them one by one:
the batch's time is shared evenly."""

OK, RETRY, ERROR = "ok", "retry", "error"


class InvocationTally:
    """One invocation's steps, times and fuel, filled on its pool thread."""

    __slots__ = ("steps", "batches", "started_ns", "ended_ns", "usage", "mark_ns",
                 "epoch_offset_ns")

    def __init__(self) -> None:
        self.steps: list[StepTiming] = []
        self.batches: list[BatchTiming] = []
        self.started_ns = self.ended_ns = self.mark_ns = time.perf_counter_ns()
        self.usage = Usage()
        self.epoch_offset_ns = time.time_ns() - self.started_ns  # perf_counter -> epoch

    def start(self) -> None:
        """The guest starts running now."""
        self.started_ns = self.mark_ns = time.perf_counter_ns()

    def end(self) -> None:
        self.ended_ns = time.perf_counter_ns()

    def attempt(self, name: str, attempt: int, outcome: str, error: str | None,
                started_ns: int) -> None:
        """A step attempt the host ran ends now."""
        now = self.mark_ns = time.perf_counter_ns()
        self.steps.append((name, attempt, outcome, error, started_ns, now))

    def batch(self, records: list[StepRecord]) -> None:
        """Steps the guest ran in a batch since the host last answered it end now."""
        now = time.perf_counter_ns()
        self.batches.append((records, self.mark_ns, now))
        self.mark_ns = now

    def step_count(self) -> int:
        return len(self.steps) + sum(len(records) for records, _, _ in self.batches)


@dataclass(slots=True)
class TenantStats:
    """One tenant's counts since the engine started."""

    steps_ok: int = 0
    step_retries: int = 0
    steps_failed: int = 0
    step_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BOUNDS_S))
    invocation_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BOUNDS_S))
    invocations: dict[str, int] = field(default_factory=dict)
    """By the status the invocation settled the instance in."""

    fuel_used: int = 0


class EngineStats:
    """Every tenant's `TenantStats`; changed only on the engine's event loop."""

    def __init__(self) -> None:
        self.tenants: dict[TenantId, TenantStats] = {}

    def add(self, tenant_id: TenantId, tally: InvocationTally, settled: Status | None) -> None:
        stats = self.tenants.get(tenant_id)
        if stats is None:
            stats = self.tenants[tenant_id] = TenantStats()
        for _, _, outcome, _, started, ended in tally.steps:
            if outcome == OK:
                stats.steps_ok += 1
            elif outcome == RETRY:
                stats.step_retries += 1
            else:
                stats.steps_failed += 1
            stats.step_seconds.observe((ended - started) / 1e9)
        for records, started, ended in tally.batches:
            stats.steps_ok += len(records)
            stats.step_seconds.observe((ended - started) / 1e9 / len(records), len(records))
        stats.invocation_seconds.observe((tally.ended_ns - tally.started_ns) / 1e9)
        key = settled.value if settled is not None else "aborted"
        stats.invocations[key] = stats.invocations.get(key, 0) + 1
        stats.fuel_used += tally.usage.fuel_used
