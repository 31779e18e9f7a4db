"""wait_for_event: delivery after and before the wait, FIFO buffering, timeouts."""

from __future__ import annotations

import pytest
from helpers import settle, start

from host import DurableEngine, InvalidState, ManualClock, Status, TenantId


async def test_event_sent_while_waiting_wakes_the_instance(engine: DurableEngine,
                                                           kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 60_000})
    status = await settle(engine, kit, instance)
    assert (Status.WAITING, "approval") == (status.status, status.waiting_event_type)

    await engine.instances.send_event(kit, instance, "approval", {"approved": True})
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, {"approved": True}) == (status.status, status.output)


async def test_event_of_another_type_does_not_wake_it(engine: DurableEngine,
                                                      kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 60_000})
    await settle(engine, kit, instance)
    await engine.instances.send_event(kit, instance, "unrelated", 1)
    assert (await settle(engine, kit, instance)).status is Status.WAITING


async def test_event_sent_before_the_wait_is_buffered(engine: DurableEngine,
                                                      kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 60_000})
    await engine.instances.send_event(kit, instance, "approval", "early")
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "early") == (status.status, status.output)


async def test_buffered_events_are_delivered_first_in_first_out(engine: DurableEngine,
                                                                 kit: TenantId) -> None:
    instance = await start(engine, kit, "waiter2", {"type": "tick"})
    for payload in ("one", "two", "three"):
        await engine.instances.send_event(kit, instance, "tick", payload)
    status = await settle(engine, kit, instance)
    assert ["one", "two"] == status.output


async def test_wait_times_out_with_a_catchable_error(engine: DurableEngine, kit: TenantId,
                                                     clock: ManualClock) -> None:
    instance = await start(engine, kit, "waiter", {"type": "approval", "timeout_ms": 1000})
    status = await settle(engine, kit, instance)
    assert status.wake_at_ms == clock.now_ms() + 1000
    clock.advance(1000)
    status = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "timeout") == (status.status, status.output)
    wait = status.steps[0]
    assert (wait["state"], wait["error"]["name"]) == ("error", "WaitForEventTimeout")


async def test_finished_instances_refuse_events(engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "echo", 1)
    await settle(engine, kit, instance)
    with pytest.raises(InvalidState, match="complete"):
        await engine.instances.send_event(kit, instance, "late", None)
