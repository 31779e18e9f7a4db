"""Deploying new code under running instances: check a candidate against every instance
in flight, move the compatible ones to a new version, see which versions have drained,
and prune the ones nothing uses.

An instance is pinned to the module version it started with, because replaying its
journal through other code can take another path. A candidate is *compatible* with an
instance when it replays the instance's whole journal (every recorded position asked for
again, by the same kind and name) up to where the instance goes on, without failing:
that is exactly what a wake would do with it. `check` says so per instance (replaying in
sandboxes that write nothing, see `replay.py`); `upgrade` checks again and moves the
instances that pass, each in one transaction that also confirms nothing ran it since.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InvalidInput, InvalidState, NotFound, UnknownTenant
from ..core.ids import InstanceId, ModuleSha, TenantId
from ..sandbox.pool import IsolatePool
from ..store import Storage
from ..store.lifecycle import (
    UPGRADABLE,
    InstanceInputs,
    UpgradeRecord,
    VersionMove,
    VersionUsage,
    journal_digest,
)
from .registry import ModuleRegistry
from .replay import Candidate, Replayer, ReplayReport


@dataclass(frozen=True, slots=True)
class CheckReport:
    """A candidate module replayed against every unfinished instance of a tenant."""

    tenant_id: TenantId
    module_sha256: ModuleSha
    instances: list[ReplayReport]

    @property
    def compatible(self) -> bool:
        return all(report.compatible for report in self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "module_sha256": self.module_sha256,
                "compatible": self.compatible,
                "incompatible": sum(not report.compatible for report in self.instances),
                "instances": [report.to_dict() for report in self.instances]}


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What `upgrade` did with one instance."""

    instance_id: InstanceId
    from_sha256: ModuleSha
    moved: bool
    reason: str
    report: ReplayReport | None = None
    """The check it passed or failed (None if it was not replayed)."""

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "from_sha256": self.from_sha256,
                "moved": self.moved, "reason": self.reason,
                "check": self.report.to_dict() if self.report is not None else None}


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    tenant_id: TenantId
    to_sha256: ModuleSha
    to_version: int
    instances: list[MoveOutcome] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return sum(outcome.moved for outcome in self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "to_sha256": self.to_sha256,
                "to_version": self.to_version, "moved": self.moved,
                "instances": [outcome.to_dict() for outcome in self.instances]}


