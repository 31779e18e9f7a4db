"""The /v1 routes for a tenant's capabilities: egress rules and secrets.

Egress rules are the operator's (an admin token changes them; a tenant token may read its
own). A tenant token may set and delete its own secrets, and list their names, but no
route ever answers a secret's value.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core.errors import InvalidInput, NotFound
from ..egress.rules import EgressRule
from .auth import authorized_tenant
from .common import ENGINE, read_json_object

routes = web.RouteTableDef()
EGRESS = "/v1/tenants/{tenant}/egress"
SECRETS = "/v1/tenants/{tenant}/secrets"


def _rules_view(rules: list[EgressRule]) -> dict[str, Any]:
    return {"rules": [{"action": "allow" if rule.allow else "deny", "rule": str(rule),
                       "private": rule.private} for rule in rules]}


@routes.get(EGRESS)
async def get_egress(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    return web.json_response(_rules_view(await request.app[ENGINE].egress.rules(tid)))


@routes.put(EGRESS)
async def put_egress(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request, admin=True)
    body = await read_json_object(request)
    listed = body.get("rules")
    if set(body) != {"rules"} or not isinstance(listed, list):
        raise InvalidInput('the body must be {"rules": [{"action": "allow" | "deny", '
                           '"rule": "https://api.example.com", "private": false}, ...]}')
    rules = []
    for n, item in enumerate(listed):
        if (not isinstance(item, dict) or item.get("action") not in ("allow", "deny")
                or not isinstance(item.get("rule"), str)
                or not isinstance(item.get("private", False), bool)
                or set(item) - {"action", "rule", "private"}):
            raise InvalidInput(f"rules[{n}] must be {{action: allow | deny, rule: str, "
                               "private: bool}")
        rule = EgressRule.parse(item["rule"], allow=item["action"] == "allow",
                                private=item.get("private", False))
        rule.check_reachable()
        rules.append(rule)
    await request.app[ENGINE].egress.replace_rules(tid, rules)
    return web.json_response(_rules_view(rules))


@routes.get(SECRETS)
async def list_secrets(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    found = await request.app[ENGINE].egress.secrets(tid)
    return web.json_response({"secrets": [s.to_dict() for s in found]})


@routes.put(SECRETS + "/{name}")
async def put_secret(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    body = await read_json_object(request)
    value, name = body.get("value"), request.match_info["name"]
    if set(body) != {"value"} or not isinstance(value, str):
        raise InvalidInput('the body must be {"value": str}')
    await request.app[ENGINE].egress.set_secret(tid, name, value)
    return web.json_response({"name": name, "set": True})


@routes.delete(SECRETS + "/{name}")
async def delete_secret(request: web.Request) -> web.Response:
    tid = await authorized_tenant(request)
    name = request.match_info["name"]
    if not await request.app[ENGINE].egress.delete_secret(tid, name):
        raise NotFound(f"tenant {tid!r} has no secret {name!r}")
    return web.json_response({"name": name, "deleted": True})


def openapi_schemas(ref: Any) -> dict[str, Any]:
    rule = {"type": "object", "required": ["action", "rule"], "additionalProperties": False,
            "properties": {
                "action": {"enum": ["allow", "deny"]},
                "rule": {"type": "string", "examples": ["https://api.example.com",
                                                        "https://*.example.com:*"],
                         "description": "SCHEME://HOST[:PORT]: HOST exact or *.example.com; "
                                        "PORT defaults to the scheme's, * for any"},
                "private": {"type": "boolean", "default": False,
                            "description": "(allow, exact IP only) may reach that address "
                                           "although it is loopback or private"}}}
    secret = {"type": "object", "properties": {
        "name": {"type": "string"}, "created_at_ms": {"type": "integer"},
        "updated_at_ms": {"type": "integer"}}}
    return {
        "EgressRule": rule,
        "EgressRules": {"type": "object", "required": ["rules"], "additionalProperties": False,
                        "properties": {"rules": {"type": "array", "items": ref("EgressRule")}}},
        "Secret": secret,
        "SecretList": {"type": "object", "properties": {
            "secrets": {"type": "array", "items": ref("Secret")}}},
        "SecretValue": {"type": "object", "required": ["value"], "additionalProperties": False,
                        "properties": {"value": {"type": "string", "minLength": 1}}},
        "SecretChanged": {"type": "object", "properties": {
            "name": {"type": "string"}, "set": {"type": "boolean"},
            "deleted": {"type": "boolean"}}},
    }


def openapi_paths(operation: Any, json_body: Any, ref: Any, tenant: Any) -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"}}
    rules_body = {"required": True, "content": {"application/json": {
        "schema": ref("EgressRules")}}}
    return {
        EGRESS: {
            "get": operation("getEgress", "The tenant's egress rules (outbound HTTP)",
                             {"200": json_body(ref("EgressRules"), "Its rules")},
                             errors=(400, 401, 404), params=[tenant], tag="capabilities"),
            "put": operation("putEgress", "Replace the tenant's egress rules (admin token)",
                             {"200": json_body(ref("EgressRules"), "The rules now")},
                             errors=(400, 401, 403, 404), params=[tenant], body=rules_body,
                             tag="capabilities")},
        SECRETS: {"get": operation(
            "listSecrets", "The tenant's secrets: names and dates, never values",
            {"200": json_body(ref("SecretList"), "Secrets by name")},
            errors=(400, 401, 404), params=[tenant], tag="capabilities")},
        SECRETS + "/{name}": {
            "put": operation("putSecret", "Set a secret (its value is never answered back)",
                             {"200": json_body(ref("SecretChanged"), "Set")},
                             errors=(400, 401, 404), params=[tenant, name],
                             body={"required": True, "content": {"application/json": {
                                 "schema": ref("SecretValue")}}}, tag="capabilities"),
            "delete": operation("deleteSecret", "Delete a secret",
                                {"200": json_body(ref("SecretChanged"), "Deleted")},
                                errors=(400, 401, 404), params=[tenant, name],
                                tag="capabilities")},
    }
