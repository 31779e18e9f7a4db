"""The pool's baton: guests take turns, a long one stops blocking the others after a
slice, and a guest that waits on something else lets another run meanwhile."""

from __future__ import annotations

import threading

from host.sandbox.baton import Baton

LONG = 60.0  # a slice nobody reaches in these tests: only the baton decides


def _in_threads(*targets: object) -> None:
    threads = [threading.Thread(target=t) for t in targets]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_holders_take_turns() -> None:
    baton = Baton(LONG)
    inside, most = 0, 0
    lock = threading.Lock()

    def guest() -> None:
        nonlocal inside, most
        for _ in range(200):
            with baton.held():
                with lock:
                    inside += 1
                    most = max(most, inside)
                threading.Event().wait(0.0001)
                with lock:
                    inside -= 1

    _in_threads(guest, guest, guest)
    assert 1 == most
    assert 0 == baton.overruns


def test_a_holder_past_its_slice_no_longer_blocks_the_others() -> None:
    baton = Baton(0.01)
    long_guest_done = threading.Event()
    short_guest_ran = threading.Event()
    ran_while_long_guest_held = []

    def long_guest() -> None:
        with baton.held():
            short_guest_ran.wait(30)  # holds the baton until the other one got in
            ran_while_long_guest_held.append(short_guest_ran.is_set())
        long_guest_done.set()

    def short_guest() -> None:
        while baton._holder is None:  # let the long guest take it first
            threading.Event().wait(0.001)
        with baton.held():
            short_guest_ran.set()

    _in_threads(long_guest, short_guest)
    assert [True] == ran_while_long_guest_held
    assert 1 == baton.overruns
    assert baton._holder is None, "the long guest's late release must not leak a turn"


def test_a_waiting_holder_lets_another_run_and_gets_the_baton_back() -> None:
    baton = Baton(LONG)
    other_ran, waiting = threading.Event(), threading.Event()
    order: list[str] = []

    def waiting_guest() -> None:
        with baton.held():
            with baton.released():  # e.g. waiting for its journal to commit
                waiting.set()
                other_ran.wait(30)
            order.append("waiting guest back")

    def other_guest() -> None:
        waiting.wait(30)
        with baton.held():
            order.append("other guest")
            other_ran.set()

    _in_threads(waiting_guest, other_guest)
    assert ["other guest", "waiting guest back"] == order
    assert 0 == baton.overruns
    assert baton._holder is None


def test_released_outside_the_baton_does_nothing() -> None:
    baton = Baton(LONG)
    with baton.released():
        assert baton._holder is None
    with baton.held():
        pass
    assert baton._holder is None
