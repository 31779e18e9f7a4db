"""The egress capability of one host: policy, limits, secrets, and the guests' port to it.

`Egress.port(...)` hands an invocation (a workflow run or a fetch handler) the
`EgressPort` its guest's `http_fetch` calls. The request runs on the event loop; the
guest's thread waits without a turn (other guests take turns meanwhile) and with a spare
pool thread standing in for it (`IsolatePool.waiting_outside`), and burns no fuel.
Every request is logged (tenant, instance, step, method, host, status, bytes, duration:
never bodies or secret values) and counted in `stats`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import time
from typing import Any

import structlog

from ..core import codec
from ..core.ids import InstanceId, TenantId
from ..core.limits import TenantLimits
from ..core.tally import LATENCY_BOUNDS_S, Buckets
from ..sandbox.abi import StepCode
from ..sandbox.outbound import OutboundCall, OutboundRequest, error_answer
from ..sandbox.pool import IsolatePool
from ..store import SecretInfo, Storage
from . import secrets
from .client import EgressError, Outgoing, Received, TenantClient, denied
from .rules import EgressRule
from .secrets import SecretBox

log = structlog.get_logger("dwf.egress")
RULES_TTL_S = 1.0
"""How long a tenant's rules are kept in memory: a change by another process (the CLI)
takes effect within this."""
_JSON_TYPES = ("application/json", "+json")


class Egress:
    def __init__(self, store: Storage, box: SecretBox) -> None:
        self.store = store
        self.box = box
        self._rules: dict[TenantId, tuple[float, list[EgressRule]]] = {}
        self._clients: dict[TenantId, TenantClient] = {}
        self._slots: dict[TenantId, tuple[int, asyncio.Semaphore]] = {}
        self._starts: dict[TenantId, collections.deque[float]] = {}
        self.stats: collections.Counter[tuple[str, str]] = collections.Counter()
        """(tenant, outcome) -> requests: ok, or the error name (read by /metrics)."""
        self.seconds: dict[TenantId, Buckets] = {}
        """tenant -> how long its requests took, whatever their outcome."""

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    # -- policy and secrets (the CLI, the API) ------------------------------------------

    async def rules(self, tenant_id: TenantId) -> list[EgressRule]:
        return [EgressRule.from_stored(line) for line in await self.store.egress_rules(tenant_id)]

    async def change_rules(self, tenant_id: TenantId, *, allow: list[str] | tuple[str, ...] = (),
                           deny: list[str] | tuple[str, ...] = (), private: bool = False,
                           clear: bool = False) -> list[EgressRule]:
        """Add rules (or start from none with `clear`); InvalidInput for a bad one, and
        nothing changes then."""
        added = ([EgressRule.parse(text, allow=True, private=private) for text in allow]
                 + [EgressRule.parse(text, allow=False) for text in deny])
        for rule in added:
            rule.check_reachable()
        rules = [] if clear else await self.rules(tenant_id)
        # A rule given again for the same target replaces it (its private flag changed).
        rules = [rule for rule in rules if not any(rule.same_target(new) for new in added)]
        for new in added:
            if new not in rules:  # the same rule twice in one call
                rules.append(new)
        await self.replace_rules(tenant_id, rules)
        return rules

    async def replace_rules(self, tenant_id: TenantId, rules: list[EgressRule]) -> None:
        await self.store.set_egress_rules(tenant_id, [rule.stored() for rule in rules])
        self._rules.pop(tenant_id, None)

    async def set_secret(self, tenant_id: TenantId, name: str, value: str) -> None:
        await self.store.put_secret(tenant_id, secrets.secret_name(name),
                                    self.box.seal(tenant_id, name, value))

    async def secrets(self, tenant_id: TenantId) -> list[SecretInfo]:
        return await self.store.secrets(tenant_id)

    async def delete_secret(self, tenant_id: TenantId, name: str) -> bool:
        return await self.store.delete_secret(tenant_id, secrets.secret_name(name))

    # -- requests -----------------------------------------------------------------------

    def port(self, tenant_id: TenantId, instance_id: InstanceId | None, limits: TenantLimits,
             logger: Any, loop: asyncio.AbstractEventLoop, pool: IsolatePool) -> EgressGrant:
        return EgressGrant(self, tenant_id, instance_id, limits, logger, loop, pool)

    async def send(self, tenant_id: TenantId, instance_id: InstanceId | None,
                   limits: TenantLimits, request: OutboundRequest, call: OutboundCall,
                   logger: Any) -> tuple[StepCode, bytes]:
        started = time.monotonic()
        fields = {"step": call.step, "method": request.method, "host": _host(request.url)}
        try:
            answer, received = await self._send(tenant_id, instance_id, limits, request, call)
        except EgressError as exc:
            took = self._count(tenant_id, exc.name, started)
            logger.warning("egress.request", **fields, error=exc.name, message=exc.message,
                           duration_ms=round(took * 1000, 1))
            return error_answer(exc.name, exc.message, exc.retryable)
        took = self._count(tenant_id, "ok", started)
        logger.info("egress.request", **fields, status=received.status,
                    bytes=len(received.body), duration_ms=round(took * 1000, 1))
        return StepCode.OK, answer

    def _count(self, tenant_id: TenantId, outcome: str, started: float) -> float:
        """Count a request that ended now; how long it took (seconds)."""
        took = time.monotonic() - started
        self.stats[(tenant_id, outcome)] += 1
        buckets = self.seconds.get(tenant_id)
        if buckets is None:
            buckets = self.seconds[tenant_id] = Buckets(LATENCY_BOUNDS_S)
        buckets.observe(took)
        return took

    async def _send(self, tenant_id: TenantId, instance_id: InstanceId | None,
                    limits: TenantLimits, request: OutboundRequest,
                    call: OutboundCall) -> tuple[bytes, Received]:
        timeout_s = min((request.timeout_ms or limits.egress_timeout_ms) / 1000,
                        call.deadline - time.monotonic())
        ends = time.monotonic() + timeout_s  # waiting for a slot counts too
        await self._load_rules(tenant_id)
        client = self._client(tenant_id)
        client.check(request.url)  # before secrets are read, let alone put in
        self._take_start(tenant_id, limits)
        headers, body, used = await self._with_secrets(tenant_id, request)
        if request.idempotency and call.step is not None:
            headers = [(n, v) for n, v in headers if n != "idempotency-key"]
            headers.append(("idempotency-key", _idempotency_key(tenant_id, instance_id, call)))
        outgoing = Outgoing(request.method, request.url, headers, body,
                            frozenset(n for n, v in request.headers if secrets.names_in(v)))
        max_bytes = min(limits.egress_response_bytes, limits.max_payload_bytes)
        slot = self._slot(tenant_id, limits)
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await slot.acquire()
        except TimeoutError:
            raise EgressError("EgressTimeout", "no outbound slot came free in time (the "
                              f"tenant's limit is {limits.egress_concurrent_requests} at "
                              "once)", retryable=True) from None
        try:
            received = await client.send(outgoing, ends - time.monotonic(), max_bytes)
        finally:
            slot.release()
        return _response_map(received, used), received

    async def _load_rules(self, tenant_id: TenantId) -> None:
        cached = self._rules.get(tenant_id)
        if cached is None or time.monotonic() - cached[0] > RULES_TTL_S:
            self._rules[tenant_id] = (time.monotonic(), await self.rules(tenant_id))

    def _client(self, tenant_id: TenantId) -> TenantClient:
        client = self._clients.get(tenant_id)
        if client is None:
            client = self._clients[tenant_id] = TenantClient(
                lambda: self._rules.get(tenant_id, (0.0, []))[1])
        return client

    def _slot(self, tenant_id: TenantId, limits: TenantLimits) -> asyncio.Semaphore:
        found = self._slots.get(tenant_id)
        if found is None or found[0] != limits.egress_concurrent_requests:
            found = (limits.egress_concurrent_requests,
                     asyncio.Semaphore(limits.egress_concurrent_requests))
            self._slots[tenant_id] = found
        return found[1]

    def _take_start(self, tenant_id: TenantId, limits: TenantLimits) -> None:
        """Count a request against the tenant's per-minute limit (a sliding minute)."""
        now = time.monotonic()
        starts = self._starts.setdefault(tenant_id, collections.deque())
        while starts and now - starts[0] >= 60:
            starts.popleft()
        if len(starts) >= limits.egress_requests_per_minute:
            raise EgressError("EgressFailed", f"over the tenant's limit of "
                              f"{limits.egress_requests_per_minute} outbound requests a "
                              "minute", retryable=True)
        starts.append(now)

    async def _with_secrets(self, tenant_id: TenantId, request: OutboundRequest
                            ) -> tuple[list[tuple[str, str]], bytes, dict[str, str]]:
        """The headers and body with `{{secret:NAME}}` filled in, and the values used."""
        wanted = secrets.names_in(request.body)
        for _, value in request.headers:
            wanted |= secrets.names_in(value)
        values = {}
        for name in sorted(wanted):
            sealed = await self.store.secret(tenant_id, name)
            if sealed is None:
                raise denied(f"tenant {tenant_id!r} has no secret {name!r} (set it with "
                             f"`dwf secret set {tenant_id} {name}`)")
            values[name] = self.box.open(tenant_id, name, sealed)
        headers = []
        for name, value in request.headers:
            filled = secrets.substitute(value, values) if values else value
            if any(c in filled for c in "\r\n\0"):
                raise denied(f"a secret put in header {name!r} holds a line break")
            headers.append((name, filled))
        body = secrets.substitute_bytes(request.body, values) if values else request.body
        return headers, body, values


