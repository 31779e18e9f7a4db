"""Outbound HTTP from steps (proposal 0003): allowed by rule only, SSRF-safe, limited,
journaled once, with secrets the guest never holds. Against a real server on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import guest_wasm, settle, start
from remote import Remote, remote_fixture  # noqa: F401 - the `remote` fixture

from host import DurableEngine, ManualClock, PoolConfig, Status, TenantId
from host.core.errors import InvalidInput
from host.egress.rules import EgressRule
from host.egress.secrets import KEY_ENV, KEY_FILE_ENV, SecretBox, SecretKeyUnavailable
from host.http.metrics import EngineCollector

SECRET = "sk_live_0123456789abcdef-very-secret"


@pytest.fixture
async def kit(engine: DurableEngine, built: Path) -> TenantId:
    tenant = TenantId("kit")
    await engine.registry.register(tenant, guest_wasm("egresskit"))
    return tenant


async def _allow_remote(engine: DurableEngine, tenant: TenantId, remote: Remote) -> None:
    await engine.egress.change_rules(tenant, allow=[remote.url], private=True)


async def _call(engine: DurableEngine, tenant: TenantId, **params: Any) -> Any:
    return await settle(engine, tenant, await start(engine, tenant, "call", params))


async def test_an_allowed_call_is_journaled_and_not_made_again_on_replay(
        engine: DurableEngine, kit: TenantId, remote: Remote, clock: ManualClock) -> None:
    await _allow_remote(engine, kit, remote)
    status = await _call(engine, kit, url=f"{remote.url}/hello", nap_ms=60_000)
    assert Status.WAITING == status.status  # asleep after the call
    clock.advance(60_000)
    status = await settle(engine, kit, status.instance_id)
    assert (Status.COMPLETE, {"status": 200, "body": "hello", "calls": 1}) == (
        status.status, status.output)
    assert 1 == remote.hits["hello"]  # the wake replayed the call from the journal


async def test_every_url_is_denied_until_a_rule_allows_it(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    status = await _call(engine, kit, url=f"{remote.url}/hello", retries=3)
    assert "EgressDenied" == status.error["name"]
    assert "no egress rule allows http://127.0.0.1:" in status.error["message"]
    # The hint is a command that works as it is: the port, and --private for loopback.
    assert (f"dwf tenant egress TENANT --allow http://127.0.0.1:{remote.port} --private)"
            in status.error["message"])
    assert 1 == status.steps[0]["attempts"]  # not retryable: retrying cannot help
    assert 0 == remote.hits["hello"]
    await engine.egress.change_rules(kit, allow=[f"{remote.url}"], private=True,
                                     deny=[f"http://127.0.0.1:{remote.port}"])
    denied = await _call(engine, kit, url=f"{remote.url}/hello")
    assert "matches the deny rule" in denied.error["message"]


async def test_a_name_that_resolves_to_a_private_address_is_refused(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await engine.egress.change_rules(kit, allow=[f"http://localhost:{remote.port}"])
    status = await _call(engine, kit, url=f"http://localhost:{remote.port}/hello")
    assert "EgressDenied" == status.error["name"]
    assert "localhost resolves only to addresses" in status.error["message"]
    assert "a loopback address" in status.error["message"]
    assert 0 == remote.hits["hello"]


async def test_a_private_ip_literal_needs_its_own_private_rule(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    with pytest.raises(InvalidInput, match="is a loopback address"):
        await engine.egress.change_rules(kit, allow=[remote.url])  # allowed, not private
    # Such a rule stored anyway (before rules were checked so) still lets nothing through.
    await engine.egress.replace_rules(kit, [EgressRule.parse(remote.url, allow=True)])
    status = await _call(engine, kit, url=f"{remote.url}/hello")
    assert "is a loopback address; only an operator can allow it" in status.error["message"]
    for metadata in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/"):
        origin = metadata.rsplit("/", 1)[0].removesuffix("/latest/meta-data")
        await engine.egress.replace_rules(kit, [EgressRule.parse(origin, allow=True)])
        refused = await _call(engine, kit, url=metadata)
        assert "a cloud metadata address" in refused.error["message"], refused.error


async def test_a_redirect_to_a_private_address_is_refused(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.egress.change_rules(kit, allow=["http://localhost:*"])
    # Port 1: the private rule allows 127.0.0.1 on the remote's port only.
    to_name = await _call(engine, kit, url=f"{remote.url}/redirect?to=http://localhost:1/hello")
    assert "localhost resolves only to addresses" in to_name.error["message"]
    to_literal = await _call(engine, kit, url=f"{remote.url}/redirect?to=http://10.1.2.3/x")
    assert "a redirect to" in to_literal.error["message"]
    assert 0 == remote.hits["hello"]
    followed = await _call(engine, kit, url=f"{remote.url}/redirect?to={remote.url}/hello")
    assert {"status": 200, "body": "hello", "calls": 1} == followed.output


async def test_a_response_over_the_tenants_limit_is_payload_too_large(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.registry.set_limits(kit, {"egress_response_bytes": 1000})
    status = await _call(engine, kit, url=f"{remote.url}/big?bytes=5000")
    assert "PayloadTooLarge" == status.error["name"]
    fits = await _call(engine, kit, url=f"{remote.url}/big?bytes=900")
    assert Status.COMPLETE == fits.status


async def test_a_secret_goes_out_but_is_never_stored_logged_or_shown(
        tmp_path: Path, engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.egress.set_secret(kit, "API_KEY", SECRET)
    with structlog.testing.capture_logs() as logs:
        status = await _call(engine, kit, method="POST", url=f"{remote.url}/echo",
                             auth="Bearer {{secret:API_KEY}}",
                             body='{"key": "{{secret:API_KEY}}"}')
    assert f"Bearer {SECRET}" == remote.seen[-1]["headers"]["Authorization"]
    assert f'{{"key": "{SECRET}"}}'.encode() == remote.seen[-1]["body"]
    echoed = json.loads(status.output["body"])  # the journaled step result
    assert "Bearer {{secret:API_KEY}}" == echoed["headers"]["Authorization"]
    assert '{"key": "{{secret:API_KEY}}"}' == echoed["body"]
    assert SECRET not in json.dumps(status.to_dict())
    assert SECRET not in repr(logs)
    for path in tmp_path.iterdir():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert ["API_KEY"] == [s.name for s in await engine.egress.secrets(kit)]


async def test_another_tenant_can_use_neither_the_secrets_nor_the_rules(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.egress.set_secret(kit, "API_KEY", SECRET)
    other = TenantId("other")
    await engine.registry.register(other, guest_wasm("egresskit"))
    status = await _call(engine, other, url=f"{remote.url}/echo", auth="{{secret:API_KEY}}")
    assert "no egress rule allows" in status.error["message"]
    await engine.egress.change_rules(other, allow=[remote.url], private=True)
    status = await _call(engine, other, url=f"{remote.url}/echo", auth="{{secret:API_KEY}}")
    assert "tenant 'other' has no secret 'API_KEY'" in status.error["message"]
    assert 0 == remote.hits["echo"]


async def test_idempotency_keys_are_stable_per_call_and_differ_between_calls(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await _call(engine, kit, method="POST", url=f"{remote.url}/echo", idempotency=True,
                calls=2)
    keys = [seen["headers"]["Idempotency-Key"] for seen in remote.seen]
    assert 2 == len(set(keys)) and all(key.startswith("dwf-") for key in keys)
    await _call(engine, kit, method="POST", url=f"{remote.url}/echo")  # not asked for
    assert "Idempotency-Key" not in remote.seen[-1]["headers"]


async def test_http_fetch_between_steps_is_an_abi_violation(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    status = await settle(engine, kit, await start(engine, kit, "outside",
                                                   {"url": f"{remote.url}/hello"}))
    assert "AbiViolation" == status.error["name"]
    assert "only allowed inside a step body or a fetch handler" in status.error["message"]
    assert 0 == remote.hits["hello"]


async def test_requests_past_the_per_minute_limit_fail_retryably(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.registry.set_limits(kit, {"egress_requests_per_minute": 2})
    status = await _call(engine, kit, url=f"{remote.url}/hello", calls=3)
    assert ("EgressFailed", Status.ERRORED) == (status.error["name"], status.status)
    assert "over the tenant's limit of 2 outbound requests a minute" in status.error["message"]
    assert 2 == remote.hits["hello"]


@pytest.mark.parametrize("most", [1, 2])
async def test_no_more_requests_at_once_than_the_tenants_limit(
        engine: DurableEngine, kit: TenantId, remote: Remote, most: int) -> None:
    await _allow_remote(engine, kit, remote)
    await engine.registry.set_limits(kit, {"egress_concurrent_requests": most,
                                           "max_concurrent_invocations": 3})
    ids = [await start(engine, kit, "call", {"url": f"{remote.url}/slow?ms=300&every=1"})
           for _ in range(3)]
    assert 3 == await engine.run_due()  # all three at once: the limit makes them queue
    for instance in ids:
        status = await engine.instances.status(kit, instance)
        assert (Status.COMPLETE, 200) == (status.status, status.output["status"])
    assert (3, most) == (remote.hits["slow"], remote.most_at_once)


async def test_a_redirect_loop_stops_after_five_redirects(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _allow_remote(engine, kit, remote)
    status = await _call(engine, kit, url=f"{remote.url}/loop")
    assert ("EgressFailed", Status.ERRORED) == (status.error["name"], status.status)
    assert "more than 5 redirects" in status.error["message"]
    assert 6 == remote.hits["loop"]  # the request and the five redirects it followed


async def test_outbound_requests_are_counted_for_metrics(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    await _call(engine, kit, url=f"{remote.url}/hello")  # denied: no rule yet
    await _allow_remote(engine, kit, remote)
    await _call(engine, kit, url=f"{remote.url}/hello", calls=2)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in EngineCollector(engine).collect() for sample in family.samples}
    requests = "dwf_egress_requests_total"
    assert 1 == samples[(requests, (("outcome", "EgressDenied"), ("tenant", "kit")))]
    assert 2 == samples[(requests, (("outcome", "ok"), ("tenant", "kit")))]
    assert 3 == samples[("dwf_egress_request_duration_seconds_count", (("tenant", "kit"),))]


async def test_a_guest_waiting_on_the_network_holds_up_no_other(
        tmp_path: Path, built: Path, testkit_wasm: bytes, remote: Remote) -> None:
    """One guest thread: the waiting guest's thread lends its place to a spare."""
    engine = await DurableEngine.open(tmp_path / "one.sqlite3", clock=ManualClock(),
                                      pool_config=PoolConfig(threads=1))
    try:
        slow, quick = TenantId("slow"), TenantId("quick")
        await engine.registry.register(slow, guest_wasm("egresskit"))
        await engine.registry.register(quick, testkit_wasm)
        await engine.egress.change_rules(slow, allow=[remote.url], private=True)
        waiting = await start(engine, slow, "call", {"url": f"{remote.url}/slow?ms=3000"})
        running = asyncio.create_task(engine.run_due())
        await asyncio.sleep(0.5)  # the slow call is in flight
        other = await start(engine, quick, "steps", {"count": 2})
        finished = await engine.run_due()
        assert (1, Status.COMPLETE, False) == (
            finished, (await engine.instances.status(quick, other)).status, running.done())
        await running
        assert Status.COMPLETE == (await engine.instances.status(slow, waiting)).status
    finally:
        await engine.close()


