"""`dwf run`, `status`, `history`, `list`, `send-event` and instance control."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..core.errors import WorkerBusy
from ..core.ids import TenantId
from ..durable.engine import DurableEngine
from ..durable.instances import InstanceStatus, Status
from ..durable.worker import Worker, worker_lock
from ..store.lifecycle import UpgradeRecord
from .common import (
    EXIT_FAILED,
    Context,
    cli,
    emit,
    instance_arguments,
    json_option,
    ms,
    parse_json,
    parse_tenant,
    reports_errors,
    short,
    table,
)

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
    tid = parse_tenant(tenant_name)
    parsed = parse_json(params, "--params")

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
            lines.append(f"output    {short(status.to_dict()['output'], 200)}")
        if status.error:
            lines.append(f"error     {status.error['name']}: {status.error['message']}")
        if status.wake_at_ms and not status.status.finished:
            lines.append(f"wakes at  {ms(status.wake_at_ms)}"
                         + (f" (or on event {status.waiting_event_type!r})"
                            if status.waiting_event_type else ""))
        if status.steps:
            lines += ["", _steps_table(status.steps)]
        return "\n".join(lines)
    emit(as_json, status.to_dict(), human)


def _steps_table(steps: list[dict[str, Any]], moves: Sequence[UpgradeRecord] = ()) -> str:
    """The journal as a table; `moves` (dwf upgrade) appear where the journal stood."""
    rows = [[s["position"], s["kind"], s["name"], s["state"], s["attempts"],
             ms(s["finished_at_ms"]),
             f"{s['error']['name']}: {s['error']['message']}" if s["error"]
             else short(s["result"])] for s in steps]
    for move in reversed(moves):
        rows.insert(min(move.journal_length, len(rows)), [
            "", "moved", f"version {move.from_version or '?'} -> {move.to_version or '?'}", "",
            "", ms(move.upgraded_at_ms), f"dwf upgrade (to {move.to_sha256[:16]}…)"])
    return table(["#", "KIND", "NAME", "STATE", "TRIES", "FINISHED", "RESULT / ERROR"], rows)


@cli.command()
@instance_arguments
def status(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's status, output or error, and steps."""
    tid = parse_tenant(tenant_name)
    _print_status(obj.run(lambda engine: engine.instances.status(tid, instance_id)), as_json)


@cli.command()
@instance_arguments
def history(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's journal: every step, sleep, wait and binding call in order."""
    tid = parse_tenant(tenant_name)

    async def body(engine: DurableEngine) -> tuple[list[dict[str, Any]], list[UpgradeRecord]]:
        status = await engine.instances.status(tid, instance_id)
        return status.steps, await engine.upgrades.history(tid, instance_id)
    steps, moves = obj.run(body)
    emit(as_json, steps, lambda: _steps_table(steps, moves) if steps or moves
         else "no steps recorded yet")


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
    tid = parse_tenant(tenant_name) if tenant_name else None
    wanted = Status(status_name) if status_name else None
    found = obj.run(lambda engine: engine.instances.list(tid, wanted, limit))
    emit(as_json, [s.to_dict() for s in found], lambda: table(
        ["TENANT", "ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"],
        [[s.tenant_id, s.instance_id, s.workflow, s.status.value, ms(s.created_at_ms),
          ms(s.finished_at_ms)] for s in found]))


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
    tid = parse_tenant(tenant_name)
    parsed = parse_json(payload, "--payload")
    obj.run(lambda engine: engine.instances.send_event(tid, instance_id, event_type, parsed))
    emit(as_json, {"sent": True, "type": event_type, "id": instance_id},
          lambda: f"sent {event_type!r} to {instance_id}")


def _control(action: str, help_text: str) -> None:
    @cli.command(action, help=help_text)
    @instance_arguments
    def command(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
        tid = parse_tenant(tenant_name)

        async def body(engine: DurableEngine) -> Status:
            status: Status = await getattr(engine.instances, action)(tid, instance_id)
            return status
        result = obj.run(body)
        emit(as_json, {"id": instance_id, "status": result.value},
              lambda: f"{instance_id}: {result.value}")


_control("pause", "Pause an instance (a running one stops at its next step boundary).")
_control("resume", "Resume a paused instance.")
_control("terminate", "Stop an instance for good.")
_control("restart", "Run an instance again from the start (its journal is cleared).")
