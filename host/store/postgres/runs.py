"""Runs on PostgreSQL: claims, leases and takeover, loading a run, its fenced writes.

Many workers, on many hosts, share one database:
- A claim locks the tenants it claims for (`FOR NO KEY UPDATE`, in key order: a worker
  claiming for the same tenant waits for it), then counts their running instances and
  takes due ones (`FOR NO KEY UPDATE SKIP LOCKED`) in a statement of its own, so two
  workers never take the same instance, and a tenant's running count
  (`max_concurrent_invocations`) holds across all of them. It is one call of the
  server-side function `dwf_claim` (migration 0006), a transaction of its own, not a write
  of the group-commit writer: the tenant rows it locks are held while the server runs it,
  not for a whole batch of other runs' writes and its fsync, nor while a busy worker
  process gets round to its next statement (another process's claims, and with them its
  whole batch, waited that long); and its COMMIT does not wait for the disk.
- Each claimed instance records its run (`run_id`, the fencing token) and its worker
  (`owner`). A worker renews its lease (`workers.lease_until_ms`, on the database's clock)
  while it lives. Any worker requeues the instances of a worker whose lease ran out or
  whose connections are gone (killed: its sessions end at once) - the takeover.
- Every write of a run locks its instance row and checks the fence first, in the writer's
  transaction (`database.Fenced`): after a takeover, the old run's writes change nothing,
  it learns it lost the instance (`RunWrites.lost`) and steps back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from typing import Any

import asyncpg
import structlog

from ...core.clock import Clock
from ...core.errors import (
    DwfError,
    InvalidState,
    StorageUnavailable,
    UnknownInstance,
)
from ...core.ids import InstanceId, ModuleSha, TenantId, new_run_id
from ...core.limits import LimitsParser, TenantLimits
from ...core.model import ATTEMPTS_KEPT, DUE_NOW, AttemptRecord, Status, StepRecord
from ...core.outcomes import Completed, Failed, Interrupted, Outcome, SuspendReason
from .. import rows as shared_rows
from ..interface import EarlierWriteFailed, RunWrites, after_failed_write
from ..records import Claim, NewInstance, Prefetched, RunInputs, Settled
from ..rows import (
    ATTEMPT_COLUMNS,
    STEP_COLUMNS,
    STEP_ROW_COLUMNS,
    attempt_row,
    prefetched_journals,
    record_from_values,
    step_row,
    take_event_into,
)
from .creations import insert_instances
from .database import (
    DUE_CHANNEL,
    Batch,
    Connection,
    Database,
    Fenced,
    Merged,
    RowAppend,
    WriteOp,
    columns,
)
from .faults import translated

log = structlog.get_logger("dwf.postgres")

DB_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
"""Leases are judged by the database's clock: hosts' clocks may disagree."""

_STEP_TYPES = ("text", "text", "integer", "text", "text", "integer", "text", "bytea", "text",
               "text", "integer", "bigint", "bigint", "bigint")
INSERT_STEPS_SQL = (
    f"INSERT INTO steps ({', '.join(STEP_ROW_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_STEP_TYPES, 1))
    + ") ON CONFLICT (tenant_id, instance_id, position) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in STEP_ROW_COLUMNS[3:]))
"""Journal rows of any number of runs in one statement (a position written again, a
pending step that finished, replaces the row)."""

CLAIM_SQL = "SELECT * FROM dwf_claim($1, $2, $3, $4, $5)"
"""Lock the tenants with due work, then take due instances of each under its cap, in
turn, and mark them running: one statement, in a transaction of its own that does not
wait for the disk (migration 0006 says how and why)."""

PREFETCH_JOURNALS_SQL = f"""
SELECT tenant_id, instance_id, {', '.join(STEP_COLUMNS)} FROM (
    SELECT j.*, sum(coalesce(octet_length(j.result), 0)) OVER (
        ORDER BY j.tenant_id, j.instance_id, j.position ROWS UNBOUNDED PRECEDING)
        - coalesce(octet_length(j.result), 0) AS bytes_before
    FROM (SELECT s.* FROM steps s
          WHERE (s.tenant_id, s.instance_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
          ORDER BY s.tenant_id, s.instance_id, s.position LIMIT $3) j) k
WHERE bytes_before <= $4
ORDER BY tenant_id, instance_id, position
"""
"""The journals of the instances a claim took, in one statement, up to the prefetch
budget: the rows within it and the first past it (by which `prefetched_journals` knows
to leave that instance out). Read right after the claim: a control action since moves
the epoch taken before it, as for the rest of what the claim read."""

# A worker is gone when its lease ran out (paused, partitioned, or its renewals fail) or
# when none of its sessions is left (killed: the server closes them at once). Every
# worker's connections carry its id as application_name.
TAKEOVER_SQL = f"""
WITH lapsed AS (
    SELECT i.tenant_id, i.instance_id, i.status FROM instances i
    WHERE i.status IN ('running', 'waitingForPause')
    AND (i.owner IS NOT DISTINCT FROM $2 OR NOT EXISTS (
        SELECT 1 FROM workers w WHERE w.worker_id = i.owner
        AND w.lease_until_ms >= {DB_NOW_MS}
        AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = w.worker_id)))
    FOR NO KEY UPDATE OF i SKIP LOCKED)
