"""The durable engine: runs instances by replaying their journal in the right module.

Invocations run on pool threads; their journal writes go to the store in order
(`invocation.InvocationWriter` over the store's `RunWrites`), and an instance is settled
only by a write queued behind them all, so nothing it did is seen before it is durable.
"""

from __future__ import annotations

import asyncio
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..core import codec
from ..core.clock import Clock, SystemClock
from ..core.errors import (
    DwfError,
    GuestErrorName,
    InvalidInput,
    StorageUnavailable,
    UnknownWorkflow,
    unavailable_cause,
)
from ..core.ids import InstanceId, ModuleSha, TenantId, instance_id, new_instance_id
from ..core.limits import TenantLimits
from ..core.model import Status, StepRecord
from ..core.outcomes import Failed, Interrupted, Outcome, Suspended
from ..egress.secrets import SecretBox
from ..egress.service import Egress
from ..sandbox.pool import IsolatePool, ModuleStub, PoolConfig
from ..store import (
    Claim,
    NewInstance,
    RunWrites,
    Settled,
    Storage,
    is_postgres_url,
    open_storage,
)
from .binding import TenantBinding
from .instances import InstanceStore
from .invocation import InvocationWriter
from .journal import Aborted, ReplayJournal
from .registry import ModuleRegistry
from .replay import Replayer
from .run_event import invocation_event
from .schedules import Schedules
from .sources import DEFAULT_CHECK_INTERVAL_S, Loader, ModuleSource, OnDemandModules, source_for
from .telemetry import EngineStats, InvocationTally
from .tracing import Tracing, tracing_from_env
from .upgrade import Upgrades

log = structlog.get_logger("dwf.engine")
RETRY_FIRST_S, RETRY_MOST_S = 0.05, 5.0
"""Backoff between attempts to record a run while storage is unavailable."""


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


