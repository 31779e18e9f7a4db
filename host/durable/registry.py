"""Tenant module registry: validate, store content-addressed, activate per tenant."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog

from ..core.errors import InvalidInput, NotFound, UnknownTenant, UploadInProgress
from ..core.ids import ModuleSha, TenantId
from ..core.limits import TenantLimits
from ..sandbox.modules import MAX_MODULE_BYTES, inspect_module
from ..sandbox.pool import IsolatePool, module_sha
from ..store import ModuleInfo, Storage, TenantInfo

__all__ = ["MAX_MODULE_BYTES", "ModuleInfo", "ModuleRegistry", "TenantInfo"]

log = structlog.get_logger("dwf.registry")
MIN_SHA_PREFIX = 4
"""Fewest sha256 characters `activate` takes as a prefix (fewer look like a version)."""


class ModuleRegistry:
    def __init__(self, store: Storage, pool: IsolatePool) -> None:
        self.store = store
        self.pool = pool
        self._checking: set[TenantId] = set()  # tenants with an upload being checked

    @contextlib.contextmanager
    def one_upload(self, tenant_id: TenantId) -> Iterator[None]:
        """While a module of the tenant's is checked (a registration, a deploy check's
        candidate): UploadInProgress for another, so one tenant keeps at most one compile
        in the lane."""
        if tenant_id in self._checking:
            raise UploadInProgress(tenant_id)
        self._checking.add(tenant_id)
        try:
            yield
        finally:
            self._checking.discard(tenant_id)

    @property
    def default_limits(self) -> TenantLimits:
        return self.store.default_limits

    async def register(self, tenant_id: TenantId, wasm: bytes) -> ModuleInfo:
        """Validate `wasm` and make it the tenant's active version.

        Raises InvalidModule (and changes nothing) if it is not a usable ABI v1 module, and
        UploadInProgress while another of the tenant's modules is being checked.
        """
        with self.one_upload(tenant_id):
            limits = await self.limits_for(tenant_id)
            manifest = await inspect_module(self.pool, wasm, limits,
                                            log.bind(tenant_id=tenant_id, phase="describe"))
            sha256 = module_sha(wasm)
            await self.store.save_module(tenant_id, sha256, wasm, manifest)
        log.info("registry.registered", tenant_id=tenant_id, module_sha256=sha256,
                 workflows=manifest["workflows"])
        return await self.module(tenant_id, sha256)

    async def module(self, tenant_id: TenantId, sha256: ModuleSha) -> ModuleInfo:
        rows = await self.store.modules(tenant_id, sha256)
        if not rows:
            raise NotFound(f"tenant {tenant_id!r} has no module {sha256}")
        return rows[0]

    async def versions(self, tenant_id: TenantId) -> list[ModuleInfo]:
        rows = await self.store.modules(tenant_id)
        if not rows:
            raise UnknownTenant(tenant_id)
        return rows

    async def active(self, tenant_id: TenantId) -> ModuleInfo:
        return (await self.active_with_limits(tenant_id))[0]

    async def active_with_limits(self, tenant_id: TenantId) -> tuple[ModuleInfo, TenantLimits]:
        """The tenant's active version and its limits, in one read (UnknownTenant)."""
        found = await self.store.active_module(tenant_id)
        if found is None:
            raise UnknownTenant(tenant_id)
        return found

    async def activate(self, tenant_id: TenantId, sha256_or_version: str) -> ModuleInfo:
        """Make an earlier registered version active again (a rollback): by its number, its
        sha256, or a unique prefix of it (tables show 16 characters)."""
        target = self.version_named(await self.versions(tenant_id), tenant_id,
                                    sha256_or_version)
        await self.store.activate(tenant_id, target.sha256)
        return await self.module(tenant_id, target.sha256)

    @staticmethod
    def version_named(versions: list[ModuleInfo], tenant_id: TenantId,
                      name: str) -> ModuleInfo:
        """The version `name` names: a version number first, else a sha256 or a prefix of
        at least MIN_SHA_PREFIX of its characters that only one version has."""
        for info in versions:
            if name == str(info.version):
                return info
        found = [info for info in versions
                 if len(name) >= MIN_SHA_PREFIX and info.sha256.startswith(name.lower())]
        if len(found) > 1:
            raise InvalidInput(f"{name!r} is the start of {len(found)} of tenant "
                               f"{tenant_id!r}'s versions ("
                               + ", ".join(f"{i.version}: {i.sha256[:16]}" for i in found)
                               + "): give more of the sha256, or the version number")
        if not found:
            raise NotFound(f"tenant {tenant_id!r} has no module version {name!r} (a version "
                           f"number, or at least {MIN_SHA_PREFIX} characters of a sha256: "
                           "see `dwf tenant versions`)")
        return found[0]

    async def tenants(self) -> list[TenantInfo]:
        return await self.store.tenants()

    async def limits_for(self, tenant_id: TenantId) -> TenantLimits:
        return await self.store.tenant_limits(tenant_id)

    async def set_limits(self, tenant_id: TenantId, overrides: dict[str, Any]) -> TenantLimits:
        return await self.store.set_limits(tenant_id, overrides)

    async def wasm(self, sha256: ModuleSha) -> bytes:
        return await self.store.module_wasm(sha256)

    async def workflows(self, tenant_id: TenantId, sha256: ModuleSha) -> tuple[str, ...]:
        return await self.store.module_workflows(tenant_id, sha256)