class EgressGrant:
    """One invocation's `EgressPort`: its tenant, instance and limits, bound."""

    def __init__(self, egress: Egress, tenant_id: TenantId, instance_id: InstanceId | None,
                 limits: TenantLimits, logger: Any, loop: asyncio.AbstractEventLoop,
                 pool: IsolatePool) -> None:
        self._egress = egress
        self._tenant_id = tenant_id
        self._instance_id = instance_id
        self._limits = limits
        self._logger = logger
        self._loop = loop
        self._pool = pool

    def fetch(self, request: OutboundRequest, call: OutboundCall) -> tuple[StepCode, bytes]:
        future = asyncio.run_coroutine_threadsafe(self._egress.send(
            self._tenant_id, self._instance_id, self._limits, request, call, self._logger),
            self._loop)
        # The guest's thread waits on the network: it lets other guests take turns, and
        # a spare thread runs guests in its place.
        with self._pool.waiting_outside():
            return future.result()


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]


def _idempotency_key(tenant_id: TenantId, instance_id: InstanceId | None,
                     call: OutboundCall) -> str:
    """Stable for (tenant, instance, step, occurrence, call): a re-run of the step after a
    crash sends the same key, so the remote API can drop the duplicate."""
    identity = "\0".join(map(str, (tenant_id, instance_id, call.step, call.occurrence,
                                   call.index)))
    return "dwf-" + hashlib.sha256(identity.encode()).hexdigest()[:40]


def _response_map(received: Received, used: dict[str, str]) -> bytes:
    headers: dict[str, str] = {}
    for name, value in received.headers:
        value = secrets.scrub(value.encode(), used).decode() if used else value
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    body = secrets.scrub(received.body, used) if used else received.body
    response: dict[str, Any] = {"status": received.status, "url": received.url,
                                "headers": headers, "body": body}
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type.endswith(_JSON_TYPES):
        try:
            parsed = json.loads(body)
            codec.pack(parsed)  # integers past 64 bits do not fit msgpack: no `json` then
        except (ValueError, OverflowError):
            pass
        else:
            response["json"] = parsed
    return codec.pack(response)
