"""The worker loop: wakes due instances and runs them until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from ..core.errors import StorageUnavailable, WorkerBusy
from ..store import is_postgres_url
from .engine import RETRY_FIRST_S, RETRY_MOST_S, DurableEngine

log = structlog.get_logger("dwf.worker")
POLL_SECONDS = 0.2  # other processes (the CLI) change the database without telling us

CLAIM_BATCH_FRACTION = 4
"""While a backlog drains (the last claim took every free slot), the next claim waits for
a quarter of the slots to be free, not for the first one: a claim has a cost of its own,
whatever it takes (on PostgreSQL ~300 us of the server's CPU, a statement, a transaction,
and the worker's side of them). Draining scale-pg's backlog, a claim took 8-13 instances
claiming at every free slot, 15-30 so; CPU per workflow fell 5-10% on each side."""

CLAIM_GATHER_SECONDS = 0.020
"""...or for this long after the first slot freed, whichever comes first, so a slow
backlog never leaves a slot idle for long (5 ms gathered too few to matter at ~1,400
workflows a second); and at once when another process says something became due (a
NOTIFY: a new instance, an event), so a lone newcomer starts promptly."""


@contextlib.contextmanager
def worker_lock(db: str | Path, *, wait: bool = False) -> Iterator[None]:
    """One worker per SQLite database; the OS drops the lock when the process dies (even
    SIGKILL). A PostgreSQL database takes any number of workers: no lock.

    Keyed by the file itself, not the path as given: a worker reaching the same database
    through a symlink or another relative path finds the same lock.
    """
    if is_postgres_url(db):
        yield
        return
    db_path = Path(db)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path = db_path.resolve()
    lock_path = db_path.with_name(db_path.name + ".worker.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise WorkerBusy(f"another dwf worker (pid {holder}) is running on {db_path}; "
                             "stop it first or point --db elsewhere") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


async def stop_when_orphaned(stop: asyncio.Event, every_s: float = 0.5) -> None:
    """Set `stop` when this process's parent is gone (a `--processes N` supervisor that
    was killed): its processes then finish what they run and exit, never linger."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("worker.orphaned", parent=parent)
            stop.set()
            return
        await asyncio.sleep(every_s)


class Worker:
    def __init__(self, engine: DurableEngine, concurrency: int | None = None, *,
                 recover: bool = True) -> None:
        """`recover=False`: a process of a group whose supervisor recovered the database
        before starting it (`dwf worker --processes N` on SQLite) must not queue again
        what its siblings are running."""
        self.engine = engine
        self.recover = recover
        self.concurrency = concurrency or engine.pool.config.threads * 2
        self._running: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._notified = False  # a NOTIFY since the last claim: claim at once
        self._backoff = RETRY_FIRST_S

    async def run(self, stop: asyncio.Event) -> None:
        """Run due instances until `stop` is set, then finish the ones started.

        While storage is unavailable (locked by another process, a full disk) it backs off
        and tries again: it never stops because of that, and picks up by itself when the
        lock or the space comes back.
        """
        try:
            while not stop.is_set():
                try:
                    if self.recover:
                        await self.engine.recover()
                    # Another process made something due (PostgreSQL): claim now.
                    await self.engine.store.watch_due(self._due_elsewhere)
                    break
                except StorageUnavailable as exc:
                    await self._back_off(exc, stop)
            log.info("worker.started", concurrency=self.concurrency)
            while not stop.is_set():
                await self._claim_and_start(stop)
        finally:
            self.engine.stop_retrying()
            if self._running:
                # Finish what was claimed; a kill here would only mean a replay later.
                await asyncio.wait(self._running)
            log.info("worker.stopped")

    async def _claim_and_start(self, stop: asyncio.Event) -> None:
        self.engine.due.clear()
        self._notified = False
        free = self.concurrency - len(self._running)
        try:
            await self.engine.schedules.fire_due()  # cron ticks due now become instances
            claims = await self.engine.claim_due(free) if free > 0 else []
        except StorageUnavailable as exc:
            await self._back_off(exc, stop)
            return
        self._backoff = RETRY_FIRST_S
        for claim in claims:
            task = asyncio.create_task(self.engine.run_claimed(claim))
            self._running.add(task)
            task.add_done_callback(self._finished)
        if claims and len(claims) == free:
            await self._wait_for_room()
            return
        if self.engine.due.is_set():
            return  # more became due while it claimed: no need to sleep first
        self.engine.pool.evict_idle()
        await self._sleep_until_due(stop)

    async def _back_off(self, exc: StorageUnavailable, stop: asyncio.Event) -> None:
        """Wait before trying storage again (longer each time, up to RETRY_MOST_S), or
        until told to stop."""
        log.warning("worker.storage_unavailable", reason=str(exc), retry_in_s=self._backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._backoff)
        self._backoff = min(self._backoff * 2, RETRY_MOST_S)

    async def _wait_for_room(self) -> None:
        """After a claim that filled every slot: until a batch's worth of slots is free
        (`CLAIM_BATCH_FRACTION`), or one is and `CLAIM_GATHER_SECONDS` passed since the
        first freed or a NOTIFY came."""
        batch = max(1, self.concurrency // CLAIM_BATCH_FRACTION)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            free = self.concurrency - len(self._running)
            timer = None
            if free >= batch or (free > 0 and self._notified):
                return
            if free > 0:
                if deadline is None:
                    deadline = loop.time() + CLAIM_GATHER_SECONDS
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                timer = loop.call_later(remaining, self._slot_free.set)
            # An event, not asyncio.wait over every running task: that would add and
            # remove a callback on each of them for every one that finishes.
            self._slot_free.clear()
            try:
                await self._slot_free.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _due_elsewhere(self) -> None:
        """A NOTIFY (PostgreSQL): another process, or this one's writer, made something
        due."""
        self._notified = True
        self._slot_free.set()
        self.engine.due.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_free.set()
        self.engine.due.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("worker.task_failed", error=repr(task.exception()))

    async def _sleep_until_due(self, stop: asyncio.Event) -> None:
        timeout = POLL_SECONDS
        try:
            wakes = [await self.engine.next_wake_ms(), await self.engine.schedules.next_tick_ms()]
            next_wake = min((wake for wake in wakes if wake is not None), default=None)
        except StorageUnavailable:
            next_wake = None  # the next claim will say so, and back off
        now = self.engine.clock.now_ms()
        if next_wake is not None and next_wake > now:
            timeout = min(timeout, (next_wake - now) / 1000)
        # Work that is due but was not claimed waits for a tenant's running instance to
        # finish (which sets `due`), not in a busy loop.
        waiters = [asyncio.ensure_future(self.engine.due.wait()),
                   asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
