"""One invocation's journal on its way to disk: pipelined behind the guest, in order, fenced.

The guest does not wait for each step's commit. Its journal writes join the store's queue
in the order it made them and the guest runs on; the store commits them in that order
(`RunWrites`), so the journal on disk is always a prefix of what the guest did, and after a
crash replay redoes the rest. A step body can therefore run again only if its checkpoint
had not committed, as before, and nothing of the run is seen outside the sandbox early:
everything that leaves it (a child instance, an event for another instance, the instance's
own outcome) is a write queued behind the steps it depends on, and taking an event waits
for its commit. Waiting for every step instead would cost a thread switch to the writer
and back per step, which under the GIL, with many instances at once, costs more than the
commits themselves.

At most `PIPELINE_WINDOW` journal rows of one invocation are uncommitted at a time (a batch
of steps may pass it by its own size, then waits): that bounds what a crash makes replay
redo, and the memory a fast guest can queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from ..core.ids import ModuleSha
from ..core.model import AttemptRecord, StepKind, StepRecord, StepState
from ..core.outcomes import Suspend, SuspendReason
from ..sandbox.turns import TurnThreads
from ..store import EarlierWriteFailed, RunWrites
from .journal import Aborted

PIPELINE_WINDOW = 16
"""Most uncommitted journal rows one invocation may have before its guest waits."""


class GuestBindings(Protocol):
    """The engine's side of a guest's create_instance and send_event (on its loop)."""

    def create_child(self, run: RunWrites, sha256: ModuleSha, record: StepRecord,
                     request: dict[str, Any]) -> Coroutine[Any, Any, None]: ...

    def send_from_guest(self, run: RunWrites, record: StepRecord,
                        request: dict[str, Any]) -> Coroutine[Any, Any, None]: ...


class InvocationWriter:
    """The JournalWriter of one invocation (used on its pool thread)."""

    def __init__(self, run: RunWrites, bindings: GuestBindings, module_sha256: ModuleSha,
                 loop: asyncio.AbstractEventLoop, turns: TurnThreads,
                 window: int = PIPELINE_WINDOW) -> None:
        self.run = run
        self._bindings = bindings
        self._sha = module_sha256
        self._loop = loop
        self._turns = turns  # its turn is given up while the guest's thread waits
        self._window = window
        self._queued = 0
        self._held: list[StepRecord] = []

    def save(self, record: StepRecord) -> None:
        if record.kind is not StepKind.SLEEP:
            self.save_all([record], pause_point=record.state is not StepState.PENDING)
            return
        # A sleep's record is held until the guest's next write or the run's end (`flush`),
        # and joins the write that follows it (the step after a wake, the settling of a
        # run that suspends): one write where it took two, often two commits. Only a
        # sleep's: it did nothing outside, so redoing it after a crash costs nothing.
        self._held.append(record)
        self._check(pause_point=record.state is not StepState.PENDING)

    def save_all(self, records: list[StepRecord], *, pause_point: bool) -> None:
        if self._held:
            records, self._held = self._held + records, []
        self.run.append(records)
        self._queued += len(records)
        self._after_queueing(pause_point)

    def flush(self) -> None:
        """Queue the held records (before the run's settling, or another kind of write)."""
        if self._held:
            held, self._held = self._held, []
            self.run.append(held)
            self._queued += len(held)

    def save_attempt(self, record: StepRecord, attempt: AttemptRecord) -> None:
        self.flush()
        self.run.append_attempt(record, attempt)
        self._queued += 1
        self._after_queueing(record.state is not StepState.PENDING)

    def _after_queueing(self, pause_point: bool) -> None:
        run = self.run
        if self._queued - run.committed_count > self._window:
            with self._turns.released():
                run.wait_committed(self._queued - self._window)
        # Checked after queueing: a step whose body ran is journaled before we stop.
        self._check(pause_point=pause_point)

    def take_event(self, record: StepRecord, event_type: str) -> bool:
        self.flush()
        with self._turns.released():
            self.run.take_event(record, event_type)
        self._check(pause_point=False)
        return record.state is StepState.OK

    def create_instance(self, record: StepRecord, request: dict[str, Any]) -> None:
        self._wait(self._bindings.create_child(self.run, self._sha, record, request))

    def send_event(self, record: StepRecord, request: dict[str, Any]) -> None:
        self._wait(self._bindings.send_from_guest(self.run, record, request))

    def _wait(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.flush()
        with self._turns.released():
            asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        self._check(pause_point=False)

    def _check(self, *, pause_point: bool) -> None:
        """Stop the guest if a committed write found its instance gone or a pause asked for.

        A pause takes effect at a step boundary, never in the middle of a wait.
        """
        run = self.run
        if run.lost:
            raise Aborted()
        if run.failure is not None:
            raise EarlierWriteFailed(
                f"a journal write failed: {run.failure!r}") from run.failure
        if pause_point and run.pause_requested:
            raise Suspend(SuspendReason.PAUSE)
