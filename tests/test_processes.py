"""`dwf worker|serve --processes N`: N processes on one database (each backend), one port.

The supervisor's processes share the work; one that dies is replaced, and what it was
running is taken over at once (a SQLite group's supervisor queues it again itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serving import prepare, wait_until
from workers import log_entries, wait_for_line

from host import DurableEngine, InstanceRequest, Status, TenantId
from host.http.tokens import TokenStore

KIT = TenantId("kit")


def _children(pid: int) -> list[int]:
    """The supervisor's processes (its children), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _kill(group: subprocess.Popen[bytes]) -> None:
    """A test that failed leaves nothing running: the supervisor and its processes."""
    if group.poll() is None:
        for child in _children(group.pid):
            os.kill(child, signal.SIGKILL)
        group.kill()
        group.wait()


def _group(db: str | Path, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DWF_DB": str(db), "DWF_LOG_LEVEL": "info"}
    return subprocess.Popen([sys.executable, "-m", "host.cli", *args, "--processes", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"))


def _setup(db: str | Path, testkit: bytes, instances: int) -> list[str]:
    async def setup(engine: DurableEngine, tokens: TokenStore) -> list[str]:
        await engine.registry.register(KIT, testkit)
        await engine.registry.set_limits(KIT, {"max_concurrent_invocations": 16})
        created = await engine.instances.create_batch(
            KIT, [InstanceRequest("steps", {"count": 200, "unbatched": True})] * instances)
        return list(created)
    return prepare(db, setup)


def _statuses(db: str | Path, ids: list[str]) -> list[Status]:
    async def read(engine: DurableEngine, tokens: TokenStore) -> list[Status]:
        return [(await engine.instances.status(KIT, i, with_steps=False)).status
                for i in ids]
    return prepare(db, read)


def test_worker_processes_share_the_work_and_one_that_dies_is_replaced(
        db: str | Path, tmp_path: Path, testkit_wasm: bytes) -> None:
    ids = _setup(db, testkit_wasm, 40)
    log = tmp_path / "group.log"
    group = _group(db, log, "worker", "--concurrency", "4")
    try:
        wait_until(lambda: len(log_entries(log, "worker.started")) == 2, 30, "two workers")
        first, _ = _children(group.pid)
        wait_until(lambda: len([e for e in log_entries(log, "instance.complete")
                                if e["pid"] == first]) >= 2, 60, "the first to finish some")
        os.kill(first, signal.SIGKILL)
        died = json.loads(wait_for_line(log, "supervisor.process_died"))
        wait_until(lambda: len(log_entries(log, "worker.started")) == 3, 30, "a replacement")
        wait_until(lambda: all(s is Status.COMPLETE for s in _statuses(db, ids)), 180,
                   "every instance to complete")
        group.send_signal(signal.SIGTERM)
        assert 0 == group.wait(timeout=60)
    finally:
        _kill(group)
    assert -signal.SIGKILL == died["code"]
    assert log_entries(log, "supervisor.took_over")
    served_by = {entry["pid"] for entry in log_entries(log, "instance.complete")}
    assert len(served_by) >= 2, "only one process did the work"
    assert [] == [pid for pid in _children(group.pid)], "a process outlived the supervisor"


def test_serve_processes_listen_on_one_port(db: str | Path, tmp_path: Path,
                                            testkit_wasm: bytes) -> None:
    _setup(db, testkit_wasm, 1)
    log = tmp_path / "serve.log"
    group = _group(db, log, "serve", "--port", "0")
    try:
        wait_until(lambda: len(log_entries(log, "http.listening")) == 2, 30, "two listeners")
        ports = {entry["port"] for entry in log_entries(log, "http.listening")}
        assert 1 == len(ports), ports
        url = f"http://127.0.0.1:{ports.pop()}"

        async def requests() -> set[int]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                answers = await asyncio.gather(*(client.get("/v1/health") for _ in range(64)))
            assert {200} == {answer.status_code for answer in answers}
            return {entry["pid"] for entry in log_entries(log, "http.request")}
        deadline = time.monotonic() + 30
        while len(served := asyncio.run(requests())) < 2:  # new connections, spread anew
            assert time.monotonic() < deadline, f"only {served} answered"
        group.send_signal(signal.SIGTERM)
        assert 0 == group.wait(timeout=60)
    finally:
        _kill(group)
    assert 2 == len(log_entries(log, "http.stopped"))


def test_the_processes_of_a_killed_supervisor_stop_by_themselves(
        db: str | Path, tmp_path: Path, testkit_wasm: bytes) -> None:
    _setup(db, testkit_wasm, 1)
    log = tmp_path / "group.log"
    group = _group(db, log, "worker")
    try:
        wait_until(lambda: len(log_entries(log, "worker.started")) == 2, 30, "two workers")
        members = _children(group.pid)
        group.kill()
        group.wait()
        wait_until(lambda: len(log_entries(log, "worker.stopped")) == 2, 30,
                   "the orphaned processes to stop")
        assert 2 == len(log_entries(log, "worker.orphaned"))
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in members), 30,
                   "the orphaned processes to exit")
    finally:
        _kill(group)


def test_a_supervisor_passes_its_options_on_flags_included() -> None:
    from host.cli.processes import _child_args

    assert ["--port", "8080", "--secure-cookies", "--shutdown-timeout", "0.0"] == _child_args(
        port=8080, concurrency=None, secure_cookies=True, lease_seconds=None,
        shutdown_timeout=0.0, verbose=False)
