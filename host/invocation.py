"""One invocation's journal on its way to disk: pipelined behind the guest, in order, fenced.

The guest does not wait for each step's commit. Its journal writes join the group-commit
queue in the order it made them and the guest runs on; the writer commits them in that
order, so the journal on disk is always a prefix of what the guest did, and after a crash
replay redoes the rest. A step body can therefore run again only if its checkpoint had not
committed, as before, and nothing of the run is seen outside the sandbox early: everything
that leaves it (a child instance, an event for another instance, the instance's own
outcome) is a write queued behind the steps it depends on, and taking an event waits for
its commit. Waiting for every step instead would cost a thread switch to the writer and
back per step, which under the GIL, with many instances at once, costs more than the
commits themselves.

At most `PIPELINE_WINDOW` journal rows of one invocation are uncommitted at a time (a batch
of steps may pass it by its own size, then waits): that bounds what a crash makes replay
redo, and the memory a fast guest can queue.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from . import codec
from .baton import Baton
from .clock import Clock
from .database import Database, RowAppend, WriteOp, keeps_fences
from .ids import InstanceId, ModuleSha, TenantId
from .instances import SAVE_STEP_SQL, STEP_ROW_PLACEHOLDERS, Status, save_step, step_row
from .journal import Aborted, StepRecord, StepState, Suspend, SuspendReason
from .limits import TenantLimits

PIPELINE_WINDOW = 16
"""Most uncommitted journal rows one invocation may have before its guest waits."""


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What a claim read about its instance, in the claim's own transaction."""

    workflow: str
    sha256: ModuleSha
    params: bytes
    created_at_ms: int
    limits: TenantLimits
    has_steps: bool


@dataclass(frozen=True, slots=True)
class Claim:
    tenant_id: TenantId
    instance_id: InstanceId
    run_id: str
    epoch: int | None = None
    """The writer's epoch in the claim's transaction. While it has not moved, nothing in
    this process changed the instance since (no pause, terminate or restart): its fence is
    as the claim left it, and `prefetched` is still true. Another process's change moves it
    at the writer's next transaction, which a journal write's fence check sees."""
    prefetched: Prefetched | None = None


class Fence(enum.Enum):
    """What a journal write found about its instance."""

    OK = "ok"
    PAUSE_REQUESTED = "pause"
    LOST = "lost"  # terminated or restarted under us


def read_fence(conn: sqlite3.Connection, claim: Claim) -> Fence:
    row = conn.execute(
        "SELECT status, run_id FROM instances WHERE tenant_id = ? AND instance_id = ?",
        (claim.tenant_id, claim.instance_id)).fetchone()
    if row is None or row["run_id"] != claim.run_id:
        return Fence.LOST
    if row["status"] == Status.WAITING_FOR_PAUSE.value:
        return Fence.PAUSE_REQUESTED
    return Fence.OK


class EarlierWriteFailed(Exception):
    """A journal write of this invocation failed, so none after it may be written: the
    journal on disk must stay a prefix of what the guest did."""


class WriteChain:
    """What the writer thread has learned about one invocation's writes so far.

    Set on the writer thread (by the ops, and by `committed` after each COMMIT, before the
    next batch starts); read by the invocation's thread between steps and by its settle
    op, which is queued after all of them.
    """

    __slots__ = ("claim", "lost", "pause_requested", "failure", "committed_count",
                 "_checked_at", "_answers", "_waiter")

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.lost = False
        self.pause_requested = False
        self.failure: BaseException | None = None
        self.committed_count = 0  # pipelined journal rows answered so far, in queue order
        # The writer epoch of the last fence read; the claim itself was one.
        self._checked_at: int | None = claim.epoch
        self._answers = threading.Lock()  # a plain lock: this runs once per journal write
        self._waiter: tuple[int, threading.Event] | None = None  # (count, woken then)

    def guard(self, conn: sqlite3.Connection) -> bool:
        """Run first by every write of the invocation: whether it may write."""
        if self.failure is not None:
            raise EarlierWriteFailed(
                f"an earlier journal write failed: {self.failure!r}") from self.failure
        epoch = getattr(conn, "epoch", None)
        if epoch is not None and epoch == self._checked_at:
            return not self.lost  # nothing since the last read could have moved the fence
        self._checked_at = epoch
        fence = read_fence(conn, self.claim)
        if fence is Fence.LOST:
            self.lost = True
            return False
        if fence is Fence.PAUSE_REQUESTED:
            self.pause_requested = True
        return True

    def committed(self, ok: bool, value: Any, rows: int = 1) -> None:
        """A pipelined write's answer (`WriteDone`, on the writer thread), for its `rows`
        journal rows. It catches a failed COMMIT too, which fails writes whose statements
        ran fine."""
        with self._answers:
            if not ok and self.failure is None:
                self.failure = value
            self.committed_count += rows
            waiter = self._waiter
            if waiter is None or self.committed_count < waiter[0]:
                return
            self._waiter = None
        waiter[1].set()

    def wait_committed(self, count: int) -> None:
        """Block the invocation's thread until `count` of its pipelined rows are answered."""
        with self._answers:
            if self.committed_count >= count:
                return
            self._waiter = (count, threading.Event())
            woken = self._waiter[1]
        woken.wait()


