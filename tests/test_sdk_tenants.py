"""The example tenants written in TypeScript: acme's onboarding and signup front door
ported from C (tenants/acme_ts), run side by side with the C originals, and hooli's AI
agent (tenants/hooli).

The two onboardings must journal every path identically (the same steps, results,
attempts and output for the same inputs) and the TypeScript one must replay the golden
history recorded from the C one. The fetch handlers must answer alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.http.fetch import FetchService
from host.sandbox.fetch import FetchRequest, FetchResponse

ACME = {"c": TenantId("acme"), "ts": TenantId("acme-ts")}
GOLDEN = Path(__file__).parent / "golden" / "acme_onboarding_approved.json"


@pytest.fixture
async def acmes(engine: DurableEngine, built: Path) -> dict[str, TenantId]:
    await engine.registry.register(ACME["c"], (built / "tenants" / "acme.wasm").read_bytes())
    await engine.registry.register(ACME["ts"], (built / "tenants" / "acme_ts.wasm").read_bytes())
    return ACME


def _journal(steps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["position"], s["kind"], s["name"], s["occurrence"], s["state"], s["result"],
             s["attempts"], s["error"], s["wake_at_ms"]) for s in steps]


async def _onboard(engine: DurableEngine, tenants: dict[str, TenantId], clock: ManualClock,
                   approval: Any) -> dict[str, Any]:
    """One onboarding per tenant, in lockstep (so their recorded times match): through the
    nudge delay, then `approval` (an event payload, or None to let the wait time out)."""
    ids = {sdk: await start(engine, tenant, "onboarding",
                            {"email": "ada@example.com", "nudge_after_ms": 1000,
                             "approval_timeout_ms": 5000}, id="ada")
           for sdk, tenant in tenants.items()}
    await engine.run_until_idle()
    clock.advance(1000)
    await engine.run_until_idle()
    if approval is None:
        clock.advance(5000)
    else:
        for sdk, tenant in tenants.items():
            await engine.instances.send_event(tenant, ids[sdk], "approval", approval)
    await engine.run_until_idle()
    return {sdk: await engine.instances.status(tenant, ids[sdk])
            for sdk, tenant in tenants.items()}


@pytest.mark.parametrize(("approval", "outcome"), [
    ({"approved": True}, "activated"), ({"approved": "yes"}, "closed"), (None, "escalated"),
])
async def test_the_c_and_typescript_onboardings_journal_identically(
        engine: DurableEngine, acmes: dict[str, TenantId], clock: ManualClock, approval: Any,
        outcome: str) -> None:
    runs = await _onboard(engine, acmes, clock, approval)
    c, ts = runs["c"], runs["ts"]
    assert (Status.COMPLETE, outcome) == (ts.status, ts.output["outcome"])
    assert (c.output, _journal(c.steps)) == (ts.output, _journal(ts.steps))


async def test_the_typescript_onboarding_replays_the_c_golden_history(
        engine: DurableEngine, acmes: dict[str, TenantId], clock: ManualClock) -> None:
    golden = json.loads(GOLDEN.read_text())
    tenant = acmes["ts"]
    instance = await start(engine, tenant, "onboarding", golden["params"], id="golden")
    await settle(engine, tenant, instance)
    clock.advance(1000)
    await settle(engine, tenant, instance)
    await engine.instances.send_event(tenant, instance, "approval", {"approved": True})
    status = await settle(engine, tenant, instance)
    assert golden["output"] == status.output
    assert golden["journal"] == [{"kind": s["kind"], "name": s["name"], "state": s["state"],
                                  "result": s["result"]} for s in status.steps]


async def _fetch(service: FetchService, tenant: TenantId, method: str, path: str,
                 body: Any = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if body is not None else {}
    response = await service.run(await service.target(tenant),
                                 FetchRequest(method, path, "", headers, raw, "req-1"),
                                 structlog.get_logger())
    assert isinstance(response, FetchResponse), response
    return response.status, json.loads(response.body)


async def test_the_c_and_typescript_signup_handlers_answer_alike(
        engine: DurableEngine, acmes: dict[str, TenantId]) -> None:
    service = FetchService(engine)
    answers = {}
    for sdk, tenant in acmes.items():
        signup = {"email": "bo@example.com", "id": "signup-bo", "nudge_after_ms": 0}
        created = await _fetch(service, tenant, "POST", "/signup", signup)
        again = await _fetch(service, tenant, "POST", "/signup", signup)
        await engine.run_until_idle()
        waiting = await _fetch(service, tenant, "GET", "/status/signup-bo")
        approved = await _fetch(service, tenant, "POST", "/approve/signup-bo", {"approved": True})
        await engine.run_until_idle()
        done = await _fetch(service, tenant, "GET", "/status/signup-bo")
        unknown = await _fetch(service, tenant, "GET", "/status/nobody")
        lost = await _fetch(service, tenant, "GET", "/nowhere")
        bad = await _fetch(service, tenant, "POST", "/signup", {"id": "x"})
        answers[sdk] = [created, (again[0], again[1]["error"]["code"]),
                        (waiting[0], waiting[1]["status"]), approved,
                        (done[0], done[1]["status"], done[1]["output"]),
                        (unknown[0], unknown[1]["error"]["code"]), lost, bad]
    assert (201, {"id": "signup-bo", "status_url": "/status/signup-bo"}) == answers["ts"][0]
    assert (200, "complete", {"account_id": "acct-7ed21d9f", "approved": True,
                              "outcome": "activated"}) == answers["ts"][4]
    assert answers["c"] == answers["ts"]


# ---- hooli: an AI agent, approvals between tool calls, a child workflow per call ----------

HOOLI = TenantId("hooli")


@pytest.fixture
async def hooli(engine: DurableEngine, built: Path) -> TenantId:
    await engine.registry.register(HOOLI, (built / "tenants" / "hooli.wasm").read_bytes())
    return HOOLI


async def _approve(engine: DurableEngine, tenant: TenantId, instance: str,
                   approved: bool) -> Any:
    await engine.instances.send_event(tenant, instance, "approval", {"approved": approved})
    return await settle(engine, tenant, instance)


async def test_the_agent_runs_approved_tool_calls_as_children_and_skips_rejected_ones(
        engine: DurableEngine, hooli: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, hooli, "agent", {"goal": "Compare solar vendors.",
                                                    "fail_attempts": 1}, id="agent-1")
    status = await settle(engine, hooli, instance)
    assert (Status.WAITING, "approval") == (status.status, status.waiting_event_type)
    assert ["web_search", "read_page", "draft_email"] == [c["tool"]
                                                        for c in status.steps[0]["result"]]

    status = await _approve(engine, hooli, instance, True)
    # The child's tool failed its first attempt: it waits to retry, the agent waits for it.
    child = await engine.instances.status(hooli, "agent-1-call-0")
    assert (Status.WAITING, "agent-1", 1) == (child.status, child.parent_instance_id,
                                              child.steps[0]["attempts"])
    clock.advance(1000)
    status = await settle(engine, hooli, instance)
    assert (Status.WAITING, "approval") == (status.status, status.waiting_event_type)
    await _approve(engine, hooli, instance, False)
    await _approve(engine, hooli, instance, True)
    clock.advance(1000)
    status = await settle(engine, hooli, instance)

    assert Status.COMPLETE is status.status, status.error
    output = status.output
    assert ("finished", "2 of 3 tool calls done (web_search, draft_email)") == (
        output["outcome"], output["summary"])
    assert [("web_search", "done"), ("read_page", "rejected"), ("draft_email", "done")] == [
        (r["tool"], r["status"]) for r in output["results"]]
    assert output["results"][0]["output"]["hits"][0].startswith("https://example.com/")
    assert [("do", "plan"), ("event", "approve-0"), ("create", "tool_call"),
            ("event", "result-0"), ("event", "approve-1"), ("event", "approve-2"),
            ("create", "tool_call"), ("event", "result-2"), ("do", "summarize")] == [
        (s["kind"], s["name"]) for s in status.steps]
    children = [await engine.instances.status(hooli, f"agent-1-call-{i}") for i in (0, 2)]
    assert [(Status.COMPLETE, 2)] * 2 == [(c.status, c.steps[0]["attempts"]) for c in children]


async def test_an_unanswered_approval_ends_the_agent(engine: DurableEngine, hooli: TenantId,
                                                     clock: ManualClock) -> None:
    instance = await start(engine, hooli, "agent", {"goal": "x", "approval_timeout": "1 hour",
                                                    "plan": [{"tool": "summarize",
                                                              "input": "notes"}]})
    await settle(engine, hooli, instance)
    clock.advance(3_600_000)
    status = await settle(engine, hooli, instance)
    assert (Status.COMPLETE, "expired", []) == (status.status, status.output["outcome"],
                                                status.output["results"])


async def test_the_agent_refuses_a_malformed_plan_without_retrying(
        engine: DurableEngine, hooli: TenantId) -> None:
    status = await settle(engine, hooli, await start(engine, hooli, "agent", {
        "goal": "x", "plan": [{"tool": "rm -rf", "input": "/"}]}))
    assert (Status.ERRORED, "InvalidPlan", 1) == (status.status, status.error["name"],
                                                 status.steps[0]["attempts"])


async def test_the_agents_front_door_starts_and_steers_it(engine: DurableEngine,
                                                          hooli: TenantId) -> None:
    service = FetchService(engine)
    created = await _fetch(service, hooli, "POST", "/agents",
                           {"goal": "Plan the offsite", "id": "offsite",
                            "plan": [{"tool": "draft_email", "input": "agenda"}]})
    assert (201, {"id": "offsite"}) == created
    await engine.run_until_idle()
    assert "waiting" == (await _fetch(service, hooli, "GET", "/agents/offsite"))[1]["status"]
    response = await service.run(await service.target(hooli), FetchRequest(
        "POST", "/agents/offsite/approval", "", {"content-type": "application/json"},
        b'{"approved": true}', "r"), structlog.get_logger())
    assert isinstance(response, FetchResponse) and 202 == response.status
    await engine.run_until_idle()
    done = (await _fetch(service, hooli, "GET", "/agents/offsite"))[1]
    assert ("complete", "1 of 1 tool calls done (draft_email)") == (done["status"],
                                                                   done["output"]["summary"])
    missing = await _fetch(service, hooli, "GET", "/agents/nobody")
    assert (404, "UnknownInstance") == (missing[0], missing[1]["error"]["code"])


async def test_console_log_reaches_the_host_log_with_the_instance_and_step(
        engine: DurableEngine, acmes: dict[str, TenantId], clock: ManualClock) -> None:
    with structlog.testing.capture_logs() as logs:
        await _onboard(engine, acmes, clock, {"approved": True})
    lines = {sdk: [(e["log_level"], e["message"], e.get("step")) for e in logs
                   if e["event"] == "guest.log" and e.get("tenant_id") == tenant]
             for sdk, tenant in acmes.items()}
    assert ("info", "accounts: created acct-bef5cfd2 for ada@example.com", "create-account") \
        in lines["ts"]
    assert lines["c"] == lines["ts"]  # the port logs what the original logs, where it does
