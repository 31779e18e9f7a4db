"""SQLite rows to records and back: the journal's `steps` rows and the `instances` rows."""

from __future__ import annotations

import sqlite3
from typing import Any

from ...core import codec
from ...core.ids import InstanceId, ModuleSha, TenantId
from ...core.model import (
    ATTEMPTS_KEPT,
    DUE_NOW,
    AttemptRecord,
    Status,
    StepKind,
    StepRecord,
    StepState,
)
from ..records import InstanceStatus

_STEP_COLUMNS = ("position", "kind", "name", "occurrence", "state", "started_at_ms", "result",
                 "error_name", "error_message", "attempts", "wake_at_ms", "finished_at_ms")
_KINDS = {kind.value: kind for kind in StepKind}
_STATES = {state.value: state for state in StepState}
_STATUSES = {status.value: status for status in Status}


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


ATTEMPT_COLUMNS = ("position", "attempt", "started_at_ms", "finished_at_ms", "state",
                   "error_name", "error_message", "retry_delay_ms")


def attempt_row(tenant_id: str, instance_id: str, attempt: AttemptRecord) -> tuple[Any, ...]:
    """The values `save_attempt` writes: the key, then `ATTEMPT_COLUMNS` in order."""
    return (tenant_id, instance_id, attempt.position, attempt.attempt, attempt.started_at_ms,
            attempt.finished_at_ms, attempt.state.value, attempt.error_name,
            attempt.error_message, attempt.retry_delay_ms)


def attempt_from_row(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(row["position"], row["attempt"], row["started_at_ms"],
                         row["finished_at_ms"], _STATES[row["state"]], row["error_name"],
                         row["error_message"], row["retry_delay_ms"])


def save_attempt(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Write one attempt (an `attempt_row`) and forget the step's attempts older than the
    latest `ATTEMPTS_KEPT`; runs inside a writer op."""
    conn.execute("INSERT OR REPLACE INTO step_attempts (tenant_id, instance_id, "
                 f"{', '.join(ATTEMPT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    tenant_id, instance_id, position, attempt = row[:4]
    if attempt > ATTEMPTS_KEPT:
        conn.execute("DELETE FROM step_attempts WHERE tenant_id = ? AND instance_id = ? "
                     "AND position = ? AND attempt <= ?",
                     (tenant_id, instance_id, position, attempt - ATTEMPTS_KEPT))


def instance_status(row: sqlite3.Row) -> InstanceStatus:
    """An `instances` row (all its columns), without steps."""
    return InstanceStatus(
        tenant_id=TenantId(row["tenant_id"]), instance_id=InstanceId(row["instance_id"]),
        workflow=row["workflow"], module_sha256=ModuleSha(row["module_sha256"]),
        status=_STATUSES[row["status"]], params=codec.stored_value(bytes(row["params"])),
        output=codec.stored_value(bytes(row["output"])) if row["output"] is not None else None,
        error={"name": row["error_name"], "message": row["error_message"] or ""}
        if row["error_name"] else None,
        created_at_ms=row["created_at_ms"], updated_at_ms=row["updated_at_ms"],
        finished_at_ms=row["finished_at_ms"],
        wake_at_ms=row["wake_at_ms"] if row["wake_at_ms"] != DUE_NOW else None,
        waiting_event_type=row["waiting_event_type"],
        parent_instance_id=row["parent_instance_id"])
