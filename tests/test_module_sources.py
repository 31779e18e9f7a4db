"""On-demand loading: a tenant's module found by id when it is needed, from a directory,
an http(s) URL template (through egress's SSRF-safe client) or an embedding's loader, then
validated, stored and pinned exactly as `register` does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from helpers import guest_wasm, settle, start
from serving import Server

from host import (
    DurableEngine,
    InvalidModule,
    ManualClock,
    Status,
    TenantId,
    UnknownTenant,
)
from host.core.errors import ModuleSourceUnavailable
from host.durable import sources

SHOP = TenantId("shop")


def put(directory: Path, tenant: str, guest: str) -> None:
    """Deploy test guest `guest` as DIR/<tenant>.wasm, with an mtime that surely differs."""
    path = directory / f"{tenant}.wasm"
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(guest_wasm(guest))
    os.utime(path, ns=(previous + 10**9, previous + 10**9))


@pytest.fixture
def modules(tmp_path: Path, built: Path) -> Path:
    directory = tmp_path / "modules"
    directory.mkdir()
    return directory


@pytest.fixture
def open_engine(db: str | Path, tmp_path: Path, clock: ManualClock):
    """Engines on this test's database (each backend) with a module source."""
    async def open_with(source: object, interval: float = 0.0) -> DurableEngine:
        return await DurableEngine.open(db, clock=clock, artifacts=tmp_path / "artifacts",
                                        module_source=source,  # type: ignore[arg-type]
                                        module_check_interval_s=interval)
    return open_with


async def test_a_tenant_with_a_file_in_the_directory_runs_without_registering(
        open_engine, clock: ManualClock, modules: Path) -> None:
    put(modules, "shop", "order_v1")
    engine = await open_engine(modules)
    try:
        first = await start(engine, SHOP, "order", {"amount": 1, "ms": 0}, "first")
        [v1] = await engine.registry.versions(SHOP)
        await engine.run_until_idle()
        put(modules, "shop", "order_v2")  # a new release: the next request loads it
        second = await start(engine, SHOP, "order", {"amount": 2, "ms": 0}, "second")
        versions = await engine.registry.versions(SHOP)
        assert [(1, False), (2, True)] == [(v.version, v.active) for v in versions]
        for iid in (first, second):
            await engine.instances.send_event(SHOP, iid, "approval", True)
        outputs = [(await settle(engine, SHOP, iid)).output["version"]
                   for iid in (first, second)]
        assert [1, 2] == outputs  # the first stays pinned to the version it started on
        assert v1.sha256 == (await engine.instances.status(SHOP, first)).module_sha256
        with pytest.raises(UnknownTenant):
            await start(engine, TenantId("nobody"), "order")
    finally:
        await engine.close()


async def test_the_source_is_asked_at_most_once_per_interval(
        open_engine, clock: ManualClock, modules: Path) -> None:
    put(modules, "shop", "order_v1")
    engine = await open_engine(modules, interval=0.5)
    try:
        await start(engine, SHOP, "order", {"ms": 0})
        put(modules, "shop", "order_v2")
        await start(engine, SHOP, "order", {"ms": 0})  # within the interval: not seen yet
        assert [1] == [v.version for v in await engine.registry.versions(SHOP)]
        await asyncio.sleep(0.6)
        await start(engine, SHOP, "order", {"ms": 0})
        assert [1, 2] == [v.version for v in await engine.registry.versions(SHOP)]
    finally:
        await engine.close()


async def test_a_rollback_by_hand_stays_until_the_source_changes(
        open_engine, clock: ManualClock, modules: Path) -> None:
    put(modules, "shop", "order_v1")
    engine = await open_engine(modules)
    try:
        await engine.ensure_module(SHOP)
        put(modules, "shop", "order_v2")
        await engine.ensure_module(SHOP)
        await engine.registry.activate(SHOP, "1")  # the operator rolls back
        await engine.ensure_module(SHOP)  # unchanged source: the rollback stands
        assert 1 == (await engine.registry.active(SHOP)).version
        put(modules, "shop", "order_v3")
        await engine.ensure_module(SHOP)
        assert 3 == (await engine.registry.active(SHOP)).version
    finally:
        await engine.close()
    # Another engine on the same database agrees on what was loaded: nothing to redo.
    again = await open_engine(modules)
    try:
        await again.registry.activate(SHOP, "2")
        await again.ensure_module(SHOP)
        assert 2 == (await again.registry.active(SHOP)).version
    finally:
        await again.close()


