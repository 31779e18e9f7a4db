"""The guest runs ahead of its journal's commits; the journal on disk stays a prefix.

A write the database refuses (a real database error, raised by a trigger) must stop every
later write of that invocation: otherwise the journal would have a hole, and replay would
hand the guest a result for a step that follows one that never happened.
"""

from __future__ import annotations

import asyncio

from helpers import refuse_journal_position, run_workflow, sql, start

from host import DurableEngine, Status, TenantId
from host.durable.invocation import PIPELINE_WINDOW


async def test_a_refused_journal_write_stops_every_later_one(engine: DurableEngine,
                                                             kit: TenantId) -> None:
    await refuse_journal_position(engine, 3)
    status = await run_workflow(engine, kit, "steps", {"count": 8, "unbatched": True})
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "HostError"
    assert "the disk says no" in status.error["message"]
    assert [0, 1, 2] == [step["position"] for step in status.steps]


async def test_a_refused_row_fails_its_whole_step_batch_and_every_later_one(
        engine: DurableEngine, kit: TenantId) -> None:
    # The SDK hands steps over 16 at a time: 0-15, 16-31 (refused at 20), 32-39.
    await refuse_journal_position(engine, 20)
    status = await run_workflow(engine, kit, "steps", {"count": 40})
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "HostError"
    assert list(range(16)) == [step["position"] for step in status.steps]


async def test_a_guest_further_ahead_than_the_window_waits_and_loses_nothing(
        engine: DurableEngine, kit: TenantId) -> None:
    count = PIPELINE_WINDOW * 3 + 5
    status = await run_workflow(engine, kit, "steps", {"count": count})
    assert (Status.COMPLETE, {"count": count}) == (status.status, status.output)
    assert list(range(count)) == [step["position"] for step in status.steps]
    assert all(step["state"] == "ok" for step in status.steps)


async def test_terminated_mid_run_no_journal_write_lands_after_the_terminate(
        engine: DurableEngine, kit: TenantId) -> None:
    # Long enough to still be running when the terminate commits: the guest is held to
    # the pipeline window, so 9,000 steps take many commits.
    instance = await start(engine, kit, "steps", {"count": 9000})
    [claim] = await engine.claim_due(1)
    running = asyncio.create_task(engine.run_claimed(claim))

    async def journaled() -> int:
        [row] = await sql(engine, "SELECT COUNT(*) AS n FROM steps WHERE tenant_id = ? "
                                  "AND instance_id = ?", kit, instance)
        return int(row["n"])

    while await journaled() == 0:
        await asyncio.sleep(0.001)
    await engine.instances.terminate(kit, instance)
    at_terminate = await journaled()
    await running

    status = await engine.instances.status(kit, instance)
    assert Status.TERMINATED == status.status
    assert 0 < at_terminate < 9000, "the terminate should land mid-run"
    assert at_terminate == len(status.steps), "writes queued behind the terminate are dropped"
