"""The OpenAPI 3.1 document of the management API, served at /openapi.json.

Written by hand next to the routes (api.py); `tests/test_http_api.py` validates it and checks
that every route the server has is described here and nothing else is.
"""

from __future__ import annotations

import functools
from typing import Any

from ..core import codec
from ..core.limits import TenantLimits
from ..core.model import ATTEMPTS_KEPT, Status
from ..sandbox import abi
from . import api_capabilities, api_lifecycle, api_schedules

_ERROR_CODES = ["invalid_input", "invalid_json", "not_found", "conflict", "invalid_module",
                "invalid_state", "unauthorized", "forbidden", "payload_too_large",
                "method_not_allowed", "unavailable", "internal"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {**{str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses},
            "default": {"$ref": "#/components/responses/Error"}}


def _operation(op_id: str, summary: str, responses: dict[str, Any], *, errors: tuple[int, ...],
               body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
               public: bool = False, tag: str = "instances") -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag],
                                 "responses": {**responses, **_errors(*errors)}}
    if body is not None:
        operation["requestBody"] = body
    if params:
        operation["parameters"] = params
    if public:
        operation["security"] = []
    return operation


_TENANT = {"$ref": "#/components/parameters/Tenant"}
_ID = {"$ref": "#/components/parameters/InstanceId"}

def _schemas() -> dict[str, Any]:
    any_value: dict[str, Any] = {"description": (
        "Any JSON value. Bytes appear as {\"$base64\": str}, NaN and infinities as "
        "{\"$float\": \"NaN\" | \"Infinity\" | \"-Infinity\"}, and a value stored before "
        "the host checked values (see Value) as {\"$invalid\": why}")}
    nullable_int = {"type": ["integer", "null"]}
    limits = {name: {"type": "integer", "minimum": 1} for name in TenantLimits().as_dict()}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "request_id"],
            "properties": {"code": {"type": "string", "examples": _ERROR_CODES},
                           "message": {"type": "string"},
                           "request_id": {"type": "string",
                                          "description": "Also the response's x-request-id "
                                                         "and on the host's log line"}}}}},
        "Value": {
            "description": f"A JSON value the host can store: integers within 64 bits, text "
                           f"that is valid Unicode (no lone surrogates), at most "
                           f"{codec.MAX_DEPTH} levels of arrays and objects (deeper is 400)",
            "anyOf": [{"type": ["null", "boolean", "string"]},
                      {"type": "integer", "minimum": -(2 ** 63), "maximum": 2 ** 64 - 1},
                      {"type": "number", "not": {"type": "integer"}},
                      {"type": "array", "items": _ref("Value")},
                      {"type": "object", "additionalProperties": _ref("Value")}]},
        "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
        "Limits": {"type": "object", "properties": limits},
        "Module": {"type": "object", "required": ["tenant_id", "sha256", "version"],
                   "properties": {
                       "tenant_id": {"type": "string"}, "sha256": {"type": "string"},
                       "version": {"type": "integer"}, "size_bytes": {"type": "integer"},
                       "workflows": {"type": "array", "items": {"type": "string"}},
                       "sdk": {"type": "string"},
                       "fetch": {"type": "boolean",
                                 "description": f"exports `{abi.EXPORT_FETCH}`: answers "
                                                "requests sent with x-tenant-id"},
                       "active": {"type": "boolean"},
                       "registered_at_ms": {"type": "integer"}}},
        "ModuleList": {"type": "object", "properties": {
            "modules": {"type": "array", "items": _ref("Module")}}},
        "Tenant": {"type": "object", "properties": {
            "tenant_id": {"type": "string"}, "active": _ref("Module"),
            "limits": _ref("Limits")}},
        "TenantSummary": {"type": "object", "properties": {
            "tenant_id": {"type": "string"}, "active_version": {"type": "integer"},
            "active_sha256": {"type": "string"},
            "workflows": {"type": "array", "items": {"type": "string"}},
            "versions": {"type": "integer"}, "limits": _ref("Limits")}},
        "TenantList": {"type": "object", "properties": {
            "tenants": {"type": "array", "items": _ref("TenantSummary")}}},
        "CreateInstance": {"type": "object", "required": ["workflow"],
                           "additionalProperties": False, "properties": {
                               "workflow": {"type": "string", "minLength": 1,
                                            "examples": ["onboarding"]},
                               "params": {**_ref("Value"), "description": "The event payload"},
                               "id": {"type": ["string", "null"],
                                      "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$",
                                      "description": "Default (absent or null): a random "
                                                     "id"}}},
        "CreateBatch": {"type": "object", "required": ["instances"], "properties": {
            "instances": {"type": "array", "minItems": 1, "items": _ref("CreateInstance")}}},
        "CreatedBatch": {"type": "object", "properties": {
            "ids": {"type": "array", "items": {"type": "string"}}}},
        "ErrorInfo": {"type": ["object", "null"], "properties": {
            "name": {"type": "string"}, "message": {"type": "string"}}},
        "Step": {"type": "object", "properties": {
            "position": {"type": "integer"},
            "kind": {"enum": ["do", "sleep", "event", "create", "send"]},
            "name": {"type": "string"}, "occurrence": {"type": "integer"},
            "state": {"enum": ["ok", "error", "pending"]}, "attempts": {"type": "integer"},
            "result": any_value, "error": _ref("ErrorInfo"), "wake_at_ms": nullable_int,
            "started_at_ms": {"type": "integer"}, "finished_at_ms": nullable_int,
            "attempt_history": {"type": "array", "items": _ref("Attempt"), "description":
                                f"Attempts of a `do` step, the latest {ATTEMPTS_KEPT} kept"}}},
        "Attempt": {"type": "object", "properties": {
            "attempt": {"type": "integer", "minimum": 1}, "state": {"enum": ["ok", "error"]},
            "started_at_ms": {"type": "integer"}, "finished_at_ms": {"type": "integer"},
            "error": _ref("ErrorInfo"), "retry_delay_ms": {
                **nullable_int, "description": "A retried failure: the wait before the next"}}},
        "Instance": {"type": "object", "required": ["id", "status"], "properties": {
            "tenant_id": {"type": "string"}, "id": {"type": "string"},
            "workflow": {"type": "string"}, "module_sha256": {"type": "string"},
            "status": {"enum": [s.value for s in Status]}, "params": any_value,
            "output": any_value, "error": _ref("ErrorInfo"),
            "created_at_ms": {"type": "integer"}, "updated_at_ms": {"type": "integer"},
            "finished_at_ms": nullable_int, "wake_at_ms": nullable_int,
            "waiting_event_type": {"type": ["string", "null"]},
            "parent_instance_id": {"type": ["string", "null"]},
            "steps": {"type": "array", "items": _ref("Step"),
                      "description": "Only in GET /v1/tenants/{tenant}/instances/{id}"}}},
        "InstanceList": {"type": "object", "properties": {
            "instances": {"type": "array", "items": _ref("Instance")},
            "next_cursor": {"type": ["string", "null"], "description":
                            "Pass as `cursor` for the next page; null on the last page"}}},
        "ControlResult": {"type": "object", "properties": {
            "id": {"type": "string"}, "status": {"enum": [s.value for s in Status]}}},
        "Event": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string", "minLength": 1, "maxLength": 256},
            "payload": _ref("Value")}},
        "EventSent": {"type": "object", "properties": {
            "sent": {"const": True}, "id": {"type": "string"}, "type": {"type": "string"}}},
    }


