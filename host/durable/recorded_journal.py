"""A journal that only answers from what was recorded: replaying an instance through a
module with no effect on anything (`dwf replay`, deploy checks).

It speaks the sandbox's `GuestJournal` like the engine's `ReplayJournal`, with one
difference: it never writes and never runs anything new. Every call at a recorded
position is checked against the journal (kind and name, as a real replay does) and
answered with the recorded result; the first call the journal cannot answer from the
record (a new position, a step still pending, one that would run a step body) ends the
replay there, as does the first call that differs from the record. Nothing reaches the
store, another instance, the clock or the entropy pool, so a replay can run against a
live database and a candidate module nobody has deployed.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..core import codec
from ..core.errors import GuestErrorName, GuestFault
from ..core.model import StepKind, StepRecord, StepState
from ..sandbox.abi import StepCode
from ..sandbox.journal_port import StepAnswer
from ..sandbox.step_config import StepConfig


class ReplayStopped(BaseException):
    """Unwinds the guest where the replay ends (the journal's `ending` says why).

    A BaseException, like `Suspend`, so nothing between the import and the sandbox
    boundary can swallow it."""


class Ending(enum.StrEnum):
    """Where a replay stopped."""

    FRONTIER = "frontier"
    """The module asked for what the journal has not decided yet (a new position, or a
    recorded step still pending): every recorded step matched up to there."""

    FINISHED = "finished"
    """The module returned after matching every recorded step."""

    DIVERGED = "diverged"
    """The module asked for another step than the journal recorded at a position, or
    finished before reaching every recorded position."""

    FAILED = "failed"
    """The module trapped or broke the ABI while replaying."""


@dataclass(frozen=True, slots=True)
class StepCall:
    """A journaled call: its kind and name (as a guest issues it or the journal has it)."""

    kind: StepKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name!r}"


@dataclass(frozen=True, slots=True)
class ReplayedStep:
    """A call the module issued at a recorded position, and what the journal answered."""

    position: int
    call: StepCall
    record: StepRecord


@dataclass(frozen=True, slots=True)
class Stop:
    """Why and where the replay stopped; `recorded` and `issued` tell a divergence."""

    ending: Ending
    position: int
    message: str
    recorded: StepCall | None = None
    """The journal's step at `position` (None past its end)."""

    issued: StepCall | None = None
    """The call the module made at `position` (None if it finished instead)."""


class RecordedJournal:
    """A `GuestJournal` over an instance's recorded steps that refuses to write.

    `steps` collects every recorded position the module passed, in order; `stop` is set
    when the replay ends (it raises `ReplayStopped` through the guest to end it early)."""

    running: StepRecord | None = None  # no step body ever runs in a replay

    def __init__(self, records: list[StepRecord]) -> None:
        self.records = records
        self.steps: list[ReplayedStep] = []
        self.stop: Stop | None = None
        self._position = 0
        self._occurrences: Counter[str] = Counter()

    @property
    def position(self) -> int:
        """How many journal positions the module has passed."""
        return self._position

    @property
    def running_timeout_ms(self) -> int | None:
        return None

    def occurrences(self, name: str) -> int:
        return self._occurrences[name]

    # -- where the replay ends ---------------------------------------------------

    def _end(self, stop: Stop) -> ReplayStopped:
        self.stop = stop
        return ReplayStopped(stop.ending.value)

    def _frontier(self, position: int, call: StepCall, why: str) -> ReplayStopped:
        recorded = self.records[position] if position < len(self.records) else None
        return self._end(Stop(Ending.FRONTIER, position, why,
                              StepCall(recorded.kind, recorded.name) if recorded else None,
                              call))

    def _recorded(self, kind: StepKind, name: str) -> tuple[int, StepRecord]:
        """The record at the next position, if the module's call matches it; else the
        replay ends: at a divergence, or at the end of the record."""
        position = self._position
        call = StepCall(kind, name)
        if position >= len(self.records):
            raise self._frontier(position, call,
                                 f"the journal ends here; the module goes on with {call}")
        record = self.records[position]
        recorded = StepCall(record.kind, record.name)
        if recorded != call:
            raise self._end(Stop(
                Ending.DIVERGED, position,
                f"journal position {position} was {recorded} when recorded, is {call} now",
                recorded, call))
        self._position += 1
        self._occurrences[name] += 1
        self.steps.append(ReplayedStep(position, call, record))
        if record.state is StepState.PENDING:
            raise self._frontier(position, call, _pending_reason(record))
        return position, record

    def _answer(self, kind: StepKind, name: str) -> StepAnswer:
        _, record = self._recorded(kind, name)
        if record.state is StepState.OK:
            return StepAnswer(StepCode.OK, record.result or codec.pack(None))
        return StepAnswer(StepCode.ERROR, record.error_payload())

    def check_fully_replayed(self) -> None:
        if self._position < len(self.records):
            skipped = self.records[self._position]
            recorded = StepCall(skipped.kind, skipped.name)
            raise self._end(Stop(
                Ending.DIVERGED, self._position,
                f"the module finished after {self._position} journal positions, but "
                f"{len(self.records)} were recorded (position {self._position} was "
                f"{recorded})", recorded, None))

    # -- the calls ---------------------------------------------------------------

    def step_do(self, name: str, config: StepConfig) -> StepAnswer:
        return self._answer(StepKind.DO, name)

    def step_ok(self, result: bytes) -> None:
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         "step_ok called with no step running (call step_do first)")

    def step_fail(self, name: str, message: str, retryable: bool, *,
                  from_trap: bool = False) -> StepAnswer:
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         "step_fail called with no step running (call step_do first)")

    def steps_done(self, steps: list[tuple[str, bytes]], *, pause_point: bool) -> None:
        """A batch: steps the module ran without asking. The replay hands the module no
        journal length, so it has no business batching at a recorded position (the
        engine would refuse that too); at a new one the replay ends."""
        for name, _ in steps:
            position = self._position
            if position < len(self.records):
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 f"step {name!r} came in a batch at journal position "
                                 f"{position}, which is recorded: a replayed step must be "
                                 "asked for with step_do")
            raise self._frontier(position, StepCall(StepKind.DO, name),
                                 f"the journal ends here; the module goes on with do {name!r}")

    def replayed_to(self, count: int) -> None:
        while self._position < count:
            record = (self.records[self._position] if self._position < len(self.records)
                      else None)
            if record is None or record.kind is not StepKind.DO or (
                    record.state is not StepState.OK):
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 f"the step batch says journal position {self._position} "
                                 "was replayed from the event, which holds no completed "
                                 "step there")
            self._recorded(StepKind.DO, record.name)

    def sleep(self, name: str, duration_ms: int) -> None:
        self._recorded(StepKind.SLEEP, name)

    def sleep_until(self, name: str, timestamp_ms: int) -> None:
        self._recorded(StepKind.SLEEP, name)

    def wait_for_event(self, name: str, event_type: str, timeout_ms: int) -> StepAnswer:
        return self._answer(StepKind.EVENT, name)

    def create_instance(self, name: str, request: dict[str, Any]) -> StepAnswer:
        return self._answer(StepKind.CREATE, name)

    def send_event(self, name: str, request: dict[str, Any]) -> StepAnswer:
        return self._answer(StepKind.SEND, name)

    def now(self, name: str) -> int:
        _, record = self._recorded(StepKind.NOW, name)
        value = codec.unpack(record.result or codec.pack(None))
        if not isinstance(value, int):
            raise GuestFault(GuestErrorName.NONDETERMINISM,
                             f"now {name!r}: the journal holds {value!r}, not a time")
        return value

    def random(self, name: str, length: int) -> bytes:
        position, record = self._recorded(StepKind.RANDOM, name)
        value = codec.unpack(record.result or codec.pack(None))
        if not isinstance(value, bytes) or len(value) != length:
            recorded = len(value) if isinstance(value, bytes) else 0
            raise self._end(Stop(
                Ending.DIVERGED, position,
                f"random {name!r} asks for {length} bytes now; the journal recorded "
                f"{recorded}", StepCall(StepKind.RANDOM, name), StepCall(StepKind.RANDOM, name)))
        return value


def _pending_reason(record: StepRecord) -> str:
    """Why a recorded position is where the instance goes on (for the report)."""
    if record.kind is StepKind.SLEEP:
        return f"the instance sleeps here (sleep {record.name!r})"
    if record.kind is StepKind.EVENT:
        return f"the instance waits here for an event (wait {record.name!r})"
    if record.kind is StepKind.DO and record.attempts:
        return (f"step {record.name!r} is due for attempt {record.attempts + 1} here "
                f"(it failed {record.attempts} time{'s' if record.attempts > 1 else ''})")
    return f"{record.kind.value} {record.name!r} is still pending here"
