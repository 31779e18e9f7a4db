"""Instances as users see them: creation, status, control (pause/resume/...), events.

Every call names the tenant: an instance id is only unique per tenant, and a tenant can
never reach another tenant's instances by guessing ids. What is stored is the store's;
what it means (validation, decoding, which control action is allowed when) is here.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..core import codec
from ..core.errors import InvalidInput, InvalidState, UnknownInstance, UnknownWorkflow
from ..core.ids import InstanceId, TenantId, instance_id, new_instance_id, tenant_id
from ..core.model import DUE_NOW, FINISHED, AttemptRecord, Status, StepRecord, attempts_of
from ..store import (
    ActiveVersion,
    InstanceQuery,
    InstanceStatus,
    NewInstance,
    PageCursor,
    Storage,
    Transition,
)

__all__ = ["FINISHED", "InstancePage", "InstanceQuery", "InstanceRequest", "InstanceStatus",
           "InstanceStore", "Status", "decode_cursor", "encode_cursor", "pack_checked_input",
           "step_view"]


@dataclass(frozen=True, slots=True)
class InstancePage:
    """A page of instances, newest first; `next_cursor` (None: the last page) asks for
    the next one."""

    instances: list[InstanceStatus]
    next_cursor: str | None


def encode_cursor(cursor: PageCursor) -> str:
    """An opaque page cursor (its inside may change: clients pass it back as it is)."""
    text = f"{cursor.created_at_ms}:{cursor.tenant_id}:{cursor.instance_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> PageCursor:
    """A cursor from `encode_cursor`; InvalidInput for anything else."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        created, tenant, instance = text.split(":")
        return PageCursor(int(created), tenant_id(tenant), instance_id(instance))
    except (ValueError, InvalidInput):
        raise InvalidInput(f"cursor {raw[:40]!r} is not one this host gave out: pass the "
                           "`next_cursor` of the previous page as it is") from None


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    """One instance to create."""

    workflow: str
    params: Any = None
    id: str | None = None


def attempt_view(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt, "state": attempt.state.value,
        "started_at_ms": attempt.started_at_ms, "finished_at_ms": attempt.finished_at_ms,
        "error": {"name": attempt.error_name, "message": attempt.error_message}
        if attempt.error_name else None,
        "retry_delay_ms": attempt.retry_delay_ms,
    }


def step_view(record: StepRecord, attempts: list[AttemptRecord] | None = None
              ) -> dict[str, Any]:
    """A journal position for people; `attempts`: those stored for it (see `attempts_of`)."""
    return {
        "position": record.position, "kind": record.kind.value, "name": record.name,
        "occurrence": record.occurrence, "state": record.state.value,
        "attempts": record.attempts,
        "result": codec.to_jsonable(codec.stored_value(record.result))
        if record.result is not None else None,
        "error": {"name": record.error_name, "message": record.error_message}
        if record.error_name else None,
        "wake_at_ms": record.wake_at_ms, "started_at_ms": record.started_at_ms,
        "finished_at_ms": record.finished_at_ms,
        "attempt_history": [attempt_view(a) for a in attempts_of(record, attempts or [])],
    }


