"""API tokens: created by the CLI and shown once, stored only as a hash, revocable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pg_schemas import database_dump

from host import DurableEngine, TenantId
from host.http.tokens import TokenStore


def _dwf(db: str | Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DWF_DB": str(db), "DWF_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert expect == done.returncode, (done.stdout, done.stderr)
    return done


def test_token_commands(db: str | Path) -> None:
    created = _dwf(db, "token", "create", "acme", "--name", "deploys")
    token = created.stdout.strip()
    assert token.startswith("dwf_") and "\n" not in token  # alone on stdout: $(...) works
    assert "shown" in created.stderr and "not shown again" in created.stderr
    admin = json.loads(_dwf(db, "token", "create", "--admin", "--json").stdout)
    assert (True, None) == (admin["admin"], admin["tenant_id"])

    listed = json.loads(_dwf(db, "token", "list", "--json").stdout)
    assert [("acme", "deploys"), (None, "")] == [(t["tenant_id"], t["name"]) for t in listed]
    assert token.split("_")[1] == listed[0]["token_id"]
    assert "token" not in listed[0]
    table = _dwf(db, "token", "list", "--tenant", "acme").stdout
    assert "deploys" in table and "(admin)" not in table and token not in table

    # Only a hash is stored: the token appears nowhere in the database.
    dump = database_dump(db)
    assert token not in dump and token.split("_", 2)[2] not in dump

    _dwf(db, "token", "revoke", listed[0]["token_id"])
    again = _dwf(db, "token", "revoke", listed[0]["token_id"], expect=1)
    assert "no active token" in again.stderr
    assert json.loads(_dwf(db, "token", "list", "--json").stdout)[0]["revoked_at_ms"]


@pytest.mark.parametrize("args", [("token", "create"), ("token", "create", "acme", "--admin")])
def test_token_create_needs_a_tenant_or_admin(db: str | Path, args: tuple[str, ...]) -> None:
    done = _dwf(db, *args, expect=2)
    assert "give either TENANT or --admin" in done.stderr


async def test_authentication(engine: DurableEngine) -> None:
    tokens = TokenStore(engine.store)
    info, token = await tokens.create(TenantId("acme"))
    principal = await tokens.authenticate(token)
    assert principal is not None
    assert (info.token_id, "acme") == (principal.token_id, principal.tenant_id)
    assert principal.may_act_for("acme") and not principal.may_act_for("globex")
    for forged in ("", token + "x", token[:-1], token.replace("dwf_", "xyz_"),
                   f"dwf_{info.token_id}_", f"dwf_{info.token_id}", "dwf__secret"):
        assert await tokens.authenticate(forged) is None, forged
    await tokens.revoke(info.token_id)
    assert await tokens.authenticate(token) is None
    _, admin = await tokens.create(None)
    found = await tokens.authenticate(admin)
    assert found is not None and found.may_act_for("anyone")