def _paths() -> dict[str, Any]:
    tenant = "/v1/tenants/{tenant}"
    instance = f"{tenant}/instances/{{id}}"
    instance_ok = {"200": _json(_ref("Instance"), "The instance, with its steps")}
    paths: dict[str, Any] = {
        "/openapi.json": {"get": _operation(
            "getOpenApi", "This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            errors=(), public=True, tag="meta")},
        "/v1/health": {"get": _operation(
            "getHealth", "Liveness", {"200": _json(_ref("Health"), "Serving")}, errors=(),
            public=True, tag="meta")},
        "/metrics": {"get": _operation(
            "getMetrics", "Prometheus metrics of the engine, database, sandbox and HTTP "
            "(admin token only)", {"200": {"description": "Prometheus text format",
                                           "content": {"text/plain": {"schema": {
                                               "type": "string"}}}}},
            errors=(401, 403), tag="meta")},
        "/v1/tenants": {"get": _operation(
            "listTenants", "Tenants this token may act for",
            {"200": _json(_ref("TenantList"), "Tenants")}, errors=(401,), tag="tenants")},
        tenant: {"get": _operation(
            "getTenant", "A tenant's active module and limits",
            {"200": _json(_ref("Tenant"), "The tenant")}, errors=(400, 401, 404),
            params=[_TENANT], tag="tenants")},
        f"{tenant}/modules": {
            "get": _operation("listModules", "Every module version the tenant registered",
                              {"200": _json(_ref("ModuleList"), "Versions, oldest first")},
                              errors=(400, 401, 404), params=[_TENANT], tag="tenants"),
            "post": _operation(
                "registerModule", "Register a module: validated, stored by sha256, made the "
                "tenant's active version (a tenant token may deploy its own tenant)",
                {"201": _json(_ref("Module"), "Registered and active")},
                errors=(400, 401, 404, 413, 422), params=[_TENANT], tag="tenants",
                body={"required": True, "content": {"application/wasm": {
                    "schema": {"type": "string", "format": "binary"}}}})},
        f"{tenant}/instances": {
            "get": _operation(
                "listInstances", "The tenant's instances, newest first, a page at a time",
                {"200": _json(_ref("InstanceList"), "Instances (without steps)")},
                errors=(400, 401, 404), params=[
                    _TENANT,
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"enum": [s.value for s in Status]}},
                    {"name": "workflow", "in": "query", "required": False,
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}},
                    {"name": "cursor", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                     "description": "The previous page's `next_cursor`"}]),
            "post": _operation(
                "createInstance", "Create an instance on the tenant's active module",
                {"201": {**_json(_ref("Instance"), "Created (queued)"), "headers": {
                    "Location": {"schema": {"type": "string"}}}}},
                errors=(400, 401, 404, 409, 413), params=[_TENANT],
                body={"required": True, "content": {"application/json": {
                    "schema": _ref("CreateInstance")}}})},
        f"{tenant}/instances/batch": {"post": _operation(
            "createInstances", "Create several instances: all or none",
            {"201": _json(_ref("CreatedBatch"), "Created, in order")},
            errors=(400, 401, 404, 409, 413), params=[_TENANT],
            body={"required": True, "content": {"application/json": {
                "schema": _ref("CreateBatch")}}})},
        instance: {"get": _operation(
            "getInstance", "Status, output or error, and every step",
            instance_ok, errors=(400, 401, 404), params=[_TENANT, _ID])},
        f"{instance}/events": {"post": _operation(
            "sendEvent", "Send an event (buffered until the instance waits for its type)",
            {"202": _json(_ref("EventSent"), "Stored")},
            errors=(400, 401, 404, 409, 413), params=[_TENANT, _ID],
            body={"required": True, "content": {"application/json": {
                "schema": _ref("Event")}}})},
    }
    words = {"pause": "Pause (a running instance stops at its next step boundary)",
             "resume": "Resume a paused instance",
             "terminate": "Stop an instance for good",
             "restart": "Run again from the start on the same module version"}
    for action, summary in words.items():
        paths[f"{instance}/{action}"] = {"post": _operation(
            f"{action}Instance", summary,
            {"200": _json(_ref("ControlResult"), "The instance's new status")},
            errors=(400, 401, 404, 409), params=[_TENANT, _ID])}
    paths.update(api_capabilities.openapi_paths(_operation, _json, _ref, _TENANT))
    paths.update(api_lifecycle.openapi_paths(_operation, _json, _ref, _TENANT, _ID))
    paths.update(api_schedules.openapi_paths(_operation, _json, _ref, _TENANT))
    return paths


