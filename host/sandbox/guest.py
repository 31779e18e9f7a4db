"""One guest invocation in a fresh, limited wasmtime store.

Everything that touches guest memory is here: slices are bounds-checked, payloads are
decoded strictly and size-checked, and every trap is turned into a named outcome. The
journal logic itself lives in the durable engine (`GuestJournal`); this module only
translates.
"""

from __future__ import annotations

import collections
import struct
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import structlog
import wasmtime

from ..core import codec
from ..core.errors import GuestErrorName, GuestFault
from ..core.limits import TenantLimits
from ..core.outcomes import Completed, Failed, Outcome, Suspend, Suspended
from . import abi, linker, outbound, step_batch
from .abi import StepCode
from .journal_port import GuestJournal
from .module_interface import interface_of, interface_problems
from .outbound import EgressPort
from .step_config import DEFAULT_STEP_CONFIG, StepConfigError, parse_step_config

EPOCH_TICK_MS = 10
_IN_START = ("from the module's start function: dwf imports work only inside the exports "
             "the host calls (dwf_describe, dwf_run, dwf_fetch)")
_IN_ALLOC = ("from inside dwf_alloc: the allocator must not call host imports (the host "
             "calls it from inside an import, to hand a result over)")
MAX_LOG_BYTES = 16 * 1024
MAX_ERROR_MESSAGE_CHARS = 4096
_U32 = 0xFFFFFFFF
_SLOT = struct.Struct("<II")  # an out slot: {u32 ptr; u32 len}


WASM_PAGE = 65536


