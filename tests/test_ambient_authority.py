"""No ambient authority: no WASI, no clock or entropy except journaled host calls."""

from __future__ import annotations

import base64

import pytest
import wasmtime
from helpers import register_guest, settle, start

from host import DurableEngine, InvalidModule, ManualClock, Status, TenantId


async def test_time_and_randomness_are_journaled_and_replayed(
        engine: DurableEngine, built, clock: ManualClock) -> None:
    tenant = await register_guest(engine, "ambient", "ambient")
    instance = await start(engine, tenant, "clock", {"ms": 5000})
    started_at = clock.now_ms()
    status = await settle(engine, tenant, instance)
    assert status.status is Status.WAITING
    recorded = {s["name"]: s for s in status.steps}
    nonce = recorded["nonce"]["result"]

    clock.advance(5000)  # the replay runs at a later time, with fresh entropy available
    status = await settle(engine, tenant, instance)
    assert status.status is Status.COMPLETE
    assert status.output is not None
    assert (started_at, started_at + 5000) == (status.output["started"], status.output["woke"])
    # The output was computed by the replay, which got the bytes recorded before the sleep.
    assert nonce["$base64"] == base64.b64encode(status.output["nonce"]).decode()
    assert len(status.output["nonce"]) == 16
    assert [("now", "started"), ("random", "nonce"), ("sleep", "nap"), ("now", "woke")] == [
        (s["kind"], s["name"]) for s in status.steps]


async def test_random_is_capped(engine: DurableEngine, built) -> None:
    tenant = await register_guest(engine, "ambient", "ambient")
    status = await settle(engine, tenant, await start(engine, tenant, "greedy_random"))
    assert {"name": "AbiViolation",
            "message": "random 'too-much' asked for 4097 bytes; at most 4096 per call"
            } == status.error


@pytest.mark.parametrize("imported", [
    '(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))',
    '(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))',
    '(import "wasi_snapshot_preview1" "path_open"'
    ' (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))',
    '(import "env" "socket" (func (param i32) (result i32)))',
    '(import "dwf" "tcp_connect" (func (param i32 i32) (result i32)))',
])
async def test_modules_asking_for_other_capabilities_are_refused(
        engine: DurableEngine, imported: str) -> None:
    wasm = wasmtime.wat2wasm(f"(module {imported})")
    with pytest.raises(InvalidModule, match="which the host does not provide"):
        await engine.registry.register(TenantId("greedy"), wasm)
