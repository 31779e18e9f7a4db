"""Replaying an instance's journal through a module, with no effect on anything: the
replay debugger (`dwf replay`) and the deploy check (`dwf tenant check`) both run this.

The module is the instance's own (to see what a recorded run did, step by step) or a
candidate nobody has deployed (to see whether it would replay the instance). Either way it
runs in a fresh sandbox with the tenant's limits against a `RecordedJournal`, which answers
only from the record and ends the replay at the first call it cannot answer from it: no
write, no step body, no clock, no entropy, no other instance is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from ..core import codec
from ..core.errors import GuestErrorName, InvalidModule, UnknownInstance
from ..core.ids import ModuleSha, TenantId
from ..core.outcomes import Completed, Failed, Outcome, Suspended
from ..sandbox.modules import inspect_module
from ..sandbox.pool import IsolatePool, ModuleStub, module_sha
from ..store import Claim, Storage
from ..store.lifecycle import InstanceInputs
from .recorded_journal import Ending, RecordedJournal, ReplayedStep, ReplayStopped, Stop
from .registry import ModuleRegistry
from .run_event import invocation_event

log = structlog.get_logger("dwf.replay")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A module checked for the tenant (as registration checks one) but not stored."""

    wasm: bytes
    sha256: ModuleSha
    workflows: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """How one instance's journal replayed through one module."""

    inputs: InstanceInputs
    module_sha256: ModuleSha
    steps: list[ReplayedStep]
    stop: Stop
    outcome: Outcome | None = None
    """How the module ended when it returned (FINISHED) or failed (FAILED)."""

    @property
    def compatible(self) -> bool:
        """Whether the instance could go on with this module: every recorded position
        matched, and the module neither failed nor would fail the instance."""
        if self.stop.ending is Ending.FRONTIER:
            return True
        return self.stop.ending is Ending.FINISHED and isinstance(self.outcome, Completed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON view (for `--json` and the API)."""
        stop = self.stop
        return {
            "instance_id": self.inputs.instance_id, "workflow": self.inputs.workflow,
            "status": self.inputs.status.value, "pinned_sha256": self.inputs.sha256,
            "module_sha256": self.module_sha256, "compatible": self.compatible,
            "ending": stop.ending.value, "position": stop.position, "message": stop.message,
            "recorded": _call_view(stop.recorded), "issued": _call_view(stop.issued),
            "journal_length": len(self.inputs.records),
            "output": _outcome_view(self.outcome),
            "steps": [{"position": step.position, "kind": step.call.kind.value,
                       "name": step.call.name, "state": step.record.state.value,
                       "result": codec.to_jsonable(codec.stored_value(step.record.result))
                       if step.record.result is not None else None,
                       "error": {"name": step.record.error_name,
                                 "message": step.record.error_message}
                       if step.record.error_name else None}
                      for step in self.steps],
        }


def _call_view(call: Any) -> dict[str, str] | None:
    return {"kind": call.kind.value, "name": call.name} if call is not None else None


def _outcome_view(outcome: Outcome | None) -> dict[str, Any] | None:
    if isinstance(outcome, Completed):
        return {"complete": codec.to_jsonable(codec.stored_value(outcome.output))}
    if isinstance(outcome, Failed):
        return {"error": {"name": outcome.name, "message": outcome.message}}
    return None


class Replayer:
    """Replays instances of one database through their own or a candidate module."""

    def __init__(self, store: Storage, pool: IsolatePool, registry: ModuleRegistry) -> None:
        self.store = store
        self.pool = pool
        self.registry = registry

    async def candidate(self, tenant_id: TenantId, wasm: bytes) -> Candidate:
        """Check `wasm` as registration would (InvalidModule saying why; UploadInProgress
        while another of the tenant's modules is checked), without storing it: compiled in
        the compile lane and kept in memory only (a candidate never registered leaves no
        artifact on disk), described on a small budget."""
        with self.registry.one_upload(tenant_id):
            limits = await self.store.tenant_limits(tenant_id)
            manifest = await inspect_module(self.pool, wasm, limits,
                                            log.bind(tenant_id=tenant_id, phase="candidate"),
                                            on_disk=False)
        return Candidate(wasm, module_sha(wasm), tuple(manifest["workflows"]))

    async def inputs(self, tenant_id: TenantId, instance_id: str) -> InstanceInputs:
        found = await self.store.instance_inputs(tenant_id, instance_id)
        if found is None:
            raise UnknownInstance(tenant_id, instance_id)
        return found

    async def replay(self, inputs: InstanceInputs,
                     candidate: Candidate | None = None) -> ReplayReport:
        """Replay the instance's journal through `candidate`, or its own module."""
        tenant_id = inputs.tenant_id
        if candidate is None:
            sha256 = inputs.sha256
            stub = await self.pool.get(tenant_id, sha256, lambda: self.store.module_wasm(sha256))
        else:
            if inputs.workflow not in candidate.workflows:
                return ReplayReport(inputs, candidate.sha256, [], Stop(
                    Ending.FAILED, 0, f"the module has no workflow {inputs.workflow!r} (it "
                    f"defines: {', '.join(candidate.workflows)})"))
            wasm = candidate.wasm
            stub = await self.pool.get(tenant_id, candidate.sha256, _constant(wasm),
                                       on_disk=False)
        journal = RecordedJournal(inputs.records)
        logger = log.bind(tenant_id=tenant_id, instance_id=inputs.instance_id,
                          workflow=inputs.workflow, phase="replay")
        outcome = await self.pool.call(lambda: _run(stub, inputs, journal, logger))
        return _report(inputs, stub.sha256, journal, outcome)


def _constant(wasm: bytes) -> Any:
    async def load() -> bytes:
        return wasm
    return load


def _run(stub: ModuleStub, inputs: InstanceInputs, journal: RecordedJournal,
         logger: Any) -> Outcome | None:
    """On a pool thread: run the guest until it ends or the journal stops it (None)."""
    # No journal length and no replay in the event: the guest asks for every step, so
    # each one is checked and shown, and it never runs a step body on its own.
    event = invocation_event(Claim(inputs.tenant_id, inputs.instance_id, "replay"),
                             inputs.workflow, inputs.params, inputs.created_at_ms,
                             inputs.records, True, inputs.limits)
    try:
        return stub.run_workflow(inputs.limits, event, journal, logger)
    except ReplayStopped:
        return None


def _report(inputs: InstanceInputs, sha256: ModuleSha, journal: RecordedJournal,
            outcome: Outcome | None) -> ReplayReport:
    if journal.stop is not None:
        return ReplayReport(inputs, sha256, journal.steps, journal.stop)
    position = journal.position
    if isinstance(outcome, Completed):
        stop = Stop(Ending.FINISHED, position, "the module completed the workflow after "
                    f"matching all {position} recorded journal positions")
    elif isinstance(outcome, Failed) and outcome.name in _HOST_ERRORS:
        stop = Stop(Ending.FAILED, position, f"the module failed replaying at journal "
                    f"position {position}: {outcome.name}: {outcome.message}")
    elif isinstance(outcome, Failed):
        stop = Stop(Ending.FINISHED, position, "the module failed the workflow "
                    f"({outcome.name}: {outcome.message}) after matching all {position} "
                    "recorded journal positions")
    elif isinstance(outcome, Suspended):  # never from a RecordedJournal; said plainly
        stop = Stop(Ending.FAILED, position, f"the module suspended ({outcome.reason})")
    else:
        stop = Stop(Ending.FAILED, position, f"the replay ended unexpectedly ({outcome!r})")
    return ReplayReport(inputs, sha256, journal.steps, stop, outcome)


_HOST_ERRORS = {name.value for name in GuestErrorName}
"""Failures the host names (a trap, an ABI violation, a limit): the module could not
replay, as opposed to the workflow failing by its own choice."""

__all__ = ["Candidate", "Ending", "InvalidModule", "ReplayReport", "Replayer", "Stop"]
