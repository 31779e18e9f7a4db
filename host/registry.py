"""Tenant module registry: validate, store content-addressed, activate per tenant."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import structlog
import wasmtime

from . import abi, sandbox
from .clock import Clock
from .database import Database
from .errors import GuestFault, InvalidModule, NotFound, UnknownTenant
from .ids import ModuleSha, TenantId
from .limits import TenantLimits
from .pool import IsolatePool, module_sha

log = structlog.get_logger("dwf.registry")
_WORKFLOW_NAME = re.compile(abi.WORKFLOW_NAME_PATTERN)
WASM_MAGIC = b"\0asm"
MAX_MODULE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    tenant_id: TenantId
    sha256: ModuleSha
    version: int
    size_bytes: int
    workflows: tuple[str, ...]
    sdk: str
    registered_at_ms: int
    active: bool
    fetch: bool = False
    """The module exports `dwf_fetch`: it answers HTTP requests for its tenant."""


@dataclass(frozen=True, slots=True)
class TenantInfo:
    tenant_id: TenantId
    active_sha256: ModuleSha
    active_version: int
    workflows: tuple[str, ...]
    versions: int
    limits: TenantLimits


ActiveVersion = tuple[ModuleSha, tuple[str, ...], TenantLimits]
"""A tenant's active module, the workflows it exports, and the tenant's limits."""
MAX_PARSED_LIMITS = 4096


class ModuleRegistry:
    def __init__(self, db: Database, pool: IsolatePool, clock: Clock,
                 default_limits: TenantLimits = TenantLimits()) -> None:
        self.db = db
        self.pool = pool
        self.clock = clock
        self.default_limits = default_limits
        self._manifests: dict[ModuleSha, tuple[str, ...]] = {}
        # Parsed `tenants.limits` columns: every invocation and creation reads one.
        self._limits: dict[str, TenantLimits] = {}
        # What `active_now` read on the writer, and at which of its epochs.
        self._active: dict[TenantId, tuple[int, ActiveVersion]] = {}

    async def register(self, tenant_id: TenantId, wasm: bytes) -> ModuleInfo:
        """Validate `wasm` and make it the tenant's active version.

        Raises InvalidModule (and changes nothing) if it is not a usable ABI v1 module.
        """
        manifest = await self._validate(tenant_id, wasm)
        sha256 = module_sha(wasm)
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO modules (sha256, wasm, size_bytes, manifest, created_at_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET manifest = "
                "excluded.manifest",  # re-registering refreshes what this host knows of it
                (sha256, wasm, len(wasm), json.dumps(manifest), now))
            await conn.execute(
                "INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant_id) DO UPDATE SET active_sha256 = excluded.active_sha256",
                (tenant_id, sha256, now))
            await conn.execute(
                "INSERT INTO tenant_modules (tenant_id, sha256, version, registered_at_ms) "
                "SELECT ?, ?, COALESCE(MAX(version), 0) + 1, ? FROM tenant_modules "
                "WHERE tenant_id = ? ON CONFLICT (tenant_id, sha256) DO NOTHING",
                (tenant_id, sha256, now, tenant_id))
        log.info("registry.registered", tenant_id=tenant_id, module_sha256=sha256,
                 workflows=manifest["workflows"])
        return await self.module(tenant_id, sha256)

    async def _validate(self, tenant_id: TenantId, wasm: bytes) -> dict[str, Any]:
        if not wasm.startswith(WASM_MAGIC):
            raise InvalidModule(f"not a WebAssembly module: it starts with {wasm[:4]!r}, "
                                f"a .wasm file starts with {WASM_MAGIC!r}")
        if len(wasm) > MAX_MODULE_BYTES:
            raise InvalidModule(f"module is {len(wasm)} bytes; the limit is {MAX_MODULE_BYTES}")
        try:
            wasmtime.Module.validate(self.pool.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"invalid WebAssembly: {_first_line(exc)}") from None
        try:
            module = await self.pool.call(lambda: self.pool.compile(wasm))
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"module does not compile: {_first_line(exc)}") from None
        problems = sandbox.interface_problems(module)
        if problems:
            raise InvalidModule("module does not implement the dwf ABI "
                                f"v{abi.ABI_VERSION}: " + "; ".join(problems))
        limits = await self.limits_for(tenant_id)
        logger = log.bind(tenant_id=tenant_id, phase="describe")
        try:
            manifest = await self.pool.call(lambda: sandbox.describe(
                self.pool.engine, module, limits, logger))
        except GuestFault as fault:
            raise InvalidModule(f"dwf_describe failed: {fault.message}") from None
        except wasmtime.Trap as trap:
            _, message = sandbox.classify_trap(trap, None, limits)
            raise InvalidModule(f"dwf_describe trapped: {message}") from None
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"module does not instantiate: {_first_line(exc)}") from None
        # The host decides whether a module has a fetch handler, from its exports: the
        # guest's manifest cannot claim one it does not have.
        has_fetch = any(item.name == abi.EXPORT_FETCH for item in module.exports)
        return {**_check_manifest(manifest), "fetch": has_fetch}

    async def module(self, tenant_id: TenantId, sha256: ModuleSha) -> ModuleInfo:
        rows = await self._module_rows(tenant_id, "AND tm.sha256 = ?", (sha256,))
        if not rows:
            raise NotFound(f"tenant {tenant_id!r} has no module {sha256}")
        return rows[0]

    async def versions(self, tenant_id: TenantId) -> list[ModuleInfo]:
        rows = await self._module_rows(tenant_id, "", ())
        if not rows:
            raise UnknownTenant(tenant_id)
        return rows

    async def active(self, tenant_id: TenantId) -> ModuleInfo:
        for info in await self.versions(tenant_id):
            if info.active:
                return info
        raise UnknownTenant(tenant_id)  # unreachable: a tenant always has an active version

    async def _module_rows(self, tenant_id: TenantId, where: str,
                           params: tuple[object, ...]) -> list[ModuleInfo]:
        rows = await self.db.fetchall(
            "SELECT tm.sha256, tm.version, tm.registered_at_ms, m.size_bytes, m.manifest, "
            "t.active_sha256 = tm.sha256 AS active FROM tenant_modules tm "
            "JOIN modules m ON m.sha256 = tm.sha256 JOIN tenants t ON t.tenant_id = tm.tenant_id "
            f"WHERE tm.tenant_id = ? {where} ORDER BY tm.version", (tenant_id, *params))
        result = []
        for row in rows:
            manifest = json.loads(row["manifest"])
            result.append(ModuleInfo(tenant_id, ModuleSha(row["sha256"]), row["version"],
                                     row["size_bytes"], tuple(manifest["workflows"]),
                                     manifest.get("sdk", "?"), row["registered_at_ms"],
                                     bool(row["active"]), bool(manifest.get("fetch", False))))
        return result

    async def activate(self, tenant_id: TenantId, sha256_or_version: str) -> ModuleInfo:
        """Make an earlier registered version active again (a rollback)."""
        target = next((info for info in await self.versions(tenant_id)
                       if sha256_or_version in (info.sha256, str(info.version))), None)
        if target is None:
            raise NotFound(f"tenant {tenant_id!r} has no module version {sha256_or_version!r}")
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE tenants SET active_sha256 = ? WHERE tenant_id = ?",
                               (target.sha256, tenant_id))
        return await self.module(tenant_id, target.sha256)

    async def tenants(self) -> list[TenantInfo]:
        rows = await self.db.fetchall(
            "SELECT t.tenant_id, t.active_sha256, t.limits, m.manifest, "
            "(SELECT version FROM tenant_modules WHERE tenant_id = t.tenant_id "
            " AND sha256 = t.active_sha256) AS active_version, "
            "(SELECT COUNT(*) FROM tenant_modules WHERE tenant_id = t.tenant_id) AS versions "
            "FROM tenants t JOIN modules m ON m.sha256 = t.active_sha256 ORDER BY t.tenant_id")
        return [TenantInfo(TenantId(row["tenant_id"]), ModuleSha(row["active_sha256"]),
                           row["active_version"], tuple(json.loads(row["manifest"])["workflows"]),
                           row["versions"],
                           self.default_limits.with_overrides(json.loads(row["limits"])))
                for row in rows]

    async def limits_for(self, tenant_id: TenantId) -> TenantLimits:
        row = await self.db.fetchone("SELECT limits FROM tenants WHERE tenant_id = ?",
                                     (tenant_id,))
        return self.limits_from(row)

    def limits_from(self, row: sqlite3.Row | None) -> TenantLimits:
        """A tenant's limits from its `tenants.limits` column (defaults for no row)."""
        if row is None:
            return self.default_limits
        raw = row["limits"]
        limits = self._limits.get(raw)
        if limits is None:
            if len(self._limits) >= MAX_PARSED_LIMITS:
                self._limits.clear()
            limits = self._limits[raw] = self.default_limits.with_overrides(json.loads(raw))
        return limits

    def active_now(self, conn: sqlite3.Connection, tenant_id: TenantId) -> ActiveVersion:
        """The tenant's active version, its workflows and limits, read on `conn` (in a
        writer op: creating instances checks and pins the version in one transaction).

        On the writer, read again only when its epoch moved: nothing else changes them.
        """
        epoch: int | None = getattr(conn, "epoch", None)
        cached = self._active.get(tenant_id) if epoch is not None else None
        if cached is not None and cached[0] == epoch:
            return cached[1]
        found = self._read_active(conn, tenant_id)
        if epoch is not None:
            self._active[tenant_id] = (epoch, found)
        return found

    def _read_active(self, conn: sqlite3.Connection, tenant_id: TenantId) -> ActiveVersion:
        row = conn.execute(
            "SELECT t.active_sha256, t.limits, m.manifest FROM tenants t "
            "JOIN modules m ON m.sha256 = t.active_sha256 WHERE t.tenant_id = ?",
            (tenant_id,)).fetchone()
        if row is None:
            raise UnknownTenant(tenant_id)
        sha256 = ModuleSha(row["active_sha256"])
        workflows = self._manifests.get(sha256)
        if workflows is None:  # a module's manifest never changes: its sha256 names it
            workflows = tuple(json.loads(row["manifest"])["workflows"])
            self._manifests[sha256] = workflows
        return sha256, workflows, self.limits_from(row)

    async def set_limits(self, tenant_id: TenantId, overrides: dict[str, Any]) -> TenantLimits:
        current = await self.db.fetchone("SELECT limits FROM tenants WHERE tenant_id = ?",
                                         (tenant_id,))
        if current is None:
            raise UnknownTenant(tenant_id)
        merged = {**json.loads(current["limits"]), **overrides}
        limits = self.default_limits.with_overrides(merged)  # validates before storing
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE tenants SET limits = ? WHERE tenant_id = ?",
                               (json.dumps(merged), tenant_id))
        return limits

    async def wasm(self, sha256: ModuleSha) -> bytes:
        row = await self.db.fetchone("SELECT wasm FROM modules WHERE sha256 = ?", (sha256,))
        if row is None:
            raise NotFound(f"no module {sha256} is stored")
        return bytes(row["wasm"])

    async def workflows(self, sha256: ModuleSha) -> tuple[str, ...]:
        row = await self.db.fetchone("SELECT manifest FROM modules WHERE sha256 = ?", (sha256,))
        if row is None:
            raise NotFound(f"no module {sha256} is stored")
        return tuple(json.loads(row["manifest"])["workflows"])


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise InvalidModule("dwf_describe must report a msgpack map")
    if manifest.get("abi") != abi.ABI_VERSION:
        raise InvalidModule(f"manifest says abi {manifest.get('abi')!r}; expected "
                            f"{abi.ABI_VERSION}")
    workflows = manifest.get("workflows")
    if not isinstance(workflows, list) or not workflows:
        raise InvalidModule("manifest must list at least one workflow name")
    for name in workflows:
        if not isinstance(name, str) or not _WORKFLOW_NAME.fullmatch(name):
            raise InvalidModule(f"manifest has an invalid workflow name {name!r}: use 1-64 "
                                "characters of [A-Za-z0-9_-]")
    if len(set(workflows)) != len(workflows):
        raise InvalidModule("manifest lists a workflow name twice")
    sdk = manifest.get("sdk", "unknown")
    return {"abi": abi.ABI_VERSION, "sdk": str(sdk), "workflows": workflows}
