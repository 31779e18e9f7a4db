"""The storage interface: everything the durable engine, the registry, instance control and
API tokens need from a database, and nothing about how a database does it.

No SQL and no connection appears above this package. A backend implements `Storage` and,
for the writes of one claimed run, `RunWrites`. SQLite is `host.store.sqlite`; every
backend passes the same behaviour suite.

What every backend guarantees:
- Writes of one run commit in the order they were made, and only while its claim still
  holds the instance (its fence, `Claim.run_id`): the journal on disk is always a prefix
  of what the guest did, and a run that was terminated or restarted under it writes
  nothing more.
- A write is answered only after its commit is durable.
- Creating instances checks the tenant's active version and pins it in the same
  transaction that inserts them.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ..core.clock import Clock
from ..core.errors import unavailable_cause
from ..core.ids import InstanceId, ModuleSha, TenantId
from ..core.limits import LimitsParser, TenantLimits
from ..core.model import AttemptRecord, Status, StepRecord
from ..core.outcomes import Failed, Interrupted, Outcome
from ..core.tally import CommitTally
from .lifecycle import LifecycleStorage
from .records import (
    ActiveVersion,
    BufferedEvent,
    Claim,
    InstanceQuery,
    InstanceStatus,
    ModuleInfo,
    NewInstance,
    RunInputs,
    SecretInfo,
    Settled,
    TenantInfo,
    TokenInfo,
    Transition,
)


class EarlierWriteFailed(Exception):
    """A journal write of this run failed, so none after it may be written: the journal on
    disk must stay a prefix of what the guest did."""


def after_failed_write(failure: BaseException) -> Outcome:
    """What a run whose journal write failed settles as: put back if the database was
    only unavailable (a lock, a full disk, a lost connection), failed with HostError
    otherwise."""
    unavailable = unavailable_cause(failure)
    if unavailable is not None:
        return Interrupted(str(unavailable))
    return Failed("HostError", f"the host failed to journal this instance: {failure!r}")


class RunWrites(abc.ABC):
    """The writes of one claimed run, in order and fenced by its claim.

    Used from the run's pool thread (`append`, `wait_committed`, `take_event`, `settle`)
    and from the event loop (the binding calls and `settle_now`). What the backend learns
    while committing is kept here for the run to read between steps: `lost` (terminated
    or restarted under it), `pause_requested`, `failure` (a write failed: later ones fail
    with EarlierWriteFailed), and how many appended rows were answered.
    """

    __slots__ = ("claim", "lost", "pause_requested", "failure", "committed_count",
                 "_answers", "_waiter")

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.lost = False
        self.pause_requested = False
        self.failure: BaseException | None = None
        self.committed_count = 0  # appended journal rows answered so far, in queue order
        self._answers = threading.Lock()  # a plain lock: this runs once per journal write
        self._waiter: tuple[int, threading.Event] | None = None  # (count, woken then)

    @abc.abstractmethod
    def append(self, records: list[StepRecord]) -> None:
        """Queue journal positions, as the records are now, for the next commit; never
        blocks. Their answer adds len(records) to `committed_count`."""

    @abc.abstractmethod
    def append_attempt(self, record: StepRecord, attempt: AttemptRecord) -> None:
        """`append([record])` with one finished attempt of its step, in the same commit;
        of the step's attempts only the latest `ATTEMPTS_KEPT` are kept. Its answer adds
        1 to `committed_count`."""

    @abc.abstractmethod
    def take_event(self, record: StepRecord, event_type: str) -> None:
        """Blocking: consume the oldest buffered event of `event_type` into `record` (now
        ok) and journal it, in one commit; leave `record` as it is when there is none."""

    @abc.abstractmethod
    async def create_child(self, record: StepRecord, child: NewInstance,
                           sha256: ModuleSha) -> None:
        """Insert a child instance of the run's instance on module `sha256`, and journal
        `record` with the outcome (its id, or DuplicateInstance), in one commit."""

    @abc.abstractmethod
    async def send_event(self, record: StepRecord, target: str, event_type: str,
                         payload: bytes) -> None:
        """Send an event to an instance of the run's tenant, and journal `record` with the
        outcome (or why not: UnknownInstance, InvalidState), in one commit."""

    @abc.abstractmethod
    async def append_now(self, records: list[StepRecord]) -> None:
        """`append`, and wait on the event loop for its commit."""

    @abc.abstractmethod
    def settle(self, outcome: Outcome, waiter: asyncio.Future[Settled | None]) -> None:
        """Queue the write recording the run's outcome behind all its other writes; its
        commit resolves `waiter` (None: the run no longer held the instance)."""

    @abc.abstractmethod
    async def settle_now(self, outcome: Outcome) -> Settled | None:
        """`settle`, awaited (from the event loop)."""

    def committed(self, ok: bool, value: Any, rows: int = 1) -> None:
        """The answer to appended rows (from the backend, after its COMMIT): a failed one
        fails the run's later writes."""
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
        """Block the run's thread until `count` of its appended rows are answered."""
        with self._answers:
            if self.committed_count >= count:
                return
            self._waiter = (count, threading.Event())
            woken = self._waiter[1]
        woken.wait()


