"""Cron schedules: an instance of a workflow at every tick of a cron expression, in a time
zone, started by whichever worker sees the tick first, exactly once.

Exactly once: a tick's instance id is derived from the schedule and the tick (its UTC
minute), and a firing applies only if the schedule still waits for the tick it planned
from (`next_tick_ms`, compared and set in the transaction that inserts the instances). Two
workers (or hosts) seeing the same tick race for that row; the loser changes nothing, and
even a firing planned twice could not insert an id twice.

Cron expressions are parsed and stepped by `cronsim`, in the schedule's zone from
`zoneinfo` (with the `tzdata` package, so no system time zone files are needed). cronsim
follows Debian's cron across daylight saving time: a job at a fixed local time runs once
on the day the clocks go back (not again in the repeated hour), and one in the hour the
clocks skip runs when they jump over it; a job on every hour or minute runs in both copies
of a repeated hour. Ticks are points in time (UTC milliseconds) once computed.

After downtime, the ticks a worker finds past are handled per the schedule's `catchup`:
`none` starts only the latest one, and only if it is at most `ON_TIME_MS` late; `last`
starts the latest one however late; `all` starts every one, oldest first (`CATCHUP_BATCH`
per firing). With `overlap` skip, a tick is skipped while the schedule's previous instance
has not finished, so catching up starts at most one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from cronsim import CronSim, CronSimError

from ..core.errors import DwfError, InvalidInput, UnknownSchedule, UnknownWorkflow
from ..core.ids import InstanceId, TenantId, instance_id, new_instance_id
from ..store import ActiveVersion, NewInstance, Storage
from ..store.lifecycle import Catchup, Fired, Overlap, Schedule, ScheduleFiring
from .instances import pack_checked_input

log = structlog.get_logger("dwf.schedules")

ON_TIME_MS = 60_000
"""A tick found at most this late counts as on time (a busy or slow worker), not missed."""

CATCHUP_BATCH = 100
"""With catchup `all`, missed ticks started per firing (the next firing goes on)."""

FIRE_BATCH = 100
"""Due schedules fired per round of the worker."""

REFRESH_S = 1.0
"""How often a worker reads the earliest tick again (another process may have created
or resumed a schedule)."""

MAX_SCHEDULE_ID = 64
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
"""The usual shorthands (cronsim reads five fields only)."""

_FIELDS = "minute hour day-of-month month day-of-week"


class Cron:
    """A cron expression in a time zone: its ticks as UTC milliseconds."""

    def __init__(self, expression: str, zone: str) -> None:
        text = " ".join(expression.split())
        text = ALIASES.get(text.lower(), text)
        if len(text.split(" ")) != 5:
            raise InvalidInput(f"invalid cron expression {expression!r}: use five fields "
                               f"({_FIELDS}), e.g. '*/15 * * * *', or one of "
                               f"{', '.join(ALIASES)}")
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {zone!r}: use an IANA name such as "
                               "'UTC', 'Europe/Berlin' or 'America/New_York'") from None
        try:
            CronSim(text, datetime.now(self.zone))
        except CronSimError as exc:
            raise InvalidInput(f"invalid cron expression {expression!r}: "
                               f"{str(exc).lower()} ({_FIELDS})") from None
        self.expression = text

    def after(self, ms: int) -> Iterator[int]:
        """Every tick strictly after `ms`, in order."""
        start = datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.zone)
        for tick in CronSim(self.expression, start):
            yield int(tick.timestamp()) * 1000

    def next_after(self, ms: int) -> int | None:
        """The first tick after `ms` (None: the expression has no more ticks)."""
        return next(self.after(ms), None)


def tick_instance_id(schedule_id: str, tick_ms: int) -> InstanceId:
    """The id of a tick's instance: the schedule's id and the tick's UTC minute."""
    minute = datetime.fromtimestamp(tick_ms / 1000, UTC).strftime("%Y%m%dT%H%MZ")
    return InstanceId(f"{schedule_id}-{minute}")


