"""How one invocation of a workflow ends, and the signal that ends it early.

The sandbox produces an `Outcome`, the journal raises `Suspend` through the guest to stop
it at a durable wait, and the store records the outcome when it settles the run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Completed:
    output: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    name: str
    message: str


class SuspendReason(enum.StrEnum):
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    RETRY = "retry"
    STEP_FAILED = "step_failed"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Suspended:
    reason: SuspendReason
    wake_at_ms: int | None
    waiting_event_type: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The host could not keep the run's record (its storage was unavailable): the instance
    goes back to the queue and runs again from its journal, whose steps are all still
    there; nothing is failed because of it."""

    reason: str


Outcome = Completed | Failed | Suspended | Interrupted


class Suspend(BaseException):
    """Ends the invocation early; the state that explains why is already committed.

    A BaseException so nothing between the host import and the sandbox boundary can
    swallow it by accident.
    """

    def __init__(self, reason: SuspendReason, wake_at_ms: int | None = None,
                 waiting_event_type: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.wake_at_ms = wake_at_ms
        self.waiting_event_type = waiting_event_type
