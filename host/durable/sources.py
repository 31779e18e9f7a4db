"""On-demand loading: a tenant's code found by id when it is needed (the Worker Loader's
callback, `LOADER.get(tenantId, async () => ({modules: await fetchTenantCode(tenantId)}))`).

A deployment names one `ModuleSource`: a directory (`DIR/<tenant>.wasm`), an HTTP(S) URL
template (`https://code.example.com/{tenant}.wasm`, fetched through the SSRF-safe client
tenant egress uses), or, embedding the engine, an async callable `loader(tenant_id)`.
Before the host needs a tenant's active module (creating an instance, firing a schedule,
answering its front door), `OnDemandModules.ensure` asks the source, at most once every
`check_interval_s` per tenant, whether the tenant's module changed (a file's mtime and
size, an ETag, or the bytes' sha256: the source's *stamp*); if it did, or the tenant has
no module yet, the bytes are registered exactly as `dwf tenant register` would (validated,
stored by sha256, made active; instances stay pinned to the version they started on).

The last stamp loaded is kept in the database, so every host sharing it agrees on what
was loaded, and a version an operator activated by hand (a rollback) stays active until
the source changes again. Registration by hand keeps working beside a source.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import structlog

from ..core.errors import InvalidModule, ModuleSourceUnavailable, UnknownTenant
from ..core.ids import TenantId
from ..egress.client import EgressError, Outgoing, TenantClient
from ..egress.rules import EgressRule, Target, ip_literal
from ..sandbox.modules import MAX_MODULE_BYTES
from ..sandbox.pool import module_sha
from ..store import Storage
from .registry import ModuleRegistry

log = structlog.get_logger("dwf.sources")

DEFAULT_CHECK_INTERVAL_S = 5.0
URL_TIMEOUT_S = 30.0
_EGRESS_ADVICE = " (egress is denied unless"

Loader = Callable[[TenantId], Awaitable[bytes | None]]
"""An embedding's loader: the tenant's module bytes, or None if it has none."""


@dataclass(frozen=True, slots=True)
class Found:
    """What a source holds for a tenant now."""

    stamp: str
    """Identifies this version of the source's module (the same stamp: the same bytes)."""

    wasm: bytes | None
    """The bytes, or None when they are known unchanged since the stamp asked about."""


@runtime_checkable
class ModuleSource(Protocol):
    """Where a deployment's tenant modules come from."""

    description: str
    """Says where, for messages ("directory /srv/modules")."""

    async def fetch(self, tenant_id: TenantId, stamp: str | None) -> Found | None:
        """The tenant's module (None: the source has none for it). `stamp` is what was
        loaded last: a source that can tell cheaply answers `Found(stamp, None)` when it
        has not changed. Raises ModuleSourceUnavailable when it cannot be asked now."""
        ...

    async def close(self) -> None: ...


def _too_large(size: int, where: str) -> ModuleSourceUnavailable:
    return ModuleSourceUnavailable(f"{where} is {size} bytes; a module is at most "
                                   f"{MAX_MODULE_BYTES}")


class DirectorySource:
    """`DIR/<tenant>.wasm`; its stamp is the file's mtime and size."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"directory {directory}"

    async def fetch(self, tenant_id: TenantId, stamp: str | None) -> Found | None:
        return await asyncio.to_thread(self._read, tenant_id, stamp)

    def _read(self, tenant_id: TenantId, stamp: str | None) -> Found | None:
        path = self.directory / f"{tenant_id}.wasm"  # tenant ids have no '/' and no '..'
        try:
            with path.open("rb") as file:
                info = _stat(file.fileno())
                now = f"file:{info[0]}:{info[1]}"
                if now == stamp:
                    return Found(now, None)
                if info[1] > MAX_MODULE_BYTES:
                    raise _too_large(info[1], str(path))
                return Found(now, file.read(MAX_MODULE_BYTES + 1))
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            raise ModuleSourceUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        return None


def _stat(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_mtime_ns, info.st_size


class UrlSource:
    """An HTTP(S) URL template with `{tenant}`; its stamp is the response's ETag (asked
    with If-None-Match, so an unchanged module costs a 304) or else the bytes' sha256.

    The requests go through the SSRF-safe client of tenant egress, allowed to reach the
    template's origin only (every redirect is checked the same way); a code server on a
    loopback or private address must be named by that address in the template."""

    def __init__(self, template: str) -> None:
        if "{tenant}" not in template:
            raise ValueError(f"the module URL template {template!r} has no {{tenant}}")
        target = Target.of(template.replace("{tenant}", "t"))
        origin = f"{target.scheme}://{target.host}:{target.port}"
        literal = ip_literal(target.host)
        rules = [EgressRule.parse(origin, allow=True, private=literal is not None)]
        self.template = template
        self._origin = origin
        self.description = f"URL template {template}"
        self._client = TenantClient(lambda: rules)

    async def fetch(self, tenant_id: TenantId, stamp: str | None) -> Found | None:
        url = self.template.replace("{tenant}", quote(tenant_id, safe=""))
        headers = [("accept", "application/wasm")]
        if stamp is not None and stamp.startswith("etag:"):
            headers.append(("if-none-match", stamp.removeprefix("etag:")))
        try:
            received = await self._client.send(
                Outgoing("GET", url, headers, b"", frozenset()), URL_TIMEOUT_S,
                MAX_MODULE_BYTES)
        except EgressError as exc:
            reason = exc.message
            if _EGRESS_ADVICE in reason:  # about tenants' egress rules, not this source
                reason = reason[:reason.index(_EGRESS_ADVICE)] + (
                    f": the module source reaches {self._origin} only")
            raise ModuleSourceUnavailable(f"cannot fetch {url}: {reason}") from None
        if received.status == 304 and stamp is not None:
            return Found(stamp, None)
        if received.status == 404:
            return None
        if received.status != 200:
            raise ModuleSourceUnavailable(f"{url} answered HTTP {received.status}")
        etag = dict(received.headers).get("etag")
        return Found(f"etag:{etag}" if etag else _sha_stamp(received.body), received.body)

    async def close(self) -> None:
        await self._client.close()


class CallableSource:
    """An embedding's `loader(tenant_id)`; its stamp is the bytes' sha256."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self.description = f"loader {getattr(loader, '__qualname__', repr(loader))}"

    async def fetch(self, tenant_id: TenantId, stamp: str | None) -> Found | None:
        try:
            wasm = await self._loader(tenant_id)
        except Exception as exc:  # the embedding's code: whatever it raises is its reason
            raise ModuleSourceUnavailable(f"the {self.description} failed for "
                                          f"{tenant_id!r}: {exc!r}") from exc
        if wasm is None:
            return None
        if len(wasm) > MAX_MODULE_BYTES:
            raise _too_large(len(wasm), f"the module {self.description} gave")
        return Found(_sha_stamp(wasm), bytes(wasm))

    async def close(self) -> None:
        return None


