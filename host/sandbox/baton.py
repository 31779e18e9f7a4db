"""One guest at a time on the pool's threads, unless one runs long.

Guest code runs with the GIL released, but every host import it calls takes the GIL back,
and every call into wasmtime gives it up again. With several guests running at once, each
of those hand-offs wakes another thread and waits to win the GIL back: measured on 2 cores,
four threads running 10-step workflows did 830-1,080 a second, one thread alone 2,800,
and the kernel time of the hand-offs exceeded the work itself.

So a pool thread holds the baton while it runs guest work, and the others wait for it on
a condition (asleep, not contending for the GIL). A holder that keeps it longer than a
slice no longer blocks anyone: the next thread runs beside it. A tenant's slow step
therefore delays the others by at most one slice, as several threads promise, while
short invocations, the common case, run one after another without fighting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLICE_SECONDS = 0.005


class Baton:
    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self.slice_seconds = slice_seconds
        self._turns = threading.Condition(threading.Lock())
        self._holder: object | None = None
        self._held_since = 0.0
        self._mine = threading.local()  # this thread's turn, while it holds one
        self.overruns = 0  # holders that kept it past a slice and were run beside

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the baton while the block runs (waiting at most one slice for it)."""
        self._mine.turn = self._take()
        try:
            yield
        finally:
            self._give(self._mine.turn)
            self._mine.turn = None

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let another thread run while this one waits on something else (a commit, the
        event loop), then take the baton back; a no-op on a thread not holding it."""
        turn = getattr(self._mine, "turn", None)
        if turn is None:
            yield
            return
        self._give(turn)
        try:
            yield
        finally:
            self._mine.turn = self._take()

    def _take(self) -> object:
        turn = object()
        with self._turns:
            while self._holder is not None:
                remaining = self._held_since + self.slice_seconds - time.monotonic()
                if remaining <= 0:  # its holder overran: run beside it
                    self.overruns += 1
                    break
                self._turns.wait(remaining)
            self._holder, self._held_since = turn, time.monotonic()
        return turn

    def _give(self, turn: object) -> None:
        with self._turns:
            if self._holder is turn:  # not if another thread ran beside it and took over
                self._holder = None
                self._turns.notify()
