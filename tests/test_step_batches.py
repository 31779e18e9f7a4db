"""Step batches (ABI proposal 0002): steps past the journal's end run without asking.

What a user must not be able to tell, apart from speed: the journal, the retries, the
trap attribution and the errors are those of steps asked for one by one. And a guest that
lies in its batch errors its own instance with a clear reason.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from helpers import (
    change_workflow_under,
    register_guest,
    run_workflow,
    settle,
    start,
    wat_guest,
)

from host import DurableEngine, ManualClock, Status, TenantId

_DESCRIPTOR = 1024  # where the WAT guests keep their batch descriptor
_RECORDS = 2048
_NAME = 4096


def _journal(status: Any) -> list[tuple[Any, ...]]:
    """What replay depends on, without the times."""
    return [(s["position"], s["kind"], s["name"], s["occurrence"], s["state"], s["result"],
             s["attempts"], s["error"]) for s in status.steps]


@pytest.fixture
async def batchkit(engine: DurableEngine) -> TenantId:
    return await register_guest(engine, "batchkit", "batchkit")


async def test_batched_steps_journal_exactly_what_asked_for_steps_journal(
        engine: DurableEngine, kit: TenantId) -> None:
    batched = await run_workflow(engine, kit, "steps", {"count": 37})
    asked = await run_workflow(engine, kit, "steps", {"count": 37, "unbatched": True})
    assert (Status.COMPLETE, {"count": 37}) == (batched.status, batched.output)
    assert _journal(asked) == _journal(batched)
    assert 37 == len(batched.steps)


async def test_after_a_sleep_recorded_steps_replay_and_new_ones_batch_again(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, batchkit, "around", {"count": 20})
    assert Status.WAITING is (await settle(engine, batchkit, instance)).status
    clock.advance(1000)
    status = await settle(engine, batchkit, instance)
    assert (Status.COMPLETE, 40) == (status.status, status.output)
    assert [*range(20), 20, *range(21, 41)] == [s["position"] for s in status.steps]
    assert all(s["state"] == "ok" for s in status.steps)
    assert [1] * 40 == [s["attempts"] for s in status.steps if s["kind"] == "do"]


async def test_a_trap_in_a_batched_step_is_a_failed_attempt_of_that_step_alone(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, batchkit, "trap_once", {"count": 5})
    status = await settle(engine, batchkit, instance)
    assert Status.WAITING is status.status  # the default retry policy: 10 s first
    assert [("step", "ok")] * 5 + [("boom", "pending")] == [
        (s["name"], s["state"]) for s in status.steps]
    boom = status.steps[5]
    assert 1 == boom["attempts"] and "GuestTrap" == boom["error"]["name"]
    assert "unreachable" in boom["error"]["message"]
    clock.advance(10_000)
    status = await settle(engine, batchkit, instance)
    assert (Status.COMPLETE, 6) == (status.status, status.output)
    assert [1] * 5 + [2] == [s["attempts"] for s in status.steps]
    assert {"i": 5, "attempt": 2} == status.steps[5]["result"]


async def test_a_failed_batched_step_retries_like_an_asked_for_one(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock) -> None:
    instance = await start(engine, batchkit, "fail_once", {"count": 3})
    status = await settle(engine, batchkit, instance)
    assert Status.WAITING is status.status
    flaky = status.steps[3]
    assert ("flaky", 1, {"name": "FirstAttempt", "message": "the first attempt fails"}) == (
        flaky["name"], flaky["attempts"], flaky["error"])
    clock.advance(10_000)
    status = await settle(engine, batchkit, instance)
    assert (Status.COMPLETE, 4) == (status.status, status.output)
    assert {"i": 3, "attempt": 2} == status.steps[3]["result"]


async def test_a_durable_call_inside_a_batched_step_body_is_refused(
        engine: DurableEngine, batchkit: TenantId) -> None:
    status = await run_workflow(engine, batchkit, "nested")
    assert Status.ERRORED is status.status
    assert status.error is not None and "AbiViolation" == status.error["name"]
    assert "step 'outer' (batched) is still running: now cannot be called inside a step " \
           "body" == status.error["message"]


async def test_a_pause_asked_before_the_run_stops_after_the_first_step(
        engine: DurableEngine, kit: TenantId) -> None:
    instance = await start(engine, kit, "steps", {"count": 10})
    [claim] = await engine.claim_due(1)
    await engine.instances.pause(kit, instance)  # claimed, not yet running: waitingForPause
    await engine.run_claimed(claim)
    status = await engine.instances.status(kit, instance)
    assert (Status.PAUSED, 1) == (status.status, len(status.steps))


# -- guests that lie in their batch (WAT: what the SDK would never write) ------------


def _descriptor(records: tuple[int, int] = (0, 0), running: tuple[int, int] = (0, 0),
                replayed: int = 0) -> bytes:
    return struct.pack("<IIIII", *records, *running, replayed)


def _records(*steps: tuple[Any, Any]) -> bytes:
    return b"".join(msgpack.packb(name) + msgpack.packb(result) for name, result in steps)


def _batch_guest(descriptor: bytes, records: bytes = b"", after: str = "",
                 times: int = 1) -> bytes:
    """Hands `descriptor` (at 1024, records at 2048, the name "x" at 4096) to
    step_batch `times` times, then runs `after` and completes."""
    calls = f"(call $step_batch (i32.const {_DESCRIPTOR})) " * times
    return wat_guest(["step_batch", "sleep", "step_do"], f"{calls} {after} i32.const 0",
                     {_DESCRIPTOR: descriptor, _RECORDS: records or b"\0", _NAME: b"x"})


_DEEP = msgpack.packb("a") + b"\x91" * 200 + b"\x01"  # a result 200 levels deep
_TIMESTAMP = _records(("a", msgpack.Timestamp(1, 0)))


async def _run_guest(engine: DurableEngine, wasm: bytes, **limits: int) -> Any:
    tenant = TenantId("liar")
    await engine.registry.register(tenant, wasm)
    if limits:
        await engine.registry.set_limits(tenant, limits)
    return await run_workflow(engine, tenant, "raw")


async def test_steps_handed_over_are_taken_once(engine: DurableEngine) -> None:
    records = _records(("a", None), ("b", {"k": 1}))
    status = await _run_guest(engine, _batch_guest(
        _descriptor((_RECORDS, len(records))), records, times=2))
    assert Status.COMPLETE is status.status
    assert [("a", None), ("b", {"k": 1})] == [(s["name"], s["result"]) for s in status.steps]


async def test_a_trapping_guest_journals_its_batch_and_fails_the_running_step(
        engine: DurableEngine) -> None:
    records = _records(("a", 1), ("b", 2))
    status = await _run_guest(engine, _batch_guest(
        _descriptor((_RECORDS, len(records)), (_NAME, 1)), records, after="unreachable"))
    assert Status.WAITING is status.status  # "x" waits for its retry
    assert [("a", "ok", 1), ("b", "ok", 1), ("x", "pending", 1)] == [
        (s["name"], s["state"], s["attempts"]) for s in status.steps]


@pytest.mark.parametrize(("descriptor", "records", "after", "limits", "error"), [
    pytest.param(None, b"", "", {}, ("AbiViolation", "step batch descriptor is a NULL pointer"),
                 id="null-descriptor"),
    pytest.param(_descriptor((0x7FFF0000, 10)), b"", "", {},
                 ("AbiViolation", "step batch records (ptr=2147418112, len=10) is outside"),
                 id="records-outside-memory"),
    pytest.param(_descriptor((_RECORDS, 1)), b"\xc1", "", {},
                 ("AbiViolation", "step batch records are not valid msgpack"),
                 id="garbage-records"),
    pytest.param(_descriptor((_RECORDS, 2)), _records(("a", None))[:2], "", {},
                 ("AbiViolation", "must alternate a step name and its result"),
                 id="name-without-result"),
    pytest.param(_descriptor((_RECORDS, 2)), _records((7, None)), "", {},
                 ("AbiViolation", "a step name in a batch is int, not a string"),
                 id="name-not-a-string"),
    pytest.param(_descriptor((_RECORDS, 2)), _records(("", None)), "", {},
                 ("AbiViolation", "step name must be 1-256 bytes, got 0"), id="empty-name"),
    pytest.param(_descriptor((_RECORDS, 65 * 3)), _records(*[("a", None)] * 65), "", {},
                 ("AbiViolation", "a step batch holds 65 steps; at most 64 per call"),
                 id="too-many-steps"),
    pytest.param(_descriptor((_RECORDS, 2 + 202)), _records(("a", b"x" * 200)), "",
                 {"max_payload_bytes": 100},
                 ("PayloadTooLarge", "result of step 'a' is 202 bytes, over the limit of 100"),
                 id="result-too-large"),
    pytest.param(_descriptor((_RECORDS, len(_DEEP))), _DEEP, "", {},
                 ("AbiViolation", "step batch records hold a value that is nested more than "
                                  "128 levels"), id="result-nested-too-deep"),
    pytest.param(_descriptor((_RECORDS, len(_TIMESTAMP))), _TIMESTAMP, "", {},
                 ("AbiViolation", "step batch records hold a value that holds a Timestamp"),
                 id="timestamp-result"),
    pytest.param(_descriptor(running=(_NAME, 1)), b"", "", {},
                 ("AbiViolation", "dwf_run returned while batched step 'x' was running"),
                 id="returns-while-running"),
    pytest.param(_descriptor(running=(0x7FFF0000, 1)), b"", "unreachable", {},
                 ("AbiViolation", "batched step name (ptr=2147418112, len=1) is outside"),
                 id="traps-with-a-bad-running-name"),
    pytest.param(_descriptor(running=(_NAME, 1)), b"",
                 f"(call $sleep (i32.const {_NAME}) (i32.const 1) (i64.const 10))", {},
                 ("AbiViolation", "step 'x' (batched) is still running: sleep cannot be "
                                  "called inside a step body"),
                 id="sleeps-inside-a-batched-step"),
])
async def test_a_lying_batch_errors_its_own_instance_clearly(
        engine: DurableEngine, descriptor: bytes | None, records: bytes, after: str,
        limits: dict[str, int], error: tuple[str, str]) -> None:
    wasm = (_batch_guest(descriptor, records, after) if descriptor is not None
            else wat_guest(["step_batch"], "(call $step_batch (i32.const 0)) i32.const 0"))
    status = await _run_guest(engine, wasm, **limits)
    assert Status.ERRORED is status.status
    assert status.error is not None
    assert error[0] == status.error["name"]
    assert error[1] in status.error["message"]


async def test_a_batch_may_not_claim_a_recorded_position(engine: DurableEngine,
                                                         clock: ManualClock) -> None:
    # First run: "a" handed over, then a sleep. On the wake the guest hands "a" over
    # again at position 0, which the journal already holds.
    records = _records(("a", None))
    wasm = _batch_guest(_descriptor((_RECORDS, len(records))), records,
                        after=f"(call $sleep (i32.const {_NAME}) (i32.const 1) "
                              "(i64.const 1000))")
    tenant = TenantId("liar")
    await engine.registry.register(tenant, wasm)
    instance = await start(engine, tenant, "raw")
    assert Status.WAITING is (await settle(engine, tenant, instance)).status
    clock.advance(1000)
    status = await settle(engine, tenant, instance)
    assert Status.ERRORED is status.status
    assert status.error is not None and "AbiViolation" == status.error["name"]
    assert "step 'a' came in a batch at journal position 0, which is recorded" in (
        status.error["message"])


async def test_a_wake_loads_the_journal_exactly_as_recorded(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock) -> None:
    from host.store.sqlite.rows import load_journal, record_from_row

    # ok steps, a failed attempt waiting for its retry (error, wake time), a trap's message.
    instance = await start(engine, batchkit, "trap_once", {"count": 2})
    await settle(engine, batchkit, instance)
    rows = await engine.store.db.fetchall(
        "SELECT * FROM steps WHERE tenant_id = ? AND instance_id = ? ORDER BY position",
        (batchkit, instance))
    loaded = engine.store.db.read_blocking(lambda conn: load_journal(conn, batchkit, instance))
    assert [record_from_row(row) for row in rows] == loaded
    assert ["ok", "ok", "pending"] == [record.state.value for record in loaded]
    assert loaded[2].error_name == "GuestTrap" and loaded[2].wake_at_ms is not None


# -- replay from the event ---------------------------------------------------------


async def test_a_wake_answers_recorded_steps_in_the_guest_and_asks_for_none(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from host.sandbox import guest as sandbox

    asked: list[str] = []
    original = sandbox._Invocation._import_step_do

    def counting(self: Any, caller: int, *args: int) -> int:
        asked.append("step_do")
        return original(self, caller, *args)

    monkeypatch.setattr(sandbox._Invocation, "_import_step_do", counting)
    instance = await start(engine, batchkit, "around", {"count": 30})
    await settle(engine, batchkit, instance)
    clock.advance(1000)
    status = await settle(engine, batchkit, instance)
    assert (Status.COMPLETE, 60) == (status.status, status.output)
    assert [] == asked  # 30 replayed from the event, 30 batched


async def test_a_guest_claiming_replays_the_journal_lacks_errors_clearly(
        engine: DurableEngine) -> None:
    # A new instance: nothing is recorded, so nothing can have been replayed.
    status = await _run_guest(engine, _batch_guest(_descriptor(replayed=2)))
    assert Status.ERRORED is status.status
    assert status.error is not None and "AbiViolation" == status.error["name"]
    assert "journal position 0 was replayed from the event, which holds no completed step" \
        in status.error["message"]


async def test_replays_claimed_after_the_host_answered_a_call_are_refused(
        engine: DurableEngine) -> None:
    # step_do "x" (position 0, asked), then the guest bumps `replayed` and sleeps.
    after = (f"(call $step_do (i32.const {_NAME}) (i32.const 1) (i32.const 0) (i32.const 0) "
             f"(i32.const 3000)) drop (i32.store (i32.const {_DESCRIPTOR + 16}) (i32.const 1)) "
             f"(call $sleep (i32.const {_NAME}) (i32.const 1) (i64.const 10))")
    status = await _run_guest(engine, _batch_guest(_descriptor(), after=after))
    assert Status.ERRORED is status.status
    assert status.error is not None and "AbiViolation" == status.error["name"]
    assert "replayed steps come first" in status.error["message"]


async def test_a_mismatch_after_steps_replayed_in_the_guest_names_its_position(
        engine: DurableEngine, batchkit: TenantId, clock: ManualClock) -> None:
    # Recorded: 20 steps, then the sleep "nap". Woken as trap_once (same params), the
    # guest replays the 20 steps itself, then asks for step "boom" where "nap" was.
    instance = await start(engine, batchkit, "around", {"count": 20})
    await settle(engine, batchkit, instance)
    await change_workflow_under(engine, instance, "trap_once")
    clock.advance(1000)
    status = await settle(engine, batchkit, instance)
    assert Status.ERRORED is status.status
    assert status.error is not None and "NondeterminismError" == status.error["name"]
    assert "position 20 was sleep 'nap' when recorded, is do 'boom' now" in (
        status.error["message"])


def test_the_events_replay_stops_at_the_first_step_not_completed_and_within_budget() -> None:
    from host.core import codec
    from host.core.model import StepKind, StepRecord, StepState
    from host.sandbox.step_batch import replay_prefix

    def done(position: int, kind: StepKind = StepKind.DO,
             state: StepState = StepState.OK) -> StepRecord:
        return StepRecord(position, kind, f"s{position}", 1, state, 0,
                          codec.pack(b"x" * 100))

    records = [done(0), done(1), done(2, StepKind.SLEEP), done(3)]
    assert [["s0", b"x" * 100], ["s1", b"x" * 100]] == codec.unpack(
        replay_prefix(records, 64 * 1024 * 1024) or b"")
    failed = [done(0, state=StepState.ERROR), done(1)]
    assert None is replay_prefix(failed, 64 * 1024 * 1024)
    # 16 * 250 bytes of memory: room for 250 bytes of results, so two of 103 bytes each.
    many = [done(position) for position in range(10)]
    assert 2 == len(codec.unpack(replay_prefix(many, 16 * 250) or b""))
