"""Runs on SQLite: claiming due instances, loading a run, and its fenced, ordered writes.

Every write of a run goes to the group-commit writer (`database.py`) in the order the run
made it; the writer commits them in that order, so the journal on disk is always a prefix
of what the guest did. Each checks the run's fence first (`SqliteRun.guard`): the
instance's `run_id` must still be the claim's. The fence is read once per writer epoch,
not once per write: nothing can move it without moving the epoch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import sqlite3
from collections.abc import Generator
from typing import Any

from ...core.clock import Clock
from ...core.errors import (
    DuplicateInstance,
    DwfError,
    InvalidState,
    UnknownInstance,
)
from ...core.ids import InstanceId, ModuleSha, TenantId, new_run_id
from ...core.limits import LimitsParser, TenantLimits
from ...core.model import DUE_NOW, AttemptRecord, Status, StepRecord
from ...core.outcomes import Completed, Failed, Interrupted, Outcome, SuspendReason
from ..interface import EarlierWriteFailed, RunWrites, after_failed_write
from ..records import Claim, NewInstance, Prefetched, RunInputs, Settled
from ..rows import STEP_COLUMNS, prefetched_journals, take_event_into
from .database import Database, RowAppend, WriteOp, keeps_fences, one_write
from .rows import (
    SAVE_STEP_SQL,
    STEP_ROW_PLACEHOLDERS,
    attempt_row,
    load_journal,
    save_attempt,
    save_step,
    step_row,
)

# The scheduler's queries name their index: without statistics SQLite prefers
# instances_by_status for `status IN (...)` and then reads and sorts every queued and
# waiting instance (of a tenant, or of all) on each claim: 34 ms per claim with 100,000
# sleeping instances, against well under 0.1 ms through the partial indexes made for them.
RUNNING_BY_TENANT_SQL = (
    "SELECT tenant_id, COUNT(*) AS n FROM instances "
    "WHERE status IN ('running', 'waitingForPause') GROUP BY tenant_id")
DUE_TENANTS_SQL = (
    "SELECT tenant_id, limits FROM tenants t WHERE EXISTS (SELECT 1 FROM instances i "
    "INDEXED BY instances_due_by_tenant WHERE i.tenant_id = t.tenant_id "
    "AND i.status IN ('queued', 'waiting') AND i.wake_at_ms <= ?)")
DUE_FOR_TENANT_SQL = (
    "SELECT instance_id, workflow, module_sha256, params, created_at_ms, "
    "EXISTS (SELECT 1 FROM steps s WHERE s.tenant_id = i.tenant_id "
    "AND s.instance_id = i.instance_id) AS has_steps "
    "FROM instances i INDEXED BY instances_due_by_tenant "
    "WHERE tenant_id = ? AND status IN ('queued', 'waiting') AND wake_at_ms <= ? "
    "ORDER BY wake_at_ms LIMIT ?")
NEXT_WAKE_SQL = ("SELECT MIN(wake_at_ms) AS next FROM instances INDEXED BY instances_due "
                 "WHERE status IN ('queued', 'waiting')")
INSERT_INSTANCE_SQL = (
    "INSERT INTO instances (tenant_id, instance_id, workflow, module_sha256, params, status, "
    "wake_at_ms, parent_instance_id, created_at_ms, updated_at_ms) "
    "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)")


def insert_instance(conn: sqlite3.Connection, tenant_id: TenantId, new: NewInstance,
                    sha256: ModuleSha, now: int, parent: InstanceId | None = None) -> None:
    """Insert one queued instance; runs inside a writer op."""
    try:
        conn.execute(INSERT_INSTANCE_SQL, (tenant_id, new.instance_id, new.workflow, sha256,
                                           new.params, DUE_NOW, parent, now, now))
    except sqlite3.IntegrityError:
        raise DuplicateInstance(tenant_id, new.instance_id) from None


def insert_event(conn: sqlite3.Connection, tenant_id: TenantId, instance_id: str,
                 event_type: str, payload: bytes, now: int) -> None:
    """Buffer an event and wake its instance if it waits for it; inside a writer op."""
    row = conn.execute(
        "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ?",
        (tenant_id, instance_id)).fetchone()
    if row is None:
        raise UnknownInstance(tenant_id, instance_id)
    if Status(row["status"]).finished:
        raise InvalidState(f"instance {instance_id!r} is {row['status']}: it takes no "
                           "more events")
    conn.execute(
        "INSERT INTO events (tenant_id, instance_id, type, payload, sent_at_ms) "
        "VALUES (?, ?, ?, ?, ?)", (tenant_id, instance_id, event_type, payload, now))
    # Wake the instance now if it is blocked on exactly this type.
    conn.execute(
        "UPDATE instances SET wake_at_ms = ? WHERE tenant_id = ? AND instance_id = ? "
        "AND status = 'waiting' AND waiting_event_type = ?",
        (DUE_NOW, tenant_id, instance_id, event_type))


# -- claims -------------------------------------------------------------------------

class Scheduler:
    """Claims and recovery: which instances run next, taken fairly tenant by tenant."""

    def __init__(self, db: Database, clock: Clock, limits: LimitsParser,
                 worker_id: str) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.worker_id = worker_id

    async def take_over(self, worker_id: str) -> int:
        """Queue again what a dead worker process of this file's group was running."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ? "
                "WHERE status = 'running' AND owner = ?", (DUE_NOW, worker_id))
            taken = cursor.rowcount
            await conn.execute("UPDATE instances SET status = 'paused', run_id = NULL "
                               "WHERE status = 'waitingForPause' AND owner = ?", (worker_id,))
        return taken

    async def recover(self) -> int:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ? "
                "WHERE status = 'running'", (DUE_NOW,))
            recovered = cursor.rowcount
            await conn.execute("UPDATE instances SET status = 'paused', run_id = NULL "
                               "WHERE status = 'waitingForPause'")
        return recovered

    async def claim_due(self, limit: int) -> list[Claim]:
        now = self.clock.now_ms()

        @keeps_fences  # takes queued and waiting instances only
        def claim(conn: sqlite3.Connection) -> list[Claim]:
            queues = self._due_by_tenant(conn, now, limit)
            picked: list[tuple[TenantId, sqlite3.Row, TenantLimits]] = []
            while queues and len(picked) < limit:
                for queue in list(queues):
                    if len(picked) == limit:
                        break
                    picked.append(queue.popleft())
                    if not queue:
                        queues.remove(queue)
            epoch = getattr(conn, "epoch", None)
            journals = _read_journals(conn, [(tenant, row["instance_id"])
                                             for tenant, row, _ in picked if row["has_steps"]])
            claims = [Claim(tenant, InstanceId(row["instance_id"]), new_run_id(), epoch,
                            Prefetched(row["workflow"], ModuleSha(row["module_sha256"]),
                                       bytes(row["params"]), row["created_at_ms"], limits,
                                       journals.get((tenant, row["instance_id"]))
                                       if row["has_steps"] else []))
                      for tenant, row, limits in picked]
            conn.executemany(
                "UPDATE instances SET status = 'running', run_id = ?, owner = ?, "
                "wake_at_ms = NULL, waiting_event_type = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                [(c.run_id, self.worker_id, now, c.tenant_id, c.instance_id) for c in claims])
            return claims
        return await self.db.write(claim)

    def _due_by_tenant(self, conn: sqlite3.Connection, now: int, limit: int
                       ) -> list[collections.deque[tuple[TenantId, sqlite3.Row, TenantLimits]]]:
        running = {row["tenant_id"]: row["n"] for row in conn.execute(RUNNING_BY_TENANT_SQL)}
        queues = []
        for tenant in conn.execute(DUE_TENANTS_SQL, (now,)).fetchall():
            limits = self.limits.parse(tenant["limits"])
            tenant_id = TenantId(tenant["tenant_id"])
            room = min(limit, limits.max_concurrent_invocations - running.get(tenant_id, 0))
            if room <= 0:
                continue
            rows = conn.execute(DUE_FOR_TENANT_SQL, (tenant_id, now, room)).fetchall()
            queues.append(collections.deque((tenant_id, row, limits) for row in rows))
        return [queue for queue in queues if queue]

    def next_wake_ms(self) -> int | None:
        row = self.db.peek(NEXT_WAKE_SQL, ())  # one probe of the due index
        return row["next"] if row else None

    def load_run(self, claim: Claim) -> RunInputs | None:
        found = claim.prefetched
        if (found is not None and found.records is not None
                and claim.epoch == self.db.writer_epoch()):
            # Read with the claim, and nothing moved since: no read at all.
            return RunInputs(found.workflow, found.sha256, found.params, found.created_at_ms,
                             found.limits, found.records, False)

        def read(conn: sqlite3.Connection) -> RunInputs | None:
            row = conn.execute(
                "SELECT i.workflow, i.module_sha256, i.params, i.created_at_ms, i.status, "
                "t.limits "
                "FROM instances i LEFT JOIN tenants t ON t.tenant_id = i.tenant_id "
                "WHERE i.tenant_id = ? AND i.instance_id = ? AND i.run_id = ?",
                (claim.tenant_id, claim.instance_id, claim.run_id)).fetchone()
            if row is None:
                return None  # terminated or restarted since the claim
            return RunInputs(row["workflow"], ModuleSha(row["module_sha256"]),
                             bytes(row["params"]), row["created_at_ms"],
                             self.limits.parse(row["limits"]),
                             load_journal(conn, claim.tenant_id, claim.instance_id),
                             row["status"] == Status.WAITING_FOR_PAUSE.value)
        return self.db.read_blocking(read)


def _read_journals(conn: sqlite3.Connection, wanted: list[tuple[TenantId, str]]
                   ) -> dict[tuple[str, str], list[StepRecord]]:
    """The journals of `wanted` instances, within the claim's prefetch budget: one query
    per tenant (a row-value IN over (tenant, instance) pairs makes SQLite scan `steps`)."""
    by_tenant: dict[TenantId, list[str]] = {}
    for tenant, instance in wanted:
        by_tenant.setdefault(tenant, []).append(instance)

    def rows() -> Generator[tuple[Any, ...], None, None]:
        for tenant, instances in by_tenant.items():
            cursor = conn.cursor()
            cursor.row_factory = None
            yield from cursor.execute(
                f"SELECT tenant_id, instance_id, {', '.join(STEP_COLUMNS)} FROM steps "
                f"WHERE tenant_id = ? AND instance_id IN ({', '.join('?' * len(instances))}) "
                "ORDER BY tenant_id, instance_id, position", (tenant, *instances))
    with contextlib.closing(rows()) as found:  # a cut-short query is reset at once
        return prefetched_journals(found)


# -- one run's writes ------------------------------------------------------------------

class Fence(enum.Enum):
    """What a run's write found about its instance."""

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


class SqliteRun(RunWrites):
    """A run's writes through the group-commit writer.

    Its state is set on the writer thread (by the ops, and by `committed` after each
    COMMIT, before the next batch starts) and read by the run's thread between steps and
    by its settle op, which is queued after all of them.
    """

    __slots__ = ("_db", "_clock", "_checked_at")

    def __init__(self, claim: Claim, db: Database, clock: Clock) -> None:
        super().__init__(claim)
        self._db = db
        self._clock = clock
        # The writer epoch of the last fence read; the claim itself was one.
        self._checked_at: int | None = claim.epoch

    def guard(self, conn: sqlite3.Connection) -> bool:
        """Run first by every write of the run: whether it may write."""
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

    def append(self, records: list[StepRecord]) -> None:
        append = JournalAppend(self, records)
        self._db.enqueue(append, append.committed)

    async def append_now(self, records: list[StepRecord]) -> None:
        await self._db.write(JournalAppend(self, records))

    def append_attempt(self, record: StepRecord, attempt: AttemptRecord) -> None:
        claim = self.claim
        step = step_row(claim.tenant_id, claim.instance_id, record)
        tried = attempt_row(claim.tenant_id, claim.instance_id, attempt)

        @keeps_fences  # its own instance's journal
        def write(conn: sqlite3.Connection) -> None:
            if self.guard(conn):
                save_step(conn, step)
                save_attempt(conn, tried)
        # A failed step is rare: a write of its own (not one of the journal's multi-row
        # INSERTs) costs nothing that matters.
        self._db.enqueue(write, self.committed)

    def take_event(self, record: StepRecord, event_type: str) -> None:
        claim = self.claim

        @keeps_fences
        def take(conn: sqlite3.Connection) -> None:
            if not self.guard(conn):
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
            # The run's thread waits for this op, so the record is ours to change.
            take_event_into(record, event_type, bytes(event["payload"]), event["sent_at_ms"],
                            self._clock.now_ms())
            save_step(conn, step_row(claim.tenant_id, claim.instance_id, record))
        self._db.write_blocking(take)

    async def create_child(self, record: StepRecord, child: NewInstance,
                           sha256: ModuleSha) -> None:
        claim = self.claim

        def create(conn: sqlite3.Connection) -> dict[str, str]:
            insert_instance(conn, claim.tenant_id, child, sha256, self._clock.now_ms(),
                            parent=claim.instance_id)
            return {"id": child.instance_id}
        await self._journaled_binding(record, create)

    async def send_event(self, record: StepRecord, target: str, event_type: str,
                         payload: bytes) -> None:
        tenant_id = self.claim.tenant_id

        def send(conn: sqlite3.Connection) -> dict[str, str]:
            # The run's own tenant, always: a guest cannot name another tenant.
            insert_event(conn, tenant_id, target, event_type, payload, self._clock.now_ms())
            return {}
        await self._journaled_binding(record, send)

    async def _journaled_binding(self, record: StepRecord, act: WriteOp[Any]) -> None:
        """Do a guest binding's write and journal its outcome in the same commit."""
        claim = self.claim

        def write(conn: sqlite3.Connection) -> None:
            if not self.guard(conn):
                return
            try:
                result = act(conn)
            except DwfError as exc:
                record.settle_binding(None, exc, self._clock.now_ms())
            else:
                record.settle_binding(result, None, self._clock.now_ms())
            save_step(conn, step_row(claim.tenant_id, claim.instance_id, record))
        await self._db.write(write)

    def settle(self, outcome: Outcome, waiter: asyncio.Future[Settled | None]) -> None:
        self._db.queue_write(self._settle_op(outcome), waiter)

    async def settle_now(self, outcome: Outcome) -> Settled | None:
        return await self._db.write(self._settle_op(outcome))

    def _settle_op(self, outcome: Outcome) -> WriteOp[Settled | None]:
        """Record the outcome, in a write queued behind every journal write of the run."""
        claim = self.claim
        now = self._clock.now_ms()

        @keeps_fences  # changes its own instance, whose run ends here
        @one_write
        def settle(conn: sqlite3.Connection) -> Settled | None:
            final = outcome
            if self.failure is not None:  # the journal on disk stops short of the run
                final = after_failed_write(self.failure)
            ours = (claim.tenant_id, claim.instance_id, claim.run_id)
            # Finished: whatever was asked meanwhile (a pause), the run's end stands.
            if isinstance(final, Completed):
                done = conn.execute(
                    "UPDATE instances SET status = 'complete', output = ?, run_id = NULL, "
                    "finished_at_ms = ?, updated_at_ms = ? WHERE tenant_id = ? AND "
                    "instance_id = ? AND run_id = ?", (final.output, now, now, *ours))
                return Settled(Status.COMPLETE, final) if done.rowcount else None
            if isinstance(final, Failed):
                done = conn.execute(
                    "UPDATE instances SET status = 'errored', error_name = ?, "
                    "error_message = ?, run_id = NULL, finished_at_ms = ?, updated_at_ms = ? "
                    "WHERE tenant_id = ? AND instance_id = ? AND run_id = ?",
                    (final.name, final.message, now, now, *ours))
                return Settled(Status.ERRORED, final) if done.rowcount else None
            row = conn.execute(
                "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ? "
                "AND run_id = ?", ours).fetchone()
            if row is None:
                return None
            pause_requested = row["status"] == Status.WAITING_FOR_PAUSE.value
            where = (claim.tenant_id, claim.instance_id)
            if isinstance(final, Interrupted) and not pause_requested:
                # Back to the queue: it runs again from its journal.
                conn.execute(
                    "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ?, "
                    "updated_at_ms = ? WHERE tenant_id = ? AND instance_id = ?",
                    (DUE_NOW, now, *where))
                return Settled(Status.QUEUED, final)
            if (pause_requested or isinstance(final, Interrupted)
                    or final.reason is SuspendReason.PAUSE):
                # Keep the wake time: resume re-queues it and replay re-checks timers.
                conn.execute(
                    "UPDATE instances SET status = 'paused', run_id = NULL, updated_at_ms = ? "
                    "WHERE tenant_id = ? AND instance_id = ?", (now, *where))
                return Settled(Status.PAUSED, final)
            wake_at = final.wake_at_ms if final.wake_at_ms is not None else DUE_NOW
            if final.waiting_event_type is not None and _has_event(
                    conn, claim, final.waiting_event_type):
                wake_at = DUE_NOW  # the event arrived while we were suspending
            conn.execute(
                "UPDATE instances SET status = 'waiting', wake_at_ms = ?, "
                "waiting_event_type = ?, run_id = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (wake_at, final.waiting_event_type, now, *where))
            return Settled(Status.WAITING, final, wake_at)

        return settle


def _has_event(conn: sqlite3.Connection, claim: Claim, event_type: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM events WHERE tenant_id = ? AND instance_id = ? AND type = ? "
        "AND consumed_position IS NULL LIMIT 1",
        (claim.tenant_id, claim.instance_id, event_type)).fetchone() is not None


class JournalAppend(RowAppend):
    """Journal positions of a run, as the records are now, fenced by the run."""

    __slots__ = ("run", "steps")
    insert_sql = SAVE_STEP_SQL
    placeholders = STEP_ROW_PLACEHOLDERS

    def __init__(self, run: SqliteRun, records: list[StepRecord]) -> None:
        self.run = run
        claim = run.claim
        self.steps = [step_row(claim.tenant_id, claim.instance_id, record)
                      for record in records]

    def rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return self.steps if self.run.guard(conn) else []

    def failed(self, exc: BaseException) -> None:
        if self.run.failure is None:  # stop the run's later writes
            self.run.failure = exc

    def committed(self, ok: bool, value: Any) -> None:
        """Its `WriteDone`: the run counts rows, so a batch weighs what its steps do."""
        self.run.committed(ok, value, len(self.steps))
