"""Golden histories: journals recorded from a tenant's workflow, kept in the repository.

Replaying a recorded journal against today's module must reach the same output without
running any step again; a journal that no longer matches the code must fail loudly with
NondeterminismError. Set DWF_UPDATE_GOLDEN=1 to re-record after an intended change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from helpers import settle, sql, start

from host import DurableEngine, ManualClock, Status, TenantId
from host.core import codec
from host.core.model import StepKind, StepRecord, StepState
from host.store.rows import STEP_ROW_COLUMNS, step_row

GOLDEN = ROOT / "tests" / "golden" / "acme_onboarding_approved.json"
ACME = TenantId("acme")


async def _record(engine: DurableEngine, clock: ManualClock) -> dict[str, Any]:
    instance = await start(engine, ACME, "onboarding",
                           {"email": "ada@example.com", "nudge_after_ms": 1000}, id="golden")
    await settle(engine, ACME, instance)
    clock.advance(1000)
    await settle(engine, ACME, instance)
    await engine.instances.send_event(ACME, instance, "approval", {"approved": True})
    status = await settle(engine, ACME, instance)
    assert status.status is Status.COMPLETE
    steps = await engine.instances.steps(ACME, instance)
    return {"params": status.params, "output": status.output,
            "journal": [{"kind": s.kind.value, "name": s.name, "state": s.state.value,
                         "result": codec.unpack(s.result) if s.result is not None else None}
                        for s in steps]}


@pytest.fixture
async def acme(engine: DurableEngine, built: Path) -> TenantId:
    await engine.registry.register(ACME, (built / "tenants" / "acme.wasm").read_bytes())
    return ACME


async def test_todays_run_matches_the_golden_history(engine: DurableEngine, acme: TenantId,
                                                     clock: ManualClock) -> None:
    recorded = await _record(engine, clock)
    if os.environ.get("DWF_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(recorded, indent=2) + "\n")
    assert json.loads(GOLDEN.read_text()) == recorded


async def _replay(engine: DurableEngine, journal: list[dict[str, Any]],
                  params: Any) -> tuple[Any, int]:
    """Start an instance whose journal is `journal`; return its status and journal size."""
    instance = await start(engine, ACME, "onboarding", params, id="replayed")
    rows = [step_row(ACME, instance, StepRecord(
                position, StepKind(entry["kind"]), entry["name"], occurrence=1,
                state=StepState(entry["state"]), started_at_ms=0,
                result=codec.pack(entry["result"]), attempts=1, finished_at_ms=0))
            for position, entry in enumerate(journal)]

    for row in rows:
        await sql(engine, f"INSERT INTO steps ({', '.join(STEP_ROW_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(row))})", *row)
    status = await settle(engine, ACME, instance)
    return status, len(await engine.instances.steps(ACME, instance))


async def test_replaying_the_golden_journal_runs_no_step(engine: DurableEngine,
                                                         acme: TenantId) -> None:
    golden = json.loads(GOLDEN.read_text())
    status, journal_size = await _replay(engine, golden["journal"], golden["params"])
    assert (Status.COMPLETE, golden["output"]) == (status.status, status.output)
    assert len(golden["journal"]) == journal_size  # nothing new was run or recorded


async def test_a_journal_from_different_code_is_refused(engine: DurableEngine,
                                                        acme: TenantId) -> None:
    golden = json.loads(GOLDEN.read_text())
    tampered = [dict(entry) for entry in golden["journal"]]
    tampered[1]["name"] = "send-welcome-sms"  # as if an older version had sent an SMS
    status, _ = await _replay(engine, tampered, golden["params"])
    assert status.status is Status.ERRORED
    assert status.error["name"] == "NondeterminismError"
    assert "position 1 was do 'send-welcome-sms' when recorded, is do 'send-welcome-email'" \
        in status.error["message"]
