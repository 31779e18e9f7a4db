"""What a workflow guest's imports ask of its journal: the sandbox's side of replay.

The durable engine's `ReplayJournal` implements it, and its `RecordedJournal` (replays
that answer only from the record and write nothing: `dwf replay`, deploy checks). The
sandbox only translates between guest memory and these calls, so it never depends on how
the journal is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..core.model import StepRecord
from .abi import StepCode
from .step_config import StepConfig


@dataclass(frozen=True, slots=True)
class StepAnswer:
    """What a step call returns to the guest: a code, and the payload its out slot gets."""

    code: StepCode
    payload: bytes


class GuestJournal(Protocol):
    """One invocation's journal, as the guest's imports use it (on the guest's thread).

    Calls that end the invocation at a durable wait raise `Suspend`; a guest that breaks
    the contract gets `GuestFault`.
    """

    running: StepRecord | None
    """The step whose body runs now (between step_do answering RUN and step_ok/fail)."""

    @property
    def running_timeout_ms(self) -> int | None: ...

    def step_do(self, name: str, config: StepConfig) -> StepAnswer: ...

    def step_ok(self, result: bytes) -> None: ...

    def step_fail(self, name: str, message: str, retryable: bool, *,
                  from_trap: bool = False) -> StepAnswer: ...

    def steps_done(self, steps: list[tuple[str, bytes]], *, pause_point: bool) -> None: ...

    def replayed_to(self, count: int) -> None: ...

    def sleep(self, name: str, duration_ms: int) -> None: ...

    def sleep_until(self, name: str, timestamp_ms: int) -> None: ...

    def wait_for_event(self, name: str, event_type: str, timeout_ms: int) -> StepAnswer: ...

    def create_instance(self, name: str, request: dict[str, Any]) -> StepAnswer: ...

    def send_event(self, name: str, request: dict[str, Any]) -> StepAnswer: ...

    def now(self, name: str) -> int: ...

    def random(self, name: str, length: int) -> bytes: ...

    def check_fully_replayed(self) -> None: ...

    def occurrences(self, name: str) -> int:
        """How many journal positions named `name` the guest has passed so far."""
        ...
