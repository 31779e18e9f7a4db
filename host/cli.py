"""`dwf`: the command line. JSON with --json, tables for people otherwise."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from . import eventloop, logs
from .core.errors import DwfError, InvalidInput, WorkerBusy
from .core.ids import TenantId, tenant_id
from .core.limits import MIB
from .durable.engine import DurableEngine
from .durable.instances import InstanceStatus, Status
from .durable.worker import Worker, worker_lock
from .http.tokens import TokenInfo, TokenStore

T = TypeVar("T")
DEFAULT_DB = "./dwf.sqlite3"
EXIT_FAILED = 1  # an error we explain; click uses 2 for usage errors


class Context:
    def __init__(self, db: Path) -> None:
        self.db = db

    def run(self, body: Callable[[DurableEngine], Awaitable[T]]) -> T:
        async def main() -> T:
            engine = await DurableEngine.open(self.db)
            try:
                return await body(engine)
            finally:
                await engine.close()
        return eventloop.run(main())


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON.")(fn)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear line (or JSON) and a non-zero exit, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DwfError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": {"code": exc.code.value, "message": str(exc)}}))
            else:
                click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    return wrapper


def instance_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    """TENANT ID arguments, --json, the context and error reporting: the instance commands."""
    for decorate in (reports_errors, click.pass_obj, json_option,
                     click.argument("instance_id", metavar="ID"),
                     click.argument("tenant_name", metavar="TENANT")):
        fn = decorate(fn)
    return fn


def _parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _emit(as_json: bool, data: Any, human: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else human())


@click.group()
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), envvar="DWF_DB",
              default=DEFAULT_DB, show_default=True,
              help="SQLite database file (env DWF_DB). Compiled modules are cached beside it.")
@click.option("--log-level", default=None,
              help="debug, info, warning or error (env DWF_LOG_LEVEL).")
@click.pass_context
def cli(ctx: click.Context, db: Path, log_level: str | None) -> None:
    """dynamic-workflows: durable, sandboxed tenant workflows in WebAssembly."""
    logs.configure(log_level)
    ctx.obj = Context(db)


def _tenant(value: str) -> TenantId:
    try:
        return tenant_id(value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None


# -- tenants -----------------------------------------------------------------------

@cli.group()
def tenant() -> None:
    """Register and inspect tenant modules."""


@tenant.command("register")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
@reports_errors
def tenant_register(obj: Context, tenant_name: str, module: Path, as_json: bool) -> None:
    """Validate MODULE.wasm and make it TENANT's active version."""
    tid = _tenant(tenant_name)
    info = obj.run(lambda engine: engine.registry.register(tid, module.read_bytes()))
    data = {"tenant_id": tid, "sha256": info.sha256, "version": info.version,
            "workflows": list(info.workflows), "size_bytes": info.size_bytes, "sdk": info.sdk,
            "fetch": info.fetch}
    _emit(as_json, data, lambda: (f"registered {module.name} for {tid}: version "
                                  f"{info.version}, sha256 {info.sha256[:16]}…, workflows: "
                                  f"{', '.join(info.workflows)}"
                                  + (", and a fetch handler" if info.fetch else "")))


@tenant.command("list")
@json_option
@click.pass_obj
@reports_errors
def tenant_list(obj: Context, as_json: bool) -> None:
    """List tenants with their active module."""
    tenants = obj.run(lambda engine: engine.registry.tenants())
    data = [{"tenant_id": t.tenant_id, "active_sha256": t.active_sha256,
             "active_version": t.active_version, "versions": t.versions,
             "workflows": list(t.workflows), "limits": t.limits.as_dict()} for t in tenants]
    _emit(as_json, data, lambda: _table(
        ["TENANT", "VERSION", "VERSIONS", "SHA256", "WORKFLOWS"],
        [[t.tenant_id, t.active_version, t.versions, t.active_sha256[:16],
          ", ".join(t.workflows)] for t in tenants]))


@tenant.command("versions")
@click.argument("tenant_name", metavar="TENANT")
@json_option
@click.pass_obj
@reports_errors
def tenant_versions(obj: Context, tenant_name: str, as_json: bool) -> None:
    """List every module version TENANT registered."""
    tid = _tenant(tenant_name)
    versions = obj.run(lambda engine: engine.registry.versions(tid))
    data = [{"version": v.version, "sha256": v.sha256, "active": v.active,
             "workflows": list(v.workflows), "registered_at_ms": v.registered_at_ms}
            for v in versions]
    _emit(as_json, data, lambda: _table(
        ["VERSION", "ACTIVE", "SHA256", "REGISTERED", "WORKFLOWS"],
        [[v.version, "*" if v.active else "", v.sha256[:16], _ms(v.registered_at_ms),
          ", ".join(v.workflows)] for v in versions]))


@tenant.command("activate")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("version")
@json_option
@click.pass_obj
@reports_errors
def tenant_activate(obj: Context, tenant_name: str, version: str, as_json: bool) -> None:
    """Make VERSION (number or sha256) TENANT's active module again."""
    tid = _tenant(tenant_name)
    info = obj.run(lambda engine: engine.registry.activate(tid, version))
    _emit(as_json, {"tenant_id": tid, "version": info.version, "sha256": info.sha256},
          lambda: f"{tid} now runs version {info.version} ({info.sha256[:16]}…) for new instances")


