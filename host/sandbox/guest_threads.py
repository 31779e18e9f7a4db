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
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.Future[Any]]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():  # its awaiter may have been cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class GuestThreads:
    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{index}",
                                          daemon=True) for index in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on one of the threads; its result or exception resolves the future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if future.cancelled():  # nobody waits for it any more
                continue
            try:
                answer: tuple[bool, Any] = (True, fn())
            except BaseException as exc:  # noqa: B036 - handed to the awaiter
                answer = (False, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                future.get_loop().call_soon_threadsafe(_settle, future, *answer)

    def close(self) -> None:
        """Finish the queued jobs, then stop every thread."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
