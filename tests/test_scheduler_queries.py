"""The scheduler's queries use the indexes made for them, however many instances there are.

SQLite only: these read SQLite's query plans, and name SQLite's queries. (PostgreSQL plans
by statistics, and on an empty table rightly prefers a scan to any index.)
"""

from __future__ import annotations

import pytest

from host import DurableEngine
from host.store.sqlite.runs import DUE_FOR_TENANT_SQL, DUE_TENANTS_SQL, NEXT_WAKE_SQL

pytestmark = pytest.mark.sqlite_only("reads SQLite's query plans")


async def _plan(engine: DurableEngine, sql: str, params: tuple[object, ...]) -> str:
    rows = await engine.store.db.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
    return " | ".join(str(row["detail"]) for row in rows)


async def test_a_tenants_due_instances_come_from_its_due_index_without_sorting(
        engine: DurableEngine) -> None:
    plan = await _plan(engine, DUE_FOR_TENANT_SQL, ("kit", 0, 8))
    assert "USING INDEX instances_due_by_tenant" in plan and "TEMP B-TREE" not in plan, plan


async def test_finding_tenants_with_due_work_probes_the_due_index(
        engine: DurableEngine) -> None:
    plan = await _plan(engine, DUE_TENANTS_SQL, (0,))
    assert "USING INDEX instances_due_by_tenant" in plan, plan


async def test_the_next_wake_time_comes_from_the_due_index(engine: DurableEngine) -> None:
    plan = await _plan(engine, NEXT_WAKE_SQL, ())
    assert "USING INDEX instances_due" in plan, plan