UPDATE instances i
SET status = CASE WHEN l.status = 'running' THEN 'queued' ELSE 'paused' END,
    wake_at_ms = CASE WHEN l.status = 'running' THEN {DUE_NOW} ELSE i.wake_at_ms END,
    run_id = NULL, owner = NULL, updated_at_ms = $1
FROM lapsed l WHERE i.tenant_id = l.tenant_id AND i.instance_id = l.instance_id
RETURNING l.status
"""

RENEW_SQL = f"""
WITH before AS (SELECT lease_until_ms FROM workers WHERE worker_id = $1 FOR UPDATE)
UPDATE workers w SET lease_until_ms = {DB_NOW_MS} + $2 FROM before
WHERE w.worker_id = $1 RETURNING before.lease_until_ms < {DB_NOW_MS} AS lapsed
"""

REGISTER_SQL = (
    f"INSERT INTO workers (worker_id, started_at_ms, lease_until_ms) VALUES "
    f"($1, {DB_NOW_MS}, {DB_NOW_MS} + $2) ON CONFLICT (worker_id) DO UPDATE "
    "SET lease_until_ms = excluded.lease_until_ms")

FORGET_DEAD_WORKERS_SQL = (
    f"DELETE FROM workers w WHERE w.lease_until_ms < {DB_NOW_MS} - 3600000 "
    "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.owner = w.worker_id "
    "AND i.status IN ('running', 'waitingForPause'))")

SAVE_ATTEMPT_SQL = (
    f"INSERT INTO step_attempts (tenant_id, instance_id, {', '.join(ATTEMPT_COLUMNS)}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (tenant_id, instance_id, position, attempt) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in ATTEMPT_COLUMNS[2:]))
"""One kept attempt of a step (an `attempt_row`), replacing one written before."""

def new_worker_id() -> str:
    """host:pid:random: unique among every worker sharing a database."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


async def insert_event(batch: Batch, tenant_id: TenantId, instance_id: str, event_type: str,
                       payload: bytes, now: int) -> None:
    """Buffer an event and wake its instance if it waits for it."""
    status = await batch.conn.fetchval(
        "SELECT status FROM instances WHERE tenant_id = $1 AND instance_id = $2",
        tenant_id, instance_id)
    if status is None:
        raise UnknownInstance(tenant_id, instance_id)
    if Status(status).finished:
        raise InvalidState(f"instance {instance_id!r} is {status}: it takes no more events")
    woken = await batch.conn.fetchval(
        "WITH sent AS (INSERT INTO events (tenant_id, instance_id, type, payload, sent_at_ms) "
        "VALUES ($1, $2, $3, $4, $5)) "
        f"UPDATE instances SET wake_at_ms = {DUE_NOW} WHERE tenant_id = $1 AND "
        "instance_id = $2 AND status = 'waiting' AND waiting_event_type = $3 RETURNING 1",
        tenant_id, instance_id, event_type, payload, now)
    if woken:
        batch.notify = True


