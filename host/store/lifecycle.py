"""The storage a module's lifecycle needs: moving instances between versions, how many
instances each version still runs (drain), pruning versions, cron schedules, and where a
tenant's module was last loaded from.

`Storage` includes these methods (it derives from `LifecycleStorage`); each backend
implements them beside its other methods. Kept apart so the code-lifecycle part of the
interface reads in one place.
"""

from __future__ import annotations

import abc
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..core import codec
from ..core.ids import InstanceId, ModuleSha, TenantId
from ..core.limits import TenantLimits
from ..core.model import Status, StepRecord
from .records import ActiveVersion, NewInstance

UPGRADABLE = (Status.QUEUED, Status.WAITING, Status.PAUSED)
"""Statuses an instance can be moved to another version in: no run holds it, and it is
not finished."""


def journal_digest(records: list[StepRecord]) -> str:
    """A fingerprint of a journal's shape and progress (each position's kind, name, state
    and attempts): equal digests mean no run has moved the instance on in between."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.position}\0{record.kind.value}\0{record.name}\0"
                      f"{record.state.value}\0{record.attempts}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class InstanceInputs:
    """What replaying one instance needs, read without claiming it (a snapshot)."""

    tenant_id: TenantId
    instance_id: InstanceId
    workflow: str
    sha256: ModuleSha
    """The module version the instance is pinned to."""

    status: Status
    params: bytes
    created_at_ms: int
    limits: TenantLimits
    records: list[StepRecord]


@dataclass(frozen=True, slots=True)
class VersionMove:
    """Move one instance from version `from_sha256` to `to_sha256`, provided nothing
    changed it since its journal was checked (`journal_digest` of what was checked)."""

    instance_id: InstanceId
    from_sha256: ModuleSha
    to_sha256: ModuleSha
    journal_digest: str
    journal_length: int


def move_refusal(status: Status, pinned: ModuleSha, move: VersionMove, digest: str,
                 target_registered: bool) -> str | None:
    """Why an instance may not move as `move` says, given its status, pinned version and
    journal digest now, and whether the target is (still) one of the tenant's versions,
    all read in the moving transaction (None: it may move)."""
    if not target_registered:
        return "the tenant has no such version (pruned meanwhile?)"
    if pinned == move.to_sha256:
        return "it runs on that version already"
    if pinned != move.from_sha256:
        return "it moved to another version since it was checked; check it again"
    if status not in UPGRADABLE:
        if status.finished:
            return f"it is {status.value}"
        return f"it is {status.value} now; move it when it waits or is paused"
    if digest != move.journal_digest:
        return "its journal changed since it was checked; check it again"
    return None


@dataclass(frozen=True, slots=True)
class UpgradeRecord:
    """One move of an instance to another module version, as its history shows it."""

    from_sha256: ModuleSha
    to_sha256: ModuleSha
    from_version: int | None
    """The tenant's version number of `from_sha256` when it moved (None: since pruned)."""

    to_version: int | None
    journal_length: int
    """How many journal positions were recorded (and checked against the new version)."""

    upgraded_at_ms: int

    def to_dict(self) -> dict[str, object]:
        return {"from_sha256": self.from_sha256, "to_sha256": self.to_sha256,
                "from_version": self.from_version, "to_version": self.to_version,
                "journal_length": self.journal_length, "upgraded_at_ms": self.upgraded_at_ms}


@dataclass(frozen=True, slots=True)
class VersionUsage:
    """One of a tenant's module versions and the instances pinned to it."""

    sha256: ModuleSha
    version: int
    active: bool
    registered_at_ms: int
    unfinished: int
    """Instances on it that have not finished (queued, running, paused, waiting): the
    version has drained when this is 0."""

    finished: int
    """Finished instances on it (complete, errored, terminated): `restart` would run them
    on it again, so the version is kept while any exist."""

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "version": self.version, "active": self.active,
                "registered_at_ms": self.registered_at_ms, "unfinished": self.unfinished,
                "finished": self.finished}


