"""Rows to records and back, for every backend: a journal row's columns in order, and an
`instances` row (anything indexable by column name: sqlite3.Row, asyncpg.Record)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ..core import codec
from ..core.ids import InstanceId, ModuleSha, TenantId
from ..core.limits import TenantLimits
from ..core.model import DUE_NOW, AttemptRecord, Status, StepKind, StepRecord, StepState
from .records import InstanceQuery, InstanceStatus, ModuleInfo, TenantInfo

STEP_COLUMNS = ("position", "kind", "name", "occurrence", "state", "started_at_ms", "result",
                "error_name", "error_message", "attempts", "wake_at_ms", "finished_at_ms")
"""A journal record's columns, in the order `record_from_values` takes them."""

STEP_ROW_COLUMNS = ("tenant_id", "instance_id", "position", "kind", "name", "occurrence",
                    "state", "result", "error_name", "error_message", "attempts",
                    "wake_at_ms", "started_at_ms", "finished_at_ms")
"""The columns of a `step_row`, in order."""



class Row(Protocol):
    """A row whose columns are found by name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, column: str, /) -> Any: ...


ATTEMPT_COLUMNS = ("position", "attempt", "started_at_ms", "finished_at_ms", "state",
                   "error_name", "error_message", "retry_delay_ms")
"""A kept attempt's columns after its instance's key, in the order `attempt_row` gives."""

_KINDS = {kind.value: kind for kind in StepKind}
_STATES = {state.value: state for state in StepState}
_STATUSES = {status.value: status for status in Status}


def record_from_values(values: tuple[Any, ...]) -> StepRecord:
    """A journal record from a `steps` row's `STEP_COLUMNS`, in that order."""
    (position, kind, name, occurrence, state, started, result, error_name, error_message,
     attempts, wake_at, finished) = values
    return StepRecord(position, _KINDS[kind], name, occurrence, _STATES[state], started,
                      result, error_name, error_message, attempts, wake_at, finished)


PREFETCH_MOST_ROWS = 4096
PREFETCH_MOST_BYTES = 4 << 20
"""How much journal one claim reads for the instances it takes. Waking a sleeper needs its
journal, and reading it with the claim (one query for every instance claimed, on the
connection that claims) saved a read of its own per wake; past this budget, the rest are
read by their runs as before, so a claim of long journals never holds them all at once."""


_PREFETCH_RESULT = 2 + STEP_COLUMNS.index("result")


def prefetched_journals(rows: Iterable[Sequence[Any]]
                        ) -> dict[tuple[str, str], list[StepRecord]]:
    """Journals by (tenant_id, instance_id), from rows of `tenant_id, instance_id,
    *STEP_COLUMNS` in instance then position order, up to the prefetch budget (the rows
    past it are not read): an instance whose rows did not all fit is left out."""
    journals: dict[tuple[str, str], list[StepRecord]] = {}
    rows_left, bytes_left = PREFETCH_MOST_ROWS, PREFETCH_MOST_BYTES
    for row in rows:
        key = (row[0], row[1])
        rows_left -= 1
        result = row[_PREFETCH_RESULT]
        bytes_left -= len(result) if result is not None else 0
        if rows_left < 0 or bytes_left < 0:
            journals.pop(key, None)  # cut short: its run reads it whole
            break
        journal = journals.get(key)
        if journal is None:
            journal = journals[key] = []
        journal.append(record_from_values(tuple(row[2:])))
    return journals


def record_from_row(row: Row) -> StepRecord:
    return record_from_values(tuple(row[column] for column in STEP_COLUMNS))


def step_row(tenant_id: str, instance_id: str, record: StepRecord) -> tuple[Any, ...]:
    """The values of a journal row (`STEP_ROW_COLUMNS`), taken when the record is handed
    to the store."""
    return (tenant_id, instance_id, record.position, record.kind.value, record.name,
            record.occurrence, record.state.value, record.result, record.error_name,
            record.error_message, record.attempts, record.wake_at_ms, record.started_at_ms,
            record.finished_at_ms)


def instance_status(row: Row) -> InstanceStatus:
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


