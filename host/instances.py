"""Instance state in SQLite: creation, status, control (pause/resume/...), events.

Every query names the tenant: an instance id is only unique per tenant, and a tenant can
never reach another tenant's rows by guessing ids.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .clock import Clock
from .database import Database, keeps_fences, one_write
from .errors import DuplicateInstance, InvalidInput, InvalidState, UnknownInstance, UnknownWorkflow
from .ids import InstanceId, ModuleSha, TenantId, instance_id, new_instance_id
from .journal import StepKind, StepRecord, StepState
from .registry import ModuleRegistry


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"

    @property
    def finished(self) -> bool:
        return self in (Status.ERRORED, Status.TERMINATED, Status.COMPLETE)


FINISHED = tuple(s.value for s in Status if s.finished)


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    """One instance to create."""

    workflow: str
    params: Any = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceStatus:
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


_STEP_COLUMNS = ("position", "kind", "name", "occurrence", "state", "started_at_ms", "result",
                 "error_name", "error_message", "attempts", "wake_at_ms", "finished_at_ms")
_KINDS = {kind.value: kind for kind in StepKind}
_STATES = {state.value: state for state in StepState}


def _record(values: tuple[Any, ...]) -> StepRecord:
    """A journal record from a `steps` row's `_STEP_COLUMNS`, in that order."""
    (position, kind, name, occurrence, state, started, result, error_name, error_message,
     attempts, wake_at, finished) = values
    return StepRecord(position, _KINDS[kind], name, occurrence, _STATES[state], started,
                      result, error_name, error_message, attempts, wake_at, finished)


def record_from_row(row: sqlite3.Row) -> StepRecord:
    return _record(tuple(row[column] for column in _STEP_COLUMNS))


def load_journal(conn: sqlite3.Connection, tenant_id: TenantId,
                 instance_id: str) -> list[StepRecord]:
    """An instance's journal in order, on a connection of the caller's thread.

    Plain tuples, not `sqlite3.Row`s, and the enums by dict: a wake loads every recorded
    step before replaying it, and building records field by field from Rows cost as much
    as replaying them.
    """
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(f"SELECT {', '.join(_STEP_COLUMNS)} FROM steps "
                   "WHERE tenant_id = ? AND instance_id = ? ORDER BY position",
                   (tenant_id, instance_id))
    return [_record(values) for values in cursor]


def step_view(record: StepRecord) -> dict[str, Any]:
    return {
        "position": record.position, "kind": record.kind.value, "name": record.name,
        "occurrence": record.occurrence, "state": record.state.value,
        "attempts": record.attempts,
        "result": codec.to_jsonable(codec.unpack(record.result))
        if record.result is not None else None,
        "error": {"name": record.error_name, "message": record.error_message}
        if record.error_name else None,
        "wake_at_ms": record.wake_at_ms, "started_at_ms": record.started_at_ms,
        "finished_at_ms": record.finished_at_ms,
    }


def step_row(tenant_id: str, instance_id: str, record: StepRecord) -> tuple[Any, ...]:
    """The values `save_step` writes, taken when the record is handed to the writer."""
    return (tenant_id, instance_id, record.position, record.kind.value, record.name,
            record.occurrence, record.state.value, record.result, record.error_name,
            record.error_message, record.attempts, record.wake_at_ms, record.started_at_ms,
            record.finished_at_ms)


SAVE_STEP_SQL = (
    "INSERT OR REPLACE INTO steps (tenant_id, instance_id, position, kind, name, "
    "occurrence, state, result, error_name, error_message, attempts, wake_at_ms, "
    "started_at_ms, finished_at_ms) VALUES ")
STEP_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # one `step_row`


