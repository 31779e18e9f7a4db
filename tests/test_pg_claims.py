"""What a claim costs the PostgreSQL server: `dwf_claim` (migrations 0006, 0007) reads the
indexes made for it, plans once per connection, and does not read the whole backlog.

PostgreSQL only: these read the server's plans of the function's statements (auto_explain,
sent to the client as notices).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from host import DurableEngine, InstanceRequest, TenantId
from host.store.postgres.runs import CLAIM_SQL
from host.store.postgres.storage import PostgresStorage

pytestmark = pytest.mark.postgres_only("reads PostgreSQL's plans of dwf_claim")

BACKLOG = 600


async def _claim_plans(engine: DurableEngine, claims: int) -> list[str]:
    """The plans of the statements one `dwf_claim` call ran (nested ones included)."""
    store = engine.store
    assert isinstance(store, PostgresStorage)
    plans: list[str] = []
    async with store.db.connection() as conn:
        def heard(_: Any, message: Any) -> None:
            plans.append(str(message.message))
        conn.add_log_listener(heard)
        try:
            await conn.execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                "SET auto_explain.log_analyze = on; "
                "SET auto_explain.log_nested_statements = on; "
                "SET auto_explain.log_level = notice; SET client_min_messages = notice")
            rows = await conn.fetch(CLAIM_SQL, engine.clock.now_ms(), claims, 2, "test",
                                    [f"run-{n}" for n in range(claims)])
            assert claims == len(rows)
        finally:
            await conn.execute("RESET ALL")
            conn.remove_log_listener(heard)
    return plans


def _most_rows(plan: str) -> int:
    """The most rows any node of `plan` produced (per loop)."""
    return max(int(rows) for rows in re.findall(r"actual time=\S+ rows=(\d+)", plan))


async def test_finding_the_tenants_with_due_work_does_not_read_their_backlog(
        engine: DurableEngine, kit: TenantId, testkit_wasm: bytes) -> None:
    """0006 asked EXISTS of every tenant, which the planner (no statistics on a young
    table) ran as a hash of every due instance: a claim read the whole backlog."""
    other = TenantId("other")
    await engine.registry.register(other, testkit_wasm)
    for tenant in (kit, other):
        await engine.instances.create_batch(tenant, [InstanceRequest("echo")] * BACKLOG)
    plans = await _claim_plans(engine, 2)
    [tenants] = [plan for plan in plans if "FOR NO KEY UPDATE OF t" in plan]
    assert "instances_due_by_tenant" in tenants, tenants
    assert _most_rows(tenants) < 10, tenants  # not BACKLOG, nor 2 x BACKLOG


async def test_a_claims_statements_use_generic_plans_on_the_due_index(
        engine: DurableEngine, kit: TenantId) -> None:
    """Planned once per connection: the due time is a parameter in the plan (a custom plan
    would show the value), and the due instances come from their index, in order."""
    await engine.instances.create_batch(kit, [InstanceRequest("echo")] * 20)
    plans = await _claim_plans(engine, 2)
    [taking] = [plan for plan in plans if "WITH rooms" in plan]
    assert re.search(r"Index Scan using instances_due_by_tenant on instances i .*\n.*"
                     r"Index Cond: \(\(tenant_id = rooms\.tenant_id\) "
                     r"AND \(wake_at_ms <= \$\d+\)\)", taking), taking
    assert "Sort Key: i.wake_at_ms" not in taking, taking
