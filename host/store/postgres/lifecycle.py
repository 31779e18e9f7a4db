"""The code lifecycle on PostgreSQL: version moves, drain counts, pruning, cron schedules
and module-source stamps (`LifecycleStorage`), for any number of workers on any hosts.

A move and a prune are transactions of their own that serialize on the tenant's row (a
move takes it `FOR KEY SHARE`, a prune `FOR UPDATE`, as registration does), so a version
is never pruned under an instance moving onto it; a move locks the instance row too, so a
claim waits for it and then runs the version it moved to. A firing is a writer op that
locks its schedule row: the compare-and-set of `next_tick_ms` holds across workers.
"""

from __future__ import annotations

import abc

from ...core.clock import Clock
from ...core.errors import (
    DuplicateSchedule,
    DwfError,
    InvalidState,
    UnknownInstance,
    UnknownTenant,
)
from ...core.ids import InstanceId, ModuleSha, TenantId
from ...core.limits import LimitsParser
from ...core.model import FINISHED, Status
from ..lifecycle import (
    Fired,
    InstanceInputs,
    LifecycleStorage,
    Overlap,
    PrepareFiring,
    Row,
    Schedule,
    ScheduleFiring,
    UpgradeRecord,
    VersionMove,
    VersionUsage,
    journal_digest,
    move_refusal,
    schedule_of,
    usage_of,
)
from ..records import ActiveVersion
from .creations import insert_rows, rows_of
from .database import MOVED_CHANNEL, Batch, Database
from .runs import load_journal

_FINISHED_SQL = ", ".join(f"'{status}'" for status in FINISHED)
_USAGE_SQL = (
    "SELECT tm.sha256, tm.version, tm.registered_at_ms, t.active_sha256 = tm.sha256 AS active, "
    "(SELECT count(*) FROM instances i WHERE i.tenant_id = tm.tenant_id "
    f"AND i.module_sha256 = tm.sha256 AND i.status NOT IN ({_FINISHED_SQL})) AS unfinished, "
    "(SELECT count(*) FROM instances i WHERE i.tenant_id = tm.tenant_id "
    f"AND i.module_sha256 = tm.sha256 AND i.status IN ({_FINISHED_SQL})) AS finished "
    "FROM tenant_modules tm JOIN tenants t ON t.tenant_id = tm.tenant_id "
    "WHERE tm.tenant_id = $1 ORDER BY tm.version")


