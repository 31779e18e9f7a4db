"""Deploying new code under instances in flight: check, upgrade, drain and prune.

The "order" workflow comes in three releases (tests/guests/order.h): v2 adds a step at
the end (compatible with every instance), v3 renames the step after the sleep (compatible
only with instances still sleeping).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import guest_wasm, orders_in_flight, settle, start, wat_guest
from remote import Remote, remote_fixture  # noqa: F401 - the `remote` fixture

from host import DurableEngine, InvalidState, ManualClock, NotFound, Status, TenantId
from host.core.errors import UploadInProgress
from host.durable.recorded_journal import Ending
from host.store.lifecycle import VersionMove, journal_digest

SHOP = TenantId("shop")


async def test_check_replays_every_unfinished_instance_against_the_candidate(
        engine: DurableEngine) -> None:
    sleeping, waiting, _ = await orders_in_flight(engine, SHOP)

    report = await engine.upgrades.check(SHOP, guest_wasm("order_v2"))
    assert report.compatible
    assert [(sleeping, Ending.FRONTIER, 1), (waiting, Ending.FRONTIER, 3)] == [
        (r.inputs.instance_id, r.stop.ending, r.stop.position) for r in report.instances]
    assert "the instance sleeps here (sleep 'cool-off')" == report.instances[0].stop.message

    report = await engine.upgrades.check(SHOP, guest_wasm("order_v3"))
    assert not report.compatible
    by_id = {r.inputs.instance_id: r for r in report.instances}
    assert by_id[sleeping].compatible
    diverged = by_id[waiting]
    assert (False, Ending.DIVERGED, 2) == (diverged.compatible, diverged.stop.ending,
                                           diverged.stop.position)
    assert ("do 'charge'", "do 'charge-card'") == (str(diverged.stop.recorded),
                                                   str(diverged.stop.issued))
    assert ("journal position 2 was do 'charge' when recorded, is do 'charge-card' now"
            == diverged.stop.message)


async def test_check_writes_nothing_and_leaves_instances_as_they_were(
        engine: DurableEngine) -> None:
    sleeping, waiting, _ = await orders_in_flight(engine, SHOP)
    before = {iid: await engine.instances.status(SHOP, iid) for iid in (sleeping, waiting)}
    await engine.upgrades.check(SHOP, guest_wasm("order_v3"))
    after = {iid: await engine.instances.status(SHOP, iid) for iid in (sleeping, waiting)}
    assert before == after
    assert [1] == [v.version for v in await engine.registry.versions(SHOP)]


async def test_a_candidate_leaves_no_artifact_and_waits_for_no_other_upload(
        db: str | Path, tmp_path: Path, clock: ManualClock) -> None:
    """Checking is open to tenant tokens: it must not fill the disk with artifacts of
    modules never registered, nor keep more than one compile of the tenant's going."""
    artifacts = tmp_path / "artifacts"
    engine = await DurableEngine.open(db, clock=clock, artifacts=artifacts)
    try:
        await orders_in_flight(engine, SHOP)
        registered = {path.name for path in artifacts.iterdir()}
        candidate = guest_wasm("order_v3")
        report = await engine.upgrades.check(SHOP, candidate)
        assert not report.compatible  # it was compiled and replayed...
        assert registered == {path.name for path in artifacts.iterdir()}  # ...in memory only
        with engine.registry.one_upload(SHOP), pytest.raises(UploadInProgress):
            await engine.upgrades.check(SHOP, candidate)
        assert report.compatible == (await engine.upgrades.check(SHOP, candidate)).compatible
    finally:
        await engine.close()