@tenant.command("limits")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Override a limit, e.g. --set cpu_fuel=500000000 (repeatable).")
@json_option
@click.pass_obj
@reports_errors
def tenant_limits(obj: Context, tenant_name: str, settings: tuple[str, ...],
                  as_json: bool) -> None:
    """Show TENANT's limits, or change them with --set."""
    tid = _tenant(tenant_name)
    overrides: dict[str, Any] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not value.isdigit():
            raise click.BadParameter(f"{setting!r}: use NAME=INTEGER", param_hint="--set")
        overrides[name] = int(value)

    async def body(engine: DurableEngine) -> Any:
        if overrides:
            return await engine.registry.set_limits(tid, overrides)
        await engine.registry.versions(tid)  # UnknownTenant for a typo
        return await engine.registry.limits_for(tid)
    limits = obj.run(body).as_dict()
    _emit(as_json, limits, lambda: _table(["LIMIT", "VALUE"], [[k, v] for k, v in limits.items()]))


# -- instances ---------------------------------------------------------------------

@cli.command()
@click.argument("tenant_name", metavar="TENANT")
@click.argument("workflow")
@click.option("--params", help="Workflow params as JSON (the event payload).")
@click.option("--id", "instance_id", help="Instance id (default: a random one).")
@click.option("--wait", is_flag=True, help="Wait until the instance finishes. Runs it in this "
              "process when no worker is running on the database.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@json_option
@click.pass_obj
@reports_errors
def run(obj: Context, tenant_name: str, workflow: str, params: str | None,
        instance_id: str | None, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Create an instance of TENANT's WORKFLOW."""
    tid = _tenant(tenant_name)
    parsed = _parse_json(params, "--params")

    async def body(engine: DurableEngine) -> InstanceStatus:
        created = await engine.instances.create(tid, workflow, parsed, instance_id)
        if wait:
            await _wait_for(engine, obj.db, tid, created, timeout)
        return await engine.instances.status(tid, created)
    status = obj.run(body)
    _print_status(status, as_json)
    if wait and status.status is not Status.COMPLETE:
        sys.exit(EXIT_FAILED)


async def _wait_for(engine: DurableEngine, db: Path, tid: TenantId, iid: str,
                    timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout

    async def finished() -> bool:
        status = await engine.instances.status(tid, iid, with_steps=False)
        return status.status.finished

    try:
        with worker_lock(db):
            stop = asyncio.Event()
            task = asyncio.create_task(Worker(engine).run(stop))
            while not await finished() and not _expired(deadline):
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return
    except WorkerBusy:
        pass  # a worker is running: it will do the work, we just watch
    while not await finished() and not _expired(deadline):
        await asyncio.sleep(0.1)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _print_status(status: InstanceStatus, as_json: bool) -> None:
    def human() -> str:
        lines = [f"instance  {status.instance_id}", f"tenant    {status.tenant_id}",
                 f"workflow  {status.workflow}", f"status    {status.status.value}",
                 f"module    {status.module_sha256[:16]}…"]
        if status.output is not None:
            lines.append(f"output    {_short(status.to_dict()['output'], 200)}")
        if status.error:
            lines.append(f"error     {status.error['name']}: {status.error['message']}")
        if status.wake_at_ms and not status.status.finished:
            lines.append(f"wakes at  {_ms(status.wake_at_ms)}"
                         + (f" (or on event {status.waiting_event_type!r})"
                            if status.waiting_event_type else ""))
        if status.steps:
            lines += ["", _steps_table(status.steps)]
        return "\n".join(lines)
    _emit(as_json, status.to_dict(), human)


def _steps_table(steps: list[dict[str, Any]]) -> str:
    return _table(["#", "KIND", "NAME", "STATE", "TRIES", "FINISHED", "RESULT / ERROR"],
                  [[s["position"], s["kind"], s["name"], s["state"], s["attempts"],
                    _ms(s["finished_at_ms"]),
                    f"{s['error']['name']}: {s['error']['message']}" if s["error"]
                    else _short(s["result"])] for s in steps])


@cli.command()
@instance_arguments
def status(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's status, output or error, and steps."""
    tid = _tenant(tenant_name)
    _print_status(obj.run(lambda engine: engine.instances.status(tid, instance_id)), as_json)


@cli.command()
@instance_arguments
def history(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's journal: every step, sleep, wait and binding call in order."""
    tid = _tenant(tenant_name)
    steps = obj.run(lambda engine: engine.instances.status(tid, instance_id)).steps
    _emit(as_json, steps, lambda: _steps_table(steps) if steps else "no steps recorded yet")


@cli.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's instances.")
@click.option("--status", "status_name", type=click.Choice([s.value for s in Status]),
              help="Only instances in this status.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@json_option
@click.pass_obj
@reports_errors
def list_instances(obj: Context, tenant_name: str | None, status_name: str | None, limit: int,
                   as_json: bool) -> None:
    """List instances, oldest first."""
    tid = _tenant(tenant_name) if tenant_name else None
    wanted = Status(status_name) if status_name else None
    found = obj.run(lambda engine: engine.instances.list(tid, wanted, limit))
    _emit(as_json, [s.to_dict() for s in found], lambda: _table(
        ["TENANT", "ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"],
        [[s.tenant_id, s.instance_id, s.workflow, s.status.value, _ms(s.created_at_ms),
          _ms(s.finished_at_ms)] for s in found]))


@cli.command("send-event")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("instance_id", metavar="ID")
@click.argument("event_type", metavar="TYPE")
@click.option("--payload", help="Event payload as JSON.")
@json_option
@click.pass_obj
@reports_errors
def send_event(obj: Context, tenant_name: str, instance_id: str, event_type: str,
               payload: str | None, as_json: bool) -> None:
    """Send an event to an instance (buffered until it waits for TYPE)."""
    tid = _tenant(tenant_name)
    parsed = _parse_json(payload, "--payload")
    obj.run(lambda engine: engine.instances.send_event(tid, instance_id, event_type, parsed))
    _emit(as_json, {"sent": True, "type": event_type, "id": instance_id},
          lambda: f"sent {event_type!r} to {instance_id}")


def _control(action: str, help_text: str) -> None:
    @cli.command(action, help=help_text)
    @instance_arguments
    def command(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
        tid = _tenant(tenant_name)

        async def body(engine: DurableEngine) -> Status:
            status: Status = await getattr(engine.instances, action)(tid, instance_id)
            return status
        result = obj.run(body)
        _emit(as_json, {"id": instance_id, "status": result.value},
              lambda: f"{instance_id}: {result.value}")


_control("pause", "Pause an instance (a running one stops at its next step boundary).")
_control("resume", "Resume a paused instance.")
_control("terminate", "Stop an instance for good.")
_control("restart", "Run an instance again from the start (its journal is cleared).")


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Instances run at once (default: twice the guest threads).")
@click.pass_obj
@reports_errors
def worker(obj: Context, concurrency: int | None) -> None:
    """Run due instances until stopped (SIGINT/SIGTERM finish in-flight work first)."""
    async def main() -> None:
        engine = await DurableEngine.open(obj.db)
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
    from .http.common import ServerConfig  # aiohttp is imported only when serving
    from .http.serve import serve as run_server

    config = ServerConfig(max_body_bytes=max_body_bytes, shutdown_timeout_s=shutdown_timeout)
    with worker_lock(obj.db):
        eventloop.run(run_server(obj.db, host, port, concurrency=concurrency,
                                 config=config))


# -- API tokens --------------------------------------------------------------------

@cli.group()
def token() -> None:
    """Create, list and revoke API tokens for the HTTP management API."""


@token.command("create")
@click.argument("tenant_name", metavar="TENANT", required=False)
@click.option("--admin", is_flag=True, help="A token for every tenant (instead of TENANT).")
@click.option("--name", default="", help="A note saying what the token is for.")
@json_option
@click.pass_obj
@reports_errors
def token_create(obj: Context, tenant_name: str | None, admin: bool, name: str,
                 as_json: bool) -> None:
    """Create a token for TENANT (or --admin) and print it: it is shown only this once."""
    if admin == (tenant_name is not None):
        raise click.UsageError("give either TENANT or --admin")
    tid = _tenant(tenant_name) if tenant_name else None

    async def body(engine: DurableEngine) -> tuple[TokenInfo, str]:
        return await TokenStore(engine.store).create(tid, name)
    info, secret = obj.run(body)
    if as_json:
        _emit(True, {**info.to_dict(), "token": secret}, lambda: "")
        return
    click.echo(secret)  # alone on stdout, so `TOKEN=$(dwf token create acme)` works
    click.echo(f"token {info.token_id} for {tid or 'every tenant (admin)'}: store it now, "
               "it is not shown again", err=True)


@token.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's tokens.")
@json_option
@click.pass_obj
@reports_errors
def token_list(obj: Context, tenant_name: str | None, as_json: bool) -> None:
    """List tokens (ids and owners; the tokens themselves are not stored)."""
    tid = _tenant(tenant_name) if tenant_name else None
    found = obj.run(lambda engine: TokenStore(engine.store).list(tid))
    _emit(as_json, [t.to_dict() for t in found], lambda: _table(
        ["TOKEN ID", "TENANT", "NAME", "CREATED", "REVOKED"],
        [[t.token_id, t.tenant_id or "(admin)", t.name, _ms(t.created_at_ms),
          _ms(t.revoked_at_ms)] for t in found]))


@token.command("revoke")
@click.argument("token_id", metavar="TOKEN_ID")
@json_option
@click.pass_obj
@reports_errors
def token_revoke(obj: Context, token_id: str, as_json: bool) -> None:
    """Revoke a token by its id; requests with it get 401 from then on."""
    obj.run(lambda engine: TokenStore(engine.store).revoke(token_id))
    _emit(as_json, {"token_id": token_id, "revoked": True}, lambda: f"revoked {token_id}")


def main() -> None:
    cli(prog_name="dwf")


if __name__ == "__main__":
    main()