class PostgresLifecycle(LifecycleStorage):
    """Mixed into `PostgresStorage`, whose database, clock and limits it uses."""

    db: Database
    clock: Clock
    limits: LimitsParser

    @abc.abstractmethod
    async def _active_now(self, batch: Batch, tenant_id: TenantId) -> ActiveVersion:
        """The tenant's active version, read in a writer op (PostgresStorage)."""

    # -- replay and upgrades ---------------------------------------------------------

    async def instance_inputs(self, tenant_id: TenantId,
                              instance_id: str) -> InstanceInputs | None:
        async with self.db.connection() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):  # the row and its journal
            row = await conn.fetchrow(
                "SELECT i.workflow, i.module_sha256, i.status, i.params, i.created_at_ms, "
                "t.limits FROM instances i JOIN tenants t ON t.tenant_id = i.tenant_id "
                "WHERE i.tenant_id = $1 AND i.instance_id = $2", tenant_id, instance_id)
            if row is None:
                return None
            records = await load_journal(conn, tenant_id, instance_id)
        return InstanceInputs(tenant_id, InstanceId(instance_id), row["workflow"],
                              ModuleSha(row["module_sha256"]), Status(row["status"]),
                              bytes(row["params"]), row["created_at_ms"],
                              self.limits.parse(row["limits"]), records)

    async def unfinished_instances(self, tenant_id: TenantId) -> list[InstanceId]:
        rows = await self.db.fetchall(
            "SELECT instance_id FROM instances WHERE tenant_id = $1 "
            f"AND status NOT IN ({_FINISHED_SQL}) ORDER BY created_at_ms, instance_id",
            tenant_id)
        return [InstanceId(row["instance_id"]) for row in rows]

    async def move_instance(self, tenant_id: TenantId, move: VersionMove) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            await conn.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR KEY SHARE",
                               tenant_id)
            row = await conn.fetchrow(
                "SELECT status, module_sha256 FROM instances WHERE tenant_id = $1 "
                "AND instance_id = $2 FOR NO KEY UPDATE", tenant_id, move.instance_id)
            if row is None:
                raise UnknownInstance(tenant_id, move.instance_id)
            registered = await conn.fetchval(
                "SELECT 1 FROM tenant_modules WHERE tenant_id = $1 AND sha256 = $2",
                tenant_id, move.to_sha256) is not None
            digest = journal_digest(await load_journal(conn, tenant_id, move.instance_id))
            refusal = move_refusal(Status(row["status"]), ModuleSha(row["module_sha256"]),
                                   move, digest, registered)
            if refusal is not None:
                raise InvalidState(f"instance {move.instance_id!r} was not moved: {refusal}")
            await conn.execute(
                "UPDATE instances SET module_sha256 = $3, updated_at_ms = $4 "
                "WHERE tenant_id = $1 AND instance_id = $2",
                tenant_id, move.instance_id, move.to_sha256, now)
            await conn.execute(
                "INSERT INTO instance_upgrades (tenant_id, instance_id, seq, from_sha256, "
                "to_sha256, from_version, to_version, journal_length, upgraded_at_ms) "
                "SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, "
                "(SELECT version FROM tenant_modules WHERE tenant_id = $1 AND sha256 = $3), "
                "(SELECT version FROM tenant_modules WHERE tenant_id = $1 AND sha256 = $4), "
                "$5, $6 FROM instance_upgrades WHERE tenant_id = $1 AND instance_id = $2",
                tenant_id, move.instance_id, move.from_sha256, move.to_sha256,
                move.journal_length, now)
            await conn.execute(f"NOTIFY {MOVED_CHANNEL}")  # claims read instances again
        self.db.moved()

    async def instance_upgrades(self, tenant_id: TenantId,
                                instance_id: str) -> list[UpgradeRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM instance_upgrades WHERE tenant_id = $1 AND instance_id = $2 "
            "ORDER BY seq", tenant_id, instance_id)
        return [UpgradeRecord(ModuleSha(row["from_sha256"]), ModuleSha(row["to_sha256"]),
                              row["from_version"], row["to_version"], row["journal_length"],
                              row["upgraded_at_ms"]) for row in rows]

    # -- versions ----------------------------------------------------------------------

    async def version_usage(self, tenant_id: TenantId) -> list[VersionUsage]:
        rows = await self.db.fetchall(_USAGE_SQL, tenant_id)
        if not rows:
            raise UnknownTenant(tenant_id)
        return [usage_of(row) for row in rows]

    async def prune_versions(self, tenant_id: TenantId) -> list[VersionUsage]:
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                                   tenant_id) is None:
                raise UnknownTenant(tenant_id)
            unused = [usage_of(row) for row in await conn.fetch(_USAGE_SQL, tenant_id)
                      if not row["active"] and not row["unfinished"] and not row["finished"]]
            if not unused:
                return []
            shas = [usage.sha256 for usage in unused]
            await conn.execute("DELETE FROM tenant_modules WHERE tenant_id = $1 "
                               "AND sha256 = ANY($2::text[])", tenant_id, shas)
            await conn.execute("UPDATE tenants SET highest_pruned_version = GREATEST("
                               "highest_pruned_version, $2) WHERE tenant_id = $1",
                               tenant_id, max(usage.version for usage in unused))
            # The bytes go too once nothing at all refers to them (modules are shared
            # between tenants that registered the same bytes).
            await conn.execute(
                "DELETE FROM modules m WHERE m.sha256 = ANY($1::text[]) "
                "AND NOT EXISTS (SELECT 1 FROM tenant_modules tm WHERE tm.sha256 = m.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.module_sha256 = m.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.active_sha256 = m.sha256)",
                shas)
        return unused

    # -- schedules ---------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> None:
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1",
                                   schedule.tenant_id) is None:
                raise UnknownTenant(schedule.tenant_id)
            created = await conn.fetchval(
                "INSERT INTO schedules (tenant_id, schedule_id, workflow, cron, timezone, "
                "params, overlap, catchup, paused, next_tick_ms, created_at_ms, "
                "updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                "ON CONFLICT (tenant_id, schedule_id) DO NOTHING RETURNING 1",
                schedule.tenant_id, schedule.schedule_id, schedule.workflow, schedule.cron,
                schedule.timezone, schedule.params, schedule.overlap.value,
                schedule.catchup.value, schedule.paused, schedule.next_tick_ms,
                schedule.created_at_ms, schedule.updated_at_ms)
            if created is None:
                raise DuplicateSchedule(schedule.tenant_id, schedule.schedule_id)

    async def schedules(self, tenant_id: TenantId | None) -> list[Schedule]:
        rows = await self.db.fetchall(
            "SELECT * FROM schedules WHERE ($1::text IS NULL OR tenant_id = $1) "
            "ORDER BY tenant_id, schedule_id", tenant_id)
        return [schedule_of(row) for row in rows]

    async def schedule(self, tenant_id: TenantId, schedule_id: str) -> Schedule | None:
        row = await self.db.fetchone(
            "SELECT * FROM schedules WHERE tenant_id = $1 AND schedule_id = $2",
            tenant_id, schedule_id)
        return schedule_of(row) if row is not None else None

    async def set_schedule_paused(self, tenant_id: TenantId, schedule_id: str, paused: bool,
                                  next_tick_ms: int | None) -> Schedule | None:
        row = await self.db.fetchone(
            "UPDATE schedules SET paused = $3, next_tick_ms = $4, updated_at_ms = $5 "
            "WHERE tenant_id = $1 AND schedule_id = $2 RETURNING *",
            tenant_id, schedule_id, paused, next_tick_ms, self.clock.now_ms())
        return schedule_of(row) if row is not None else None

    async def delete_schedule(self, tenant_id: TenantId, schedule_id: str) -> bool:
        done = await self.db.execute(
            "DELETE FROM schedules WHERE tenant_id = $1 AND schedule_id = $2",
            tenant_id, schedule_id)
        return done != "DELETE 0"

    async def due_schedules(self, now_ms: int, limit: int) -> list[Schedule]:
        rows = await self.db.fetchall(
            "SELECT * FROM schedules WHERE NOT paused AND next_tick_ms <= $1 "
            "ORDER BY next_tick_ms LIMIT $2", now_ms, limit)
        return [schedule_of(row) for row in rows]

    async def next_schedule_tick_ms(self) -> int | None:
        found: int | None = await self.db.fetchval(
            "SELECT min(next_tick_ms) FROM schedules WHERE NOT paused")
        return found

    async def fire_schedule(self, firing: ScheduleFiring,
                            prepare: PrepareFiring) -> Fired | None:
        now = self.clock.now_ms()

        async def fire(batch: Batch) -> Fired | None:
            # Raises nothing once it has written (the writer's contract for ops).
            row = await batch.conn.fetchrow(
                "SELECT paused, next_tick_ms, overlap, last_instance_id FROM schedules "
                "WHERE tenant_id = $1 AND schedule_id = $2 FOR UPDATE",
                firing.tenant_id, firing.schedule_id)
            if row is None or row["paused"] or (
                    row["next_tick_ms"] != firing.expected_next_tick_ms):
                return None  # deleted, paused, or fired by another worker meanwhile
            fired = await self._start_ticks(batch, firing, row, prepare, now)
            last_id = fired.started[-1] if fired.started else row["last_instance_id"]
            last_tick = firing.ticks[-1][0] if firing.ticks else None
            await batch.conn.execute(
                "UPDATE schedules SET next_tick_ms = $3, "
                "last_tick_ms = COALESCE($4, last_tick_ms), last_instance_id = $5, "
                "started = started + $6, skipped = skipped + $7, last_error = $8, "
                "updated_at_ms = $9 WHERE tenant_id = $1 AND schedule_id = $2",
                firing.tenant_id, firing.schedule_id, firing.next_tick_ms, last_tick, last_id,
                len(fired.started), fired.skipped, fired.error, now)
            return fired
        return await self.db.write(fire)

    async def _start_ticks(self, batch: Batch, firing: ScheduleFiring, row: Row,
                           prepare: PrepareFiring, now: int) -> Fired:
        if not firing.ticks:
            return Fired([], firing.missed)
        last = row["last_instance_id"]
        if row["overlap"] == Overlap.SKIP.value and last is not None:
            status = await batch.conn.fetchval(
                "SELECT status FROM instances WHERE tenant_id = $1 AND instance_id = $2",
                firing.tenant_id, last)
            if status is not None and not Status(status).finished:
                return Fired([], firing.missed + len(firing.ticks))
        try:
            active = await self._active_now(batch, firing.tenant_id)
            prepared = prepare(active)
        except DwfError as exc:
            return Fired([], firing.missed + len(firing.ticks), str(exc))
        taken = await insert_rows(batch, rows_of(firing.tenant_id, prepared, active.sha256,
                                                 now))
        started = [new.instance_id for new in prepared
                   if (firing.tenant_id, new.instance_id) in taken]
        return Fired(started, firing.missed + len(prepared) - len(started))

    # -- module sources ----------------------------------------------------------------

    async def module_source_stamp(self, tenant_id: TenantId) -> str | None:
        stamp: str | None = await self.db.fetchval(
            "SELECT stamp FROM module_source_stamps WHERE tenant_id = $1", tenant_id)
        return stamp

    async def set_module_source_stamp(self, tenant_id: TenantId, stamp: str,
                                      sha256: ModuleSha) -> None:
        await self.db.execute(
            "INSERT INTO module_source_stamps (tenant_id, stamp, sha256, loaded_at_ms) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET "
            "stamp = excluded.stamp, sha256 = excluded.sha256, "
            "loaded_at_ms = excluded.loaded_at_ms", tenant_id, stamp, sha256,
            self.clock.now_ms())
