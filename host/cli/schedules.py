"""`dwf schedule create|list|pause|resume|delete`: cron schedules (fired by `dwf worker`
and `dwf serve`, whichever sees a tick first, exactly once)."""

from __future__ import annotations

import click

from ..store.lifecycle import Catchup, Overlap
from .common import (
    Context,
    cli,
    emit,
    json_option,
    ms,
    parse_json,
    parse_tenant,
    reports_errors,
    table,
)


@cli.group()
def schedule() -> None:
    """Cron schedules: an instance of a workflow at every tick."""


@schedule.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("workflow")
@click.option("--cron", "expression", required=True, metavar="EXPR",
              help="Five fields (minute hour day-of-month month day-of-week), or @hourly, "
                   "@daily, @weekly, @monthly, @yearly.")
@click.option("--tz", "timezone", default="UTC", show_default=True, metavar="ZONE",
              help="The IANA time zone the expression is read in (e.g. Europe/Berlin).")
@click.option("--params", help="The instances' params as JSON.")
@click.option("--overlap", type=click.Choice([o.value for o in Overlap]), default="skip",
              show_default=True, help="skip: no new instance while the previous one runs.")
@click.option("--catchup", type=click.Choice([c.value for c in Catchup]), default="none",
              show_default=True, help="Ticks missed while no worker ran: none, the last one, "
                                      "or all of them.")
@click.option("--id", "schedule_id", help="The schedule's id (default: WORKFLOW-<random>); "
              "its instances are named ID-<tick in UTC>.")
@json_option
@click.pass_obj
@reports_errors
def schedule_create(obj: Context, tenant_name: str, workflow: str, expression: str,
                    timezone: str, params: str | None, overlap: str, catchup: str,
                    schedule_id: str | None, as_json: bool) -> None:
    """Start an instance of TENANT's WORKFLOW at every tick of --cron."""
    tid = parse_tenant(tenant_name)
    parsed = parse_json(params, "--params")
    created = obj.run(lambda engine: engine.schedules.create(
        tid, workflow, expression, timezone=timezone, params=parsed, overlap=Overlap(overlap),
        catchup=Catchup(catchup), schedule_id=schedule_id))
    emit(as_json, created.to_dict(), lambda: (
        f"schedule {created.schedule_id} starts {workflow} at '{created.cron}' "
        f"({created.timezone}); first tick {ms(created.next_tick_ms)} UTC"))


@schedule.command("list")
@click.argument("tenant_name", metavar="TENANT", required=False)
@json_option
@click.pass_obj
@reports_errors
def schedule_list(obj: Context, tenant_name: str | None, as_json: bool) -> None:
    """List schedules (of TENANT, or of every tenant)."""
    tid = parse_tenant(tenant_name) if tenant_name else None
    found = obj.run(lambda engine: engine.schedules.list(tid))
    emit(as_json, [s.to_dict() for s in found], lambda: table(
        ["TENANT", "ID", "WORKFLOW", "CRON", "TZ", "NEXT (UTC)", "STARTED", "SKIPPED",
         "LAST INSTANCE", "STATE"],
        [[s.tenant_id, s.schedule_id, s.workflow, s.cron, s.timezone, ms(s.next_tick_ms),
          s.started, s.skipped, s.last_instance_id or "-",
          "paused" if s.paused else (f"error: {s.last_error}" if s.last_error else "active")]
         for s in found]))


def _control(action: str, help_text: str) -> None:
    @schedule.command(action, help=help_text)
    @click.argument("tenant_name", metavar="TENANT")
    @click.argument("schedule_id", metavar="ID")
    @json_option
    @click.pass_obj
    @reports_errors
    def command(obj: Context, tenant_name: str, schedule_id: str, as_json: bool) -> None:
        tid = parse_tenant(tenant_name)
        if action == "delete":
            obj.run(lambda engine: engine.schedules.delete(tid, schedule_id))
            emit(as_json, {"id": schedule_id, "deleted": True},
                 lambda: f"deleted schedule {schedule_id} (its instances stay)")
            return
        changed = obj.run(lambda engine: getattr(engine.schedules, action)(tid, schedule_id))
        emit(as_json, changed.to_dict(), lambda: (
            f"{schedule_id}: paused" if changed.paused
            else f"{schedule_id}: next tick {ms(changed.next_tick_ms)} UTC"))


_control("pause", "Stop firing ID's ticks until it is resumed.")
_control("resume", "Fire ID again, from its next tick after now (missed ticks are not run).")
_control("delete", "Delete schedule ID (the instances it started stay).")