async def test_upgrade_moves_compatible_instances_and_they_run_the_new_code(
        engine: DurableEngine, clock: ManualClock) -> None:
    sleeping, waiting, done = await orders_in_flight(engine, SHOP)
    v2 = await engine.registry.register(SHOP, guest_wasm("order_v2"))

    report = await engine.upgrades.upgrade(SHOP, "2", None)
    assert [(sleeping, True), (waiting, True)] == [
        (o.instance_id, o.moved) for o in report.instances]
    [move] = await engine.upgrades.history(SHOP, waiting)
    assert (1, 2, 4) == (move.from_version, move.to_version, move.journal_length)

    clock.advance(60_000)
    await engine.instances.send_event(SHOP, waiting, "approval", True)
    await engine.instances.send_event(SHOP, sleeping, "approval", True)
    for iid in (sleeping, waiting):
        status = await settle(engine, SHOP, iid)
        assert (Status.COMPLETE, 2, v2.sha256) == (status.status, status.output["version"],
                                                   status.module_sha256)
        assert "receipt" == status.steps[-1]["name"]
    assert 1 == (await engine.instances.status(SHOP, done)).output["version"]


async def test_upgrade_keeps_incompatible_instances_pinned_with_the_reason(
        engine: DurableEngine, clock: ManualClock) -> None:
    sleeping, waiting, _ = await orders_in_flight(engine, SHOP)
    await engine.registry.register(SHOP, guest_wasm("order_v3"))

    report = await engine.upgrades.upgrade(SHOP, "2", None)
    outcomes = {o.instance_id: o for o in report.instances}
    assert outcomes[sleeping].moved
    assert not outcomes[waiting].moved
    assert outcomes[waiting].reason.startswith("incompatible: journal position 2 was do "
                                               "'charge' when recorded")
    assert [] == await engine.upgrades.history(SHOP, waiting)

    clock.advance(60_000)
    for iid in (sleeping, waiting):
        await engine.instances.send_event(SHOP, iid, "approval", True)
    outputs = {iid: (await settle(engine, SHOP, iid)).output for iid in (sleeping, waiting)}
    assert {sleeping: {"charged": 100, "version": 3},
            waiting: {"charged": 200, "version": 1}} == outputs


async def test_upgrade_of_named_instances_says_why_each_did_not_move(
        engine: DurableEngine) -> None:
    sleeping, waiting, done = await orders_in_flight(engine, SHOP)
    v2 = await engine.registry.register(SHOP, guest_wasm("order_v2"))
    report = await engine.upgrades.upgrade(SHOP, "2", [done, sleeping])
    assert [(done, False, "it is complete"), (sleeping, True)] == [
        (o.instance_id, o.moved, o.reason) if not o.moved else (o.instance_id, o.moved)
        for o in report.instances]
    again = await engine.upgrades.upgrade(SHOP, v2.sha256[:8], [sleeping])  # as activate
    assert "it runs on that version already" == again.instances[0].reason
    with pytest.raises(NotFound, match="has no module version '7'"):
        await engine.upgrades.upgrade(SHOP, "7", [waiting])


async def test_a_move_is_refused_if_the_instance_ran_since_its_check(
        engine: DurableEngine, clock: ManualClock) -> None:
    sleeping, _, _ = await orders_in_flight(engine, SHOP)
    v2 = await engine.registry.register(SHOP, guest_wasm("order_v2"))
    inputs = await engine.replayer.inputs(SHOP, sleeping)
    move = VersionMove(inputs.instance_id, inputs.sha256, v2.sha256,
                       journal_digest(inputs.records), len(inputs.records))

    clock.advance(60_000)  # it wakes, charges, and waits for approval: its journal grew
    await settle(engine, SHOP, sleeping)
    with pytest.raises(InvalidState, match="its journal changed since it was checked"):
        await engine.store.move_instance(SHOP, move)

    fresh = await start(engine, SHOP, "order", {"ms": 0}, "fresh")  # on v2
    [running] = await engine.claim_due(1)
    with pytest.raises(InvalidState, match="it is running now"):
        await engine.store.move_instance(SHOP, VersionMove(
            running.instance_id, v2.sha256, inputs.sha256, journal_digest([]), 0))
    await engine.run_claimed(running)
    assert v2.sha256 == (await engine.instances.status(SHOP, fresh)).module_sha256


