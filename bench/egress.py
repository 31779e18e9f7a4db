"""Outbound HTTP overhead: a step doing one loopback GET, beside a plain aiohttp client.

    python -m bench.egress '{"calls": 2000}'

A loopback server runs in its own process and notes when each request arrives. The raw
client is one aiohttp session making `calls` GETs one after another; ours is one workflow
instance whose `calls` steps each make the same GET through `http_fetch` (egress rules,
the SSRF guard, the tenant's limits, the journal). The p50 of the gaps between arrivals
is the full cost of one call either way, the guest's steps and their checkpoints
included for ours; calls/s is calls over the wall time. Target: ours within 1 ms of raw.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import emit, percentile

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "build" / "bench" / "egressbench.wasm"


async def _serve() -> None:
    from aiohttp import web

    arrivals: list[float] = []

    async def ping(request: web.Request) -> web.Response:
        arrivals.append(time.perf_counter())
        return web.Response(text="pong")

    async def gaps(request: web.Request) -> web.Response:
        taken = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        arrivals.clear()
        return web.json_response(taken)

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_get("/gaps", gaps)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


async def _gaps(base: str) -> list[float]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{base}/gaps") as response:
        gaps: list[float] = await response.json()
        return gaps


async def _raw(base: str, calls: int) -> dict[str, Any]:
    import aiohttp

    await _gaps(base)
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for _ in range(calls):
            async with session.get(f"{base}/ping") as response:
                await response.read()
        elapsed = time.perf_counter() - started
    return _summary(await _gaps(base), calls, elapsed)


async def _ours(base: str, calls: int) -> dict[str, Any]:
    from host import DurableEngine, Status, TenantId

    with tempfile.TemporaryDirectory() as tmp:
        engine = await DurableEngine.open(Path(tmp) / "bench.sqlite3")
        try:
            tenant = TenantId("bench")
            await engine.registry.register(tenant, GUEST.read_bytes())
            await engine.registry.set_limits(tenant, {"egress_requests_per_minute": 10**9})
            await engine.egress.change_rules(tenant, allow=[base], private=True)
            warm = await engine.instances.create(tenant, "gets", {"url": f"{base}/ping",
                                                                  "count": 10})
            await engine.run_until_idle()
            await _gaps(base)
            started = time.perf_counter()
            instance = await engine.instances.create(tenant, "gets", {
                "url": f"{base}/ping", "count": calls})
            await engine.run_until_idle()
            elapsed = time.perf_counter() - started
            for done in (warm, instance):
                status = await engine.instances.status(tenant, done, with_steps=False)
                assert status.status is Status.COMPLETE, status.to_dict()
        finally:
            await engine.close()
    return _summary(await _gaps(base), calls, elapsed)


def _summary(gaps: list[float], calls: int, elapsed: float) -> dict[str, Any]:
    return {"calls_per_s": calls / elapsed, "p50_ms": percentile(gaps, 50) * 1e3,
            "p99_ms": percentile(gaps, 99) * 1e3, "calls": calls}


async def _measure(params: dict[str, Any]) -> dict[str, Any]:
    calls = int(params.get("calls", 2000))
    server = subprocess.Popen([sys.executable, "-m", "bench.egress", "serve"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        raw = await _raw(base, calls)
        ours = await _ours(base, calls)
    finally:
        server.kill()
        server.wait()
    return {"raw": raw, "ours": ours, "overhead_p50_ms": ours["p50_ms"] - raw["p50_ms"]}


def main() -> None:
    from host import eventloop, logs

    logs.configure("warning")  # a log line per request is part of neither side's cost here
    if sys.argv[1] == "serve":
        eventloop.run(_serve())
        return
    emit(eventloop.run(_measure(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