def save_step(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Write one journal position (a `step_row`); runs inside a writer op."""
    conn.execute(SAVE_STEP_SQL + STEP_ROW_PLACEHOLDERS, row)


ControlChange = tuple[Status, str, tuple[Any, ...]]
"""A control action's change: the new status, more `column = ?, ` assignments, their values."""


class InstanceStore:
    def __init__(self, db: Database, registry: ModuleRegistry, clock: Clock,
                 on_due: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock
        self.on_due = on_due  # nudges an in-process scheduler when work becomes due

    # -- creation ----------------------------------------------------------------

    async def create(self, tenant_id: TenantId, workflow: str, params: Any = None,
                     id: str | None = None) -> InstanceId:
        [created] = await self.create_batch(tenant_id, [InstanceRequest(workflow, params, id)])
        return created

    async def create_batch(self, tenant_id: TenantId,
                           requests: list[InstanceRequest]) -> list[InstanceId]:
        """Create all instances or none; each runs the tenant's active module version."""
        if not requests:
            raise InvalidInput("create_batch needs at least one instance")
        packed = [codec.pack(request.params) for request in requests]

        # One writer op checks against the active version and inserts, atomically.
        @keeps_fences
        def create(conn: sqlite3.Connection) -> list[InstanceId]:
            sha256, workflows, limits = self.registry.active_now(conn, tenant_id)
            prepared = []
            for request, params in zip(requests, packed, strict=True):
                if request.workflow not in workflows:
                    raise UnknownWorkflow(tenant_id, request.workflow, list(workflows))
                if len(params) > limits.max_payload_bytes:
                    raise InvalidInput(f"params are {len(params)} bytes, over the tenant's "
                                       f"limit of {limits.max_payload_bytes} bytes")
                new_id = (instance_id(request.id) if request.id is not None
                          else new_instance_id())
                prepared.append((new_id, request.workflow, params))
            if len({p[0] for p in prepared}) != len(prepared):
                raise InvalidInput("create_batch names the same instance id twice")
            for new_id, workflow, params in prepared:
                self.insert(conn, tenant_id, new_id, workflow, sha256, params)
            return [p[0] for p in prepared]
        if len(requests) == 1:
            create = one_write(create)  # a failed INSERT is undone by SQLite itself
        created = await self.db.write(create)
        self.on_due()
        return created

    def insert(self, conn: sqlite3.Connection, tenant_id: TenantId,
               new_id: InstanceId, workflow: str, sha256: ModuleSha, params: bytes,
               parent: InstanceId | None = None) -> None:
        """Insert one queued instance; runs inside a writer op."""
        now = self.clock.now_ms()
        try:
            conn.execute(
                "INSERT INTO instances (tenant_id, instance_id, workflow, module_sha256, "
                "params, status, wake_at_ms, parent_instance_id, created_at_ms, "
                "updated_at_ms) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                (tenant_id, new_id, workflow, sha256, params, now, parent, now, now))
        except sqlite3.IntegrityError:
            raise DuplicateInstance(tenant_id, new_id) from None

    # -- reading -----------------------------------------------------------------

    async def _row(self, tenant_id: TenantId, instance_id: str,
                   columns: str = "*") -> sqlite3.Row:
        row = await self.db.fetchone(
            f"SELECT {columns} FROM instances WHERE tenant_id = ? AND instance_id = ?",
            (tenant_id, instance_id))
        if row is None:
            raise UnknownInstance(tenant_id, instance_id)
        return row

    async def current_status(self, tenant_id: TenantId, instance_id: str) -> Status:
        """The status alone: no params or output to decode (for waiters, once each and
        when they poll), read by key on the calling thread (`Database.peek`)."""
        row = self.db.peek("SELECT status FROM instances WHERE tenant_id = ? AND "
                           "instance_id = ?", (tenant_id, instance_id))
        if row is None:
            raise UnknownInstance(tenant_id, instance_id)
        return Status(row["status"])

    async def steps(self, tenant_id: TenantId, instance_id: str) -> list[StepRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM steps WHERE tenant_id = ? AND instance_id = ? ORDER BY position",
            (tenant_id, instance_id))
        return [record_from_row(row) for row in rows]

    async def status(self, tenant_id: TenantId, instance_id: str,
                     with_steps: bool = True) -> InstanceStatus:
        row = await self._row(tenant_id, instance_id)
        steps = ([step_view(r) for r in await self.steps(tenant_id, instance_id)]
                 if with_steps else [])
        return _status_from_row(row, steps)

    async def list(self, tenant_id: TenantId | None = None, status: Status | None = None,
                   limit: int = 1000) -> list[InstanceStatus]:
        clauses: list[str] = []
        params: list[str] = []
        if tenant_id is not None:
            clauses.append("tenant_id = ?")
            params.append(tenant_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.db.fetchall(
            f"SELECT * FROM instances {where} ORDER BY created_at_ms, instance_id LIMIT ?",
            (*params, limit))
        return [_status_from_row(row, []) for row in rows]

    # -- control -----------------------------------------------------------------

    async def _transition(self, tenant_id: TenantId, instance_id: str,
                          decide: Callable[[Status], ControlChange | None], action: str) -> Status:
        """Apply `decide`'s change to the instance; returns the status it set."""
        async with self.db.transaction() as conn:
            async with conn.execute(
                    "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ?",
                    (tenant_id, instance_id)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise UnknownInstance(tenant_id, instance_id)
            current = Status(row["status"])
            change = decide(current)
            if change is None:
                raise InvalidState(f"cannot {action} instance {instance_id!r}: it is "
                                   f"{current.value}")
            status, assignments, values = change
            await conn.execute(
                f"UPDATE instances SET status = ?, {assignments}updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (status.value, *values, self.clock.now_ms(), tenant_id, instance_id))
        return status

    # Each control action returns the status it set: a worker may move the instance on
    # before the caller could read it back (a resumed one is claimed at once).

    async def pause(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> ControlChange | None:
            if current in (Status.QUEUED, Status.WAITING):
                return Status.PAUSED, "", ()
            if current is Status.RUNNING:
                # The invocation stops at its next step boundary and settles as paused.
                return Status.WAITING_FOR_PAUSE, "", ()
            return None
        return await self._transition(tenant_id, instance_id, decide, "pause")

    async def resume(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> ControlChange | None:
            if current is Status.PAUSED:
                # Replay decides what is still pending; timers keep their recorded times.
                return Status.QUEUED, "wake_at_ms = ?, ", (self.clock.now_ms(),)
            if current is Status.WAITING_FOR_PAUSE:
                return Status.RUNNING, "", ()
            return None
        status = await self._transition(tenant_id, instance_id, decide, "resume")
        self.on_due()
        return status

    async def terminate(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> ControlChange | None:
            if current.finished:
                return None
            return (Status.TERMINATED, "run_id = NULL, wake_at_ms = NULL, "
                    "waiting_event_type = NULL, finished_at_ms = ?, ", (self.clock.now_ms(),))
        return await self._transition(tenant_id, instance_id, decide, "terminate")

    async def restart(self, tenant_id: TenantId, instance_id: str) -> Status:
        """Run again from the start on the same module version, with an empty journal."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ?, "
                "waiting_event_type = NULL, output = NULL, error_name = NULL, "
                "error_message = NULL, finished_at_ms = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (self.clock.now_ms(), self.clock.now_ms(), tenant_id, instance_id))
            if cursor.rowcount == 0:
                raise UnknownInstance(tenant_id, instance_id)
            await conn.execute("DELETE FROM steps WHERE tenant_id = ? AND instance_id = ?",
                               (tenant_id, instance_id))
            await conn.execute("DELETE FROM events WHERE tenant_id = ? AND instance_id = ? "
                               "AND consumed_position IS NOT NULL", (tenant_id, instance_id))
        self.on_due()
        return Status.QUEUED

    # -- events ------------------------------------------------------------------

    async def send_event(self, tenant_id: TenantId, instance_id: str, event_type: str,
                         payload: Any = None) -> None:
        if not 1 <= len(event_type.encode()) <= 256:
            raise InvalidInput("event type must be 1-256 bytes")
        packed = codec.pack(payload)
        limits = await self.registry.limits_for(tenant_id)
        if len(packed) > limits.max_payload_bytes:
            raise InvalidInput(f"event payload is {len(packed)} bytes, over the tenant's "
                               f"limit of {limits.max_payload_bytes} bytes")
        await self.db.write(
            lambda conn: self.insert_event(conn, tenant_id, instance_id, event_type, packed))
        self.on_due()

    def insert_event(self, conn: sqlite3.Connection, tenant_id: TenantId,
                     instance_id: str, event_type: str, packed: bytes) -> None:
        """Buffer an event and wake its instance if it waits for it; inside a writer op."""
        row = conn.execute(
            "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ?",
            (tenant_id, instance_id)).fetchone()
        if row is None:
            raise UnknownInstance(tenant_id, instance_id)
        if Status(row["status"]).finished:
            raise InvalidState(f"instance {instance_id!r} is {row['status']}: it takes no "
                               "more events")
        now = self.clock.now_ms()
        conn.execute(
            "INSERT INTO events (tenant_id, instance_id, type, payload, sent_at_ms) "
            "VALUES (?, ?, ?, ?, ?)", (tenant_id, instance_id, event_type, packed, now))
        # Wake the instance now if it is blocked on exactly this type.
        conn.execute(
            "UPDATE instances SET wake_at_ms = ? WHERE tenant_id = ? AND instance_id = ? "
            "AND status = 'waiting' AND waiting_event_type = ?",
            (now, tenant_id, instance_id, event_type))


def _status_from_row(row: sqlite3.Row, steps: list[dict[str, Any]]) -> InstanceStatus:
    return InstanceStatus(
        tenant_id=TenantId(row["tenant_id"]), instance_id=InstanceId(row["instance_id"]),
        workflow=row["workflow"], module_sha256=ModuleSha(row["module_sha256"]),
        status=Status(row["status"]), params=codec.unpack(bytes(row["params"])),
        output=codec.unpack(bytes(row["output"])) if row["output"] is not None else None,
        error={"name": row["error_name"], "message": row["error_message"] or ""}
        if row["error_name"] else None,
        created_at_ms=row["created_at_ms"], updated_at_ms=row["updated_at_ms"],
        finished_at_ms=row["finished_at_ms"], wake_at_ms=row["wake_at_ms"],
        waiting_event_type=row["waiting_event_type"],
        parent_instance_id=row["parent_instance_id"], steps=steps)
