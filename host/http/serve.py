"""`dwf serve`: the worker and the HTTP server in one process, on one DurableEngine.

Shutdown (SIGTERM or SIGINT) loses no accepted work: stop listening, let every in-flight
request finish (up to `shutdown_timeout_s`), then let the worker finish every invocation it
started, then close the database. Instances created by a request are committed before its
response is sent, so whatever is still queued runs when a worker starts again.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ..core.errors import InvalidInput
from ..durable.engine import DurableEngine
from ..durable.worker import Worker, stop_when_orphaned
from .common import FETCH, ServerConfig
from .server import create_app
from .tokens import TokenStore

log = structlog.get_logger("dwf.serve")


async def serve(db: str | Path, host: str, port: int, *, concurrency: int | None = None,
                config: ServerConfig = ServerConfig(), lease_ms: int | None = None,
                member: str | None = None, recover: bool = True,
                **engine_options: Any) -> None:
    """Run until SIGTERM/SIGINT. The caller holds the database's worker lock, or is
    `member` of a group (`dwf serve --processes N`) whose processes share the port;
    `engine_options` go to DurableEngine.open (a module source)."""
    engine = await DurableEngine.open(db, lease_ms=lease_ms, worker_id=member,
                                      **engine_options)
    runner: web.AppRunner | None = None
    stop = asyncio.Event()
    worker_stop = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphaned = asyncio.create_task(stop_when_orphaned(stop)) if member else None
    try:
        app = create_app(engine, TokenStore(engine.store), config)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=config.shutdown_timeout_s)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=member is not None).start()
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        worker_task = asyncio.create_task(
            Worker(engine, concurrency, recover=recover).run(worker_stop))
        worker_task.add_done_callback(lambda _: stop.set())  # a dead worker ends serving
        log.info("http.listening", host=bound_host, port=bound_port,
                 url=f"http://{bound_host}:{bound_port}")
        await stop.wait()
        log.info("http.stopping", in_flight="finishing requests, then invocations")
    finally:
        if runner is not None:
            await runner.cleanup()  # stops accepting, then waits for in-flight requests
            await runner.app[FETCH].drain()  # and guests whose request timed out meanwhile
        worker_stop.set()
        try:
            if worker_task is not None:
                await worker_task  # finishes every invocation it started
        finally:
            if orphaned is not None:
                orphaned.cancel()
            await engine.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            log.info("http.stopped")
