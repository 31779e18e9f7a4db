"""Every stored value can be shown: nesting is bounded, extension types refused, at every
entry point; and whatever a database already holds is shown with its fault named.

A value nested ~600 levels deep (or a msgpack Timestamp) used to be accepted, after which
that instance's GET and its tenant's whole instance list answered 500 for good and
`dwf status/history/list` crashed with a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from helpers import run_workflow, wat_guest
from serving import Server, prepare

from host import DurableEngine, InvalidInput, Status, TenantId
from host.core.codec import MAX_DEPTH


def nested(depth: int, inner: Any = 1) -> Any:
    """`inner` inside `depth` arrays: nested(2) == [[1]]."""
    for _ in range(depth):
        inner = [inner]
    return inner


def deep_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"  # what a guest can write, whatever a packer allows


TIMESTAMP = msgpack.packb(msgpack.Timestamp(1_700_000_000, 0))


async def test_params_and_event_payloads_nest_at_most_128_levels(
        engine: DurableEngine, kit: TenantId) -> None:
    deepest = await engine.instances.create(kit, "echo", nested(MAX_DEPTH - 1, {}))
    await engine.run_until_idle()
    assert nested(MAX_DEPTH - 1, {}) == (await engine.instances.status(kit, deepest)).output
    for depth in (MAX_DEPTH + 1, 600):
        with pytest.raises(InvalidInput, match=f"params is nested more than {MAX_DEPTH} "):
            await engine.instances.create(kit, "echo", nested(depth))
    waiter = await engine.instances.create(kit, "waiter", {"type": "go"})
    with pytest.raises(InvalidInput, match=f"event payload is nested more than {MAX_DEPTH} "):
        await engine.instances.send_event(kit, waiter, "go", nested(MAX_DEPTH + 1))
    assert 2 == len(await engine.instances.list(kit))


_STEP = ("(drop (call $step_do (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 0) "
         "(i32.const 8))) (call $step_ok (i32.const 1024) (i32.const {n})) i32.const 0")
_OUTPUT = "(call $set_output (i32.const 1024) (i32.const {n})) i32.const 0"


@pytest.mark.parametrize(("payload", "fault"), [
    (deep_msgpack(MAX_DEPTH + 1), f"is nested more than {MAX_DEPTH} levels"),
    (deep_msgpack(600), f"is nested more than {MAX_DEPTH} levels"),
    (deep_msgpack(5000), "is not valid msgpack"),
    (TIMESTAMP, "holds a Timestamp"),
    (b"\x92\x01" + TIMESTAMP, "holds a Timestamp"),
    (b"\xd4\x05\x01", "holds a msgpack extension value (type 5)"),
], ids=["129-deep", "600-deep", "5000-deep", "timestamp", "timestamp-inside", "ext"])
@pytest.mark.parametrize(("body", "what"), [
    (_STEP, "result of step 's'"), (_OUTPUT, "workflow output")], ids=["step", "output"])
async def test_a_guest_value_breaking_the_rules_is_an_abi_violation(
        engine: DurableEngine, payload: bytes, fault: str, body: str, what: str) -> None:
    wasm = wat_guest(["step_do", "step_ok"], body.format(n=len(payload)),
                     {16: b"s", 1024: payload})
    await engine.registry.register(TenantId("raw"), wasm)
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert Status.ERRORED is status.status
    assert status.error is not None
    assert "AbiViolation" == status.error["name"]
    assert status.error["message"].startswith(f"{what} {fault}"), status.error["message"]


async def test_a_guest_value_128_levels_deep_is_stored_and_shown(engine: DurableEngine) -> None:
    payload = deep_msgpack(MAX_DEPTH)
    wasm = wat_guest(["step_do", "step_ok"], _STEP.format(n=len(payload)),
                     {16: b"s", 1024: payload})
    await engine.registry.register(TenantId("raw"), wasm)
    status = await run_workflow(engine, TenantId("raw"), "raw")
    assert Status.COMPLETE is status.status
    assert nested(MAX_DEPTH) == status.steps[0]["result"]


# -- values stored before the rules -----------------------------------------------------

def _store_values_that_break_the_rules(db: Path, built: Path) -> None:
    """Instances as an older host could leave them: finished runs whose params, output
    and step result are later values it accepted and readers choked on."""
    async def setup(engine: DurableEngine, _: Any) -> None:
        await engine.registry.register(TenantId("kit"),
                                       (built / "guests" / "testkit.wasm").read_bytes())
        for name in ("old-deep", "old-ts", "fine"):
            await engine.instances.create(TenantId("kit"), "steps", {"count": 1}, name)
        await engine.run_until_idle()
    prepare(db, setup)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE instances SET params = ?, output = ? WHERE instance_id = ?",
                     (deep_msgpack(600), deep_msgpack(1000), "old-deep"))
        conn.execute("UPDATE steps SET result = ? WHERE instance_id = ?",
                     (deep_msgpack(700), "old-deep"))
        conn.execute("UPDATE instances SET output = ? WHERE instance_id = ?",
                     (TIMESTAMP, "old-ts"))


def test_values_stored_before_the_rules_are_shown_with_their_fault(tmp_path: Path,
                                                                   built: Path) -> None:
    db = tmp_path / "dwf.sqlite3"
    _store_values_that_break_the_rules(db, built)
    deep = f"the stored value is nested more than {MAX_DEPTH} levels"

    env = {**os.environ, "DWF_DB": str(db), "DWF_LOG_LEVEL": "warning"}

    def dwf(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert (0, "") == (done.returncode, done.stderr), done.stderr
        return done

    shown = json.loads(dwf("status", "kit", "old-deep", "--json").stdout)
    assert shown["params"]["$invalid"].startswith(deep)
    assert shown["output"]["$invalid"].startswith(deep)
    assert shown["steps"][0]["result"]["$invalid"].startswith(deep)
    assert "holds a Timestamp" in json.loads(
        dwf("status", "kit", "old-ts", "--json").stdout)["output"]["$invalid"]
    assert "$invalid" in dwf("status", "kit", "old-deep").stdout  # the table for people
    assert "$invalid" in dwf("history", "kit", "old-deep").stdout
    assert {"old-deep", "old-ts", "fine"} == {
        i["id"] for i in json.loads(dwf("list", "--json").stdout)["instances"]}

    async def token(_: DurableEngine, tokens: Any) -> str:
        return str((await tokens.create(None, "tests"))[1])
    admin = prepare(db, token)
    with Server(db) as server, server.client(admin) as api:
        listed = api.get("/v1/tenants/kit/instances")
        assert 200 == listed.status_code, listed.text
        assert {"old-deep", "old-ts", "fine"} == {i["id"] for i in listed.json()["instances"]}
        one = api.get("/v1/tenants/kit/instances/old-deep")
        assert 200 == one.status_code, one.text
        assert one.json()["output"]["$invalid"].startswith(deep)
        assert {"count": 1} == api.get("/v1/tenants/kit/instances/fine").json()["output"]
