"""A guest's outbound HTTP request (`http_fetch`, proposal 0003), checked at the sandbox's
edge, and the port through which the host answers it.

The sandbox only checks the request's shape (the ABI's part: a map with a method, a URL,
string headers, a body) and says where it comes from (which step, which attempt's how
many-th call, by when it must be done). Whether it may go out, where to, with which
secrets, and how it went, is the egress capability's (`host.egress`), behind `EgressPort`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from ..core import codec
from ..core.errors import GuestErrorName, GuestFault
from .abi import StepCode

MAX_REQUEST_HEADERS = 100
MAX_URL_BYTES = 8192
# Framing, hop-by-hop and routing headers are the host's: a guest setting them could
# smuggle a second request or talk past the egress check.
RESERVED_REQUEST_HEADERS = frozenset({
    "connection", "content-length", "expect", "host", "keep-alive", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 method or field name
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but tab


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    """Lower-case names, in the guest's order."""

    body: bytes
    timeout_ms: int | None
    """The guest's own timeout; None for the tenant's default."""

    idempotency: bool
    """Ask the host for an Idempotency-Key stable across re-runs of this call."""


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """Where a request comes from."""

    step: str | None
    """The step whose body makes it; None in a fetch handler."""

    occurrence: int | None
    """Which occurrence of that step name."""

    index: int
    """The how-many-th http_fetch of this step attempt (or fetch handler), from 1."""

    deadline: float
    """time.monotonic() by which the step attempt (or invocation) must end: the request's
    wait counts against it."""


class EgressPort(Protocol):
    """The host's side of `http_fetch` (blocking: called on the guest's thread)."""

    def fetch(self, request: OutboundRequest, call: OutboundCall) -> tuple[StepCode, bytes]:
        """OK with the response map, or ERROR with {name, message, retryable}."""
        ...


def _bad(message: str) -> GuestFault:
    return GuestFault(GuestErrorName.ABI_VIOLATION, f"http_fetch request: {message}")


def parse_request(value: Any) -> OutboundRequest:
    """The request map a guest sent, checked; anything malformed is AbiViolation."""
    if not isinstance(value, dict):
        raise _bad("must be a msgpack map {method, url, headers, body | json, timeout_ms}")
    unknown = set(value) - {"method", "url", "headers", "body", "json", "timeout_ms",
                            "idempotency"}
    if unknown:
        raise _bad(f"unknown keys {sorted(map(str, unknown))}")
    method = value.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise _bad(f"`method` must be an HTTP method, got {method!r}")
    url = value.get("url")
    if not isinstance(url, str) or not url or len(url.encode()) > MAX_URL_BYTES:
        raise _bad(f"`url` must be a string of 1-{MAX_URL_BYTES} bytes")
    if _CONTROL.search(url) or " " in url:
        raise _bad("`url` must not contain spaces or control characters")
    headers = _headers(value.get("headers"))
    if "body" in value and "json" in value:
        raise _bad("give `body` or `json`, not both")
    if "json" in value:
        try:
            body = json.dumps(codec.to_jsonable(value["json"]), allow_nan=False).encode()
        except (ValueError, TypeError) as exc:
            raise _bad(f"`json` cannot be rendered as JSON: {exc}") from None
        if "content-type" not in dict(headers):
            headers = (*headers, ("content-type", "application/json"))
    else:
        found = codec.body_bytes(value.get("body"))
        if found is None:
            raise _bad("`body` must be bin, str or nil")
        body = found
    timeout_ms = value.get("timeout_ms")
    if timeout_ms is not None and (not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool)
                                   or not 1 <= timeout_ms <= 24 * 3600 * 1000):
        raise _bad(f"`timeout_ms` must be an integer from 1 to 86400000, got {timeout_ms!r}")
    idempotency = value.get("idempotency", False)
    if not isinstance(idempotency, bool):
        raise _bad("`idempotency` must be a bool")
    return OutboundRequest(method.upper(), url, headers, body, timeout_ms, idempotency)


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > MAX_REQUEST_HEADERS:
        raise _bad(f"`headers` must be a map of at most {MAX_REQUEST_HEADERS} strings")
    headers = []
    for name, header_value in raw.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise _bad(f"header name {name!r} is not a valid HTTP field name")
        if not isinstance(header_value, str) or _CONTROL.search(header_value):
            raise _bad(f"header {name!r} must be a string without control characters")
        if name.lower() in RESERVED_REQUEST_HEADERS:
            raise _bad(f"header {name!r} is set by the host, not the guest")
        headers.append((name.lower(), header_value))
    return tuple(headers)


def error_answer(name: str, message: str, retryable: bool) -> tuple[StepCode, bytes]:
    """The ERROR answer of a request that could not be made or did not complete."""
    return StepCode.ERROR, codec.pack({"name": name, "message": message,
                                       "retryable": retryable})
