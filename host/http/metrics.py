"""`GET /metrics`: Prometheus metrics of the engine, the database, the sandbox and HTTP.

Admin only (`Authorization: Bearer <admin token>`; Prometheus's scrape config has
`authorization: {credentials_file: ...}`): the numbers name every tenant, and the server
may face the tenants. The engine and the writer count with plain arithmetic while they
work (`host.core.tally`, `host.durable.telemetry`); a scrape reads those counts, asks the
database for instance counts and the due backlog, and renders it all with
prometheus-client. HTTP requests are counted here, per route template (never the raw
path, which would be a new series per instance id) and status code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..core.ids import TenantId
from ..core.model import Status
from ..core.tally import LATENCY_BOUNDS_S, Buckets
from ..durable.engine import DurableEngine
from .auth import admin_principal

METRICS_PATH = "/metrics"
FRONT_DOOR_ROUTE = "<front door>"
"""The route label of requests answered by a tenant's fetch handler (any path)."""


def _histogram(name: str, help_text: str, labels: list[str],
               series: Iterator[tuple[list[str], Buckets]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for values, buckets in series:
        family.add_metric(values, buckets.cumulative(), buckets.total)
    return family


class EngineCollector(Collector):
    """The engine's counts, read when scraped; `refresh` first reads the database's."""

    def __init__(self, engine: DurableEngine) -> None:
        self.engine = engine
        self.instances: dict[tuple[TenantId, Status], int] = {}
        self.due = 0

    async def refresh(self) -> None:
        store = self.engine.store
        self.instances = await store.count_instances()
        self.due = await store.count_due(self.engine.clock.now_ms())

    def collect(self) -> Iterator[Metric]:
        yield from self._instances()
        yield from self._steps()
        yield from self._sandbox()
        yield from self._writer()
        yield from self._egress()

    def _instances(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily("dwf_instances", "Instances by tenant and status",
                                      labels=["tenant", "status"])
        for (tenant, status), count in sorted(self.instances.items()):
            instances.add_metric([tenant, status.value], count)
        yield instances
        yield GaugeMetricFamily("dwf_due_backlog", "Queued or waiting instances due now "
                                "and not yet claimed", value=self.due)

    def _steps(self) -> Iterator[Metric]:
        tenants = sorted(self.engine.stats.tenants.items())
        counters = [("dwf_steps_completed", "Step attempts that succeeded", "steps_ok"),
                    ("dwf_step_retries", "Step attempts that failed and are retried",
                     "step_retries"),
                    ("dwf_steps_failed", "Steps that failed for good (their last attempt)",
                     "steps_failed"),
                    ("dwf_fuel_used", "Wasm fuel used by workflow invocations", "fuel_used")]
        for name, help_text, field in counters:
            family = CounterMetricFamily(name, help_text, labels=["tenant"])
            for tenant, stats in tenants:
                family.add_metric([tenant], getattr(stats, field))
            yield family
        invocations = CounterMetricFamily(
            "dwf_invocations", "Workflow invocations by the status they left the instance in",
            labels=["tenant", "status"])
        for tenant, stats in tenants:
            for status, count in sorted(stats.invocations.items()):
                invocations.add_metric([tenant, status], count)
        yield invocations
        yield _histogram("dwf_step_duration_seconds", "Step attempt latency (a batch of "
                         "steps the guest ran without asking shares its time evenly)",
                         ["tenant"], (([t], s.step_seconds) for t, s in tenants))
        yield _histogram("dwf_invocation_duration_seconds", "One run of a workflow guest, "
                         "replay included", ["tenant"],
                         (([t], s.invocation_seconds) for t, s in tenants))

    def _sandbox(self) -> Iterator[Metric]:
        pool = self.engine.pool
        hits = CounterMetricFamily("dwf_sandbox_cache_hits", "Compiled modules found in "
                                   "the isolate pool's caches", labels=["cache"])
        hits.add_metric(["memory"], pool.stats.memory_hits)
        hits.add_metric(["disk"], pool.stats.disk_hits)
        yield hits
        yield CounterMetricFamily("dwf_sandbox_compiles", "Modules compiled (cache misses)",
                                  value=pool.stats.compiles)
        yield CounterMetricFamily("dwf_sandbox_evictions", "Modules evicted from memory",
                                  value=pool.stats.evictions)
        yield GaugeMetricFamily("dwf_sandbox_cached_modules", "Compiled modules in memory",
                                value=len(pool.cached_modules()))
        yield GaugeMetricFamily("dwf_sandbox_cached_bytes", "Size of the compiled modules "
                                "in memory", value=pool.cached_bytes)

    def _writer(self) -> Iterator[Metric]:
        tally = self.engine.store.commit_tally()
        if tally is None:
            return
        yield _histogram("dwf_writer_batch_size", "Writes per group commit", [],
                         iter([([], tally.batch_sizes)]))
        yield _histogram("dwf_writer_commit_duration_seconds", "One group commit, BEGIN to "
                         "COMMIT", [], iter([([], tally.commit_seconds)]))


    def _egress(self) -> Iterator[Metric]:
        egress = self.engine.egress
        requests = CounterMetricFamily("dwf_egress_requests", "Outbound HTTP requests of "
                                       "tenant code by outcome (ok, or the error's name)",
                                       labels=["tenant", "outcome"])
        for (tenant, outcome), count in sorted(egress.stats.items()):
            requests.add_metric([tenant, outcome], count)
        yield requests
        yield _histogram("dwf_egress_request_duration_seconds", "One outbound request, "
                         "redirects included, whatever its outcome", ["tenant"],
                         (([t], s) for t, s in sorted(egress.seconds.items())))


class HttpMetrics:
    """Requests by route template, method and status code, and their latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("dwf_http_requests", "HTTP requests answered",
                                ["route", "method", "code"], registry=registry)
        self.seconds = Histogram("dwf_http_request_duration_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BOUNDS_S, registry=registry)

    def observe(self, request: web.Request, front_door: bool, status: int,
                seconds: float) -> None:
        if front_door:
            route = FRONT_DOOR_ROUTE
        else:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "<no route>"
        self.requests.labels(route, request.method, str(status)).inc()
        self.seconds.labels(route).observe(seconds)


class Metrics:
    """The app's registry: the engine's collector, HTTP metrics, the process's own."""

    def __init__(self, engine: DurableEngine) -> None:
        self.registry = CollectorRegistry()
        self.engine = EngineCollector(engine)
        self.registry.register(self.engine)
        self.registry.register(ProcessCollector(registry=None))
        self.http = HttpMetrics(self.registry)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


async def metrics(request: web.Request) -> web.Response:
    await admin_principal(request)
    found = request.app[METRICS]
    started = time.monotonic()
    await found.engine.refresh()
    body = generate_latest(found.registry)
    request["log"].debug("metrics.scraped", seconds=round(time.monotonic() - started, 4))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics(app: web.Application, engine: DurableEngine) -> None:
    app[METRICS] = Metrics(engine)
    app.router.add_get(METRICS_PATH, metrics)