class Scheduler:
    """Claims, leases and takeover: which instances this worker runs next."""

    def __init__(self, db: Database, clock: Clock, limits: LimitsParser,
                 lease_ms: int) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.worker_id = db.worker_id
        self.lease_ms = lease_ms
        self._heartbeat: asyncio.Task[None] | None = None
        self._registering = asyncio.Lock()
        self._registered = asyncio.Event()

    # -- leases ------------------------------------------------------------------------

    async def hold_lease(self) -> None:
        """Register this worker and keep renewing its lease (and taking over lapsed ones)
        until `release`."""
        if self._registered.is_set():
            return
        async with self._registering:  # claims made at once register it once
            if self._registered.is_set():
                return
            await self.db.execute(REGISTER_SQL, self.worker_id, self.lease_ms)
            with translated():
                await self.db.watch_moves()
            self._heartbeat = asyncio.create_task(self._beat(), name="dwf-lease")
            self._registered.set()
        log.info("worker.lease", worker=self.worker_id, lease_ms=self.lease_ms)

    async def release(self) -> None:
        if self._heartbeat is None:
            return
        self._heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeat
        self._heartbeat = None
        self._registered.clear()
        with contextlib.suppress(StorageUnavailable, asyncpg.PostgresError):
            await self.db.execute("DELETE FROM workers WHERE worker_id = $1", self.worker_id)

    async def _beat(self) -> None:
        """Renew, then take over what lapsed, every quarter lease (at least every second)."""
        period = min(1.0, self.lease_ms / 4000)
        while True:
            await asyncio.sleep(period)
            try:
                await self._renew()
                await self.take_over()
            except (StorageUnavailable, asyncpg.PostgresError) as exc:
                log.warning("worker.lease_renewal_failed", error=repr(exc))

    async def _renew(self) -> None:
        lapsed = await self.db.fetchval(RENEW_SQL, self.worker_id, self.lease_ms)
        if lapsed is None:  # forgotten: a long pause
            await self.db.execute(REGISTER_SQL, self.worker_id, self.lease_ms)
        if lapsed is None or lapsed:
            # Its instances may have been taken over meanwhile: their runs' writes are
            # refused by the fence, so each of them steps back at its next write.
            log.warning("worker.lease_lapsed", worker=self.worker_id)

    async def take_over(self, *, starting: bool = False, gone: str | None = None) -> int:
        """Queue again the instances of workers that are gone (and of `gone`, known to be,
        or, `starting`, this worker's own, left by its earlier life); returns how many were
        running (those waiting for a pause are paused)."""
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            taken = await conn.fetch(TAKEOVER_SQL, now, self.worker_id if starting else gone)
            running = sum(1 for row in taken if row[0] == Status.RUNNING.value)
            if running:
                await conn.execute(f"NOTIFY {DUE_CHANNEL}")
            await conn.execute(FORGET_DEAD_WORKERS_SQL)
        if taken:
            log.info("worker.took_over", instances=len(taken), worker=self.worker_id)
        return running

    # -- claims ------------------------------------------------------------------------

    async def recover(self) -> int:
        await self.hold_lease()
        return await self.take_over(starting=True)

    async def claim_due(self, limit: int) -> list[Claim]:
        await self.hold_lease()
        epoch = self.db.epoch  # before the claim: a control action after it moves it
        rows = await self.db.fetchall(
            CLAIM_SQL, self.clock.now_ms(), limit,
            self.limits.defaults.max_concurrent_invocations, self.worker_id,
            [new_run_id() for _ in range(limit)])
        with_steps = [row for row in rows if row["has_steps"]]
        journals = prefetched_journals(tuple(found) for found in await self.db.fetchall(
            PREFETCH_JOURNALS_SQL, [row["tenant_id"] for row in with_steps],
            [row["instance_id"] for row in with_steps], shared_rows.PREFETCH_MOST_ROWS + 1,
            shared_rows.PREFETCH_MOST_BYTES)) if with_steps else {}
        limits: dict[str, TenantLimits] = {}
        claims = []
        for row in rows:
            tenant = row["tenant_id"]
            if tenant not in limits:
                limits[tenant] = self.limits.parse(row["limits"])
            claims.append(Claim(TenantId(tenant), InstanceId(row["instance_id"]),
                                row["run_id"], epoch,
                                Prefetched(row["workflow"], ModuleSha(row["module_sha256"]),
                                           row["params"], row["created_at_ms"],
                                           limits[tenant],
                                           journals.get((tenant, row["instance_id"]))
                                           if row["has_steps"] else [])))
        return claims

    async def next_wake_ms(self) -> int | None:
        value = await self.db.fetchval(
            "SELECT min(wake_at_ms) FROM instances WHERE status IN ('queued', 'waiting')")
        return int(value) if value is not None else None

    def load_run(self, claim: Claim) -> RunInputs | None:
        found = claim.prefetched
        if (found is not None and found.records is not None
                and claim.epoch == self.db.epoch):
            # Read with the claim, and no control action since (as far as their NOTIFYs
            # have arrived; the run's first write checks the fence anyway).
            return RunInputs(found.workflow, found.sha256, found.params, found.created_at_ms,
                             found.limits, found.records, False)
        return self.db.blocking(self._load_run(claim))

    async def _load_run(self, claim: Claim) -> RunInputs | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT i.workflow, i.module_sha256, i.params, i.created_at_ms, i.status, "
                "t.limits FROM instances i LEFT JOIN tenants t ON t.tenant_id = i.tenant_id "
                "WHERE i.tenant_id = $1 AND i.instance_id = $2 AND i.run_id = $3",
                claim.tenant_id, claim.instance_id, claim.run_id)
            if row is None:
                return None  # terminated, restarted or taken over since the claim
            records = await load_journal(conn, claim.tenant_id, claim.instance_id)
        return RunInputs(row["workflow"], ModuleSha(row["module_sha256"]), row["params"],
                         row["created_at_ms"], self.limits.parse(row["limits"]), records,
                         row["status"] == Status.WAITING_FOR_PAUSE.value)


