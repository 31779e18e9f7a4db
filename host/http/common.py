"""Pieces the HTTP layer shares (server.py, api.py): config, errors, app keys, bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..core import codec
from ..core.errors import ErrorCode
from ..core.limits import MIB
from ..durable.engine import DurableEngine
from ..durable.registry import MAX_MODULE_BYTES
from .fetch import FetchService
from .tokens import TokenStore

_READ_CHUNK = 64 * 1024

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INVALID_MODULE: 422,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.WORKER_BUSY: 503,
    ErrorCode.UNAVAILABLE: 503,
}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    max_body_bytes: int = 1 * MIB
    """Largest management API request body (JSON). Fetch requests are capped per tenant
    (`max_payload_bytes`), module uploads by `max_module_bytes`."""

    max_module_bytes: int = MAX_MODULE_BYTES
    """Largest module upload (`POST /v1/tenants/{tenant}/modules`)."""

    shutdown_timeout_s: float = 30.0
    """On shutdown, how long in-flight requests may take to finish before they are cut."""

    secure_cookies: bool = False
    """Mark the dashboard's cookies Secure although the request came in over plain HTTP:
    behind a proxy that terminates TLS, the only way browsers are told to keep them off
    plain HTTP."""


class HttpError(Exception):
    """An error answered as JSON with its own HTTP status and code."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


ENGINE: web.AppKey[DurableEngine] = web.AppKey("engine", DurableEngine)
TOKENS: web.AppKey[TokenStore] = web.AppKey("tokens", TokenStore)
FETCH: web.AppKey[FetchService] = web.AppKey("fetch", FetchService)
CONFIG: web.AppKey[ServerConfig] = web.AppKey("config", ServerConfig)


def error_response(status: int, code: str, message: str, request_id: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "request_id": request_id}},
        status=status, headers=headers)


async def read_body(request: web.Request, limit: int, what: str = "request body") -> bytes:
    """The whole body, refusing (413) anything over `limit` before and while reading it."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise HttpError(413, "payload_too_large",
                        f"the {what} is {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "payload_too_large",
                            f"the {what} is over the limit: the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (whatever the content-type says), or a 400 saying why."""
    body = await read_body(request, request.app[CONFIG].max_body_bytes)
    if not body.strip():
        raise HttpError(400, "invalid_json", "the request body is empty: send a JSON object")
    try:
        value = codec.parse_json(body, "the request body")  # JSON on the wire is UTF-8
    except codec.CodecError as exc:
        raise HttpError(400, "invalid_json", str(exc)) from None
    if not isinstance(value, dict):
        raise HttpError(400, "invalid_json",
                        f"the request body must be a JSON object, not {type(value).__name__}")
    return value