async def test_an_invalid_module_in_the_source_is_refused_and_not_retried(
        open_engine, clock: ManualClock, modules: Path) -> None:
    (modules / "bad.wasm").write_bytes(b"\0asm\x01\0\0\0garbage")
    put(modules, "shop", "order_v1")
    engine = await open_engine(modules)
    try:
        compiles = engine.pool.stats.compiles
        for _ in range(3):
            with pytest.raises(InvalidModule, match="tenant 'bad'.s module from the directory "
                                                    ".* was refused: invalid WebAssembly"):
                await start(engine, TenantId("bad"), "x")
        assert compiles == engine.pool.stats.compiles  # refused from its bytes, once
        await start(engine, SHOP, "order", {"ms": 0})
        (modules / "shop.wasm").write_bytes(b"not wasm at all")
        os.utime(modules / "shop.wasm", ns=(1, 1))
        await start(engine, SHOP, "order", {"ms": 0})  # the bad release is refused...
        assert [1] == [v.version for v in await engine.registry.versions(SHOP)]  # ...v1 runs
    finally:
        await engine.close()


async def test_an_embedding_loader_is_called_once_for_concurrent_first_requests(
        open_engine, clock: ManualClock) -> None:
    calls: list[str] = []

    async def loader(tenant_id: TenantId) -> bytes | None:
        calls.append(tenant_id)
        await asyncio.sleep(0.01)
        return guest_wasm("order_v1") if tenant_id == "shop" else None

    engine = await open_engine(loader, interval=3600)
    try:
        created = await asyncio.gather(*(start(engine, SHOP, "order", {"ms": 0})
                                         for _ in range(10)))
        assert (10, ["shop"]) == (len(set(created)), calls)
        assert [1] == [v.version for v in await engine.registry.versions(SHOP)]
        with pytest.raises(UnknownTenant):
            await start(engine, TenantId("other"), "order")
    finally:
        await engine.close()


async def test_a_failing_loader_fails_only_tenants_without_a_module(
        open_engine, clock: ManualClock) -> None:
    failing = False

    async def loader(tenant_id: TenantId) -> bytes | None:
        if failing:
            raise ConnectionError("code store down")
        return guest_wasm("order_v1")

    engine = await open_engine(loader)
    try:
        await start(engine, SHOP, "order", {"ms": 0})
        failing = True
        await start(engine, SHOP, "order", {"ms": 0})  # shop keeps its module
        with pytest.raises(ModuleSourceUnavailable, match="code store down"):
            await start(engine, TenantId("fresh"), "order")
    finally:
        await engine.close()


# -- an http(s) URL template, through egress's SSRF-safe client -------------------------

class CodeServer:
    """A code server on loopback: /modules/<tenant>.wasm with ETags and 304s."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # path, If-None-Match, status
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        sent = request.headers.get("If-None-Match")
        if name == "elsewhere.wasm":
            response: web.StreamResponse = web.Response(
                status=302, headers={"Location": "http://127.0.0.2:9/x.wasm"})
        elif name not in self.files:
            response = web.Response(status=404)
        else:
            etag = '"' + hashlib.sha256(self.files[name]).hexdigest()[:16] + '"'
            response = (web.Response(status=304, headers={"ETag": etag}) if sent == etag
                        else web.Response(body=self.files[name], headers={"ETag": etag}))
        self.requests.append((name, sent, response.status))
        return response


@pytest.fixture
async def code_server() -> AsyncIterator[CodeServer]:
    server = CodeServer()
    app = web.Application()
    app.router.add_get("/modules/{name}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_the_tenants_remembered_are_bounded(
        open_engine, modules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may name tenants at the front door: each is remembered, the oldest dropped."""
    monkeypatch.setattr(sources, "MAX_TENANT_STATES", 3)
    put(modules, "shop", "testkit")
    engine = await open_engine(str(modules), interval=3600.0)
    try:
        for n in range(10):
            await engine.ensure_module(TenantId(f"nobody{n}"))
        await engine.ensure_module(SHOP)
        on_demand = engine.modules_on_demand
        assert on_demand is not None
        assert ["nobody8", "nobody9", "shop"] == list(on_demand._tenants)
        assert "shop" == (await engine.registry.active(SHOP)).tenant_id
    finally:
        await engine.close()


