"""The worker's claim cadence: while a backlog drains it claims a batch of slots at a time,
never holds a free slot back for long, and claims at once when told something is due.

The engine's claims and runs are stand-ins here (runs that end when the test says so), so
what is asserted is when the worker claims and for how many, not what storage does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from host import DurableEngine, Worker
from host.durable import worker as worker_module

CONCURRENCY = 8  # a batch is a quarter of it: 2 slots


class _Backlog:
    """Stand-ins for `claim_due` and `run_claimed`: a backlog of `size` claims, each run
    held until `finish` lets it end."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.claims: list[int] = []  # the size of each claim made
        self.running: list[asyncio.Event] = []
        self.claimed = asyncio.Event()

    async def claim_due(self, limit: int) -> list[Any]:
        taken = min(limit, self.left)
        self.left -= taken
        self.claims.append(taken)
        self.claimed.set()
        return [object() for _ in range(taken)]

    async def run_claimed(self, claim: Any) -> None:
        done = asyncio.Event()
        self.running.append(done)
        await done.wait()

    def finish(self, count: int) -> None:
        for done in self.running[:count]:
            done.set()
        del self.running[:count]

    async def next_claim(self, timeout: float) -> int:
        self.claimed.clear()
        await asyncio.wait_for(self.claimed.wait(), timeout)
        return self.claims[-1]


async def _started(engine: DurableEngine, monkeypatch: pytest.MonkeyPatch, backlog: _Backlog
                   ) -> tuple[Worker, asyncio.Event, asyncio.Task[None], list[Any]]:
    monkeypatch.setattr(engine, "claim_due", backlog.claim_due)
    monkeypatch.setattr(engine, "run_claimed", backlog.run_claimed)
    notify: list[Any] = []

    async def watch_due(callback: Any) -> None:
        notify.append(callback)
    monkeypatch.setattr(engine.store, "watch_due", watch_due)
    worker = Worker(engine, CONCURRENCY, recover=False)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(backlog.claimed.wait(), 10)
    assert [CONCURRENCY] == backlog.claims  # the first claim fills every slot
    return worker, stop, task, notify


async def _stopped(backlog: _Backlog, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    backlog.left = 0
    backlog.finish(len(backlog.running))
    while not task.done():  # runs claimed while stopping end at once too
        backlog.finish(len(backlog.running))
        await asyncio.sleep(0.01)
    await task


async def test_while_a_backlog_drains_the_worker_claims_a_batch_of_slots_at_a_time(
        engine: DurableEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "CLAIM_GATHER_SECONDS", 30.0)
    backlog = _Backlog(100)
    _, stop, task, _ = await _started(engine, monkeypatch, backlog)
    try:
        backlog.finish(1)
        with pytest.raises(TimeoutError):  # one free slot of 8: not yet
            await backlog.next_claim(0.3)
        backlog.finish(1)
        assert 2 == await backlog.next_claim(10)  # a quarter free: claimed together
    finally:
        await _stopped(backlog, stop, task)


async def test_a_free_slot_waits_at_most_the_gather_time(
        engine: DurableEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    backlog = _Backlog(100)
    _, stop, task, _ = await _started(engine, monkeypatch, backlog)
    try:
        began = time.perf_counter()
        backlog.finish(1)
        assert 1 == await backlog.next_claim(10)
        # CLAIM_GATHER_SECONDS (20 ms); the bound leaves room for a loaded machine.
        assert time.perf_counter() - began < 1.0
    finally:
        await _stopped(backlog, stop, task)


async def test_a_notify_claims_a_free_slot_at_once(
        engine: DurableEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new instance made due elsewhere (a NOTIFY on PostgreSQL) starts at once, whatever
    the cadence of the backlog."""
    monkeypatch.setattr(worker_module, "CLAIM_GATHER_SECONDS", 30.0)
    backlog = _Backlog(100)
    _, stop, task, notify = await _started(engine, monkeypatch, backlog)
    try:
        backlog.finish(1)
        with pytest.raises(TimeoutError):
            await backlog.next_claim(0.3)
        [due_elsewhere] = notify
        due_elsewhere()
        assert 1 == await backlog.next_claim(10)
    finally:
        await _stopped(backlog, stop, task)


async def test_a_claim_that_left_slots_free_is_followed_by_one_when_any_frees(
        engine: DurableEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a backlog (the last claim did not fill the free slots) every finished run
    claims again at once: it may have been what held back its tenant's due work."""
    monkeypatch.setattr(worker_module, "CLAIM_GATHER_SECONDS", 30.0)
    backlog = _Backlog(CONCURRENCY)
    _, stop, task, _ = await _started(engine, monkeypatch, backlog)
    try:
        backlog.finish(2)
        assert 0 == await backlog.next_claim(10)  # two free, none due
        backlog.left = 5
        backlog.finish(1)
        assert 3 == await backlog.next_claim(10)
    finally:
        await _stopped(backlog, stop, task)
