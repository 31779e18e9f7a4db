"""The pool's threads: blocking guest work off the event loop, answered in one hop.

`loop.run_in_executor` costs, per call, a `concurrent.futures.Future` (a Condition and its
lock), a work item, and a chain of callbacks that copies the result into an asyncio
future. With 100 instances running that was a fifth of the event loop's time. Here a job
is a function and its asyncio future on a queue, and the thread that ran it answers with
one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

Job = tuple[Callable[[], Any], asyncio.Future[Any]]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():  # its awaiter may have been cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class GuestThreads:
    """`count` threads running jobs; a thread that waits on the outside world (an outbound
    request) says so with `blocking()`, and a spare thread runs jobs meanwhile, so that
    `count` of them can always run guests: a guest waiting on the network holds up no
    other."""

    def __init__(self, count: int, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._spares = threading.Condition(threading.Lock())
        self._blocked = 0  # threads inside blocking()
        self._spare_threads = 0  # spares started and not yet retired
        self._threads = start_threads(self._work, name, count)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on one of the threads; its result or exception resolves the future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        return future

    @contextlib.contextmanager
    def blocking(self) -> Iterator[None]:
        """The calling thread (one of these) waits on something else for a while: a spare
        thread takes jobs until it is back."""
        with self._spares:
            self._blocked += 1
            if self._spare_threads < self._blocked:
                self._spare_threads += 1
                threading.Thread(target=self._spare, name=f"{self._name}_spare",
                                 daemon=True).start()
        try:
            yield
        finally:
            with self._spares:
                self._blocked -= 1

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            run_job(job)

    def _spare(self) -> None:
        while True:
            with self._spares:
                if self._spare_threads > self._blocked:  # its blocked thread is back
                    self._spare_threads -= 1
                    return
            try:
                job = self._jobs.get(timeout=SPARE_POLL_SECONDS)
            except queue.Empty:
                continue
            if job is None:  # closing: the sentinel is a regular thread's
                self._jobs.put(None)
                with self._spares:
                    self._spare_threads -= 1
                return
            run_job(job)

    def close(self) -> None:
        """Finish the queued jobs, then stop every thread."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


SPARE_POLL_SECONDS = 0.05
"""How soon a spare thread notices that the thread it stood in for is back."""


def start_threads(target: Callable[[], None], name: str, count: int
                  ) -> list[threading.Thread]:
    """`count` daemon threads running `target`, named `name_0`, `name_1`..."""
    threads = [threading.Thread(target=target, name=f"{name}_{index}", daemon=True)
               for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def run_job(job: Job) -> None:
    fn, future = job
    if future.cancelled():  # nobody waits for it any more
        return
    try:
        answer: tuple[bool, Any] = (True, fn())
    except BaseException as exc:  # noqa: B036 - handed to the awaiter
        answer = (False, exc)
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
        future.get_loop().call_soon_threadsafe(_settle, future, *answer)
