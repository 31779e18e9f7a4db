"""The journal's `steps` rows on SQLite: loading a journal, saving a position."""

from __future__ import annotations

import sqlite3
from typing import Any

from ...core.ids import TenantId
from ...core.model import ATTEMPTS_KEPT, StepRecord
from ..rows import (
    ATTEMPT_COLUMNS,
    STEP_COLUMNS,
    STEP_ROW_COLUMNS,
    attempt_from_row,
    attempt_row,
    instance_status,
    record_from_row,
    record_from_values,
    step_row,
)

__all__ = ["SAVE_STEP_SQL", "STEP_ROW_PLACEHOLDERS", "attempt_from_row", "attempt_row",
           "instance_status", "load_journal", "record_from_row", "save_attempt", "save_step",
           "step_row"]


def load_journal(conn: sqlite3.Connection, tenant_id: TenantId,
                 instance_id: str) -> list[StepRecord]:
    """An instance's journal in order, on a connection of the caller's thread.

    Plain tuples, not `sqlite3.Row`s, and the enums by dict: a wake loads every recorded
    step before replaying it, and building records field by field from Rows cost as much
    as replaying them.
    """
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps "
                   "WHERE tenant_id = ? AND instance_id = ? ORDER BY position",
                   (tenant_id, instance_id))
    return [record_from_values(values) for values in cursor]


SAVE_STEP_SQL = f"INSERT OR REPLACE INTO steps ({', '.join(STEP_ROW_COLUMNS)}) VALUES "
STEP_ROW_PLACEHOLDERS = "(" + ", ".join("?" * len(STEP_ROW_COLUMNS)) + ")"  # one `step_row`


def save_step(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Write one journal position (a `step_row`); runs inside a writer op."""
    conn.execute(SAVE_STEP_SQL + STEP_ROW_PLACEHOLDERS, row)


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