def classify_trap(trap: wasmtime.Trap, journal: GuestJournal | None,
                  limits: TenantLimits,
                  memory_in_use: int | None = None) -> tuple[GuestErrorName, str]:
    """Name a trap for the user. `memory_in_use`: the guest's memory size when it trapped."""
    name, message = _classify(trap, journal, limits)
    near_cap = max(WASM_PAGE, limits.memory_bytes // 8)
    if (name is GuestErrorName.GUEST_TRAP and memory_in_use is not None
            and memory_in_use + near_cap > limits.memory_bytes):
        # wasmtime refuses memory.grow quietly (-1) and wasmtime-py exposes no limiter
        # callback to tell us; a guest that traps within an eighth of its cap almost
        # always trapped because a grow was refused.
        return (GuestErrorName.MEMORY_LIMIT_EXCEEDED,
                f"guest memory reached the tenant's cap of {limits.memory_bytes} bytes "
                f"({memory_in_use} in use), then: {message}")
    return name, message


def _classify(trap: wasmtime.Trap, journal: GuestJournal | None,
              limits: TenantLimits) -> tuple[GuestErrorName, str]:
    code = trap.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return (GuestErrorName.CPU_LIMIT_EXCEEDED,
                f"cpu limit exceeded: the invocation used its {limits.cpu_fuel} units of fuel")
    if code == wasmtime.TrapCode.INTERRUPT:
        if journal is not None and journal.running is not None:
            timeout_ms = min(journal.running_timeout_ms or limits.invocation_timeout_ms,
                             limits.invocation_timeout_ms)  # the deadline it was given
            return (GuestErrorName.STEP_TIMEOUT,
                    f"step {journal.running.name!r} ran past its timeout of "
                    f"{timeout_ms} ms")
        return (GuestErrorName.CPU_LIMIT_EXCEEDED,
                f"cpu limit exceeded: the invocation ran past its "
                f"{limits.invocation_timeout_ms} ms budget")
    description = _TRAP_DESCRIPTIONS.get(code) if code is not None else None
    if description is None:
        description = code.name.lower().replace("_", " ") if code is not None else (
            str(trap.message).strip().splitlines()[-1] if trap.message else "unknown trap")
    return GuestErrorName.GUEST_TRAP, f"wasm trap: {description}{_where(trap)}"


_TRAP_DESCRIPTIONS = {
    wasmtime.TrapCode.STACK_OVERFLOW: "call stack exhausted (too deep recursion)",
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
        "out-of-bounds memory access (a bad pointer, or the C stack overflowed)",
    wasmtime.TrapCode.UNREACHABLE: "unreachable executed (the guest aborted)",
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: "integer division by zero",
    wasmtime.TrapCode.INTEGER_OVERFLOW: "integer overflow",
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: "indirect call to a null table entry",
    wasmtime.TrapCode.BAD_SIGNATURE: "indirect call with the wrong signature",
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: "table index out of bounds",
}


def _where(trap: wasmtime.Trap) -> str:
    """The guest function that trapped, when the module kept its name section."""
    try:
        frames = trap.frames
    except wasmtime.WasmtimeError:
        return ""
    name = frames[0].func_name if frames else None
    return f" in {name}" if name else ""


class _Invocation:
    """Host imports bound to one store; created per call of the guest.

    The imports are defined once per engine (`linker.linker_for`) and reach this object
    through `linker.serving`; `caller` in the import methods is the caller's store context.
    """

    output_name = "workflow output"
    """What `set_output` reports here, as error messages name it."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module,
                 limits: TenantLimits, journal: GuestJournal | None,
                 log: structlog.typing.FilteringBoundLogger,
                 egress: EgressPort | None = None) -> None:
        self.limits = limits
        self.journal = journal
        self.log = log
        self.egress = egress
        self._outbound_calls: collections.Counter[tuple[str | None, int | None]] = (
            collections.Counter())
        self.output: bytes | None = None
        self.error: tuple[str, str] | None = None
        self.pending: BaseException | None = None
        self.barred: str | None = None
        self._batch = 0  # the guest's step batch descriptor (proposal 0002); 0: none yet
        self._log_lines = self._log_bytes = 0  # this invocation's, against its budget
        self._log_truncated = False
        problems = linker.checked_exports(
            module, lambda compiled: interface_problems(interface_of(compiled)))
        if problems:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, "; ".join(problems))
        self.store = wasmtime.Store(engine)
        self.store.set_limits(memory_size=limits.memory_bytes,
                              table_elements=limits.table_elements,
                              instances=1, tables=4, memories=1)
        self.store.set_fuel(limits.cpu_fuel)
        self.context_address = linker.context_address(self.store._context())
        self.context = self.context_address
        self._set_deadline(limits.invocation_timeout_ms)
        # A start function runs before the exports (memory included) can be looked up:
        # an import it calls is refused, and that refusal is the reason it fails, not
        # wasmtime's "error while executing" around the trap it became.
        self.barred = _IN_START
        with linker.serving(self):
            try:
                instance = linker.linker_for(engine).instantiate(self.store, module)
            except (wasmtime.Trap, wasmtime.WasmtimeError):
                pending, self.pending = self.pending, None
                if pending is not None:
                    raise pending from None
                raise
        self.barred = None
        self.memory = linker.GuestMemory(
            linker.export(self.context, instance, abi.EXPORT_MEMORY))
        self._instance = instance
        self._funcs: dict[str, linker.GuestFunc | None] = {}

    def func(self, name: str) -> linker.GuestFunc | None:
        """An ABI export, looked up when first used (a workflow run needs two of six);
        None for an optional one the module lacks."""
        if name in self._funcs:
            return self._funcs[name]
        signature = abi.EXPORTS.get(name) or abi.OPTIONAL_EXPORTS[name]
        try:
            extern = linker.export(self.context, self._instance, name)
        except KeyError:
            if name in abi.EXPORTS:
                raise
            found = None
        else:  # checked_exports has vouched for its signature
            found = linker.GuestFunc(extern, len(signature.params), bool(signature.results))
        self._funcs[name] = found
        return found

    def call(self, export: str, *args: int) -> int | None:
        """Call a guest export from the host (not from inside an import)."""
        func = self.func(export)
        assert func is not None, f"call of the missing export {export}"
        with linker.serving(self):
            return func(self, self.context, *args)

    def refuse(self, name: str) -> NoReturn:
        """An import this kind of invocation does not serve (a fetch import in a workflow),
        or none at all now (`barred`)."""
        if self.barred is not None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{name} was called {self.barred}")
        where = "a fetch handler (dwf_fetch)" if name in abi.FETCH_IMPORTS else "a workflow"
        raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{name} is only allowed in {where}")

    def _set_deadline(self, budget_ms: int) -> None:
        linker.set_epoch_deadline(self.context_address, max(1, budget_ms // EPOCH_TICK_MS))
        self.deadline = time.monotonic() + budget_ms / 1000  # what host waits count against

    # -- memory ------------------------------------------------------------------

    def _slice(self, caller: linker.Context, ptr: int, length: int, what: str,
               limit: int | None = None, read_at_most: int | None = None) -> bytes:
        """The bytes of a guest slice, checked in full; `read_at_most`: only its start."""
        ptr, length = ptr & _U32, length & _U32
        if limit is not None and length > limit:
            raise GuestFault(GuestErrorName.PAYLOAD_TOO_LARGE,
                             f"{what} is {length} bytes, over the limit of {limit} bytes")
        if length == 0:
            return b""
        if ptr == 0:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{what} is a NULL pointer")
        size = self.memory.size(caller)
        if ptr + length > size:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"{what} (ptr={ptr}, len={length}) is outside guest memory "
                             f"of {size} bytes")
        if read_at_most is not None:
            length = min(length, read_at_most)
        return self.memory.read(caller, ptr, length)

    def _text(self, caller: linker.Context, ptr: int, length: int, what: str,
              limit: int = abi.MAX_STEP_NAME_BYTES) -> str:
        raw = self._slice(caller, ptr, length, what, None)
        if not 1 <= len(raw) <= limit:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"{what} must be 1-{limit} bytes, got {len(raw)}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{what} is not UTF-8") from None

    def _msgpack(self, caller: linker.Context, ptr: int, length: int, what: str,
                 max_depth: int = codec.MAX_DEPTH) -> tuple[bytes, Any]:
        """A payload the guest passed: its bytes and its value, checked (codec.check)."""
        raw = self._slice(caller, ptr, length, what, self.limits.max_payload_bytes)
        try:
            return raw, codec.unpack_checked(raw, max_depth)
        except codec.CodecError as exc:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{what} {exc}") from None

    def _map(self, caller: linker.Context, ptr: int, length: int, what: str) -> dict[str, Any]:
        # A request map wraps the value it carries (params, payload): one level more.
        _, value = self._msgpack(caller, ptr, length, what, codec.MAX_DEPTH + 1)
        if not isinstance(value, dict):
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{what} must be a msgpack map")
        return value

    def give(self, caller: linker.Context, data: bytes) -> int:
        """Copy `data` into memory the guest allocates and now owns; returns its pointer."""
        if not data:
            return 0
        alloc = self.func("dwf_alloc")
        assert alloc is not None  # a required export
        self.barred = _IN_ALLOC  # e.g. a step_ok from in there would record a step early
        try:
            ptr = alloc(self, caller, len(data))
        finally:
            self.barred = None
        assert isinstance(ptr, int)
        ptr &= _U32
        if ptr == 0 or ptr + len(data) > self.memory.size(caller):
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"guest allocator failed: dwf_alloc({len(data)}) returned {ptr}")
        self.memory.write(caller, ptr, data)
        return ptr

    def _answer(self, caller: linker.Context, code: StepCode, payload: bytes,
                out_slot: int) -> int:
        out_slot &= _U32
        if out_slot == 0 or out_slot + abi.OUT_SLOT_SIZE > self.memory.size(caller):
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"out slot pointer {out_slot} is outside guest memory")
        ptr = self.give(caller, payload)
        self.memory.write(caller, out_slot, _SLOT.pack(ptr, len(payload)))
        return int(code)

    def _workflow_journal(self, call: str) -> GuestJournal:
        if self.journal is None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"{call} is only allowed while running a workflow")
        return self.journal

    def _require_journal(self, caller: linker.Context, call: str) -> GuestJournal:
        """The journal, for a call that must not come from inside a step body."""
        journal = self._workflow_journal(call)
        if self._batch:
            _, _, running_ptr, running_len, replayed = self._descriptor(caller)
            if running_len:  # the host never saw it start: check, as for step_do
                running = self._text(caller, running_ptr, running_len, "batched step name")
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 f"step {running!r} (batched) is still running: {call} "
                                 "cannot be called inside a step body")
            journal.replayed_to(replayed)  # those come before this call's position
        return journal

    # -- step batches (proposal 0002) ---------------------------------------------

    def _descriptor(self, caller: linker.Context) -> tuple[int, int, int, int, int]:
        fields: tuple[int, int, int, int, int] = step_batch.DESCRIPTOR.unpack(
            self.memory.read(caller, self._batch, abi.BATCH_DESCRIPTOR_SIZE))
        return fields

    def _batched_running(self, caller: linker.Context) -> str | None:
        """The batched step whose body runs now, as the guest's descriptor says."""
        _, _, ptr, length, _ = self._descriptor(caller)
        return self._text(caller, ptr, length, "batched step name") if length else None

    def _take_batch(self, caller: linker.Context, journal: GuestJournal, *,
                    pause_point: bool) -> None:
        """Pass the steps the guest replayed itself, journal the steps in its batch, and
        mark those taken (records_len 0)."""
        records_ptr, records_len, _, _, replayed = self._descriptor(caller)
        journal.replayed_to(replayed)
        if not records_len:
            return
        raw = self._slice(caller, records_ptr, records_len, "step batch records")
        steps = step_batch.parse_records(raw, self.limits.max_payload_bytes)
        self.memory.write(caller, self._batch + step_batch.RECORDS_LEN_OFFSET, bytes(4))
        journal.steps_done(steps, pause_point=pause_point)

    def end_batch(self, *, trapped: bool) -> None:
        """After `dwf_run` returned or trapped: journal what the batch still holds. A
        batched step still running when the guest trapped is that step's failed first
        attempt, as if it had been asked for: it opens in the journal for the caller to
        record the failure."""
        journal = self.journal
        if not self._batch or journal is None:
            return
        caller = self.context
        self._take_batch(caller, journal, pause_point=False)
        running = self._batched_running(caller)
        if running is None:
            return
        if not trapped:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"dwf_run returned while batched step {running!r} was running")
        journal.step_do(running, DEFAULT_STEP_CONFIG)

    # -- imports -----------------------------------------------------------------

    def _import_log(self, caller: linker.Context, level: int, ptr: int, length: int) -> None:
        # The whole slice is checked (a bad one is refused, budget or not); at most
        # MAX_LOG_BYTES of it are read, and only while the invocation's budget lasts.
        if self._log_truncated:
            self._slice(caller, ptr, length, "log message", read_at_most=0)
            return
        raw = self._slice(caller, ptr, length, "log message", read_at_most=MAX_LOG_BYTES)
        limits = self.limits
        if (self._log_lines >= limits.max_log_lines
                or self._log_bytes + len(raw) > limits.max_log_bytes):
            self._log_truncated = True
            which = (f"{limits.max_log_lines} lines (max_log_lines)"
                     if self._log_lines >= limits.max_log_lines
                     else f"{limits.max_log_bytes} bytes (max_log_bytes)")
            self.log.warning("guest.log_truncated",
                             message=f"log truncated: this invocation reached its limit of "
                                     f"{which}; its later log calls are dropped")
            return
        self._log_lines += 1
        self._log_bytes += len(raw)
        method = {0: self.log.debug, 2: self.log.warning, 3: self.log.error}.get(level,
                                                                                self.log.info)
        step = self.journal.running.name if self.journal and self.journal.running else None
        if step is None and self._batch:
            step = self._batched_running(caller)
        method("guest.log", message=raw.decode("utf-8", "replace"), step=step)

    def _import_set_output(self, caller: linker.Context, ptr: int, length: int) -> None:
        self.output, _ = self._msgpack(caller, ptr, length, self.output_name)

    def _import_set_error(self, caller: linker.Context, ptr: int, length: int) -> None:
        error = self._map(caller, ptr, length, "workflow error")
        self.error = _error_fields(error, "workflow error")

    def _import_step_do(self, caller: linker.Context, name_ptr: int, name_len: int,
                        config_ptr: int, config_len: int, out_slot: int) -> int:
        journal = self._require_journal(caller, "step_do")
        name = self._text(caller, name_ptr, name_len, "step name")
        raw_config = self._msgpack(caller, config_ptr, config_len,
                                   "step config")[1] if config_len else None
        try:
            config = parse_step_config(raw_config)
        except StepConfigError as exc:
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"step {name!r}: {exc}") from None
        answer = journal.step_do(name, config)
        if answer.code is StepCode.RUN:
            self._set_deadline(min(config.timeout_ms, self.limits.invocation_timeout_ms))
        return self._answer(caller, answer.code, answer.payload, out_slot)

    def _import_step_ok(self, caller: linker.Context, ptr: int, length: int) -> None:
        journal = self._require_journal(caller, "step_ok")
        name = journal.running.name if journal.running else "?"
        result, _ = self._msgpack(caller, ptr, length, f"result of step {name!r}")
        journal.step_ok(result)
        self._set_deadline(self.limits.invocation_timeout_ms)

    def _import_step_fail(self, caller: linker.Context, ptr: int, length: int,
                          out_slot: int) -> int:
        journal = self._require_journal(caller, "step_fail")
        error = self._map(caller, ptr, length, "step error")
        name, message = _error_fields(error, "step error")
        retryable = error.get("retryable", True)
        if not isinstance(retryable, bool):
            raise GuestFault(GuestErrorName.ABI_VIOLATION, "step error `retryable` must be a bool")
        answer = journal.step_fail(name, message, retryable)
        self._set_deadline(self.limits.invocation_timeout_ms)
        return self._answer(caller, answer.code, answer.payload, out_slot)

    def _import_step_batch(self, caller: linker.Context, descriptor_ptr: int) -> None:
        journal = self._workflow_journal("step_batch")
        descriptor_ptr &= _U32
        self._slice(caller, descriptor_ptr, abi.BATCH_DESCRIPTOR_SIZE,
                    "step batch descriptor")  # bounds, once: memory never shrinks
        self._batch = descriptor_ptr
        self._take_batch(caller, journal, pause_point=True)
        self._set_deadline(self.limits.invocation_timeout_ms)

    def _import_sleep(self, caller: linker.Context, name_ptr: int, name_len: int,
                      duration_ms: int) -> None:
        journal = self._require_journal(caller, "sleep")
        journal.sleep(self._text(caller, name_ptr, name_len, "sleep name"), duration_ms)

    def _import_sleep_until(self, caller: linker.Context, name_ptr: int, name_len: int,
                            timestamp_ms: int) -> None:
        journal = self._require_journal(caller, "sleep_until")
        journal.sleep_until(self._text(caller, name_ptr, name_len, "sleep name"), timestamp_ms)

    def _import_wait_for_event(self, caller: linker.Context, name_ptr: int, name_len: int,
                               type_ptr: int, type_len: int, timeout_ms: int,
                               out_slot: int) -> int:
        journal = self._require_journal(caller, "wait_for_event")
        name = self._text(caller, name_ptr, name_len, "wait name")
        event_type = self._text(caller, type_ptr, type_len, "event type")
        answer = journal.wait_for_event(name, event_type, timeout_ms)
        return self._answer(caller, answer.code, answer.payload, out_slot)

    def _import_create_instance(self, caller: linker.Context, name_ptr: int, name_len: int,
                                request_ptr: int, request_len: int, out_slot: int) -> int:
        journal = self._require_journal(caller, "create_instance")
        name = self._text(caller, name_ptr, name_len, "step name")
        request = self._map(caller, request_ptr, request_len, "create_instance request")
        answer = journal.create_instance(name, request)
        return self._answer(caller, answer.code, answer.payload, out_slot)

    def _import_send_event(self, caller: linker.Context, name_ptr: int, name_len: int,
                           request_ptr: int, request_len: int, out_slot: int) -> int:
        journal = self._require_journal(caller, "send_event")
        name = self._text(caller, name_ptr, name_len, "step name")
        request = self._map(caller, request_ptr, request_len, "send_event request")
        answer = journal.send_event(name, request)
        return self._answer(caller, answer.code, answer.payload, out_slot)

    def _import_http_fetch(self, caller: linker.Context, request_ptr: int, request_len: int,
                           out_slot: int) -> int:
        call = self._outbound_call(caller)
        request = outbound.parse_request(
            self._map(caller, request_ptr, request_len, "http_fetch request"))
        assert self.egress is not None  # _outbound_call checked
        code, payload = self.egress.fetch(request, call)
        return self._answer(caller, code, payload, out_slot)

    def _outbound_call(self, caller: linker.Context) -> outbound.OutboundCall:
        """Where an http_fetch comes from: a step body or a fetch handler, nowhere else
        (workflow code between steps must stay deterministic; a step's result is what is
        journaled, so a replay never fetches again)."""
        if self.egress is None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             "http_fetch is not granted to this invocation")
        step: str | None = None
        occurrence: int | None = None
        journal = self.journal
        if journal is not None:
            if journal.running is not None:
                step, occurrence = journal.running.name, journal.running.occurrence
            elif self._batch and (step := self._batched_running(caller)) is not None:
                records_ptr, records_len, _, _, replayed = self._descriptor(caller)
                journal.replayed_to(replayed)
                pending = step_batch.pending_names(
                    self._slice(caller, records_ptr, records_len, "step batch records"))
                occurrence = journal.occurrences(step) + pending.count(step) + 1
            else:
                raise GuestFault(GuestErrorName.ABI_VIOLATION,
                                 "http_fetch is only allowed inside a step body or a fetch "
                                 "handler: workflow code between steps must stay "
                                 "deterministic (put the call in a step)")
        self._outbound_calls[(step, occurrence)] += 1
        return outbound.OutboundCall(step, occurrence,
                                     self._outbound_calls[(step, occurrence)], self.deadline)

    def _import_now(self, caller: linker.Context, name_ptr: int, name_len: int) -> int:
        journal = self._require_journal(caller, "now")
        return journal.now(self._text(caller, name_ptr, name_len, "step name"))

    def _import_random(self, caller: linker.Context, name_ptr: int, name_len: int,
                       buf_ptr: int, buf_len: int) -> None:
        journal = self._require_journal(caller, "random")
        name = self._text(caller, name_ptr, name_len, "step name")
        buf_ptr, buf_len = buf_ptr & _U32, buf_len & _U32
        if buf_len > abi.MAX_RANDOM_BYTES:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"random {name!r} asked for {buf_len} bytes; at most "
                             f"{abi.MAX_RANDOM_BYTES} per call")
        self._slice(caller, buf_ptr, buf_len, f"random {name!r} buffer")  # bounds check
        value = journal.random(name, buf_len)
        if value:
            self.memory.write(caller, buf_ptr, value)