def plan(schedule: Schedule, now_ms: int) -> ScheduleFiring:
    """What firing a due schedule at `now_ms` does (pure; may iterate many ticks after a
    long downtime, so it runs off the event loop)."""
    assert schedule.next_tick_ms is not None and schedule.next_tick_ms <= now_ms
    cron = Cron(schedule.cron, schedule.timezone)
    first = schedule.next_tick_ms
    catchup = schedule.catchup
    if schedule.overlap is Overlap.SKIP and catchup is Catchup.ALL:
        catchup = Catchup.LAST  # they would overlap each other: one starts at most
    if catchup is Catchup.ALL:
        due = [first]
        for tick in cron.after(first):
            if tick > now_ms or len(due) > CATCHUP_BATCH:
                break
            due.append(tick)
        run, after = due[:CATCHUP_BATCH], due[CATCHUP_BATCH:]
        return _firing(schedule, run, 0, after[0] if after else cron.next_after(run[-1]))
    latest, count = first, 1
    next_tick: int | None = None
    for tick in cron.after(first):
        if tick > now_ms:
            next_tick = tick
            break
        latest, count = tick, count + 1
    if catchup is Catchup.LAST or now_ms - latest <= ON_TIME_MS:
        return _firing(schedule, [latest], count - 1, next_tick)
    return _firing(schedule, [], count, next_tick)


def _firing(schedule: Schedule, ticks: list[int], missed: int,
            next_tick_ms: int | None) -> ScheduleFiring:
    assert schedule.next_tick_ms is not None
    return ScheduleFiring(schedule.tenant_id, schedule.schedule_id, schedule.next_tick_ms,
                          tuple((tick, tick_instance_id(schedule.schedule_id, tick))
                                for tick in ticks), missed, next_tick_ms)


