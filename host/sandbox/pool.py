"""The isolate pool: compiled tenant modules, cached in memory and on disk, run on threads.

The analogue of a Worker Loader. `get(tenant_id, sha256, load_callback)` returns a stub for
that exact module version; compiled code is shared, but every invocation gets a fresh store
(so no guest state survives between invocations, and no two tenants share an instance).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
import wasmtime

from ..core.ids import ModuleSha, TenantId
from ..core.limits import TenantLimits
from ..core.outcomes import Outcome
from . import guest
from .compile_lane import CompileLane, CompileLimits, engine_config
from .guest_threads import GuestThreads
from .journal_port import GuestJournal
from .outbound import EgressPort
from .turns import TurnThreads

log = structlog.get_logger("dwf.pool")
T = TypeVar("T")
_ARTIFACT_MAGIC = b"DWFA2\n"
"""An artifact file: this magic, sha256(module sha256 + body), then wasmtime's body. The
digest binds the body to the module it was compiled from: another module's artifact under
this module's name is refused (and recompiled around) like a corrupt one."""


def module_sha(wasm: bytes) -> ModuleSha:
    return ModuleSha(hashlib.sha256(wasm).hexdigest())


def _digest(sha256: ModuleSha, body: bytes | bytearray) -> bytes:
    return hashlib.sha256(sha256.encode() + body).digest()


def make_engine() -> wasmtime.Engine:
    return wasmtime.Engine(engine_config())


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_modules: int = 128
    """Compiled modules kept in memory at most (least recently used go first)."""

    max_bytes: int = 512 * 1024 * 1024
    """Total size of compiled code kept in memory."""

    idle_seconds: float = 900.0
    """A module unused this long is dropped from memory (it stays on disk)."""

    threads: int = 4
    """Threads running workflow invocations, and as many again for fetch handlers.
    Invocations take turns (`turns`): the other threads matter when one runs long, so that
    it cannot hold up every other tenant."""

    compile_lanes: int = 1
    """Modules compiled at once, each in a child process (`compile_lane`): compiling
    never runs on the guest threads, and never takes more than this many cores."""

    compile_limits: CompileLimits = CompileLimits()
    """CPU and memory one compile may use."""


@dataclass(slots=True)
class PoolStats:
    memory_hits: int = 0
    disk_hits: int = 0
    compiles: int = 0
    corrupt_artifacts: int = 0
    evictions: int = 0


@dataclass(slots=True)
class _Entry:
    module: wasmtime.Module
    size: int
    last_used: float = field(default_factory=time.monotonic)


class ModuleStub:
    """A handle on one compiled module version of one tenant."""

    def __init__(self, pool: IsolatePool, tenant_id: TenantId, sha256: ModuleSha,
                 module: wasmtime.Module) -> None:
        self.pool = pool
        self.tenant_id = tenant_id
        self.sha256 = sha256
        self.module = module

    def run_workflow(self, limits: TenantLimits, event: bytes, journal: GuestJournal,
                     logger: Any, egress: EgressPort | None = None,
                     usage: guest.Usage | None = None) -> Outcome:
        """Blocking; run on the pool's threads via `IsolatePool.call`."""
        return guest.run_workflow(self.pool.engine, self.module, limits, event, journal, logger,
                                  egress, usage)

    def describe(self, limits: TenantLimits, logger: Any) -> Any:
        return guest.describe(self.pool.engine, self.module, limits, logger)


