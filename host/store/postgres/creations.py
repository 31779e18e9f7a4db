"""Creating instances on PostgreSQL: every creation of a writer batch in one INSERT.

A crowd of callers each creating an instance (`POST .../instances`, `create`) queues one
creation each; the writer runs the creations of a stretch (`database.Merged`) as one read
of the tenants' active versions and one INSERT over arrays, however many there are. Each
creation still succeeds or fails alone, all of its instances or none: one whose id is
taken (by an instance already stored, or by a creation before it in the same batch) is
refused and leaves nothing behind, and the others go in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ...core.errors import DuplicateInstance, DwfError, UnknownTenant
from ...core.ids import InstanceId, ModuleSha, TenantId
from ...core.limits import LimitsParser
from ...core.model import DUE_NOW
from ..interface import PrepareInstances
from ..records import ActiveVersion, NewInstance
from .database import Batch, Merged, columns

INSERT_INSTANCES_SQL = (
    "INSERT INTO instances (tenant_id, instance_id, workflow, module_sha256, params, status, "
    "wake_at_ms, parent_instance_id, created_at_ms, updated_at_ms) "
    f"SELECT n.tenant_id, n.instance_id, n.workflow, n.sha256, n.params, 'queued', {DUE_NOW}, "
    "n.parent, n.now, n.now FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::bytea[], $6::text[], $7::bigint[]) "
    "AS n (tenant_id, instance_id, workflow, sha256, params, parent, now) "
    "ON CONFLICT (tenant_id, instance_id) DO NOTHING RETURNING tenant_id, instance_id")
"""Queued instances, of any tenants; an id already taken is skipped (not returned)."""

UNDO_SQL = (
    "DELETE FROM instances i USING unnest($1::text[], $2::text[]) AS u (tenant_id, "
    "instance_id) WHERE i.tenant_id = u.tenant_id AND i.instance_id = u.instance_id")

ACTIVE_SQL = (
    "SELECT t.tenant_id, t.active_sha256, t.limits, tm.manifest FROM tenants t "
    "JOIN tenant_modules tm ON tm.tenant_id = t.tenant_id AND tm.sha256 = t.active_sha256 "
    "WHERE t.tenant_id = ANY($1::text[])")

Row = tuple[str, str, str, str, bytes, str | None, int]  # as INSERT_INSTANCES_SQL's arrays
Key = tuple[str, str]  # (tenant_id, instance_id)


async def active_versions(batch: Batch, tenants: Iterable[str],
                          limits: LimitsParser) -> dict[str, ActiveVersion]:
    """The active version, its workflows and limits of each tenant that has one, read in
    the creating transaction (an activation committed meanwhile comes after the
    creation)."""
    return {row["tenant_id"]: ActiveVersion(ModuleSha(row["active_sha256"]),
                                            tuple(json.loads(row["manifest"])["workflows"]),
                                            limits.parse(row["limits"]))
            for row in await batch.conn.fetch(ACTIVE_SQL, sorted(set(tenants)))}


def rows_of(tenant_id: TenantId, news: list[NewInstance], sha256: ModuleSha, now: int,
            parent: InstanceId | None = None) -> list[Row]:
    return [(tenant_id, new.instance_id, new.workflow, sha256, new.params, parent, now)
            for new in news]


async def insert_rows(batch: Batch, rows: list[Row]) -> set[Key]:
    """Insert queued instances (keys unique among `rows`); the keys that went in (a taken
    one did not)."""
    if not rows:
        return set()
    inserted = {(row[0], row[1]) for row in await batch.conn.fetch(
        INSERT_INSTANCES_SQL, *columns(rows))}
    if inserted:
        batch.notify = True  # due now: every worker hears it
    return inserted


async def insert_groups(batch: Batch, groups: list[list[Row]]) -> list[DuplicateInstance | None]:
    """Insert each group all or none, in one statement: for each, None if it went in, else
    the DuplicateInstance that refused it (its id taken, by a stored instance or by a group
    before it), having left nothing of it."""
    refused: list[DuplicateInstance | None] = []
    seen: set[Key] = set()
    rows: list[Row] = []
    for group in groups:
        keys: set[Key] = set()
        taken = None
        for row in group:
            key = (row[0], row[1])
            if key in seen or key in keys:
                taken = key
                break
            keys.add(key)
        if taken is not None:
            refused.append(DuplicateInstance(*taken))
            continue
        refused.append(None)
        seen |= keys
        rows.extend(group)
    inserted = await insert_rows(batch, rows)
    undo: list[Key] = []
    for index, group in enumerate(groups):
        if refused[index] is not None:
            continue
        missing = next(((row[0], row[1]) for row in group if (row[0], row[1]) not in inserted),
                       None)
        if missing is not None:
            refused[index] = DuplicateInstance(*missing)
            undo.extend((row[0], row[1]) for row in group if (row[0], row[1]) in inserted)
    if undo:
        await batch.conn.execute(UNDO_SQL, *columns(undo))
    return refused


async def insert_instances(batch: Batch, tenant_id: TenantId, news: list[NewInstance],
                           sha256: ModuleSha, now: int, parent: InstanceId | None = None
                           ) -> None:
    """Insert queued instances, all or none (DuplicateInstance if an id is taken)."""
    [refused] = await insert_groups(batch, [rows_of(tenant_id, news, sha256, now, parent)])
    if refused is not None:
        raise refused


class Creation(Merged):
    """`Storage.create_instances` as a write: the creations of a stretch are one read of
    the tenants' active versions and one INSERT (`insert_groups`)."""

    __slots__ = ("tenant_id", "count", "prepare", "now", "limits")
    merge_order = 2

    def __init__(self, tenant_id: TenantId, count: int, prepare: PrepareInstances, now: int,
                 limits: LimitsParser) -> None:
        self.tenant_id = tenant_id
        self.count = count
        self.prepare = prepare
        self.now = now
        self.limits = limits

    @classmethod
    async def run_merged(cls, batch: Batch, ops: list[Any]) -> list[tuple[bool, Any]]:
        actives = await active_versions(batch, (op.tenant_id for op in ops), ops[0].limits)
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(ops)
        going: list[tuple[int, list[Row]]] = []  # (index in ops, its rows)
        for index, op in enumerate(ops):
            active = actives.get(op.tenant_id)
            try:
                if active is None:
                    raise UnknownTenant(op.tenant_id)
                prepared = op.prepare(active)  # raises DwfError to create nothing
            except DwfError as exc:
                outcomes[index] = (False, exc)
                continue
            assert len(prepared) == op.count, "prepare returns one instance per request"
            going.append((index, rows_of(op.tenant_id, prepared, active.sha256, op.now)))
        refusals = await insert_groups(batch, [rows for _, rows in going])
        for (index, rows), refused in zip(going, refusals, strict=True):
            outcomes[index] = ((False, refused) if refused is not None
                               else (True, [InstanceId(row[1]) for row in rows]))
        return outcomes
