"""Who a request acts as: its bearer token, and the tenant it may reach.

Used by the /v1 API, /metrics (admin only) and, through its session cookie, the dashboard
(ui/), which finds its principal itself and asks `tenant_for`.

A tenant token acts for its own tenant only: any other tenant, existing or not, is 404 to
it, exactly as an unknown one, so a token cannot even learn which other tenants exist. An
admin token acts for all, and only it may change what the operator decides (egress).
"""

from __future__ import annotations

from aiohttp import web

from ..core.errors import NotFound
from ..core.ids import TenantId, tenant_id
from .common import TOKENS, HttpError
from .tokens import Principal

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dwf"'}


async def principal_of(request: web.Request) -> Principal:
    """The request's principal (401 without a valid bearer token)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "unauthorized", "send `Authorization: Bearer <token>`; an operator "
                        "creates tokens with `dwf token create TENANT`", _BEARER_CHALLENGE)
    principal = await request.app[TOKENS].authenticate(token.strip())
    if principal is None:
        raise HttpError(401, "unauthorized", "the bearer token is unknown or revoked",
                        _BEARER_CHALLENGE)
    request["token_id"] = principal.token_id
    return principal


async def authorized_tenant(request: web.Request, *, admin: bool = False) -> TenantId:
    """The path's tenant, once the request's token may act for it (else 404); with
    `admin`, only an admin token may (403 for the tenant's own)."""
    principal = await principal_of(request)
    tid = tenant_id(request.match_info["tenant"])
    request["tenant_id"] = tid
    if not principal.may_act_for(tid):
        raise NotFound(f"unknown tenant {tid!r}")  # the same answer as for no such tenant
    if admin and not principal.admin:
        raise HttpError(403, "forbidden", "this is the operator's to change: it needs an "
                        "admin token (`dwf token create --admin`)")
    return tid


async def admin_principal(request: web.Request) -> Principal:
    """The request's principal, which must be an admin token (401, or 403 for a tenant's)."""
    principal = await principal_of(request)
    if not principal.admin:
        raise HttpError(403, "forbidden", "this needs an admin token (`dwf token create "
                        "--admin`); a tenant token sees only its own tenant")
    return principal


def tenant_for(request: web.Request, principal: Principal, raw: str) -> TenantId:
    """The tenant named `raw`, once `principal` may act for it (else 404, as for none)."""
    tid = tenant_id(raw)
    request["tenant_id"] = tid
    if not principal.may_act_for(tid):
        raise NotFound(f"unknown tenant {tid!r}")  # the same answer as for no such tenant
    return tid