async def load_journal(conn: Connection, tenant_id: TenantId,
                       instance_id: str) -> list[StepRecord]:
    rows = await conn.fetch(
        f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE tenant_id = $1 AND "
        "instance_id = $2 ORDER BY position", tenant_id, instance_id)
    return [record_from_values(tuple(row)) for row in rows]


# -- one run's writes ----------------------------------------------------------------------

class RunOp(Fenced):
    """A write of a run that is not journal rows alone (an event taken, a binding, settling)."""

    __slots__ = ("fence_key", "_act")

    def __init__(self, claim: Claim, act: WriteOp[Any]) -> None:
        self.fence_key = (claim.tenant_id, claim.instance_id)
        self._act = act

    def __call__(self, batch: Batch) -> Any:
        return self._act(batch)


class PostgresRun(RunWrites):
    """A run's writes through the group-commit writer, each fenced by the claim's run_id
    (read under a row lock in the writer's transaction)."""

    __slots__ = ("_db", "_clock")

    def __init__(self, claim: Claim, db: Database, clock: Clock) -> None:
        super().__init__(claim)
        self._db = db
        self._clock = clock

    def guard(self, batch: Batch) -> bool:
        """Run first by every write of the run: whether it may write."""
        if self.failure is not None:
            raise EarlierWriteFailed(
                f"an earlier journal write failed: {self.failure!r}") from self.failure
        claim = self.claim
        fence = batch.fences.get((claim.tenant_id, claim.instance_id))
        if fence is None or fence[0] != claim.run_id:
            self.lost = True
            return False
        if fence[1] == Status.WAITING_FOR_PAUSE.value:
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

        async def write(batch: Batch) -> None:
            if self.guard(batch):
                await _save_steps(batch, [step])
                await batch.conn.execute(SAVE_ATTEMPT_SQL, *tried)
                if attempt.attempt > ATTEMPTS_KEPT:
                    await batch.conn.execute(
                        "DELETE FROM step_attempts WHERE tenant_id = $1 AND instance_id = $2 "
                        "AND position = $3 AND attempt <= $4",
                        *tried[:3], attempt.attempt - ATTEMPTS_KEPT)
        # A failed step is rare: a write of its own (not one of the journal's merged
        # INSERTs) costs nothing that matters.
        self._db.enqueue(RunOp(claim, write), self.committed)

    def take_event(self, record: StepRecord, event_type: str) -> None:
        claim = self.claim

        async def take(batch: Batch) -> None:
            if not self.guard(batch):
                return
            event = await batch.conn.fetchrow(
                "UPDATE events SET consumed_position = $4 WHERE seq = (SELECT seq FROM "
                "events WHERE tenant_id = $1 AND instance_id = $2 AND type = $3 AND "
                "consumed_position IS NULL ORDER BY seq LIMIT 1) "
                "RETURNING payload, sent_at_ms",
                claim.tenant_id, claim.instance_id, event_type, record.position)
            if event is None:
                return
            # The run's thread waits for this op, so the record is ours to change.
            take_event_into(record, event_type, event["payload"], event["sent_at_ms"],
                            self._clock.now_ms())
            await _save_steps(batch, [step_row(claim.tenant_id, claim.instance_id, record)])
        self._db.write_blocking(RunOp(claim, take))

    async def create_child(self, record: StepRecord, child: NewInstance,
                           sha256: ModuleSha) -> None:
        claim = self.claim

        async def create(batch: Batch) -> dict[str, str]:
            await insert_instances(batch, claim.tenant_id, [child], sha256,
                                   self._clock.now_ms(), parent=claim.instance_id)
            return {"id": child.instance_id}
        await self._journaled_binding(record, create)

    async def send_event(self, record: StepRecord, target: str, event_type: str,
                         payload: bytes) -> None:
        tenant_id = self.claim.tenant_id

        async def send(batch: Batch) -> dict[str, str]:
            # The run's own tenant, always: a guest cannot name another tenant.
            await insert_event(batch, tenant_id, target, event_type, payload,
                               self._clock.now_ms())
            return {}
        await self._journaled_binding(record, send)

    async def _journaled_binding(self, record: StepRecord, act: WriteOp[Any]) -> None:
        """Do a guest binding's write and journal its outcome in the same commit."""
        claim = self.claim

        async def write(batch: Batch) -> None:
            if not self.guard(batch):
                return
            try:
                result = await act(batch)  # raises DwfError only having written nothing
            except DwfError as exc:
                record.settle_binding(None, exc, self._clock.now_ms())
            else:
                record.settle_binding(result, None, self._clock.now_ms())
            await _save_steps(batch, [step_row(claim.tenant_id, claim.instance_id, record)])
        await self._db.write(RunOp(claim, write))

    def settle(self, outcome: Outcome, waiter: asyncio.Future[Settled | None]) -> None:
        self._db.queue_write(Settle(self, outcome, self._clock.now_ms()), waiter)

    async def settle_now(self, outcome: Outcome) -> Settled | None:
        result: Settled | None = await self._db.write(
            Settle(self, outcome, self._clock.now_ms()))
        return result


