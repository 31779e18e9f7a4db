"""Workflow invocations take turns on their threads: one at a time, unless one runs long.

Guest code runs with the GIL released, but every host import it calls takes the GIL back,
and every call into wasmtime gives it up again. With several guests running at once, each
of those hand-offs wakes another thread and waits to win the GIL back: measured on 2 cores,
four threads running 10-step workflows did 830-1,080 a second, one thread alone 2,800,
and the kernel time of the hand-offs exceeded the work itself.

So one invocation runs at a time, and the thread whose turn ends takes the next one off
the queue itself: a crowd of short invocations runs back to back on one thread, with no
thread woken between them. (The baton this replaced let every thread take a job and then
wait for its turn, so each invocation cost a wake-up: a futex call and a GIL hand-off, 12-31%
of the interpreter's time while 20,000 sleepers woke.)

A turn kept past a slice while others wait no longer blocks them: one idle thread watches
the turn's clock, and past the slice it takes the next invocation and runs beside the slow
one. A tenant's slow step therefore delays the others by at most one slice. An invocation
that waits on something else (its journal's commit, the event loop, the network) gives
its turn up meanwhile, and gets it back before the queue does; one that waits on the
network (`blocking`) also has a spare thread started in its place, so that `count`
threads can always run guests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .guest_threads import Job, run_job, start_threads

T = TypeVar("T")

SLICE_SECONDS = 0.005


class TurnThreads:
    def __init__(self, count: int, name: str, slice_seconds: float = SLICE_SECONDS) -> None:
        self.slice_seconds = slice_seconds
        self._name = name
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # threads with no turn and no job
        self._back = threading.Condition(self._lock)  # threads back from a wait, for a turn
        self._jobs: deque[Job] = deque()
        self._turn: object | None = None  # the turn running now; None: nobody's
        self._turn_since = 0.0
        self._returning = 0  # threads waiting in `_back`
        self._watching = False  # an idle thread waits for the turn's slice to end
        self._idle_threads = 0  # threads waiting in `_idle`
        self._summoned = False  # one of them was woken and has not looked yet
        self._blocked = 0  # threads inside blocking()
        self._spares = 0  # spare threads started and not yet retired
        self._closing = False
        self._mine = threading.local()  # this thread's turn, and whether it is one of ours
        self.overruns = 0  # turns kept past a slice while another thread ran beside them
        self._threads = start_threads(self._work, name, count)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` in turn; its result or exception resolves the future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._jobs.append((fn, future))
            # A running turn takes the job itself when it ends: wake a thread only if
            # nobody runs, or to watch the running turn's slice.
            if (self._turn is None and not self._returning or not self._watching) and \
                    not self._summoned:
                self._summon_locked()
        return future

    def owns_current_thread(self) -> bool:
        return getattr(self._mine, "member", False)

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let another invocation run while this one waits on something else (a commit,
        the event loop), then take a turn again; a no-op on a thread without a turn."""
        turn = getattr(self._mine, "turn", None)
        if turn is None:
            yield
            return
        with self._lock:
            self._mine.turn = None
            self._end_locked(turn, handing_over=True)
        try:
            yield
        finally:
            with self._lock:
                self._mine.turn = self._take_back_locked()

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """The calling thread (one of these, its turn released) waits on the outside world
        for a while: a spare thread runs invocations until it is back."""
        with self._lock:
            self._blocked += 1
            if self._spares < self._blocked:
                self._spares += 1
                threading.Thread(target=self._work, args=(True,), name=f"{self._name}_spare",
                                 daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._blocked -= 1
                if self._spares > self._blocked:
                    self._idle.notify_all()  # a spare retires

    def close(self) -> None:
        """Finish the queued jobs, then stop every thread."""
        with self._lock:
            self._closing = True
            self._idle.notify_all()
        for thread in self._threads:
            thread.join()

    # -- on the threads -------------------------------------------------------------------

    def _work(self, spare: bool = False) -> None:
        self._mine.member = True
        lock = self._lock
        with lock:
            while (job := self._next_locked(spare)) is not None:
                lock.release()
                try:
                    run_job(job)
                finally:
                    lock.acquire()
                    turn, self._mine.turn = self._mine.turn, None
                    self._end_locked(turn, handing_over=False)

    def _next_locked(self, spare: bool) -> Job | None:
        """The next job, with a turn for it: when the turn is free, or its holder overran
        its slice; None when this thread should stop."""
        while True:
            if spare and self._spares > self._blocked:
                self._spares -= 1
                return None
            if self._jobs and not self._returning:
                now = time.monotonic()
                if self._turn is not None and now >= self._turn_since + self.slice_seconds:
                    self.overruns += 1  # run beside it
                    self._turn = None
                if self._turn is None:
                    self._mine.turn = self._start_locked(now)
                    return self._jobs.popleft()
            if self._closing and not self._jobs:
                self._idle.notify_all()
                return None
            watch = bool(self._jobs) and self._turn is not None and not self._watching
            self._watching = self._watching or watch
            self._idle_threads += 1
            try:
                self._idle.wait(self._turn_since + self.slice_seconds - time.monotonic()
                                if watch else None)
            finally:
                self._idle_threads -= 1
                self._watching = self._watching and not watch
            self._summoned = False

    def _start_locked(self, now: float) -> object:
        turn = object()
        self._turn, self._turn_since = turn, now
        if self._jobs and not self._watching:
            self._summon_locked()  # someone must watch this turn's slice
        return turn

    def _summon_locked(self) -> None:
        """Wake an idle thread to look at the queue (none waiting: a thread that is not
        waiting looks before it waits)."""
        if self._idle_threads:
            self._summoned = True
            self._idle.notify()

    def _end_locked(self, turn: object | None, *, handing_over: bool) -> None:
        """End `turn`. A thread going on to wait elsewhere hands the queue over to an idle
        one; a thread whose job ended takes the next itself (in `_work`): nobody to wake."""
        if turn is None or self._turn is not turn:
            return  # another thread ran beside it past its slice, and has the turn now
        self._turn = None
        if self._returning:
            self._back.notify()
        elif handing_over and self._jobs:
            self._summon_locked()

    def _take_back_locked(self) -> object:
        """A turn for a thread back from a wait: before the queued jobs, and at most one
        slice after the running turn started."""
        self._returning += 1
        try:
            while self._turn is not None:
                remaining = self._turn_since + self.slice_seconds - time.monotonic()
                if remaining <= 0:
                    self.overruns += 1
                    break
                self._back.wait(remaining)
        finally:
            self._returning -= 1
        return self._start_locked(time.monotonic())
