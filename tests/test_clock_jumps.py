"""A wall clock stepped back holds no work that is due now.

Queued, resumed, restarted and recovered instances, and a waiting instance whose event
arrived, are due at once whatever the clock says. Timers are points on the wall clock:
a sleep, a retry delay or a wait's timeout fires when the clock reaches it, so a clock
stepped back holds them longer and one stepped forward fires them early (README says so).
"""

from __future__ import annotations

from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId

HOUR_MS = 3_600_000


async def test_a_queued_instance_runs_though_the_clock_went_back(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "echo", {"x": 1})
    clock.advance(-HOUR_MS)
    assert Status.COMPLETE == (await settle(engine, kit, instance)).status


async def test_resumed_and_restarted_instances_run_though_the_clock_went_back(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    paused = await start(engine, kit, "echo", {"x": 1})
    await engine.instances.pause(kit, paused)
    done = await start(engine, kit, "echo", {"x": 2})
    assert Status.COMPLETE == (await settle(engine, kit, done)).status
    clock.advance(-HOUR_MS)
    await engine.instances.resume(kit, paused)
    await engine.instances.restart(kit, done)
    assert [Status.COMPLETE, Status.COMPLETE] == [
        (await settle(engine, kit, i)).status for i in (paused, done)]


async def test_an_instance_recovered_after_a_crash_runs_though_the_clock_went_back(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "echo", {"x": 1})
    [claim] = await engine.claim_due(1)  # claimed, then the host "died" before running it
    assert instance == claim.instance_id
    assert 1 == await engine.recover()
    clock.advance(-HOUR_MS)
    assert Status.COMPLETE == (await settle(engine, kit, instance)).status


async def test_an_event_wakes_its_waiter_though_the_clock_went_back(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "waiter", {"type": "ping", "timeout_ms": 10 * HOUR_MS})
    assert Status.WAITING == (await settle(engine, kit, instance)).status
    clock.advance(-HOUR_MS)
    await engine.instances.send_event(kit, instance, "ping", {"pong": True})
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"pong": True}) == (status.status, status.output)


async def test_a_sleep_fires_when_the_wall_clock_reaches_its_wake_time(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, kit, "sleeper", {"ms": 60_000})
    assert Status.WAITING == (await settle(engine, kit, instance)).status
    clock.advance(-HOUR_MS)  # stepped back: the sleep waits the hour too
    clock.advance(HOUR_MS + 59_000)
    assert Status.WAITING == (await settle(engine, kit, instance)).status
    clock.advance(1_000)
    assert Status.COMPLETE == (await settle(engine, kit, instance)).status


async def test_a_queued_instance_shows_no_wake_time(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "echo", {"x": 1})
    assert (Status.QUEUED, None) == (
        (status := await engine.instances.status(kit, instance)).status, status.wake_at_ms)
