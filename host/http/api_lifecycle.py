"""The code lifecycle under /v1: check a candidate module against the instances in flight,
move compatible ones to a new version, see each version's drain, prune, and replay one
instance's journal. The OpenAPI description of each route is beside it, at the bottom.

Authorization is the API's (a tenant token acts for its own tenant, which may deploy its
own code, so it may check, upgrade and prune it too).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core.errors import InvalidInput
from ..core.ids import TenantId
from .auth import authorized_tenant
from .common import CONFIG, ENGINE, read_body, read_json_object

routes = web.RouteTableDef()
_TENANT = "/v1/tenants/{tenant}"


async def _module_body(request: web.Request, required: bool) -> bytes | None:
    wasm = await read_body(request, request.app[CONFIG].max_module_bytes, "module")
    if not wasm and required:
        raise InvalidInput("send the candidate module's wasm bytes as the request body")
    return wasm or None


@routes.post(f"{_TENANT}/check")
async def check_module(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    wasm = await _module_body(request, required=True)
    assert wasm is not None
    report = await request.app[ENGINE].upgrades.check(tid, wasm)
    return web.json_response(report.to_dict())


@routes.post(f"{_TENANT}/upgrade")
async def upgrade(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    body = await read_json_object(request)
    unknown = set(body) - {"to", "instances", "all_compatible"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))} (use to, instances, "
                           "all_compatible)")
    to, instances, every = body.get("to"), body.get("instances"), body.get("all_compatible")
    if isinstance(to, int) and not isinstance(to, bool):
        to = str(to)
    if not isinstance(to, str) or not to:
        raise InvalidInput("`to` must name a version: its number or sha256")
    if (instances is None) == (every is not True):
        raise InvalidInput("give either `instances` (a list of ids) or `all_compatible: true`")
    if instances is not None and (not isinstance(instances, list) or not instances or not all(
            isinstance(i, str) for i in instances)):
        raise InvalidInput("`instances` must be a non-empty list of instance ids")
    report = await request.app[ENGINE].upgrades.upgrade(tid, to, instances)
    return web.json_response(report.to_dict())


@routes.get(f"{_TENANT}/versions")
async def list_versions(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    versions = await request.app[ENGINE].upgrades.versions(tid)
    return web.json_response({"versions": [v.to_dict() for v in versions]})


@routes.post(f"{_TENANT}/prune")
async def prune(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    pruned = await request.app[ENGINE].upgrades.prune(tid)
    return web.json_response({"pruned": [v.to_dict() for v in pruned]})


@routes.post(f"{_TENANT}/instances/{{id}}/replay")
async def replay_instance(request: web.Request) -> web.Response:
    tid: TenantId = await authorized_tenant(request)
    replayer = request.app[ENGINE].replayer
    inputs = await replayer.inputs(tid, request.match_info["id"])  # 404 before compiling
    wasm = await _module_body(request, required=False)
    candidate = await replayer.candidate(tid, wasm) if wasm is not None else None
    report = await replayer.replay(inputs, candidate)
    return web.json_response(report.to_dict())


@routes.get(f"{_TENANT}/instances/{{id}}/upgrades")
async def instance_upgrades(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    iid = request.match_info["id"]
    engine = request.app[ENGINE]
    await engine.instances.status(tid, iid, with_steps=False)  # UnknownInstance: 404
    moves = await engine.upgrades.history(tid, iid)
    return web.json_response({"upgrades": [move.to_dict() for move in moves]})


# -- OpenAPI -------------------------------------------------------------------------

_WASM_BODY = {"content": {"application/wasm": {"schema": {"type": "string",
                                                          "format": "binary"}}}}


def openapi_schemas(ref: Any) -> dict[str, Any]:
    call = {"type": ["object", "null"], "properties": {
        "kind": {"enum": ["do", "sleep", "event", "create", "send", "now", "random"]},
        "name": {"type": "string"}}}
    return {
        "Replay": {"type": "object", "properties": {
            "instance_id": {"type": "string"}, "workflow": {"type": "string"},
            "status": {"type": "string"}, "pinned_sha256": {"type": "string"},
            "module_sha256": {"type": "string", "description": "The module replayed"},
            "compatible": {"type": "boolean", "description":
                           "Every recorded position matched and the module did not fail"},
            "ending": {"enum": ["frontier", "finished", "diverged", "failed"], "description":
                       "frontier: it reached where the instance goes on; finished: it "
                       "returned; diverged: it asked for another step than recorded; "
                       "failed: it trapped or broke the ABI"},
            "position": {"type": "integer"}, "message": {"type": "string"},
            "recorded": call, "issued": call, "journal_length": {"type": "integer"},
            "output": {"type": ["object", "null"]},
            "steps": {"type": "array", "items": {"type": "object"}}}},
        "CheckReport": {"type": "object", "properties": {
            "tenant_id": {"type": "string"}, "module_sha256": {"type": "string"},
            "compatible": {"type": "boolean"}, "incompatible": {"type": "integer"},
            "instances": {"type": "array", "items": ref("Replay")}}},
        "UpgradeRequest": {
            "type": "object", "required": ["to"], "additionalProperties": False,
            "properties": {
                "to": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}],
                       "description": "Version number or sha256"},
                "instances": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                              "description": "The instances to move"},
                "all_compatible": {"type": "boolean",
                                   "description": "true: every unfinished instance"}},
            "oneOf": [{"required": ["instances"],
                       "not": {"required": ["all_compatible"],
                               "properties": {"all_compatible": {"const": True}}}},
                      {"required": ["all_compatible"],
                       "properties": {"all_compatible": {"const": True}},
                       "not": {"required": ["instances"]}}]},
        "UpgradeReport": {"type": "object", "properties": {
            "tenant_id": {"type": "string"}, "to_sha256": {"type": "string"},
            "to_version": {"type": "integer"}, "moved": {"type": "integer"},
            "instances": {"type": "array", "items": {"type": "object", "properties": {
                "instance_id": {"type": "string"}, "from_sha256": {"type": "string"},
                "moved": {"type": "boolean"}, "reason": {"type": "string"},
                "check": {"oneOf": [ref("Replay"), {"type": "null"}]}}}}}},
        "VersionUsage": {"type": "object", "properties": {
            "sha256": {"type": "string"}, "version": {"type": "integer"},
            "active": {"type": "boolean"}, "registered_at_ms": {"type": "integer"},
            "unfinished": {"type": "integer", "description":
                           "Instances still running on it: drained at 0"},
            "finished": {"type": "integer"}}},
        "VersionList": {"type": "object", "properties": {
            "versions": {"type": "array", "items": ref("VersionUsage")}}},
        "Pruned": {"type": "object", "properties": {
            "pruned": {"type": "array", "items": ref("VersionUsage")}}},
        "UpgradeList": {"type": "object", "properties": {"upgrades": {
            "type": "array", "items": {"type": "object", "properties": {
                "from_sha256": {"type": "string"}, "to_sha256": {"type": "string"},
                "from_version": {"type": ["integer", "null"]},
                "to_version": {"type": ["integer", "null"]},
                "journal_length": {"type": "integer"},
                "upgraded_at_ms": {"type": "integer"}}}}}},
    }


def openapi_paths(op: Any, json_body: Any, ref: Any, tenant: Any,
                  instance_id: Any) -> dict[str, Any]:
    instance = f"{_TENANT}/instances/{{id}}"
    return {
        f"{_TENANT}/check": {"post": op(
            "checkModule", "Replay every unfinished instance against a candidate module "
            "(nothing is stored, written or run for real): compatible, or where it diverges",
            {"200": json_body(ref("CheckReport"), "Per instance")},
            errors=(400, 401, 404, 413, 422), params=[tenant], tag="deploys",
            body={"required": True, **_WASM_BODY})},
        f"{_TENANT}/upgrade": {"post": op(
            "upgradeInstances", "Move instances to a version, each only if it replays on it "
            "now; the others stay pinned, with the reason",
            {"200": json_body(ref("UpgradeReport"), "Per instance")},
            errors=(400, 401, 404), params=[tenant], tag="deploys",
            body={"required": True, "content": {"application/json": {
                "schema": ref("UpgradeRequest")}}})},
        f"{_TENANT}/versions": {"get": op(
            "listVersions", "Each module version and how many instances run on it (drain)",
            {"200": json_body(ref("VersionList"), "Versions, oldest first")},
            errors=(400, 401, 404), params=[tenant], tag="deploys")},
        f"{_TENANT}/prune": {"post": op(
            "pruneVersions", "Delete versions neither active nor used by any instance",
            {"200": json_body(ref("Pruned"), "What was deleted")},
            errors=(400, 401, 404), params=[tenant], tag="deploys")},
        f"{instance}/replay": {"post": op(
            "replayInstance", "Replay the instance's journal through its module, or the "
            "candidate in the body, step by step; stops at the first divergence",
            {"200": json_body(ref("Replay"), "Each step and where it stopped")},
            errors=(400, 401, 404, 413, 422),
            params=[tenant, instance_id], tag="deploys",
            body={"required": False, **_WASM_BODY})},
        f"{instance}/upgrades": {"get": op(
            "listInstanceUpgrades", "The instance's moves between module versions",
            {"200": json_body(ref("UpgradeList"), "Oldest first")},
            errors=(400, 401, 404), params=[tenant, instance_id],
            tag="deploys")},
    }
