"""The management API under /v1, driven over loopback against a real `dwf serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from serving import World, wait_until

from host import DurableEngine
from host.http import openapi
from host.http.server import create_app
from host.http.tokens import TokenStore


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("api"), built)
    with world.server:
        yield world


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _wait_status(api: httpx.Client, url: str, wanted: str, event: str | None = None) -> dict:
    """Wait for a status (and, with `event`, for a wait on that event type, not a sleep)."""
    def reached() -> dict | None:
        status = api.get(url).json()
        if status["status"] != wanted or (event and status["waiting_event_type"] != event):
            return None
        return status
    return wait_until(reached, what=f"{url} to be {wanted}")


# -- OpenAPI -------------------------------------------------------------------------

async def test_openapi_is_valid_and_names_every_route(engine: DurableEngine) -> None:
    document = openapi.document()
    validate(document)
    app = create_app(engine, TokenStore(engine.store))
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        # aiohttp adds HEAD to every GET; /ui is the dashboard's HTML, not the API.
        if route.method != "HEAD" and path.partition("/")[2].partition("/")[0] != "ui":
            served.add((route.method.lower(), path))
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item}
    assert served == documented


def test_openapi_json_is_served_without_a_token(world: World) -> None:
    with world.client() as http:
        response = http.get("/openapi.json")
        health = http.get("/v1/health")
    assert (200, openapi.document()) == (response.status_code, response.json())
    assert (200, {"status": "ok"}) == (health.status_code, health.json())


# -- authentication ------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "Bearer dwf_x_y",
    "Bearer dwf_000000000000_wrongsecret",
])
def test_requests_without_a_valid_token_are_401(world: World, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with world.client() as http:
        response = http.get("/v1/tenants/alpha/instances", headers=headers)
    assert (401, "unauthorized") == _error(response)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_right_id_with_a_wrong_secret_is_401(world: World) -> None:
    forged = world.tokens["alpha"][:-4] + "AAAA"
    with world.client() as http:
        response = http.get("/v1/tenants/alpha", headers={"Authorization": f"Bearer {forged}"})
    assert (401, "unauthorized") == _error(response)


def test_a_tenant_token_gets_404_for_another_tenant(world: World) -> None:
    with world.client("admin") as admin:
        assert 201 == admin.post("/v1/tenants/beta/instances",
                                 json={"workflow": "echo", "id": "b-1"}).status_code
    with world.client("alpha") as alpha:
        answers = [
            alpha.get("/v1/tenants/beta/instances/b-1"),
            alpha.get("/v1/tenants/beta/instances"),
            alpha.get("/v1/tenants/beta"),
            alpha.post("/v1/tenants/beta/instances", json={"workflow": "echo"}),
            alpha.post("/v1/tenants/beta/instances/b-1/events", json={"type": "x"}),
            alpha.post("/v1/tenants/beta/instances/b-1/terminate"),
            alpha.post("/v1/tenants/beta/modules", content=b"\0asm"),
        ]
        nobody = alpha.get("/v1/tenants/nobody/instances/b-1")
        # alpha's own namespace has no b-1 either: ids are per tenant
        own = alpha.get("/v1/tenants/alpha/instances/b-1")
        listed = alpha.get("/v1/tenants").json()["tenants"]
    for response in answers:
        assert (404, "not_found") == _error(response), response.request.url
    # Another tenant looks exactly like no tenant at all.
    assert nobody.json()["error"]["message"] == answers[0].json()["error"]["message"].replace(
        "beta", "nobody")
    assert (404, "not_found") == _error(own)
    assert ["alpha"] == [t["tenant_id"] for t in listed]
    with world.client("admin") as admin:
        assert _wait_status(admin, "/v1/tenants/beta/instances/b-1", "complete")
        assert {"acme", "alpha", "beta", "globex"} <= {
            t["tenant_id"] for t in admin.get("/v1/tenants").json()["tenants"]}


# -- tenants and modules ---------------------------------------------------------------

def test_tenant_and_module_views(world: World) -> None:
    with world.client("acme") as api:
        tenant = api.get("/v1/tenants/acme").json()
        modules = api.get("/v1/tenants/acme/modules").json()["modules"]
    assert ("acme", True, ["onboarding"]) == (tenant["tenant_id"], tenant["active"]["fetch"],
                                              tenant["active"]["workflows"])
    assert 1048576 == tenant["limits"]["max_payload_bytes"]
    assert [1] == [m["version"] for m in modules]


def test_a_tenant_token_deploys_its_own_modules(world: World, built: Path) -> None:
    testkit = (built / "guests" / "testkit.wasm").read_bytes()
    fetchkit = (built / "guests" / "fetchkit.wasm").read_bytes()
    with world.client("beta") as api:
        deployed = api.post("/v1/tenants/beta/modules", content=testkit,
                            headers={"content-type": "application/wasm"})
        assert 201 == deployed.status_code, deployed.text
        assert (2, False, True) == (deployed.json()["version"], deployed.json()["fetch"],
                                    deployed.json()["active"])
        # testkit has no fetch handler: beta's front door closes...
        with world.client() as http:
            assert (404, "no_fetch_handler") == _error(http.get("/echo",
                                                                headers={"x-tenant-id": "beta"}))
        # ...and opens again with the next deploy.
        assert 201 == api.post("/v1/tenants/beta/modules", content=fetchkit).status_code
        rejected = api.post("/v1/tenants/beta/modules", content=b"#!/bin/sh\n")
    assert (422, "invalid_module") == _error(rejected)
    assert "not a WebAssembly module" in rejected.json()["error"]["message"]


# -- instances -----------------------------------------------------------------------

def test_instance_lifecycle(world: World) -> None:
    url = "/v1/tenants/acme/instances/life-1"
    with world.client("acme") as api:
        created = api.post("/v1/tenants/acme/instances", json={
            "workflow": "onboarding", "id": "life-1",
            "params": {"email": "cy@example.com", "nudge_after_ms": 0}})
        assert (201, "life-1", url) == (created.status_code, created.json()["id"],
                                        created.headers["location"])
        waiting = _wait_status(api, url, "waiting", "approval")
        assert "send-nudge-email" in [s["name"] for s in waiting["steps"]]

        assert {"id": "life-1", "status": "paused"} == api.post(f"{url}/pause").json()
        assert (409, "invalid_state") == _error(api.post(f"{url}/pause"))
        assert "queued" == api.post(f"{url}/resume").json()["status"]
        _wait_status(api, url, "waiting")

        sent = api.post(f"{url}/events", json={"type": "approval",
                                               "payload": {"approved": False}})
        assert (202, {"sent": True, "id": "life-1", "type": "approval"}) == (
            sent.status_code, sent.json())
        assert "closed" == _wait_status(api, url, "complete")["output"]["outcome"]

        assert "queued" == api.post(f"{url}/restart").json()["status"]
        restarted = _wait_status(api, url, "waiting")  # the journal started over
        assert (None, False) == (restarted["output"], "close-account" in [
            s["name"] for s in restarted["steps"]])
        assert "terminated" == api.post(f"{url}/terminate").json()["status"]
        assert (409, "invalid_state") == _error(api.post(f"{url}/events",
                                                         json={"type": "approval"}))
        listed = api.get("/v1/tenants/acme/instances", params={"status": "terminated"})
    assert ["life-1"] == [i["id"] for i in listed.json()["instances"]]
    assert "steps" not in listed.json()["instances"][0]


def test_an_instance_shows_every_attempt_of_a_retried_step(world: World) -> None:
    with world.client("admin") as api:
        url = world.run_flaky(api, "retried-1", fail_attempts=2, delay_ms=20,
                              backoff="exponential")
        flaky = _wait_status(api, url, "complete")["steps"][0]
    history = flaky["attempt_history"]
    assert [(1, "error", 20), (2, "error", 40), (3, "ok", None)] == [
        (a["attempt"], a["state"], a["retry_delay_ms"]) for a in history]
    assert {"name": "Flaky", "message": "attempt 1 fails"} == history[0]["error"]
    assert all(a["started_at_ms"] <= a["finished_at_ms"] for a in history)
    assert history[1]["started_at_ms"] >= history[0]["finished_at_ms"] + 20


def test_batch_create_is_all_or_nothing(world: World) -> None:
    with world.client("alpha") as api:
        good = api.post("/v1/tenants/alpha/instances/batch", json={"instances": [
            {"workflow": "echo", "id": "batch-1", "params": 1},
            {"workflow": "echo", "id": "batch-2", "params": 2}]})
        bad = api.post("/v1/tenants/alpha/instances/batch", json={"instances": [
            {"workflow": "echo", "id": "batch-3"}, {"workflow": "nope", "id": "batch-4"}]})
        assert (201, {"ids": ["batch-1", "batch-2"]}) == (good.status_code, good.json())
        assert (404, "not_found") == _error(bad)
        assert (404, "not_found") == _error(api.get("/v1/tenants/alpha/instances/batch-3"))
        assert 2 == _wait_status(api, "/v1/tenants/alpha/instances/batch-2",
                                 "complete")["output"]


def test_list_filters_and_limits(world: World) -> None:
    with world.client("alpha") as api:
        for n in range(3):
            api.post("/v1/tenants/alpha/instances", json={"workflow": "echo",
                                                          "id": f"list-{n}"})
        listed = api.get("/v1/tenants/alpha/instances", params={"limit": "2"}).json()
        bad_status = api.get("/v1/tenants/alpha/instances", params={"status": "sleeping"})
        bad_limit = api.get("/v1/tenants/alpha/instances", params={"limit": "0"})
    assert 2 == len(listed["instances"])
    assert (400, "invalid_input") == _error(bad_status)
    assert "'sleeping'" in bad_status.json()["error"]["message"]
    assert (400, "invalid_input") == _error(bad_limit)


@pytest.mark.parametrize(("body", "expect", "message"), [
    (b"{not json", (400, "invalid_json"), "not valid JSON: Expecting property name enclosed "
                                          "in double quotes at line 1 column 2"),
    (b"[1, 2]", (400, "invalid_json"), "must be a JSON object, not list"),
    (b"", (400, "invalid_json"), "the request body is empty"),
    (b"\xff\xfe", (400, "invalid_json"), "not UTF-8"),
    (b'{"params": 1}', (400, "invalid_input"), "needs a string `workflow`"),
    (b'{"workflow": "echo", "wat": 1}', (400, "invalid_input"), "unknown fields: wat"),
    (b'{"workflow": "echo", "id": 5}', (400, "invalid_input"), "`id` must be a string"),
    (b'{"workflow": "echo", "id": "-x"}', (400, "invalid_input"), "invalid instance id"),
    (b'{"workflow": "nope"}', (404, "not_found"), "has no workflow 'nope'"),
])
def test_bad_request_bodies_get_a_specific_error(world: World, body: bytes,
                                                 expect: tuple[int, str], message: str) -> None:
    with world.client("alpha") as api:
        response = api.post("/v1/tenants/alpha/instances", content=body,
                            headers={"content-type": "application/json"})
    assert expect == _error(response)
    assert message in response.json()["error"]["message"]


def test_duplicate_ids_are_409(world: World) -> None:
    with world.client("alpha") as api:
        api.post("/v1/tenants/alpha/instances", json={"workflow": "echo", "id": "dup"})
        again = api.post("/v1/tenants/alpha/instances", json={"workflow": "echo", "id": "dup"})
    assert (409, "conflict") == _error(again)


def test_request_bodies_are_capped(world: World) -> None:
    big = b'{"workflow": "echo", "params": "' + b"x" * (1024 * 1024) + b'"}'
    with world.client("alpha") as api:
        declared = api.post("/v1/tenants/alpha/instances", content=big)
        streamed = api.post("/v1/tenants/alpha/instances",
                            content=iter([big[:600_000], big[600_000:]]))
        after = api.get("/v1/tenants/alpha")  # a fresh connection still works
    for response in (declared, streamed):
        assert (413, "payload_too_large") == _error(response)
        assert "the limit is 1048576 bytes" in response.json()["error"]["message"]
    assert 200 == after.status_code


def test_unknown_routes_and_methods(world: World) -> None:
    with world.client("alpha") as api:
        missing = api.get("/v1/tenants/alpha/things")
        wrong = api.delete("/v1/tenants/alpha/instances")
    assert (404, "not_found") == _error(missing)
    assert (405, "method_not_allowed") == _error(wrong)
    assert {"GET", "POST"} <= set(re.split(r",\s*", wrong.headers["allow"]))


def test_every_request_is_logged_with_its_request_id(world: World) -> None:
    with world.client("alpha") as api:
        response = api.get("/v1/tenants/alpha/instances/nope")
    request_id = response.headers["x-request-id"]
    line = wait_until(lambda: world.server.find("http.request", request_id=request_id),
                      what="the request's log line")
    assert (404, "alpha", "GET") == (line["status"], line["tenant_id"], line["method"])
    assert world.tokens["alpha"].split("_")[1] == line["token_id"]


# -- capabilities: egress rules and secrets ------------------------------------------------

def test_egress_rules_are_read_by_the_tenant_and_changed_only_by_an_admin(
        world: World) -> None:
    url = "/v1/tenants/alpha/egress"
    rules = {"rules": [{"action": "allow", "rule": "https://*.example.com"},
                       {"action": "allow", "rule": "http://10.0.0.5:8080", "private": True},
                       {"action": "deny", "rule": "https://evil.example.com"}]}
    with world.client("alpha") as tenant, world.client("admin") as admin, \
            world.client("beta") as other:
        assert (200, {"rules": []}) == (tenant.get(url).status_code, tenant.get(url).json())
        assert (403, "forbidden") == _error(tenant.put(url, json=rules))
        changed = admin.put(url, json=rules)
        assert 200 == changed.status_code
        assert ["https://*.example.com:443", "http://10.0.0.5:8080",
                "https://evil.example.com:443"] == [r["rule"] for r in tenant.get(url).json()[
                    "rules"]]
        assert (404, "not_found") == _error(other.get(url))
        bad = admin.put(url, json={"rules": [{"action": "allow", "rule": "ftp://x"}]})
        assert (400, "invalid_input") == _error(bad)
        private = admin.put(url, json={"rules": [{"action": "allow", "private": True,
                                                  "rule": "https://example.com"}]})
        assert "only an allow rule for an exact IP address" in private.json()["error"][
            "message"]
        assert 3 == len(tenant.get(url).json()["rules"])  # refused changes changed nothing
        assert 200 == admin.put(url, json={"rules": []}).status_code


def test_a_tenant_sets_and_deletes_its_secrets_but_never_reads_a_value(world: World) -> None:
    with world.client("alpha") as tenant, world.client("beta") as other:
        put = tenant.put("/v1/tenants/alpha/secrets/API_KEY", json={"value": "v-123456"})
        assert (200, {"name": "API_KEY", "set": True}) == (put.status_code, put.json())
        listed = tenant.get("/v1/tenants/alpha/secrets")
        assert ["API_KEY"] == [s["name"] for s in listed.json()["secrets"]]
        assert "v-123456" not in listed.text
        assert 405 == tenant.get("/v1/tenants/alpha/secrets/API_KEY").status_code
        assert (404, "not_found") == _error(other.get("/v1/tenants/alpha/secrets"))
        assert (400, "invalid_input") == _error(tenant.put(
            "/v1/tenants/alpha/secrets/bad-name", json={"value": "x"}))
        assert (400, "invalid_input") == _error(tenant.put(
            "/v1/tenants/alpha/secrets/K", json={"value": 5}))
        assert 200 == tenant.delete("/v1/tenants/alpha/secrets/API_KEY").status_code
        assert (404, "not_found") == _error(tenant.delete("/v1/tenants/alpha/secrets/API_KEY"))
