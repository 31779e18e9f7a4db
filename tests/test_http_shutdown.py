"""SIGTERM to `dwf serve` stops accepting but finishes what it accepted: no work is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from serving import Server, prepare, wait_until

from host import DurableEngine, Status, TenantId
from host.http.tokens import TokenStore

# About half a second of guest CPU here (fetchkit's busy loop); the tenant gets the fuel for it.
SPIN = 400_000_000


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _setup(db: str | Path, built: Path) -> str:
    async def setup(engine: DurableEngine, tokens: TokenStore) -> str:
        await engine.registry.register(TenantId("kit"),
                                       (built / "guests" / "fetchkit.wasm").read_bytes())
        await engine.registry.set_limits(TenantId("kit"), {"cpu_fuel": 100_000_000_000})
        return (await tokens.create(TenantId("kit")))[1]
    return prepare(db, setup)


def test_sigterm_finishes_in_flight_requests_and_instances(db: str | Path, built: Path) -> None:
    token = _setup(db, built)
    server = Server(db).start()
    try:
        with server.client(token) as api:
            created = api.post("/v1/tenants/kit/instances",
                               json={"workflow": "busy", "id": "busy-1", "params": {"n": SPIN}})
            assert 201 == created.status_code
        wait_until(lambda: server.find("guest.log", message="fetchkit: busy step"),
                   what="the instance's step to start")

        answer: dict[str, httpx.Response] = {}

        def in_flight() -> None:
            with server.client() as http:
                answer["busy"] = http.get(f"/busy?n={SPIN}", headers={"x-tenant-id": "kit"})
        thread = threading.Thread(target=in_flight)
        thread.start()
        wait_until(lambda: server.find("guest.log", message="fetchkit: busy"),
                   what="the request to reach the handler")

        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: _refused(server.port), what="the server to stop accepting")
        thread.join(timeout=60)
        assert (200, "done") == (answer["busy"].status_code, answer["busy"].text)
        assert 0 == server.stop()
    finally:
        server.__exit__()

    assert server.find("http.stopped") is not None

    async def check(engine: DurableEngine, tokens: TokenStore) -> tuple[Status, object]:
        status = await engine.instances.status(TenantId("kit"), "busy-1")
        return status.status, status.output
    assert (Status.COMPLETE, "spun") == prepare(db, check)


def test_a_request_cut_by_the_shutdown_timeout_still_lets_its_guest_finish(
        db: str | Path, built: Path) -> None:
    """The guest outlives its request; its binding call needs the loop, which must wait."""
    _setup(db, built)
    server = Server(db, "--shutdown-timeout", "0.1").start()
    answer: dict[str, object] = {}

    def in_flight() -> None:
        with server.client() as http:
            try:
                answer["response"] = http.get(f"/busy?n={2 * SPIN}&id=late",
                                              headers={"x-tenant-id": "kit"})
            except httpx.HTTPError as exc:
                answer["error"] = exc
    thread = threading.Thread(target=in_flight)
    try:
        thread.start()
        wait_until(lambda: server.find("guest.log", message="fetchkit: busy"),
                   what="the request to reach the handler")
        assert 0 == server.stop()  # no deadlock between the guest thread and the loop
    finally:
        server.__exit__()
        thread.join(timeout=60)
    assert "error" in answer  # cut off: the client saw the connection close

    async def check(engine: DurableEngine, tokens: TokenStore) -> Status:
        return (await engine.instances.status(TenantId("kit"), "late")).status
    # Created by the guest; run by the still-draining worker, or queued for the next one.
    assert prepare(db, check) in (Status.COMPLETE, Status.QUEUED)


@pytest.mark.sqlite_only("the one-worker lock of a SQLite file (PostgreSQL takes many)")
def test_one_server_or_worker_per_database(db: Path) -> None:
    with Server(db) as first:
        env = {**os.environ, "DWF_DB": str(db)}
        second = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--port", "0"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert 1 == second.returncode
        assert f"another dwf worker (pid {first.process.pid})" in second.stderr
        assert 0 == first.stop()
