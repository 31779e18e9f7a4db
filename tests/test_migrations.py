"""A database made by an older host opens in this one with everything it held."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from host import DurableEngine, TenantId
from host.store.sqlite import database

MIGRATIONS = Path(database.__file__).parent / "migrations"


def _old_database(path: Path, upto: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for script in sorted(MIGRATIONS.glob("*.sql")):
        if int(script.name.split("_", 1)[0]) <= upto:
            conn.executescript(script.read_text())
    conn.execute(f"PRAGMA user_version = {upto}")
    return conn


async def test_manifests_move_from_modules_to_each_tenant_version(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    db = tmp_path / "old.sqlite3"
    conn = _old_database(db, upto=2)
    manifest = {"abi": 1, "sdk": "c/0.1", "workflows": ["echo", "steps"], "fetch": False}
    conn.execute("INSERT INTO modules VALUES ('abc', ?, ?, ?, 1)",
                 (testkit_wasm, len(testkit_wasm), json.dumps(manifest)))
    for tenant in ("t1", "t2"):
        conn.execute("INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) "
                     "VALUES (?, 'abc', 1)", (tenant,))
        conn.execute("INSERT INTO tenant_modules VALUES (?, 'abc', 1, 1)", (tenant,))
    conn.close()

    engine = await DurableEngine.open(db)
    try:
        for tenant in ("t1", "t2"):
            active = await engine.registry.active(TenantId(tenant))
            assert (("echo", "steps"), "c/0.1") == (active.workflows, active.sdk)
        created = await engine.instances.create(TenantId("t1"), "steps", {"count": 1})
        assert "steps" == (await engine.instances.status(TenantId("t1"), created)).workflow
    finally:
        await engine.close()


async def test_steps_retried_before_attempt_history_keep_their_count(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    db = tmp_path / "old.sqlite3"
    conn = _old_database(db, upto=3)
    conn.execute("INSERT INTO modules VALUES ('abc', ?, ?, 1)", (testkit_wasm, len(testkit_wasm)))
    conn.execute("INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) "
                 "VALUES ('t', 'abc', 1)")
    conn.execute("INSERT INTO tenant_modules VALUES ('t', 'abc', 1, 1, ?)",
                 (json.dumps({"abi": 1, "sdk": "c", "workflows": ["flaky"]}),))
    conn.execute("INSERT INTO instances (tenant_id, instance_id, workflow, module_sha256, "
                 "params, status, created_at_ms, updated_at_ms) "
                 "VALUES ('t', 'old', 'flaky', 'abc', x'c0', 'complete', 1, 1)")
    conn.execute("INSERT INTO steps (tenant_id, instance_id, position, kind, name, "
                 "occurrence, state, result, attempts, started_at_ms, finished_at_ms) "
                 "VALUES ('t', 'old', 0, 'do', 'flaky', 1, 'ok', x'c0', 3, 1, 9)")
    conn.close()

    engine = await DurableEngine.open(db)
    try:
        [step] = (await engine.instances.status(TenantId("t"), "old")).steps
        assert (3, []) == (step["attempts"], step["attempt_history"])
    finally:
        await engine.close()


async def test_a_database_from_before_the_code_lifecycle_keeps_numbering_its_versions(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    db = tmp_path / "old.sqlite3"
    conn = _old_database(db, upto=4)
    manifest = {"abi": 1, "sdk": "c/0.1", "workflows": ["echo"], "fetch": False}
    conn.execute("INSERT INTO modules VALUES ('abc', ?, ?, 1)", (b"\0asm", 4))
    conn.execute("INSERT INTO tenants (tenant_id, active_sha256, created_at_ms) "
                 "VALUES ('t1', 'abc', 1)")
    conn.execute("INSERT INTO tenant_modules VALUES ('t1', 'abc', 1, 1, ?)",
                 (json.dumps(manifest),))
    conn.close()

    engine = await DurableEngine.open(db)
    try:
        tenant = TenantId("t1")
        registered = await engine.registry.register(tenant, testkit_wasm)
        assert [(1, 0, 0), (2, 0, 0)] == [(v.version, v.unfinished, v.finished)
                                          for v in await engine.upgrades.versions(tenant)]
        assert 2 == registered.version
        assert [1] == [v.version for v in await engine.upgrades.prune(tenant)]
        assert [] == await engine.schedules.list(tenant)
    finally:
        await engine.close()
