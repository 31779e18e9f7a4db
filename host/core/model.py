"""What an instance is and what its journal holds, as every layer sees it.

The store reads and writes these, the durable engine decides them, the sandbox's guests
never see them directly: they are the one description of instance state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import DwfError


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"

    @property
    def finished(self) -> bool:
        return self in (Status.ERRORED, Status.TERMINATED, Status.COMPLETE)


FINISHED = tuple(s.value for s in Status if s.finished)

DUE_NOW = 0
"""The due time (`wake_at_ms`) of an instance that is due at once, whatever the wall
clock says: queued, resumed, recovered, or woken by its event. A clock stepped back must
not hold such work; only timers (sleeps, retry delays, wait timeouts) are points on the
wall clock."""


class StepKind(enum.StrEnum):
    DO = "do"
    SLEEP = "sleep"
    EVENT = "event"
    CREATE = "create"
    SEND = "send"
    NOW = "now"
    RANDOM = "random"


class StepState(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    PENDING = "pending"


@dataclass(slots=True)
class StepRecord:
    """One journal position. Mutable only while its invocation is deciding it."""

    position: int
    kind: StepKind
    name: str
    occurrence: int
    state: StepState
    started_at_ms: int
    result: bytes | None = None
    error_name: str | None = None
    error_message: str | None = None
    attempts: int = 0
    wake_at_ms: int | None = None
    finished_at_ms: int | None = None

    def error_payload(self) -> bytes:
        return codec.pack({"name": self.error_name, "message": self.error_message})

    def settle_binding(self, result: Any, error: DwfError | None, now: int) -> None:
        """Record a binding call's outcome (a child created, an event sent, or why not)."""
        self.finished_at_ms = now
        self.attempts = 1
        if error is None:
            self.state = StepState.OK
            self.result = codec.pack(result)
        else:
            self.state = StepState.ERROR
            self.error_name = type(error).__name__
            self.error_message = str(error)


ATTEMPTS_KEPT = 20
"""Most attempts of one step whose history is kept (the latest ones): a step retried
thousands of times keeps a bounded history, while its journal row still counts them all."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt of a `step.do` body, for people (the journal does not replay it).

    Written only for a step that failed at least once (every attempt of it, then: the
    failed ones and the one that succeeded). A step that succeeded at its first attempt has
    none: its journal row says all there is (`attempts_of` makes that one).
    """

    position: int
    attempt: int
    started_at_ms: int
    finished_at_ms: int
    state: StepState
    """OK or ERROR."""

    error_name: str | None = None
    error_message: str | None = None
    retry_delay_ms: int | None = None
    """A failed attempt that is retried: how long after it the next one is due."""


def attempts_of(record: StepRecord, stored: list[AttemptRecord]) -> list[AttemptRecord]:
    """A journal position's attempt history: what was stored for it, or else, for a step
    that finished at its first attempt, that attempt as its journal row tells it."""
    if stored or record.kind is not StepKind.DO:
        return stored
    if record.attempts == 1 and record.finished_at_ms is not None and (
            record.state is not StepState.PENDING):
        return [AttemptRecord(record.position, 1, record.started_at_ms,
                              record.finished_at_ms, record.state, record.error_name,
                              record.error_message)]
    return []