SETTLE_SQL = f"""
UPDATE instances i SET status = s.status,
    output = CASE WHEN s.status = 'complete' THEN s.output ELSE i.output END,
    error_name = CASE WHEN s.status = 'errored' THEN s.error_name ELSE i.error_name END,
    error_message = CASE WHEN s.status = 'errored' THEN s.error_message
                    ELSE i.error_message END,
    finished_at_ms = CASE WHEN s.status IN ('complete', 'errored') THEN s.now
                     ELSE i.finished_at_ms END,
    wake_at_ms = CASE
        WHEN s.status <> 'waiting' THEN COALESCE(s.wake_at, i.wake_at_ms)
        WHEN s.event_type IS NOT NULL AND EXISTS (
            SELECT 1 FROM events e WHERE e.tenant_id = i.tenant_id
            AND e.instance_id = i.instance_id AND e.type = s.event_type
            AND e.consumed_position IS NULL) THEN {DUE_NOW}
        ELSE s.wake_at END,
    waiting_event_type = CASE WHEN s.status = 'waiting' THEN s.event_type
                         ELSE i.waiting_event_type END,
    run_id = NULL, owner = NULL, updated_at_ms = s.now
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::bigint[])
     AS s (tenant_id, instance_id, status, output, error_name, error_message, wake_at,
           event_type, now)
WHERE i.tenant_id = s.tenant_id AND i.instance_id = s.instance_id
RETURNING i.tenant_id, i.instance_id, i.wake_at_ms
"""
"""The outcomes of any number of runs recorded in one statement: a finished run keeps its
end whatever was asked meanwhile; one interrupted goes back to the queue (it runs again
from its journal); one paused keeps its wake time (resume re-queues it, replay re-checks
timers); one waiting for an event that arrived while it was suspending is due at once."""


