"""Fetch handlers in the sandbox: one HTTP request answered by a tenant's `dwf_fetch`.

A fetch runs like a workflow invocation (a fresh store with the tenant's fuel, memory and
wall-clock limits) but has no journal. Its binding calls (`fetch_create_instance`,
`fetch_instance_status`, `fetch_send_event`) go to a `FetchBindingPort`, which acts at once
and only ever on the calling tenant's instances: the host attaches the tenant id, the guest
never names one. See guest_sdk/proposals/0001. The HTTP side (routing a request to its
tenant, the per-tenant cap) is `host.http.fetch`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import wasmtime

from ..core import codec
from ..core.errors import GuestErrorName, GuestFault
from ..core.limits import TenantLimits
from . import abi, linker
from .abi import StepCode
from .guest import _Invocation, classify_trap, instantiation_failure
from .outbound import EgressPort

Logger = structlog.typing.FilteringBoundLogger

MAX_RESPONSE_HEADERS = 100
# Framing and hop-by-hop headers are the host's to set; x-request-id ties a response to
# the host's log line.
RESERVED_RESPONSE_HEADERS = frozenset({
    "connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "x-request-id",
})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 header field name
# RFC 9110 field-value characters: visible ASCII, space, tab, and anything past ASCII
# (sent as UTF-8). Control characters (CR, LF, NUL, ESC, DEL...) make aiohttp drop the
# connection, and would let a handler split or smuggle a response.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)


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

    def pack(self, received_at_ms: int | None = None) -> bytes:
        """The request map; `received_at_ms` (the host's clock) becomes its `timestamp`,
        the only clock a handler has."""
        request: dict[str, Any] = {
            "method": self.method, "path": self.path, "query": self.query,
            "headers": self.headers, "body": self.body, "request_id": self.request_id,
        }
        if received_at_ms is not None:
            request["timestamp"] = received_at_ms
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


def _json_body(content_type: str, body: bytes) -> tuple[Any] | None:
    """The body decoded, when it is declared and parses as JSON (and fits msgpack)."""
    if not _JSON_TYPE.match(content_type.split(";", 1)[0].strip()):
        return None
    try:
        value = codec.parse_json(body, "the request body")
        codec.check(value)  # e.g. integers past 64 bits do not fit msgpack: no `json` then
    except codec.CodecError:
        return None
    return (value,)



class FetchBindingPort(Protocol):
    """A fetch handler's binding calls, each answered with a step code and a payload
    (blocking: called on the guest's thread)."""

    def create_instance(self, request: dict[str, Any]) -> tuple[StepCode, bytes]: ...

    def instance_status(self, request: dict[str, Any]) -> tuple[StepCode, bytes]: ...

    def send_event(self, request: dict[str, Any]) -> tuple[StepCode, bytes]: ...


# -- the sandbox side ----------------------------------------------------------------

class _FetchInvocation(_Invocation):
    """A workflow invocation's machinery, without a journal, plus the fetch imports."""

    output_name = "fetch response"

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module,
                 limits: TenantLimits, binding: FetchBindingPort, log: Logger,
                 egress: EgressPort | None = None) -> None:
        self.binding = binding  # before linking: the import methods below need it
        super().__init__(engine, module, limits, None, log, egress)

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
              request: bytes, binding: FetchBindingPort, log: Logger,
              egress: EgressPort | None = None) -> FetchOutcome:
    """Run `dwf_fetch` once. Blocking: call it from a pool thread, never the event loop."""
    invocation: _FetchInvocation | None = None
    try:
        invocation = _FetchInvocation(engine, module, limits, binding, log, egress)
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
        if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
            raise bad(f"header {name!r} must be a string of visible characters, spaces and "
                      "tabs (no control characters: CR, LF, NUL, ESC, DEL...)")
        if name.lower() in RESERVED_RESPONSE_HEADERS:
            raise bad(f"header {name!r} is set by the host, not the handler")
        checked[name.lower()] = value
    if "body" in response and "json" in response:
        raise bad("give `body` or `json`, not both")
    if "json" in response:
        try:
            body = json.dumps(codec.to_jsonable(response["json"], strict_floats=True),
                              allow_nan=False).encode()
        except ValueError as exc:
            raise bad(f"`json` cannot be rendered as JSON: {exc}") from None
        checked.setdefault("content-type", "application/json")
    else:
        value = response.get("body")
        found = codec.body_bytes(value)
        if found is None:
            raise bad("`body` must be bin, str or nil")
        body = found
        if isinstance(value, str):
            checked.setdefault("content-type", "text/plain; charset=utf-8")
    return FetchResponse(status, checked, body)