class Overlap(enum.StrEnum):
    """What a schedule does at a tick while the instance of its previous tick runs."""

    SKIP = "skip"
    ALLOW = "allow"


class Catchup(enum.StrEnum):
    """Which missed ticks a schedule starts after downtime."""

    NONE = "none"
    LAST = "last"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule: an instance of `workflow` at every tick of `cron` in `timezone`."""

    tenant_id: TenantId
    schedule_id: str
    workflow: str
    cron: str
    timezone: str
    params: bytes
    """The instances' params (msgpack)."""

    overlap: Overlap
    catchup: Catchup
    paused: bool
    next_tick_ms: int | None
    """The next tick to fire (None while paused)."""

    last_tick_ms: int | None
    """The latest tick fired (or skipped)."""

    last_instance_id: InstanceId | None
    """The instance the latest started tick created."""

    started: int
    """Instances started so far."""

    skipped: int
    """Ticks that started nothing: missed while down (per `catchup`), overlapping a
    running instance (`overlap` skip), or refused (see `last_error`)."""

    last_error: str | None
    """Why the latest tick could not start an instance (the tenant's active version has
    no such workflow, say); None once one starts again."""

    created_at_ms: int
    updated_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        """The schedule as JSON (`dwf schedule --json`, the API)."""
        return {"tenant_id": self.tenant_id, "id": self.schedule_id,
                "workflow": self.workflow, "cron": self.cron, "timezone": self.timezone,
                "params": codec.to_jsonable(codec.stored_value(self.params)),
                "overlap": self.overlap.value, "catchup": self.catchup.value,
                "paused": self.paused, "next_tick_ms": self.next_tick_ms,
                "last_tick_ms": self.last_tick_ms, "last_instance_id": self.last_instance_id,
                "started": self.started, "skipped": self.skipped,
                "last_error": self.last_error, "created_at_ms": self.created_at_ms,
                "updated_at_ms": self.updated_at_ms}


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """What one firing of a due schedule does, decided from its cron: start an instance
    for each of `ticks` (their ids derived from the schedule and the tick), count
    `missed` ticks as skipped, then wait for `next_tick_ms`. Applied only if the
    schedule still waits for `expected_next_tick_ms` (another worker did not fire it)."""

    tenant_id: TenantId
    schedule_id: str
    expected_next_tick_ms: int
    ticks: tuple[tuple[int, InstanceId], ...]
    missed: int
    next_tick_ms: int | None
    """None: the cron expression has no tick left (the schedule stays, idle)."""


@dataclass(frozen=True, slots=True)
class Fired:
    """What a firing did."""

    started: list[InstanceId]
    skipped: int
    error: str | None = None


PrepareFiring = Callable[[ActiveVersion], list[NewInstance]]
"""Decides, inside the firing transaction, the instances to insert for the tenant's active
version (raising a DwfError to start none and record why on the schedule)."""