class IsolatePool:
    def __init__(self, artifact_dir: Path | None, config: PoolConfig = PoolConfig()) -> None:
        self.engine = make_engine()
        self.config = config
        self.artifact_dir = artifact_dir
        if artifact_dir is not None:
            artifact_dir.mkdir(parents=True, exist_ok=True)
        self.stats = PoolStats()
        self._cache: OrderedDict[ModuleSha, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._threads = GuestThreads(config.threads, "dwf-guest")
        self.turns = TurnThreads(config.threads, "dwf-turn")
        self.lane = CompileLane(config.compile_lanes, config.compile_limits)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="dwf-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(guest.EPOCH_TICK_MS / 1000):
            self.engine.increment_epoch()

    @contextlib.contextmanager
    def waiting_outside(self) -> Iterator[None]:
        """Around a pool thread's wait on the outside world (an outbound request): an
        invocation gives its turn up, and a spare thread runs guests meanwhile."""
        if self.turns.owns_current_thread():
            with self.turns.released(), self.turns.blocking():
                yield
        else:
            with self._threads.blocking():
                yield

    async def call(self, fn: Callable[[], T]) -> T:
        """Run blocking guest work on a pool thread so the event loop never stalls."""
        return await self._threads.submit(fn)

    async def call_in_turn(self, fn: Callable[[], T]) -> T:
        """`call`, taking turns (`turns`): for workflow invocations, which come in crowds.

        Not for fetch handlers: a request's handler waits for no other (measured, the
        front door answered 15-30% fewer requests taking turns).
        """
        return await self.turns.submit(fn)

    async def get(self, tenant_id: TenantId, sha256: ModuleSha,
                  load_callback: Callable[[], Awaitable[bytes]], *,
                  on_disk: bool = True) -> ModuleStub:
        """The stub for `sha256`; `load_callback` gives the wasm bytes if it must compile
        (and its artifact is saved only `on_disk`)."""
        module = self._from_memory(sha256)
        if module is None:
            module = await self.call(lambda: self._from_disk(sha256))
        if module is None:
            module = await self.compile_in_lane(await load_callback(), sha256, on_disk=on_disk)
        return ModuleStub(self, tenant_id, sha256, module)

    async def compile_in_lane(self, wasm: bytes, sha256: ModuleSha, *,
                              on_disk: bool = True) -> wasmtime.Module:
        """Compile in the compile lane (CompileFailed saying why not), then load the
        artifact here and cache it in memory, and on disk unless told not to (a module
        that is only being tried)."""
        body = await self.lane.compile(wasm)
        return await self.call(lambda: self._load(sha256, body, on_disk))

    def _load(self, sha256: ModuleSha, body: bytes, on_disk: bool) -> wasmtime.Module:
        module = wasmtime.Module.deserialize(self.engine, body)
        self.stats.compiles += 1
        if on_disk:
            self._save(sha256, body)
        self._remember(sha256, module, len(body))
        return module

    def cached(self, tenant_id: TenantId, sha256: ModuleSha) -> ModuleStub | None:
        """The stub for `sha256` if its module is in memory (no I/O, any thread)."""
        module = self._from_memory(sha256)
        return ModuleStub(self, tenant_id, sha256, module) if module is not None else None

    def _from_memory(self, sha256: ModuleSha) -> wasmtime.Module | None:
        with self._lock:
            entry = self._cache.get(sha256)
            if entry is None:
                return None
            self._cache.move_to_end(sha256)
            entry.last_used = time.monotonic()
            self.stats.memory_hits += 1
            return entry.module

    def _artifact_path(self, sha256: ModuleSha) -> Path | None:
        return self.artifact_dir / f"{sha256}.cwasm" if self.artifact_dir else None

    def _from_disk(self, sha256: ModuleSha) -> wasmtime.Module | None:
        path = self._artifact_path(sha256)
        if path is None or not path.exists():
            return None
        try:
            blob = path.read_bytes()
            header_len = len(_ARTIFACT_MAGIC) + 32
            digest, body = blob[len(_ARTIFACT_MAGIC):header_len], blob[header_len:]
            # Deserializing trusts the bytes completely, so check them before wasmtime does.
            if not blob.startswith(_ARTIFACT_MAGIC) or _digest(sha256, body) != digest:
                raise ValueError("checksum mismatch: corrupt, or another module's artifact")
            module = wasmtime.Module.deserialize(self.engine, body)
        except (OSError, ValueError, wasmtime.WasmtimeError) as exc:
            self.stats.corrupt_artifacts += 1
            log.warning("pool.artifact_rejected", module_sha256=sha256, reason=str(exc))
            _remove(path)
            return None
        self.stats.disk_hits += 1
        self._remember(sha256, module, len(body))
        return module

    def compile(self, wasm: bytes, sha256: ModuleSha | None = None) -> wasmtime.Module:
        """Compile here, on the calling thread (raising WasmtimeError on invalid wasm),
        cache in memory and on disk: for trusted modules (tools, benchmarks); a tenant's
        module is compiled in the lane (`compile_in_lane`)."""
        sha256 = sha256 or module_sha(wasm)
        module = wasmtime.Module(self.engine, wasm)
        self.stats.compiles += 1
        body = module.serialize()
        self._save(sha256, body)
        self._remember(sha256, module, len(body))
        return module

    def _save(self, sha256: ModuleSha, body: bytes | bytearray) -> None:
        path = self._artifact_path(sha256)
        if path is not None:
            temporary = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            try:
                temporary.write_bytes(_ARTIFACT_MAGIC + _digest(sha256, body) + body)
                os.replace(temporary, path)
            except OSError as exc:  # a full disk, a directory in the way: only the cache
                log.warning("pool.artifact_not_saved", module_sha256=sha256, reason=str(exc))
                temporary.unlink(missing_ok=True)

    def _remember(self, sha256: ModuleSha, module: wasmtime.Module, size: int) -> None:
        with self._lock:
            self._cache[sha256] = _Entry(module, size)
            self._cache.move_to_end(sha256)
            self._evict_locked()

    def forget(self, sha256: ModuleSha) -> None:
        """Drop a module whose bytes are gone (pruned): from memory, and its artifact."""
        with self._lock:
            self._cache.pop(sha256, None)
        path = self._artifact_path(sha256)
        if path is not None:
            _remove(path)

    def evict_idle(self) -> None:
        with self._lock:
            self._evict_locked()

    def _evict_locked(self) -> None:
        now = time.monotonic()
        for sha256 in [s for s, e in self._cache.items()
                       if now - e.last_used > self.config.idle_seconds]:
            del self._cache[sha256]
            self.stats.evictions += 1
        while self._cache and (len(self._cache) > self.config.max_modules
                               or self.cached_bytes > self.config.max_bytes):
            self._cache.popitem(last=False)
            self.stats.evictions += 1

    @property
    def cached_bytes(self) -> int:
        return sum(entry.size for entry in self._cache.values())

    def cached_modules(self) -> list[ModuleSha]:
        with self._lock:
            return list(self._cache)

    def close(self) -> None:
        self._stop.set()
        self.turns.close()
        self._threads.close()
        self.lane.close()


def _remove(artifact: Path) -> None:
    """Delete an artifact file if there is one; one that cannot be (a directory in its
    place, say) is logged, and compiling goes on around it."""
    try:
        artifact.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("pool.artifact_not_removed", path=str(artifact), reason=str(exc))