async def test_versions_show_how_many_instances_each_still_runs(
        engine: DurableEngine) -> None:
    await orders_in_flight(engine, SHOP)
    await engine.registry.register(SHOP, guest_wasm("order_v2"))
    assert [(1, False, 2, 1), (2, True, 0, 0)] == [
        (v.version, v.active, v.unfinished, v.finished)
        for v in await engine.upgrades.versions(SHOP)]
    await engine.upgrades.upgrade(SHOP, "2", None)
    assert [(1, 0, 1), (2, 2, 0)] == [
        (v.version, v.unfinished, v.finished) for v in await engine.upgrades.versions(SHOP)]


async def test_prune_deletes_versions_neither_active_nor_used(
        engine: DurableEngine) -> None:
    await orders_in_flight(engine, SHOP)  # v1: instances on it, kept
    await engine.registry.register(SHOP, guest_wasm("order_v2"))  # no instance: pruned
    v3 = await engine.registry.register(SHOP, guest_wasm("order_v3"))  # active: kept
    pruned = await engine.upgrades.prune(SHOP)
    assert [2] == [v.version for v in pruned]
    assert [1, 3] == [v.version for v in await engine.registry.versions(SHOP)]
    with pytest.raises(NotFound):
        await engine.store.module_wasm(pruned[0].sha256)  # no other tenant used the bytes
    assert v3.sha256 == (await engine.registry.active(SHOP)).sha256
    # A version number is never given out again, even after its version was pruned.
    again = await engine.registry.register(SHOP, guest_wasm("order_v2"))
    assert 4 == again.version
    assert [3] == [v.version for v in await engine.upgrades.prune(SHOP)]  # v4 is active now


async def test_prune_removes_the_compiled_code_of_bytes_nobody_has(
        db: str | Path, tmp_path: Path, clock: ManualClock) -> None:
    artifacts = tmp_path / "artifacts"
    engine = await DurableEngine.open(db, clock=clock, artifacts=artifacts)
    try:
        await orders_in_flight(engine, SHOP)
        v2 = await engine.registry.register(SHOP, guest_wasm("order_v2"))
        shared = await engine.registry.register(SHOP, guest_wasm("order_v3"))
        await engine.registry.register(TenantId("other"), guest_wasm("order_v3"))
        await engine.registry.register(SHOP, guest_wasm("testkit"))  # active: kept
        compiled = {path.stem for path in artifacts.glob("*.cwasm")}
        assert {v2.sha256, shared.sha256} <= compiled
        pruned = await engine.upgrades.prune(SHOP)
        assert {v2.sha256, shared.sha256} == {v.sha256 for v in pruned}
        # v2's bytes went with it; v3's stay for the other tenant, compiled.
        assert compiled - {v2.sha256} == {path.stem for path in artifacts.glob("*.cwasm")}
        assert v2.sha256 not in engine.pool.cached_modules()
    finally:
        await engine.close()


async def test_replay_shows_each_step_with_its_recorded_result(
        engine: DurableEngine) -> None:
    _, waiting, done = await orders_in_flight(engine, SHOP)
    report = await engine.replayer.replay(await engine.replayer.inputs(SHOP, waiting))
    assert [(0, "do", "reserve", b"\xcc\xc8"), (1, "sleep", "cool-off", b"\xc0"),
            (2, "do", "charge", b"\xcc\xc8"), (3, "event", "approval", None)] == [
        (s.position, s.call.kind.value, s.call.name, s.record.result) for s in report.steps]
    assert (Ending.FRONTIER, 3, "the instance waits here for an event (wait 'approval')") == (
        report.stop.ending, report.stop.position, report.stop.message)

    finished = await engine.replayer.replay(await engine.replayer.inputs(SHOP, done))
    assert (Ending.FINISHED, {"complete": {"charged": 300, "version": 1}}) == (
        finished.stop.ending, finished.to_dict()["output"])