class JournalAppend(RowAppend):
    """Journal positions of an invocation, as the records are now, fenced by its chain."""

    __slots__ = ("chain", "steps")
    insert_sql = SAVE_STEP_SQL
    placeholders = STEP_ROW_PLACEHOLDERS

    def __init__(self, chain: WriteChain, records: list[StepRecord]) -> None:
        self.chain = chain
        claim = chain.claim
        self.steps = [step_row(claim.tenant_id, claim.instance_id, record)
                      for record in records]

    def rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return self.steps if self.chain.guard(conn) else []

    def failed(self, exc: BaseException) -> None:
        if self.chain.failure is None:  # stop the invocation's later writes
            self.chain.failure = exc

    def committed(self, ok: bool, value: Any) -> None:
        """Its `WriteDone`: the chain counts rows, so a batch weighs what its steps do."""
        self.chain.committed(ok, value, len(self.steps))


def take_event_op(chain: WriteChain, record: StepRecord, event_type: str,
                  clock: Clock) -> WriteOp[None]:
    claim = chain.claim

    @keeps_fences
    def take(conn: sqlite3.Connection) -> None:
        if not chain.guard(conn):
            return
        event = conn.execute(
            "SELECT seq, payload, sent_at_ms FROM events WHERE tenant_id = ? AND "
            "instance_id = ? AND type = ? AND consumed_position IS NULL "
            "ORDER BY seq LIMIT 1",
            (claim.tenant_id, claim.instance_id, event_type)).fetchone()
        if event is None:
            return
        conn.execute("UPDATE events SET consumed_position = ? WHERE seq = ?",
                     (record.position, event["seq"]))
        # The invocation's thread waits for this op, so the record is ours to change.
        record.state = StepState.OK
        record.result = codec.pack({"type": event_type,
                                    "payload": codec.unpack(bytes(event["payload"])),
                                    "timestamp": event["sent_at_ms"]})
        record.wake_at_ms = None
        record.finished_at_ms = clock.now_ms()
        save_step(conn, step_row(claim.tenant_id, claim.instance_id, record))
    return take


class GuestBindings(Protocol):
    """The engine's side of a guest's create_instance and send_event (on its loop)."""

    def create_child(self, chain: WriteChain, sha256: ModuleSha, record: StepRecord,
                     request: dict[str, Any]) -> Coroutine[Any, Any, None]: ...

    def send_from_guest(self, chain: WriteChain, record: StepRecord,
                        request: dict[str, Any]) -> Coroutine[Any, Any, None]: ...


class InvocationWriter:
    """The JournalWriter of one invocation (used on its pool thread)."""

    def __init__(self, db: Database, clock: Clock, bindings: GuestBindings, chain: WriteChain,
                 module_sha256: ModuleSha, loop: asyncio.AbstractEventLoop, baton: Baton,
                 window: int = PIPELINE_WINDOW) -> None:
        self.chain = chain
        self._db = db
        self._clock = clock
        self._bindings = bindings
        self._sha = module_sha256
        self._loop = loop
        self._baton = baton  # given up while the guest's thread waits
        self._window = window
        self._queued = 0

    def save(self, record: StepRecord) -> None:
        self.save_all([record], pause_point=record.state is not StepState.PENDING)

    def save_all(self, records: list[StepRecord], *, pause_point: bool) -> None:
        chain = self.chain
        append = JournalAppend(chain, records)
        self._db.enqueue(append, append.committed)
        self._queued += len(records)
        if self._queued - chain.committed_count > self._window:
            with self._baton.released():
                chain.wait_committed(self._queued - self._window)
        # Checked after queueing: a step whose body ran is journaled before we stop.
        self._check(pause_point=pause_point)

    def take_event(self, record: StepRecord, event_type: str) -> bool:
        with self._baton.released():
            self._db.write_blocking(take_event_op(self.chain, record, event_type, self._clock))
        self._check(pause_point=False)
        return record.state is StepState.OK

    def create_instance(self, record: StepRecord, request: dict[str, Any]) -> None:
        self._wait(self._bindings.create_child(self.chain, self._sha, record, request))

    def send_event(self, record: StepRecord, request: dict[str, Any]) -> None:
        self._wait(self._bindings.send_from_guest(self.chain, record, request))

    def _wait(self, coroutine: Coroutine[Any, Any, None]) -> None:
        with self._baton.released():
            asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        self._check(pause_point=False)

    def _check(self, *, pause_point: bool) -> None:
        """Stop the guest if a committed write found its instance gone or a pause asked for.

        A pause takes effect at a step boundary, never in the middle of a wait.
        """
        chain = self.chain
        if chain.lost:
            raise Aborted()
        if chain.failure is not None:
            raise EarlierWriteFailed(
                f"a journal write failed: {chain.failure!r}") from chain.failure
        if pause_point and chain.pause_requested:
            raise Suspend(SuspendReason.PAUSE)
