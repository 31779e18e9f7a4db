"""A guest abusing the ABI (bad slices, garbage payloads, calls out of order) fails only
its own instance, with a specific error, and never makes the host read or write out of
bounds."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest
import wasmtime
from helpers import register_guest, run_workflow

from host import DurableEngine, Status, TenantId


@pytest.mark.parametrize(("case", "message"), [
    ("step_ok", "result of step 'oob' (ptr=2146435072, len=32) is outside guest memory"),
    ("log", "log message (ptr=2146435072, len=64) is outside guest memory"),
    ("null", "log message is a NULL pointer"),
    ("wrap", "workflow output (ptr=4294967040, len=512) is outside guest memory"),
    ("out_slot", "out slot pointer 2146435072 is outside guest memory"),
])
async def test_bad_slices_are_abi_violations(engine: DurableEngine, built, case: str,
                                             message: str) -> None:
    tenant = await register_guest(engine, "evil", "bad_pointer")
    status = await run_workflow(engine, tenant, "oob", {"case": case})
    assert status.status is Status.ERRORED
    assert status.error is not None
    assert ("AbiViolation", message) == (status.error["name"],
                                          status.error["message"][:len(message)])


@pytest.mark.parametrize("case", ["reserved", "truncated", "trailing", "map", "empty"])
@pytest.mark.parametrize(("target", "what"), [
    ("step_ok", "result of step 'garbage'"), ("output", "workflow output"),
    ("error", "workflow error"),
])
async def test_garbage_payloads_are_abi_violations(engine: DurableEngine, built, case: str,
                                                   target: str, what: str) -> None:
    tenant = await register_guest(engine, "evil", "garbage")
    status = await run_workflow(engine, tenant, "garbage", {"case": case, "target": target})
    assert status.status is Status.ERRORED
    assert status.error is not None
    assert status.error["name"] == "AbiViolation"
    assert status.error["message"].startswith(f"{what} is not valid msgpack")


MANIFEST = msgpack.packb({"abi": 1, "sdk": "wat", "workflows": ["raw"]})


def _raw(body: str) -> bytes:
    """An ABI-shaped module whose dwf_run is `body` (WAT), for call-order abuse."""
    manifest = "".join(f"\\{byte:02x}" for byte in MANIFEST)
    return wasmtime.wat2wasm(f"""(module
      (import "dwf" "step_do" (func $step_do (param i32 i32 i32 i32 i32) (result i32)))
      (import "dwf" "step_ok" (func $step_ok (param i32 i32)))
      (import "dwf" "sleep" (func $sleep (param i32 i32 i64)))
      (import "dwf" "set_output" (func $set_output (param i32 i32)))
      (memory (export "memory") 2)
      (data (i32.const 16) "first")
      (data (i32.const 32) "\\c0")
      (data (i32.const 64) "{manifest}")
      (global $heap (mut i32) (i32.const 4096))
      (func (export "dwf_abi_version") (result i32) i32.const 1)
      (func (export "dwf_alloc") (param $n i32) (result i32)
        (local $p i32) global.get $heap local.set $p
        global.get $heap local.get $n i32.add i32.const 7 i32.add i32.const -8 i32.and
        global.set $heap local.get $p)
      (func (export "dwf_free") (param i32 i32))
      (func (export "dwf_describe") (result i32)
        (call $set_output (i32.const 64) (i32.const {len(MANIFEST)})) i32.const 0)
      (func (export "dwf_run") (param i32 i32) (result i32) {body}))""")


async def test_step_ok_without_a_running_step(engine: DurableEngine) -> None:
    wasm = _raw("(call $step_ok (i32.const 32) (i32.const 1)) i32.const 0")
    await engine.registry.register(TenantId("raw"), wasm)
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert {"name": "AbiViolation",
            "message": "step_ok called with no step running (call step_do first)"} == status.error


async def test_durable_call_inside_a_running_step(engine: DurableEngine) -> None:
    wasm = _raw("""(drop (call $step_do (i32.const 16) (i32.const 5) (i32.const 0) (i32.const 0)
                              (i32.const 8)))
                   (call $sleep (i32.const 16) (i32.const 5) (i64.const 10)) i32.const 0""")
    await engine.registry.register(TenantId("raw"), wasm)
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert {"name": "AbiViolation",
            "message": "step 'first' is still running: call step_ok or step_fail before "
                       "starting sleep 'first'"} == status.error


async def test_unexpected_run_return_code(engine: DurableEngine) -> None:
    await engine.registry.register(TenantId("raw"), _raw("i32.const 7"))
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert {"name": "AbiViolation",
            "message": "dwf_run returned 7; expected 0 (complete) or 1 (failed)"} == status.error


async def test_abi_version_mismatch_is_refused_at_registration(engine: DurableEngine) -> None:
    from host import InvalidModule
    wasm = _raw("i32.const 0").replace(b"\x41\x01\x0b", b"\x41\x02\x0b", 1)
    with pytest.raises(InvalidModule, match="speaks ABI v2"):
        await engine.registry.register(TenantId("raw"), wasm)
