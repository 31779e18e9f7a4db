"""What the TypeScript SDK adds of its own, beyond the shared behaviour suite
(test_sdk_conformance.py): journaled Date and Math.random, durations as strings,
concurrent steps, stack traces in the tenant's .ts lines, value conversion, the fetch
handler on Request/Response/URL, type-checking, and `dwf build` for a tenant elsewhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import ROOT
from helpers import run_workflow, settle, start, step_names
from sdk_guests import first_line, sdk_guest
from test_readme import billing_runs_as_described

from host import DurableEngine, InvalidModule, ManualClock, Status, TenantId
from host.http.fetch import FetchService
from host.sandbox.fetch import FetchRequest, FetchResponse

JS_DIR = ROOT / "guest_sdk" / "js"
TSC = JS_DIR / "node_modules" / ".bin" / "tsc"
FEATURES_TS = ROOT / "tests" / "guests" / "js" / "features.ts"


@pytest.fixture
async def features(engine: DurableEngine, built: Path) -> TenantId:
    tenant = TenantId("features")
    await engine.registry.register(tenant, sdk_guest("ts", "features"))
    return tenant


def _kinds(status: Any) -> list[tuple[str, str]]:
    return [(s["kind"], s["name"]) for s in status.steps]


# ---- determinism: the clock and entropy come from the journal -------------------------

async def test_date_and_math_random_are_journaled_and_replayed(
        engine: DurableEngine, features: TenantId, clock: ManualClock) -> None:
    started = clock.now_ms()
    instance = await start(engine, features, "clock")
    first = await settle(engine, features, instance)
    assert Status.WAITING is first.status
    clock.advance(1000)
    status = await settle(engine, features, instance)  # replays everything before the sleep
    assert [("now", "Date.now"), ("now", "Date.now"), ("random", "Math.random"),
            ("do", "inside"), ("sleep", "rest"), ("now", "Date.now")] == _kinds(status)
    before, in_step, after = (status.output[k] for k in ("before", "inStep", "after"))
    assert (started, started) == (before["now"], before["date"])
    assert 0 <= before["random"] < 1 and before["random"] != after["random"]
    # In a step body (no journaled calls there) the clock is the latest journaled time.
    assert in_step == status.steps[3]["result"] and started == in_step["now"]
    assert started + 1000 == after["now"]
    assert first.steps[:4] == status.steps[:4]


async def test_durations_can_be_written_as_strings(engine: DurableEngine, features: TenantId,
                                                   clock: ManualClock) -> None:
    instance = await start(engine, features, "durations")
    for delay in (2000, 4000, 60_000):  # linear retries of "2 seconds", then "1 minute"
        status = await settle(engine, features, instance)
        assert (Status.WAITING, clock.now_ms() + delay) == (status.status, status.wake_at_ms)
        clock.advance(delay)
    status = await settle(engine, features, instance)
    assert (Status.COMPLETE, 3) == (status.status, status.output)


async def test_steps_started_together_journal_in_call_order(engine: DurableEngine,
                                                            features: TenantId) -> None:
    status = await run_workflow(engine, features, "parallel")
    assert (Status.COMPLETE, ["A", "B", "C"]) == (status.status, status.output)
    assert [("do", "a", "ok"), ("do", "b", "ok"), ("do", "c", "ok")] == step_names(status)


async def test_a_durable_call_nested_in_a_step_body_fails_with_the_reason(
        engine: DurableEngine, features: TenantId) -> None:
    status = await run_workflow(engine, features, "nested")
    assert (Status.ERRORED, "PendingForever") == (status.status, status.error["name"])
    assert 'the body of step "outer" waits for a durable call' in status.error["message"]
    assert "durable calls cannot nest in a step body" in status.error["message"]


async def test_a_promise_nothing_can_settle_fails_clearly(engine: DurableEngine,
                                                          features: TenantId) -> None:
    status = await run_workflow(engine, features, "stuck")
    assert ("PendingForever", "the code waits on a promise nothing can settle: the sandbox "
            "has no timers or I/O; use step.sleep() to wait and step.do() for side effects") \
        == (status.error["name"], status.error["message"])


# ---- errors ------------------------------------------------------------------------

async def test_an_uncaught_error_fails_with_its_name_message_and_ts_stack(
        engine: DurableEngine, features: TenantId) -> None:
    status = await run_workflow(engine, features, "thrower")
    assert (Status.ERRORED, "TypeError") == (status.status, status.error["name"])
    message = status.error["message"]
    throw_line = FEATURES_TS.read_text().splitlines().index(
        '  throw new TypeError("the widget is broken"); // THROW-LINE') + 1
    assert "the widget is broken" == first_line(message)
    frames = message.splitlines()[1:]
    assert re.fullmatch(rf"\s+at explode \(features\.ts:{throw_line}:\d+\)", frames[0]), frames
    assert any(re.fullmatch(r"\s+at run \(features\.ts:\d+:\d+\)", f) for f in frames), frames
    assert not any("bundle.js" in f or "dynamic-workflows/" in f for f in frames), frames


async def test_a_non_retryable_error_keeps_its_own_name(engine: DurableEngine,
                                                        features: TenantId) -> None:
    status = await run_workflow(engine, features, "fatal")
    assert ("PaymentDeclined", "card declined", 1) == (
        status.error["name"], first_line(status.error["message"]), status.steps[0]["attempts"])


async def test_step_results_are_journaled_as_json_like_values(engine: DurableEngine,
                                                              features: TenantId) -> None:
    status = await run_workflow(engine, features, "values")
    expected = {"int": 42, "float": 1.5, "big": 2**60, "bytes": {"$base64": "AQID"},
                "text": "héllo", "date": "1970-01-01T00:00:00.000Z", "list": [1, None, "x"],
                "map": {"k": 1}, "nested": {"deep": [True, None]}}
    assert expected == status.steps[0]["result"]
    assert {"result": {**expected, "bytes": b"\x01\x02\x03"},
            "types": {"big": "bigint", "bytes": True}} == status.output


async def test_a_result_that_cannot_be_journaled_fails_the_step_for_good(
        engine: DurableEngine, features: TenantId) -> None:
    status = await run_workflow(engine, features, "unjournaled")
    assert ("TypeError", 1) == (status.error["name"], status.steps[0]["attempts"])
    assert first_line(status.error["message"]).startswith(
        "the step's result cannot be journaled: cannot serialize a function")


# ---- fetch handlers ------------------------------------------------------------------

async def _fetch(service: FetchService, tenant: TenantId, method: str, path: str, query: str = "",
                 headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    return await service.run(await service.target(tenant),
                             FetchRequest(method, path, query, headers or {}, body, "req-7"),
                             structlog.get_logger())


async def test_the_fetch_handler_sees_a_request_and_answers_a_response(
        engine: DurableEngine, features: TenantId, clock: ManualClock) -> None:
    service = FetchService(engine)
    echo = await _fetch(service, features, "POST", "/echo", "q=a%20b",
                        {"host": "acme.test", "x-thing": "yes"}, b"payload")
    assert isinstance(echo, FetchResponse)
    assert (201, "features", {"method": "POST", "path": "/echo", "q": "a b", "header": "yes",
                              "body": "payload", "now": clock.now_ms()}) == (
        echo.status, echo.headers["x-handled-by"], json.loads(echo.body))
    started = await _fetch(service, features, "POST", "/start", "id=from-fetch")
    assert {"id": "from-fetch", "status": "queued"} == json.loads(started.body)
    await engine.run_until_idle()
    assert ["A", "B", "C"] == (await engine.instances.status(features, "from-fetch")).output
    missing = await _fetch(service, features, "GET", "/nowhere")
    assert (404, b"not found") == (missing.status, missing.body)


async def test_a_throwing_fetch_handler_is_a_500_with_the_error(
        engine: DurableEngine, features: TenantId) -> None:
    outcome = await _fetch(FetchService(engine), features, "GET", "/throw")
    assert not isinstance(outcome, FetchResponse)
    assert "RangeError" in str(outcome) and "no such thing" in str(outcome)


async def test_only_a_module_with_a_default_export_has_a_fetch_handler(
        engine: DurableEngine, features: TenantId, built: Path) -> None:
    without = await engine.registry.register(TenantId("kit"), sdk_guest("ts", "testkit"))
    assert (False, True) == (without.fetch, (await engine.registry.active(features)).fetch)


# ---- building and type-checking --------------------------------------------------------

def test_the_sdk_and_every_typescript_tenant_type_check(built: Path) -> None:
    result = subprocess.run([str(TSC), "-p", str(JS_DIR / "tsconfig.json"), "--pretty", "false"],
                            capture_output=True, text=True)
    assert (0, "") == (result.returncode, result.stdout)


def _dwf_build(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host.cli", "build", str(source), "-o", str(out),
                           *extra], capture_output=True, text=True, cwd=source.parent)


async def test_dwf_build_builds_a_tenant_outside_the_repository(
        tmp_path: Path, engine: DurableEngine, built: Path) -> None:
    (tmp_path / "billing.ts").write_text('''
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";
import { cents } from "./money";

export class billing extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ amount: number }>, step: WorkflowStep) {
    return step.do("charge", async () => ({ charged: cents(event.payload.amount) }));
  }
}
''')
    (tmp_path / "money.ts").write_text(
        "export const cents = (n: number): string => `${n} cents`;\n")
    result = _dwf_build(tmp_path / "billing.ts", tmp_path / "out" / "billing.wasm")
    assert (0, "built") == (result.returncode, result.stdout.split(" ")[0]), result.stderr
    tenant = TenantId("elsewhere")
    info = await engine.registry.register(tenant, (tmp_path / "out" / "billing.wasm").read_bytes())
    assert (("billing",), "js/0.1") == (info.workflows, info.sdk)
    status = await run_workflow(engine, tenant, "billing", {"amount": 250})
    assert {"charged": "250 cents"} == status.output


def test_dwf_build_refuses_code_that_does_not_type_check(tmp_path: Path, built: Path) -> None:
    (tmp_path / "wrong.ts").write_text('export const total: number = "ten";\n')
    result = _dwf_build(tmp_path / "wrong.ts", tmp_path / "wrong.wasm")
    assert 1 == result.returncode
    assert "wrong.ts(1,14): error TS2322: Type 'string' is not assignable to type 'number'" \
        in result.stderr
    assert not (tmp_path / "wrong.wasm").exists()


async def test_a_module_whose_code_throws_while_loading_is_refused_at_registration(
        tmp_path: Path, engine: DurableEngine, built: Path) -> None:
    (tmp_path / "broken.ts").write_text('throw new Error("config missing");\n')
    assert 0 == _dwf_build(tmp_path / "broken.ts", tmp_path / "broken.wasm").returncode
    with pytest.raises(InvalidModule, match="threw while loading: Error: config missing"):
        await engine.registry.register(TenantId("broken"),
                                       (tmp_path / "broken.wasm").read_bytes())


async def test_the_readme_typescript_example_builds_and_runs_as_described(
        tmp_path: Path, engine: DurableEngine, clock: ManualClock, built: Path) -> None:
    source = re.search(r"```ts\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert source is not None
    (tmp_path / "billing.ts").write_text(source.group(1))
    result = _dwf_build(tmp_path / "billing.ts", tmp_path / "billing.wasm")
    assert 0 == result.returncode, result.stderr
    tenant = TenantId("shop")
    await engine.registry.register(tenant, (tmp_path / "billing.wasm").read_bytes())
    await billing_runs_as_described(engine, tenant, clock)