def instance_listing(query: InstanceQuery, mark: Callable[[int], str],
                     find: str) -> tuple[str, list[object]]:
    """The SELECT listing `query`'s instances, newest first, and its parameters, in a
    backend's dialect: `mark(n)` is the n-th parameter ("?" or "$n"), `find` its function
    giving where a text occurs in another, 0 if it does not (instr, strpos)."""
    clauses: list[str] = []
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return mark(len(params))
    for clause, value in (
            ("tenant_id = {}", query.tenant_id),
            ("status = {}", query.status.value if query.status is not None else None),
            ("workflow = {}", query.workflow),
            ("created_at_ms >= {}", query.created_from_ms),
            ("created_at_ms < {}", query.created_before_ms),
            (find + "(instance_id, {}) > 0", query.id_contains),
            ("parent_instance_id = {}", query.parent_instance_id)):
        if value is not None:
            clauses.append(clause.format(param(value)))
    if query.after is not None:
        after = query.after
        marks = ", ".join(param(value) for value in (after.created_at_ms, after.tenant_id,
                                                     after.instance_id))
        clauses.append(f"(created_at_ms, tenant_id, instance_id) < ({marks})")
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    # One tenant's: instances_by_created, backwards.
    return (f"SELECT * FROM instances {where}ORDER BY created_at_ms DESC, tenant_id DESC, "
            f"instance_id DESC LIMIT {param(query.limit)}", params)


def active_module_sql(placeholder: str) -> str:
    """A tenant's active version (the columns `module_info` reads) and its `limits`, by the
    tenant's key, `placeholder` standing for it ("?" on SQLite, "$1" on PostgreSQL)."""
    return ("SELECT tm.sha256, tm.version, tm.registered_at_ms, m.size_bytes, tm.manifest, "
            "TRUE AS active, t.limits FROM tenants t "
            "JOIN tenant_modules tm ON tm.tenant_id = t.tenant_id AND tm.sha256 = t.active_sha256 "
            f"JOIN modules m ON m.sha256 = tm.sha256 WHERE t.tenant_id = {placeholder}")


def module_info(tenant_id: TenantId, row: Row) -> ModuleInfo:
    """One of a tenant's versions: a `tenant_modules` row with the module's `size_bytes`
    and whether it is `active`."""
    manifest = json.loads(row["manifest"])
    return ModuleInfo(tenant_id, ModuleSha(row["sha256"]), row["version"], row["size_bytes"],
                      tuple(manifest["workflows"]), manifest.get("sdk", "?"),
                      row["registered_at_ms"], bool(row["active"]),
                      bool(manifest.get("fetch", False)))


def tenant_info(row: Row, limits: TenantLimits) -> TenantInfo:
    """A tenant with its active version's `manifest`, `active_version` and `versions`."""
    return TenantInfo(TenantId(row["tenant_id"]), ModuleSha(row["active_sha256"]),
                      row["active_version"], tuple(json.loads(row["manifest"])["workflows"]),
                      row["versions"], limits)


def take_event_into(record: StepRecord, event_type: str, payload: bytes, sent_at_ms: int,
                    now: int) -> None:
    """Settle a wait_for_event position with the event it took (what the guest is handed:
    its type, payload and when it was sent)."""
    record.state = StepState.OK
    record.result = codec.pack({"type": event_type, "payload": codec.unpack(payload),
                                "timestamp": sent_at_ms})
    record.wake_at_ms = None
    record.finished_at_ms = now


def attempt_row(tenant_id: str, instance_id: str, attempt: AttemptRecord) -> tuple[Any, ...]:
    """The values of a `step_attempts` row: the instance's key, then `ATTEMPT_COLUMNS`."""
    return (tenant_id, instance_id, attempt.position, attempt.attempt, attempt.started_at_ms,
            attempt.finished_at_ms, attempt.state.value, attempt.error_name,
            attempt.error_message, attempt.retry_delay_ms)


def attempt_from_row(row: Row) -> AttemptRecord:
    return AttemptRecord(row["position"], row["attempt"], row["started_at_ms"],
                         row["finished_at_ms"], _STATES[row["state"]], row["error_name"],
                         row["error_message"], row["retry_delay_ms"])
