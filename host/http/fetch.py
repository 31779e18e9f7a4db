"""Fetch handlers, the HTTP side: route a request to its tenant's handler, and its binding.

The handler itself runs in the sandbox (`host.sandbox.fetch`); here a request finds its
tenant's active module, waits for one of the tenant's fetch slots, and the handler's
binding calls are run on the event loop against the calling tenant's instances only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from ..core import codec
from ..core.errors import DwfError, InvalidInput, NotFound
from ..core.ids import TenantId
from ..core.limits import TenantLimits
from ..durable.engine import DurableEngine
from ..sandbox.abi import StepCode
from ..sandbox.fetch import FetchFailed, FetchOutcome, FetchRequest, Logger, run_fetch
from ..store import ModuleInfo


class NoFetchHandler(NotFound):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no fetch handler: its active module does "
                         "not export dwf_fetch")


@dataclass(frozen=True, slots=True)
class FetchTarget:
    """What answers a tenant's requests: its active module, and the limits it runs under."""

    tenant_id: TenantId
    module: ModuleInfo
    limits: TenantLimits


# -- the binding a fetch handler calls (blocking, on a pool thread) ------------------

class FetchBinding:
    """Runs a fetch handler's binding calls on the event loop, for one tenant only."""

    def __init__(self, engine: DurableEngine, tenant_id: TenantId,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._tenant_id = tenant_id
        self._loop = loop

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> tuple[StepCode, bytes]:
        try:
            result = asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        except DwfError as exc:
            return StepCode.ERROR, codec.pack({"name": type(exc).__name__, "message": str(exc)})
        return StepCode.OK, codec.pack(result)

    def create_instance(self, request: dict[str, Any]) -> tuple[StepCode, bytes]:
        return self._call(self._create(request))

    def instance_status(self, request: dict[str, Any]) -> tuple[StepCode, bytes]:
        return self._call(self._status(request))

    def send_event(self, request: dict[str, Any]) -> tuple[StepCode, bytes]:
        return self._call(self._send(request))

    async def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        workflow, new_id = request.get("workflow"), request.get("id")
        if not isinstance(workflow, str) or not (new_id is None or isinstance(new_id, str)):
            raise InvalidInput("fetch_create_instance needs a string `workflow` and an "
                               "optional string `id`")
        created = await self._engine.instances.create(self._tenant_id, workflow,
                                                      request.get("params"), new_id)
        return {"id": created}

    async def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = request.get("id")
        if not isinstance(wanted, str):
            raise InvalidInput("fetch_instance_status needs a string `id`")
        status = await self._engine.instances.status(self._tenant_id, wanted, with_steps=False)
        return {"id": status.instance_id, "workflow": status.workflow,
                "status": status.status.value, "output": status.output, "error": status.error,
                "created_at_ms": status.created_at_ms, "updated_at_ms": status.updated_at_ms,
                "finished_at_ms": status.finished_at_ms, "wake_at_ms": status.wake_at_ms,
                "waiting_event_type": status.waiting_event_type}

    async def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        target, event_type = request.get("instance_id"), request.get("type")
        if not isinstance(target, str) or not isinstance(event_type, str):
            raise InvalidInput("fetch_send_event needs string `instance_id` and `type`")
        await self._engine.instances.send_event(self._tenant_id, target, event_type,
                                                request.get("payload"))
        return {}


# -- the event-loop side -------------------------------------------------------------

class FetchService:
    """Routes a tenant's requests to its active module's fetch handler."""

    def __init__(self, engine: DurableEngine) -> None:
        self.engine = engine
        self._in_flight: set[asyncio.Future[FetchOutcome]] = set()
        self._running: dict[TenantId, int] = {}
        self._slot_freed = asyncio.Condition()

    def running(self, tenant_id: TenantId) -> int:
        """How many of the tenant's fetch handlers are in the sandbox now."""
        return self._running.get(tenant_id, 0)

    @contextlib.asynccontextmanager
    async def _slot(self, target: FetchTarget) -> AsyncIterator[None]:
        """At most `max_concurrent_invocations` fetches per tenant run at once (the worker
        caps instances the same way), so one tenant's flood of requests cannot occupy every
        sandbox thread; the rest wait here, costing a coroutine each."""
        tenant, cap = target.tenant_id, target.limits.max_concurrent_invocations
        async with self._slot_freed:
            await self._slot_freed.wait_for(lambda: self.running(tenant) < cap)
            self._running[tenant] = self.running(tenant) + 1
        try:
            yield
        finally:
            async with self._slot_freed:
                self._running[tenant] -= 1
                if not self._running[tenant]:
                    del self._running[tenant]
                self._slot_freed.notify_all()

    async def target(self, tenant_id: TenantId) -> FetchTarget:
        """UnknownTenant or NoFetchHandler unless the tenant can answer requests."""
        await self.engine.ensure_module(tenant_id)  # on-demand loading, if configured
        module, limits = await self.engine.registry.active_with_limits(tenant_id)
        if not module.fetch:
            raise NoFetchHandler(tenant_id)
        return FetchTarget(tenant_id, module, limits)

    async def run(self, target: FetchTarget, request: FetchRequest,
                  logger: Logger) -> FetchOutcome:
        pool = self.engine.pool
        registry = self.engine.registry
        sha256 = target.module.sha256
        stub = await pool.get(target.tenant_id, sha256, lambda: registry.wasm(sha256))
        binding = FetchBinding(self.engine, target.tenant_id, asyncio.get_running_loop())
        packed = request.pack(received_at_ms=self.engine.clock.now_ms())
        async with self._slot(target):
            egress = self.engine.egress.port(target.tenant_id, None, target.limits, logger,
                                             asyncio.get_running_loop(), pool)
            invocation = asyncio.ensure_future(pool.call(lambda: run_fetch(
                pool.engine, stub.module, target.limits, packed, binding, logger, egress)))
            self._in_flight.add(invocation)
            invocation.add_done_callback(self._in_flight.discard)
            # Shielded: a cancelled request (a shutdown timeout) must not hide a guest that
            # is still running on its thread from drain(), nor free its slot early.
            try:
                outcome = await asyncio.shield(invocation)
            except asyncio.CancelledError:
                await asyncio.wait({invocation})
                raise
        if isinstance(outcome, FetchFailed):
            logger.warning("fetch.failed", error=outcome.name, message=outcome.message)
        return outcome

    async def drain(self) -> None:
        """Wait for every invocation still running, even those whose request was cut off.

        Their binding calls need the event loop, so the engine must not close before.
        """
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
