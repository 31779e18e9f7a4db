"""One behaviour suite, run against every guest SDK (C and TypeScript).

Each test drives the same workflow (same name, params and output) from
tests/guests/testkit.c and tests/guests/js/testkit.ts through a real engine on a
real SQLite file: steps, retries and backoff, non-retryable errors, sleeps,
buffered events and timeouts, children, nondeterminism, and the sandbox's limits.
What an SDK adds of its own is tested beside it (test_sdk_ts.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import change_workflow_under, run_workflow, settle, start, step_names
from sdk_guests import SDKS, first_line, sdk_guest

from host import DurableEngine, ManualClock, Status, TenantId


@pytest.fixture(params=SDKS)
def sdk(request: pytest.FixtureRequest, built: object) -> str:
    return str(request.param)


@pytest.fixture
async def kit(engine: DurableEngine, sdk: str) -> TenantId:
    """A tenant running the testkit of the SDK under test."""
    tenant = TenantId(f"kit-{sdk}")
    await engine.registry.register(tenant, sdk_guest(sdk, "testkit"))
    return tenant


async def _register(engine: DurableEngine, sdk: str, name: str, **limits: int) -> TenantId:
    tenant = TenantId(f"{name.replace('_', '-')}-{sdk}")
    await engine.registry.register(tenant, sdk_guest(sdk, name))
    if limits:
        await engine.registry.set_limits(tenant, limits)
    return tenant


def _journal(status: Any) -> list[tuple[Any, ...]]:
    return [(s["position"], s["kind"], s["name"], s["occurrence"], s["state"], s["result"],
             s["attempts"]) for s in status.steps]


# ---- steps -----------------------------------------------------------------------

async def test_echo_returns_params_as_output(engine: DurableEngine, kit: TenantId) -> None:
    params = {"name": "ada", "n": [1, 2, 3], "ok": True, "x": 1.5, "none": None}
    status = await run_workflow(engine, kit, "echo", params)
    assert (Status.COMPLETE, params) == (status.status, status.output)


@pytest.mark.parametrize("unbatched", [False, True])
async def test_repeated_step_names_are_told_apart_by_occurrence(
        engine: DurableEngine, kit: TenantId, unbatched: bool) -> None:
    status = await run_workflow(engine, kit, "steps", {"count": 20, "unbatched": unbatched})
    assert (Status.COMPLETE, {"count": 20}) == (status.status, status.output)
    assert [("step", n + 1, {"i": n}) for n in range(20)] == [
        (s["name"], s["occurrence"], s["result"]) for s in status.steps]


async def test_new_steps_reach_the_writer_as_one_write_per_batch(  # proposal 0002
        engine: DurableEngine, kit: TenantId) -> None:
    writer = engine.store.db.writer
    assert writer is not None

    async def writes_for(params: dict[str, Any]) -> int:
        before = writer.writes
        status = await run_workflow(engine, kit, "steps", params)
        assert Status.COMPLETE is status.status
        return writer.writes - before

    # Ten asked-for steps are ten journal writes; batched, they are one.
    assert 9 == (await writes_for({"count": 10, "unbatched": True})
                 - await writes_for({"count": 10}))


async def test_step_result_over_the_limit_fails_and_under_it_is_journaled(
        engine: DurableEngine, kit: TenantId) -> None:
    over = await run_workflow(engine, kit, "big", {"bytes": 2 * 1024 * 1024})
    assert (Status.ERRORED, "PayloadTooLarge") == (over.status, over.error["name"])
    under = await run_workflow(engine, kit, "big", {"bytes": 512 * 1024, "kind": "str"})
    assert (Status.COMPLETE, "x" * 512 * 1024) == (under.status, under.steps[0]["result"])


async def test_a_failing_workflow_reports_its_error(engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "fail")
    assert status.status is Status.ERRORED
    assert ("Boom", "requested failure") == (status.error["name"],
                                             first_line(status.error["message"]))


async def test_a_workflow_can_catch_a_failed_step(engine: DurableEngine, kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "caught")
    assert (Status.COMPLETE, "recovered") == (status.status, status.output)
    assert [("explode", "error"), ("recover", "ok")] == [(s["name"], s["state"])
                                                         for s in status.steps]
    assert {"name": "Fatal", "message": "this step always fails"} == status.steps[0]["error"]


# ---- retries -------------------------------------------------------------------------

async def _flaky(engine: DurableEngine, kit: TenantId, **params: object) -> str:
    return await start(engine, kit, "flaky", {"fail_attempts": 2, "limit": 5, "delay_ms": 1000,
                                              "backoff": "exponential", "non_retryable": False,
                                              **params})


@pytest.mark.parametrize(("backoff", "delays"), [
    ("exponential", [1000, 2000, 4000]), ("linear", [1000, 2000, 3000]),
    ("constant", [1000, 1000, 1000]),
])
async def test_retries_wait_per_backoff_then_succeed(
        engine: DurableEngine, kit: TenantId, clock: ManualClock, backoff: str,
        delays: list[int]) -> None:
    instance = await _flaky(engine, kit, fail_attempts=3, backoff=backoff)
    for delay in delays:
        status = await settle(engine, kit, instance)
        assert (Status.WAITING, clock.now_ms() + delay) == (status.status, status.wake_at_ms)
        clock.advance(delay - 1)
        assert (await settle(engine, kit, instance)).status is Status.WAITING  # not early
        clock.advance(1)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"attempt": 4}, 4) == (status.status, status.output,
                                                    status.steps[0]["attempts"])


async def test_retries_exhausted_fail_the_step_for_good(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await _flaky(engine, kit, fail_attempts=100, limit=2, backoff="constant")
    for _ in range(2):
        await settle(engine, kit, instance)
        clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert (Status.ERRORED, "Flaky") == (status.status, status.error["name"])
    assert ("error", 3, {"name": "Flaky", "message": "attempt 3 fails"}) == (
        status.steps[0]["state"], status.steps[0]["attempts"], status.steps[0]["error"])


async def test_a_non_retryable_error_stops_at_the_first_attempt(
        engine: DurableEngine, kit: TenantId) -> None:
    status = await settle(engine, kit, await _flaky(engine, kit, non_retryable=True))
    assert (Status.ERRORED, "Fatal", 1) == (status.status, status.error["name"],
                                           status.steps[0]["attempts"])


# ---- sleeps ------------------------------------------------------------------------

async def test_sleep_suspends_until_due_and_replays_earlier_steps(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 5000})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, clock.now_ms() + 5000) == (status.status, status.wake_at_ms)
    before = status.steps[0]
    clock.advance(4999)
    assert (await settle(engine, kit, instance)).status is Status.WAITING
    clock.advance(1)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "done") == (status.status, status.output)
    assert [("do", "before", "ok"), ("sleep", "nap", "ok"), ("do", "after", "ok")] \
        == step_names(status)
    assert before == status.steps[0]  # answered from the journal, not run again


async def test_a_sleep_that_is_already_due_does_not_suspend(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    status = await run_workflow(engine, kit, "sleep_until", {"until_ms": clock.now_ms() - 1})
    assert (Status.COMPLETE, "woke") == (status.status, status.output)


async def test_sleep_until_wakes_at_the_given_time(engine: DurableEngine, kit: TenantId,
                                                   clock: ManualClock) -> None:
    until = clock.now_ms() + 60_000
    instance = await start(engine, kit, "sleep_until", {"until_ms": until})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, until) == (status.status, status.wake_at_ms)
    clock.advance(60_000)
    assert "woke" == (await settle(engine, kit, instance)).output


# ---- events ----------------------------------------------------------------------------

async def test_an_event_sent_while_waiting_wakes_the_instance(engine: DurableEngine,
                                                              kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 60_000})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, "approval") == (status.status, status.waiting_event_type)
    await engine.instances.send_event(kit, instance, "unrelated", 1)
    assert (await settle(engine, kit, instance)).status is Status.WAITING
    await engine.instances.send_event(kit, instance, "approval", {"approved": True})
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"approved": True}) == (status.status, status.output)


async def test_events_sent_before_the_wait_are_buffered_first_in_first_out(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter2", {"type": "tick"})
    for payload in ("one", "two", "three"):
        await engine.instances.send_event(kit, instance, "tick", payload)
    assert ["one", "two"] == (await settle(engine, kit, instance)).output


async def test_a_wait_times_out_with_a_catchable_error(engine: DurableEngine, kit: TenantId,
                                                       clock: ManualClock) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 1000})
    status = await settle(engine, kit, instance)
    assert clock.now_ms() + 1000 == status.wake_at_ms
    clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "timeout") == (status.status, status.output)
    assert ("error", "WaitForEventTimeout") == (status.steps[0]["state"],
                                                status.steps[0]["error"]["name"])


# ---- children and events between instances -------------------------------------------------

async def test_a_workflow_creates_a_child_of_its_own_tenant(engine: DurableEngine,
                                                            kit: TenantId) -> None:
    status = await run_workflow(engine, kit, "spawn",
                                {"workflow": "echo", "id": "child-1", "params": {"hi": 1}})
    assert {"id": "child-1"} == status.output
    child = await engine.instances.status(kit, "child-1")
    assert (Status.COMPLETE, {"hi": 1}, status.instance_id, status.module_sha256) == (
        child.status, child.output, child.parent_instance_id, child.module_sha256)
    duplicate = await run_workflow(engine, kit, "spawn", {"workflow": "echo", "id": "child-1"})
    assert (Status.ERRORED, "DuplicateInstance") == (duplicate.status, duplicate.error["name"])


async def test_a_workflow_sends_events_to_its_own_tenants_instances(
        engine: DurableEngine, kit: TenantId) -> None:
    waiter = await start(engine, kit, "waiter", {"type": "ping", "timeout_ms": 60_000})
    await settle(engine, kit, waiter)
    await run_workflow(engine, kit, "notify", {"instance_id": waiter, "type": "ping",
                                               "payload": "pong"})
    assert "pong" == (await engine.instances.status(kit, waiter)).output


# ---- determinism ---------------------------------------------------------------------------

async def test_a_replay_that_takes_another_path_is_a_nondeterminism_error(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "deterministic_pair")
    await settle(engine, kit, instance)
    await change_workflow_under(engine, instance, "renamed_pair")  # now starts with "x"
    clock.advance(10)
    status = await settle(engine, kit, instance)
    assert (Status.ERRORED, "NondeterminismError") == (status.status, status.error["name"])
    assert "position 0 was do 'a' when recorded, is do 'x' now" in status.error["message"]


async def test_both_sdks_journal_the_same_workflow_identically(
        engine: DurableEngine, built: object, clock: ManualClock) -> None:
    journals = []
    for sdk in SDKS:
        tenant = TenantId(f"kit-{sdk}")
        await engine.registry.register(tenant, sdk_guest(sdk, "testkit"))
        instance = await start(engine, tenant, "sleeper", {"ms": 100})
        await settle(engine, tenant, instance)
        clock.advance(100)
        journals.append(_journal(await settle(engine, tenant, instance)))
    assert journals[0] == journals[1]


# ---- limits ----------------------------------------------------------------------------

SMALL_FUEL = 50_000_000


async def test_an_endless_loop_outside_a_step_runs_out_of_fuel(engine: DurableEngine,
                                                               sdk: str) -> None:
    hog = await _register(engine, sdk, "infinite_loop", cpu_fuel=SMALL_FUEL)
    status = await run_workflow(engine, hog, "spin_outside")
    assert {"name": "CpuLimitExceeded",
            "message": f"cpu limit exceeded: the invocation used its {SMALL_FUEL} units of fuel"} \
        == status.error


async def test_running_out_of_fuel_in_a_step_is_a_retryable_attempt(
        engine: DurableEngine, sdk: str, clock: ManualClock) -> None:
    hog = await _register(engine, sdk, "infinite_loop", cpu_fuel=SMALL_FUEL)
    instance = await start(engine, hog, "spin", {"limit": 2, "delay_ms": 100})
    for _ in range(2):
        status = await settle(engine, hog, instance)
        assert (Status.WAITING, "pending") == (status.status, status.steps[0]["state"])
        clock.advance(1000)
    status = await settle(engine, hog, instance)
    assert (Status.ERRORED, "CpuLimitExceeded", 3) == (status.status, status.error["name"],
                                                      status.steps[0]["attempts"])


async def test_a_step_timeout_stops_a_runaway_step(engine: DurableEngine, sdk: str) -> None:
    slow = await _register(engine, sdk, "infinite_loop", cpu_fuel=10**13)
    status = await run_workflow(engine, slow, "spin", {"timeout_ms": 200})
    assert ("StepTimeout", "step 'spin' ran past its timeout of 200 ms") == (
        status.error["name"], first_line(status.error["message"]))


async def test_the_invocation_deadline_stops_an_endless_loop(engine: DurableEngine,
                                                             sdk: str) -> None:
    slow = await _register(engine, sdk, "infinite_loop", cpu_fuel=10**13,
                           invocation_timeout_ms=200)
    status = await run_workflow(engine, slow, "spin_outside")
    assert (Status.ERRORED, "CpuLimitExceeded") == (status.status, status.error["name"])
    assert "200 ms budget" in status.error["message"]


async def test_a_memory_bomb_hits_the_cap_and_fails_itself(engine: DurableEngine,
                                                           sdk: str) -> None:
    cap = 32 * 2**20
    bomber = await _register(engine, sdk, "memory_bomb", memory_bytes=cap)
    status = await run_workflow(engine, bomber, "bomb")
    assert (Status.ERRORED, "MemoryLimitExceeded") == (status.status, status.error["name"])
    assert f"cap of {cap} bytes" in status.error["message"]
