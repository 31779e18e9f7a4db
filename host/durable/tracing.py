"""OpenTelemetry traces of invocations and their steps (the optional `otel` extra).

A span per invocation (`invoke <workflow>`) and, inside it, a span per step attempt
(`step <name>`), each with the tenant, instance, workflow, step name and attempt. They are
made after the invocation settled, on the event loop, from its `InvocationTally` (with the
times it recorded), so a guest never waits for a tracer; the SDK's batch processor exports
them from its own thread.

Configured by the standard environment variables: tracing is on when
`OTEL_TRACES_EXPORTER` names an exporter (`otlp`: OTLP over HTTP/protobuf, to
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `console`), or an
OTLP endpoint is set; `OTEL_SDK_DISABLED=true` turns it off. `OTEL_SERVICE_NAME` (default
`dwf`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and the exporters' own variables
are read by the SDK itself.
"""

from __future__ import annotations

import functools
import os
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import structlog

from ..core.model import Status
from ..store import Claim
from .telemetry import OK, InvocationTally

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = structlog.get_logger("dwf.tracing")
TRACER_NAME = "dynamic-workflows"
_EXPORTER_ENTRY_POINTS = {"otlp": "otlp_proto_http", "otlp_proto_http": "otlp_proto_http",
                          "console": "console"}


class Tracing:
    """Makes spans from settled invocations' tallies on one OpenTelemetry tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def invocation(self, claim: Claim, workflow: str, tally: InvocationTally,
                   settled: Status | None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import StatusCode

        offset = tally.epoch_offset_ns
        span = self.tracer.start_span(f"invoke {workflow}",
                                      start_time=tally.started_ns + offset)
        if not span.is_recording():  # sampled out (OTEL_TRACES_SAMPLER): no steps either
            span.end()
            return
        common = {"dwf.tenant_id": claim.tenant_id, "dwf.instance_id": claim.instance_id,
                  "dwf.workflow": workflow}
        span.set_attributes({**common, "dwf.run_id": claim.run_id,
                             "dwf.status": settled.value if settled is not None else "aborted",
                             "dwf.fuel_used": tally.usage.fuel_used,
                             "dwf.steps": tally.step_count()})
        if settled is Status.ERRORED:
            span.set_status(StatusCode.ERROR, "the instance errored")
        parent = trace.set_span_in_context(span)

        def step(name: str, attempt: int, outcome: str, error: str | None, started: int,
                 ended: int, batched: bool) -> None:
            child = self.tracer.start_span(
                f"step {name}", context=parent, start_time=started + offset,
                attributes={**common, "dwf.step.name": name, "dwf.step.attempt": attempt,
                            "dwf.step.outcome": outcome, "dwf.step.batched": batched})
            if outcome != OK:
                child.set_status(StatusCode.ERROR, error)
            child.end(end_time=ended + offset)

        timed = [(*attempt, False) for attempt in tally.steps]
        for records, started, ended in tally.batches:  # each its share of the batch's time
            share = (ended - started) // len(records)
            timed += [(record.name, 1, OK, None, started + n * share,
                       started + (n + 1) * share, True) for n, record in enumerate(records)]
        for entry in sorted(timed, key=lambda entry: entry[4]):
            step(*entry)
        span.end(end_time=tally.ended_ns + offset)


@functools.cache
def tracing_from_env() -> Tracing | None:
    """Tracing as the OTEL_* environment asks (once per process), or None."""
    names = _exporter_names()
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing.unavailable", reason="OTEL_* asks for traces but the "
                    "OpenTelemetry SDK is not installed: pip install 'dynamic-workflows[otel]'")
        return None
    provider = TracerProvider(resource=Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "dwf")}))
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider.get_tracer(TRACER_NAME))


def _exporter_names() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = os.environ.get("OTEL_TRACES_EXPORTER")
    if raw is None:
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        return ["otlp"] if endpoint else []
    return [name.strip() for name in raw.split(",") if name.strip() not in ("", "none")]


def _exporter(name: str) -> Any:
    """A span exporter by its OTEL_TRACES_EXPORTER name, through the SDK's entry points."""
    found = entry_points(group="opentelemetry_traces_exporter",
                         name=_EXPORTER_ENTRY_POINTS.get(name, name))
    if not found:
        log.warning("tracing.unknown_exporter", exporter=name,
                    hint="use otlp or console (otlp needs the `otel` extra)")
        return None
    return next(iter(found)).load()()
