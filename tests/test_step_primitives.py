"""Each step primitive, end to end: a real guest module, a real SQLite journal."""

from __future__ import annotations

from helpers import run_workflow, settle, start, step_names

from host import DurableEngine, ManualClock, Status, TenantId


async def test_echo_returns_params_as_output(engine: DurableEngine, kit: TenantId) -> None:
    params = {"name": "ada", "n": [1, 2, 3], "ok": True}
    status = await run_workflow(engine, kit, "echo", params)
    assert (Status.COMPLETE, params) == (status.status, status.output)


async def test_repeated_step_names_are_told_apart_by_occurrence(
        engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "steps", {"count": 4})
    assert status.output == {"count": 4}
    assert [(s["name"], s["occurrence"]) for s in status.steps] == [
        ("step", 1), ("step", 2), ("step", 3), ("step", 4)]
    assert [s["result"] for s in status.steps] == [{"i": i} for i in range(4)]


async def test_sleep_suspends_until_due_and_replays_earlier_steps_from_journal(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 5000})
    status = await settle(engine, kit, instance)
    assert status.status is Status.WAITING
    assert status.wake_at_ms == clock.now_ms() + 5000
    before = status.steps[0]

    clock.advance(4999)
    assert (await settle(engine, kit, instance)).status is Status.WAITING

    clock.advance(1)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "done") == (status.status, status.output)
    assert step_names(status) == [("do", "before", "ok"), ("sleep", "nap", "ok"),
                                  ("do", "after", "ok")]
    # The step before the sleep was answered from the journal, not run again.
    assert before == status.steps[0]


async def test_sleep_until_wakes_at_the_given_time(engine: DurableEngine, kit: TenantId,
                                                   clock: ManualClock) -> None:
    until = clock.now_ms() + 60_000
    instance = await start(engine, kit, "sleep_until", {"until_ms": until})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, until) == (status.status, status.wake_at_ms)
    clock.advance(60_000)
    assert (await settle(engine, kit, instance)).output == "woke"


async def test_a_sleep_that_is_already_due_does_not_suspend(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    status = await run_workflow(engine, kit, "sleep_until", {"until_ms": clock.now_ms() - 1})
    assert status.output == "woke"


async def test_failing_workflow_reports_its_error(engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "fail")
    assert status.status is Status.ERRORED
    assert status.error == {"name": "Boom", "message": "requested failure"}


async def test_guest_can_catch_a_failed_step(engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "caught")
    assert (Status.COMPLETE, "recovered") == (status.status, status.output)
    assert [s["state"] for s in status.steps] == ["error", "ok"]


async def test_step_result_over_the_limit_fails_the_instance(
        engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "big", {"bytes": 2 * 1024 * 1024})
    assert status.status is Status.ERRORED
    assert status.error is not None and status.error["name"] == "PayloadTooLarge"


async def test_step_result_under_the_limit_is_journaled(engine: DurableEngine,
                                                        kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "big", {"bytes": 512 * 1024})
    assert status.status is Status.COMPLETE


async def test_the_event_timestamp_is_the_creation_time_on_every_replay(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "stamped")
    created = (await engine.instances.status(kit, instance)).created_at_ms
    clock.advance(5000)  # it first runs later than it was created
    await settle(engine, kit, instance)
    clock.advance(1000)
    assert [created, created] == (await settle(engine, kit, instance)).output
    await engine.instances.restart(kit, instance)
    clock.advance(60_000)
    await settle(engine, kit, instance)
    clock.advance(1000)
    assert [created, created] == (await settle(engine, kit, instance)).output
