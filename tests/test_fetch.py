"""Fetch handlers in-process: registration, request encoding, response checking."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import wasmtime
from conftest import ROOT

from host import DurableEngine, TenantId, UnknownTenant
from host.core import codec
from host.core.errors import GuestFault
from host.http.fetch import FetchService, NoFetchHandler
from host.sandbox.fetch import FetchRequest, FetchResponse, decode_response
from host.sandbox.module_interface import interface_of, interface_problems


@pytest.fixture(scope="module")
def fetchkit_wasm(built: Path) -> bytes:
    return (built / "guests" / "fetchkit.wasm").read_bytes()


async def test_registry_records_whether_a_module_has_a_fetch_handler(
        engine: DurableEngine, testkit_wasm: bytes, fetchkit_wasm: bytes) -> None:
    without = await engine.registry.register(TenantId("kit"), testkit_wasm)
    with_fetch = await engine.registry.register(TenantId("fk"), fetchkit_wasm)
    assert (False, True) == (without.fetch, with_fetch.fetch)
    service = FetchService(engine)
    assert with_fetch.sha256 == (await service.target(TenantId("fk"))).module.sha256
    with pytest.raises(NoFetchHandler, match="'kit' has no fetch handler"):
        await service.target(TenantId("kit"))
    with pytest.raises(UnknownTenant):
        await service.target(TenantId("nobody"))


async def test_registering_again_refreshes_an_old_manifest(engine: DurableEngine,
                                                           fetchkit_wasm: bytes) -> None:
    tenant = TenantId("fk")
    info = await engine.registry.register(tenant, fetchkit_wasm)
    # A module stored by a host that did not know about fetch handlers yet.
    async with engine.store.db.transaction() as conn:
        await conn.execute("UPDATE tenant_modules SET manifest = ? WHERE sha256 = ?",
                           (json.dumps({"abi": 1, "sdk": "c/0.1", "workflows": ["echo"]}),
                            info.sha256))
    assert not (await engine.registry.active(tenant)).fetch
    assert (await engine.registry.register(tenant, fetchkit_wasm)).fetch


def test_a_dwf_fetch_export_with_the_wrong_signature_breaks_the_abi() -> None:
    module = wasmtime.Module(wasmtime.Engine(), """(module
        (memory (export "memory") 1)
        (func (export "dwf_abi_version") (result i32) i32.const 1)
        (func (export "dwf_alloc") (param i32) (result i32) i32.const 0)
        (func (export "dwf_free") (param i32 i32))
        (func (export "dwf_describe") (result i32) i32.const 0)
        (func (export "dwf_run") (param i32 i32) (result i32) i32.const 0)
        (func (export "dwf_fetch") (param i32) (result i32) i32.const 0))""")
    assert ["exports `dwf_fetch` with the wrong signature"] == interface_problems(
        interface_of(module))


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", b'{"a": [1, "x"]}', {"a": [1, "x"]}),
    ("application/vnd.acme+json; charset=utf-8", b"3", 3),
    ("application/json", b"null", None),
    ("text/plain", b'{"a": 1}', "absent"),
    ("", b'{"a": 1}', "absent"),
    ("application/json", b"{broken", "absent"),
    ("application/json", b"123456789012345678901234567890", "absent"),  # no msgpack int
])
def test_json_bodies_are_parsed_for_the_guest(content_type: str, body: bytes,
                                              expected: object) -> None:
    request = FetchRequest("POST", "/", "", {"content-type": content_type}, body, "r")
    packed = codec.unpack(request.pack())
    assert body == packed["body"]
    assert expected == packed.get("json", "absent")


@pytest.mark.parametrize(("response", "message"), [
    ([1, 2], "must be a msgpack map"),
    ({"status": True}, "`status` must be an integer from 200 to 599"),
    ({"status": 199}, "`status` must be an integer from 200 to 599"),
    ({"status": 600}, "`status` must be an integer from 200 to 599"),
    ({"headers": [1]}, "`headers` must be a map"),
    ({"headers": {f"h{i}": "v" for i in range(101)}}, "at most 100"),
    ({"headers": {"bad name": "v"}}, "is not a valid HTTP field name"),
    ({"headers": {"x": "a\r\nSet-Cookie: evil=1"}}, "no control characters"),
    ({"headers": {"x": "\x1b[31mred"}}, "no control characters"),
    ({"headers": {"x": "del\x7f"}}, "no control characters"),
    ({"headers": {"x": 1}}, "must be a string"),
    ({"headers": {"Transfer-Encoding": "chunked"}}, "is set by the host"),
    ({"headers": {"X-Request-Id": "spoofed"}}, "is set by the host"),
    ({"body": "a", "json": 1}, "not both"),
    ({"json": float("nan")}, "cannot be rendered as JSON"),
    ({"body": 5}, "`body` must be bin, str or nil"),
])
def test_malformed_responses_are_abi_violations(response: object, message: str) -> None:
    with pytest.raises(GuestFault, match="fetch response") as caught:
        decode_response(codec.pack(response))
    assert message in caught.value.message
    assert "AbiViolation" == caught.value.name.value


@pytest.mark.parametrize(("response", "status", "content_type", "body"), [
    ({}, 200, None, b""),
    ({"status": 204, "body": None}, 204, None, b""),
    ({"body": "héllo"}, 200, "text/plain; charset=utf-8", "héllo".encode()),
    ({"body": b"\x00\x01", "headers": {"Content-Type": "image/png"}}, 200, "image/png",
     b"\x00\x01"),
    ({"status": 201, "json": {"b": b"\x01", "n": [1.5]}}, 201, "application/json",
     b'{"b": {"$base64": "AQ=="}, "n": [1.5]}'),
])
def test_responses(response: object, status: int, content_type: str | None,
                   body: bytes) -> None:
    decoded = decode_response(codec.pack(response))
    assert (status, content_type, body) == (decoded.status,
                                            decoded.headers.get("content-type"), decoded.body)


async def test_the_sdk_readme_fetch_example_works(tmp_path: Path, engine: DurableEngine) -> None:
    """guest_sdk/c/README.md: its workflow and fetch handler, compiled together and served."""
    blocks = re.findall(r"```c\n(.*?)```", (ROOT / "guest_sdk" / "c" / "README.md").read_text(),
                        re.S)
    (tmp_path / "example.c").write_text("\n".join(blocks))
    sdk = sorted(str(p) for p in (ROOT / "guest_sdk" / "c").glob("*.c"))
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding",
                    "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'guest_sdk' / 'c'}", "-nostdlib", "-Wl,--no-entry",
                    "-o", str(tmp_path / "example.wasm"), str(tmp_path / "example.c"), *sdk],
                   check=True)
    tenant = TenantId("shop")
    await engine.registry.register(tenant, (tmp_path / "example.wasm").read_bytes())
    service = FetchService(engine)
    target = await service.target(tenant)
    logger = structlog.get_logger()
    created = await service.run(target, FetchRequest(
        "POST", "/orders", "", {"content-type": "application/json"}, b'{"cents": 250}', "r1"),
        logger)
    missing = await service.run(target, FetchRequest("GET", "/", "", {}, b"", "r2"), logger)
    assert isinstance(created, FetchResponse) and isinstance(missing, FetchResponse)
    new_id = json.loads(created.body)["id"]
    assert (201, 404) == (created.status, missing.status)
    status = await engine.instances.status(tenant, new_id)
    assert ("bill", {"cents": 250}) == (status.workflow, status.params)


async def test_a_tenant_runs_at_most_its_cap_of_fetches_at_once(engine: DurableEngine,
                                                                fetchkit_wasm: bytes) -> None:
    tenant = TenantId("fk")
    await engine.registry.register(tenant, fetchkit_wasm)
    await engine.registry.set_limits(tenant, {"max_concurrent_invocations": 1})
    service = FetchService(engine)
    target = await service.target(tenant)
    busy = FetchRequest("GET", "/busy", "n=20000000", {}, b"", "r")
    seen: set[int] = set()

    async def sample() -> None:
        while True:
            seen.add(service.running(tenant))
            await asyncio.sleep(0.001)
    sampler = asyncio.create_task(sample())
    outcomes = await asyncio.gather(*(service.run(target, busy, structlog.get_logger())
                                      for _ in range(4)))
    sampler.cancel()
    assert [200] * 4 == [o.status for o in outcomes if isinstance(o, FetchResponse)]
    assert {0, 1} >= seen and 1 in seen
