"""`dwf token ...`: API tokens for the HTTP management API."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .common import Context, cli, emit, json_option, ms, parse_tenant, reports_errors, table

if TYPE_CHECKING:  # imported when a command runs (Context.run)
    from ..durable.engine import DurableEngine
    from ..http.tokens import TokenInfo, TokenStore


def _tokens(engine: DurableEngine) -> TokenStore:
    from ..http.tokens import TokenStore
    return TokenStore(engine.store)

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
    tid = parse_tenant(tenant_name) if tenant_name else None

    async def body(engine: DurableEngine) -> tuple[TokenInfo, str]:
        return await _tokens(engine).create(tid, name)
    info, secret = obj.run(body)
    if as_json:
        emit(True, {**info.to_dict(), "token": secret}, lambda: "")
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
    tid = parse_tenant(tenant_name) if tenant_name else None
    found = obj.run(lambda engine: _tokens(engine).list(tid))
    emit(as_json, [t.to_dict() for t in found], lambda: table(
        ["TOKEN ID", "TENANT", "NAME", "CREATED", "REVOKED"],
        [[t.token_id, t.tenant_id or "(admin)", t.name, ms(t.created_at_ms),
          ms(t.revoked_at_ms)] for t in found]))


@token.command("revoke")
@click.argument("token_id", metavar="TOKEN_ID")
@json_option
@click.pass_obj
@reports_errors
def token_revoke(obj: Context, token_id: str, as_json: bool) -> None:
    """Revoke a token by its id; requests with it get 401 from then on."""
    obj.run(lambda engine: _tokens(engine).revoke(token_id))
    emit(as_json, {"token_id": token_id, "revoked": True}, lambda: f"revoked {token_id}")
