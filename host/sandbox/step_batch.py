"""Steps a guest ran without asking the host, handed over in batches (ABI proposal 0002).

Past the end of its journal a guest knows every step is new, so asking `step_do` before
each one and reporting `step_ok` after it tells the host nothing it could not learn later;
it only costs two crossings of the sandbox boundary a step, each a GIL hand-off on the
host. Instead the guest runs such steps on its own, appends each name and result to a
buffer, and hands the buffer over with one `step_batch` call (or none: the host reads it
when `dwf_run` returns or traps). The host checks and journals them exactly as if they
had been asked for one by one.

Replay is the same idea the other way round: the event hands the guest the journal's
leading completed steps, which it answers itself while the names match, and the host
learns how many from the descriptor's `replayed` count.
"""

from __future__ import annotations

import struct

from ..core import codec
from ..core.errors import GuestErrorName, GuestFault
from ..core.model import StepKind, StepRecord, StepState
from . import abi

DESCRIPTOR = struct.Struct("<IIIII")
"""{u32 records_ptr; u32 records_len; u32 running_ptr; u32 running_len; u32 replayed}"""
RECORDS_LEN_OFFSET = 4
assert DESCRIPTOR.size == abi.BATCH_DESCRIPTOR_SIZE


def replay_prefix(records: list[StepRecord], memory_bytes: int) -> bytes | None:
    """The event's `replay` value: the journal's leading completed steps as msgpack
    [[name, result], ...], results as recorded; None when it has none. Its results take at
    most a sixteenth of the guest's memory cap, so a tenant with little memory still has
    room for its event."""
    budget = min(abi.MAX_REPLAY_BYTES, memory_bytes // 16)
    pairs: list[bytes] = []
    size = 0
    for record in records:
        if (record.kind is not StepKind.DO or record.state is not StepState.OK
                or record.result is None or len(pairs) == abi.MAX_REPLAY_STEPS
                or size + len(record.result) > budget):
            break
        size += len(record.result)
        pairs.append(_PAIR + codec.pack(record.name) + record.result)
    if not pairs:
        return None
    return codec.array_header(len(pairs)) + b"".join(pairs)


_PAIR = codec.array_header(2)  # before each [name, result]


def pending_names(raw: bytes) -> list[str]:
    """The step names in a batch's records, for counting occurrences before the host takes
    the batch (malformed records count nothing: taking them fails later, and says why)."""
    try:
        values = codec.unpack_each(raw)
    except codec.CodecError:
        return []
    return [name for name, _ in values[::2] if isinstance(name, str)]


def parse_records(raw: bytes, max_payload_bytes: int) -> list[tuple[str, bytes]]:
    """The (name, result) of each step in a batch's records, results as the guest wrote
    them: msgpack values back to back, a step's name (str) then its result (any)."""
    try:
        values = codec.unpack_each(raw)
    except codec.CodecError as exc:
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         f"step batch records {exc}") from None
    if len(values) % 2:
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         "step batch records must alternate a step name and its result; "
                         f"the last of {len(values)} values has no result")
    if len(values) // 2 > abi.MAX_BATCH_STEPS:
        raise GuestFault(GuestErrorName.ABI_VIOLATION,
                         f"a step batch holds {len(values) // 2} steps; at most "
                         f"{abi.MAX_BATCH_STEPS} per call")
    steps = []
    for (name, _), (_, result) in zip(values[::2], values[1::2], strict=True):
        if not isinstance(name, str):
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"a step name in a batch is {type(name).__name__}, not a string")
        size = len(name.encode())
        if not 1 <= size <= abi.MAX_STEP_NAME_BYTES:
            raise GuestFault(GuestErrorName.ABI_VIOLATION,
                             f"step name must be 1-{abi.MAX_STEP_NAME_BYTES} bytes, got {size}")
        if len(result) > max_payload_bytes:
            raise GuestFault(GuestErrorName.PAYLOAD_TOO_LARGE,
                             f"result of step {name!r} is {len(result)} bytes, over the "
                             f"limit of {max_payload_bytes} bytes")
        steps.append((name, result))
    return steps