class Schedules:
    """Cron schedules of one database: created and controlled by users, fired by workers."""

    def __init__(self, store: Storage, on_due: Callable[[], None] = lambda: None,
                 before_fire: Callable[[TenantId], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.clock = store.clock
        self.on_due = on_due
        self.before_fire = before_fire  # on-demand loading of the tenant's module
        self._next_tick: int | None = None
        self._read_at = float("-inf")  # monotonic time `_next_tick` was read

    # -- users -----------------------------------------------------------------------

    async def create(self, tenant_id: TenantId, workflow: str, cron: str, *,
                     timezone: str = "UTC", params: Any = None,
                     overlap: Overlap = Overlap.SKIP, catchup: Catchup = Catchup.NONE,
                     schedule_id: str | None = None) -> Schedule:
        """A new schedule, first due at the next tick from now. The workflow must be in
        the tenant's active version (UnknownWorkflow) and the params within its limit."""
        parsed = Cron(cron, timezone)
        schedule_id = _schedule_id(schedule_id, workflow)
        packed = pack_checked_input(params, "params")
        if self.before_fire is not None:
            await self.before_fire(tenant_id)  # a tenant loaded on demand may be new
        versions = await self.store.modules(tenant_id)
        active = next((v for v in versions if v.active), None)
        limits = await self.store.tenant_limits(tenant_id)
        if active is not None and workflow not in active.workflows:
            raise UnknownWorkflow(tenant_id, workflow, list(active.workflows))
        if len(packed) > limits.max_payload_bytes:
            raise InvalidInput(f"params are {len(packed)} bytes, over the tenant's limit of "
                               f"{limits.max_payload_bytes} bytes")
        now = self.clock.now_ms()
        schedule = Schedule(tenant_id, schedule_id, workflow, parsed.expression, timezone,
                            packed, overlap, catchup, False, parsed.next_after(now), None,
                            None, 0, 0, None, now, now)
        await self.store.create_schedule(schedule)  # UnknownTenant without a module
        self._forget_next()
        return schedule

    async def list(self, tenant_id: TenantId | None = None) -> list[Schedule]:
        return await self.store.schedules(tenant_id)

    async def get(self, tenant_id: TenantId, schedule_id: str) -> Schedule:
        found = await self.store.schedule(tenant_id, schedule_id)
        if found is None:
            raise UnknownSchedule(tenant_id, schedule_id)
        return found

    async def pause(self, tenant_id: TenantId, schedule_id: str) -> Schedule:
        """No tick fires while paused (resuming does not start the ticks it missed)."""
        return await self._set_paused(tenant_id, schedule_id, True, None)

    async def resume(self, tenant_id: TenantId, schedule_id: str) -> Schedule:
        """Fire again from the next tick after now."""
        current = await self.get(tenant_id, schedule_id)
        next_tick = Cron(current.cron, current.timezone).next_after(self.clock.now_ms())
        return await self._set_paused(tenant_id, schedule_id, False, next_tick)

    async def _set_paused(self, tenant_id: TenantId, schedule_id: str, paused: bool,
                          next_tick: int | None) -> Schedule:
        found = await self.store.set_schedule_paused(tenant_id, schedule_id, paused,
                                                     next_tick)
        if found is None:
            raise UnknownSchedule(tenant_id, schedule_id)
        self._forget_next()
        return found

    async def delete(self, tenant_id: TenantId, schedule_id: str) -> None:
        """Delete the schedule; instances it started stay."""
        if not await self.store.delete_schedule(tenant_id, schedule_id):
            raise UnknownSchedule(tenant_id, schedule_id)
        self._forget_next()

    # -- workers ---------------------------------------------------------------------

    async def next_tick_ms(self) -> int | None:
        """The earliest tick of any schedule (read again every REFRESH_S at most)."""
        if time.monotonic() - self._read_at > REFRESH_S:
            self._next_tick = await self.store.next_schedule_tick_ms()
            self._read_at = time.monotonic()
        return self._next_tick

    async def _before_fire(self, tenant_id: TenantId) -> None:
        """Load the tenant's module on demand; a source that cannot be asked now must
        not stop the schedule (the tick fires on the module the tenant has)."""
        if self.before_fire is None:
            return
        try:
            await self.before_fire(tenant_id)
        except DwfError as exc:
            log.warning("schedule.module_source", tenant_id=tenant_id, reason=str(exc))

    def _forget_next(self) -> None:
        self._read_at = float("-inf")

    async def fire_due(self) -> int:
        """Start the instances of every tick due now; returns how many started. Cheap
        when nothing is due: no read until the earliest tick or the next refresh."""
        now = self.clock.now_ms()
        next_tick = await self.next_tick_ms()
        if next_tick is None or next_tick > now:
            return 0
        started = 0
        for schedule in await self.store.due_schedules(now, FIRE_BATCH):
            await self._before_fire(schedule.tenant_id)
            firing = await asyncio.to_thread(plan, schedule, now)
            fired = await self.store.fire_schedule(firing, _prepare(schedule, firing))
            if fired is not None:
                started += len(fired.started)
                _log_fired(schedule, firing, fired)
        self._forget_next()
        if started:
            self.on_due()
        return started


def _prepare(schedule: Schedule,
             firing: ScheduleFiring) -> Callable[[ActiveVersion], list[NewInstance]]:
    def prepare(active: ActiveVersion) -> list[NewInstance]:
        if schedule.workflow not in active.workflows:
            raise UnknownWorkflow(schedule.tenant_id, schedule.workflow,
                                  list(active.workflows))
        if len(schedule.params) > active.limits.max_payload_bytes:
            raise InvalidInput(f"params are {len(schedule.params)} bytes, over the tenant's "
                               f"limit of {active.limits.max_payload_bytes} bytes")
        return [NewInstance(iid, schedule.workflow, schedule.params)
                for _, iid in firing.ticks]
    return prepare


def _log_fired(schedule: Schedule, firing: ScheduleFiring, fired: Fired) -> None:
    logger = log.bind(tenant_id=schedule.tenant_id, schedule_id=schedule.schedule_id)
    if fired.error is not None:
        logger.warning("schedule.refused", reason=fired.error, skipped=fired.skipped)
    elif fired.started or fired.skipped:
        logger.info("schedule.fired", started=fired.started, skipped=fired.skipped,
                    next_tick_ms=firing.next_tick_ms)


def _schedule_id(given: str | None, workflow: str) -> str:
    if given is None:
        return instance_id(f"{workflow[:MAX_SCHEDULE_ID - 9]}-{_suffix()}")
    if len(given) > MAX_SCHEDULE_ID:
        raise InvalidInput(f"schedule id {given!r} is {len(given)} characters; at most "
                           f"{MAX_SCHEDULE_ID} (its instances' ids add the tick)")
    try:
        return instance_id(given)
    except InvalidInput:
        raise InvalidInput(f"invalid schedule id {given!r}: use 1-{MAX_SCHEDULE_ID} "
                           "characters of [A-Za-z0-9_-], not starting with '-'") from None


def _suffix() -> str:
    return new_instance_id()[:8]

