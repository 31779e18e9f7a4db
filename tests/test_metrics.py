"""`/metrics` on a real `dwf serve`: admin only, and the numbers move as work is done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving import World, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("metrics"), built)
    with world.server:
        yield world


def _scrape(world: World) -> Samples:
    with world.client("admin") as http:
        response = http.get("/metrics")
    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_an_admin_token(world: World) -> None:
    with world.client() as anonymous, world.client("acme") as tenant:
        assert 401 == anonymous.get("/metrics").status_code
        refused = tenant.get("/metrics")
    assert (403, "forbidden") == (refused.status_code, refused.json()["error"]["code"])


def test_the_numbers_follow_the_work(world: World) -> None:
    before = _scrape(world)
    with world.client("admin") as api:
        url = world.run_flaky(api, "metered", fail_attempts=1, delay_ms=10, backoff="constant")
        wait_until(lambda: api.get(url).json()["status"] == "complete",
                   what="the flaky instance to complete")
    with world.client() as anonymous:  # the front door, reaching no tenant
        anonymous.get("/somewhere", headers={"x-tenant-id": "nobody"})
    after = _scrape(world)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return _value(after, name, **labels) - _value(before, name, **labels) >= by

    assert 1 == _value(after, "dwf_instances", tenant="kit", status="complete")
    assert grew("dwf_steps_completed_total", tenant="kit")
    assert grew("dwf_step_retries_total", tenant="kit")
    assert grew("dwf_invocations_total", tenant="kit", status="waiting")  # the retry
    assert grew("dwf_invocations_total", tenant="kit", status="complete")
    assert grew("dwf_invocation_duration_seconds_count", 2, tenant="kit")
    assert grew("dwf_step_duration_seconds_count", 2, tenant="kit")
    assert grew("dwf_fuel_used_total", 1000, tenant="kit")
    assert grew("dwf_writer_batch_size_count")
    assert grew("dwf_writer_commit_duration_seconds_count")
    assert grew("dwf_sandbox_cache_hits_total", cache="memory")
    assert _value(after, "dwf_sandbox_cached_modules") >= 1
    assert _value(after, "dwf_sandbox_cached_bytes") > 0
    assert ("dwf_due_backlog", ()) in after
    assert grew("dwf_http_requests_total", route="/v1/tenants/{tenant}/instances",
                method="POST", code="201")
    assert grew("dwf_http_requests_total", route="<front door>", method="GET", code="404")
    assert grew("dwf_http_requests_total", route="/metrics", method="GET", code="200")
