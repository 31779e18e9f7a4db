"""Fetch handlers: one HTTP request answered by a tenant's `dwf_fetch`, inside the sandbox.

A fetch runs like a workflow invocation (a fresh store with the tenant's fuel, memory and
wall-clock limits, on the isolate pool's threads) but has no journal. Its binding calls
(`fetch_create_instance`, `fetch_instance_status`, `fetch_send_event`) act at once,
committed through the event loop, and only ever on the calling tenant's instances: the host
attaches the tenant id, the guest never names one. See guest_sdk/proposals/0001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import wasmtime

from . import abi, codec, linker
from .abi import StepCode
from .errors import DwfError, GuestErrorName, GuestFault, InvalidInput, NotFound
from .ids import TenantId
from .limits import TenantLimits
from .registry import ModuleInfo
from .sandbox import _Invocation, classify_trap, instantiation_failure

if TYPE_CHECKING:
    from .engine import DurableEngine

Logger = structlog.typing.FilteringBoundLogger

MAX_RESPONSE_HEADERS = 100
# Framing and hop-by-hop headers are the host's to set; x-request-id ties a response to
# the host's log line.
RESERVED_RESPONSE_HEADERS = frozenset({
    "connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "x-request-id",
})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 header field name
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)


class NoFetchHandler(NotFound):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no fetch handler: its active module does "
                         "not export dwf_fetch")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """An HTTP request as the guest sees it (the `dwf_fetch` request map)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", "."""

    body: bytes
    request_id: str

    def pack(self) -> bytes:
        request: dict[str, Any] = {
            "method": self.method, "path": self.path, "query": self.query,
            "headers": self.headers, "body": self.body, "request_id": self.request_id,
        }
        parsed = _json_body(self.headers.get("content-type", ""), self.body)
        if parsed is not None:
            request["json"] = parsed[0]
        return codec.pack(request)


@dataclass(frozen=True, slots=True)
class FetchResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """The handler trapped, broke the ABI or failed on purpose: the client gets a 500."""

    name: str
    message: str


FetchOutcome = FetchResponse | FetchFailed


@dataclass(frozen=True, slots=True)
class FetchTarget:
    """What answers a tenant's requests: its active module, and the limits it runs under."""

    tenant_id: TenantId
    module: ModuleInfo
    limits: TenantLimits


def _json_body(content_type: str, body: bytes) -> tuple[Any] | None:
    """The body decoded, when it is declared and parses as JSON (and fits msgpack)."""
    if not _JSON_TYPE.match(content_type.split(";", 1)[0].strip()):
        return None
    try:
        value = json.loads(body)
        codec.pack(value)  # integers past 64 bits do not fit msgpack: no `json` then
    except (ValueError, OverflowError):
        return None
    return (value,)


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


# -- the sandbox side ----------------------------------------------------------------