class DurableEngine:
    def __init__(self, store: Storage, pool: IsolatePool,
                 secret_key_file: Path | None = None) -> None:
        """`secret_key_file`: where the key sealing tenant secrets lives (created on first
        use); without one it comes from DWF_SECRET_KEY or DWF_SECRET_KEY_FILE."""
        self.store = store
        self.pool = pool
        self.clock = store.clock
        self.egress = Egress(store, SecretBox(secret_key_file))
        self.registry = ModuleRegistry(store, pool)
        self.due = asyncio.Event()
        self.instances = InstanceStore(store, on_due=self.due.set,
                                       before_create=self.ensure_module)
        self.replayer = Replayer(store, pool, self.registry)
        self.upgrades = Upgrades(store, pool, self.replayer)
        self.schedules = Schedules(store, on_due=self.due.set,
                                   before_fire=self.ensure_module)
        self.modules_on_demand: OnDemandModules | None = None
        self._settled: dict[tuple[str, str], list[asyncio.Future[Status | None]]] = {}
        self._retrying = True  # while storage is unavailable, keep trying to record runs
        self.stats = EngineStats()
        self.tracing: Tracing | None = tracing_from_env()

    @classmethod
    async def open(cls, db: str | Path, *, clock: Clock | None = None,
                   pool_config: PoolConfig = PoolConfig(),
                   default_limits: TenantLimits = TenantLimits(),
                   synchronous: str = "NORMAL", lease_ms: int | None = None,
                   artifacts: Path | None = None, worker_id: str | None = None,
                   secret_key_file: Path | None = None,
                   module_source: str | Path | Loader | ModuleSource | None = None,
                   module_check_interval_s: float = DEFAULT_CHECK_INTERVAL_S
                   ) -> DurableEngine:
        """The engine on `db`: a SQLite file path, or a `postgresql://` URL.

        Compiled modules are cached on disk in `artifacts`: by default beside a SQLite
        file (`PATH.artifacts/`), for PostgreSQL in `default_artifacts`. The key sealing
        tenant secrets is `secret_key_file`: by default beside a SQLite file
        (`PATH.secret-key`, made on first use); for PostgreSQL, whose hosts must all hold
        the same key, DWF_SECRET_KEY or DWF_SECRET_KEY_FILE. `module_source`: load
        tenants' modules on demand from a directory, an http(s) URL template with
        {tenant}, or an async `loader(tenant_id) -> bytes | None`, asking it again at most
        every `module_check_interval_s` per tenant.
        """
        store = await open_storage(db, clock or SystemClock(), default_limits,
                                   synchronous=synchronous, lease_ms=lease_ms,
                                   worker_id=worker_id)
        if artifacts is None:
            artifacts = default_artifacts(db)
        if secret_key_file is None and not is_postgres_url(db):
            path = Path(db)
            secret_key_file = path.parent / f"{path.name}.secret-key"
        engine = cls(store, IsolatePool(artifacts, pool_config), secret_key_file)
        if module_source is not None:
            engine.load_modules_from(module_source, module_check_interval_s)
        return engine

    def load_modules_from(self, source: str | Path | Loader | ModuleSource,
                          check_interval_s: float = DEFAULT_CHECK_INTERVAL_S) -> None:
        """Load tenants' modules on demand from `source` (see durable/sources.py)."""
        self.modules_on_demand = OnDemandModules(self.store, self.registry,
                                                 source_for(source), check_interval_s)

    async def ensure_module(self, tenant_id: TenantId) -> None:
        """Before the tenant's active module is needed: load it from the deployment's
        module source if it has none yet or the source changed (no source: nothing)."""
        if self.modules_on_demand is not None:
            await self.modules_on_demand.ensure(tenant_id)

    def stop_retrying(self) -> None:
        """Shutting down: a run that cannot be recorded now (storage unavailable) is left
        as it is, for the next worker's recovery, instead of being retried."""
        self._retrying = False

    async def close(self) -> None:
        # Off the loop: a guest still running may need the loop to finish (a binding
        # call), and the loop must keep answering signals meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close)
        await self.egress.close()
        if self.modules_on_demand is not None:
            await self.modules_on_demand.close()
        await self.store.close()

    def tenant(self, tenant_id: TenantId) -> TenantBinding:
        """The tenant-bound instance API (the analogue of `wrapWorkflowBinding`)."""
        return TenantBinding(self, tenant_id)

    # -- scheduling --------------------------------------------------------------

    async def recover(self) -> int:
        """After a crash: instances left running go back to the queue (replay is safe)."""
        recovered = await self.store.recover()
        if recovered:
            log.info("engine.recovered", instances=recovered)
        return recovered

    async def claim_due(self, limit: int) -> list[Claim]:
        """Claim up to `limit` due instances, taking tenants in turn.

        Each tenant gets at most `max_concurrent_invocations` running at once, so a tenant
        with a flood of due work cannot starve the others of sandbox threads.
        """
        return await self.store.claim_due(limit)

    async def next_wake_ms(self) -> int | None:
        return await self.store.next_wake_ms()

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
        run_writes = self.store.run_writes(claim)
        settled: asyncio.Future[Settled | None] = loop.create_future()
        tally = InvocationTally()

        def on_thread() -> tuple[_Loaded, _Run] | None:
            # On a pool thread: when the module is in memory (the common case) the reads,
            # the run and queueing the settling cost one hop from the event loop.
            loaded = self._load(claim)
            if loaded is None:
                return None  # terminated or restarted since the claim
            stub = self.pool.cached(claim.tenant_id, loaded.sha256)
            if stub is None:
                return loaded, _Run.NOT_CACHED
            return loaded, self._run_and_settle(run_writes, loaded, stub, loop, logger,
                                                settled, tally)

        workflow = "?"  # until it is loaded
        try:
            found = await self.pool.call_in_turn(on_thread)
            if found is None:
                return
            loaded, run = found
            workflow = loaded.workflow
            logger = logger.bind(workflow=workflow)
            if run is _Run.NOT_CACHED:
                run = await self._run_uncached(run_writes, loaded, loop, logger, settled, tally)
            if run is _Run.ABORTED:
                self._account(claim, workflow, tally, None)
                return
            change = await settled
        except Exception as exc:  # neither a host bug nor storage must take the worker down
            change = await self._settle_until_stored(run_writes, _failure(exc, logger), logger)
        _log_settled(change, logger)
        if change is not None:
            self._announce(claim, change)
        self._account(claim, workflow, tally, change)

    def _account(self, claim: Claim, workflow: str, tally: InvocationTally,
                 change: Settled | None) -> None:
        """Count the invocation for /metrics and trace it (on the loop, once it settled)."""
        status = change.status if change is not None else None
        self.stats.add(claim.tenant_id, tally, status)
        if self.tracing is not None:
            self.tracing.invocation(claim, workflow, tally, status)

    def _load(self, claim: Claim) -> _Loaded | None:
        """Everything an invocation needs, on its pool thread (None: the claim no longer
        holds the instance). A new instance's come with its claim: no read at all."""
        found = self.store.load_run(claim)
        if found is None:
            return None
        event = invocation_event(claim, found.workflow, found.params, found.created_at_ms,
                                 found.records, found.pause_requested, found.limits)
        return _Loaded(found.workflow, found.sha256, event, found.limits, found.records,
                       found.pause_requested)

    def _run_and_settle(self, run: RunWrites, loaded: _Loaded, stub: ModuleStub,
                        loop: asyncio.AbstractEventLoop, logger: Any,
                        settled: asyncio.Future[Settled | None],
                        tally: InvocationTally) -> _Run:
        """Run the guest once, then queue the write that records its outcome, whose commit
        resolves `settled` (blocking: on a pool thread, which goes on to other work)."""
        logger = logger.bind(workflow=loaded.workflow)
        # Asked before the run: stop after its first step, not when a write reports it.
        run.pause_requested = run.pause_requested or loaded.pause_requested
        writer = InvocationWriter(run, self, loaded.sha256, loop, self.pool.turns)
        journal = ReplayJournal(loaded.records, writer, self.clock, loaded.limits, tally)
        egress = self.egress.port(run.claim.tenant_id, run.claim.instance_id, loaded.limits,
                                  logger, loop, self.pool)
        logger.debug("instance.invoke", replaying=len(loaded.records))
        tally.start()
        try:
            outcome = stub.run_workflow(loaded.limits, loaded.event, journal, logger, egress,
                                        tally.usage)
        except Aborted:
            logger.info("instance.aborted")
            return _Run.ABORTED
        except Exception as exc:  # neither a host bug nor storage must take the worker down
            outcome = _failure(exc, logger)
        finally:
            tally.end()
        writer.flush()
        run.settle(outcome, settled)
        return _Run.SETTLING

    async def _run_uncached(self, run: RunWrites, loaded: _Loaded,
                            loop: asyncio.AbstractEventLoop, logger: Any,
                            settled: asyncio.Future[Settled | None],
                            tally: InvocationTally) -> _Run:
        """The module is not in memory: load it from disk or compile it, then run."""
        sha256 = loaded.sha256
        try:
            stub = await self.pool.get(run.claim.tenant_id, sha256,
                                       lambda: self.registry.wasm(sha256))
        except StorageUnavailable:
            raise  # the run is put back, not failed
        except DwfError as exc:
            run.settle(Failed(GuestErrorName.MODULE_UNAVAILABLE.value, str(exc)), settled)
            return _Run.SETTLING
        return await self.pool.call_in_turn(
            lambda: self._run_and_settle(run, loaded, stub, loop, logger, settled, tally))

    async def _settle_until_stored(self, run: RunWrites, outcome: Outcome,
                                   logger: Any) -> Settled | None:
        """Record a run's end, retrying with backoff while storage is unavailable (a run
        whose end cannot be recorded was not recorded at all: it is put back instead)."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return await run.settle_now(outcome)
            except StorageUnavailable as exc:
                if not self._retrying:
                    logger.warning("instance.left_for_recovery", reason=str(exc))
                    return None
                logger.warning("instance.settle_retry", reason=str(exc), retry_in_s=delay)
                outcome = Interrupted(str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST_S)

    def _announce(self, claim: Claim, change: Settled) -> None:
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

    # -- a guest's bindings (on the loop, for an invocation thread) -----------------

    async def create_child(self, run: RunWrites, sha256: ModuleSha, record: StepRecord,
                           request: dict[str, Any]) -> None:
        try:
            child = await self._child_request(run.claim, sha256, request)
        except DwfError as exc:
            record.settle_binding(None, exc, self.clock.now_ms())
            await run.append_now([record])
            return
        # Children run the parent's module version: the code that asked for them.
        await run.create_child(record, child, sha256)
        self.due.set()

    async def _child_request(self, claim: Claim, sha256: ModuleSha,
                             request: dict[str, Any]) -> NewInstance:
        workflow = request.get("workflow")
        workflows = await self.registry.workflows(claim.tenant_id, sha256)
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
        child_id: InstanceId = instance_id(raw_id) if raw_id else new_instance_id()
        return NewInstance(child_id, workflow, params)

    async def send_from_guest(self, run: RunWrites, record: StepRecord,
                              request: dict[str, Any]) -> None:
        target, event_type = request.get("instance_id"), request.get("type")
        if not isinstance(target, str) or not isinstance(event_type, str) or not event_type:
            error = InvalidInput("send_event needs string `instance_id` and `type`")
            record.settle_binding(None, error, self.clock.now_ms())
            await run.append_now([record])
            return
        # The guest's own tenant, always: a guest cannot name another tenant.
        await run.send_event(record, target, event_type, codec.pack(request.get("payload")))
        self.due.set()


def default_artifacts(db: str | Path) -> Path:
    """Where compiled modules are cached for `db`: beside a SQLite file; for a database
    on a server, this host's `DWF_ARTIFACTS`, else `$XDG_CACHE_HOME/dwf/artifacts` (or
    `~/.cache/dwf/artifacts`). Artifacts are named by the module's sha256 and checked
    before use, so databases and processes can share one directory."""
    if not is_postgres_url(db):
        path = Path(db)
        return path.parent / f"{path.name}.artifacts"
    if os.environ.get("DWF_ARTIFACTS"):
        return Path(os.environ["DWF_ARTIFACTS"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dwf" / "artifacts"


def _answer_none(waiter: asyncio.Future[Status | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _failure(exc: Exception, logger: Any) -> Outcome:
    """The outcome of an invocation the host itself could not finish: put back if storage
    was unavailable, else failed (a host bug, logged with its traceback)."""
    unavailable = unavailable_cause(exc)
    if unavailable is not None:
        logger.warning("instance.interrupted", reason=str(unavailable))
        return Interrupted(str(unavailable))
    logger.exception("instance.host_error")
    return Failed("HostError", f"the host failed running this instance: {exc!r}")


def _log_settled(change: Settled | None, logger: Any) -> None:
    if change is None:  # terminated, restarted or taken over under the run
        logger.info("instance.not_recorded", reason="the run no longer held the instance")
        return
    outcome = change.outcome
    if change.status is Status.COMPLETE:
        logger.info("instance.complete")
    elif change.status is Status.ERRORED:
        assert isinstance(outcome, Failed)
        logger.warning("instance.errored", error=outcome.name, message=outcome.message)
    elif change.status is Status.PAUSED:
        logger.info("instance.paused")
    elif change.status is Status.QUEUED:
        logger.info("instance.requeued")
    else:
        assert isinstance(outcome, Suspended)
        logger.info("instance.waiting", reason=outcome.reason.value,
                    wake_at_ms=change.wake_at_ms)
