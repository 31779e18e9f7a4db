"""The front door: requests with x-tenant-id answered by tenants' fetch handlers, for real.

One `dwf serve` process on a loopback port serves this module; tests/serving.py sets it up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import World, wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("fetch"), built)
    with world.server:
        yield world


def _status(world: World, tenant: str, instance: str) -> dict:
    with world.client("admin") as api:
        response = api.get(f"/v1/tenants/{tenant}/instances/{instance}")
        assert 200 == response.status_code, response.text
        return response.json()


def test_acme_signup_starts_onboarding_and_reports_its_status(world: World) -> None:
    door = {"x-tenant-id": "acme"}
    with world.client() as http:
        signup = http.post("/signup", headers=door,
                           json={"email": "ada@example.com", "id": "ada", "nudge_after_ms": 0})
        assert 201 == signup.status_code, signup.text
        assert {"id": "ada", "status_url": "/status/ada"} == signup.json()
        assert "/status/ada" == signup.headers["location"]

        def waiting() -> dict | None:  # for the approval (not in the nudge's short sleep)
            body = http.get("/status/ada", headers=door).json()
            return body if body["waiting_event_type"] == "approval" else None
        status = wait_until(waiting, what="onboarding to wait for approval")
        assert ("onboarding", "waiting") == (status["workflow"], status["status"])

        approve = http.post("/approve/ada", headers=door, json={"approved": True})
        assert (202, {"id": "ada", "approved": True}) == (approve.status_code, approve.json())
        done = wait_until(lambda: (b := http.get("/status/ada", headers=door).json())
                          ["status"] == "complete" and b, what="onboarding to complete")
        assert "activated" == done["output"]["outcome"]
    assert ["create-account", "send-welcome-email", "nudge-delay", "send-nudge-email",
            "manager-approval", "activate-account"] == [
        s["name"] for s in _status(world, "acme", "ada")["steps"]]


@pytest.mark.parametrize(("method", "path", "body", "expect", "code"), [
    ("POST", "/signup", {"name": "no email"}, 400, "invalid_body"),
    ("POST", "/signup", None, 400, "invalid_body"),
    ("GET", "/status/nobody-here", None, 404, "UnknownInstance"),
    ("POST", "/approve/nobody-here", {"approved": True}, 404, "UnknownInstance"),
    ("DELETE", "/signup", None, 404, "not_found"),
])
def test_acme_handler_answers_bad_requests_itself(world: World, method: str, path: str,
                                                  body: dict | None, expect: int,
                                                  code: str) -> None:
    with world.client() as http:
        response = http.request(method, path, headers={"x-tenant-id": "acme"}, json=body)
    assert (expect, code) == (response.status_code, response.json()["error"]["code"])


def test_duplicate_signup_is_a_conflict(world: World) -> None:
    with world.client() as http:
        first = http.post("/signup", headers={"x-tenant-id": "acme"},
                          json={"email": "bo@example.com", "id": "bo"})
        again = http.post("/signup", headers={"x-tenant-id": "acme"},
                          json={"email": "bo@example.com", "id": "bo"})
    assert (201, 409, "DuplicateInstance") == (first.status_code, again.status_code,
                                               again.json()["error"]["code"])


@pytest.mark.parametrize(("headers", "expect", "code", "message"), [
    ({}, 400, "missing_tenant", "send the `x-tenant-id` header"),
    ({"x-tenant-id": "bad tenant!"}, 400, "invalid_tenant", "invalid tenant id"),
    ({"x-tenant-id": "nobody"}, 404, "no_fetch_handler",
     "no fetch handler answers for tenant 'nobody': it does not exist, or its active module "
     "does not export dwf_fetch"),
    ([("x-tenant-id", "alpha"), ("x-tenant-id", "beta")], 400, "invalid_tenant",
     "send the `x-tenant-id` header once; this request has 2"),
])
def test_requests_no_tenant_can_answer_get_a_clear_4xx(world: World, headers: Any,
                                                       expect: int, code: str,
                                                       message: str) -> None:
    with world.client() as http:
        response = http.get("/anything", headers=headers)
    error = response.json()["error"]
    assert (expect, code) == (response.status_code, error["code"])
    assert message in error["message"]
    assert response.headers["x-request-id"] == error["request_id"]


def test_an_unknown_tenant_and_one_without_a_handler_look_the_same(world: World) -> None:
    """Anonymous clients must not learn which tenants exist (the API hides it too)."""
    with world.client() as http:
        unknown = http.post("/signup", headers={"x-tenant-id": "nobody"}, json={})
        exists = http.post("/signup", headers={"x-tenant-id": "globex"}, json={})
    answers = [(r.status_code, r.json()["error"]["code"],
                r.json()["error"]["message"].replace(tenant, "T"))
               for r, tenant in ((unknown, "nobody"), (exists, "globex"))]
    assert answers[0] == answers[1]


def test_the_handler_sees_the_request_as_sent(world: World) -> None:
    with world.client() as http:
        response = http.post("/echo?x=1&y=%20two", headers={"x-tenant-id": "alpha",
                                                            "X-Custom": "Value"},
                             json={"a": [1, 2.5, None], "b": "ü"})
    echoed = response.json()
    assert 200 == response.status_code
    assert ("POST", "/echo", "x=1&y=%20two") == (echoed["method"], echoed["path"],
                                                  echoed["query"])
    assert {"x-tenant-id": "alpha", "x-custom": "Value", "content-type": "application/json"
            }.items() <= echoed["headers"].items()
    assert (True, {"a": [1, 2.5, None], "b": "ü"}) == (echoed["has_json"], echoed["json"])
    assert response.headers["x-request-id"] == echoed["request_id"]


def test_raw_bodies_and_headers_round_trip(world: World) -> None:
    body = bytes(range(256)) * 3
    with world.client() as http:
        response = http.put("/raw", headers={"x-tenant-id": "alpha",
                                             "content-type": "application/x-thing"},
                            content=body)
    assert (200, body) == (response.status_code, response.content)
    assert ("application/x-thing", "yes") == (response.headers["content-type"],
                                              response.headers["x-echo"])


@pytest.mark.parametrize(("path", "error"), [
    ("/trap", "GuestTrap"),
    ("/spin", "CpuLimitExceeded"),
    ("/step", "AbiViolation"),
    ("/fail", "Oops"),
    ("/bad-status", "AbiViolation"),
    ("/bad-header", "AbiViolation"),
    ("/no-response", "NoResponse"),
])
def test_a_failing_handler_is_a_500_with_a_request_id_and_the_host_goes_on(
        world: World, path: str, error: str) -> None:
    with world.client() as http:
        response = http.get(path, headers={"x-tenant-id": "alpha"})
        body = response.json()["error"]
        assert (500, "fetch_failed") == (response.status_code, body["code"])
        assert response.headers["x-request-id"] == body["request_id"]
        assert body["request_id"] in body["message"] and error in body["message"]
        logged = wait_until(lambda: world.server.find("fetch.failed",
                                                      request_id=body["request_id"]),
                            what="the fetch.failed log line")
        assert ("alpha", error) == (logged["tenant_id"], logged["error"])
        assert 200 == http.get("/echo", headers={"x-tenant-id": "alpha"}).status_code


@pytest.mark.parametrize("value", [b"\x01", b"esc\x1b[31m", b"del\x7f", b"\x1f"])
def test_response_header_values_with_control_characters_are_abi_violations(
        world: World, value: bytes) -> None:
    with world.client() as http:
        response = http.post("/header", headers={"x-tenant-id": "alpha"}, content=value)
        body = response.json()["error"]
        assert (500, "fetch_failed") == (response.status_code, body["code"])
        assert response.headers["x-request-id"] == body["request_id"]
        logged = wait_until(lambda: world.server.find("fetch.failed",
                                                      request_id=body["request_id"]),
                            what="the fetch.failed log line")
        assert "AbiViolation" == logged["error"]
        assert "header 'x-value' must be a string of visible characters" in logged["message"]
        assert 200 == http.get("/echo", headers={"x-tenant-id": "alpha"}).status_code
    assert world.server.find("http.internal_error") is None


@pytest.mark.parametrize("value", ["tab\there", "caf\u00e9 \u2603", "~!\"#"])
def test_response_header_values_may_hold_tabs_and_unicode(world: World, value: str) -> None:
    with world.client() as http:
        response = http.post("/header", headers={"x-tenant-id": "alpha"},
                             content=value.encode())
    assert 200 == response.status_code
    assert value.encode() == response.headers.raw[[k.lower() for k, _ in
                                                   response.headers.raw].index(b"x-value")][1]


def test_fetch_binding_acts_on_its_own_tenant_only(world: World) -> None:
    alpha, beta = {"x-tenant-id": "alpha"}, {"x-tenant-id": "beta"}
    with world.client() as http:
        created = http.post("/create", headers=alpha,
                            json={"workflow": "echo", "params": {"n": 1}, "id": "mine"})
        assert (201, {"id": "mine"}) == (created.status_code, created.json())
        foreign = http.get("/status/mine", headers=beta)
        assert (404, "UnknownInstance") == (foreign.status_code,
                                            foreign.json()["error"]["name"])
        signal = http.post("/event/mine", headers=beta, json={"type": "go"})
        assert 404 == signal.status_code
        # Instance ids are per tenant: beta may have its own "mine".
        assert 201 == http.post("/create", headers=beta,
                                json={"workflow": "echo", "params": 2, "id": "mine"}).status_code
        done = wait_until(lambda: (s := http.get("/status/mine", headers=alpha).json())
                          ["status"] == "complete" and s, what="alpha's instance")
    assert {"n": 1} == done["output"]
    assert 2 == wait_until(lambda: _status(world, "beta", "mine")["output"], what="beta's")


def test_fetch_binding_errors_are_answers_not_crashes(world: World) -> None:
    with world.client() as http:
        unknown = http.post("/create", headers={"x-tenant-id": "alpha"},
                            json={"workflow": "nope"})
        bad_id = http.post("/create", headers={"x-tenant-id": "alpha"},
                           json={"workflow": "echo", "id": "-bad"})
    assert (422, "UnknownWorkflow") == (unknown.status_code, unknown.json()["error"]["name"])
    assert (422, "InvalidInput") == (bad_id.status_code, bad_id.json()["error"]["name"])


def test_a_workflow_calling_a_fetch_import_errors(world: World) -> None:
    with world.client("alpha") as api:
        api.post("/v1/tenants/alpha/instances", json={"workflow": "fetch_import", "id": "fi"})
        status = wait_until(lambda: (s := api.get("/v1/tenants/alpha/instances/fi").json())
                            ["status"] == "errored" and s, what="the instance to error")
    assert {"name": "AbiViolation", "message": "fetch_create_instance is only allowed in a "
            "fetch handler (dwf_fetch)"} == status["error"]


def test_fetch_request_bodies_are_capped_by_the_tenant_limit(world: World) -> None:
    with world.client() as http:
        # 900 bytes: the echoed response must fit under the limit too
        small = http.post("/raw", headers={"x-tenant-id": "beta"}, content=b"x" * 900)
        large = http.post("/raw", headers={"x-tenant-id": "beta"}, content=b"x" * 1025)
        streamed = http.post("/raw", headers={"x-tenant-id": "beta"},
                             content=iter([b"x" * 600, b"x" * 600]))  # chunked: no length
    assert 200 == small.status_code
    for response in (large, streamed):
        assert (413, "payload_too_large") == (response.status_code,
                                              response.json()["error"]["code"])


def test_a_response_over_the_tenant_limit_is_a_500(world: World) -> None:
    with world.client() as http:
        response = http.post("/raw", headers={"x-tenant-id": "beta"}, content=b"x" * 1020)
    assert 500 == response.status_code
    assert "PayloadTooLarge" in response.json()["error"]["message"]


def test_the_api_paths_are_never_the_front_door(world: World) -> None:
    with world.client() as http:
        api = http.get("/v1/tenants", headers={"x-tenant-id": "alpha"})
        doc = http.get("/openapi.json", headers={"x-tenant-id": "alpha"})
    assert (401, "3.1.0") == (api.status_code, doc.json()["openapi"])
