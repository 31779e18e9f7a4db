"""OpenTelemetry traces: a span per invocation and per step attempt, with the tenant,
instance, workflow, step name and attempt; configured by the OTEL_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import settle, start
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from host import DurableEngine, ManualClock, Status, TenantId
from host.durable import tracing


@pytest.fixture
def spans(engine: DurableEngine) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine.tracing = tracing.Tracing(provider.get_tracer("test"))
    return exporter


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_an_invocation_span_holds_a_span_per_step_attempt(
        engine: DurableEngine, kit: TenantId, clock: ManualClock,
        spans: InMemorySpanExporter) -> None:
    instance = await start(engine, kit, "flaky", {"fail_attempts": 1, "limit": 3,
                                                  "delay_ms": 10, "backoff": "constant"})
    await settle(engine, kit, instance)
    clock.advance(10)
    assert Status.COMPLETE is (await settle(engine, kit, instance)).status

    finished = spans.get_finished_spans()
    invocations = [s for s in finished if s.name == "invoke flaky"]
    steps = [s for s in finished if s.name == "step flaky"]
    assert 2 == len(invocations) and 2 == len(steps)
    common = {"dwf.tenant_id": "kit", "dwf.instance_id": instance, "dwf.workflow": "flaky"}
    assert [{**common, "dwf.step.name": "flaky", "dwf.step.attempt": n,
             "dwf.step.outcome": outcome, "dwf.step.batched": False}
            for n, outcome in ((1, "retry"), (2, "ok"))] == [_attributes(s) for s in steps]
    assert ["waiting", "complete"] == [_attributes(s)["dwf.status"] for s in invocations]
    assert all(_attributes(s)["dwf.fuel_used"] > 0 for s in invocations)
    for step, invocation in zip(steps, invocations, strict=True):
        assert step.parent is not None and invocation.context is not None
        assert invocation.context.span_id == step.parent.span_id
        assert invocation.start_time <= step.start_time <= step.end_time <= invocation.end_time
    assert (StatusCode.ERROR, "Flaky") == (steps[0].status.status_code,
                                           steps[0].status.description)


async def test_batched_steps_get_a_span_each(
        engine: DurableEngine, kit: TenantId, spans: InMemorySpanExporter) -> None:
    instance = await start(engine, kit, "steps", {"count": 3})
    assert Status.COMPLETE is (await settle(engine, kit, instance)).status
    finished = spans.get_finished_spans()
    assert ["step step"] * 3 + ["invoke steps"] == [s.name for s in finished]
    assert [True] * 3 == [_attributes(s)["dwf.step.batched"] for s in finished[:3]]


async def test_an_errored_instance_marks_its_invocation_span(
        engine: DurableEngine, kit: TenantId, spans: InMemorySpanExporter) -> None:
    await settle(engine, kit, await start(engine, kit, "fail"))
    [span] = spans.get_finished_spans()
    assert StatusCode.ERROR is span.status.status_code


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, True),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_the_otel_environment_turns_tracing_on(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracing.tracing_from_env.cache_clear()
    try:
        assert on == (tracing.tracing_from_env() is not None)
    finally:
        tracing.tracing_from_env.cache_clear()


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace receiver on loopback, keeping what it is sent."""
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def test_a_cli_run_exports_its_spans_over_otlp(
        tmp_path: Path, built: Path,
        collector: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    endpoint, received = collector
    env = {**os.environ, "DWF_DB": str(tmp_path / "otel.sqlite3"), "DWF_LOG_LEVEL": "warning",
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "dwf-test"}

    def dwf(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        return done.stdout
    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    output = json.loads(dwf("run", "kit", "steps", "--params", '{"count": 2}', "--wait",
                            "--json"))
    assert "complete" == output["status"]
    spans = [span for request in received for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    assert ["invoke steps", "step step", "step step"] == sorted(span.name for span in spans)
    service = {attribute.value.string_value for request in received
               for resource in request.resource_spans
               for attribute in resource.resource.attributes
               if attribute.key == "service.name"}
    assert {"dwf-test"} == service
