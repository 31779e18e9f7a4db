"""The management API under /v1: modules and instances, per-tenant bearer tokens.

Every route but /v1/health needs `Authorization: Bearer <token>`. A tenant token acts for
its own tenant only: any other tenant, existing or not, is 404 to it, exactly as an unknown
one, so a token cannot even learn which other tenants exist. An admin token acts for all.
`openapi.py` describes every route registered here (a test keeps them in step).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core.errors import InvalidInput
from ..durable.instances import (
    InstanceQuery,
    InstanceRequest,
    InstanceStatus,
    Status,
    decode_cursor,
)
from ..store import ModuleInfo
from . import api_capabilities, api_lifecycle, api_schedules, openapi
from .auth import authorized_tenant, principal_of
from .common import (
    CONFIG,
    ENGINE,
    read_body,
    read_json_object,
)

MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100


# -- views ---------------------------------------------------------------------------

def _module_view(info: ModuleInfo) -> dict[str, Any]:
    return {"tenant_id": info.tenant_id, "sha256": info.sha256, "version": info.version,
            "size_bytes": info.size_bytes, "workflows": list(info.workflows), "sdk": info.sdk,
            "fetch": info.fetch, "active": info.active,
            "registered_at_ms": info.registered_at_ms}


def _instance_view(status: InstanceStatus, with_steps: bool = True) -> dict[str, Any]:
    view = status.to_dict()
    if not with_steps:
        del view["steps"]
    return view


def _instance_url(tid: str, iid: str) -> str:
    return f"/v1/tenants/{tid}/instances/{iid}"


# -- routes --------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/v1/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    tenants = await request.app[ENGINE].registry.tenants()
    return web.json_response({"tenants": [
        {"tenant_id": t.tenant_id, "active_version": t.active_version,
         "active_sha256": t.active_sha256, "workflows": list(t.workflows),
         "versions": t.versions, "limits": t.limits.as_dict()}
        for t in tenants if principal.may_act_for(t.tenant_id)]})


@routes.get("/v1/tenants/{tenant}")
async def get_tenant(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    registry = request.app[ENGINE].registry
    active, limits = await registry.active_with_limits(tid)
    return web.json_response({"tenant_id": tid, "active": _module_view(active),
                              "limits": limits.as_dict()})


@routes.get("/v1/tenants/{tenant}/modules")
async def list_modules(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    versions = await request.app[ENGINE].registry.versions(tid)
    return web.json_response({"modules": [_module_view(v) for v in versions]})


@routes.post("/v1/tenants/{tenant}/modules")
async def register_module(request: web.Request) -> web.Response:
    """A tenant token may register its own tenant's modules (that is how it deploys)."""
    tid = await authorized_tenant(request)
    wasm = await read_body(request, request.app[CONFIG].max_module_bytes, "module")
    info = await request.app[ENGINE].registry.register(tid, wasm)
    return web.json_response(_module_view(info), status=201)


@routes.get("/v1/tenants/{tenant}/instances")
async def list_instances(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    unknown = set(request.query) - {"status", "workflow", "limit", "cursor"}
    if unknown:  # a typo (`?stauts=`) must not silently list everything
        raise InvalidInput(f"unknown query parameters: {', '.join(sorted(unknown))} "
                           "(use status, workflow, limit, cursor)")
    raw_status = request.query.get("status")
    try:
        wanted = Status(raw_status) if raw_status is not None else None
    except ValueError:
        raise InvalidInput(f"unknown status {raw_status!r}; use one of: "
                           f"{', '.join(s.value for s in Status)}") from None
    raw_limit = request.query.get("limit", str(DEFAULT_LIST_LIMIT))
    # isdigit() alone takes "²" and "٣", which int() refuses.
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 4
            and 1 <= int(raw_limit) <= MAX_LIST_LIMIT):
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    cursor = request.query.get("cursor")
    page = await request.app[ENGINE].instances.page(InstanceQuery(
        tid, wanted, request.query.get("workflow"), limit=int(raw_limit),
        after=decode_cursor(cursor) if cursor is not None else None))
    return web.json_response({"instances": [_instance_view(s, False) for s in page.instances],
                              "next_cursor": page.next_cursor})


def _instance_request(body: dict[str, Any], what: str) -> InstanceRequest:
    workflow, new_id = body.get("workflow"), body.get("id")
    if not isinstance(workflow, str) or not workflow:
        raise InvalidInput(f"{what} needs a string `workflow`")
    if new_id is not None and not isinstance(new_id, str):
        raise InvalidInput(f"{what}: `id` must be a string")
    unknown = set(body) - {"workflow", "params", "id"}
    if unknown:
        raise InvalidInput(f"{what} has unknown fields: {', '.join(sorted(unknown))} "
                           "(use workflow, params, id)")
    return InstanceRequest(workflow, body.get("params"), new_id)


@routes.post("/v1/tenants/{tenant}/instances")
async def create_instance(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    wanted = _instance_request(await read_json_object(request), "an instance")
    instances = request.app[ENGINE].instances
    [created] = await instances.create_batch(tid, [wanted])
    status = await instances.status(tid, created, with_steps=False)
    return web.json_response(_instance_view(status, False), status=201,
                             headers={"Location": _instance_url(tid, created)})


@routes.post("/v1/tenants/{tenant}/instances/batch")
async def create_batch(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    body = await read_json_object(request)
    wanted = body.get("instances")
    if not isinstance(wanted, list) or not all(isinstance(i, dict) for i in wanted):
        raise InvalidInput("the body must be {\"instances\": [{workflow, params, id}, ...]}")
    requests = [_instance_request(item, f"instances[{n}]") for n, item in enumerate(wanted)]
    created = await request.app[ENGINE].instances.create_batch(tid, requests)
    return web.json_response({"ids": created}, status=201)


@routes.get("/v1/tenants/{tenant}/instances/{id}")
async def get_instance(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    status = await request.app[ENGINE].instances.status(tid, request.match_info["id"])
    return web.json_response(_instance_view(status))


@routes.post("/v1/tenants/{tenant}/instances/{id}/events")
async def send_event(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    body = await read_json_object(request)
    event_type = body.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInput("an event needs a string `type`")
    iid = request.match_info["id"]
    await request.app[ENGINE].instances.send_event(tid, iid, event_type, body.get("payload"))
    return web.json_response({"sent": True, "id": iid, "type": event_type}, status=202)


CONTROL_ACTIONS = ("pause", "resume", "terminate", "restart")


def _control_route(action: str) -> None:
    async def control(request: web.Request) -> web.Response:
        tid = await authorized_tenant(request)
        iid = request.match_info["id"]
        instances = request.app[ENGINE].instances
        status = await getattr(instances, action)(tid, iid)
        return web.json_response({"id": iid, "status": status.value})
    control.__name__ = f"{action}_instance"
    routes.post(f"/v1/tenants/{{tenant}}/instances/{{id}}/{action}")(control)


for _action in CONTROL_ACTIONS:
    _control_route(_action)


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.router.add_routes(api_capabilities.routes)
    app.router.add_routes(api_lifecycle.routes)
    app.router.add_routes(api_schedules.routes)
