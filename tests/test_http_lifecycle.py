"""The code lifecycle under /v1 (check, upgrade, versions, prune, replay, an instance's
upgrades), against a real `dwf serve` whose "shop" tenant has "order" instances in flight."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import orders_in_flight
from serving import Server, api_error, prepare

from host import TenantId


class Shop:
    def __init__(self, directory: Path, built: Path) -> None:
        self.db = directory / "dwf.sqlite3"
        self.built = built

        async def setup(engine, tokens) -> dict[str, str]:
            await orders_in_flight(engine, TenantId("shop"), sleep_ms=3_600_000)
            await engine.registry.register(TenantId("other"), self.wasm("order_v1"))
            return {"shop": (await tokens.create(TenantId("shop"), "t"))[1],
                    "other": (await tokens.create(TenantId("other"), "t"))[1]}
        self.tokens = prepare(self.db, setup)
        self.server = Server(self.db)

    def wasm(self, name: str) -> bytes:
        return (self.built / "guests" / f"{name}.wasm").read_bytes()

    def client(self, who: str = "shop") -> httpx.Client:
        return self.server.client(self.tokens[who])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[Shop]:
    world = Shop(tmp_path_factory.mktemp("shop"), built)
    with world.server:
        yield world


def test_check_reports_each_instance_and_changes_nothing(shop: Shop) -> None:
    with shop.client() as api:
        ok = api.post("/v1/tenants/shop/check", content=shop.wasm("order_v2")).json()
        broken = api.post("/v1/tenants/shop/check", content=shop.wasm("order_v3")).json()
        versions = api.get("/v1/tenants/shop/versions").json()["versions"]
    assert (True, 0) == (ok["compatible"], ok["incompatible"])
    assert [("sleeping", True, "frontier", None),
            ("waiting", False, "diverged", {"kind": "do", "name": "charge-card"})] == [
        (i["instance_id"], i["compatible"], i["ending"], i["issued"] if not i["compatible"]
         else None) for i in broken["instances"]]
    assert [(1, True, 2, 1)] == [(v["version"], v["active"], v["unfinished"], v["finished"])
                                 for v in versions]


def test_replay_through_its_own_module_or_a_candidate(shop: Shop) -> None:
    with shop.client() as api:
        own = api.post("/v1/tenants/shop/instances/waiting/replay").json()
        candidate = api.post("/v1/tenants/shop/instances/waiting/replay",
                             content=shop.wasm("order_v3")).json()
    assert (["reserve", "cool-off", "charge", "approval"], "frontier", 3) == (
        [s["name"] for s in own["steps"]], own["ending"], own["position"])
    assert 200 == own["steps"][2]["result"]
    assert ("diverged", 2, {"kind": "do", "name": "charge"}) == (
        candidate["ending"], candidate["position"], candidate["recorded"])


def test_upgrade_moves_compatible_instances_then_prune(shop: Shop) -> None:
    with shop.client() as api:
        assert 201 == api.post("/v1/tenants/shop/modules",
                               content=shop.wasm("order_v3")).status_code
        report = api.post("/v1/tenants/shop/upgrade",
                          json={"to": 2, "all_compatible": True}).json()
        moves = api.get("/v1/tenants/shop/instances/sleeping/upgrades").json()["upgrades"]
        none = api.get("/v1/tenants/shop/instances/waiting/upgrades").json()["upgrades"]
        versions = api.get("/v1/tenants/shop/versions").json()["versions"]
        assert 201 == api.post("/v1/tenants/shop/modules",
                               content=shop.wasm("order_v2")).status_code
        pruned = api.post("/v1/tenants/shop/prune").json()["pruned"]
    assert (1, [("sleeping", True), ("waiting", False)]) == (
        report["moved"], [(i["instance_id"], i["moved"]) for i in report["instances"]])
    assert [(1, 2, 2)] == [(m["from_version"], m["to_version"], m["journal_length"])
                           for m in moves]
    assert [] == none
    assert [(1, 1), (2, 1)] == [(v["version"], v["unfinished"]) for v in versions]
    assert [] == pruned  # v1 and v2 have instances, v3 is active


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("post", "/v1/tenants/shop/check", b"", (400, "invalid_input")),
    ("post", "/v1/tenants/shop/check", b"not wasm", (422, "invalid_module")),
    ("post", "/v1/tenants/shop/upgrade", b'{"to": 1}', (400, "invalid_input")),
    ("post", "/v1/tenants/shop/upgrade", b'{"to": 1, "instances": []}', (400, "invalid_input")),
    ("post", "/v1/tenants/shop/upgrade", b'{"to": 1, "all_compatible": true, "x": 1}',
     (400, "invalid_input")),
    ("post", "/v1/tenants/shop/upgrade", b'{"to": 9, "all_compatible": true}',
     (404, "not_found")),
    ("post", "/v1/tenants/shop/instances/nope/replay", b"", (404, "not_found")),
    ("get", "/v1/tenants/shop/instances/nope/upgrades", None, (404, "not_found")),
])
def test_bad_lifecycle_requests_get_a_specificapi_error(shop: Shop, method: str, path: str,
                                                     body: bytes | None,
                                                     expected: tuple[int, str]) -> None:
    with shop.client() as api:
        response = api.request(method.upper(), path, content=body)
    assert expected == api_error(response)


def test_a_tenant_token_cannot_reach_another_tenants_lifecycle(shop: Shop) -> None:
    with shop.client("other") as api:
        answers = [api.post("/v1/tenants/shop/check", content=shop.wasm("order_v2")),
                   api.post("/v1/tenants/shop/upgrade", json={"to": 1, "all_compatible": True}),
                   api.get("/v1/tenants/shop/versions"), api.post("/v1/tenants/shop/prune"),
                   api.post("/v1/tenants/shop/instances/waiting/replay"),
                   api.get("/v1/tenants/shop/instances/waiting/upgrades")]
    assert [(404, "not_found")] * len(answers) == [api_error(r) for r in answers]
