"""Outbound HTTP (proposal 0003) from both SDKs: C's dwf_http_fetch and TypeScript's fetch(),
the same egresskit workflows (tests/guests/egresskit.c, tests/guests/js/egresskit.ts)
against a real server on loopback. The host's side (rules, SSRF, secrets, limits) is
tested once, in test_egress.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import run_workflow, settle, start
from remote import Remote, remote_fixture  # noqa: F401 - the `remote` fixture
from sdk_guests import SDKS, first_line, sdk_guest

from host import DurableEngine, ManualClock, Status, TenantId
from host.http.fetch import FetchService
from host.sandbox.fetch import FetchRequest, FetchResponse


@pytest.fixture(params=SDKS)
async def kit(request: pytest.FixtureRequest, engine: DurableEngine, built: Path,
              remote: Remote) -> TenantId:
    tenant = TenantId(f"egress-{request.param}")
    await engine.registry.register(tenant, sdk_guest(request.param, "egresskit"))
    await engine.egress.change_rules(tenant, allow=[remote.url], private=True)
    return tenant


async def _call(engine: DurableEngine, tenant: TenantId, **params: Any) -> Any:
    return await settle(engine, tenant, await start(engine, tenant, "call", params))


async def test_a_call_in_a_step_is_journaled_and_not_made_again_on_replay(
        engine: DurableEngine, kit: TenantId, remote: Remote, clock: ManualClock) -> None:
    status = await _call(engine, kit, url=f"{remote.url}/hello", nap_ms=60_000)
    assert Status.WAITING == status.status
    clock.advance(60_000)
    status = await settle(engine, kit, status.instance_id)
    assert (Status.COMPLETE, {"status": 200, "body": "hello", "calls": 1}) == (
        status.status, status.output)
    assert 1 == remote.hits["hello"]


async def test_a_denied_url_fails_the_step_for_good(engine: DurableEngine, kit: TenantId,
                                                    remote: Remote) -> None:
    await engine.egress.change_rules(kit, clear=True)
    status = await _call(engine, kit, url=f"{remote.url}/hello", retries=3)
    assert ("EgressDenied", 1) == (status.error["name"], status.steps[0]["attempts"])
    assert first_line(status.error["message"]).startswith("no egress rule allows http://127.0.0.1:")
    assert 0 == remote.hits["hello"]


async def test_a_timeout_is_retried_per_the_steps_config(
        engine: DurableEngine, kit: TenantId, remote: Remote, clock: ManualClock) -> None:
    instance = await start(engine, kit, "call", {"url": f"{remote.url}/slow?ms=2000",
                                                "timeout_ms": 300, "retries": 2})
    first = await settle(engine, kit, instance)
    assert (Status.WAITING, "EgressTimeout") == (first.status, first.steps[0]["error"]["name"])
    clock.advance(10)
    done = await settle(engine, kit, instance)
    assert (Status.COMPLETE, "slow", 2) == (done.status, done.output["body"],
                                            done.steps[0]["attempts"])


async def test_a_fetch_handler_calls_out(engine: DurableEngine, kit: TenantId,
                                         remote: Remote) -> None:
    service = FetchService(engine)
    response = await service.run(await service.target(kit), FetchRequest(
        "POST", "/", "", {"content-type": "application/json"},
        json.dumps({"url": f"{remote.url}/hello"}).encode(), "r"), structlog.get_logger())
    assert isinstance(response, FetchResponse)
    assert (200, b"hello") == (response.status, response.body)


async def test_typescript_fetch_between_steps_is_refused_with_the_reason(
        engine: DurableEngine, built: Path, remote: Remote) -> None:
    tenant = TenantId("egress-outside")
    await engine.registry.register(tenant, sdk_guest("ts", "egresskit"))
    await engine.egress.change_rules(tenant, allow=[remote.url], private=True)
    status = await run_workflow(engine, tenant, "outside", {"url": f"{remote.url}/hello"})
    assert ("Error", "fetch() is only available inside a step body (step.do: its result is "
            "journaled, so a replay never fetches again) or in a fetch handler") == (
        status.error["name"], first_line(status.error["message"]))
    assert 0 == remote.hits["hello"]
