"""Cron schedules under /v1: create, list, pause, resume, delete. The OpenAPI description
of each route is beside it, at the bottom. Workers fire the ticks (durable/schedules.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..core.errors import InvalidInput
from ..core.ids import TenantId
from ..store.lifecycle import Catchup, Overlap, Schedule
from .auth import authorized_tenant, principal_of
from .common import ENGINE, read_json_object

if TYPE_CHECKING:
    from ..durable.schedules import Schedules

routes = web.RouteTableDef()
_SCHEDULES = "/v1/tenants/{tenant}/schedules"
_SCHEDULE = _SCHEDULES + "/{schedule}"
_FIELDS = ("workflow", "cron", "timezone", "params", "overlap", "catchup", "id")


def _choice(body: dict[str, Any], name: str, kind: type[Overlap] | type[Catchup],
            default: str) -> Any:
    value = body.get(name, default)
    choices = [member.value for member in kind]
    if value not in choices:
        raise InvalidInput(f"`{name}` must be one of {', '.join(choices)}")
    return kind(value)


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInput(f"`{name}` must be a non-empty string")
    return value


@routes.get("/v1/schedules")
async def list_all_schedules(request: web.Request) -> web.Response:
    """Every schedule the token may see (an admin token: all tenants')."""
    principal = await principal_of(request)
    found = await request.app[ENGINE].schedules.list()
    return web.json_response({"schedules": [s.to_dict() for s in found
                                            if principal.may_act_for(s.tenant_id)]})


@routes.get(_SCHEDULES)
async def list_schedules(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    found = await request.app[ENGINE].schedules.list(tid)
    return web.json_response({"schedules": [s.to_dict() for s in found]})


async def create_from(schedules: Schedules, tid: TenantId, body: dict[str, Any]) -> Schedule:
    """A new schedule from the fields of `body` (an API request's, or the dashboard's
    form as the same fields): the same checks, the same messages."""
    unknown = set(body) - set(_FIELDS)
    if unknown:
        raise InvalidInput(f"a schedule has unknown fields: {', '.join(sorted(unknown))} "
                           f"(use {', '.join(_FIELDS)})")
    workflow, cron = _text(body, "workflow"), _text(body, "cron")
    if workflow is None or cron is None:
        raise InvalidInput("a schedule needs a `workflow` and a `cron` expression")
    return await schedules.create(
        tid, workflow, cron, timezone=_text(body, "timezone", "UTC") or "UTC",
        params=body.get("params"), overlap=_choice(body, "overlap", Overlap, "skip"),
        catchup=_choice(body, "catchup", Catchup, "none"), schedule_id=_text(body, "id"))


@routes.post(_SCHEDULES)
async def create_schedule(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    body = await read_json_object(request)
    created = await create_from(request.app[ENGINE].schedules, tid, body)
    return web.json_response(created.to_dict(), status=201, headers={
        "Location": f"/v1/tenants/{tid}/schedules/{created.schedule_id}"})


@routes.get(_SCHEDULE)
async def get_schedule(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    found = await request.app[ENGINE].schedules.get(tid, request.match_info["schedule"])
    return web.json_response(found.to_dict())


@routes.delete(_SCHEDULE)
async def delete_schedule(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    schedule_id = request.match_info["schedule"]
    await request.app[ENGINE].schedules.delete(tid, schedule_id)
    return web.json_response({"id": schedule_id, "deleted": True})


@routes.post(_SCHEDULE + "/pause")
async def pause_schedule(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    paused = await request.app[ENGINE].schedules.pause(tid, request.match_info["schedule"])
    return web.json_response(paused.to_dict())


@routes.post(_SCHEDULE + "/resume")
async def resume_schedule(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    resumed = await request.app[ENGINE].schedules.resume(tid, request.match_info["schedule"])
    return web.json_response(resumed.to_dict())


# -- OpenAPI -------------------------------------------------------------------------

def openapi_schemas(ref: Any) -> dict[str, Any]:
    nullable_int = {"type": ["integer", "null"]}
    return {
        "CreateSchedule": {"type": "object", "required": ["workflow", "cron"],
                           "additionalProperties": False, "properties": {
            "workflow": {"type": "string", "minLength": 1},
            "cron": {"type": "string", "minLength": 1, "description": "Five fields (minute hour "
                     "day-of-month month day-of-week) or @hourly, @daily, @weekly, "
                     "@monthly, @yearly", "examples": ["*/15 * * * *", "0 9 * * 1-5"]},
            "timezone": {"type": "string", "default": "UTC",
                         "description": "IANA time zone the expression is read in"},
            "params": {**ref("Value"), "description": "The instances' params"},
            "overlap": {"enum": [o.value for o in Overlap], "default": "skip",
                        "description": "skip: no new instance while the previous one runs"},
            "catchup": {"enum": [c.value for c in Catchup], "default": "none",
                        "description": "Ticks missed while no worker ran"},
            "id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$",
                   "description": "Default (absent or null): WORKFLOW-<random>; its "
                                  "instances are ID-<tick as YYYYMMDDTHHMMZ>"}}},
        "Schedule": {"type": "object", "properties": {
            "tenant_id": {"type": "string"}, "id": {"type": "string"},
            "workflow": {"type": "string"}, "cron": {"type": "string"},
            "timezone": {"type": "string"}, "params": {},
            "overlap": {"enum": [o.value for o in Overlap]},
            "catchup": {"enum": [c.value for c in Catchup]}, "paused": {"type": "boolean"},
            "next_tick_ms": {**nullable_int, "description": "UTC ms; null while paused"},
            "last_tick_ms": nullable_int,
            "last_instance_id": {"type": ["string", "null"]},
            "started": {"type": "integer", "description": "Instances started so far"},
            "skipped": {"type": "integer", "description":
                        "Ticks that started nothing (missed, overlapping, refused)"},
            "last_error": {"type": ["string", "null"], "description":
                           "Why the latest tick could not start an instance"},
            "created_at_ms": {"type": "integer"}, "updated_at_ms": {"type": "integer"}}},
        "ScheduleList": {"type": "object", "properties": {
            "schedules": {"type": "array", "items": ref("Schedule")}}},
        "ScheduleDeleted": {"type": "object", "properties": {
            "id": {"type": "string"}, "deleted": {"const": True}}},
    }


def openapi_paths(op: Any, json_body: Any, ref: Any, tenant: Any) -> dict[str, Any]:
    one: dict[str, Any] = {"name": "schedule", "in": "path", "required": True,
                           "schema": {"type": "string"}}
    params: list[dict[str, Any]] = [tenant, one]
    ok = {"200": json_body(ref("Schedule"), "The schedule")}
    paths: dict[str, Any] = {
        "/v1/schedules": {"get": op(
            "listAllSchedules", "Every schedule the token may see",
            {"200": json_body(ref("ScheduleList"), "By tenant, then id")}, errors=(401,),
            tag="schedules")},
        _SCHEDULES: {
            "get": op("listSchedules", "The tenant's schedules",
                      {"200": json_body(ref("ScheduleList"), "By id")},
                      errors=(400, 401, 404), params=[tenant], tag="schedules"),
            "post": op("createSchedule", "Start an instance of a workflow at every cron tick "
                       "(exactly one per tick, whichever worker fires it)",
                       {"201": json_body(ref("Schedule"), "Created")},
                       errors=(400, 401, 404, 409, 413), params=[tenant],
                       tag="schedules", body={"required": True, "content": {
                           "application/json": {"schema": ref("CreateSchedule")}}})},
        _SCHEDULE: {
            "get": op("getSchedule", "One schedule", ok, errors=(400, 401, 404),
                      params=params, tag="schedules"),
            "delete": op("deleteSchedule", "Delete it (its instances stay)",
                         {"200": json_body(ref("ScheduleDeleted"), "Deleted")},
                         errors=(400, 401, 404), params=params, tag="schedules")},
        _SCHEDULE + "/pause": {"post": op(
            "pauseSchedule", "Fire no tick until resumed", ok, errors=(400, 401, 404),
            params=params, tag="schedules")},
        _SCHEDULE + "/resume": {"post": op(
            "resumeSchedule", "Fire again from the next tick after now", ok,
            errors=(400, 401, 404), params=params, tag="schedules")},
    }
    return paths