def _sha_stamp(wasm: bytes) -> str:
    return f"sha256:{module_sha(wasm)}"


def source_for(location: str | Path | Loader | ModuleSource) -> ModuleSource:
    """A source from what a deployment names: an http(s) URL template, a directory, an
    async callable, or a ModuleSource of the embedding's own."""
    if isinstance(location, ModuleSource):
        return location
    if callable(location):
        return CallableSource(location)
    text = str(location)
    if text.startswith(("http://", "https://")):
        return UrlSource(text)
    return DirectorySource(Path(location))


MAX_TENANT_STATES = 10_000
"""Tenants whose last check is remembered (when, and what was refused)."""


@dataclass(slots=True)
class _TenantState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_check: float = float("-inf")  # monotonic
    refused: tuple[str, str] | None = None  # the stamp of bytes refused, and why


class OnDemandModules:
    """Keeps each tenant's active module in step with the deployment's source."""

    def __init__(self, store: Storage, registry: ModuleRegistry, source: ModuleSource,
                 check_interval_s: float = DEFAULT_CHECK_INTERVAL_S) -> None:
        self.store = store
        self.registry = registry
        self.source = source
        self.check_interval_s = check_interval_s
        # Most recently asked last: anyone can name tenants at the front door, so the
        # states of those asked about longest ago are dropped past a bound.
        self._tenants: collections.OrderedDict[TenantId, _TenantState] = (
            collections.OrderedDict())

    async def ensure(self, tenant_id: TenantId) -> None:
        """Load the tenant's module from the source if it has none yet or the source
        changed (asked at most once per interval; concurrent callers wait for one check).

        A source that has nothing for the tenant, or cannot be asked, leaves things as
        they are (the caller's UnknownTenant stands); only a tenant with no module at all
        hears why (ModuleSourceUnavailable, InvalidModule)."""
        state = self._tenants.get(tenant_id)
        if state is None:
            state = self._tenants[tenant_id] = _TenantState()
            if len(self._tenants) > MAX_TENANT_STATES:
                self._tenants.popitem(last=False)  # it is asked again when it comes back
        else:
            self._tenants.move_to_end(tenant_id)
        if time.monotonic() < state.next_check:
            return
        async with state.lock:
            if time.monotonic() < state.next_check:
                return  # checked while this caller waited
            try:
                await self._check(tenant_id, state)
            finally:
                state.next_check = time.monotonic() + self.check_interval_s

    async def _check(self, tenant_id: TenantId, state: _TenantState) -> None:
        stamp = await self.store.module_source_stamp(tenant_id)
        try:
            found = await self.source.fetch(tenant_id, stamp)
        except ModuleSourceUnavailable as exc:
            if not await self._has_module(tenant_id):
                raise
            log.warning("sources.unavailable", tenant_id=tenant_id, reason=str(exc))
            return
        if found is None or found.wasm is None or found.stamp == stamp:
            return
        current = await self._active_sha(tenant_id)
        if state.refused is not None and state.refused[0] == found.stamp:
            if current is None:  # the same bytes as last time: the same answer, no compile
                raise InvalidModule(state.refused[1])
            return
        logger = log.bind(tenant_id=tenant_id, source=self.source.description)
        sha256 = module_sha(found.wasm)
        if current != sha256:
            try:
                info = await self.registry.register(tenant_id, found.wasm)
            except InvalidModule as exc:
                why = (f"tenant {tenant_id!r}'s module from the {self.source.description} "
                       f"was refused: {exc}")
                state.refused = (found.stamp, why)
                logger.error("sources.refused", reason=str(exc))
                if current is None:
                    raise InvalidModule(why) from None
                return
            logger.info("sources.loaded", module_sha256=info.sha256, version=info.version)
        await self.store.set_module_source_stamp(tenant_id, found.stamp, sha256)

    async def _active_sha(self, tenant_id: TenantId) -> str | None:
        try:
            return (await self.registry.active(tenant_id)).sha256
        except UnknownTenant:
            return None

    async def _has_module(self, tenant_id: TenantId) -> bool:
        return await self._active_sha(tenant_id) is not None

    async def close(self) -> None:
        await self.source.close()
