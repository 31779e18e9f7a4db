"""Who a request acts as: its bearer token, and the tenant it may act for.

Used by the /v1 API (api.py), /metrics (admin only) and, through its session cookie, the
dashboard (ui/). A tenant token acts for its own tenant only: any other tenant, existing or
not, is 404 to it, exactly as an unknown one, so a token cannot even learn which other
tenants exist. An admin token acts for all.
"""

from __future__ import annotations

from aiohttp import web

from ..core.errors import NotFound
from ..core.ids import TenantId, tenant_id
from .common import TOKENS, HttpError
from .tokens import Principal

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dwf"'}


async def principal(request: web.Request) -> Principal:
    """The principal of the request's `Authorization: Bearer` token (else 401)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "unauthorized", "send `Authorization: Bearer <token>`; an operator "
                        "creates tokens with `dwf token create TENANT`", BEARER_CHALLENGE)
    found = await request.app[TOKENS].authenticate(token.strip())
    if found is None:
        raise HttpError(401, "unauthorized", "the bearer token is unknown or revoked",
                        BEARER_CHALLENGE)
    request["token_id"] = found.token_id
    return found


async def admin(request: web.Request) -> Principal:
    """The request's principal, which must be an admin token (else 401 or 403)."""
    found = await principal(request)
    if found.tenant_id is not None:
        raise HttpError(403, "forbidden", "this needs an admin token (`dwf token create "
                        "--admin`); a tenant token sees only its own tenant")
    return found


def tenant_for(request: web.Request, who: Principal, raw: str) -> TenantId:
    """The tenant named `raw`, once `who` may act for it (else 404, as for none)."""
    tid = tenant_id(raw)
    request["tenant_id"] = tid
    if not who.may_act_for(tid):
        raise NotFound(f"unknown tenant {tid!r}")  # the same answer as for no such tenant
    return tid


async def path_tenant(request: web.Request) -> TenantId:
    """The path's tenant, once the request's token may act for it (else 404)."""
    return tenant_for(request, await principal(request), request.match_info["tenant"])
