"""The HTTP server (aiohttp): the tenants' front door and the management API.

- `/v1/...` is the management API (JSON, `Authorization: Bearer <token>`, see api.py) and
  `/openapi.json` describes it; `/metrics` is Prometheus's (metrics.py), `/ui` the
  dashboard's. Those paths are the host's, whatever headers a request has.
- Every other path is the front door: a request carrying `x-tenant-id` is answered by that
  tenant's fetch handler, inside the sandbox (fetch.py, sandbox/fetch.py).

Every response carries `x-request-id`; every error is JSON `{"error": {"code", "message",
"request_id"}}` and the same request id is on the request's log line.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ..core.errors import (
    DwfError,
    InvalidInput,
    InvalidModule,
    ModuleSourceUnavailable,
    UnknownTenant,
)
from ..core.ids import new_request_id, tenant_id
from ..durable.engine import DurableEngine
from ..sandbox.fetch import FetchFailed, FetchRequest
from . import api
from .common import (
    CONFIG,
    ENGINE,
    FETCH,
    HTTP_STATUS,
    TOKENS,
    HttpError,
    ServerConfig,
    error_response,
    read_body,
)
from .fetch import FetchService, NoFetchHandler
from .metrics import METRICS, METRICS_PATH, add_metrics
from .tokens import TokenStore
from .ui import add_ui

log = structlog.get_logger("dwf.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/v1/"
OPENAPI_PATH = "/openapi.json"
UI_PREFIX = "/ui/"
TENANT_HEADER = "x-tenant-id"
REQUEST_ID_HEADER = "x-request-id"


HOST_PATHS = (API_PREFIX.rstrip("/"), OPENAPI_PATH, METRICS_PATH, UI_PREFIX.rstrip("/"))


def _is_front_door(path: str) -> bool:
    return not (path.startswith((API_PREFIX, UI_PREFIX)) or path in HOST_PATHS)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_request_id()
    request["request_id"] = request_id
    request["log"] = log.bind(request_id=request_id)
    started = time.monotonic()
    front = _is_front_door(request.path)
    try:
        if front:
            response = await front_door(request)
        else:
            response = await handler(request)
    except HttpError as exc:
        response = error_response(exc.status, exc.code, exc.message, request_id, exc.headers)
        if exc.status == 413:
            response.force_close()  # do not read the rest of an oversized body
    except DwfError as exc:
        response = error_response(HTTP_STATUS.get(exc.code, 400), exc.code.value, str(exc),
                                  request_id)
    except web.HTTPException as exc:  # the router's own 404 / 405
        response = _router_error(request, exc, request_id)
    except Exception:
        request["log"].exception("http.internal_error", method=request.method,
                                 path=request.path)
        response = error_response(500, "internal", "the host failed handling this request; "
                                  f"its log has the details under request id {request_id}",
                                  request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    seconds = time.monotonic() - started
    request.app[METRICS].http.observe(request, front, response.status, seconds)
    request["log"].info("http.request", method=request.method, path=request.path,
                        status=response.status, tenant_id=request.get("tenant_id"),
                        token_id=request.get("token_id"), duration_ms=round(seconds * 1000, 1))
    return response


def _router_error(request: web.Request, exc: web.HTTPException,
                  request_id: str) -> web.Response:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(405, "method_not_allowed",
                              f"{request.method} is not allowed on {request.path}; use "
                              f"{allowed}", request_id, {"Allow": allowed})
    if exc.status == 404:
        return error_response(404, "not_found", f"no API route {request.method} "
                              f"{request.path}: see {OPENAPI_PATH}", request_id)
    return error_response(exc.status, "http_error", exc.reason, request_id)


# -- the front door ------------------------------------------------------------------

async def front_door(request: web.Request) -> web.StreamResponse:
    """Answer with the fetch handler of the tenant named by `x-tenant-id`."""
    raw_tenants = request.headers.getall(TENANT_HEADER, [])
    if not raw_tenants:
        raise HttpError(400, "missing_tenant",
                        f"send the `{TENANT_HEADER}` header to reach a tenant's fetch handler; "
                        f"the management API is under {API_PREFIX} (see {OPENAPI_PATH})")
    if len(raw_tenants) > 1:
        raise HttpError(400, "invalid_tenant",
                        f"send the `{TENANT_HEADER}` header once; this request has "
                        f"{len(raw_tenants)}")
    try:
        tid = tenant_id(raw_tenants[0])
    except InvalidInput as exc:
        raise HttpError(400, "invalid_tenant", str(exc)) from None
    request["tenant_id"] = tid
    headers = _request_headers(request)
    service = request.app[FETCH]
    try:
        target = await service.target(tid)
    except (UnknownTenant, NoFetchHandler, ModuleSourceUnavailable, InvalidModule) as exc:
        # One answer for all: an anonymous client must not learn which tenants exist, nor
        # where the deployment keeps their code (a module source's errors name it). The
        # operator finds those in the log.
        if isinstance(exc, ModuleSourceUnavailable | InvalidModule):
            request["log"].warning("front_door.no_module", tenant_id=tid, reason=str(exc))
        raise HttpError(404, "no_fetch_handler",
                        f"no fetch handler answers for tenant {tid!r}: it does not exist, or "
                        "its active module does not export dwf_fetch") from None
    body = await read_body(request, target.limits.max_payload_bytes)
    fetch_request = FetchRequest(method=request.method, path=request.rel_url.raw_path,
                                 query=request.rel_url.raw_query_string, headers=headers,
                                 body=body, request_id=request["request_id"])
    outcome = await service.run(target, fetch_request, request["log"].bind(tenant_id=tid))
    if isinstance(outcome, FetchFailed):
        raise HttpError(500, "fetch_failed",
                        f"the fetch handler of tenant {tid!r} failed ({outcome.name}); the "
                        f"host log has the details under request id {request['request_id']}")
    return web.Response(status=outcome.status, headers=outcome.headers, body=outcome.body)


def _request_headers(request: web.Request) -> dict[str, str]:
    """The request's headers as the guest sees them: lower-case names, repeated ones
    joined with ", ". A value that is not UTF-8 (aiohttp hands its bytes over as
    surrogates) cannot be given to the guest as text: 400."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if not (key.isascii() and value.isascii()):
            try:
                value.encode("utf-8")
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise HttpError(400, "invalid_header",
                                f"header {key.encode('utf-8', 'replace').decode()!r} is not "
                                "UTF-8 text: send header values as UTF-8") from None
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def create_app(engine: DurableEngine, tokens: TokenStore,
               config: ServerConfig = ServerConfig()) -> web.Application:
    # Bodies are read with our own per-route limits (read_body); aiohttp's cap must not
    # stop a module upload first.
    app = web.Application(middlewares=[_middleware],
                          client_max_size=max(config.max_body_bytes, config.max_module_bytes))
    app[ENGINE] = engine
    app[TOKENS] = tokens
    app[FETCH] = FetchService(engine)
    app[CONFIG] = config
    api.add_routes(app)
    add_metrics(app, engine)
    add_ui(app)
    return app