@pytest.mark.parametrize(("allow", "message"), [
    ("ftp://example.com", "must look like https://api.example.com"),
    ("https://example.com/path", "no path, query or credentials"),
    ("https://ex*ample.com", "a wildcard may only be a leading `*.`"),
    ("http://10.0.0.5:8080", "10.0.0.5 is a private address, which the SSRF guard refuses "
                             "unless the rule allows exactly it as private (add --private"),
    ("http://[::1]", "::1 is a loopback address"),
])
async def test_bad_rules_are_refused_and_change_nothing(
        engine: DurableEngine, kit: TenantId, allow: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        await engine.egress.change_rules(kit, allow=[allow])
    with pytest.raises(InvalidInput, match="only an allow rule for an exact IP address"):
        await engine.egress.change_rules(kit, allow=["https://example.com"], private=True)
    assert [] == await engine.egress.rules(kit)


async def test_a_rule_given_again_replaces_the_one_for_the_same_target(
        engine: DurableEngine, kit: TenantId) -> None:
    await engine.egress.change_rules(kit, allow=["https://api.example.com"])
    await engine.egress.change_rules(kit, allow=["http://10.0.0.5"], private=True)
    await engine.egress.change_rules(kit, allow=["http://10.0.0.5:80"], private=True)
    await engine.egress.change_rules(kit, deny=["https://api.example.com"])
    assert ["allow https://api.example.com:443", "allow http://10.0.0.5:80 private",
            "deny https://api.example.com:443"] == [
        rule.stored() for rule in await engine.egress.rules(kit)]


async def test_a_fetch_handler_may_call_out_too(engine: DurableEngine, kit: TenantId,
                                                remote: Remote) -> None:
    from host.http.fetch import FetchService
    from host.sandbox.fetch import FetchRequest

    service = FetchService(engine)
    target = await service.target(kit)
    body = json.dumps({"url": f"{remote.url}/json"}).encode()
    denied = await service.run(target, FetchRequest(
        "POST", "/", "", {"content-type": "application/json"}, body, "r1"),
        structlog.get_logger())
    assert (502, b"EgressDenied") == (denied.status, denied.body.split(b":")[0])
    await _allow_remote(engine, kit, remote)
    answered = await service.run(target, FetchRequest(
        "POST", "/", "", {"content-type": "application/json"}, body, "r2"),
        structlog.get_logger())
    assert (200, {"n": 1, "tags": ["a", "b"]}) == (answered.status, json.loads(answered.body))


async def test_the_wait_counts_against_the_steps_timeout(
        engine: DurableEngine, kit: TenantId, remote: Remote) -> None:
    """The request (30 s by default) gets no more time than its step has left (0.5 s): the
    attempt fails in about that, not when the server answers 10 s later."""
    await _allow_remote(engine, kit, remote)
    started = asyncio.get_running_loop().time()
    status = await _call(engine, kit, url=f"{remote.url}/slow?ms=10000", step_timeout_ms=500)
    assert asyncio.get_running_loop().time() - started < 5  # ten times the step's budget
    assert status.error["name"] in ("EgressTimeout", "StepTimeout"), status.error


def test_the_secret_key_comes_from_the_environment_first_and_a_wrong_one_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = (base64.urlsafe_b64encode(bytes([n]) * 32).decode() for n in (1, 2))
    key_file = tmp_path / "secret-key"
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(KEY_ENV, first)
    sealed = SecretBox(key_file).seal("acme", "API_KEY", "s3cret")
    assert not key_file.exists()  # the environment's key: no file made beside it
    assert "s3cret" == SecretBox(key_file).open("acme", "API_KEY", sealed)
    with pytest.raises(SecretKeyUnavailable, match="sealed with another key"):
        SecretBox(None).open("globex", "API_KEY", sealed)  # bound to its tenant too
    monkeypatch.setenv(KEY_ENV, second)
    with pytest.raises(SecretKeyUnavailable,
                       match=f"does not open with this host's secret key \\({KEY_ENV}\\)"):
        SecretBox(key_file).open("acme", "API_KEY", sealed)
    monkeypatch.setenv(KEY_ENV, "too-short")
    with pytest.raises(SecretKeyUnavailable, match="must hold 32 random bytes in base64"):
        SecretBox(key_file).seal("acme", "API_KEY", "s3cret")
    monkeypatch.delenv(KEY_ENV)
    SecretBox(key_file).seal("acme", "API_KEY", "s3cret")  # makes the file, 0600
    key_file.chmod(0o640)
    with pytest.raises(SecretKeyUnavailable, match="readable by others: chmod 600 it"):
        SecretBox(key_file).seal("acme", "API_KEY", "s3cret")
