"""Cron schedules: one instance per tick whoever fires it, time zones across daylight
saving changes, missed ticks after downtime, overlap, pause and resume. Time is the
engine's ManualClock, moved by hand; the ticks come from cronsim in zoneinfo's zones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import settle

from host import (
    DurableEngine,
    InvalidInput,
    ManualClock,
    Status,
    TenantId,
    UnknownTenant,
    UnknownWorkflow,
    Worker,
)
from host.core.errors import DuplicateSchedule, UnknownSchedule
from host.store.lifecycle import Catchup, Overlap

MINUTE = 60_000


def utc_ms(text: str) -> int:
    """Milliseconds of an ISO time in UTC ("2026-11-01T04:00")."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1000


def at(clock: ManualClock, text: str) -> None:
    clock.advance(utc_ms(text) - clock.now_ms())


async def started_ids(engine: DurableEngine, tenant: TenantId) -> list[str]:
    return sorted(i.instance_id for i in await engine.instances.list(tenant))


async def test_each_tick_starts_one_instance_named_for_the_tick(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    at(clock, "2026-05-04T09:03")
    schedule = await engine.schedules.create(kit, "echo", "*/5 * * * *", params={"n": 1},
                                             schedule_id="five")
    assert utc_ms("2026-05-04T09:05") == schedule.next_tick_ms
    assert 0 == await engine.schedules.fire_due()  # not yet
    at(clock, "2026-05-04T09:05")
    assert 1 == await engine.schedules.fire_due()
    assert 0 == await engine.schedules.fire_due()  # the same tick again: nothing
    await engine.run_until_idle()
    at(clock, "2026-05-04T09:10")
    assert 1 == await engine.schedules.fire_due()
    assert ["five-20260504T0905Z", "five-20260504T0910Z"] == await started_ids(engine, kit)
    status = await settle(engine, kit, "five-20260504T0910Z")
    assert (Status.COMPLETE, {"n": 1}) == (status.status, status.output)
    five = await engine.schedules.get(kit, "five")
    assert (2, 0, utc_ms("2026-05-04T09:15"), "five-20260504T0910Z") == (
        five.started, five.skipped, five.next_tick_ms, five.last_instance_id)


async def test_hourly_and_daily_ticks_across_the_autumn_dst_change(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    # New York, 2026-11-01: 02:00 EDT (06:00Z) becomes 01:00 EST, so 01:xx happens twice.
    at(clock, "2026-11-01T03:30")  # 23:30 EDT on Oct 31
    for cron, name in (("0 * * * *", "hourly"), ("30 1 * * *", "daily")):
        await engine.schedules.create(kit, "echo", cron, timezone="America/New_York",
                                      overlap=Overlap.ALLOW, schedule_id=name)
    for _ in range(27 * 2):  # every half hour for 27 hours
        clock.advance(30 * MINUTE)
        await engine.schedules.fire_due()
    ids = await started_ids(engine, kit)
    hourly = [i for i in ids if i.startswith("hourly-")]
    # Both copies of 01:00 (05:00Z EDT and 06:00Z EST) run: 25 hours in the local day.
    assert ["hourly-20261101T0400Z", "hourly-20261101T0500Z", "hourly-20261101T0600Z",
            "hourly-20261101T0700Z"] == hourly[:4]
    local_day = [i for i in hourly if i < "hourly-20261102T0500Z"]  # before midnight EST
    assert (25, 27) == (len(local_day), len(hourly))  # one per real hour, to 06:00Z Nov 2
    # A fixed local time runs once on that day (Debian cron's rule), then at EST.
    assert ["daily-20261101T0530Z", "daily-20261102T0630Z"] == [
        i for i in ids if i.startswith("daily-")]


async def test_a_daily_tick_in_the_skipped_spring_hour_runs_when_the_clock_jumps(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    # New York, 2026-03-08: 02:00 EST (07:00Z) becomes 03:00 EDT; 02:30 never happens.
    at(clock, "2026-03-08T05:00")
    await engine.schedules.create(kit, "echo", "30 2 * * *", timezone="America/New_York",
                                  overlap=Overlap.ALLOW, schedule_id="early")
    for _ in range(2 * 24 * 4):  # every 15 minutes for two days
        clock.advance(15 * MINUTE)
        await engine.schedules.fire_due()
    assert ["early-20260308T0700Z", "early-20260309T0630Z"] == await started_ids(engine, kit)


@pytest.mark.parametrize(("catchup", "late", "started", "skipped"), [
    (Catchup.NONE, 0, ["T1000Z"], 5),          # the latest tick is on time: it runs
    (Catchup.NONE, 5, [], 6),                   # down past the latest tick: none runs
    (Catchup.LAST, 5, ["T1000Z"], 5),
    (Catchup.ALL, 5, ["T0910Z", "T0920Z", "T0930Z", "T0940Z", "T0950Z", "T1000Z"], 0),
])
async def test_missed_ticks_after_downtime_follow_catchup(
        engine: DurableEngine, kit: TenantId, clock: ManualClock, catchup: Catchup,
        late: int, started: list[str], skipped: int) -> None:
    at(clock, "2026-05-04T09:00")
    await engine.schedules.create(kit, "echo", "*/10 * * * *", catchup=catchup,
                                  overlap=Overlap.ALLOW, schedule_id="s")
    clock.advance((60 + late) * MINUTE)  # the worker was down for six ticks
    await engine.schedules.fire_due()
    assert [f"s-20260504{suffix}" for suffix in started] == await started_ids(engine, kit)
    schedule = await engine.schedules.get(kit, "s")
    assert (skipped, utc_ms("2026-05-04T10:10")) == (schedule.skipped, schedule.next_tick_ms)


async def test_catchup_all_goes_on_in_batches(engine: DurableEngine, kit: TenantId,
                                              clock: ManualClock) -> None:
    at(clock, "2026-05-04T00:00")
    await engine.schedules.create(kit, "echo", "* * * * *", catchup=Catchup.ALL,
                                  overlap=Overlap.ALLOW, schedule_id="m")
    clock.advance(250 * MINUTE)
    rounds = [await engine.schedules.fire_due() for _ in range(4)]
    assert [100, 100, 50, 0] == rounds
    ids = await started_ids(engine, kit)
    assert ("m-20260504T0001Z", "m-20260504T0410Z", 250) == (ids[0], ids[-1], len(set(ids)))


async def test_overlap_skip_waits_for_the_previous_instance(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    at(clock, "2026-05-04T09:00")
    for overlap in Overlap:
        await engine.schedules.create(kit, "sleeper", "* * * * *", params={"ms": 90_000},
                                      overlap=overlap, schedule_id=overlap.value)
    for _ in range(3):  # as a worker does: run what is due, fire ticks, run them
        clock.advance(MINUTE)
        await engine.run_until_idle()
        await engine.schedules.fire_due()
        await engine.run_until_idle()
    ids = await started_ids(engine, kit)
    # skip: 09:01 sleeps 90 s, so 09:02 is skipped; it wakes at 09:02:30, 09:03 runs.
    assert ["skip-20260504T0901Z", "skip-20260504T0903Z"] == [
        i for i in ids if i.startswith("skip")]
    assert 3 == len([i for i in ids if i.startswith("allow")])
    assert 1 == (await engine.schedules.get(kit, "skip")).skipped


async def test_pause_stops_ticks_and_resume_goes_on_from_now(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    at(clock, "2026-05-04T09:00")
    await engine.schedules.create(kit, "echo", "*/10 * * * *", catchup=Catchup.ALL,
                                  overlap=Overlap.ALLOW, schedule_id="p")
    paused = await engine.schedules.pause(kit, "p")
    assert (True, None) == (paused.paused, paused.next_tick_ms)
    clock.advance(35 * MINUTE)
    assert 0 == await engine.schedules.fire_due()
    resumed = await engine.schedules.resume(kit, "p")
    assert utc_ms("2026-05-04T09:40") == resumed.next_tick_ms  # 09:10-09:30 are not run
    clock.advance(5 * MINUTE)
    assert 1 == await engine.schedules.fire_due()
    await engine.schedules.delete(kit, "p")
    with pytest.raises(UnknownSchedule):
        await engine.schedules.get(kit, "p")
    assert ["p-20260504T0940Z"] == await started_ids(engine, kit)  # its instance stays


async def test_a_tick_the_active_version_cannot_run_is_skipped_with_the_reason(
        engine: DurableEngine, kit: TenantId, clock: ManualClock, built: Path) -> None:
    at(clock, "2026-05-04T09:00")
    await engine.schedules.create(kit, "echo", "* * * * *", overlap=Overlap.ALLOW,
                                  schedule_id="e")
    await engine.registry.register(kit, (built / "guests" / "order_v1.wasm").read_bytes())
    clock.advance(MINUTE)
    assert 0 == await engine.schedules.fire_due()
    schedule = await engine.schedules.get(kit, "e")
    assert (1, utc_ms("2026-05-04T09:02")) == (schedule.skipped, schedule.next_tick_ms)
    assert "tenant 'kit' has no workflow 'echo' (its module defines: order)" == (
        schedule.last_error)


async def test_two_engines_firing_one_tick_start_one_instance(
        engine: DurableEngine, kit: TenantId, clock: ManualClock, db: str | Path,
        tmp_path: Path) -> None:
    other = await DurableEngine.open(db, clock=clock, artifacts=tmp_path / "other")
    try:
        at(clock, "2026-05-04T09:00")
        await engine.schedules.create(kit, "echo", "* * * * *", catchup=Catchup.ALL,
                                      overlap=Overlap.ALLOW, schedule_id="race")
        for _ in range(20):
            clock.advance(MINUTE)
            counts = await asyncio.gather(engine.schedules.fire_due(),
                                          other.schedules.fire_due())
            assert 1 == sum(counts)
        assert 20 == len(await started_ids(engine, kit))
        assert 20 == (await engine.schedules.get(kit, "race")).started
    finally:
        await other.close()


async def test_the_worker_fires_schedules_and_runs_their_instances(
        engine: DurableEngine, kit: TenantId, clock: ManualClock) -> None:
    at(clock, "2026-05-04T08:59:59")
    await engine.schedules.create(kit, "echo", "0 9 * * *", timezone="Europe/Berlin",
                                  params="guten Morgen", schedule_id="w")
    at(clock, "2026-05-05T07:00")  # 09:00 in Berlin (CEST)
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(engine).run(stop))
    try:
        for _ in range(200):
            found = await engine.instances.list(kit)
            if found and found[0].status is Status.COMPLETE:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert [("w-20260505T0700Z", "guten Morgen")] == [(i.instance_id, i.output)
                                                      for i in found]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"cron": "61 * * * *"}, InvalidInput, "invalid cron expression '61 * * * *': bad minute"),
    ({"cron": "* * *"}, InvalidInput, "use five fields (minute hour day-of-month month"),
    ({"cron": "0 0 30 2 *"}, InvalidInput, "bad day-of-month"),
    ({"timezone": "Mars/Olympus"}, InvalidInput, "unknown time zone 'Mars/Olympus'"),
    ({"timezone": "../../etc/passwd"}, InvalidInput, "unknown time zone"),
    ({"workflow": "nope"}, UnknownWorkflow, "has no workflow 'nope'"),
    ({"schedule_id": "-bad"}, InvalidInput, "invalid schedule id '-bad'"),
    ({"schedule_id": "x" * 65}, InvalidInput, "at most 64"),
    ({"params": "x" * 2_000_000}, InvalidInput, "over the tenant's limit"),
])
async def test_bad_schedules_are_refused_with_the_reason(
        engine: DurableEngine, kit: TenantId, kwargs: dict, error: type[Exception],
        message: str) -> None:
    arguments = {"workflow": "echo", "cron": "@hourly", **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace("*", r"\*")):
        await engine.schedules.create(kit, arguments.pop("workflow"), arguments.pop("cron"),
                                      **arguments)


async def test_schedules_need_a_tenant_and_a_free_id(engine: DurableEngine,
                                                     kit: TenantId) -> None:
    await engine.schedules.create(kit, "echo", "@daily", schedule_id="d")
    with pytest.raises(DuplicateSchedule):
        await engine.schedules.create(kit, "echo", "@hourly", schedule_id="d")
    with pytest.raises(UnknownTenant):
        await engine.schedules.create(TenantId("nobody"), "echo", "@daily")
    [listed] = await engine.schedules.list(kit)
    assert ("d", "0 0 * * *", "UTC", False) == (listed.schedule_id, listed.cron,
                                                listed.timezone, listed.paused)
