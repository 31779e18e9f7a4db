"""`dwf tenant check|versions|prune`, `dwf upgrade`, `dwf replay` and `dwf history`, run
as real processes against a database whose instances a real engine left in flight."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import dwf_runner, orders_in_flight

from host import DurableEngine, TenantId

Dwf = Callable[..., subprocess.CompletedProcess[str]]
README = str(ROOT / "README.md")  # a file that is not a module


@pytest.fixture
def shop_db(tmp_path: Path, built: Path) -> Path:
    """A database with release 1 of "order" and its instances sleeping, waiting, done."""
    db = tmp_path / "shop.sqlite3"

    async def prepare() -> None:
        engine = await DurableEngine.open(db)
        try:
            await orders_in_flight(engine, TenantId("shop"), sleep_ms=3_600_000)
        finally:
            await engine.close()
    asyncio.run(prepare())
    return db


@pytest.fixture
def dwf(shop_db: Path) -> Dwf:
    env = {**os.environ, "DWF_DB": str(shop_db), "DWF_LOG_LEVEL": "warning"}

    return dwf_runner(env)


def _guest(built: Path, name: str) -> str:
    return str(built / "guests" / f"{name}.wasm")


def test_check_passes_a_compatible_release_and_fails_a_breaking_one(
        dwf: Dwf, built: Path) -> None:
    ok = dwf("tenant", "check", "shop", _guest(built, "order_v2")).stdout
    assert "2 of 2 unfinished instances would replay on" in ok

    broken = dwf("tenant", "check", "shop", _guest(built, "order_v3"), expect=1).stdout
    rows = [re.split(r"\s{2,}", line) for line in broken.splitlines()[1:3]]
    assert [["sleeping", "order", "waiting", "compatible", "1", "-", "-"],
            ["waiting", "order", "waiting", "BREAKS", "2", "do 'charge'", "do 'charge-card'"]
            ] == rows
    assert ("waiting: journal position 2 was do 'charge' when recorded, is do "
            "'charge-card' now") in broken
    report = json.loads(dwf("tenant", "check", "shop", _guest(built, "order_v3"), "--json",
                            expect=1).stdout)
    assert (False, [True, False]) == (report["compatible"],
                                      [i["compatible"] for i in report["instances"]])
    # Nothing was registered by checking.
    assert [1] == [v["version"] for v in json.loads(
        dwf("tenant", "versions", "shop", "--json").stdout)]


def test_upgrade_moves_what_replays_and_versions_show_the_drain(dwf: Dwf, built: Path) -> None:
    dwf("tenant", "register", "shop", _guest(built, "order_v3"))
    moved = json.loads(dwf("upgrade", "shop", "--to", "2", "--all-compatible", "--json").stdout)
    assert [("sleeping", True), ("waiting", False)] == [
        (i["instance_id"], i["moved"]) for i in moved["instances"]]
    named = dwf("upgrade", "shop", "--to", "2", "--instance", "waiting", expect=1).stdout
    assert "stays" in named and "incompatible: journal position 2" in named

    versions = json.loads(dwf("tenant", "versions", "shop", "--json").stdout)
    assert [(1, 1, 1), (2, 1, 0)] == [(v["version"], v["unfinished"], v["finished"])
                                      for v in versions]
    assert "UNFINISHED" in dwf("tenant", "versions", "shop").stdout
    history = dwf("history", "shop", "sleeping").stdout
    assert "moved  version 1 -> 2" in history
    assert history.index("cool-off") < history.index("moved")

    dwf("tenant", "register", "shop", _guest(built, "order_v2"))  # v3, then prune it:
    dwf("tenant", "activate", "shop", "2")                         # not active, no instance
    pruned = json.loads(dwf("tenant", "prune", "shop", "--json").stdout)
    assert [3] == [v["version"] for v in pruned]


def test_replay_prints_each_step_and_stops_at_the_first_divergence(
        dwf: Dwf, built: Path) -> None:
    own = dwf("replay", "shop", "waiting").stdout.splitlines()
    assert own[0].startswith("replaying shop/waiting (order, waiting, 4 journal positions) "
                             "through its own module")
    assert ["#0    do     reserve  ->  ok 200", "#1    sleep  cool-off  ->  ok null",
            "#2    do     charge  ->  ok 200", "#3    event  approval  ->  pending"] == [
        line.strip() for line in own[1:5]]
    assert ("matches the journal at position 3: the instance waits here for an event "
            "(wait 'approval')") == own[5]

    candidate = dwf("replay", "shop", "waiting", "--module", _guest(built, "order_v3"),
                    expect=1).stdout.splitlines()
    assert ["DIVERGES at position 2: journal position 2 was do 'charge' when recorded, is "
            "do 'charge-card' now", "  recorded: do 'charge'", "  now:      do 'charge-card'"
            ] == candidate[-3:]
    done = json.loads(dwf("replay", "shop", "done", "--json").stdout)
    assert ("finished", {"complete": {"charged": 300, "version": 1}}) == (done["ending"],
                                                                         done["output"])


@pytest.mark.parametrize(("args", "expect", "message"), [
    (("upgrade", "shop", "--to", "2"), 2, "give either --instance ID"),
    (("upgrade", "shop", "--to", "9", "--all-compatible"), 1,
     "tenant 'shop' has no module version '9' (a version number, or at least 4"),
    (("replay", "shop", "nope"), 1, "tenant 'shop' has no instance 'nope'"),
    (("tenant", "check", "nobody", README), 1, "unknown tenant 'nobody'"),
    (("tenant", "check", "shop", README), 1, "not a WebAssembly module"),
])
def test_lifecycle_commands_explain_bad_input(dwf: Dwf, args: tuple[str, ...], expect: int,
                                              message: str) -> None:
    done = dwf(*args, expect=expect)
    assert message in done.stderr