PrepareInstances = Callable[[ActiveVersion], list[NewInstance]]
"""Decides, inside the creating transaction, what to insert for the tenant's active version
(raising to insert nothing)."""

DecideTransition = Callable[[Status], Transition]
"""Decides a control action's change from the instance's status (raising if it may not)."""


class Storage(LifecycleStorage):
    """One database, for every tenant. Time comes from `clock`, limits from `limits`.

    The code lifecycle's methods (version moves, drain, prune, schedules, module-source
    stamps) are declared in `lifecycle.LifecycleStorage`."""

    clock: Clock
    limits: LimitsParser
    worker_id: str
    """Names this process's claims (`instances.owner`), so what it ran can be taken over."""

    @property
    def default_limits(self) -> TenantLimits:
        return self.limits.defaults

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- modules and tenants -------------------------------------------------------

    @abc.abstractmethod
    async def save_module(self, tenant_id: TenantId, sha256: ModuleSha, wasm: bytes,
                          manifest: dict[str, Any]) -> None:
        """Store a validated module (once per sha256) and make it the tenant's active
        version, its next version number if it is new to the tenant."""

    @abc.abstractmethod
    async def modules(self, tenant_id: TenantId,
                      sha256: ModuleSha | None = None) -> list[ModuleInfo]:
        """The tenant's module versions in order (only `sha256`'s, if given)."""

    @abc.abstractmethod
    async def activate(self, tenant_id: TenantId, sha256: ModuleSha) -> None:
        """Make one of the tenant's registered versions its active one."""

    @abc.abstractmethod
    async def tenants(self) -> list[TenantInfo]: ...

    @abc.abstractmethod
    async def tenant_limits(self, tenant_id: TenantId) -> TenantLimits:
        """The tenant's limits (the defaults for a tenant that has no row)."""

    @abc.abstractmethod
    async def active_module(self, tenant_id: TenantId) -> tuple[ModuleInfo, TenantLimits] | None:
        """The tenant's active version and its limits, in one read by the tenant's key
        (every front-door request asks); None for an unknown tenant."""

    @abc.abstractmethod
    async def set_limits(self, tenant_id: TenantId, overrides: dict[str, Any]) -> TenantLimits:
        """Merge `overrides` into the tenant's stored ones, validated (InvalidInput), in
        one transaction; UnknownTenant if it has none."""

    @abc.abstractmethod
    async def module_wasm(self, sha256: ModuleSha) -> bytes:
        """The module's bytes; NotFound if none is stored."""

    @abc.abstractmethod
    async def module_workflows(self, tenant_id: TenantId, sha256: ModuleSha) -> tuple[str, ...]:
        """The workflows of one of the tenant's versions, as its manifest said when it
        registered it; NotFound if it has no such version."""

    # -- capabilities: egress rules and secrets ---------------------------------------

    @abc.abstractmethod
    async def egress_rules(self, tenant_id: TenantId) -> list[str]:
        """The tenant's egress rules as stored lines (UnknownTenant without a tenant)."""

    @abc.abstractmethod
    async def set_egress_rules(self, tenant_id: TenantId, rules: list[str]) -> None:
        """Replace the tenant's egress rules (UnknownTenant without a tenant)."""

    @abc.abstractmethod
    async def put_secret(self, tenant_id: TenantId, name: str, sealed: bytes) -> None:
        """Store a sealed secret value, new or replacing one (UnknownTenant)."""

    @abc.abstractmethod
    async def secret(self, tenant_id: TenantId, name: str) -> bytes | None:
        """A secret's sealed value."""

    @abc.abstractmethod
    async def secrets(self, tenant_id: TenantId) -> list[SecretInfo]:
        """The tenant's secrets by name (UnknownTenant without a tenant)."""

    @abc.abstractmethod
    async def delete_secret(self, tenant_id: TenantId, name: str) -> bool:
        """False if there was no such secret."""

    # -- instances -------------------------------------------------------------------

    @abc.abstractmethod
    async def create_instances(self, tenant_id: TenantId, count: int,
                               prepare: PrepareInstances) -> list[InstanceId]:
        """Insert the `count` instances `prepare` decides for the tenant's active version
        (UnknownTenant without one), all or none, pinned to that version;
        DuplicateInstance if an id is taken."""

    @abc.abstractmethod
    async def instance(self, tenant_id: TenantId, instance_id: str) -> InstanceStatus | None:
        """The instance without its steps (see `journal`)."""

    @abc.abstractmethod
    async def peek_status(self, tenant_id: TenantId, instance_id: str) -> Status | None:
        """The status alone, read the cheapest way the backend has: for waiters, which
        ask often."""

    @abc.abstractmethod
    async def journal(self, tenant_id: TenantId, instance_id: str) -> list[StepRecord]:
        """The instance's journal in position order."""

    @abc.abstractmethod
    async def attempts(self, tenant_id: TenantId, instance_id: str) -> list[AttemptRecord]:
        """The attempts kept for the instance's steps, by position then attempt."""

    @abc.abstractmethod
    async def count_instances(self) -> dict[tuple[TenantId, Status], int]:
        """How many instances each tenant has in each status (none: absent)."""

    @abc.abstractmethod
    async def count_due(self, now_ms: int) -> int:
        """How many queued or waiting instances are due at `now_ms` (the backlog)."""

    def commit_tally(self) -> CommitTally | None:
        """The group-commit writer's batch sizes and commit times (None: no such writer)."""
        return None

    @abc.abstractmethod
    async def list_instances(self, query: InstanceQuery) -> list[InstanceStatus]:
        """Up to `query.limit` instances that match it, newest first (by creation time,
        then tenant id, then instance id), after `query.after` if given."""

    @abc.abstractmethod
    async def buffered_events(self, tenant_id: TenantId,
                              instance_id: str) -> list[BufferedEvent]:
        """The instance's events not yet taken by a wait, oldest first."""

    @abc.abstractmethod
    async def transition(self, tenant_id: TenantId, instance_id: str,
                         decide: DecideTransition) -> Status:
        """Apply `decide`'s change in one transaction; returns the status it set
        (UnknownInstance if there is no such instance)."""

    @abc.abstractmethod
    async def restart(self, tenant_id: TenantId, instance_id: str) -> None:
        """Queue the instance again with an empty journal, no attempt history and no
        consumed events."""

    @abc.abstractmethod
    async def send_event(self, tenant_id: TenantId, instance_id: str, event_type: str,
                         payload: bytes) -> None:
        """Buffer an event and wake its instance if it waits for that type
        (UnknownInstance; InvalidState once it is finished)."""

    # -- scheduling ------------------------------------------------------------------

    @abc.abstractmethod
    async def recover(self) -> int:
        """A worker starts: instances left running by a worker that is gone (crashed) are
        queued again, and those waiting for a pause are paused; returns how many were
        running. On a database many workers share, this worker also starts holding the
        lease that keeps its claims (until `close`)."""

    @abc.abstractmethod
    async def take_over(self, worker_id: str) -> int:
        """The worker `worker_id` is known to be gone (its supervisor saw it die): queue
        again what it was running, and pause what waited for a pause; returns how many
        were running."""

    @abc.abstractmethod
    async def claim_due(self, limit: int) -> list[Claim]:
        """Claim up to `limit` due instances, taking tenants in turn, each tenant at most
        `max_concurrent_invocations` running at once (across every worker sharing the
        database); no instance is claimed by two workers."""

    @abc.abstractmethod
    async def next_wake_ms(self) -> int | None:
        """When the earliest queued or waiting instance is due."""

    @abc.abstractmethod
    async def watch_due(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on this event loop) whenever another process makes an instance
        due: a worker then claims at once instead of at its next poll. A backend that
        cannot tell (SQLite) does nothing: its worker polls."""

    async def live_workers(self) -> int | None:
        """How many workers hold a lease on this database now; None from a backend
        without leases (SQLite: one worker at most, which holds the file's lock)."""
        return None

    # -- one run ---------------------------------------------------------------------

    @abc.abstractmethod
    def load_run(self, claim: Claim) -> RunInputs | None:
        """Blocking (a pool thread): the claimed run's inputs, or None if the claim no
        longer holds the instance."""

    @abc.abstractmethod
    def run_writes(self, claim: Claim) -> RunWrites: ...

    # -- API tokens --------------------------------------------------------------------

    @abc.abstractmethod
    async def insert_token(self, token: TokenInfo, token_sha256: str) -> None: ...

    @abc.abstractmethod
    async def tokens(self, tenant_id: TenantId | None) -> list[TokenInfo]: ...

    @abc.abstractmethod
    async def revoke_token(self, token_id: str) -> bool:
        """Revoke an active token; False if there is none by that id."""

    @abc.abstractmethod
    async def token_digest(self, token_id: str) -> tuple[TenantId | None, str] | None:
        """An active token's tenant and stored sha256 (hex)."""
