"""Many `dwf worker` processes on one PostgreSQL database: a killed one's instances are
taken over, a paused one that lost its lease can never commit over the new owner.

Real processes, a real server: each worker is a host of its own as far as the database can
tell (its own connections, lease and id). The ledger guest's step bodies log their runs,
so the logs are the ledger of side effects: each step must have run, and run twice only
when its worker lost it between the body and the checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILD
from helpers import sql
from workers import ledger_runs, log_entries, start_worker, wait_for_line

from host import DurableEngine, InstanceRequest, Status, TenantId
from host.durable.invocation import PIPELINE_WINDOW

pytestmark = pytest.mark.postgres_only("many workers share one database only on PostgreSQL")

LEDGER = TenantId("ledger")
WORKER_CONCURRENCY = 8
UNCOMMITTED_STEPS = PIPELINE_WINDOW // 2 + 1
"""At most this many steps of a run going back to back (a step and its zero-length sleep
are two journal rows) are uncommitted when its worker dies."""


async def _prepare(db: str, tmp_path: Path, requests: list[InstanceRequest]) -> list[str]:
    engine = await DurableEngine.open(db, artifacts=tmp_path / "artifacts")
    try:
        await engine.registry.register(LEDGER, (BUILD / "guests" / "ledger.wasm").read_bytes())
        await engine.registry.set_limits(LEDGER, {"max_concurrent_invocations": 64})
        return list(await engine.instances.create_batch(LEDGER, requests))
    finally:
        await engine.close()


async def _count(engine: DurableEngine, statement: str, *params: Any) -> int:
    [row] = await sql(engine, statement, *params)
    return int(row[0])


async def _wait_all_finished(engine: DurableEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _count(engine, "SELECT count(*) FROM instances WHERE status NOT IN "
                               "('complete', 'errored', 'terminated')"):
        assert time.monotonic() < deadline, "the instances did not all finish"
        await asyncio.sleep(0.1)


def _worker_id(log_path: Path) -> str:
    return str(json.loads(wait_for_line(log_path, '"worker.lease"'))["worker"])


async def _assert_every_step_once(engine: DurableEngine, ids: list[str], steps: int,
                                  events: dict[str, Any]) -> None:
    for instance in ids:
        status = await engine.instances.status(LEDGER, instance)
        expected: dict[str, Any] = {"steps": steps, "sum": sum(range(steps))}
        if instance in events:
            expected["event"] = events[instance]
        assert (Status.COMPLETE, expected) == (status.status, status.output), status.to_dict()
        work = [s for s in status.steps if s["kind"] == "do"]
        assert [({"i": i}, 1) for i in range(steps)] == [(s["result"], s["attempts"])
                                                         for s in work]


def _assert_each_completed_once(logs: list[Path]) -> None:
    """No instance was recorded complete by two workers: a stale one never won."""
    completions = [entry["instance_id"] for log in logs
                   for entry in log_entries(log, "instance.complete")]
    assert len(completions) == len(set(completions))


async def test_three_workers_one_killed_every_instance_completes_and_none_reruns_a_checkpoint(
        db: str, tmp_path: Path, built: Path) -> None:
    # Sleepers (a 20 ms sleep after each of 3 steps; the first 100 then wait for an event)
    # and, every tenth, a long run of steps back to back (running when the kill lands).
    instances, with_event = 500, 100
    shape = {n: (60, 0) if n % 10 == 9 else (3, 20) for n in range(instances)}  # steps, gap
    requests = [InstanceRequest("ledger", {"steps": shape[n][0], "gap_ms": shape[n][1],
                                           **({"event": "go"} if n < with_event else {})},
                                f"ledger-{n}") for n in range(instances)]
    ids = await _prepare(db, tmp_path, requests)
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    workers = [start_worker(db, log, "--concurrency", str(WORKER_CONCURRENCY),
                            "--lease-seconds", "3") for log in logs]
    engine = await DurableEngine.open(db, artifacts=tmp_path / "artifacts")
    events: dict[str, Any] = {}
    try:
        victim_id = _worker_id(logs[0])
        for log in logs[1:]:
            wait_for_line(log, "worker.started")
        for n in range(0, with_event, 2):  # half the events before the kill, half after
            events[ids[n]] = {"n": n}
            await engine.instances.send_event(LEDGER, ids[n], "go", events[ids[n]])
        held = "SELECT count(*) FROM instances WHERE owner = ? AND status = 'running'"
        deadline = time.monotonic() + 120
        while (await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do'") < 1500
               or not await _count(engine, held, victim_id)):
            assert time.monotonic() < deadline, "the workers made no progress"
            await asyncio.sleep(0.005)
        owned_at_kill = await _count(engine, held, victim_id)
        workers[0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        workers[0].wait()
        while await _count(engine, held, victim_id):
            assert time.monotonic() - killed_at < 60, "the killed worker's instances stayed"
            await asyncio.sleep(0.01)
        takeover_ms = (time.monotonic() - killed_at) * 1000

        for n in range(1, with_event, 2):
            events[ids[n]] = {"n": n}
            await engine.instances.send_event(LEDGER, ids[n], "go", events[ids[n]])
        await _wait_all_finished(engine, timeout=240)
        for process in workers[1:]:
            process.send_signal(signal.SIGTERM)
            assert 0 == process.wait(timeout=60)
        for n, instance in enumerate(ids):
            await _assert_every_step_once(engine, [instance], shape[n][0], events)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
        await engine.close()

    runs = ledger_runs(logs)
    assert {(i, f"ledger-run {s}") for n, i in enumerate(ids)
            for s in range(shape[n][0])} <= set(runs)
    reruns = sum(count - 1 for count in runs.values())
    # A body runs again only if its worker died before its checkpoint committed: at most
    # the uncommitted steps of each instance the killed worker was running.
    assert 0 < owned_at_kill <= WORKER_CONCURRENCY
    assert reruns <= owned_at_kill * UNCOMMITTED_STEPS, runs.most_common(5)
    _assert_each_completed_once(logs)
    taken = sum(len(log_entries(log, "worker.took_over")) for log in logs[1:])
    assert taken >= 1 or owned_at_kill == 0
    report = {"instances": instances, "workers": 3, "running_on_the_killed_worker":
              owned_at_kill, "takeover_ms": round(takeover_ms, 1), "step_reruns": reruns}
    (BUILD / "reports").mkdir(parents=True, exist_ok=True)
    (BUILD / "reports" / "takeover.json").write_text(json.dumps(report, indent=2))
    print(f"\ntakeover: {owned_at_kill} running instances of the SIGKILLed worker were "
          f"queued again after {takeover_ms:.0f} ms; {reruns} step bodies ran twice")


async def test_a_worker_paused_past_its_lease_is_refused_and_steps_back(
        db: str, tmp_path: Path, built: Path) -> None:
    instances, steps, lease = 12, 300, 2.0
    ids = await _prepare(db, tmp_path, [
        InstanceRequest("ledger", {"steps": steps, "gap_ms": 0}, f"ledger-{n}")
        for n in range(instances)])
    logs = [tmp_path / "paused.log", tmp_path / "successor.log"]
    paused = start_worker(db, logs[0], "--concurrency", "4", "--lease-seconds", str(lease))
    successor = None
    engine = await DurableEngine.open(db, artifacts=tmp_path / "artifacts")
    try:
        paused_id = _worker_id(logs[0])
        held = "SELECT count(*) FROM instances WHERE owner = ? AND status = 'running'"
        deadline = time.monotonic() + 60
        while (await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do'") < 100
               or not await _count(engine, held, paused_id)):
            assert time.monotonic() < deadline, "the worker made no progress"
            await asyncio.sleep(0.005)
        paused.send_signal(signal.SIGSTOP)  # a GC pause, a partition: it just stops
        stopped_at = time.monotonic()
        held_at_pause = await _count(engine, held, paused_id)

        successor = start_worker(db, logs[1], "--concurrency", "4", "--lease-seconds",
                                 str(lease))
        successor_id = _worker_id(logs[1])
        # Its lease runs out (its connections are still open: only the lease tells).
        while await _count(engine, held, paused_id):
            assert time.monotonic() - stopped_at < 60, "the paused worker kept its instances"
            await asyncio.sleep(0.02)
        assert time.monotonic() - stopped_at >= lease * 0.9, "taken over before the lease ran out"
        # The successor makes progress on them before the paused worker wakes up.
        progress = await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do'")
        while await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do'") < (
                progress + 40):
            assert time.monotonic() - stopped_at < 60
            await asyncio.sleep(0.02)
        paused.send_signal(signal.SIGCONT)

        await _wait_all_finished(engine, timeout=120)
        await _assert_every_step_once(engine, ids, steps, {})
        for process in (paused, successor):
            process.send_signal(signal.SIGTERM)
            assert 0 == process.wait(timeout=60)
    finally:
        for process in (paused, successor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
        await engine.close()

    # It learnt that its lease had lapsed, and its stale runs recorded nothing.
    assert log_entries(logs[0], "worker.lease_lapsed")
    stepped_back = (log_entries(logs[0], "instance.aborted")
                    + log_entries(logs[0], "instance.not_recorded"))
    assert held_at_pause > 0 and stepped_back, "the paused worker's runs never noticed"
    assert paused_id != successor_id
    runs = ledger_runs(logs)
    reruns = sum(count - 1 for count in runs.values())
    # At most, per run it had in flight: the steps uncommitted when it stopped (which the
    # successor ran again), and those its guest ran on after waking, before its first
    # refused write told it: none of their checkpoints ever committed.
    assert reruns <= held_at_pause * 2 * UNCOMMITTED_STEPS, runs.most_common(5)
    _assert_each_completed_once(logs)
    print(f"\nsplit brain: the paused worker held {held_at_pause} running instances, "
          f"{len(stepped_back)} of its runs stepped back, {reruns} step bodies ran twice")


async def _two_engines(db: str, tmp_path: Path) -> tuple[DurableEngine, DurableEngine]:
    """Two engines on one database: as two worker processes would be (own connections,
    own lease)."""
    return (await DurableEngine.open(db, artifacts=tmp_path / "artifacts"),
            await DurableEngine.open(db, artifacts=tmp_path / "artifacts"))


async def test_max_concurrent_invocations_holds_across_workers(
        db: str, tmp_path: Path, testkit_wasm: bytes) -> None:
    first, second = await _two_engines(db, tmp_path)
    try:
        hog, other = TenantId("hog"), TenantId("other")
        for tenant in (hog, other):
            await first.registry.register(tenant, testkit_wasm)
        await first.registry.set_limits(hog, {"max_concurrent_invocations": 3})
        await first.instances.create_batch(hog, [InstanceRequest("echo")] * 20)
        await first.instances.create_batch(other, [InstanceRequest("echo")] * 2)
        claimed = await asyncio.gather(first.claim_due(10), second.claim_due(10),
                                       first.claim_due(10), second.claim_due(10))
        taken = [claim for claims in claimed for claim in claims]
        assert len({c.instance_id for c in taken}) == len(taken), "an instance claimed twice"
        by_tenant = {t: sum(1 for c in taken if c.tenant_id == t) for t in (hog, other)}
        assert {hog: 3, other: 2} == by_tenant  # the cap held; the other tenant got its turn
        assert [] == await second.claim_due(10)
    finally:
        await first.close()
        await second.close()


async def test_new_instances_and_events_wake_the_other_workers(
        db: str, tmp_path: Path, testkit_wasm: bytes) -> None:
    first, second = await _two_engines(db, tmp_path)
    try:
        kit = TenantId("kit")
        await first.registry.register(kit, testkit_wasm)
        woken = asyncio.Event()
        await first.store.watch_due(woken.set)
        waiting = await second.instances.create(kit, "waiter", {"type": "t"})
        await asyncio.wait_for(woken.wait(), 30)  # a NOTIFY, from the other's commit
        await first.run_until_idle()
        assert Status.WAITING is (await first.instances.status(kit, waiting)).status
        woken.clear()
        await second.instances.send_event(kit, waiting, "t", {"ok": True})
        await asyncio.wait_for(woken.wait(), 30)
        await first.run_until_idle()
        assert Status.COMPLETE is (await first.instances.status(kit, waiting)).status
    finally:
        await first.close()
        await second.close()
