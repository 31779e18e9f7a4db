"""The durable engine: runs instances by replaying their journal in the right module.

Invocations run on pool threads; their journal writes go to the database's group-commit
writer in order (`invocation.InvocationWriter`), and an instance is settled only by a
write queued behind them all, so nothing it did is seen before it is durable.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from . import abi, codec, step_batch
from .clock import Clock, SystemClock
from .database import Database, WriteOp, keeps_fences, one_write
from .errors import DwfError, GuestErrorName, InvalidInput, UnknownWorkflow
from .ids import InstanceId, ModuleSha, TenantId, instance_id, new_instance_id, new_run_id
from .instances import InstanceStore, Status, load_journal, record_from_row, save_step, step_row
from .invocation import Claim, InvocationWriter, JournalAppend, Prefetched, WriteChain
from .journal import Aborted, ReplayJournal, StepRecord, StepState, SuspendReason
from .limits import TenantLimits
from .pool import IsolatePool, ModuleStub, PoolConfig
from .registry import ModuleRegistry
from .sandbox import Completed, Failed, Outcome, Suspended

log = structlog.get_logger("dwf.engine")


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


@dataclass(frozen=True, slots=True)
class _Loaded:
    """An invocation's inputs, read in one go on its pool thread."""

    workflow: str
    sha256: ModuleSha
    event: bytes
    limits: TenantLimits
    records: list[StepRecord]
    pause_requested: bool


class _Run(enum.Enum):
    """How an invocation's run ended, on its pool thread."""

    SETTLING = "settling"  # the write recording its outcome is queued
    ABORTED = "aborted"  # terminated or restarted under the run: nothing to record
    NOT_CACHED = "not cached"  # not run: its module must be loaded first


@dataclass(frozen=True, slots=True)
class _Change:
    """What settling an invocation did to its instance (None where the instance was
    terminated or restarted under the invocation: it did nothing)."""

    status: Status
    outcome: Outcome  # as recorded: a failed journal turns any outcome into HostError
    wake_at_ms: int | None = None


