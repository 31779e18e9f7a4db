"""The guest ABI, version 1: the single source of truth for names and signatures.

`guest_sdk/ABI.md` documents this module; `tests/test_abi.py` keeps the two in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ABI_VERSION = 1
IMPORT_MODULE = "dwf"
OUT_SLOT_SIZE = 8
BATCH_DESCRIPTOR_SIZE = 20
"""A step batch descriptor (proposal 0002): {u32 records_ptr; u32 records_len;
u32 running_ptr; u32 running_len; u32 replayed}."""
MAX_BATCH_STEPS = 64
"""Most steps one step batch may hand over."""
REPLAY_KEY = "replay"
"""The `dwf_run` event key with the journal's leading completed steps, [[name, result], ...]
(proposal 0002): a guest may answer them itself, and says how many in `replayed`."""
MAX_REPLAY_STEPS = 4096
MAX_REPLAY_BYTES = 1024 * 1024
"""At most this many steps, of at most this many result bytes together, go in the event."""
JOURNAL_LENGTH_KEY = "journal_length"
"""The `dwf_run` event key saying how many journal positions were recorded (proposal
0002): from there on every step is new, and a guest may batch it."""


class ValKind(enum.Enum):
    I32 = "i32"
    I64 = "i64"


I32 = ValKind.I32
I64 = ValKind.I64


@dataclass(frozen=True, slots=True)
class Signature:
    """A function's wasm parameter and result types."""

    params: tuple[ValKind, ...]
    results: tuple[ValKind, ...]


class StepCode(enum.IntEnum):
    """What a step call returns to the guest."""

    RUN = 0
    OK = 1
    ERROR = 2


class RunCode(enum.IntEnum):
    """What `dwf_run` returns to the host."""

    COMPLETE = 0
    FAILED = 1


class LogLevel(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


FETCH_IMPORTS: dict[str, Signature] = {
    # The tenant-bound binding of a fetch handler (proposal 0001). Not journaled: a fetch
    # has no journal. Calling one from a workflow (or a workflow import from a fetch) is
    # AbiViolation.
    "fetch_create_instance": Signature((I32, I32, I32), (I32,)),
    "fetch_instance_status": Signature((I32, I32, I32), (I32,)),
    "fetch_send_event": Signature((I32, I32, I32), (I32,)),
}

IMPORTS: dict[str, Signature] = {
    "log": Signature((I32, I32, I32), ()),
    "set_output": Signature((I32, I32), ()),
    "set_error": Signature((I32, I32), ()),
    "step_do": Signature((I32, I32, I32, I32, I32), (I32,)),
    "step_ok": Signature((I32, I32), ()),
    "step_fail": Signature((I32, I32, I32), (I32,)),
    "step_batch": Signature((I32,), ()),
    "sleep": Signature((I32, I32, I64), ()),
    "sleep_until": Signature((I32, I32, I64), ()),
    "wait_for_event": Signature((I32, I32, I32, I32, I64, I32), (I32,)),
    "create_instance": Signature((I32, I32, I32, I32, I32), (I32,)),
    "send_event": Signature((I32, I32, I32, I32, I32), (I32,)),
    "now": Signature((I32, I32), (I64,)),
    "random": Signature((I32, I32, I32, I32), ()),
    # Outbound HTTP (proposal 0003): only inside a step body or a fetch handler.
    "http_fetch": Signature((I32, I32, I32), (I32,)),
    **FETCH_IMPORTS,
}

EXPORT_MEMORY = "memory"

EXPORTS: dict[str, Signature] = {
    "dwf_abi_version": Signature((), (I32,)),
    "dwf_alloc": Signature((I32,), (I32,)),
    "dwf_free": Signature((I32, I32), ()),
    "dwf_describe": Signature((), (I32,)),
    "dwf_run": Signature((I32, I32), (I32,)),
}

EXPORT_FETCH = "dwf_fetch"

OPTIONAL_EXPORTS: dict[str, Signature] = {
    # A module that exports it answers HTTP requests (proposal 0001); one without it is
    # still a valid module, it just has no fetch handler.
    EXPORT_FETCH: Signature((I32, I32), (I32,)),
}

MAX_STEP_NAME_BYTES = 256
MAX_RANDOM_BYTES = 4096
WORKFLOW_NAME_PATTERN = r"[A-Za-z0-9_-]{1,64}"
