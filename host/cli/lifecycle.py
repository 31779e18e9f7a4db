"""`dwf tenant check`, `dwf tenant prune`, `dwf upgrade` and `dwf replay`: deploying new
code under instances in flight, and seeing how a recorded run replays.

Each exits non-zero when what it was asked to confirm does not hold: a check with an
instance that would break, an upgrade that left a named instance behind, a replay that
diverged from its journal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..core.ids import TenantId
from ..core.model import StepState
from .common import (
    EXIT_FAILED,
    Context,
    cli,
    emit,
    json_option,
    parse_tenant,
    reports_errors,
    short,
    table,
)
from .tenants import tenant

if TYPE_CHECKING:  # imported when a command runs: `dwf --help` must start fast
    from ..durable.engine import DurableEngine
    from ..durable.replay import ReplayReport
    from ..durable.upgrade import CheckReport, UpgradeReport

module_argument = click.argument("module", type=click.Path(exists=True, dir_okay=False,
                                                           path_type=Path))


# -- dwf tenant check / prune ------------------------------------------------------

@tenant.command("check")
@click.argument("tenant_name", metavar="TENANT")
@module_argument
@json_option
@click.pass_obj
@reports_errors
def tenant_check(obj: Context, tenant_name: str, module: Path, as_json: bool) -> None:
    """Would MODULE.wasm replay every unfinished instance of TENANT? Replays each journal
    against it in a sandbox (nothing is written or run for real); exits 1 if any would
    break."""
    tid = parse_tenant(tenant_name)
    report = obj.run(lambda engine: engine.upgrades.check(tid, module.read_bytes()))
    emit(as_json, report.to_dict(), lambda: _check_text(report))
    if not report.compatible:
        sys.exit(EXIT_FAILED)


def _check_text(report: CheckReport) -> str:
    if not report.instances:
        return f"{report.tenant_id} has no unfinished instance: nothing to check"
    rows = [[r.inputs.instance_id, r.inputs.workflow, r.inputs.status.value,
             "compatible" if r.compatible else "BREAKS", r.stop.position,
             "-" if r.compatible else str(r.stop.recorded or "-"),
             "-" if r.compatible else str(r.stop.issued or "-")]
            for r in report.instances]
    broken = [r for r in report.instances if not r.compatible]
    lines = [table(["INSTANCE", "WORKFLOW", "STATUS", "VERDICT", "AT", "RECORDED", "NOW"],
                   rows), ""]
    lines += [f"{r.inputs.instance_id}: {r.stop.message}" for r in broken]
    total = len(report.instances)
    lines.append(f"{total - len(broken)} of {total} unfinished instances would replay on "
                 f"{report.module_sha256[:16]}…" + (f"; {len(broken)} would break"
                                                    if broken else ""))
    return "\n".join(lines)


@tenant.command("prune")
@click.argument("tenant_name", metavar="TENANT")
@json_option
@click.pass_obj
@reports_errors
def tenant_prune(obj: Context, tenant_name: str, as_json: bool) -> None:
    """Delete TENANT's versions that are neither active nor used by any instance."""
    tid = parse_tenant(tenant_name)
    pruned = obj.run(lambda engine: engine.upgrades.prune(tid))
    emit(as_json, [usage.to_dict() for usage in pruned], lambda: (
        f"pruned {len(pruned)} version{'s' if len(pruned) != 1 else ''} of {tid}"
        + (": " + ", ".join(str(usage.version) for usage in pruned) if pruned else "")))


# -- dwf upgrade ---------------------------------------------------------------------

@cli.command()
@click.argument("tenant_name", metavar="TENANT")
@click.option("--to", "to_version", required=True, metavar="VERSION",
              help="The version (number or sha256) to move instances to.")
@click.option("--instance", "instance_ids", multiple=True, metavar="ID",
              help="An instance to move (repeatable).")
@click.option("--all-compatible", is_flag=True,
              help="Move every unfinished instance that replays on VERSION.")
