"""Bad input gets a clear, specific error and changes nothing."""

from __future__ import annotations

import pytest
import wasmtime
from helpers import sql, start

from host import (
    DuplicateInstance,
    DurableEngine,
    InvalidInput,
    InvalidModule,
    TenantId,
    UnknownTenant,
    UnknownWorkflow,
)


async def _assert_registry_unchanged(engine: DurableEngine, tenant: TenantId,
                                     versions: int) -> None:
    assert len(await engine.registry.versions(tenant)) == versions


async def test_unknown_tenant(engine: DurableEngine) -> None:
    with pytest.raises(UnknownTenant, match="nobody"):
        await engine.instances.create(TenantId("nobody"), "echo", {})


async def test_unknown_workflow_names_the_known_ones(engine: DurableEngine,
                                                     kit: TenantId) -> None:
    with pytest.raises(UnknownWorkflow, match="no workflow 'nope'.*echo"):
        await engine.instances.create(kit, "nope", {})


async def test_duplicate_instance_id(engine: DurableEngine, kit: TenantId) -> None:
    await start(engine, kit, "echo", 1, id="order-1")
    with pytest.raises(DuplicateInstance, match="order-1"):
        await start(engine, kit, "echo", 2, id="order-1")
    assert (await engine.instances.status(kit, "order-1")).params == 1


@pytest.mark.parametrize("bad_id", ["", "-leading-dash", "has space", "x" * 101, "ünï"])
async def test_invalid_instance_ids(engine: DurableEngine, kit: TenantId, bad_id: str) -> None:
    with pytest.raises(InvalidInput, match="invalid instance id"):
        await start(engine, kit, "echo", None, id=bad_id)


async def test_batch_is_all_or_nothing(engine: DurableEngine, kit: TenantId) -> None:
    from host import InstanceRequest
    with pytest.raises(UnknownWorkflow):
        await engine.instances.create_batch(kit, [InstanceRequest("echo", 1, "a"),
                                                  InstanceRequest("missing", 2, "b")])
    assert await engine.instances.list(kit) == []


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a WebAssembly module"),
    (b"#!/bin/sh\necho hi\n", "not a WebAssembly module"),
    (b"\0asm\x01\0\0\0\x01\xff", "invalid WebAssembly"),
])
async def test_register_rejects_non_wasm_and_truncated_files(
        engine: DurableEngine, kit: TenantId, data: bytes, message: str) -> None:
    with pytest.raises(InvalidModule, match=message):
        await engine.registry.register(kit, data)
    await _assert_registry_unchanged(engine, kit, 1)


async def test_register_rejects_a_truncated_real_module(
        engine: DurableEngine, kit: TenantId, testkit_wasm: bytes) -> None:
    with pytest.raises(InvalidModule, match="invalid WebAssembly"):
        await engine.registry.register(kit, testkit_wasm[: len(testkit_wasm) // 2])
    await _assert_registry_unchanged(engine, kit, 1)


async def test_register_rejects_a_module_missing_exports(engine: DurableEngine,
                                                         kit: TenantId) -> None:
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1)'
                             ' (func (export "dwf_run") (param i32 i32) (result i32) i32.const 0))')
    with pytest.raises(InvalidModule, match="does not export `dwf_alloc`"):
        await engine.registry.register(kit, wasm)
    await _assert_registry_unchanged(engine, kit, 1)


async def test_register_rejects_wasi_and_unknown_imports(engine: DurableEngine) -> None:
    wasm = wasmtime.wat2wasm('(module (import "wasi_snapshot_preview1" "fd_write"'
                             ' (func (param i32 i32 i32 i32) (result i32))))')
    with pytest.raises(InvalidModule, match="no WASI"):
        await engine.registry.register(TenantId("fresh"), wasm)
    assert await engine.registry.tenants() == []


async def test_register_rejects_wrong_export_signatures(engine: DurableEngine) -> None:
    wasm = wasmtime.wat2wasm("""(module (memory (export "memory") 1)
      (func (export "dwf_abi_version") (result i32) i32.const 1)
      (func (export "dwf_alloc") (param i64) (result i32) i32.const 0)
      (func (export "dwf_free") (param i32 i32))
      (func (export "dwf_describe") (result i32) i32.const 0)
      (func (export "dwf_run") (param i32 i32) (result i32) i32.const 0))""")
    with pytest.raises(InvalidModule, match="exports `dwf_alloc` with the wrong signature"):
        await engine.registry.register(TenantId("fresh"), wasm)


async def test_oversized_params_and_event_payloads_are_refused(engine: DurableEngine,
                                                               kit: TenantId) -> None:
    await engine.registry.set_limits(kit, {"max_payload_bytes": 1024})
    with pytest.raises(InvalidInput, match="over the tenant's limit of 1024 bytes"):
        await start(engine, kit, "echo", "x" * 2000)
    instance = await start(engine, kit, "waiter", {"type": "t", "timeout_ms": 1000})
    with pytest.raises(InvalidInput, match="event payload is .* over the tenant's limit"):
        await engine.instances.send_event(kit, instance, "t", "x" * 2000)
    [row] = await sql(engine, "SELECT COUNT(*) AS n FROM events")
    assert row["n"] == 0
