"""Counts the hot path keeps with plain arithmetic, for `/metrics` to read when scraped.

Steps, invocations and group commits happen thousands of times a second. A
prometheus-client `Histogram.observe` takes a lock per bucket and per sum: measured here at
4.3 us a call (1.4 us for a `Counter.inc`), several per cent of a step's whole cost. So the
engine and the writers count into these, each from one thread at a time (the event loop,
or the writer's leader), and the `/metrics` collector turns them into Prometheus metric
families at scrape time (host/http/metrics.py). Reading while they are counted may see one
observation half added: a scrape is a snapshot, not a transaction.
"""

from __future__ import annotations

import bisect

LATENCY_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of latency buckets: a step body runs in microseconds to minutes."""

SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Upper bounds of batch-size buckets (writes per group commit: up to MAX_BATCH)."""


class Buckets:
    """A histogram's cumulative-ready counts: one per bound, one past the last, and a sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count `value` (`times` times: a batch of steps shares one estimate)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times

    def merge(self, other: Buckets) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.total += other.total

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them: counts up to each bound, then +Inf."""
        running, pairs = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return pairs


class CommitTally:
    """A group-commit writer's batches: writes per commit, and how long each commit took
    (BEGIN to COMMIT returned), counted by whoever leads the commit (one at a time)."""

    __slots__ = ("batch_sizes", "commit_seconds")

    def __init__(self) -> None:
        self.batch_sizes = Buckets(SIZE_BOUNDS)
        self.commit_seconds = Buckets(LATENCY_BOUNDS_S)
