"""README "Embedding": the aiohttp example runs as it is, tenant-bound, over loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path
from types import ModuleType

from aiohttp.test_utils import TestClient, TestServer
from conftest import ROOT

from host import DurableEngine, TenantId


def _example(tmp_path: Path) -> ModuleType:
    block = re.search(r"<!-- embedding-example -->\n```python\n(.*?)```",
                      (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    path = tmp_path / "embedded_app.py"
    path.write_text(block.group(1))
    spec = importlib.util.spec_from_file_location("embedded_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_an_aiohttp_app_runs_workflows_through_a_tenant_binding(
        tmp_path: Path, built: Path) -> None:
    db = tmp_path / "app.sqlite3"
    setup = await DurableEngine.open(db)
    try:
        for tenant in ("acme", "globex"):
            await setup.registry.register(
                TenantId(tenant), (built / "tenants" / f"{tenant}.wasm").read_bytes())
        other = await setup.instances.create(TenantId("globex"), "billing_retry",
                                             {"amount_cents": 1}, "not-acmes")
    finally:
        await setup.close()

    app = _example(tmp_path).make_app(db)
    async with TestClient(TestServer(app)) as client:
        created = await client.post("/signup", json={"email": "ada@example.com"})
        assert 201 == created.status
        url = f"/signup/{(await created.json())['id']}"

        async def status_is(wanted: str) -> dict[str, object]:
            for _ in range(400):
                status: dict[str, object] = await (await client.get(url)).json()
                if status["status"] == wanted:
                    return status
                await asyncio.sleep(0.05)
            raise AssertionError(f"{url} never became {wanted}")

        await status_is("waiting")  # its worker ran it to the 2 s nudge, then the approval
        assert 202 == (await client.post(f"{url}/approve")).status
        done = await status_is("complete")
        assert {"outcome": "activated", "approved": True} == {
            k: v for k, v in done["output"].items() if k != "account_id"}  # type: ignore[union-attr]
        # The binding is acme's: globex's instance is not there for it.
        assert 404 == (await client.get(f"/signup/{other}")).status
