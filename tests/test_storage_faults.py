"""The database failing under a running worker: nothing lost, nothing failed for good.

Two real faults: another process holding SQLite's write lock past the busy timeout, and a
real full file system (a small tmpfs). A transient storage error puts the work back (the
instance is queued again and replays its journal) and the worker backs off; when the lock
or the space comes back it picks up by itself, without a restart, and still answers
SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from host import DurableEngine, ManualClock, Status, TenantId, Worker
from host.durable.worker import worker_lock

PIPELINES, CHUNKS = 40, 4
EXPECTED_TOTAL = sum((i + 1) ** 2 * 100 for i in range(CHUNKS))
BUSY_TIMEOUT_MS = 200  # the worker's; the test holds the lock far longer


def _worker(db: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DWF_LOG_LEVEL": "info",
           "DWF_SQLITE_BUSY_TIMEOUT_MS": str(BUSY_TIMEOUT_MS)}
    return subprocess.Popen([sys.executable, "-m", "host.cli", "--db", str(db), "worker"],
                            stderr=log_path.open("wb"), stdout=subprocess.DEVNULL, env=env)


def _wait_for(log_path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in the worker's log:\n"
                         f"{log_path.read_text(errors='replace')[-4000:]}")


def _statuses(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT status, COUNT(*) FROM instances GROUP BY status"))


async def test_a_write_lock_held_past_the_busy_timeout_loses_and_fails_nothing(
        tmp_path: Path, built: Path) -> None:
    db = tmp_path / "dwf.sqlite3"
    engine = await DurableEngine.open(db)
    try:
        tenant = TenantId("initech")
        await engine.registry.register(tenant, (built / "tenants" / "initech.wasm").read_bytes())
        ids = [await engine.instances.create(tenant, "pipeline", {"chunks": CHUNKS}, f"p{n}")
               for n in range(PIPELINES)]
    finally:
        await engine.close()

    log_path = tmp_path / "worker.log"
    process = _worker(db, log_path)
    try:
        _wait_for(log_path, "worker.started")
        holder = sqlite3.connect(db, isolation_level=None, timeout=30)
        for _ in range(3):  # three times 1.5 s, each far past the worker's busy timeout
            holder.execute("BEGIN IMMEDIATE")
            time.sleep(1.5)
            holder.execute("COMMIT")
            time.sleep(0.3)
        holder.close()

        deadline = time.monotonic() + 60
        while _statuses(db).get("complete", 0) < PIPELINES * (1 + CHUNKS):
            assert time.monotonic() < deadline, _statuses(db)
            assert process.poll() is None, "the worker must not stop because of the lock"
            time.sleep(0.1)
        log = log_path.read_text(errors="replace")
        assert "worker.storage_unavailable" in log or "instance.interrupted" in log, (
            "the lock should have met the worker mid-work")

        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    with worker_lock(db):  # released: another worker may start
        pass

    engine = await DurableEngine.open(db)
    try:
        for pipeline in ids:
            status = await engine.instances.status(tenant, pipeline)
            assert (Status.COMPLETE, {"chunks": CHUNKS, "total": EXPECTED_TOTAL}) == (
                status.status, status.output), status.to_dict()
        children = await engine.instances.list(tenant, limit=10_000)
        per_parent: dict[str | None, int] = {}
        for child in children:
            per_parent[child.parent_instance_id] = per_parent.get(child.parent_instance_id,
                                                                  0) + 1
        assert {pipeline: CHUNKS for pipeline in ids} == {
            parent: n for parent, n in per_parent.items() if parent is not None}
        assert {"complete": PIPELINES * (1 + CHUNKS)} == _statuses(db)
    finally:
        await engine.close()


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    """A real, small file system (tmpfs) mounted at `where`: needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root; run the suite as root "
                    "(CI does) to test a full disk")
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the full-disk "
                    "test needs a machine that allows it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(bytes(64 * 1024))
                out.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_puts_work_back_and_the_worker_resumes_when_space_returns(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    with _small_disk(tmp_path / "disk", "24m") as disk:
        db = disk / "dwf.sqlite3"
        engine = await DurableEngine.open(db, clock=ManualClock())
        stop = asyncio.Event()
        try:
            tenant = TenantId("kit")
            await engine.registry.register(tenant, testkit_wasm)
            ids = [await engine.instances.create(tenant, "big", {"bytes": 300_000}, f"big{n}")
                   for n in range(12)]
            filler = _fill(disk)

            cli = subprocess.run(
                [sys.executable, "-m", "host.cli", "--db", str(db), "run", "kit", "echo",
                 "--params", '{"x": 1}'], capture_output=True, text=True, timeout=60)
            assert (1, "") == (cli.returncode, cli.stdout), cli.stderr
            assert cli.stderr.startswith("error: the database is unavailable: database or "
                                         "disk is full"), cli.stderr
            assert "Traceback" not in cli.stderr and 1 == len(cli.stderr.splitlines())

            with structlog.testing.capture_logs() as logs:
                worker = asyncio.create_task(Worker(engine).run(stop))
                await asyncio.sleep(2.0)
                statuses = [await engine.instances.status(tenant, i, with_steps=False)
                            for i in ids]
                assert not any(s.status.finished for s in statuses), [
                    s.to_dict() for s in statuses]
                assert any(entry["event"] in ("instance.interrupted", "instance.settle_retry",
                                              "worker.storage_unavailable")
                           for entry in logs), "the full disk should have met the worker"

                filler.unlink()
                deadline = time.monotonic() + 60
                while True:
                    statuses = [await engine.instances.status(tenant, i, with_steps=False)
                                for i in ids]
                    if all(s.status.finished for s in statuses):
                        break
                    assert time.monotonic() < deadline, [s.to_dict() for s in statuses]
                    await asyncio.sleep(0.1)
                assert not worker.done(), "the worker keeps going through the fault"
            assert [(Status.COMPLETE, {"bytes": 300_000})] * len(ids) == [
                (s.status, s.output) for s in statuses]
        finally:
            stop.set()
            with contextlib.suppress(NameError):
                await worker
            await engine.close()


def test_the_api_answers_503_while_the_database_is_locked_and_serves_after(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import Server, prepare

    from host.http.tokens import TokenStore

    db = tmp_path / "dwf.sqlite3"

    async def setup(engine: DurableEngine, tokens: TokenStore) -> str:
        await engine.registry.register(TenantId("acme"),
                                       (built / "tenants" / "acme.wasm").read_bytes())
        return (await tokens.create(TenantId("acme")))[1]
    token = prepare(db, setup)
    monkeypatch.setenv("DWF_SQLITE_BUSY_TIMEOUT_MS", str(BUSY_TIMEOUT_MS))
    with Server(db) as server, server.client(token) as api:
        create = {"workflow": "onboarding", "params": {"email": "a@example.com"}}
        holder = sqlite3.connect(db, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        try:
            locked = api.post("/v1/tenants/acme/instances", json={**create, "id": "during"})
        finally:
            holder.execute("COMMIT")
            holder.close()
        error = locked.json()["error"]
        assert (503, "unavailable") == (locked.status_code, error["code"])
        assert error["message"].startswith("the database is unavailable: database is locked")
        after = api.post("/v1/tenants/acme/instances", json={**create, "id": "after"})
        assert 201 == after.status_code
        assert 404 == api.get("/v1/tenants/acme/instances/during").status_code
        assert 0 == server.stop()
