"""The records a storage backend reads and writes, as plain frozen dataclasses.

Journal records and run inputs carry payloads as stored (msgpack bytes): the guest gets
them exactly as they were written. An `InstanceStatus`, which is for people, has its
params and output decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core import codec
from ..core.ids import InstanceId, ModuleSha, TenantId
from ..core.limits import TenantLimits
from ..core.model import Status, StepRecord
from ..core.outcomes import Outcome


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    tenant_id: TenantId
    sha256: ModuleSha
    version: int
    size_bytes: int
    workflows: tuple[str, ...]
    sdk: str
    registered_at_ms: int
    active: bool
    fetch: bool = False
    """The module exports `dwf_fetch`: it answers HTTP requests for its tenant."""


@dataclass(frozen=True, slots=True)
class TenantInfo:
    tenant_id: TenantId
    active_sha256: ModuleSha
    active_version: int
    workflows: tuple[str, ...]
    versions: int
    limits: TenantLimits


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    """A tenant's active module, the workflows it exports, and the tenant's limits."""

    sha256: ModuleSha
    workflows: tuple[str, ...]
    limits: TenantLimits


@dataclass(frozen=True, slots=True)
class NewInstance:
    """An instance to insert as queued: its params already packed and checked."""

    instance_id: InstanceId
    workflow: str
    params: bytes


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """One instance: its row, params and output decoded, and (when asked for) its steps
    as `step_view`s."""

    tenant_id: TenantId
    instance_id: InstanceId
    workflow: str
    module_sha256: ModuleSha
    status: Status
    params: Any
    output: Any
    error: dict[str, str] | None
    created_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None
    wake_at_ms: int | None
    waiting_event_type: str | None
    parent_instance_id: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "id": self.instance_id, "workflow": self.workflow,
            "module_sha256": self.module_sha256, "status": self.status.value,
            "params": codec.to_jsonable(self.params), "output": codec.to_jsonable(self.output),
            "error": self.error, "created_at_ms": self.created_at_ms,
            "updated_at_ms": self.updated_at_ms, "finished_at_ms": self.finished_at_ms,
            "wake_at_ms": self.wake_at_ms, "waiting_event_type": self.waiting_event_type,
            "parent_instance_id": self.parent_instance_id, "steps": self.steps,
        }


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page of instances (newest first) ended: the next page starts below it."""

    created_at_ms: int
    tenant_id: TenantId
    instance_id: InstanceId


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Which instances to list, newest first (by creation time, then tenant and id)."""

    tenant_id: TenantId | None = None
    """One tenant's (None: every tenant's)."""

    status: Status | None = None
    workflow: str | None = None
    created_from_ms: int | None = None
    """Created at or after this time."""

    created_before_ms: int | None = None
    """Created before this time."""

    id_contains: str | None = None
    """Only ids containing this text (a search by id)."""

    parent_instance_id: str | None = None
    """Only children of this instance (of the same tenant)."""

    after: PageCursor | None = None
    """The previous page's end: list what comes after it."""

    limit: int = 100


@dataclass(frozen=True, slots=True)
class BufferedEvent:
    """An event sent to an instance and not yet taken by a wait_for_event."""

    type: str
    payload: bytes
    sent_at_ms: int


@dataclass(frozen=True, slots=True)
class Transition:
    """A control action's change to an instance (pause, resume, terminate)."""

    status: Status
    wake_at_ms: int | None = None
    """Due again at this time (a resumed instance: DUE_NOW); None leaves it as it is."""

    finish: bool = False
    """The instance ends here: any run's hold, due time and awaited event are cleared and
    it is finished now (terminate)."""


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What a claim read about its instance, in the claim's own transaction."""

    workflow: str
    sha256: ModuleSha
    params: bytes
    created_at_ms: int
    limits: TenantLimits
    records: list[StepRecord] | None
    """The instance's journal as the claim found it ([] for a new instance); None when it
    was not read with the claim (past the claim's budget): the run reads it itself."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A run of an instance that a worker took: only writes fenced by `run_id` land."""

    tenant_id: TenantId
    instance_id: InstanceId
    run_id: str
    epoch: int | None = None
    """The backend's marker of the moment the claim was made. While it has not moved,
    nothing changed the instance since (no pause, terminate or restart): `prefetched` is
    still true and the fence is as the claim left it."""

    prefetched: Prefetched | None = None


@dataclass(frozen=True, slots=True)
class RunInputs:
    """Everything an invocation needs from storage before it runs the guest."""

    workflow: str
    sha256: ModuleSha
    params: bytes
    created_at_ms: int
    limits: TenantLimits
    records: list[StepRecord]
    pause_requested: bool


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling a run did to its instance."""

    status: Status
    outcome: Outcome
    """As recorded: a failed journal turns any outcome into HostError."""

    wake_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A tenant secret's name and dates: never its value."""

    name: str
    created_at_ms: int
    updated_at_ms: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "created_at_ms": self.created_at_ms,
                "updated_at_ms": self.updated_at_ms}


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    tenant_id: TenantId | None
    """The tenant the token acts for; None for an admin token."""

    name: str
    created_at_ms: int
    revoked_at_ms: int | None

    @property
    def admin(self) -> bool:
        return self.tenant_id is None

    def to_dict(self) -> dict[str, object]:
        return {"token_id": self.token_id, "tenant_id": self.tenant_id, "admin": self.admin,
                "name": self.name, "created_at_ms": self.created_at_ms,
                "revoked_at_ms": self.revoked_at_ms}