class LifecycleStorage(abc.ABC):
    """The code-lifecycle part of `Storage` (see the module docstring)."""

    # -- replay and upgrades ---------------------------------------------------------

    @abc.abstractmethod
    async def instance_inputs(self, tenant_id: TenantId,
                              instance_id: str) -> InstanceInputs | None:
        """An instance and its journal as they are now, without claiming it."""

    @abc.abstractmethod
    async def unfinished_instances(self, tenant_id: TenantId) -> list[InstanceId]:
        """The tenant's instances that have not finished, oldest first."""

    @abc.abstractmethod
    async def move_instance(self, tenant_id: TenantId, move: VersionMove) -> None:
        """Pin the instance to `move.to_sha256` and add the move to its history, in one
        transaction, if it is still on `from_sha256`, in an `UPGRADABLE` status, with the
        journal that was checked; else change nothing and raise InvalidState saying why
        (UnknownInstance if there is none)."""

    @abc.abstractmethod
    async def instance_upgrades(self, tenant_id: TenantId,
                                instance_id: str) -> list[UpgradeRecord]:
        """The instance's moves between versions, oldest first."""

    # -- versions ----------------------------------------------------------------------

    @abc.abstractmethod
    async def version_usage(self, tenant_id: TenantId) -> list[VersionUsage]:
        """Each of the tenant's versions, oldest first, with how many of its instances
        are pinned to it (UnknownTenant if it has none)."""

    @abc.abstractmethod
    async def prune_versions(self, tenant_id: TenantId) -> list[VersionUsage]:
        """Delete the tenant's versions that are not active and have no instance, in one
        transaction, and the stored bytes of modules no tenant version or instance uses
        any more; returns what it deleted. Version numbers are never given out again."""

    # -- schedules ---------------------------------------------------------------------

    @abc.abstractmethod
    async def create_schedule(self, schedule: Schedule) -> None:
        """Store a new schedule (DuplicateSchedule if the tenant has one by that id,
        UnknownTenant if it has no module)."""

    @abc.abstractmethod
    async def schedules(self, tenant_id: TenantId | None) -> list[Schedule]:
        """Schedules of one tenant or all, by tenant then id."""

    @abc.abstractmethod
    async def schedule(self, tenant_id: TenantId, schedule_id: str) -> Schedule | None: ...

    @abc.abstractmethod
    async def set_schedule_paused(self, tenant_id: TenantId, schedule_id: str, paused: bool,
                                  next_tick_ms: int | None) -> Schedule | None:
        """Pause (next_tick_ms None) or resume (from `next_tick_ms`) a schedule; None if
        there is no such schedule."""

    @abc.abstractmethod
    async def delete_schedule(self, tenant_id: TenantId, schedule_id: str) -> bool:
        """Delete a schedule (its instances stay); False if there was none."""

    @abc.abstractmethod
    async def due_schedules(self, now_ms: int, limit: int) -> list[Schedule]:
        """Schedules not paused whose next tick is at or before `now_ms`, earliest first."""

    @abc.abstractmethod
    async def next_schedule_tick_ms(self) -> int | None:
        """The earliest next tick of any schedule not paused."""

    @abc.abstractmethod
    async def fire_schedule(self, firing: ScheduleFiring,
                            prepare: PrepareFiring) -> Fired | None:
        """Apply `firing` in one transaction, if the schedule still waits for its
        `expected_next_tick_ms` (None otherwise: another worker fired it). Instances whose
        id exists already are not created again. With overlap `skip`, ticks are skipped
        while the schedule's last instance has not finished."""

    # -- module sources ----------------------------------------------------------------

    @abc.abstractmethod
    async def module_source_stamp(self, tenant_id: TenantId) -> str | None:
        """What identified the tenant's module source when it was last loaded (an ETag,
        a file's mtime and size, a sha256), whoever loaded it."""

    @abc.abstractmethod
    async def set_module_source_stamp(self, tenant_id: TenantId, stamp: str,
                                      sha256: ModuleSha) -> None:
        """Remember that the module `sha256` was loaded from the source as `stamp`."""


class Row(Protocol):
    """A row whose columns are found by name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, column: str, /) -> Any: ...


def usage_of(row: Row) -> VersionUsage:
    """A version and its instance counts, from a row of the backends' usage query."""
    return VersionUsage(ModuleSha(row["sha256"]), row["version"], bool(row["active"]),
                        row["registered_at_ms"], row["unfinished"], row["finished"])


def schedule_of(row: Row) -> Schedule:
    """A `schedules` row (all its columns)."""
    return Schedule(
        TenantId(row["tenant_id"]), row["schedule_id"], row["workflow"], row["cron"],
        row["timezone"], bytes(row["params"]), Overlap(row["overlap"]),
        Catchup(row["catchup"]), bool(row["paused"]), row["next_tick_ms"],
        row["last_tick_ms"],
        InstanceId(row["last_instance_id"]) if row["last_instance_id"] else None,
        row["started"], row["skipped"], row["last_error"], row["created_at_ms"],
        row["updated_at_ms"])
