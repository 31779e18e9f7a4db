"""A real `dwf serve` process on a free loopback port, for the HTTP tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from host import DurableEngine, TenantId
from host.core.clock import Clock
from host.http.tokens import TokenStore

T = TypeVar("T")
START_TIMEOUT_S = 30.0


def prepare(db: str | Path, body: Callable[[DurableEngine, TokenStore], Awaitable[T]], *,
            clock: Clock | None = None) -> T:
    """Set a database up in-process (faster than a CLI call per tenant and token), on
    `clock` if given (a schedule created in the past, say)."""
    async def main() -> T:
        engine = await DurableEngine.open(db, clock=clock)
        try:
            return await body(engine, TokenStore(engine.store))
        finally:
            await engine.close()
    return asyncio.run(main())


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Server:
    """`dwf serve --port 0`; its JSON log lines go to a file the tests read."""

    def __init__(self, db: str | Path, *args: str) -> None:
        self.db = db
        self.log_path = (db.with_suffix(".serve.log") if isinstance(db, Path)
                         else Path(tempfile.mkdtemp(prefix="dwf-serve-")) / "serve.log")
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Server:
        env = {**os.environ, "DWF_DB": str(self.db), "DWF_LOG_LEVEL": "info"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "host.cli", "serve", "--port", "0", *self.args],
                env=env, stdout=subprocess.DEVNULL, stderr=log)

        def listening() -> dict[str, Any] | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"dwf serve exited: {self.log_path.read_text()}")
            return self.find("http.listening")
        line = wait_until(listening, START_TIMEOUT_S, "dwf serve to listen")
        self.url = line["url"]
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue  # a partly written last line
        return lines

    def find(self, event: str, **fields: Any) -> dict[str, Any] | None:
        for line in self.logs():
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                return line
        return None

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class World:
    """A served database with the tenants and tokens most HTTP tests use.

    acme (the example tenant, with a fetch handler), globex (no fetch handler), alpha and
    beta (both run tests/guests/fetchkit; alpha's CPU fuel is 0.2 G, beta's payload limit is
    1 KiB), and a token for each of acme, alpha, beta plus an admin token.
    """

    def __init__(self, db: str | Path, built: Path) -> None:
        """`db`: a database location (a SQLite file's path or a PostgreSQL URL)."""
        self.db = db
        fetchkit = (built / "guests" / "fetchkit.wasm").read_bytes()

        async def setup(engine: DurableEngine, tokens: TokenStore) -> dict[str, str]:
            registry = engine.registry
            await registry.register(TenantId("acme"),
                                    (built / "tenants" / "acme.wasm").read_bytes())
            await registry.register(TenantId("globex"),
                                    (built / "tenants" / "globex.wasm").read_bytes())
            await registry.register(TenantId("alpha"), fetchkit)
            await registry.register(TenantId("beta"), fetchkit)
            await registry.set_limits(TenantId("beta"), {"max_payload_bytes": 1024})
            # Enough for every fetchkit route but /spin, which then stops in a blink.
            await registry.set_limits(TenantId("alpha"), {"cpu_fuel": 200_000_000})
            made = {}
            for name in ("acme", "alpha", "beta"):
                _, made[name] = await tokens.create(TenantId(name), "tests")
            _, made["admin"] = await tokens.create(None, "tests")
            return made
        self.tokens = prepare(self.db, setup)
        self.server = Server(self.db)
        self.built = built

    def run_flaky(self, api: httpx.Client, instance_id: str, **params: Any) -> str:
        """Deploy the testkit as tenant `kit` (admin API) and start its `flaky` workflow
        with `params`; returns the instance's URL."""
        api.post("/v1/tenants/kit/modules", content=(
            self.built / "guests" / "testkit.wasm").read_bytes()).raise_for_status()
        api.post("/v1/tenants/kit/instances", json={
            "workflow": "flaky", "id": instance_id, "params": params}).raise_for_status()
        return f"/v1/tenants/kit/instances/{instance_id}"

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        return self.server.client(self.tokens[who] if who else None, **kwargs)


def api_error(response: httpx.Response) -> tuple[int, str]:
    """An API error answer's status and code."""
    return response.status_code, response.json()["error"]["code"]
