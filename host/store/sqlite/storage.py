"""`Storage` on one SQLite file: modules, tenants, instances, events and tokens.

Runs and claims are `runs.py`; the connections, the group-commit writer and migrations are
`database.py`. Every query names the tenant: an instance id is only unique per tenant, and
a tenant can never reach another tenant's rows by guessing ids.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
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
from ..rows import active_module_sql, instance_listing, module_info, tenant_info
from .database import Database, keeps_fences, one_write
from .lifecycle import SqliteLifecycle
from .rows import attempt_from_row, instance_status, record_from_row
from .runs import Scheduler, SqliteRun, insert_event, insert_instance

_ACTIVE_MODULE_SQL = active_module_sql("?")


class SqliteStorage(SqliteLifecycle, Storage):
    def __init__(self, db: Database, clock: Clock, limits: LimitsParser,
                 worker_id: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.worker_id = worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._scheduler = Scheduler(db, clock, limits, self.worker_id)
        # What `_active_now` read on the writer, and at which of its epochs.
        self._active: dict[TenantId, tuple[int, ActiveVersion]] = {}

    @classmethod
    async def open(cls, path: str | Path, clock: Clock, limits: LimitsParser, *,
                   synchronous: str = "NORMAL", worker_id: str | None = None
                   ) -> SqliteStorage:
        return cls(await Database.open(path, synchronous=synchronous), clock, limits,
                   worker_id)

    @property
    def path(self) -> Path:
        return self.db.path

    async def close(self) -> None:
        await self.db.close()

    # -- modules and tenants -------------------------------------------------------

    async def save_module(self, tenant_id: TenantId, sha256: ModuleSha, wasm: bytes,
                          manifest: dict[str, Any]) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO modules (sha256, wasm, size_bytes, created_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (sha256, wasm, len(wasm), now))
            await conn.execute(
                "INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant_id) DO UPDATE SET active_sha256 = excluded.active_sha256",
                (tenant_id, sha256, now))
            await conn.execute(
                "INSERT INTO tenant_modules (tenant_id, sha256, version, registered_at_ms, "
                "manifest) SELECT ?, ?, MAX(COALESCE(MAX(version), 0), (SELECT "
                "highest_pruned_version FROM tenants WHERE tenant_id = ?)) + 1, ?, ? "
                "FROM tenant_modules WHERE tenant_id = ? "
                # Registering its own version again refreshes what this host knows of it
                # (a newer host may read more from a manifest); no other tenant's.
                "ON CONFLICT (tenant_id, sha256) DO UPDATE SET manifest = excluded.manifest",
                (tenant_id, sha256, tenant_id, now, json.dumps(manifest), tenant_id))

    async def modules(self, tenant_id: TenantId,
                      sha256: ModuleSha | None = None) -> list[ModuleInfo]:
        where, params = ("AND tm.sha256 = ?", (sha256,)) if sha256 is not None else ("", ())
        rows = await self.db.fetchall(
            "SELECT tm.sha256, tm.version, tm.registered_at_ms, m.size_bytes, tm.manifest, "
            "t.active_sha256 = tm.sha256 AS active FROM tenant_modules tm "
            "JOIN modules m ON m.sha256 = tm.sha256 JOIN tenants t ON t.tenant_id = tm.tenant_id "
            f"WHERE tm.tenant_id = ? {where} ORDER BY tm.version", (tenant_id, *params))
        return [module_info(tenant_id, row) for row in rows]

    async def activate(self, tenant_id: TenantId, sha256: ModuleSha) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE tenants SET active_sha256 = ? WHERE tenant_id = ?",
                               (sha256, tenant_id))

    async def tenants(self) -> list[TenantInfo]:
        rows = await self.db.fetchall(
            "SELECT t.tenant_id, t.active_sha256, t.limits, tm.manifest, "
            "tm.version AS active_version, "
            "(SELECT COUNT(*) FROM tenant_modules WHERE tenant_id = t.tenant_id) AS versions "
            "FROM tenants t JOIN tenant_modules tm ON tm.tenant_id = t.tenant_id "
            "AND tm.sha256 = t.active_sha256 ORDER BY t.tenant_id")
        return [tenant_info(row, self.limits.parse(row["limits"])) for row in rows]

    async def tenant_limits(self, tenant_id: TenantId) -> TenantLimits:
        row = self.db.peek("SELECT limits FROM tenants WHERE tenant_id = ?", (tenant_id,))
        return self.limits.parse(row["limits"] if row is not None else None)

    async def active_module(self, tenant_id: TenantId) -> tuple[ModuleInfo, TenantLimits] | None:
        row = self.db.peek(_ACTIVE_MODULE_SQL, (tenant_id,))
        if row is None:
            return None
        return module_info(tenant_id, row), self.limits.parse(row["limits"])

    async def set_limits(self, tenant_id: TenantId, overrides: dict[str, Any]) -> TenantLimits:
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT limits FROM tenants WHERE tenant_id = ?",
                                    (tenant_id,)) as cursor:
                current = await cursor.fetchone()
            if current is None:
                raise UnknownTenant(tenant_id)
            merged = {**json.loads(current["limits"]), **overrides}
            limits = self.default_limits.with_overrides(merged)  # validates before storing
            await conn.execute("UPDATE tenants SET limits = ? WHERE tenant_id = ?",
                               (json.dumps(merged), tenant_id))
        return limits

    async def module_wasm(self, sha256: ModuleSha) -> bytes:
        row = await self.db.fetchone("SELECT wasm FROM modules WHERE sha256 = ?", (sha256,))
        if row is None:
            raise NotFound(f"no module {sha256} is stored")
        return bytes(row["wasm"])

    async def module_workflows(self, tenant_id: TenantId, sha256: ModuleSha) -> tuple[str, ...]:
        row = await self.db.fetchone(
            "SELECT manifest FROM tenant_modules WHERE tenant_id = ? AND sha256 = ?",
            (tenant_id, sha256))
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} has no module {sha256}")
        return tuple(json.loads(row["manifest"])["workflows"])

    def _active_now(self, conn: sqlite3.Connection, tenant_id: TenantId) -> ActiveVersion:
        """The tenant's active version, its workflows and limits, read on `conn` (in a
        writer op: creating instances checks and pins the version in one transaction).

        On the writer, read again only when its epoch moved: nothing else changes them.
        """
        epoch: int | None = getattr(conn, "epoch", None)
        cached = self._active.get(tenant_id) if epoch is not None else None
        if cached is not None and cached[0] == epoch:
            return cached[1]
        row = conn.execute(
            "SELECT t.active_sha256, t.limits, tm.manifest FROM tenants t "
            "JOIN tenant_modules tm ON tm.tenant_id = t.tenant_id "
            "AND tm.sha256 = t.active_sha256 WHERE t.tenant_id = ?", (tenant_id,)).fetchone()
        if row is None:
            raise UnknownTenant(tenant_id)
        found = ActiveVersion(ModuleSha(row["active_sha256"]),
                              tuple(json.loads(row["manifest"])["workflows"]),
                              self.limits.parse(row["limits"]))
        if epoch is not None:
            self._active[tenant_id] = (epoch, found)
        return found

    # -- capabilities: egress rules and secrets ---------------------------------------

    async def egress_rules(self, tenant_id: TenantId) -> list[str]:
        row = await self.db.fetchone("SELECT egress FROM tenants WHERE tenant_id = ?",
                                     (tenant_id,))
        if row is None:
            raise UnknownTenant(tenant_id)
        rules: list[str] = json.loads(row["egress"])
        return rules

    async def set_egress_rules(self, tenant_id: TenantId, rules: list[str]) -> None:
        async with self.db.transaction() as conn:
            cursor = await conn.execute("UPDATE tenants SET egress = ? WHERE tenant_id = ?",
                                        (json.dumps(rules), tenant_id))
            if cursor.rowcount == 0:
                raise UnknownTenant(tenant_id)

    async def put_secret(self, tenant_id: TenantId, name: str, sealed: bytes) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?",
                                    (tenant_id,)) as cursor:
                if await cursor.fetchone() is None:
                    raise UnknownTenant(tenant_id)
            await conn.execute(
                "INSERT INTO secrets (tenant_id, name, sealed, created_at_ms, updated_at_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET "
                "sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
                (tenant_id, name, sealed, now, now))

    async def secret(self, tenant_id: TenantId, name: str) -> bytes | None:
        row = await self.db.fetchone(
            "SELECT sealed FROM secrets WHERE tenant_id = ? AND name = ?", (tenant_id, name))
        return bytes(row["sealed"]) if row is not None else None

    async def secrets(self, tenant_id: TenantId) -> list[SecretInfo]:
        await self.egress_rules(tenant_id)  # UnknownTenant for a typo
        rows = await self.db.fetchall(
            "SELECT name, created_at_ms, updated_at_ms FROM secrets WHERE tenant_id = ? "
            "ORDER BY name", (tenant_id,))
        return [SecretInfo(row["name"], row["created_at_ms"], row["updated_at_ms"])
                for row in rows]

    async def delete_secret(self, tenant_id: TenantId, name: str) -> bool:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM secrets WHERE tenant_id = ? AND name = ?", (tenant_id, name))
            return cursor.rowcount > 0

    # -- instances -------------------------------------------------------------------

    async def create_instances(self, tenant_id: TenantId, count: int,
                               prepare: PrepareInstances) -> list[InstanceId]:
        # One writer op checks against the active version and inserts, atomically.
        @keeps_fences
        def create(conn: sqlite3.Connection) -> list[InstanceId]:
            active = self._active_now(conn, tenant_id)
            prepared = prepare(active)
            assert len(prepared) == count, "prepare returns one instance per request"
            now = self.clock.now_ms()
            for new in prepared:
                insert_instance(conn, tenant_id, new, active.sha256, now)
            return [new.instance_id for new in prepared]
        if count == 1:
            create = one_write(create)  # a failed INSERT is undone by SQLite itself
        return await self.db.write(create)

    async def instance(self, tenant_id: TenantId, instance_id: str) -> InstanceStatus | None:
        row = await self.db.fetchone(
            "SELECT * FROM instances WHERE tenant_id = ? AND instance_id = ?",
            (tenant_id, instance_id))
        return instance_status(row) if row is not None else None

    async def peek_status(self, tenant_id: TenantId, instance_id: str) -> Status | None:
        row = self.db.peek("SELECT status FROM instances WHERE tenant_id = ? AND "
                           "instance_id = ?", (tenant_id, instance_id))
        return Status(row["status"]) if row is not None else None

    async def journal(self, tenant_id: TenantId, instance_id: str) -> list[StepRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM steps WHERE tenant_id = ? AND instance_id = ? ORDER BY position",
            (tenant_id, instance_id))
        return [record_from_row(row) for row in rows]

    async def attempts(self, tenant_id: TenantId, instance_id: str) -> list[AttemptRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM step_attempts WHERE tenant_id = ? AND instance_id = ? "
            "ORDER BY position, attempt", (tenant_id, instance_id))
        return [attempt_from_row(row) for row in rows]

    async def count_instances(self) -> dict[tuple[TenantId, Status], int]:
        rows = await self.db.fetchall(  # a scan of instances_by_status alone
            "SELECT tenant_id, status, COUNT(*) AS n FROM instances INDEXED BY "
            "instances_by_status GROUP BY status, tenant_id")
        return {(TenantId(row["tenant_id"]), Status(row["status"])): row["n"] for row in rows}

    async def count_due(self, now_ms: int) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM instances INDEXED BY instances_due "
            "WHERE status IN ('queued', 'waiting') AND wake_at_ms <= ?", (now_ms,))
        return row["n"] if row is not None else 0

    def commit_tally(self) -> CommitTally | None:
        return self.db.writer.tally if self.db.writer is not None else None

    async def list_instances(self, query: InstanceQuery) -> list[InstanceStatus]:
        sql, params = instance_listing(query, lambda _: "?", "instr")
        return [instance_status(row) for row in await self.db.fetchall(sql, tuple(params))]

    async def buffered_events(self, tenant_id: TenantId,
                              instance_id: str) -> list[BufferedEvent]:
        rows = await self.db.fetchall(
            "SELECT type, payload, sent_at_ms FROM events WHERE tenant_id = ? AND "
            "instance_id = ? AND consumed_position IS NULL ORDER BY seq",
            (tenant_id, instance_id))
        return [BufferedEvent(row["type"], bytes(row["payload"]), row["sent_at_ms"])
                for row in rows]

    async def transition(self, tenant_id: TenantId, instance_id: str,
                         decide: DecideTransition) -> Status:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            async with conn.execute(
                    "SELECT status FROM instances WHERE tenant_id = ? AND instance_id = ?",
                    (tenant_id, instance_id)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise UnknownInstance(tenant_id, instance_id)
            change = decide(Status(row["status"]))
            assignments = ""
            values: tuple[int, ...] = ()
            if change.finish:
                assignments = ("run_id = NULL, wake_at_ms = NULL, waiting_event_type = NULL, "
                               "finished_at_ms = ?, ")
                values = (now,)
            elif change.wake_at_ms is not None:
                assignments, values = "wake_at_ms = ?, ", (change.wake_at_ms,)
            await conn.execute(
                f"UPDATE instances SET status = ?, {assignments}updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (change.status.value, *values, now, tenant_id, instance_id))
        return change.status

    async def restart(self, tenant_id: TenantId, instance_id: str) -> None:
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE instances SET status = 'queued', run_id = NULL, wake_at_ms = ?, "
                "waiting_event_type = NULL, output = NULL, error_name = NULL, "
                "error_message = NULL, finished_at_ms = NULL, updated_at_ms = ? "
                "WHERE tenant_id = ? AND instance_id = ?",
                (DUE_NOW, now, tenant_id, instance_id))
            if cursor.rowcount == 0:
                raise UnknownInstance(tenant_id, instance_id)
            await conn.execute("DELETE FROM steps WHERE tenant_id = ? AND instance_id = ?",
                               (tenant_id, instance_id))
            await conn.execute("DELETE FROM step_attempts WHERE tenant_id = ? AND "
                               "instance_id = ?", (tenant_id, instance_id))
            await conn.execute("DELETE FROM events WHERE tenant_id = ? AND instance_id = ? "
                               "AND consumed_position IS NOT NULL", (tenant_id, instance_id))

    async def send_event(self, tenant_id: TenantId, instance_id: str, event_type: str,
                         payload: bytes) -> None:
        await self.db.write(lambda conn: insert_event(conn, tenant_id, instance_id, event_type,
                                                      payload, self.clock.now_ms()))

    # -- scheduling and runs -----------------------------------------------------------

    async def recover(self) -> int:
        return await self._scheduler.recover()

    async def take_over(self, worker_id: str) -> int:
        return await self._scheduler.take_over(worker_id)

    async def claim_due(self, limit: int) -> list[Claim]:
        return await self._scheduler.claim_due(limit)

    async def next_wake_ms(self) -> int | None:
        return self._scheduler.next_wake_ms()

    async def watch_due(self, callback: Callable[[], None]) -> None:
        """Nothing to watch: only this process's worker runs on the file, and it polls for
        what other processes (the CLI) change."""

    def load_run(self, claim: Claim) -> RunInputs | None:
        return self._scheduler.load_run(claim)

    def run_writes(self, claim: Claim) -> SqliteRun:
        return SqliteRun(claim, self.db, self.clock)

    # -- API tokens --------------------------------------------------------------------

    async def insert_token(self, token: TokenInfo, token_sha256: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO api_tokens (token_id, tenant_id, token_sha256, name, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?)",
                (token.token_id, token.tenant_id, token_sha256, token.name,
                 token.created_at_ms))

    async def tokens(self, tenant_id: TenantId | None) -> list[TokenInfo]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = await self.db.fetchall(
            "SELECT token_id, tenant_id, name, created_at_ms, revoked_at_ms FROM api_tokens "
            f"{where} ORDER BY created_at_ms, token_id", params)
        return [TokenInfo(row["token_id"], row["tenant_id"], row["name"], row["created_at_ms"],
                          row["revoked_at_ms"]) for row in rows]

    async def revoke_token(self, token_id: str) -> bool:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE api_tokens SET revoked_at_ms = ? WHERE token_id = ? AND "
                "revoked_at_ms IS NULL", (self.clock.now_ms(), token_id))
            return cursor.rowcount > 0

    async def token_digest(self, token_id: str) -> tuple[TenantId | None, str] | None:
        row = await self.db.fetchone(
            "SELECT tenant_id, token_sha256 FROM api_tokens WHERE token_id = ? AND "
            "revoked_at_ms IS NULL", (token_id,))
        return (row["tenant_id"], row["token_sha256"]) if row is not None else None
