"""`dwf worker` and `dwf serve`: the long-running processes."""

from __future__ import annotations

import asyncio
import signal

import click

from ..core.limits import MIB
from .common import Context, cli, reports_errors


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Instances run at once (default: twice the guest threads).")
@click.pass_obj
@reports_errors
def worker(obj: Context, concurrency: int | None) -> None:
    """Run due instances until stopped (SIGINT/SIGTERM finish in-flight work first)."""
    from .. import eventloop
    from ..durable.engine import DurableEngine
    from ..durable.worker import Worker, worker_lock

    async def main() -> None:
        engine = await DurableEngine.open(obj.db, **obj.engine_options())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await Worker(engine, concurrency).run(stop)
        finally:
            await engine.close()
    with worker_lock(obj.db):
        eventloop.run(main())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port; the log line http.listening says "
                   "which).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Instances run at once (default: twice the guest threads).")
@click.option("--max-body-bytes", type=click.IntRange(1), default=MIB,
              show_default=True, help="Largest management API request body.")
@click.option("--shutdown-timeout", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds in-flight requests get to finish on SIGTERM.")
@click.pass_obj
@reports_errors
def serve(obj: Context, host: str, port: int, concurrency: int | None, max_body_bytes: int,
          shutdown_timeout: float) -> None:
    """Run the worker and the HTTP server: tenants' fetch handlers and the /v1 API.

    SIGINT/SIGTERM stop accepting, finish in-flight requests, then in-flight instances.
    """
    from .. import eventloop
    from ..durable.worker import worker_lock
    from ..http.common import ServerConfig  # aiohttp is imported only when serving
    from ..http.serve import serve as run_server

    config = ServerConfig(max_body_bytes=max_body_bytes, shutdown_timeout_s=shutdown_timeout)
    with worker_lock(obj.db):
        eventloop.run(run_server(obj.db, host, port, concurrency=concurrency,
                                 config=config, **obj.engine_options()))