class Settle(Fenced, Merged):
    """A run's outcome recorded on its instance, queued behind every journal write of the
    run; the settles of a stretch are one `SETTLE_SQL`."""

    __slots__ = ("run", "outcome", "now", "fence_key", "_status")
    merge_order = 1

    def __init__(self, run: PostgresRun, outcome: Outcome, now: int) -> None:
        self.run = run
        self.outcome = outcome
        self.now = now
        claim = run.claim
        self.fence_key = (claim.tenant_id, claim.instance_id)
        self._status: Status | None = None

    def row(self, batch: Batch) -> tuple[Any, ...] | None:
        """Its row of `SETTLE_SQL`'s arrays; None if the run lost its instance."""
        run = self.run
        self._status = None
        if run.failure is not None:  # the journal on disk stops short of the run
            self.outcome = after_failed_write(run.failure)
        fence = batch.fences.get(self.fence_key)
        if fence is None or fence[0] != run.claim.run_id:
            run.lost = True
            return None
        final = self.outcome
        output = error_name = error_message = wake_at = event_type = None
        if isinstance(final, Completed):
            status, output = Status.COMPLETE, final.output
        elif isinstance(final, Failed):
            status, error_name, error_message = Status.ERRORED, final.name, final.message
        elif isinstance(final, Interrupted) and fence[1] != Status.WAITING_FOR_PAUSE.value:
            status, wake_at = Status.QUEUED, DUE_NOW
        elif (fence[1] == Status.WAITING_FOR_PAUSE.value or isinstance(final, Interrupted)
              or final.reason is SuspendReason.PAUSE):
            status = Status.PAUSED
        else:
            status = Status.WAITING
            wake_at = final.wake_at_ms if final.wake_at_ms is not None else DUE_NOW
            event_type = final.waiting_event_type
        self._status = status
        return (*self.fence_key, status.value, output, error_name, error_message, wake_at,
                event_type, self.now)

    def settled(self, batch: Batch, wake_at: int | None) -> Settled | None:
        """What it did, given the instance's wake time after `SETTLE_SQL`."""
        status = self._status
        if status is None:
            return None
        if status is Status.WAITING:
            assert wake_at is not None
            if wake_at <= self.now:
                batch.notify = True
            return Settled(status, self.outcome, wake_at)
        if status is Status.QUEUED:
            batch.notify = True
        return Settled(status, self.outcome)

    @classmethod
    async def run_merged(cls, batch: Batch, ops: list[Any]) -> list[tuple[bool, Any]]:
        rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        for op in ops:
            row = op.row(batch)
            if row is not None:
                rows[op.fence_key] = row  # settled twice in a batch: the later stands
        wakes: dict[tuple[str, str], int | None] = {}
        if rows:
            for found in await batch.conn.fetch(SETTLE_SQL, *columns(list(rows.values()))):
                wakes[(found[0], found[1])] = found[2]
        return [(True, op.settled(batch, wakes.get(op.fence_key))) for op in ops]


async def _save_steps(batch: Batch, rows: list[tuple[Any, ...]]) -> None:
    await batch.conn.execute(INSERT_STEPS_SQL, *columns(rows))


class JournalAppend(RowAppend):
    """Journal positions of a run, as the records are now, fenced by the run."""

    __slots__ = ("run", "steps", "fence_key")
    insert_sql = INSERT_STEPS_SQL

    def __init__(self, run: PostgresRun, records: list[StepRecord]) -> None:
        self.run = run
        claim = run.claim
        self.fence_key = (claim.tenant_id, claim.instance_id)
        self.steps = [step_row(claim.tenant_id, claim.instance_id, record)
                      for record in records]

    def rows(self, batch: Batch) -> list[tuple[Any, ...]]:
        return self.steps if self.run.guard(batch) else []

    def committed(self, ok: bool, value: Any) -> None:
        """Its `WriteDone`: the run counts rows, so a batch weighs what its steps do."""
        self.run.committed(ok, value, len(self.steps))