def _error_fields(error: dict[str, Any], what: str) -> tuple[str, str]:
    name, message = error.get("name"), error.get("message", "")
    if not isinstance(name, str) or not name or not isinstance(message, str):
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         f"{what} must be a map with string `name` and `message`")
    return name[:256], message[:MAX_ERROR_MESSAGE_CHARS]


@dataclass(slots=True)
class Usage:
    """What one invocation used, filled in when it ends (for /metrics)."""

    fuel_used: int = 0


def run_workflow(engine: wasmtime.Engine, module: wasmtime.Module, limits: TenantLimits,
                 event: bytes, journal: GuestJournal,
                 log: structlog.typing.FilteringBoundLogger,
                 egress: EgressPort | None = None,
                 usage: Usage | None = None) -> Outcome:
    """Run `dwf_run` once. Blocking: call it from a worker thread, never the event loop."""
    invocation: _Invocation | None = None
    try:
        invocation = _Invocation(engine, module, limits, journal, log, egress)
        with linker.serving(invocation):
            event_ptr = invocation.give(invocation.context, event)
        code = invocation.call("dwf_run", event_ptr, len(event))
        invocation.end_batch(trapped=False)
        journal.check_fully_replayed()
        return _finish(invocation, code)
    except Suspend as suspend:
        return Suspended(suspend.reason, suspend.wake_at_ms, suspend.waiting_event_type)
    except GuestFault as fault:
        return Failed(fault.name.value, fault.message)
    except wasmtime.Trap as trap:
        if invocation is not None:
            try:
                invocation.end_batch(trapped=True)
            except GuestFault as fault:
                return Failed(fault.name.value, fault.message)
        memory_in_use = (invocation.memory.size(invocation.context)
                         if invocation is not None else None)
        name, message = classify_trap(trap, journal, limits, memory_in_use)
        if journal.running is not None:
            # A trap inside a step body is a failed attempt of that step, retried per its
            # config; the final failure reaches the guest on the next run.
            try:
                journal.step_fail(name.value, message, retryable=True, from_trap=True)
            except Suspend as suspend:
                return Suspended(suspend.reason, suspend.wake_at_ms)
        return Failed(name.value, message)
    except wasmtime.WasmtimeError as exc:
        return instantiation_failure(exc, limits)
    finally:
        if invocation is not None:
            if usage is not None:
                usage.fuel_used = limits.cpu_fuel - invocation.store.get_fuel()
            invocation.store.close()