@functools.cache
def document() -> dict[str, Any]:
    error = _json(_ref("Error"), "An error")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dynamic-workflows management API",
            "version": "1",
            "description": (
                "Manage tenant modules and workflow instances. Every route under /v1 except "
                "/v1/health needs `Authorization: Bearer <token>` (`dwf token create`). "
                "A tenant token acts for its own tenant only; other tenants are 404 to it. "
                "Requests to any other path are the tenants' front door: with an "
                "`x-tenant-id` header they are answered by that tenant's fetch handler "
                f"(`{abi.EXPORT_FETCH}`, see guest_sdk/proposals/0001-fetch-handlers.md)."),
        },
        "security": [{"bearer": []}],
        "tags": [{"name": "meta"}, {"name": "tenants"}, {"name": "instances"},
                 {"name": "capabilities"}, {"name": "deploys"}, {"name": "schedules"}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "Tenant": {"name": "tenant", "in": "path", "required": True,
                           "schema": {"type": "string", "examples": ["acme"],
                                      "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"}},
                "InstanceId": {"name": "id", "in": "path", "required": True,
                               "schema": {"type": "string"}},
            },
            "responses": {"Error": error,
                          **{f"E{s}": _json(_ref("Error"), d) for s, d in {
                              400: "Bad input (invalid JSON, a missing field, an invalid id)",
                              401: "No bearer token, or an unknown or revoked one",
                              403: "It needs an admin token (the operator's to change, "
                                   "or to see)",
                              404: "No such tenant or instance (a tenant token sees only "
                                   "its own tenant)",
                              409: "A duplicate instance id, or a state that forbids it",
                              413: "The request body is over the limit",
                              422: "The module was rejected (not wasm, or not the dwf ABI)",
                          }.items()}},
            "schemas": {**_schemas(), **api_capabilities.openapi_schemas(_ref),
                        **api_lifecycle.openapi_schemas(_ref),
                        **api_schedules.openapi_schemas(_ref)},
        },
    }
