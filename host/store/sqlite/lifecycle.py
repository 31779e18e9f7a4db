"""The code lifecycle on SQLite: version moves, drain counts, pruning, cron schedules and
module-source stamps (`LifecycleStorage`).

Every change here is one writer op (`Database.write`): its statements run in the writer's
transaction under a SAVEPOINT, so a refused move or firing changes nothing, and a
firing's compare-and-set on `next_tick_ms` and its instances commit together.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3

from ...core.clock import Clock
from ...core.errors import (
    DuplicateInstance,
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
from .database import Database, keeps_fences
from .rows import load_journal
from .runs import insert_instance

_FINISHED_SQL = ", ".join(f"'{status}'" for status in FINISHED)


class SqliteLifecycle(LifecycleStorage):
    """Mixed into `SqliteStorage`, whose database, clock and limits it uses."""

    db: Database
    clock: Clock
    limits: LimitsParser

    @abc.abstractmethod
    def _active_now(self, conn: sqlite3.Connection, tenant_id: TenantId) -> ActiveVersion:
        """The tenant's active version, read in a writer op (SqliteStorage)."""

    # -- replay and upgrades ---------------------------------------------------------

    async def instance_inputs(self, tenant_id: TenantId,
                              instance_id: str) -> InstanceInputs | None:
        def read(conn: sqlite3.Connection) -> InstanceInputs | None:
            conn.execute("BEGIN")  # the row and its journal from one snapshot
            try:
                row = conn.execute(
                    "SELECT i.workflow, i.module_sha256, i.status, i.params, i.created_at_ms, "
                    "t.limits FROM instances i JOIN tenants t ON t.tenant_id = i.tenant_id "
                    "WHERE i.tenant_id = ? AND i.instance_id = ?",
                    (tenant_id, instance_id)).fetchone()
                if row is None:
                    return None
                return InstanceInputs(tenant_id, InstanceId(instance_id), row["workflow"],
                                      ModuleSha(row["module_sha256"]), Status(row["status"]),
                                      bytes(row["params"]), row["created_at_ms"],
                                      self.limits.parse(row["limits"]),
                                      load_journal(conn, tenant_id, instance_id))
            finally:
                conn.execute("COMMIT")
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.db.read_blocking(read))

    async def unfinished_instances(self, tenant_id: TenantId) -> list[InstanceId]:
        rows = await self.db.fetchall(
            "SELECT instance_id FROM instances WHERE tenant_id = ? "
            f"AND status NOT IN ({_FINISHED_SQL}) ORDER BY created_at_ms, instance_id",
            (tenant_id,))
        return [InstanceId(row["instance_id"]) for row in rows]

    async def move_instance(self, tenant_id: TenantId, move: VersionMove) -> None:
        now = self.clock.now_ms()

        def apply(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT status, module_sha256 FROM instances WHERE tenant_id = ? "
                "AND instance_id = ?", (tenant_id, move.instance_id)).fetchone()
            if row is None:
                raise UnknownInstance(tenant_id, move.instance_id)
            registered = conn.execute(
                "SELECT 1 FROM tenant_modules WHERE tenant_id = ? AND sha256 = ?",
                (tenant_id, move.to_sha256)).fetchone() is not None
            digest = journal_digest(load_journal(conn, tenant_id, move.instance_id))
            refusal = move_refusal(Status(row["status"]), ModuleSha(row["module_sha256"]),
                                   move, digest, registered)
            if refusal is not None:
                raise InvalidState(f"instance {move.instance_id!r} was not moved: {refusal}")
            conn.execute("UPDATE instances SET module_sha256 = ?, updated_at_ms = ? "
                         "WHERE tenant_id = ? AND instance_id = ?",
                         (move.to_sha256, now, tenant_id, move.instance_id))
            conn.execute(
                "INSERT INTO instance_upgrades (tenant_id, instance_id, seq, from_sha256, "
                "to_sha256, from_version, to_version, journal_length, upgraded_at_ms) "
                "SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, "
                "(SELECT version FROM tenant_modules WHERE tenant_id = ? AND sha256 = ?), "
                "(SELECT version FROM tenant_modules WHERE tenant_id = ? AND sha256 = ?), "
                "?, ? FROM instance_upgrades WHERE tenant_id = ? AND instance_id = ?",
                (tenant_id, move.instance_id, move.from_sha256, move.to_sha256,
                 tenant_id, move.from_sha256, tenant_id, move.to_sha256,
                 move.journal_length, now, tenant_id, move.instance_id))
        await self.db.write(apply)

    async def instance_upgrades(self, tenant_id: TenantId,
                                instance_id: str) -> list[UpgradeRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM instance_upgrades WHERE tenant_id = ? AND instance_id = ? "
            "ORDER BY seq", (tenant_id, instance_id))
        return [UpgradeRecord(ModuleSha(row["from_sha256"]), ModuleSha(row["to_sha256"]),
                              row["from_version"], row["to_version"], row["journal_length"],
                              row["upgraded_at_ms"]) for row in rows]

    # -- versions ----------------------------------------------------------------------

    async def version_usage(self, tenant_id: TenantId) -> list[VersionUsage]:
        rows = await self.db.fetchall(_USAGE_SQL, (tenant_id,))
        if not rows:
            raise UnknownTenant(tenant_id)
        return [usage_of(row) for row in rows]

    async def prune_versions(self, tenant_id: TenantId) -> list[VersionUsage]:
        def prune(conn: sqlite3.Connection) -> list[VersionUsage]:
            unused = [usage_of(row) for row in conn.execute(_USAGE_SQL, (tenant_id,))
                      if not row["active"] and not row["unfinished"] and not row["finished"]]
            if not unused:
                return []
            conn.executemany("DELETE FROM tenant_modules WHERE tenant_id = ? AND sha256 = ?",
                             [(tenant_id, usage.sha256) for usage in unused])
            conn.execute("UPDATE tenants SET highest_pruned_version = MAX("
                         "highest_pruned_version, ?) WHERE tenant_id = ?",
                         (max(usage.version for usage in unused), tenant_id))
            # The bytes go too once nothing at all refers to them (modules are shared
            # between tenants that registered the same bytes).
            conn.executemany(
                "DELETE FROM modules WHERE sha256 = ? "
                "AND NOT EXISTS (SELECT 1 FROM tenant_modules WHERE sha256 = modules.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM instances WHERE module_sha256 = modules.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM tenants WHERE active_sha256 = modules.sha256)",
                [(usage.sha256,) for usage in unused])
            return unused
        return await self.db.write(prune)

    # -- schedules ---------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?",
                            (schedule.tenant_id,)).fetchone() is None:
                raise UnknownTenant(schedule.tenant_id)
            try:
                conn.execute(
                    "INSERT INTO schedules (tenant_id, schedule_id, workflow, cron, timezone, "
                    "params, overlap, catchup, paused, next_tick_ms, created_at_ms, "
                    "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (schedule.tenant_id, schedule.schedule_id, schedule.workflow,
                     schedule.cron, schedule.timezone, schedule.params,
                     schedule.overlap.value, schedule.catchup.value, int(schedule.paused),
                     schedule.next_tick_ms, schedule.created_at_ms, schedule.updated_at_ms))
            except sqlite3.IntegrityError:
                raise DuplicateSchedule(schedule.tenant_id, schedule.schedule_id) from None
        await self.db.write(keeps_fences(insert))

    async def schedules(self, tenant_id: TenantId | None) -> list[Schedule]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = await self.db.fetchall(
            f"SELECT * FROM schedules {where} ORDER BY tenant_id, schedule_id", params)
        return [schedule_of(row) for row in rows]

    async def schedule(self, tenant_id: TenantId, schedule_id: str) -> Schedule | None:
        row = await self.db.fetchone(
            "SELECT * FROM schedules WHERE tenant_id = ? AND schedule_id = ?",
            (tenant_id, schedule_id))
        return schedule_of(row) if row is not None else None

    async def set_schedule_paused(self, tenant_id: TenantId, schedule_id: str, paused: bool,
                                  next_tick_ms: int | None) -> Schedule | None:
        now = self.clock.now_ms()

        def update(conn: sqlite3.Connection) -> Schedule | None:
            conn.execute("UPDATE schedules SET paused = ?, next_tick_ms = ?, updated_at_ms = ? "
                         "WHERE tenant_id = ? AND schedule_id = ?",
                         (int(paused), next_tick_ms, now, tenant_id, schedule_id))
            row = conn.execute("SELECT * FROM schedules WHERE tenant_id = ? AND "
                               "schedule_id = ?", (tenant_id, schedule_id)).fetchone()
            return schedule_of(row) if row is not None else None
        return await self.db.write(keeps_fences(update))

    async def delete_schedule(self, tenant_id: TenantId, schedule_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM schedules WHERE tenant_id = ? AND schedule_id = ?",
                                (tenant_id, schedule_id)).rowcount > 0
        return await self.db.write(keeps_fences(delete))

    async def due_schedules(self, now_ms: int, limit: int) -> list[Schedule]:
        rows = await self.db.fetchall(
            "SELECT * FROM schedules INDEXED BY schedules_due WHERE paused = 0 "
            "AND next_tick_ms <= ? ORDER BY next_tick_ms LIMIT ?", (now_ms, limit))
        return [schedule_of(row) for row in rows]

    async def next_schedule_tick_ms(self) -> int | None:
        row = await self.db.fetchone("SELECT MIN(next_tick_ms) AS next FROM schedules "
                                     "INDEXED BY schedules_due WHERE paused = 0")
        return row["next"] if row is not None else None

    async def fire_schedule(self, firing: ScheduleFiring,
                            prepare: PrepareFiring) -> Fired | None:
        now = self.clock.now_ms()

        @keeps_fences  # inserts instances and moves a schedule on: no run's fence
        def fire(conn: sqlite3.Connection) -> Fired | None:
            row = conn.execute(
                "SELECT paused, next_tick_ms, overlap, last_instance_id FROM schedules "
                "WHERE tenant_id = ? AND schedule_id = ?",
                (firing.tenant_id, firing.schedule_id)).fetchone()
            if row is None or row["paused"] or (
                    row["next_tick_ms"] != firing.expected_next_tick_ms):
                return None  # deleted, paused, or fired by another worker meanwhile
            fired = self._start_ticks(conn, firing, row, prepare, now)
            last_id = fired.started[-1] if fired.started else row["last_instance_id"]
            last_tick = firing.ticks[-1][0] if firing.ticks else None
            conn.execute(
                "UPDATE schedules SET next_tick_ms = ?, "
                "last_tick_ms = COALESCE(?, last_tick_ms), last_instance_id = ?, "
                "started = started + ?, skipped = skipped + ?, last_error = ?, "
                "updated_at_ms = ? WHERE tenant_id = ? AND schedule_id = ?",
                (firing.next_tick_ms, last_tick, last_id, len(fired.started), fired.skipped,
                 fired.error, now, firing.tenant_id, firing.schedule_id))
            return fired
        return await self.db.write(fire)

    def _start_ticks(self, conn: sqlite3.Connection, firing: ScheduleFiring,
                     row: sqlite3.Row, prepare: PrepareFiring, now: int) -> Fired:
        if not firing.ticks:
            return Fired([], firing.missed)
        if row["overlap"] == Overlap.SKIP.value and row["last_instance_id"] is not None:
            last = conn.execute(
                "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ?",
                (firing.tenant_id, row["last_instance_id"])).fetchone()
            if last is not None and not Status(last["status"]).finished:
                return Fired([], firing.missed + len(firing.ticks))
        try:
            active = self._active_now(conn, firing.tenant_id)
            prepared = prepare(active)
        except DwfError as exc:
            return Fired([], firing.missed + len(firing.ticks), str(exc))
        started: list[InstanceId] = []
        for new in prepared:
            try:
                insert_instance(conn, firing.tenant_id, new, active.sha256, now)
            except DuplicateInstance:
                continue  # this tick's instance exists already
            started.append(new.instance_id)
        return Fired(started, firing.missed + len(prepared) - len(started))

    # -- module sources ----------------------------------------------------------------

    async def module_source_stamp(self, tenant_id: TenantId) -> str | None:
        row = await self.db.fetchone(
            "SELECT stamp FROM module_source_stamps WHERE tenant_id = ?", (tenant_id,))
        return str(row["stamp"]) if row is not None else None

    async def set_module_source_stamp(self, tenant_id: TenantId, stamp: str,
                                      sha256: ModuleSha) -> None:
        now = self.clock.now_ms()

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO module_source_stamps (tenant_id, stamp, sha256, loaded_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET "
                "stamp = excluded.stamp, sha256 = excluded.sha256, "
                "loaded_at_ms = excluded.loaded_at_ms", (tenant_id, stamp, sha256, now))
        await self.db.write(keeps_fences(upsert))


_USAGE_SQL = (
    "SELECT tm.sha256, tm.version, tm.registered_at_ms, t.active_sha256 = tm.sha256 AS active, "
    f"(SELECT COUNT(*) FROM instances i WHERE i.tenant_id = tm.tenant_id "
    f"AND i.module_sha256 = tm.sha256 AND i.status NOT IN ({_FINISHED_SQL})) AS unfinished, "
    f"(SELECT COUNT(*) FROM instances i WHERE i.tenant_id = tm.tenant_id "
    f"AND i.module_sha256 = tm.sha256 AND i.status IN ({_FINISHED_SQL})) AS finished "
    "FROM tenant_modules tm JOIN tenants t ON t.tenant_id = tm.tenant_id "
    "WHERE tm.tenant_id = ? ORDER BY tm.version")