class InstanceStore:
    def __init__(self, store: Storage, on_due: Callable[[], None] = lambda: None,
                 before_create: Callable[[TenantId], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.clock = store.clock
        self.on_due = on_due  # nudges an in-process scheduler when work becomes due
        self.before_create = before_create  # on-demand loading of the tenant's module

    # -- creation ----------------------------------------------------------------

    async def create(self, tenant_id: TenantId, workflow: str, params: Any = None,
                     id: str | None = None) -> InstanceId:
        [created] = await self.create_batch(tenant_id, [InstanceRequest(workflow, params, id)])
        return created

    async def create_batch(self, tenant_id: TenantId,
                           requests: list[InstanceRequest]) -> list[InstanceId]:
        """Create all instances or none; each runs the tenant's active module version."""
        if not requests:
            raise InvalidInput("create_batch needs at least one instance")
        packed = [pack_checked_input(request.params, "params") for request in requests]
        if self.before_create is not None:
            await self.before_create(tenant_id)

        # Checked against the active version inside the transaction that inserts them.
        def prepare(active: ActiveVersion) -> list[NewInstance]:
            prepared = []
            for request, params in zip(requests, packed, strict=True):
                if request.workflow not in active.workflows:
                    raise UnknownWorkflow(tenant_id, request.workflow, list(active.workflows))
                if len(params) > active.limits.max_payload_bytes:
                    raise InvalidInput(f"params are {len(params)} bytes, over the tenant's "
                                       f"limit of {active.limits.max_payload_bytes} bytes")
                new_id = (instance_id(request.id) if request.id is not None
                          else new_instance_id())
                prepared.append(NewInstance(new_id, request.workflow, params))
            if len({p.instance_id for p in prepared}) != len(prepared):
                raise InvalidInput("create_batch names the same instance id twice")
            return prepared
        created = await self.store.create_instances(tenant_id, len(requests), prepare)
        self.on_due()
        return created

    # -- reading -----------------------------------------------------------------

    async def current_status(self, tenant_id: TenantId, instance_id: str) -> Status:
        """The status alone: no params or output to decode (for waiters, once each and
        when they poll), read by key on the calling thread."""
        status = await self.store.peek_status(tenant_id, instance_id)
        if status is None:
            raise UnknownInstance(tenant_id, instance_id)
        return status

    async def steps(self, tenant_id: TenantId, instance_id: str) -> list[StepRecord]:
        return await self.store.journal(tenant_id, instance_id)

    async def status(self, tenant_id: TenantId, instance_id: str,
                     with_steps: bool = True) -> InstanceStatus:
        found = await self.store.instance(tenant_id, instance_id)
        if found is None:
            raise UnknownInstance(tenant_id, instance_id)
        if not with_steps:
            return found
        journal = await self.steps(tenant_id, instance_id)
        by_position: dict[int, list[AttemptRecord]] = {}
        for attempt in await self.store.attempts(tenant_id, instance_id):
            by_position.setdefault(attempt.position, []).append(attempt)
        return dataclasses.replace(found, steps=[step_view(r, by_position.get(r.position))
                                                 for r in journal])

    async def page(self, query: InstanceQuery) -> InstancePage:
        """One page of `query`, newest first, and the cursor of the next page."""
        found = await self.store.list_instances(
            dataclasses.replace(query, limit=query.limit + 1))
        more = len(found) > query.limit
        found = found[:query.limit]
        last = found[-1] if more else None
        return InstancePage(found, encode_cursor(PageCursor(
            last.created_at_ms, last.tenant_id, last.instance_id)) if last else None)

    async def children(self, tenant_id: TenantId, instance_id: str,
                       limit: int = 1000) -> list[InstanceStatus]:
        return await self.store.list_instances(InstanceQuery(
            tenant_id, parent_instance_id=instance_id, limit=limit))

    async def buffered_events(self, tenant_id: TenantId,
                              instance_id: str) -> list[dict[str, Any]]:
        """The instance's events no wait has taken yet, oldest first (for people)."""
        return [{"type": event.type, "payload": codec.to_jsonable(codec.unpack(event.payload)),
                 "sent_at_ms": event.sent_at_ms}
                for event in await self.store.buffered_events(tenant_id, instance_id)]

    async def list(self, tenant_id: TenantId | None = None, status: Status | None = None,
                   limit: int = 1000) -> list[InstanceStatus]:
        """The newest `limit` instances (of one tenant, in one status, if given)."""
        return await self.store.list_instances(InstanceQuery(tenant_id, status, limit=limit))

    # -- control -----------------------------------------------------------------

    async def _transition(self, tenant_id: TenantId, instance_id: str,
                          decide: Callable[[Status], Transition | None], action: str) -> Status:
        """Apply `decide`'s change to the instance; returns the status it set."""
        def checked(current: Status) -> Transition:
            change = decide(current)
            if change is None:
                raise InvalidState(f"cannot {action} instance {instance_id!r}: it is "
                                   f"{current.value}")
            return change
        return await self.store.transition(tenant_id, instance_id, checked)

    # Each control action returns the status it set: a worker may move the instance on
    # before the caller could read it back (a resumed one is claimed at once).

    async def pause(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> Transition | None:
            if current in (Status.QUEUED, Status.WAITING):
                return Transition(Status.PAUSED)
            if current is Status.RUNNING:
                # The invocation stops at its next step boundary and settles as paused.
                return Transition(Status.WAITING_FOR_PAUSE)
            return None
        return await self._transition(tenant_id, instance_id, decide, "pause")

    async def resume(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> Transition | None:
            if current is Status.PAUSED:
                # Replay decides what is still pending; timers keep their recorded times.
                return Transition(Status.QUEUED, wake_at_ms=DUE_NOW)
            if current is Status.WAITING_FOR_PAUSE:
                return Transition(Status.RUNNING)
            return None
        status = await self._transition(tenant_id, instance_id, decide, "resume")
        self.on_due()
        return status

    async def terminate(self, tenant_id: TenantId, instance_id: str) -> Status:
        def decide(current: Status) -> Transition | None:
            if current.finished:
                return None
            return Transition(Status.TERMINATED, finish=True)
        return await self._transition(tenant_id, instance_id, decide, "terminate")

    async def restart(self, tenant_id: TenantId, instance_id: str) -> Status:
        """Run again from the start on the same module version, with an empty journal."""
        await self.store.restart(tenant_id, instance_id)
        self.on_due()
        return Status.QUEUED

    # -- events ------------------------------------------------------------------

    async def send_event(self, tenant_id: TenantId, instance_id: str, event_type: str,
                         payload: Any = None) -> None:
        try:
            codec.check_text(event_type, "event type")
        except codec.CodecError as exc:
            raise InvalidInput(str(exc)) from None
        if not 1 <= len(event_type.encode()) <= 256:
            raise InvalidInput("event type must be 1-256 bytes")
        packed = pack_checked_input(payload, "event payload")
        limits = await self.store.tenant_limits(tenant_id)
        if len(packed) > limits.max_payload_bytes:
            raise InvalidInput(f"event payload is {len(packed)} bytes, over the tenant's "
                               f"limit of {limits.max_payload_bytes} bytes")
        await self.store.send_event(tenant_id, instance_id, event_type, packed)
        self.on_due()


def pack_checked_input(value: Any, what: str) -> bytes:
    """A value to store, as msgpack; InvalidInput saying why when it breaks the rules
    every stored value follows (codec.check): readers must be able to show it."""
    try:
        return codec.pack_checked(value, what)
    except codec.CodecError as exc:
        raise InvalidInput(str(exc)) from None