@json_option
@click.pass_obj
@reports_errors
def upgrade(obj: Context, tenant_name: str, to_version: str, instance_ids: tuple[str, ...],
            all_compatible: bool, as_json: bool) -> None:
    """Move in-flight instances of TENANT to VERSION, each only if its journal replays
    on it (checked again now); the others stay on their version. Exits 1 if a named
    instance did not move."""
    tid = parse_tenant(tenant_name)
    if bool(instance_ids) == all_compatible:
        raise click.UsageError("give either --instance ID (repeatable) or --all-compatible")
    wanted = list(instance_ids) if instance_ids else None
    report = obj.run(lambda engine: engine.upgrades.upgrade(tid, to_version, wanted))
    emit(as_json, report.to_dict(), lambda: _upgrade_text(report))
    if instance_ids and report.moved < len(report.instances):
        sys.exit(EXIT_FAILED)


def _upgrade_text(report: UpgradeReport) -> str:
    if not report.instances:
        return f"{report.tenant_id} has no unfinished instance to move"
    rows = [[o.instance_id, o.from_sha256[:16], "moved" if o.moved else "stays", o.reason]
            for o in report.instances]
    return "\n".join([table(["INSTANCE", "FROM", "RESULT", "WHY"], rows), "",
                      f"moved {report.moved} of {len(report.instances)} to version "
                      f"{report.to_version} ({report.to_sha256[:16]}…)"])


# -- dwf replay ----------------------------------------------------------------------

@cli.command()
@click.argument("tenant_name", metavar="TENANT")
@click.argument("instance_id", metavar="ID")
@click.option("--module", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay through this module instead of the instance's own.")
@json_option
@click.pass_obj
@reports_errors
def replay(obj: Context, tenant_name: str, instance_id: str, module: Path | None,
           as_json: bool) -> None:
    """Run ID's recorded journal through its module (or --module), printing each step call
    as the guest makes it with its recorded result; stops at the first divergence (exit
    1). Nothing is written and no step body runs."""
    tid = parse_tenant(tenant_name)

    async def body(engine: DurableEngine) -> ReplayReport:
        candidate = (await engine.replayer.candidate(tid, module.read_bytes())
                     if module is not None else None)
        return await engine.replayer.replay(await engine.replayer.inputs(tid, instance_id),
                                            candidate)
    from ..durable.recorded_journal import Ending

    report = obj.run(body)
    emit(as_json, report.to_dict(), lambda: _replay_text(tid, report, module))
    if report.stop.ending in (Ending.DIVERGED, Ending.FAILED):
        sys.exit(EXIT_FAILED)


def _replay_text(tid: TenantId, report: ReplayReport, module: Path | None) -> str:
    from ..durable.recorded_journal import Ending

    inputs = report.inputs
    source = (f"{module.name} ({report.module_sha256[:16]}…)" if module is not None
              else f"its own module ({inputs.sha256[:16]}…)")
    lines = [f"replaying {tid}/{inputs.instance_id} ({inputs.workflow}, {inputs.status.value}, "
             f"{len(inputs.records)} journal positions) through {source}"]
    for step in report.to_dict()["steps"]:
        if step["error"] is not None:
            answer = f"error {step['error']['name']}: {step['error']['message']}"
        elif step["state"] == StepState.OK.value:
            answer = f"ok {short(step['result'])}"
        else:
            answer = "pending"
        lines.append(f"  #{step['position']:<4} {step['kind']:<6} {step['name']}  ->  {answer}")
    stop = report.stop
    headline = {Ending.FRONTIER: "matches the journal", Ending.FINISHED: "finished",
                Ending.DIVERGED: "DIVERGES", Ending.FAILED: "FAILED"}[stop.ending]
    lines.append(f"{headline} at position {stop.position}: {stop.message}")
    if stop.ending is Ending.DIVERGED:
        lines.append(f"  recorded: {stop.recorded or 'nothing (the journal ends before)'}")
        lines.append(f"  now:      {stop.issued or 'nothing (the module finished)'}")
    return "\n".join(lines)