async def test_a_url_template_loads_with_etags(open_engine, clock: ManualClock,
                                                code_server: CodeServer) -> None:
    code_server.files["shop.wasm"] = guest_wasm("order_v1")
    engine = await open_engine(code_server.url + "/modules/{tenant}.wasm")
    try:
        await start(engine, SHOP, "order", {"ms": 0})
        await start(engine, SHOP, "order", {"ms": 0})  # unchanged: a 304, nothing loaded
        code_server.files["shop.wasm"] = guest_wasm("order_v2")
        await start(engine, SHOP, "order", {"ms": 0})
        with pytest.raises(UnknownTenant):
            await start(engine, TenantId("nobody"), "order")
        with pytest.raises(ModuleSourceUnavailable, match="elsewhere.wasm: a redirect to no "
                           "egress rule allows http://127.0.0.2:9: the module source reaches "
                           "http://127.0.0.1:[0-9]+ only$"):
            await start(engine, TenantId("elsewhere"), "order")
    finally:
        await engine.close()
    assert [("shop.wasm", None, 200), ("shop.wasm", '"', 304), ("shop.wasm", '"', 200),
            ("nobody.wasm", None, 404), ("elsewhere.wasm", None, 302)] == [
        (name, sent[:1] if sent else None, status) for name, sent, status in code_server.requests]
    again = await open_engine(None)
    try:
        assert [1, 2] == [v.version for v in await again.registry.versions(SHOP)]
    finally:
        await again.close()


async def test_a_url_template_by_host_name_cannot_reach_private_addresses(
        open_engine, clock: ManualClock, code_server: CodeServer) -> None:
    code_server.files["shop.wasm"] = guest_wasm("order_v1")
    port = code_server.url.rsplit(":", 1)[1]
    engine = await open_engine(f"http://localhost:{port}/modules/{{tenant}}.wasm")
    try:
        with pytest.raises(ModuleSourceUnavailable, match="resolves only to addresses"):
            await start(engine, SHOP, "order")
    finally:
        await engine.close()
    assert [] == code_server.requests


async def test_a_scheduled_tick_loads_the_new_release_first(
        open_engine, clock: ManualClock, modules: Path, testkit_wasm: bytes) -> None:
    (modules / "kit.wasm").write_bytes(testkit_wasm)
    engine = await open_engine(modules)
    try:
        await engine.schedules.create(TenantId("kit"), "echo", "* * * * *", schedule_id="e")
        put(modules, "kit", "order_v1")  # the next release drops "echo"
        clock.advance(60_000)
        await engine.schedules.fire_due()
        schedule = await engine.schedules.get(TenantId("kit"), "e")
        assert "has no workflow 'echo' (its module defines: order)" in (schedule.last_error or "")
        assert Status.QUEUED not in [i.status for i in await engine.instances.list()]
    finally:
        await engine.close()


def test_dwf_serve_and_run_load_tenants_from_the_modules_dir(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copyfile(built / "tenants" / "acme.wasm", modules / "acme.wasm")
    shutil.copyfile(built / "tenants" / "globex.wasm", modules / "globex.wasm")
    (modules / "junk.wasm").write_bytes(b"not a module")
    db = tmp_path / "dwf.sqlite3"
    env = {**os.environ, "DWF_DB": str(db), "DWF_LOG_LEVEL": "warning"}
    created = subprocess.run(
        [sys.executable, "-m", "host.cli", "--modules-dir", str(modules), "run", "globex",
         "billing_retry", "--params", '{"amount_cents": 5, "fail_attempts": 0}', "--json"],
        env=env, capture_output=True, text=True, timeout=120)
    assert 0 == created.returncode, created.stderr
    assert "queued" == json.loads(created.stdout)["status"]
    mistyped = subprocess.run(
        [sys.executable, "-m", "host.cli", "--modules-dir", str(tmp_path / "modulse"), "run",
         "globex", "billing_retry"], env=env, capture_output=True, text=True, timeout=120)
    assert 2 == mistyped.returncode and "modulse' does not exist" in mistyped.stderr, (
        mistyped.stderr)

    monkeypatch.setenv("DWF_MODULES_DIR", str(modules))
    with Server(db) as server, server.client() as http:
        answer = http.post("/signup", headers={"x-tenant-id": "acme"},
                           json={"email": "ada@example.com", "id": "signup-ada"})
        missing = http.get("/", headers={"x-tenant-id": "initech"})
        junk = http.get("/", headers={"x-tenant-id": "junk"})
    assert (201, {"id": "signup-ada", "status_url": "/status/signup-ada"}) == (
        answer.status_code, answer.json())
    # A module the source has but refuses answers as no module at all does: an anonymous
    # client learns neither which tenants exist nor where their code is kept.
    assert (404, 404) == (missing.status_code, junk.status_code)
    assert (missing.json()["error"]["message"].replace("initech", "T")
            == junk.json()["error"]["message"].replace("junk", "T"))
    assert str(modules) not in junk.text
    listed = subprocess.run([sys.executable, "-m", "host.cli", "tenant", "list", "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert ["acme", "globex"] == [t["tenant_id"] for t in json.loads(listed.stdout)]
