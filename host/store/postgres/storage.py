"""`Storage` on PostgreSQL: modules, tenants, instances, events and tokens.

Runs, claims and leases are `runs.py`; connections, the group-commit writer, migrations
and LISTEN/NOTIFY are `database.py`. Every query names the tenant, as on SQLite. Cold
paths (registering, limits, control actions, tokens) are transactions of their own on a
pooled connection; PostgreSQL runs them beside the writer's batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...core.clock import Clock
from ...core.errors import NotFound, UnknownInstance, UnknownTenant
from ...core.ids import InstanceId, ModuleSha, TenantId
from ...core.limits import LimitsParser, TenantLimits
from ...core.model import DUE_NOW, AttemptRecord, Status, StepRecord
from ...core.tally import CommitTally
from ..interface import DecideTransition, PrepareInstances, Storage
from ..records import (
    ActiveVersion,
    BufferedEvent,
    Claim,
    InstanceQuery,
    InstanceStatus,
    ModuleInfo,
    RunInputs,
    SecretInfo,
    TenantInfo,
    TokenInfo,
)
from ..rows import (
    active_module_sql,
    attempt_from_row,
    instance_listing,
    instance_status,
    module_info,
    tenant_info,
)
from .creations import Creation, active_versions
from .database import DUE_CHANNEL, MOVED_CHANNEL, Batch, Database
from .lifecycle import PostgresLifecycle
from .runs import (
    DB_NOW_MS,
    PostgresRun,
    Scheduler,
    insert_event,
    load_journal,
    new_worker_id,
)

DEFAULT_LEASE_MS = 10_000
"""How long a worker that stopped renewing keeps its instances before others take them
over (a killed worker's are taken at once: its sessions end with it)."""

_ACTIVE_MODULE_SQL = active_module_sql("$1")


class PostgresStorage(PostgresLifecycle, Storage):
    def __init__(self, db: Database, clock: Clock, limits: LimitsParser,
                 lease_ms: int) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.worker_id = db.worker_id
        self._scheduler = Scheduler(db, clock, limits, lease_ms)

    @classmethod
    async def open(cls, url: str, clock: Clock, limits: LimitsParser, *,
                   lease_ms: int = DEFAULT_LEASE_MS, worker_id: str | None = None
                   ) -> PostgresStorage:
        db = await Database.open(url, worker_id or new_worker_id(), lease_ms)
        return cls(db, clock, limits, lease_ms)

    async def close(self) -> None:
        await self._scheduler.release()
        await self.db.close()

    # -- modules and tenants -------------------------------------------------------

    async def save_module(self, tenant_id: TenantId, sha256: ModuleSha, wasm: bytes,
                          manifest: dict[str, Any]) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO modules (sha256, wasm, size_bytes, created_at_ms) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                sha256, wasm, len(wasm), now)
            await conn.execute(
                "INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) "
                "VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO UPDATE SET "
                "active_sha256 = excluded.active_sha256", tenant_id, sha256, now)
            # One registration of a tenant at a time: versions are numbered in order.
            await conn.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                               tenant_id)
            await conn.execute(
                "INSERT INTO tenant_modules (tenant_id, sha256, version, registered_at_ms, "
                "manifest) SELECT $1, $2, GREATEST(COALESCE(MAX(version), 0), (SELECT "
                "highest_pruned_version FROM tenants WHERE tenant_id = $1)) + 1, $3, $4 "
                "FROM tenant_modules WHERE tenant_id = $1 "
                # Registering its own version again refreshes what this host knows of it
                # (a newer host may read more from a manifest); no other tenant's.
                "ON CONFLICT (tenant_id, sha256) DO UPDATE SET manifest = excluded.manifest",
                tenant_id, sha256, now, json.dumps(manifest))

    async def modules(self, tenant_id: TenantId,
                      sha256: ModuleSha | None = None) -> list[ModuleInfo]:
        rows = await self.db.fetchall(
            "SELECT tm.sha256, tm.version, tm.registered_at_ms, m.size_bytes, tm.manifest, "
            "t.active_sha256 = tm.sha256 AS active FROM tenant_modules tm "
            "JOIN modules m ON m.sha256 = tm.sha256 JOIN tenants t ON t.tenant_id = tm.tenant_id "
            "WHERE tm.tenant_id = $1 AND ($2::text IS NULL OR tm.sha256 = $2) "
            "ORDER BY tm.version", tenant_id, sha256)
        return [module_info(tenant_id, row) for row in rows]

    async def activate(self, tenant_id: TenantId, sha256: ModuleSha) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE tenants SET active_sha256 = $2 WHERE tenant_id = $1",
                               tenant_id, sha256)

    async def tenants(self) -> list[TenantInfo]:
        rows = await self.db.fetchall(
            "SELECT t.tenant_id, t.active_sha256, t.limits, tm.manifest, "
            "tm.version AS active_version, "
            "(SELECT COUNT(*) FROM tenant_modules WHERE tenant_id = t.tenant_id) AS versions "
            "FROM tenants t JOIN tenant_modules tm ON tm.tenant_id = t.tenant_id "
            "AND tm.sha256 = t.active_sha256 ORDER BY t.tenant_id")
        return [tenant_info(row, self.limits.parse(row["limits"])) for row in rows]

    async def tenant_limits(self, tenant_id: TenantId) -> TenantLimits:
        stored = await self.db.fetchval("SELECT limits FROM tenants WHERE tenant_id = $1",
                                        tenant_id)
        return self.limits.parse(stored)

    async def active_module(self, tenant_id: TenantId) -> tuple[ModuleInfo, TenantLimits] | None:
        row = await self.db.fetchone(_ACTIVE_MODULE_SQL, tenant_id)
        if row is None:
            return None
        return module_info(tenant_id, row), self.limits.parse(row["limits"])

    async def set_limits(self, tenant_id: TenantId, overrides: dict[str, Any]) -> TenantLimits:
        async with self.db.transaction() as conn:
            current = await conn.fetchval(
                "SELECT limits FROM tenants WHERE tenant_id = $1 FOR UPDATE", tenant_id)
            if current is None:
                raise UnknownTenant(tenant_id)
            merged = {**json.loads(current), **overrides}
            limits = self.default_limits.with_overrides(merged)  # validates before storing
            await conn.execute("UPDATE tenants SET limits = $2 WHERE tenant_id = $1",
                               tenant_id, json.dumps(merged))
        return limits

    async def module_wasm(self, sha256: ModuleSha) -> bytes:
        wasm = await self.db.fetchval("SELECT wasm FROM modules WHERE sha256 = $1", sha256)
        if wasm is None:
            raise NotFound(f"no module {sha256} is stored")
        return bytes(wasm)

    async def module_workflows(self, tenant_id: TenantId, sha256: ModuleSha) -> tuple[str, ...]:
        manifest = await self.db.fetchval(
            "SELECT manifest FROM tenant_modules WHERE tenant_id = $1 AND sha256 = $2",
            tenant_id, sha256)
        if manifest is None:
            raise NotFound(f"tenant {tenant_id!r} has no module {sha256}")
        return tuple(json.loads(manifest)["workflows"])

    async def _active_now(self, batch: Batch, tenant_id: TenantId) -> ActiveVersion:
        """The tenant's active version, its workflows and limits, read in the creating
        transaction (an activation committed meanwhile comes after this creation)."""
        active = (await active_versions(batch, [tenant_id], self.limits)).get(tenant_id)
        if active is None:
            raise UnknownTenant(tenant_id)
        return active

    # -- capabilities: egress rules and secrets ---------------------------------------

    async def egress_rules(self, tenant_id: TenantId) -> list[str]:
        stored = await self.db.fetchval("SELECT egress FROM tenants WHERE tenant_id = $1",
                                        tenant_id)
        if stored is None:
            raise UnknownTenant(tenant_id)
        rules: list[str] = json.loads(stored)
        return rules

    async def set_egress_rules(self, tenant_id: TenantId, rules: list[str]) -> None:
        done = await self.db.execute("UPDATE tenants SET egress = $2 WHERE tenant_id = $1",
                                     tenant_id, json.dumps(rules))
        if done == "UPDATE 0":
            raise UnknownTenant(tenant_id)

    async def put_secret(self, tenant_id: TenantId, name: str, sealed: bytes) -> None:
        now = self.clock.now_ms()
        stored = await self.db.fetchval(
            "INSERT INTO secrets (tenant_id, name, sealed, created_at_ms, updated_at_ms) "
            "SELECT tenant_id, $2, $3, $4, $4 FROM tenants WHERE tenant_id = $1 "
            "ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, "
            "updated_at_ms = excluded.updated_at_ms RETURNING 1", tenant_id, name, sealed, now)
        if stored is None:
            raise UnknownTenant(tenant_id)

    async def secret(self, tenant_id: TenantId, name: str) -> bytes | None:
        sealed = await self.db.fetchval(
            "SELECT sealed FROM secrets WHERE tenant_id = $1 AND name = $2", tenant_id, name)
        return bytes(sealed) if sealed is not None else None

    async def secrets(self, tenant_id: TenantId) -> list[SecretInfo]:
        await self.egress_rules(tenant_id)  # UnknownTenant for a typo
        rows = await self.db.fetchall(
            "SELECT name, created_at_ms, updated_at_ms FROM secrets WHERE tenant_id = $1 "
            "ORDER BY name", tenant_id)
        return [SecretInfo(row["name"], row["created_at_ms"], row["updated_at_ms"])
                for row in rows]

    async def delete_secret(self, tenant_id: TenantId, name: str) -> bool:
        done = await self.db.execute(
            "DELETE FROM secrets WHERE tenant_id = $1 AND name = $2", tenant_id, name)
        return done != "DELETE 0"

    # -- instances -------------------------------------------------------------------

    async def create_instances(self, tenant_id: TenantId, count: int,
                               prepare: PrepareInstances) -> list[InstanceId]:
        created: list[InstanceId] = await self.db.write(
            Creation(tenant_id, count, prepare, self.clock.now_ms(), self.limits))
        return created

    async def instance(self, tenant_id: TenantId, instance_id: str) -> InstanceStatus | None:
        row = await self.db.fetchone(
            "SELECT * FROM instances WHERE tenant_id = $1 AND instance_id = $2",
            tenant_id, instance_id)
        return instance_status(row) if row is not None else None

    async def peek_status(self, tenant_id: TenantId, instance_id: str) -> Status | None:
        status = await self.db.fetchval(
            "SELECT status FROM instances WHERE tenant_id = $1 AND instance_id = $2",
            tenant_id, instance_id)
        return Status(status) if status is not None else None

    async def journal(self, tenant_id: TenantId, instance_id: str) -> list[StepRecord]:
        async with self.db.connection() as conn:
            return await load_journal(conn, tenant_id, instance_id)

    async def attempts(self, tenant_id: TenantId, instance_id: str) -> list[AttemptRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM step_attempts WHERE tenant_id = $1 AND instance_id = $2 "
            "ORDER BY position, attempt", tenant_id, instance_id)
        return [attempt_from_row(row) for row in rows]

    async def count_instances(self) -> dict[tuple[TenantId, Status], int]:
        rows = await self.db.fetchall(
            "SELECT tenant_id, status, count(*) AS n FROM instances GROUP BY status, tenant_id")
        return {(TenantId(row["tenant_id"]), Status(row["status"])): row["n"] for row in rows}

    async def count_due(self, now_ms: int) -> int:
        return int(await self.db.fetchval(
            "SELECT count(*) FROM instances WHERE status IN ('queued', 'waiting') "
            "AND wake_at_ms <= $1", now_ms))

    def commit_tally(self) -> CommitTally | None:
        return self.db.writer.tally

    async def list_instances(self, query: InstanceQuery) -> list[InstanceStatus]:
        sql, params = instance_listing(query, lambda n: f"${n}", "strpos")
        return [instance_status(row) for row in await self.db.fetchall(sql, *params)]

    async def module_instance_counts(self, tenant_id: TenantId) -> dict[ModuleSha, int]:
        rows = await self.db.fetchall(
            "SELECT module_sha256, count(*) AS n FROM instances WHERE tenant_id = $1 "
            "GROUP BY module_sha256", tenant_id)
        return {ModuleSha(row["module_sha256"]): row["n"] for row in rows}

    async def buffered_events(self, tenant_id: TenantId,
                              instance_id: str) -> list[BufferedEvent]:
        rows = await self.db.fetchall(
            "SELECT type, payload, sent_at_ms FROM events WHERE tenant_id = $1 AND "
            "instance_id = $2 AND consumed_position IS NULL ORDER BY seq",
            tenant_id, instance_id)
        return [BufferedEvent(row["type"], bytes(row["payload"]), row["sent_at_ms"])
                for row in rows]

    async def transition(self, tenant_id: TenantId, instance_id: str,
                         decide: DecideTransition) -> Status:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            current = await conn.fetchval(
                "SELECT status FROM instances WHERE tenant_id = $1 AND instance_id = $2 "
                "FOR NO KEY UPDATE", tenant_id, instance_id)
            if current is None:
                raise UnknownInstance(tenant_id, instance_id)
            change = decide(Status(current))
            if change.finish:
                await conn.execute(
                    "UPDATE instances SET status = $3, run_id = NULL, owner = NULL, "
                    "wake_at_ms = NULL, waiting_event_type = NULL, finished_at_ms = $4, "
                    "updated_at_ms = $4 WHERE tenant_id = $1 AND instance_id = $2",
                    tenant_id, instance_id, change.status.value, now)
            else:
                await conn.execute(
                    "UPDATE instances SET status = $3, wake_at_ms = COALESCE($4, wake_at_ms), "
                    "updated_at_ms = $5 WHERE tenant_id = $1 AND instance_id = $2",
                    tenant_id, instance_id, change.status.value, change.wake_at_ms, now)
                if change.wake_at_ms is not None:
                    await conn.execute(f"NOTIFY {DUE_CHANNEL}")
            await conn.execute(f"NOTIFY {MOVED_CHANNEL}")
        self.db.moved()
        return change.status

    async def restart(self, tenant_id: TenantId, instance_id: str) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            done = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, owner = NULL, "
                "wake_at_ms = $3, waiting_event_type = NULL, output = NULL, error_name = NULL, "
                "error_message = NULL, finished_at_ms = NULL, updated_at_ms = $4 "
                "WHERE tenant_id = $1 AND instance_id = $2", tenant_id, instance_id, DUE_NOW,
                now)
            if done == "UPDATE 0":
                raise UnknownInstance(tenant_id, instance_id)
            await conn.execute("DELETE FROM steps WHERE tenant_id = $1 AND instance_id = $2",
                               tenant_id, instance_id)
            await conn.execute("DELETE FROM step_attempts WHERE tenant_id = $1 AND "
                               "instance_id = $2", tenant_id, instance_id)
            await conn.execute("DELETE FROM events WHERE tenant_id = $1 AND instance_id = $2 "
                               "AND consumed_position IS NOT NULL", tenant_id, instance_id)
            await conn.execute(f"NOTIFY {DUE_CHANNEL}")
            await conn.execute(f"NOTIFY {MOVED_CHANNEL}")
        self.db.moved()

    async def send_event(self, tenant_id: TenantId, instance_id: str, event_type: str,
                         payload: bytes) -> None:
        async def send(batch: Batch) -> None:
            await insert_event(batch, tenant_id, instance_id, event_type, payload,
                               self.clock.now_ms())
        await self.db.write(send)

    # -- scheduling and runs -----------------------------------------------------------

    async def recover(self) -> int:
        return await self._scheduler.recover()

    async def take_over(self, worker_id: str) -> int:
        return await self._scheduler.take_over(gone=worker_id)

    async def claim_due(self, limit: int) -> list[Claim]:
        return await self._scheduler.claim_due(limit)

    async def next_wake_ms(self) -> int | None:
        return await self._scheduler.next_wake_ms()

    async def watch_due(self, callback: Callable[[], None]) -> None:
        await self.db.listen(callback)

    async def live_workers(self) -> int | None:
        return int(await self.db.fetchval(
            f"SELECT count(*) FROM workers WHERE lease_until_ms >= {DB_NOW_MS}"))

    def load_run(self, claim: Claim) -> RunInputs | None:
        return self._scheduler.load_run(claim)

    def run_writes(self, claim: Claim) -> PostgresRun:
        return PostgresRun(claim, self.db, self.clock)

    # -- API tokens --------------------------------------------------------------------

    async def insert_token(self, token: TokenInfo, token_sha256: str) -> None:
        await self.db.execute(
            "INSERT INTO api_tokens (token_id, tenant_id, token_sha256, name, created_at_ms) "
            "VALUES ($1, $2, $3, $4, $5)", token.token_id, token.tenant_id, token_sha256,
            token.name, token.created_at_ms)

    async def tokens(self, tenant_id: TenantId | None) -> list[TokenInfo]:
        rows = await self.db.fetchall(
            "SELECT token_id, tenant_id, name, created_at_ms, revoked_at_ms FROM api_tokens "
            "WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY created_at_ms, token_id",
            tenant_id)
        return [TokenInfo(row["token_id"], row["tenant_id"], row["name"], row["created_at_ms"],
                          row["revoked_at_ms"]) for row in rows]

    async def revoke_token(self, token_id: str) -> bool:
        done = await self.db.execute(
            "UPDATE api_tokens SET revoked_at_ms = $2 WHERE token_id = $1 AND "
            "revoked_at_ms IS NULL", token_id, self.clock.now_ms())
        return done != "UPDATE 0"

    async def token_digest(self, token_id: str) -> tuple[TenantId | None, str] | None:
        row = await self.db.fetchone(
            "SELECT tenant_id, token_sha256 FROM api_tokens WHERE token_id = $1 AND "
            "revoked_at_ms IS NULL", token_id)
        return (row["tenant_id"], row["token_sha256"]) if row is not None else None
