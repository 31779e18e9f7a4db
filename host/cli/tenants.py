"""`dwf tenant ...`: register modules, list tenants and versions, activate, limits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import Context, cli, emit, json_option, ms, parse_tenant, reports_errors, table

if TYPE_CHECKING:  # imported when a command runs (Context.run)
    from ..durable.engine import DurableEngine

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
    tid = parse_tenant(tenant_name)
    info = obj.run(lambda engine: engine.registry.register(tid, module.read_bytes()))
    data = {"tenant_id": tid, "sha256": info.sha256, "version": info.version,
            "workflows": list(info.workflows), "size_bytes": info.size_bytes, "sdk": info.sdk,
            "fetch": info.fetch}
    emit(as_json, data, lambda: (f"registered {module.name} for {tid}: version "
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
    emit(as_json, data, lambda: table(
        ["TENANT", "VERSION", "VERSIONS", "SHA256", "WORKFLOWS"],
        [[t.tenant_id, t.active_version, t.versions, t.active_sha256[:16],
          ", ".join(t.workflows)] for t in tenants]))


@tenant.command("versions")
@click.argument("tenant_name", metavar="TENANT")
@json_option
@click.pass_obj
@reports_errors
def tenant_versions(obj: Context, tenant_name: str, as_json: bool) -> None:
    """List every module version TENANT registered, with how many instances still run on
    each (UNFINISHED: a version has drained at 0)."""
    tid = parse_tenant(tenant_name)

    async def body(engine: DurableEngine) -> tuple[list[Any], list[Any]]:
        return await engine.registry.versions(tid), await engine.upgrades.versions(tid)
    versions, usage = obj.run(body)
    counts = {u.sha256: u for u in usage}
    data = [{"version": v.version, "sha256": v.sha256, "active": v.active,
             "workflows": list(v.workflows), "registered_at_ms": v.registered_at_ms,
             "unfinished": counts[v.sha256].unfinished, "finished": counts[v.sha256].finished}
            for v in versions if v.sha256 in counts]
    emit(as_json, data, lambda: table(
        ["VERSION", "ACTIVE", "SHA256", "REGISTERED", "UNFINISHED", "FINISHED", "WORKFLOWS"],
        [[v.version, "*" if v.active else "", v.sha256[:16], ms(v.registered_at_ms),
          counts[v.sha256].unfinished, counts[v.sha256].finished, ", ".join(v.workflows)]
         for v in versions if v.sha256 in counts]))


@tenant.command("activate")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("version")
@json_option
@click.pass_obj
@reports_errors
def tenant_activate(obj: Context, tenant_name: str, version: str, as_json: bool) -> None:
    """Make VERSION (its number, its sha256, or a unique prefix of it) TENANT's active module."""
    tid = parse_tenant(tenant_name)
    info = obj.run(lambda engine: engine.registry.activate(tid, version))
    emit(as_json, {"tenant_id": tid, "version": info.version, "sha256": info.sha256},
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
    tid = parse_tenant(tenant_name)
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
    emit(as_json, limits, lambda: table(["LIMIT", "VALUE"], [[k, v] for k, v in limits.items()]))
