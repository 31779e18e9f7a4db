"""The HTTP front door: requests/s for a trivial tenant handler (benchkit's `dwf_fetch`,
200 "ok"), through a real `dwf serve` on 127.0.0.1.

    python -m bench.http '{"seconds": 5, "connections": 32, "processes": 2}'

The server runs in its own process (worker included, logging at warning); the client is an
aiohttp session (on uvloop) in this process with `connections` concurrent keep-alive requests for
`seconds`. Both share the machine's cores, so this is a floor for the server. Every
request goes through the front door (x-tenant-id), a fresh sandbox per request with the
tenant's limits; the tenant's max_concurrent_invocations is raised to `connections` so the
cap, not the runtime, is not what is measured. With "processes": N it is `dwf serve
--processes N`: N processes on the port (SO_REUSEPORT), the kernel spreading connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from host import eventloop

from .common import emit, latency_summary, run_in_process, stop

ROOT = Path(__file__).resolve().parent.parent
BENCHKIT = ROOT / "build" / "bench" / "benchkit.wasm"


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Called by the orchestrator: this section runs in its own process like the others."""
    return run_in_process([sys.executable, "-m", "bench.http", json.dumps(params)], ROOT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _prepare(db: Path, connections: int) -> None:
    from host import DurableEngine, TenantId

    engine = await DurableEngine.open(db)
    try:
        await engine.registry.register(TenantId("bench"), BENCHKIT.read_bytes())
        await engine.registry.set_limits(TenantId("bench"),
                                         {"max_concurrent_invocations": connections})
    finally:
        await engine.close()


async def _load(url: str, seconds: float, connections: int) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    measuring = False
    stop_at = time.perf_counter() + 3600.0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            async with session.get(url, headers={"x-tenant-id": "bench"}) as response:
                body = await response.read()
            duration = time.perf_counter() - start
            if response.status != 200 or body != b"ok":
                failures += 1
            elif measuring:
                latencies.append(duration)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(connections)]
        await asyncio.sleep(min(1.0, seconds / 3))  # warm-up: module compiled, cached
        measuring, start = True, time.perf_counter()
        await asyncio.sleep(seconds)
        measuring, elapsed = False, time.perf_counter() - start
        done = len(latencies)
        stop_at = 0.0
        await asyncio.gather(*tasks)
    return {"requests_per_s": done / elapsed, "requests": done, "failures": failures,
            "connections": connections, **latency_summary(latencies)}


def main(params: dict[str, Any]) -> dict[str, Any]:
    seconds = float(params.get("seconds", 5.0))
    connections = int(params.get("connections", 32))
    processes = int(params.get("processes", 1))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "dwf.sqlite3"
        asyncio.run(_prepare(db, connections))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "--db", str(db), "serve", "--host", "127.0.0.1",
             "--port", str(port), "--processes", str(processes)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "DWF_LOG_LEVEL": "warning"})
        try:
            _wait_until_up(port, server)
            time.sleep(1.0 if processes > 1 else 0)  # every process listening, not just one
            # The client shares the cores with the server: uvloop costs it less of them.
            result = eventloop.run(_load(f"http://127.0.0.1:{port}/", seconds, connections))
            return {**result, "processes": processes}
        finally:
            stop(server, timeout=30)


def _wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dwf serve exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("dwf serve did not start listening within 30 s")


if __name__ == "__main__":
    emit(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
