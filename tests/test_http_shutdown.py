"""SIGTERM to `dwf serve` stops accepting but finishes what it accepted: no work is lost."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import httpx
from serving import Server, prepare, wait_until

from host import DurableEngine, Status, TenantId
from host.tokens import TokenStore

# About half a second of guest CPU here (fetchkit's busy loop); the tenant gets the fuel for it.
SPIN = 400_000_000


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_in_flight_requests_and_instances(tmp_path: Path, built: Path) -> None:
    db = tmp_path / "dwf.sqlite3"

    async def setup(engine: DurableEngine, tokens: TokenStore) -> str:
        await engine.registry.register(TenantId("kit"),
                                       (built / "guests" / "fetchkit.wasm").read_bytes())
        await engine.registry.set_limits(TenantId("kit"), {"cpu_fuel": 100_000_000_000})
        return (await tokens.create(TenantId("kit")))[1]
    token = prepare(db, setup)
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
