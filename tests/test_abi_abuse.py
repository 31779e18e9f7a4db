"""A guest abusing the ABI (bad slices, garbage payloads, calls out of order) fails only
its own instance, with a specific error, and never makes the host read or write out of
bounds."""

from __future__ import annotations

import pytest
from helpers import register_guest, run_workflow, wat_guest

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


def _raw(body: str) -> bytes:
    """An ABI-shaped module whose dwf_run is `body` (WAT), for call-order abuse."""
    return wat_guest(["step_do", "step_ok", "sleep"], body,
                     {16: b"first", 32: b"\xc0"})


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


async def test_a_step_ok_from_inside_dwf_alloc_is_refused(engine: DurableEngine) -> None:
    """The host calls dwf_alloc from inside step_do to hand over its answer: a step_ok
    from in there would journal the step as done before its body ever ran."""
    wasm = wat_guest(
        ["step_do", "step_ok"],
        """(global.set $armed (i32.const 1))
           (drop (call $step_do (i32.const 16) (i32.const 5) (i32.const 0) (i32.const 0)
                               (i32.const 8)))
           i32.const 0""",
        {16: b"first", 32: b"\xc0"}, extra="(global $armed (mut i32) (i32.const 0))",
        alloc_hook="""(if (global.get $armed) (then (global.set $armed (i32.const 0))
                        (call $step_ok (i32.const 32) (i32.const 1))))""")
    await engine.registry.register(TenantId("raw"), wasm)
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert Status.ERRORED is status.status
    assert {"name": "AbiViolation",
            "message": "step_ok was called from inside dwf_alloc: the allocator must not call "
                       "host imports (the host calls it from inside an import, to hand a "
                       "result over)"} == status.error
    assert "ok" not in [s["state"] for s in status.steps]


@pytest.mark.parametrize("call", ["(drop (call $now (i32.const 16) (i32.const 5)))",
                                  "(call $log (i32.const 1) (i32.const 16) (i32.const 5))"])
async def test_a_start_function_calling_an_import_is_refused_with_its_reason(
        engine: DurableEngine, call: str) -> None:
    from host import InvalidModule
    wasm = wat_guest(["now", "log"], "i32.const 0", {16: b"first"},
                     extra=f"(func $init {call}) (start $init)")
    with pytest.raises(InvalidModule, match=r"(now|log) was called from the module's start "
                                            r"function: dwf imports work only inside"):
        await engine.registry.register(TenantId("raw"), wasm)


async def test_a_start_function_failing_at_run_time_keeps_its_reason(
        engine: DurableEngine) -> None:
    """Its memory.grow succeeds at registration; under a smaller cap set afterwards it
    fails, and the start function then calls log."""
    wasm = wat_guest(["log"], "i32.const 0", {16: b"first"}, extra="""
        (func $init (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1))
                      (then (call $log (i32.const 1) (i32.const 16) (i32.const 5)))))
        (start $init)""")
    await engine.registry.register(TenantId("raw"), wasm)
    await engine.registry.set_limits(TenantId("raw"), {"memory_bytes": 16 * 1024 * 1024})
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert Status.ERRORED is status.status
    assert status.error is not None
    assert ("AbiViolation", "log was called from the module's start function") == (
        status.error["name"], status.error["message"][:len("log was called from the "
                                                           "module's start function")])


@pytest.mark.parametrize("version", [True, 1.0, "1"])
async def test_a_manifest_abi_must_be_the_integer_1(engine: DurableEngine,
                                                    version: object) -> None:
    import msgpack  # type: ignore[import-untyped]

    from host import InvalidModule
    manifest = msgpack.packb({"abi": version, "sdk": "wat", "workflows": ["raw"]})
    with pytest.raises(InvalidModule, match=r"manifest says abi .*; expected the integer 1"):
        await engine.registry.register(TenantId("raw"), wat_guest([], "i32.const 0",
                                                                 manifest=manifest))
