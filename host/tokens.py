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

from .clock import Clock
from .database import Database
from .errors import NotFound
from .ids import TenantId

TOKEN_PREFIX = "dwf"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    tenant_id: TenantId | None
    """The tenant the token acts for; None for an admin token."""

    name: str
    created_at_ms: int
    revoked_at_ms: int | None

    @property
    def admin(self) -> bool:
        return self.tenant_id is None

    def to_dict(self) -> dict[str, object]:
        return {"token_id": self.token_id, "tenant_id": self.tenant_id, "admin": self.admin,
                "name": self.name, "created_at_ms": self.created_at_ms,
                "revoked_at_ms": self.revoked_at_ms}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated request acts as."""

    token_id: str
    tenant_id: TenantId | None

    def may_act_for(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, tenant_id: TenantId | None, name: str = "") -> tuple[TokenInfo, str]:
        """A new token; the secret is returned here and never again."""
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock.now_ms()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO api_tokens (token_id, tenant_id, token_sha256, name, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?)",
                (token_id, tenant_id, _digest(token), name, now))
        return TokenInfo(token_id, tenant_id, name, now, None), token

    async def list(self, tenant_id: TenantId | None = None) -> list[TokenInfo]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = await self.db.fetchall(
            "SELECT token_id, tenant_id, name, created_at_ms, revoked_at_ms FROM api_tokens "
            f"{where} ORDER BY created_at_ms, token_id", params)
        return [TokenInfo(row["token_id"], row["tenant_id"], row["name"], row["created_at_ms"],
                          row["revoked_at_ms"]) for row in rows]

    async def revoke(self, token_id: str) -> None:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE api_tokens SET revoked_at_ms = ? WHERE token_id = ? AND "
                "revoked_at_ms IS NULL", (self.clock.now_ms(), token_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no active token {token_id!r}: see `dwf token list`")

    async def authenticate(self, token: str) -> Principal | None:
        """The principal a presented token proves, or None (unknown, revoked or malformed)."""
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret:
            return None
        row = await self.db.fetchone(
            "SELECT tenant_id, token_sha256 FROM api_tokens WHERE token_id = ? AND "
            "revoked_at_ms IS NULL", (token_id,))
        if row is None or not hmac.compare_digest(_digest(token), row["token_sha256"]):
            return None
        return Principal(token_id, row["tenant_id"])
