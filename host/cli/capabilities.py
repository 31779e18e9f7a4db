"""`dwf tenant egress` and `dwf secret ...`: what a tenant's guests may reach, with what.

Egress rules are the operator's: deny by default, an allow or deny rule per scheme, host
and port, `--private` only for an exact IP address. Secret values are read from stdin
(never from the command line, where `ps` and shell history would see them) and never
printed back.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..core.errors import NotFound
from .common import Context, cli, emit, json_option, ms, parse_tenant, reports_errors, table
from .tenants import tenant

if TYPE_CHECKING:  # imported when a command runs (Context.run)
    from ..durable.engine import DurableEngine
    from ..egress.rules import EgressRule
    from ..store import SecretInfo


def _rules_view(rules: list[EgressRule]) -> list[dict[str, object]]:
    return [{"action": "allow" if rule.allow else "deny", "rule": str(rule),
             "private": rule.private} for rule in rules]


@tenant.command("egress")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--allow", multiple=True, metavar="RULE",
              help="Allow requests to RULE: SCHEME://HOST[:PORT], HOST exact or *.example.com, "
                   "PORT * for any (repeatable).")
@click.option("--deny", multiple=True, metavar="RULE", help="Deny RULE; denials win.")
@click.option("--private", is_flag=True,
              help="The --allow rules name exact IP addresses that may be private "
                   "(loopback, RFC 1918, link-local): refused otherwise.")
@click.option("--clear", is_flag=True, help="Remove every rule first (then deny all).")
@json_option
@click.pass_obj
@reports_errors
def tenant_egress(obj: Context, tenant_name: str, allow: tuple[str, ...], deny: tuple[str, ...],
                  private: bool, clear: bool, as_json: bool) -> None:
    """Show TENANT's egress rules (outbound HTTP from its steps), or change them."""
    tid = parse_tenant(tenant_name)
    if private and not allow:
        raise click.UsageError("--private applies to --allow rules: give at least one")

    async def body(engine: DurableEngine) -> list[EgressRule]:
        if allow or deny or clear:
            return await engine.egress.change_rules(tid, allow=allow, deny=deny,
                                                    private=private, clear=clear)
        return await engine.egress.rules(tid)
    rules = obj.run(body)
    emit(as_json, _rules_view(rules), lambda: table(
        ["ACTION", "RULE", "PRIVATE"],
        [["allow" if r.allow else "deny", r, "yes" if r.private else ""] for r in rules])
        if rules else f"{tid} may not reach anything (no egress rules: every request is denied)")


@cli.group()
def secret() -> None:
    """Tenant secrets: substituted into outbound requests, never shown again."""


@secret.command("set")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("name")
@json_option
@click.pass_obj
@reports_errors
def secret_set(obj: Context, tenant_name: str, name: str, as_json: bool) -> None:
    """Store secret NAME for TENANT; its value is read from stdin (one trailing newline is
    dropped). Guests use it as {{secret:NAME}} in an outbound header or body."""
    tid = parse_tenant(tenant_name)
    value = sys.stdin.read().removesuffix("\n")
    obj.run(lambda engine: engine.egress.set_secret(tid, name, value))
    emit(as_json, {"tenant_id": tid, "name": name, "set": True},
         lambda: f"secret {name} of {tid} is set")


@secret.command("list")
@click.argument("tenant_name", metavar="TENANT")
@json_option
@click.pass_obj
@reports_errors
def secret_list(obj: Context, tenant_name: str, as_json: bool) -> None:
    """List TENANT's secrets: names and dates, never values."""
    tid = parse_tenant(tenant_name)
    found: list[SecretInfo] = obj.run(lambda engine: engine.egress.secrets(tid))
    emit(as_json, [s.to_dict() for s in found], lambda: table(
        ["NAME", "CREATED", "UPDATED"],
        [[s.name, ms(s.created_at_ms), ms(s.updated_at_ms)] for s in found])
        if found else f"{tid} has no secrets")


@secret.command("delete")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("name")
@json_option
@click.pass_obj
@reports_errors
def secret_delete(obj: Context, tenant_name: str, name: str, as_json: bool) -> None:
    """Delete TENANT's secret NAME."""
    tid = parse_tenant(tenant_name)
    if not obj.run(lambda engine: engine.egress.delete_secret(tid, name)):
        raise NotFound(f"{tid} has no secret {name!r}: see `dwf secret list {tid}`")
    emit(as_json, {"tenant_id": tid, "name": name, "deleted": True},
         lambda: f"secret {name} of {tid} is deleted")
