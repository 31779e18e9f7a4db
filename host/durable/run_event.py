"""The event `dwf_run` receives: what a wake hands the guest, its journal included."""

from __future__ import annotations

from ..core import codec
from ..core.limits import TenantLimits
from ..core.model import StepRecord
from ..sandbox import abi, step_batch
from ..store import Claim


def invocation_event(claim: Claim, workflow: str, params: bytes, created_at_ms: int,
                     records: list[StepRecord], pause_requested: bool,
                     limits: TenantLimits) -> bytes:
    """The `dwf_run` event of an invocation (what a wake hands the guest, journal
    included). `pause_requested`: the guest must ask for every step (no journal length
    and no replay), as a run that stops at its first step, or a replay that checks each."""
    event = {"payload": codec.unpack(params), "timestamp": created_at_ms,
             "instance_id": claim.instance_id, "workflow": workflow}
    if pause_requested:  # it stops at its first step: every one is asked for
        return codec.pack(event)
    event[abi.JOURNAL_LENGTH_KEY] = len(records)
    replay = step_batch.replay_prefix(records, limits.memory_bytes)
    return codec.map_with_raw(event, {abi.REPLAY_KEY: replay} if replay else {})
