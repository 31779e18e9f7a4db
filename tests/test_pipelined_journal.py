"""The guest runs ahead of its journal's commits; the journal on disk stays a prefix.

A write the database refuses (a real SQLite error, raised by a trigger) must stop every
later write of that invocation: otherwise the journal would have a hole, and replay would
hand the guest a result for a step that follows one that never happened.
"""

from __future__ import annotations

from helpers import run_workflow, settle, start

from host import DurableEngine, Status, TenantId
from host.invocation import PIPELINE_WINDOW


async def test_a_refused_journal_write_stops_every_later_one(engine: DurableEngine,
                                                             kit: TenantId) -> None:
    await engine.db.connection.execute(
        "CREATE TRIGGER refuse_position_3 BEFORE INSERT ON steps WHEN NEW.position = 3 "
        "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END")
    status = await run_workflow(engine, kit, "steps", {"count": 8})
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "HostError"
    assert "the disk says no" in status.error["message"]
    assert [0, 1, 2] == [step["position"] for step in status.steps]


async def test_a_guest_further_ahead_than_the_window_waits_and_loses_nothing(
        engine: DurableEngine, kit: TenantId) -> None:
    count = PIPELINE_WINDOW * 3 + 5
    status = await run_workflow(engine, kit, "steps", {"count": count})
    assert (Status.COMPLETE, {"count": count}) == (status.status, status.output)
    assert list(range(count)) == [step["position"] for step in status.steps]
    assert all(step["state"] == "ok" for step in status.steps)


async def test_terminated_while_running_its_queued_writes_are_dropped(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 5})
    [claim] = await engine.claim_due(1)
    await engine.instances.terminate(kit, instance)
    await engine.run_claimed(claim)
    status = await settle(engine, kit, instance)
    assert (Status.TERMINATED, []) == (status.status, status.steps)
