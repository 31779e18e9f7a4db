"""The guest `log` import: a per-invocation budget, then one "log truncated" note.

Without one, a guest logging 16 KiB messages in a loop wrote 488 MB of host log in 3.7 s.
And a `log` call is a slice like any other: one that does not fit in memory is refused.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from helpers import run_workflow, settle, wat_guest

from host import DurableEngine, ManualClock, Status, TenantId
from host.core.limits import TenantLimits

_TEXT = 16384  # where the logging guest keeps its message


def _logger(count: int, size: int) -> bytes:
    """A guest that logs a `size`-byte message `count` times, then completes."""
    return wat_guest(["log"], f"""(local $i i32)
        (loop $more
          (call $log (i32.const 1) (i32.const {_TEXT}) (i32.const {size}))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const {count}))))
        i32.const 0""", {_TEXT: b"x" * size})


async def _logged(engine: DurableEngine, wasm: bytes,
                  **limits: int) -> tuple[Any, list[dict[str, Any]]]:
    tenant = TenantId("chatty")
    await engine.registry.register(tenant, wasm)
    if limits:
        await engine.registry.set_limits(tenant, limits)
    with structlog.testing.capture_logs() as logs:
        status = await run_workflow(engine, tenant, "raw")
    return status, [e for e in logs if e["event"] in ("guest.log", "guest.log_truncated")]


async def test_a_flood_of_log_lines_stops_at_the_line_budget_with_one_note(
        engine: DurableEngine) -> None:
    lines = TenantLimits().max_log_lines
    status, logged = await _logged(engine, _logger(lines * 5, 10))
    assert Status.COMPLETE is status.status  # logging too much is not an error
    assert [("guest.log", "x" * 10)] * lines == [
        (e["event"], e["message"]) for e in logged[:-1]]
    assert "guest.log_truncated" == logged[-1]["event"]
    assert (f"log truncated: this invocation reached its limit of {lines} lines "
            "(max_log_lines); its later log calls are dropped") == logged[-1]["message"]


async def test_big_messages_stop_at_the_byte_budget(engine: DurableEngine) -> None:
    budget = TenantLimits().max_log_bytes
    status, logged = await _logged(engine, _logger(200, 16384))
    assert Status.COMPLETE is status.status
    kept = [e for e in logged if e["event"] == "guest.log"]
    assert budget // 16384 == len(kept)
    assert budget >= sum(len(e["message"]) for e in kept)
    assert ["guest.log_truncated"] == [e["event"] for e in logged[len(kept):]]
    assert "limit of 262144 bytes (max_log_bytes)" in logged[-1]["message"]


async def test_the_log_budget_is_a_tenant_limit(engine: DurableEngine) -> None:
    _, logged = await _logged(engine, _logger(50, 10), max_log_lines=3)
    assert ["guest.log"] * 3 + ["guest.log_truncated"] == [e["event"] for e in logged]


async def test_each_invocation_has_its_own_log_budget(engine: DurableEngine,
                                                     clock: ManualClock) -> None:
    """Two lines, a sleep, and on waking the same two lines again (a replay re-runs the
    code between steps): two invocations, each within its budget of two lines."""
    wasm = wat_guest(["log", "sleep"], f"""
        (call $log (i32.const 1) (i32.const {_TEXT}) (i32.const 3))
        (call $log (i32.const 1) (i32.const {_TEXT}) (i32.const 3))
        (call $sleep (i32.const {_TEXT}) (i32.const 1) (i64.const 1000))
        i32.const 0""", {_TEXT: b"abc"})
    tenant = TenantId("chatty")
    await engine.registry.register(tenant, wasm)
    await engine.registry.set_limits(tenant, {"max_log_lines": 2})
    with structlog.testing.capture_logs() as logs:
        instance = await engine.instances.create(tenant, "raw")
        await engine.run_until_idle()
        clock.advance(1000)
        status = await settle(engine, tenant, instance)
    assert Status.COMPLETE is status.status
    assert ["guest.log"] * 4 == [e["event"] for e in logs if e["event"].startswith("guest.")]


@pytest.mark.parametrize(("ptr", "length"), [(_TEXT, 0x7FFFFFFF), (131_000, 100_000)])
async def test_a_log_slice_outside_memory_is_refused_not_truncated(
        engine: DurableEngine, ptr: int, length: int) -> None:
    wasm = wat_guest(["log"], f"(call $log (i32.const 1) (i32.const {ptr}) "
                              f"(i32.const {length})) i32.const 0", {_TEXT: b"hello"})
    status, _ = await _logged(engine, wasm)
    assert Status.ERRORED is status.status
    assert {"name": "AbiViolation",
            "message": f"log message (ptr={ptr}, len={length}) is outside guest memory of "
                       "131072 bytes"} == status.error


async def test_a_bad_log_slice_is_refused_even_past_the_budget(engine: DurableEngine) -> None:
    wasm = wat_guest(["log"], f"""
        (call $log (i32.const 1) (i32.const {_TEXT}) (i32.const 5))
        (call $log (i32.const 1) (i32.const {_TEXT}) (i32.const 0x7FFFFFFF))
        i32.const 0""", {_TEXT: b"hello"})
    status, _ = await _logged(engine, wasm, max_log_lines=1)
    assert status.error is not None and "AbiViolation" == status.error["name"]
