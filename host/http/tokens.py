"""API tokens for the HTTP management API: created by the CLI, stored hashed.

A token is `dwf_<token_id>_<secret>`: the id names it (lists, revocation, logs) and the
secret, 256 random bits, is what proves it. Only sha256 of the whole token is stored, and
authentication compares hashes in constant time. A tenant token acts for its one tenant;
an admin token (tenant NULL) for every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..core.errors import NotFound
from ..core.ids import TenantId
from ..store import Storage, TokenInfo

__all__ = ["Principal", "TokenInfo", "TokenStore"]

TOKEN_PREFIX = "dwf"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated request acts as."""

    token_id: str
    tenant_id: TenantId | None

    @property
    def admin(self) -> bool:
        return self.tenant_id is None

    def may_act_for(self, tenant_id: str) -> bool:
        return self.admin or self.tenant_id == tenant_id


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, store: Storage) -> None:
        self.store = store
        self.clock = store.clock

    async def create(self, tenant_id: TenantId | None, name: str = "") -> tuple[TokenInfo, str]:
        """A new token; the secret is returned here and never again."""
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, tenant_id, name, self.clock.now_ms(), None)
        await self.store.insert_token(info, _digest(token))
        return info, token

    async def list(self, tenant_id: TenantId | None = None) -> list[TokenInfo]:
        return await self.store.tokens(tenant_id)

    async def revoke(self, token_id: str) -> None:
        if not await self.store.revoke_token(token_id):
            raise NotFound(f"no active token {token_id!r}: see `dwf token list`")

    async def authenticate(self, token: str) -> Principal | None:
        """The principal a presented token proves, or None (unknown, revoked or malformed)."""
        if not token.isascii():  # ours are; a raw 0xff byte must not reach the database
            return None
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret:
            return None
        found = await self.store.token_digest(token_id)
        if found is None or not hmac.compare_digest(_digest(token), found[1]):
            return None
        return Principal(token_id, found[0])