class _FetchInvocation(_Invocation):
    """A workflow invocation's machinery, without a journal, plus the fetch imports."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module,
                 limits: TenantLimits, binding: FetchBinding, log: Logger) -> None:
        self.binding = binding  # before linking: the import methods below need it
        super().__init__(engine, module, limits, None, log)

    def _binding_call(self, caller: linker.Context, call: str, request_ptr: int,
                      request_len: int, out_slot: int) -> int:
        request = self._map(caller, request_ptr, request_len, f"{call} request")
        code, payload = getattr(self.binding, call.removeprefix("fetch_"))(request)
        return self._answer(caller, code, payload, out_slot)

    def _import_fetch_create_instance(self, caller: linker.Context, request_ptr: int,
                                      request_len: int, out_slot: int) -> int:
        return self._binding_call(caller, "fetch_create_instance", request_ptr, request_len,
                                  out_slot)

    def _import_fetch_instance_status(self, caller: linker.Context, request_ptr: int,
                                      request_len: int, out_slot: int) -> int:
        return self._binding_call(caller, "fetch_instance_status", request_ptr, request_len,
                                  out_slot)

    def _import_fetch_send_event(self, caller: linker.Context, request_ptr: int,
                                 request_len: int, out_slot: int) -> int:
        return self._binding_call(caller, "fetch_send_event", request_ptr, request_len,
                                  out_slot)


def run_fetch(engine: wasmtime.Engine, module: wasmtime.Module, limits: TenantLimits,
              request: bytes, binding: FetchBinding, log: Logger) -> FetchOutcome:
    """Run `dwf_fetch` once. Blocking: call it from a pool thread, never the event loop."""
    invocation: _FetchInvocation | None = None
    try:
        invocation = _FetchInvocation(engine, module, limits, binding, log)
        handler = invocation.func(abi.EXPORT_FETCH)
        if handler is None:
            return FetchFailed(GuestErrorName.ABI_VIOLATION.value,
                               f"the module does not export {abi.EXPORT_FETCH}")
        with linker.serving(invocation):
            request_ptr = invocation.give(invocation.context, request)
        code = int(invocation.call(abi.EXPORT_FETCH, request_ptr, len(request)) or 0) & 0xFFFFFFFF
        if code == abi.RunCode.COMPLETE:
            if invocation.output is None:
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 "dwf_fetch returned 0 without a response: call set_output "
                                 "with the response map first")
            return decode_response(invocation.output)
        if code == abi.RunCode.FAILED:
            if invocation.error is None:
                return FetchFailed(GuestErrorName.WORKFLOW_ERROR.value,
                                   "the fetch handler failed without reporting an error")
            return FetchFailed(*invocation.error)
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         f"dwf_fetch returned {code}; expected 0 (response) or 1 (failed)")
    except GuestFault as fault:
        return FetchFailed(fault.name.value, fault.message)
    except wasmtime.Trap as trap:
        memory_in_use = (invocation.memory.size(invocation.context)
                         if invocation is not None else None)
        name, message = classify_trap(trap, None, limits, memory_in_use)
        return FetchFailed(name.value, message)
    except wasmtime.WasmtimeError as exc:
        failed = instantiation_failure(exc, limits)
        return FetchFailed(failed.name, failed.message)
    finally:
        if invocation is not None:
            invocation.store.close()


def decode_response(raw: bytes) -> FetchResponse:
    """The guest's response map, checked: anything malformed is AbiViolation."""
    def bad(message: str) -> GuestFault:
        return GuestFault(GuestErrorName.ABI_VIOLATION, f"fetch response: {message}")

    response = codec.unpack(raw)
    if not isinstance(response, dict):
        raise bad("must be a msgpack map {status, headers, body | json}")
    status = response.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise bad(f"`status` must be an integer from 200 to 599, got {status!r}")
    headers = response.get("headers") or {}
    if not isinstance(headers, dict) or len(headers) > MAX_RESPONSE_HEADERS:
        raise bad(f"`headers` must be a map of at most {MAX_RESPONSE_HEADERS} strings")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise bad(f"header name {name!r} is not a valid HTTP field name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise bad(f"header {name!r} must be a string without CR, LF or NUL")
        if name.lower() in RESERVED_RESPONSE_HEADERS:
            raise bad(f"header {name!r} is set by the host, not the handler")
        checked[name.lower()] = value
    if "body" in response and "json" in response:
        raise bad("give `body` or `json`, not both")
    if "json" in response:
        try:
            body = json.dumps(codec.to_jsonable(response["json"]), allow_nan=False).encode()
        except ValueError as exc:
            raise bad(f"`json` cannot be rendered as JSON: {exc}") from None
        checked.setdefault("content-type", "application/json")
    else:
        value = response.get("body")
        if isinstance(value, str):
            body = value.encode()
            checked.setdefault("content-type", "text/plain; charset=utf-8")
        elif isinstance(value, bytes):
            body = value
        elif value is None:
            body = b""
        else:
            raise bad("`body` must be bin, str or nil")
    return FetchResponse(status, checked, body)


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
        module = await self.engine.registry.active(tenant_id)
        if not module.fetch:
            raise NoFetchHandler(tenant_id)
        return FetchTarget(tenant_id, module, await self.engine.registry.limits_for(tenant_id))

    async def run(self, target: FetchTarget, request: FetchRequest,
                  logger: Logger) -> FetchOutcome:
        pool = self.engine.pool
        registry = self.engine.registry
        sha256 = target.module.sha256
        stub = await pool.get(target.tenant_id, sha256, lambda: registry.wasm(sha256))
        binding = FetchBinding(self.engine, target.tenant_id, asyncio.get_running_loop())
        packed = request.pack()
        async with self._slot(target):
            invocation = asyncio.ensure_future(pool.call(lambda: run_fetch(
                pool.engine, stub.module, target.limits, packed, binding, logger)))
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
