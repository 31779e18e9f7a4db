"""`dwf run`, `wait`, `status`, `history`, `list`, `send-event` and instance control.

Commands that only read or steer instances open the database alone
(`Context.run_on_instances`), not the engine: they start fast.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.errors import WorkerBusy
from ..core.ids import TenantId
from ..core.model import Status
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

if TYPE_CHECKING:
    from ..durable.engine import DurableEngine
    from ..durable.instances import InstanceStatus, InstanceStore
    from ..store.lifecycle import UpgradeRecord

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


async def _wait_for(engine: DurableEngine, db: str | Path, tid: TenantId, iid: str,
                    timeout: float | None) -> None:
    """Until the instance finishes (or `timeout` seconds pass): run it here when no worker
    runs on the database, else watch the worker do it."""
    from ..durable.worker import Worker, worker_lock

    deadline = None if timeout is None else time.monotonic() + timeout

    async def finished() -> bool:
        status = await engine.instances.status(tid, iid, with_steps=False)
        return status.status.finished

    try:
        if await engine.store.live_workers():
            raise WorkerBusy("workers share this database: one of them runs it")
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


@cli.command()
@click.argument("tenant_name", metavar="TENANT")
@click.argument("instance_id", metavar="ID")
@click.option("--timeout", type=click.FloatRange(0), default=None,
              help="Give up after SECONDS (exit 1, the instance goes on).")
@json_option
@click.pass_obj
@reports_errors
def wait(obj: Context, tenant_name: str, instance_id: str, timeout: float | None,
         as_json: bool) -> None:
    """Wait until an existing instance finishes, then show it; exit 0 only if it completed.

    Runs it in this process when no worker is running on the database.
    """
    tid = parse_tenant(tenant_name)

    async def body(engine: DurableEngine) -> InstanceStatus:
        await engine.instances.current_status(tid, instance_id)  # UnknownInstance at once
        await _wait_for(engine, obj.db, tid, instance_id, timeout)
        return await engine.instances.status(tid, instance_id)
    status = obj.run(body)
    _print_status(status, as_json)
    if not status.status.finished:
        click.echo(f"error: {instance_id} is still {status.status.value} after {timeout} s",
                   err=True)
    if status.status is not Status.COMPLETE:
        sys.exit(EXIT_FAILED)


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
    """One row per journal position; under a step that ever failed, one per attempt; a
    move to another version (`dwf upgrade`) where the journal stood when it moved."""
    rows: list[list[Any]] = []
    pending = list(moves)

    def moved_before(position: int | None) -> None:
        while pending and (position is None or pending[0].journal_length <= position):
            move = pending.pop(0)
            rows.append(["", "moved", f"version {move.from_version or '?'} -> "
                         f"{move.to_version or '?'}", "", "", ms(move.upgraded_at_ms),
                         f"dwf upgrade (to {move.to_sha256[:16]}…)"])
    for s in steps:
        moved_before(s["position"])
        rows.append([s["position"], s["kind"], s["name"], s["state"], s["attempts"],
                     ms(s["finished_at_ms"]), _error_text(s["error"]) if s["error"]
                     else short(s["result"])])
        history = s.get("attempt_history", [])
        if s["attempts"] > 1 or any(a["error"] for a in history):
            if len(history) < s["attempts"]:
                rows.append(["", "", f"  ({s['attempts'] - len(history)} earlier tries "
                             "not kept)", "", "", "", ""])
            rows += [["", "", f"  try {a['attempt']}", a["state"], "",
                      ms(a["finished_at_ms"]), _attempt_text(a)] for a in history]
    moved_before(None)
    return table(["#", "KIND", "NAME", "STATE", "TRIES", "FINISHED", "RESULT / ERROR"], rows)


def _error_text(error: dict[str, str]) -> str:
    return f"{error['name']}: {error['message']}"


def _attempt_text(attempt: dict[str, Any]) -> str:
    took = f"took {attempt['finished_at_ms'] - attempt['started_at_ms']} ms"
    if attempt["error"] is None:
        return took
    text = f"{_error_text(attempt['error'])} ({took}"
    delay = attempt["retry_delay_ms"]
    return text + (f", retried after {delay} ms)" if delay is not None else ")")


@cli.command()
@instance_arguments
def status(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's status, output or error, and steps."""
    tid = parse_tenant(tenant_name)
    _print_status(obj.run_on_instances(lambda instances: instances.status(tid, instance_id)),
                  as_json)


@cli.command()
@instance_arguments
def history(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
    """Show an instance's journal: every step, sleep, wait and binding call in order."""
    tid = parse_tenant(tenant_name)

    async def body(instances: InstanceStore) -> tuple[list[dict[str, Any]],
                                                      list[UpgradeRecord]]:
        status = await instances.status(tid, instance_id)
        return status.steps, await instances.store.instance_upgrades(tid, instance_id)
    steps, moves = obj.run_on_instances(body)
    emit(as_json, steps, lambda: _steps_table(steps, moves) if steps or moves
         else "no steps recorded yet")


@cli.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's instances.")
@click.option("--status", "status_name", type=click.Choice([s.value for s in Status]),
              help="Only instances in this status.")
@click.option("--workflow", help="Only instances of this workflow.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Instances per page.")
@click.option("--cursor", help="The next page: the cursor the previous page printed.")
@json_option
@click.pass_obj
@reports_errors
def list_instances(obj: Context, tenant_name: str | None, status_name: str | None,
                   workflow: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """List instances, newest first, a page at a time."""
    from ..durable.instances import InstanceQuery, decode_cursor

    query = InstanceQuery(parse_tenant(tenant_name) if tenant_name else None,
                          Status(status_name) if status_name else None, workflow,
                          after=decode_cursor(cursor) if cursor else None, limit=limit)
    page = obj.run_on_instances(lambda instances: instances.page(query))
    rows = [s.to_dict() for s in page.instances]
    for row in rows:
        del row["steps"]  # a list row has none (see `dwf status`)

    def human() -> str:
        text = table(["TENANT", "ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"],
                     [[s.tenant_id, s.instance_id, s.workflow, s.status.value,
                       ms(s.created_at_ms), ms(s.finished_at_ms)] for s in page.instances])
        if page.next_cursor:
            text += f"\nmore: add --cursor {page.next_cursor}"
        return text
    emit(as_json, {"instances": rows, "next_cursor": page.next_cursor}, human)


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
    obj.run_on_instances(lambda instances: instances.send_event(tid, instance_id, event_type,
                                                                parsed))
    emit(as_json, {"sent": True, "type": event_type, "id": instance_id},
          lambda: f"sent {event_type!r} to {instance_id}")


def _control(action: str, help_text: str) -> None:
    @cli.command(action, help=help_text)
    @instance_arguments
    def command(obj: Context, tenant_name: str, instance_id: str, as_json: bool) -> None:
        tid = parse_tenant(tenant_name)

        async def body(instances: InstanceStore) -> Status:
            status: Status = await getattr(instances, action)(tid, instance_id)
            return status
        result = obj.run_on_instances(body)
        emit(as_json, {"id": instance_id, "status": result.value},
              lambda: f"{instance_id}: {result.value}")


_control("pause", "Pause an instance (a running one stops at its next step boundary).")
_control("resume", "Resume a paused instance.")
_control("terminate", "Stop an instance for good.")
_control("restart", "Run an instance again from the start (its journal is cleared).")
