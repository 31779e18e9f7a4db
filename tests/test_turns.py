"""Invocations take turns on the pool's threads: one at a time, the thread whose turn ends
takes the next itself, a long one stops blocking the others after a slice, and one that
waits on something else lets another run meanwhile."""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from host.sandbox.turns import TurnThreads

LONG = 60.0  # a slice nobody reaches in these tests: only the turns decide


@pytest.fixture
def turns() -> Iterator[TurnThreads]:
    lanes = TurnThreads(4, "test-turn", LONG)
    yield lanes
    lanes.close()


def _holding(turns: TurnThreads) -> Callable[[], bool]:
    return lambda: turns._turn is not None  # noqa: SLF001 - the state the tests are about


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_crowd_of_invocations_runs_one_at_a_time_on_one_thread(
        turns: TurnThreads) -> None:
    inside, most, ran_on = 0, 0, set()
    lock = threading.Lock()
    gate = threading.Event()

    def invocation() -> None:
        nonlocal inside, most
        gate.wait(30)  # the first holds its turn until all are queued
        with lock:
            inside += 1
            most = max(most, inside)
            ran_on.add(threading.get_ident())
        threading.Event().wait(0.0005)
        with lock:
            inside -= 1

    futures = [turns.submit(invocation) for _ in range(50)]
    await _until(_holding(turns))
    gate.set()
    await asyncio.gather(*futures)
    assert 1 == most
    assert 1 == len(ran_on), "queued invocations run back to back, with no hand-off"
    assert 0 == turns.overruns
    await _until(lambda: turns._turn is None)  # noqa: SLF001


async def test_results_and_errors_reach_the_awaiter(turns: TurnThreads) -> None:
    assert 7 == await turns.submit(lambda: 7)

    def broken() -> None:
        raise ValueError("the guest's host call broke")

    with pytest.raises(ValueError, match="host call broke"):
        await turns.submit(broken)
    assert 8 == await turns.submit(lambda: 8), "a failed invocation ends its turn"


async def test_a_turn_past_its_slice_no_longer_blocks_the_others() -> None:
    turns = TurnThreads(2, "test-turn", 0.01)
    try:
        short_ran = threading.Event()
        long_saw: list[bool] = []

        def long_invocation() -> None:
            short_ran.wait(30)  # keeps its turn until the other one got in beside it
            long_saw.append(short_ran.is_set())

        long_done = turns.submit(long_invocation)
        await _until(_holding(turns))
        await turns.submit(short_ran.set)
        await long_done
        assert [True] == long_saw
        assert 1 == turns.overruns
        # The last turn ends just after its awaiter hears the answer.
        await _until(lambda: turns._turn is None)  # noqa: SLF001 - the long turn's late end leaks none
    finally:
        turns.close()


async def test_a_waiting_invocation_lets_another_run_and_gets_its_turn_back_first(
        turns: TurnThreads) -> None:
    other_ran, waiting, back = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def waiting_invocation() -> None:
        with turns.released():  # e.g. waiting for its journal to commit
            waiting.set()
            other_ran.wait(30)
            back.set()
        order.append("waiting invocation back")

    def other_invocation() -> None:
        order.append("other invocation")
        other_ran.set()
        back.wait(30)  # still in its turn when the waiting one wants its own back
        threading.Event().wait(0.05)

    def queued_invocation() -> None:
        order.append("queued invocation")

    first = turns.submit(waiting_invocation)
    await asyncio.get_running_loop().run_in_executor(None, waiting.wait, 30)
    second = turns.submit(other_invocation)
    await asyncio.get_running_loop().run_in_executor(None, back.wait, 30)
    third = turns.submit(queued_invocation)
    await asyncio.gather(first, second, third)
    assert ["other invocation", "waiting invocation back", "queued invocation"] == order
    assert 0 == turns.overruns
    await _until(lambda: turns._turn is None)  # noqa: SLF001


async def test_released_outside_a_turn_does_nothing(turns: TurnThreads) -> None:
    with turns.released():
        assert turns._turn is None  # noqa: SLF001
    assert not turns.owns_current_thread()
    assert await turns.submit(turns.owns_current_thread)


async def test_an_invocation_blocked_on_the_outside_world_holds_up_no_other() -> None:
    turns = TurnThreads(1, "test-turn", LONG)
    try:
        answer = threading.Event()

        def blocked_invocation() -> str:
            with turns.released(), turns.blocking():
                answer.wait(30)  # an outbound request in flight
            return "answered"

        blocked = turns.submit(blocked_invocation)
        assert "next" == await asyncio.wait_for(turns.submit(lambda: "next"), 30), (
            "the only thread is blocked: a spare must run the next invocation")
        answer.set()
        assert "answered" == await blocked
        assert "later" == await turns.submit(lambda: "later")
    finally:
        turns.close()


async def test_close_finishes_what_is_queued() -> None:
    turns = TurnThreads(2, "test-turn", LONG)
    ran: list[int] = []
    futures = [turns.submit(lambda i=i: ran.append(i)) for i in range(20)]
    await asyncio.get_running_loop().run_in_executor(None, turns.close)
    assert list(range(20)) == ran
    await asyncio.gather(*futures)


async def test_many_invocations_waiting_and_overrunning_all_finish() -> None:
    """A mix of quick ones, ones waiting on commits and on the network, and ones past
    their slice, submitted in bursts: every one finishes, and no turn is left over."""
    turns = TurnThreads(3, "test-turn", 0.002)
    rng = random.Random(18)
    try:
        def invocation(kind: int, seconds: float) -> int:
            if kind == 1:
                with turns.released():
                    time.sleep(seconds)
            elif kind == 2:
                with turns.released(), turns.blocking():
                    time.sleep(seconds)
            else:
                time.sleep(seconds if kind == 3 else 0)
            return kind

        futures = []
        for _ in range(40):
            for _ in range(rng.randrange(1, 20)):
                kind = rng.randrange(4)
                futures.append(turns.submit(functools.partial(
                    invocation, kind, rng.uniform(0, 0.004))))
            await asyncio.sleep(rng.uniform(0, 0.003))
        kinds = await asyncio.wait_for(asyncio.gather(*futures), 60)
        assert len(futures) == len(kinds)
        await _until(lambda: turns._turn is None)  # noqa: SLF001
    finally:
        turns.close()