class DurableEngine:
    def __init__(self, db: Database, pool: IsolatePool, clock: Clock,
                 default_limits: TenantLimits = TenantLimits()) -> None:
        self.db = db
        self.pool = pool
        self.clock = clock
        self.registry = ModuleRegistry(db, pool, clock, default_limits)
        self.due = asyncio.Event()
        self.instances = InstanceStore(db, self.registry, clock, on_due=self.due.set)
        self._settled: dict[tuple[str, str], list[asyncio.Future[Status | None]]] = {}

    @classmethod
    async def open(cls, db_path: str | Path, *, clock: Clock | None = None,
                   pool_config: PoolConfig = PoolConfig(),
                   default_limits: TenantLimits = TenantLimits(),
                   synchronous: str = "NORMAL") -> DurableEngine:
        db_path = Path(db_path)
        db = await Database.open(db_path, synchronous=synchronous)
        pool = IsolatePool(db_path.parent / f"{db_path.name}.artifacts", pool_config)
        return cls(db, pool, clock or SystemClock(), default_limits)

    async def close(self) -> None:
        self.pool.close()
        await self.db.close()

    def tenant(self, tenant_id: TenantId) -> Any:
        from .binding import TenantBinding  # binding imports engine for typing only
        return TenantBinding(self, tenant_id)

    # -- scheduling --------------------------------------------------------------

    async def recover(self) -> int:
        """After a crash: instances left running go back to the queue (replay is safe)."""
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ? "
                "WHERE status = 'running'", (now,))
            recovered = cursor.rowcount
            await conn.execute("UPDATE instances SET status = 'paused', run_id = NULL "
                               "WHERE status = 'waitingForPause'")
        if recovered:
            log.info("engine.recovered", instances=recovered)
        return recovered

    async def claim_due(self, limit: int) -> list[Claim]:
        """Claim up to `limit` due instances, taking tenants in turn.

        Each tenant gets at most `max_concurrent_invocations` running at once, so a tenant
        with a flood of due work cannot starve the others of sandbox threads.
        """
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
            claims = [Claim(tenant, InstanceId(row["instance_id"]), new_run_id(), epoch,
                            Prefetched(row["workflow"], ModuleSha(row["module_sha256"]),
                                       bytes(row["params"]), row["created_at_ms"], limits,
                                       bool(row["has_steps"])))
                      for tenant, row, limits in picked]
            conn.executemany(
                "UPDATE instances SET status = 'running', run_id = ?, wake_at_ms = NULL, "
                "waiting_event_type = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                [(c.run_id, now, c.tenant_id, c.instance_id) for c in claims])
            return claims
        return await self.db.write(claim)

    def _due_by_tenant(self, conn: sqlite3.Connection, now: int, limit: int
                       ) -> list[collections.deque[tuple[TenantId, sqlite3.Row, TenantLimits]]]:
        running = {row["tenant_id"]: row["n"] for row in conn.execute(RUNNING_BY_TENANT_SQL)}
        queues = []
        for tenant in conn.execute(DUE_TENANTS_SQL, (now,)).fetchall():
            limits = self.registry.limits_from(tenant)
            tenant_id = TenantId(tenant["tenant_id"])
            room = min(limit, limits.max_concurrent_invocations - running.get(tenant_id, 0))
            if room <= 0:
                continue
            rows = conn.execute(DUE_FOR_TENANT_SQL, (tenant_id, now, room)).fetchall()
            queues.append(collections.deque((tenant_id, row, limits) for row in rows))
        return [queue for queue in queues if queue]

    async def next_wake_ms(self) -> int | None:
        row = self.db.peek(NEXT_WAKE_SQL, ())  # one probe of the due index
        return row["next"] if row else None

    async def run_due(self, limit: int = 64) -> int:
        """Run every instance due now, once each, concurrently; returns how many ran."""
        claims = await self.claim_due(limit)
        await asyncio.gather(*(self.run_claimed(claim) for claim in claims))
        return len(claims)

    async def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Run due instances until none is due at the clock's current time (for tests)."""
        for _ in range(max_rounds):
            if not await self.run_due():
                return
        raise RuntimeError("instances kept becoming due: is a workflow looping?")

    # -- one invocation ----------------------------------------------------------

    async def run_claimed(self, claim: Claim) -> None:
        logger = log.bind(tenant_id=claim.tenant_id, instance_id=claim.instance_id)
        loop = asyncio.get_running_loop()
        chain = WriteChain(claim)
        settled: asyncio.Future[_Change | None] = loop.create_future()

        def on_thread() -> tuple[_Loaded, _Run] | None:
            # On a pool thread: when the module is in memory (the common case) the reads,
            # the run and queueing the settling cost one hop from the event loop.
            loaded = self._prefetched(claim) or self._load(claim)
            if loaded is None:
                return None  # terminated or restarted since the claim
            stub = self.pool.cached(claim.tenant_id, loaded.sha256)
            if stub is None:
                return loaded, _Run.NOT_CACHED
            return loaded, self._run_and_settle(chain, loaded, stub, loop, logger, settled)

        try:
            found = await self.pool.call_in_turn(on_thread)
            if found is None:
                return
            loaded, run = found
            logger = logger.bind(workflow=loaded.workflow)
            if run is _Run.NOT_CACHED:
                run = await self._run_uncached(chain, loaded, loop, logger, settled)
            if run is _Run.ABORTED:
                return
            change = await settled
        except Exception as exc:  # a host bug must not take the worker down
            outcome = _host_error(exc, logger)
            change = await self.db.write(self._settle_op(chain, outcome))
        _log_settled(change, logger)
        if change is not None:
            self._announce(claim, change)

    def _prefetched(self, claim: Claim) -> _Loaded | None:
        """An instance's inputs as its claim read them, if they are still true and
        complete (a new instance, nothing moved since the claim): no read at all."""
        found = claim.prefetched
        if found is None or found.has_steps or claim.epoch != self.db.writer_epoch():
            return None
        event = invocation_event(claim, found.workflow, found.params, found.created_at_ms,
                                 [], False, found.limits)
        return _Loaded(found.workflow, found.sha256, event, found.limits, [], False)

    def _load(self, claim: Claim) -> _Loaded | None:
        """Everything an invocation needs from the database (on a pool thread)."""
        def read(conn: sqlite3.Connection) -> _Loaded | None:
            row = conn.execute(
                "SELECT i.workflow, i.module_sha256, i.params, i.created_at_ms, i.status, "
                "t.limits "
                "FROM instances i LEFT JOIN tenants t ON t.tenant_id = i.tenant_id "
                "WHERE i.tenant_id = ? AND i.instance_id = ? AND i.run_id = ?",
                (claim.tenant_id, claim.instance_id, claim.run_id)).fetchone()
            if row is None:
                return None
            limits = self.registry.limits_from(row if row["limits"] is not None else None)
            records = load_journal(conn, claim.tenant_id, claim.instance_id)
            pause_requested = row["status"] == Status.WAITING_FOR_PAUSE.value
            event = invocation_event(claim, row["workflow"], bytes(row["params"]),
                                     row["created_at_ms"], records, pause_requested, limits)
            return _Loaded(row["workflow"], ModuleSha(row["module_sha256"]), event, limits,
                           records, pause_requested)
        return self.db.read_blocking(read)

    def _run_and_settle(self, chain: WriteChain, loaded: _Loaded, stub: ModuleStub,
                        loop: asyncio.AbstractEventLoop, logger: Any,
                        settled: asyncio.Future[_Change | None]) -> _Run:
        """Run the guest once, then queue the write that records its outcome, whose commit
        resolves `settled` (blocking: on a pool thread, which goes on to other work)."""
        logger = logger.bind(workflow=loaded.workflow)
        # Asked before the run: stop after its first step, not when a write reports it.
        chain.pause_requested = chain.pause_requested or loaded.pause_requested
        writer = InvocationWriter(self.db, self.clock, self, chain, loaded.sha256, loop,
                                  self.pool.baton)
        journal = ReplayJournal(loaded.records, writer, self.clock, loaded.limits)
        logger.debug("instance.invoke", replaying=len(loaded.records))
        try:
            outcome = stub.run_workflow(loaded.limits, loaded.event, journal, logger)
        except Aborted:
            logger.info("instance.aborted")
            return _Run.ABORTED
        except Exception as exc:  # a host bug must not take the worker down
            outcome = _host_error(exc, logger)
        self.db.queue_write(self._settle_op(chain, outcome), settled)
        return _Run.SETTLING

    async def _run_uncached(self, chain: WriteChain, loaded: _Loaded,
                            loop: asyncio.AbstractEventLoop, logger: Any,
                            settled: asyncio.Future[_Change | None]) -> _Run:
        """The module is not in memory: load it from disk or compile it, then run."""
        sha256 = loaded.sha256
        try:
            stub = await self.pool.get(chain.claim.tenant_id, sha256,
                                       lambda: self.registry.wasm(sha256))
        except DwfError as exc:
            outcome = Failed(GuestErrorName.MODULE_UNAVAILABLE.value, str(exc))
            self.db.queue_write(self._settle_op(chain, outcome), settled)
            return _Run.SETTLING
        return await self.pool.call_in_turn(
            lambda: self._run_and_settle(chain, loaded, stub, loop, logger, settled))

    def _settle_op(self, chain: WriteChain, outcome: Outcome) -> WriteOp[_Change | None]:
        """Record the outcome, in a write queued behind every journal write of the run."""
        claim = chain.claim
        now = self.clock.now_ms()

        @keeps_fences  # changes its own instance, whose run ends here
        @one_write
        def settle(conn: sqlite3.Connection) -> _Change | None:
            final = outcome
            if chain.failure is not None:  # the journal on disk stops short of the run
                final = Failed("HostError", "the host failed to journal this instance: "
                               f"{chain.failure!r}")
            ours = (claim.tenant_id, claim.instance_id, claim.run_id)
            # Finished: whatever was asked meanwhile (a pause), the run's end stands.
            if isinstance(final, Completed):
                done = conn.execute(
                    "UPDATE instances SET status = 'complete', output = ?, run_id = NULL, "
                    "finished_at_ms = ?, updated_at_ms = ? WHERE tenant_id = ? AND "
                    "instance_id = ? AND run_id = ?", (final.output, now, now, *ours))
                return _Change(Status.COMPLETE, final) if done.rowcount else None
            if isinstance(final, Failed):
                done = conn.execute(
                    "UPDATE instances SET status = 'errored', error_name = ?, "
                    "error_message = ?, run_id = NULL, finished_at_ms = ?, updated_at_ms = ? "
                    "WHERE tenant_id = ? AND instance_id = ? AND run_id = ?",
                    (final.name, final.message, now, now, *ours))
                return _Change(Status.ERRORED, final) if done.rowcount else None
            row = conn.execute(
                "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ? "
                "AND run_id = ?", ours).fetchone()
            if row is None:
                return None
            pause_requested = row["status"] == Status.WAITING_FOR_PAUSE.value
            where = (claim.tenant_id, claim.instance_id)
            if pause_requested or final.reason is SuspendReason.PAUSE:
                # Keep the wake time: resume re-queues it and replay re-checks timers.
                conn.execute(
                    "UPDATE instances SET status = 'paused', run_id = NULL, updated_at_ms = ? "
                    "WHERE tenant_id = ? AND instance_id = ?", (now, *where))
                return _Change(Status.PAUSED, final)
            wake_at = final.wake_at_ms if final.wake_at_ms is not None else now
            if final.waiting_event_type is not None and self._has_event(
                    conn, claim, final.waiting_event_type):
                wake_at = now  # the event arrived while we were suspending
            conn.execute(
                "UPDATE instances SET status = 'waiting', wake_at_ms = ?, "
                "waiting_event_type = ?, run_id = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (wake_at, final.waiting_event_type, now, *where))
            return _Change(Status.WAITING, final, wake_at)

        return settle

    def _announce(self, claim: Claim, change: _Change) -> None:
        """On the loop, after the settling committed: wake whoever waits for the instance."""
        if change.status.finished:
            for waiter in self._settled.pop((claim.tenant_id, claim.instance_id), []):
                if not waiter.done():
                    waiter.set_result(change.status)
        self.due.set()

    async def wait_finished(self, tenant_id: TenantId, instance_id: str,
                            poll_seconds: float = 0.5) -> Status:
        """Wait until the instance is complete, errored or terminated; returns which.

        Settled by this engine's own invocations: woken at once. Changed by another
        process (a CLI terminate, another engine's worker): seen by polling.
        """
        key = (tenant_id, instance_id)
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[Status | None] = loop.create_future()
            self._settled.setdefault(key, []).append(waiter)
            try:
                status = await self.instances.current_status(tenant_id, instance_id)
                if status.finished:
                    return status
                # A timer answering None, not asyncio.wait_for: no task, no cancellation.
                poll = loop.call_later(poll_seconds, _answer_none, waiter)
                try:
                    settled = await waiter
                finally:
                    poll.cancel()
                if settled is not None:
                    return settled
            finally:
                waiters = self._settled.get(key, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._settled.pop(key, None)

    @staticmethod
    def _has_event(conn: sqlite3.Connection, claim: Claim, event_type: str) -> bool:
        return conn.execute(
            "SELECT 1 FROM events WHERE tenant_id = ? AND instance_id = ? AND type = ? "
            "AND consumed_position IS NULL LIMIT 1",
            (claim.tenant_id, claim.instance_id, event_type)).fetchone() is not None

    # -- a guest's bindings (on the loop, for an invocation thread) -----------------

    async def create_child(self, chain: WriteChain, sha256: ModuleSha, record: StepRecord,
                           request: dict[str, Any]) -> None:
        claim = chain.claim
        try:
            workflow, params, child_id = await self._child_request(claim, sha256, request)
        except DwfError as exc:
            return await self._settle_binding(chain, record, None, exc)

        def create(conn: sqlite3.Connection) -> dict[str, str]:
            # Children run the parent's module version: the code that asked for them.
            self.instances.insert(conn, claim.tenant_id, child_id, workflow, sha256, params,
                                  parent=claim.instance_id)
            return {"id": child_id}
        await self._journaled_binding(chain, record, create)

    async def _child_request(self, claim: Claim, sha256: ModuleSha,
                             request: dict[str, Any]) -> tuple[str, bytes, InstanceId]:
        workflow = request.get("workflow")
        workflows = await self.registry.workflows(sha256)
        if not isinstance(workflow, str) or workflow not in workflows:
            raise UnknownWorkflow(claim.tenant_id, str(workflow), list(workflows))
        raw_id = request.get("id")
        if raw_id is not None and not isinstance(raw_id, str):
            raise InvalidInput("create_instance `id` must be a string")
        params = codec.pack(request.get("params"))
        limits = await self.registry.limits_for(claim.tenant_id)
        if len(params) > limits.max_payload_bytes:
            raise InvalidInput(f"params are {len(params)} bytes, over the limit of "
                               f"{limits.max_payload_bytes}")
        return workflow, params, instance_id(raw_id) if raw_id else new_instance_id()

    async def send_from_guest(self, chain: WriteChain, record: StepRecord,
                              request: dict[str, Any]) -> None:
        target, event_type = request.get("instance_id"), request.get("type")
        if not isinstance(target, str) or not isinstance(event_type, str) or not event_type:
            error = InvalidInput("send_event needs string `instance_id` and `type`")
            return await self._settle_binding(chain, record, None, error)
        payload = codec.pack(request.get("payload"))
        tenant_id = chain.claim.tenant_id

        def send(conn: sqlite3.Connection) -> dict[str, str]:
            # The guest's tenant, always: a guest cannot name another tenant.
            self.instances.insert_event(conn, tenant_id, target, event_type, payload)
            return {}
        await self._journaled_binding(chain, record, send)

    async def _journaled_binding(self, chain: WriteChain, record: StepRecord,
                                 act: Callable[[sqlite3.Connection], Any]) -> None:
        """Do a guest binding's write and journal its outcome in the same commit."""
        claim = chain.claim

        def write(conn: sqlite3.Connection) -> None:
            if not chain.guard(conn):
                return
            try:
                result = act(conn)
            except DwfError as exc:
                _settle_record(record, None, exc, self.clock.now_ms())
            else:
                _settle_record(record, result, None, self.clock.now_ms())
            save_step(conn, step_row(claim.tenant_id, claim.instance_id, record))
        await self.db.write(write)
        self.due.set()

    async def _settle_binding(self, chain: WriteChain, record: StepRecord, result: Any,
                              error: DwfError | None) -> None:
        _settle_record(record, result, error, self.clock.now_ms())
        await self.db.write(JournalAppend(chain, [record]))


def invocation_event(claim: Claim, workflow: str, params: bytes, created_at_ms: int,
                     records: list[StepRecord], pause_requested: bool,
                     limits: TenantLimits) -> bytes:
    """The `dwf_run` event of an invocation (what a wake hands the guest, journal included)."""
    event = {"payload": codec.unpack(params), "timestamp": created_at_ms,
             "instance_id": claim.instance_id, "workflow": workflow}
    if pause_requested:  # it stops at its first step: every one is asked for
        return codec.pack(event)
    event[abi.JOURNAL_LENGTH_KEY] = len(records)
    replay = step_batch.replay_prefix(records, limits.memory_bytes)
    return codec.map_with_raw(event, {abi.REPLAY_KEY: replay} if replay else {})


def _answer_none(waiter: asyncio.Future[Status | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _host_error(exc: Exception, logger: Any) -> Failed:
    """The outcome of an invocation the host itself failed (logged with its traceback)."""
    logger.exception("instance.host_error")
    return Failed("HostError", f"the host failed running this instance: {exc!r}")


def _log_settled(change: _Change | None, logger: Any) -> None:
    if change is None:
        return
    outcome = change.outcome
    if change.status is Status.COMPLETE:
        logger.info("instance.complete")
    elif change.status is Status.ERRORED:
        assert isinstance(outcome, Failed)
        logger.warning("instance.errored", error=outcome.name, message=outcome.message)
    elif change.status is Status.PAUSED:
        logger.info("instance.paused")
    else:
        assert isinstance(outcome, Suspended)
        logger.info("instance.waiting", reason=outcome.reason.value,
                    wake_at_ms=change.wake_at_ms)


def _settle_record(record: StepRecord, result: Any, error: DwfError | None, now: int) -> None:
    record.finished_at_ms = now
    record.attempts = 1
    if error is None:
        record.state = StepState.OK
        record.result = codec.pack(result)
    else:
        record.state = StepState.ERROR
        record.error_name = type(error).__name__
        record.error_message = str(error)


__all__ = ["Claim", "DurableEngine", "record_from_row"]