def instantiation_failure(exc: wasmtime.WasmtimeError, limits: TenantLimits) -> Failed:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "exceeds memory limits" in text or "table" in text and "limits" in text:
        return Failed(GuestErrorName.MEMORY_LIMIT_EXCEEDED.value,
                      f"the module needs more memory or table space than the tenant's "
                      f"limits allow (memory_bytes={limits.memory_bytes}, "
                      f"table_elements={limits.table_elements}): {text}")
    return Failed(GuestErrorName.GUEST_TRAP.value, f"could not instantiate: {text}")


def _finish(invocation: _Invocation, code: Any) -> Outcome:
    code = int(code) & _U32
    if code == abi.RunCode.COMPLETE:
        return Completed(invocation.output if invocation.output is not None
                         else codec.pack(None))
    if code == abi.RunCode.FAILED:
        if invocation.error is None:
            return Failed(GuestErrorName.WORKFLOW_ERROR.value,
                          "the workflow failed without reporting an error")
        return Failed(*invocation.error)
    raise GuestFault(GuestErrorName.ABI_VIOLATION,
                     f"dwf_run returned {code}; expected 0 (complete) or 1 (failed)")


def describe(engine: wasmtime.Engine, module: wasmtime.Module,
             limits: TenantLimits, log: structlog.typing.FilteringBoundLogger) -> Any:
    """Instantiate the module once and read its manifest; raises GuestFault or Trap."""
    invocation = _Invocation(engine, module, limits, None, log)
    invocation.output_name = "manifest"
    try:
        version = int(invocation.call("dwf_abi_version") or 0)
        if version != abi.ABI_VERSION:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"module speaks ABI v{version}; this host speaks "
                             f"v{abi.ABI_VERSION}")
        invocation.call("dwf_describe")
        if invocation.output is None and invocation.error is not None:
            # A guest that cannot describe itself may say why (the JavaScript engine does
            # when the tenant's code throws while it loads).
            name, message = invocation.error
            raise GuestFault(GuestErrorName.ABI_VIOLATION, f"{name}: {message}")
        if invocation.output is None:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             "dwf_describe did not report a manifest through set_output")
        return codec.unpack(invocation.output)
    finally:
        invocation.store.close()
