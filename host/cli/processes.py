"""`dwf worker` and `dwf serve`: the long-running processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..core.errors import InvalidInput
from ..core.limits import MIB
from ..store import is_postgres_url
from .common import Context, cli, reports_errors
from .supervisor import MEMBER_OPTION, reserved_port, supervise


def lease_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lease-seconds", type=click.FloatRange(0.5, 3600), default=None,
        help="PostgreSQL: how long this worker keeps its instances when it stops renewing "
             "its lease (paused, partitioned) before other workers take them over "
             "(default 10; a killed worker's are taken at once).")(fn)


def _lease_ms(lease_seconds: float | None) -> int | None:
    return None if lease_seconds is None else int(lease_seconds * 1000)


def processes_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--processes", type=click.IntRange(1, 256), default=1, show_default=True,
        help="Run this many processes on the database, to use that many cores (one "
             "process uses about one, whatever its threads).")(fn)
    return click.option(MEMBER_OPTION, "member", default=None, hidden=True,
                        help="Set by --processes: this process's worker id in its group.")(fn)


def _group_lock(db: str | Path, member: str | None) -> contextlib.AbstractContextManager[None]:
    """The worker lock of a SQLite file: a group's supervisor holds it for its members."""
    from ..durable.worker import worker_lock
    return contextlib.nullcontext() if member is not None else worker_lock(db)


def _recovers(db: str | Path, member: str | None) -> bool:
    """Whether this process recovers the database as it starts: a member of a SQLite
    group does not (its supervisor did, and its siblings are running)."""
    return member is None or is_postgres_url(db)


def _child_args(**options: Any) -> list[str]:
    """The options a supervisor passes on to each of its processes (a flag alone when
    True, nothing when None or False)."""
    args = []
    for name, value in options.items():
        option = f"--{name.replace('_', '-')}"
        if value is True:
            args.append(option)
        elif value is not None and value is not False:
            args += [option, str(value)]
    return args


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Instances run at once (default: twice the guest threads).")
@lease_option
@processes_options
@click.pass_obj
@reports_errors
def worker(obj: Context, concurrency: int | None, lease_seconds: float | None,
           processes: int, member: str | None) -> None:
    """Run due instances until stopped (SIGINT/SIGTERM finish in-flight work first)."""
    if processes > 1:
        sys.exit(supervise(obj.db, ["worker", *_child_args(
            concurrency=concurrency, lease_seconds=lease_seconds)], processes,
            obj.global_args()))
    from .. import eventloop
    from ..durable.engine import DurableEngine
    from ..durable.worker import Worker, stop_when_orphaned

    async def main() -> None:
        engine = await DurableEngine.open(obj.db, lease_ms=_lease_ms(lease_seconds),
                                          worker_id=member, **obj.engine_options())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        orphaned = asyncio.create_task(stop_when_orphaned(stop)) if member else None
        try:
            await Worker(engine, concurrency, recover=_recovers(obj.db, member)).run(stop)
        finally:
            if orphaned is not None:
                orphaned.cancel()
            await engine.close()
    with _group_lock(obj.db, member):
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
@click.option("--secure-cookies", is_flag=True, envvar="DWF_SECURE_COOKIES",
              help="Mark the dashboard's cookies Secure (browsers then send them over "
                   "HTTPS only): for a server behind a proxy that terminates TLS (env "
                   "DWF_SECURE_COOKIES=1).")
@lease_option
@processes_options
@click.pass_obj
@reports_errors
def serve(obj: Context, host: str, port: int, concurrency: int | None, max_body_bytes: int,
          shutdown_timeout: float, secure_cookies: bool, lease_seconds: float | None,
          processes: int, member: str | None) -> None:
    """Run the worker and the HTTP server: tenants' fetch handlers and the /v1 API.

    SIGINT/SIGTERM stop accepting, finish in-flight requests, then in-flight instances.
    With --processes N, N processes serve the same port (the kernel spreads connections).
    """
    from .. import eventloop
    from ..http.common import ServerConfig  # aiohttp is imported only when serving
    from ..http.serve import serve as run_server

    if processes > 1:
        try:
            with reserved_port(host, port) as shared:
                sys.exit(supervise(obj.db, ["serve", *_child_args(
                    host=host, port=shared, concurrency=concurrency,
                    max_body_bytes=max_body_bytes, shutdown_timeout=shutdown_timeout,
                    lease_seconds=lease_seconds, secure_cookies=secure_cookies)],
                    processes, obj.global_args()))
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    config = ServerConfig(max_body_bytes=max_body_bytes, shutdown_timeout_s=shutdown_timeout,
                          secure_cookies=secure_cookies)
    with _group_lock(obj.db, member):
        eventloop.run(run_server(obj.db, host, port, concurrency=concurrency,
                                 config=config, lease_ms=_lease_ms(lease_seconds),
                                 member=member, recover=_recovers(obj.db, member),
                                 **obj.engine_options()))