async def test_a_replay_never_runs_what_the_journal_has_not_recorded(
        engine: DurableEngine, testkit_wasm: bytes) -> None:
    kit = TenantId("kit")
    await engine.registry.register(kit, testkit_wasm)
    parent = await start(engine, kit, "spawn", {"workflow": "echo", "id": "child"})
    report = await engine.replayer.replay(await engine.replayer.inputs(kit, parent))
    assert (Ending.FRONTIER, 0) == (report.stop.ending, report.stop.position)
    assert "the journal ends here; the module goes on with create 'spawn'" in report.stop.message
    assert [parent] == [i.instance_id for i in await engine.instances.list(kit)]


async def test_a_candidate_without_the_workflow_or_that_loops_is_incompatible(
        engine: DurableEngine) -> None:
    sleeping, _, _ = await orders_in_flight(engine, SHOP)
    await engine.registry.set_limits(SHOP, {"cpu_fuel": 20_000_000})
    other = wat_guest([], "i32.const 0", workflow="other")
    report = await engine.upgrades.check(SHOP, other)
    assert ["the module has no workflow 'order' (it defines: other)"] * 2 == [
        r.stop.message for r in report.instances]
    looping = wat_guest([], "(loop $l (br $l)) i32.const 0", workflow="order")
    report = await engine.upgrades.check(SHOP, looping)
    assert [(Ending.FAILED, False)] * 2 == [(r.stop.ending, r.compatible)
                                           for r in report.instances]
    assert "CpuLimitExceeded" in report.instances[0].stop.message
    assert sleeping == report.instances[0].inputs.instance_id


async def test_checking_and_replaying_make_no_outbound_request(
        engine: DurableEngine, remote: Remote) -> None:
    tenant = TenantId("caller")
    await engine.registry.register(tenant, guest_wasm("egresskit"))
    await engine.egress.change_rules(tenant, allow=[remote.url], private=True)
    # One instance made its call and sleeps; the other's call timed out and waits for its
    # retry: a replay must not run that step's body (and its request) again.
    asleep = await start(engine, tenant, "call", {"url": f"{remote.url}/hello",
                                                  "nap_ms": 60_000})
    retrying = await start(engine, tenant, "call", {
        "url": f"{remote.url}/slow?ms=1000&every=1", "step_timeout_ms": 300, "retries": 3,
        "delay_ms": 60_000})
    await engine.run_until_idle()
    hits = dict(remote.hits)
    assert {"hello": 1, "slow": 1} == hits

    report = await engine.upgrades.check(tenant, guest_wasm("egresskit"))
    found = {r.inputs.instance_id: r for r in report.instances}
    assert {asleep: (True, 1), retrying: (True, 0)} == {
        iid: (r.compatible, r.stop.position) for iid, r in found.items()}
    assert "step 'call' is due for attempt 2 here (it failed 1 time)" == (
        found[retrying].stop.message)
    await engine.replayer.replay(await engine.replayer.inputs(tenant, retrying))
    assert hits == dict(remote.hits)


async def test_a_typescript_tenant_replays_step_by_step_and_checks_against_its_c_twin(
        engine: DurableEngine, built: Path) -> None:
    tenant = TenantId("acme")
    await engine.registry.register(tenant, (built / "tenants" / "acme_ts.wasm").read_bytes())
    waiting = await start(engine, tenant, "onboarding",
                          {"email": "ada@example.com", "nudge_after_ms": 0})
    await engine.run_until_idle()
    own = await engine.replayer.replay(await engine.replayer.inputs(tenant, waiting))
    assert (Ending.FRONTIER, "event") == (own.stop.ending, own.steps[-1].call.kind.value)
    # The C original journals every path exactly like the TypeScript port: it replays it.
    report = await engine.upgrades.check(tenant, (built / "tenants" / "acme.wasm").read_bytes())
    assert [(True, own.stop.position)] == [(r.compatible, r.stop.position)
                                          for r in report.instances]
