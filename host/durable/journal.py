"""Replay: answering a guest's step calls from the journal, and extending it.

A `ReplayJournal` lives for one invocation, in the worker thread that runs the guest. It
holds the instance's recorded steps in memory (so replaying a cached step costs no I/O)
and hands every new fact to a `JournalWriter`, which commits them in order (the journal on
disk is always a prefix of what the guest did) before anything the guest did is seen
outside its sandbox.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from ..core import codec
from ..core.clock import Clock, clamped
from ..core.errors import GuestErrorName, GuestFault
from ..core.limits import TenantLimits
from ..core.model import AttemptRecord, StepKind, StepRecord, StepState
from ..core.outcomes import Suspend, SuspendReason
from ..sandbox.abi import StepCode
from ..sandbox.journal_port import StepAnswer
from ..sandbox.step_config import StepConfig
from .telemetry import ERROR, OK, RETRY, InvocationTally


class Aborted(BaseException):
    """The instance was terminated or restarted under a running invocation."""


class JournalWriter(Protocol):
    """Commits journal facts in the order they are handed over.

    `save` may return before its commit (the guest runs ahead; a crash makes replay redo
    what had not committed); the other calls return once what they did is durable, since
    their answer reaches the guest from outside (an event) or leaves the sandbox (a child
    instance, an event for another instance).
    """

    def save(self, record: StepRecord) -> None: ...

    def save_attempt(self, record: StepRecord, attempt: AttemptRecord) -> None:
        """`save`, with one finished attempt of the step, in the same write."""
        ...

    def save_all(self, records: list[StepRecord], *, pause_point: bool) -> None:
        """`save` for several records in one write; a pause is honoured (`pause_point`)
        only after all of them are queued."""
        ...

    def take_event(self, record: StepRecord, event_type: str) -> bool:
        """Consume the oldest buffered event of `event_type` into `record` (now ok)."""
        ...

    def create_instance(self, record: StepRecord, request: dict[str, Any]) -> None:
        """Create the child instance and record the outcome in `record` atomically."""
        ...

    def send_event(self, record: StepRecord, request: dict[str, Any]) -> None: ...


class ReplayJournal:
    def __init__(self, records: list[StepRecord], writer: JournalWriter, clock: Clock,
                 limits: TenantLimits, tally: InvocationTally | None = None) -> None:
        self.records = records
        self.tally = tally if tally is not None else InvocationTally()
        self._writer = writer
        self._clock = clock
        self._limits = limits
        self._position = 0
        self._replayed = 0  # leading positions the guest answered itself
        self._occurrences: Counter[str] = Counter()
        self.running: StepRecord | None = None
        self._running_attempt = 0
        self._running_started = 0  # when the running attempt started (clock ms)
        self._running_started_ns = 0  # and by the tally's clock
        self._running_config = StepConfig()

    # -- positions ---------------------------------------------------------------

    def _advance(self, kind: StepKind, name: str) -> tuple[int, int, StepRecord | None]:
        if self.running is not None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"step {self.running.name!r} is still running: call step_ok or "
                             f"step_fail before starting {kind.value} {name!r}")
        position = self._position
        if position >= self._limits.max_steps:
            raise GuestFault(GuestErrorName.STEP_LIMIT_EXCEEDED,
                             f"instance reached its limit of {self._limits.max_steps} steps")
        self._position += 1
        self._occurrences[name] += 1
        occurrence = self._occurrences[name]
        if position < len(self.records):
            recorded = self.records[position]
            if recorded.kind != kind or recorded.name != name:
                raise GuestFault(
                    GuestErrorName.NONDETERMINISM,
                    f"journal position {position} was {recorded.kind.value} "
                    f"{recorded.name!r} when recorded, is {kind.value} {name!r} now: the "
                    "workflow is not deterministic (step order must depend only on the "
                    "event and on step results)")
            return position, occurrence, recorded
        return position, occurrence, None

    def _new(self, position: int, occurrence: int, kind: StepKind, name: str,
             now: int) -> StepRecord:
        record = StepRecord(position, kind, name, occurrence, StepState.PENDING, now)
        self.records.append(record)
        return record

    @staticmethod
    def _answer(record: StepRecord) -> StepAnswer | None:
        if record.state is StepState.OK:
            assert record.result is not None
            return StepAnswer(StepCode.OK, record.result)
        if record.state is StepState.ERROR:
            return StepAnswer(StepCode.ERROR, record.error_payload())
        return None

    def occurrences(self, name: str) -> int:
        return self._occurrences[name]

    def check_fully_replayed(self) -> None:
        """A deterministic workflow passes every recorded position before it finishes."""
        if self._position < len(self.records):
            skipped = self.records[self._position]
            raise GuestFault(
                GuestErrorName.NONDETERMINISM,
                f"the workflow finished after {self._position} journal positions, but "
                f"{len(self.records)} were recorded (position {self._position} was "
                f"{skipped.kind.value} {skipped.name!r}): the workflow is not deterministic")

    # -- step.do -----------------------------------------------------------------

    def step_do(self, name: str, config: StepConfig) -> StepAnswer:
        position, occurrence, record = self._advance(StepKind.DO, name)
        now = self._clock.now_ms()
        if record is not None:
            answer = self._answer(record)
            if answer is not None:
                return answer
            if record.wake_at_ms is not None and now < record.wake_at_ms:
                raise Suspend(SuspendReason.RETRY, record.wake_at_ms)
            attempt = record.attempts + 1
        else:
            record = self._new(position, occurrence, StepKind.DO, name, now)
            attempt = 1
        self.running = record
        self._running_attempt = attempt
        self._running_started = now
        self._running_started_ns = time.perf_counter_ns()
        self._running_config = config
        return StepAnswer(StepCode.RUN, codec.pack({"attempt": attempt}))

    def replayed_to(self, count: int) -> None:
        """The guest answered journal positions [0, count) itself, from the event's replay
        (proposal 0002): advance over them as step_do would have, answering each."""
        if count == self._replayed:
            return
        if count < self._replayed or self._position != self._replayed:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"the step batch says {count} steps were replayed from the event "
                             f"after {self._replayed} were and {self._position} journal "
                             "positions were passed: replayed steps come first, and only grow")
        while self._position < count:
            position = self._position
            record = self.records[position] if position < len(self.records) else None
            if record is None or record.kind is not StepKind.DO or record.state is not (
                    StepState.OK):
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 f"the step batch says journal position {position} was "
                                 "replayed from the event, which holds no completed step "
                                 "there")
            self._advance(StepKind.DO, record.name)
        self._replayed = count

    def steps_done(self, steps: list[tuple[str, bytes]], *, pause_point: bool) -> None:
        """Steps the guest ran from a batch without asking (proposal 0002), in order: each
        a first attempt at a new position that succeeded, recorded as step_do then step_ok
        would have recorded it, and handed to the writer together."""
        now = self._clock.now_ms()
        records: list[StepRecord] = []
        try:
            for name, result in steps:
                position, occurrence, recorded = self._advance(StepKind.DO, name)
                if recorded is not None:
                    raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                     f"step {name!r} came in a batch at journal position "
                                     f"{position}, which is recorded: a replayed step must "
                                     "be asked for with step_do")
                record = self._new(position, occurrence, StepKind.DO, name, now)
                record.state = StepState.OK
                record.result = result
                record.attempts = 1
                record.finished_at_ms = now
                records.append(record)
        except GuestFault:
            if records:  # they ran: the failed instance's history shows them
                self._writer.save_all(records, pause_point=False)
            raise
        if records:
            self.tally.batch(records)
            self._writer.save_all(records, pause_point=pause_point)

    def _take_running(self, call: str) -> StepRecord:
        record = self.running
        if record is None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"{call} called with no step running (call step_do first)")
        self.running = None
        record.attempts = self._running_attempt
        return record

    def step_ok(self, result: bytes) -> None:
        record = self._take_running("step_ok")
        record.state = StepState.OK
        record.result = result
        record.error_name = record.error_message = None
        record.wake_at_ms = None
        now = record.finished_at_ms = self._clock.now_ms()
        self.tally.attempt(record.name, record.attempts, OK, None, self._running_started_ns)
        if record.attempts == 1:
            self._writer.save(record)
        else:  # it failed before: its history has every attempt
            self._writer.save_attempt(record, AttemptRecord(
                record.position, record.attempts, self._running_started, now, StepState.OK))

    def step_fail(self, name: str, message: str, retryable: bool, *,
                  from_trap: bool = False) -> StepAnswer:
        """Record a failed attempt; suspend for the retry or answer the final failure.

        `from_trap`: the body trapped, so the guest cannot be answered in this
        invocation; the final failure is journaled and the instance re-runs at once.
        """
        record = self._take_running("step_fail")
        now = self._clock.now_ms()
        record.error_name, record.error_message = name, message
        policy = self._running_config.retries
        retry = retryable and record.attempts <= policy.limit
        self.tally.attempt(record.name, record.attempts, RETRY if retry else ERROR, name,
                           self._running_started_ns)
        if retry:
            record.wake_at_ms = clamped(now + policy.delay_before_retry(record.attempts))
            self._writer.save_attempt(record, self._failed_attempt(record, now,
                                                                   record.wake_at_ms - now))
            raise Suspend(SuspendReason.RETRY, record.wake_at_ms)
        record.state = StepState.ERROR
        record.wake_at_ms = None
        record.finished_at_ms = now
        self._writer.save_attempt(record, self._failed_attempt(record, now, None))
        if from_trap:
            raise Suspend(SuspendReason.STEP_FAILED, now)
        return StepAnswer(StepCode.ERROR, record.error_payload())

    def _failed_attempt(self, record: StepRecord, now: int,
                        retry_delay_ms: int | None) -> AttemptRecord:
        return AttemptRecord(record.position, record.attempts, self._running_started, now,
                             StepState.ERROR, record.error_name, record.error_message,
                             retry_delay_ms)

    @property
    def running_timeout_ms(self) -> int | None:
        return self._running_config.timeout_ms if self.running is not None else None

    # -- timers ------------------------------------------------------------------

    def sleep(self, name: str, duration_ms: int) -> None:
        self._sleep(name, lambda now: clamped(now + max(0, duration_ms)))

    def sleep_until(self, name: str, timestamp_ms: int) -> None:
        self._sleep(name, lambda now: clamped(timestamp_ms))

    def _sleep(self, name: str, wake_at: Callable[[int], int]) -> None:
        position, occurrence, record = self._advance(StepKind.SLEEP, name)
        if record is not None and record.state is StepState.OK:
            return
        now = self._clock.now_ms()
        fresh = record is None
        if record is None:
            record = self._new(position, occurrence, StepKind.SLEEP, name, now)
            # The wake time is fixed when the sleep is first reached, never recomputed.
            record.wake_at_ms = wake_at(now)
        assert record.wake_at_ms is not None
        if now < record.wake_at_ms:
            if fresh:
                self._writer.save(record)
            raise Suspend(SuspendReason.SLEEP, record.wake_at_ms)
        record.state = StepState.OK
        record.result = codec.pack(None)
        record.finished_at_ms = now
        self._writer.save(record)

    # -- events ------------------------------------------------------------------

    def wait_for_event(self, name: str, event_type: str, timeout_ms: int) -> StepAnswer:
        position, occurrence, record = self._advance(StepKind.EVENT, name)
        if record is not None:
            answer = self._answer(record)
            if answer is not None:
                return answer
        now = self._clock.now_ms()
        fresh = record is None
        if record is None:
            record = self._new(position, occurrence, StepKind.EVENT, name, now)
            record.wake_at_ms = clamped(now + max(0, timeout_ms))
        if self._writer.take_event(record, event_type):
            return StepAnswer(StepCode.OK, record.result or codec.pack(None))
        assert record.wake_at_ms is not None
        if now >= record.wake_at_ms:
            record.state = StepState.ERROR
            record.error_name = GuestErrorName.WAIT_FOR_EVENT_TIMEOUT.value
            record.error_message = (f"no {event_type!r} event arrived within "
                                    f"{timeout_ms} ms")
            record.finished_at_ms = now
            self._writer.save(record)
            return StepAnswer(StepCode.ERROR, record.error_payload())
        if fresh:
            self._writer.save(record)
        raise Suspend(SuspendReason.WAIT_FOR_EVENT, record.wake_at_ms, event_type)

    # -- time and entropy --------------------------------------------------------

    def now(self, name: str) -> int:
        result = self._recorded_value(StepKind.NOW, name,
                                      lambda: codec.pack(self._clock.now_ms()))
        value = codec.unpack(result)
        assert isinstance(value, int)
        return value

    def random(self, name: str, length: int) -> bytes:
        result = self._recorded_value(StepKind.RANDOM, name,
                                      lambda: codec.pack(secrets.token_bytes(length)))
        value = codec.unpack(result)
        if not isinstance(value, bytes) or len(value) != length:
            raise GuestFault(GuestErrorName.NONDETERMINISM,
                             f"random {name!r} asked for {length} bytes on replay; "
                             "the journal recorded a different length")
        return value

    def _recorded_value(self, kind: StepKind, name: str, make: Callable[[], bytes]) -> bytes:
        """The journaled value at this position, or a new one, committed before use."""
        position, occurrence, record = self._advance(kind, name)
        if record is None:
            now = self._clock.now_ms()
            record = self._new(position, occurrence, kind, name, now)
            record.state = StepState.OK
            record.result = make()
            record.attempts = 1
            record.finished_at_ms = now
            self._writer.save(record)
        assert record.result is not None
        return record.result

    # -- bindings ------------------------------------------------------------------

    def create_instance(self, name: str, request: dict[str, Any]) -> StepAnswer:
        return self._binding(StepKind.CREATE, name, request)

    def send_event(self, name: str, request: dict[str, Any]) -> StepAnswer:
        return self._binding(StepKind.SEND, name, request)

    def _binding(self, kind: StepKind, name: str, request: dict[str, Any]) -> StepAnswer:
        position, occurrence, record = self._advance(kind, name)
        if record is None or record.state is StepState.PENDING:
            record = record or self._new(position, occurrence, kind, name,
                                         self._clock.now_ms())
            if kind is StepKind.CREATE:
                self._writer.create_instance(record, request)
            else:
                self._writer.send_event(record, request)
        answer = self._answer(record)
        assert answer is not None, "a binding call always settles its record"
        return answer
