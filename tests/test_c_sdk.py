"""What the C SDK promises beyond the behaviour suite both SDKs pass
(test_sdk_conformance.py): config fields left 0, the event's timestamp."""

from __future__ import annotations

from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId


async def test_config_fields_left_zero_keep_the_defaults(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    """`{.limit = 2, .delay_ms = 100}`: backoff and timeout_ms stay 0 / NULL, which keep
    the host defaults (exponential, 10 min) instead of breaking the ABI."""
    instance = await start(engine, kit, "partial_config")
    for delay in (100, 200):  # exponential, from the 100 ms the config names
        status = await settle(engine, kit, instance)
        assert (Status.WAITING, clock.now_ms() + delay) == (status.status, status.wake_at_ms)
        clock.advance(delay)
    status = await settle(engine, kit, instance)
    assert (Status.ERRORED, "Nope") == (status.status, status.error and status.error["name"])
    assert [100, 200, None] == [a["retry_delay_ms"]
                                for a in status.steps[0]["attempt_history"]]


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