class Upgrades:
    """Check, upgrade, drain and prune for one database."""

    def __init__(self, store: Storage, pool: IsolatePool, replayer: Replayer) -> None:
        self.store = store
        self.pool = pool
        self.replayer = replayer

    async def check(self, tenant_id: TenantId, wasm: bytes) -> CheckReport:
        """Replay every unfinished instance of the tenant through `wasm` (checked as
        registration checks a module, never stored): which would go on, which would not."""
        await self.store.version_usage(tenant_id)  # UnknownTenant before any work
        candidate = await self.replayer.candidate(tenant_id, wasm)
        ids = await self.store.unfinished_instances(tenant_id)
        found = await self._inputs(tenant_id, ids)
        reports = await self._replay_all(found, candidate)
        return CheckReport(tenant_id, candidate.sha256, reports)

    async def upgrade(self, tenant_id: TenantId, to_version: str,
                      instance_ids: list[str] | None) -> UpgradeReport:
        """Move the named instances (None: every unfinished one) to the tenant's version
        `to_version` (a number or sha256), each only if it replays on it now; the others
        stay on their version, with the reason."""
        target = await self._version(tenant_id, to_version)
        wasm = await self.store.module_wasm(target.sha256)
        workflows = await self.store.module_workflows(tenant_id, target.sha256)
        candidate = Candidate(wasm, target.sha256, workflows)
        if instance_ids is None:
            ids = await self.store.unfinished_instances(tenant_id)
        else:
            if not instance_ids:
                raise InvalidInput("name at least one instance, or upgrade every compatible one")
            ids = [InstanceId(i) for i in dict.fromkeys(instance_ids)]
        found = await self._inputs(tenant_id, ids)
        report = UpgradeReport(tenant_id, target.sha256, target.version)
        movable = [inputs for inputs in found if inputs.sha256 != target.sha256
                   and inputs.status in UPGRADABLE]
        for inputs in found:
            if inputs.sha256 == target.sha256:
                report.instances.append(MoveOutcome(inputs.instance_id, inputs.sha256, False,
                                                    "it runs on that version already"))
            elif inputs.status not in UPGRADABLE:
                report.instances.append(MoveOutcome(
                    inputs.instance_id, inputs.sha256, False, _not_upgradable(inputs)))
        for checked in await self._replay_all(movable, candidate):
            report.instances.append(await self._move(tenant_id, checked, target.sha256))
        order = {iid: n for n, iid in enumerate(ids)}
        report.instances.sort(key=lambda outcome: order[outcome.instance_id])
        return report

    async def _move(self, tenant_id: TenantId, checked: ReplayReport,
                    to_sha256: ModuleSha) -> MoveOutcome:
        inputs = checked.inputs
        if not checked.compatible:
            return MoveOutcome(inputs.instance_id, inputs.sha256, False,
                               f"incompatible: {checked.stop.message}", checked)
        move = VersionMove(inputs.instance_id, inputs.sha256, to_sha256,
                           journal_digest(inputs.records), len(inputs.records))
        try:
            await self.store.move_instance(tenant_id, move)
        except InvalidState as exc:
            return MoveOutcome(inputs.instance_id, inputs.sha256, False, str(exc), checked)
        return MoveOutcome(inputs.instance_id, inputs.sha256, True,
                           f"compatible: {checked.stop.message}", checked)

    async def versions(self, tenant_id: TenantId) -> list[VersionUsage]:
        """Every version of the tenant with how many instances run on it (drain)."""
        return await self.store.version_usage(tenant_id)

    async def prune(self, tenant_id: TenantId) -> list[VersionUsage]:
        """Delete the versions that are neither active nor used by any instance, and the
        compiled code of those whose bytes went with them (no other tenant has them)."""
        pruned = await self.store.prune_versions(tenant_id)
        for usage in pruned:
            try:
                await self.store.module_wasm(usage.sha256)
            except NotFound:
                self.pool.forget(usage.sha256)
        return pruned

    async def history(self, tenant_id: TenantId, instance_id: str) -> list[UpgradeRecord]:
        return await self.store.instance_upgrades(tenant_id, instance_id)

    # -- helpers -------------------------------------------------------------------

    async def _version(self, tenant_id: TenantId, wanted: str) -> VersionUsage:
        """The version `wanted` names as `dwf tenant activate` reads it: a number, a sha256
        or a unique prefix of one (NotFound saying how to name one)."""
        modules = await self.store.modules(tenant_id)
        if not modules:
            raise UnknownTenant(tenant_id)
        named = ModuleRegistry.version_named(modules, tenant_id, wanted)
        for usage in await self.store.version_usage(tenant_id):
            if usage.sha256 == named.sha256:
                return usage
        raise NotFound(f"tenant {tenant_id!r} has no module version {wanted!r}")

    async def _inputs(self, tenant_id: TenantId,
                      ids: list[InstanceId]) -> list[InstanceInputs]:
        return [await self.replayer.inputs(tenant_id, iid) for iid in ids]

    async def _replay_all(self, found: list[InstanceInputs],
                          candidate: Candidate) -> list[ReplayReport]:
        """Replay each, a few at a time (as many as the pool has threads)."""
        turns = asyncio.Semaphore(self.pool.config.threads)

        async def one(inputs: InstanceInputs) -> ReplayReport:
            async with turns:
                return await self.replayer.replay(inputs, candidate)
        return list(await asyncio.gather(*(one(inputs) for inputs in found)))


def _not_upgradable(inputs: InstanceInputs) -> str:
    if inputs.status.finished:
        return f"it is {inputs.status.value}"
    return (f"it is {inputs.status.value} now; upgrade it when it waits or is paused "
            "(pause it first to be sure)")
