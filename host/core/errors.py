"""Error types: one class per failure a user can act on, each with a stable code."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_MODULE = "invalid_module"
    INVALID_STATE = "invalid_state"
    WORKER_BUSY = "worker_busy"
    UNAVAILABLE = "unavailable"


class DwfError(Exception):
    """Base of every error the host reports to users (CLI, API)."""

    code: ErrorCode = ErrorCode.INVALID_INPUT


class InvalidInput(DwfError):
    code = ErrorCode.INVALID_INPUT


class NotFound(DwfError):
    code = ErrorCode.NOT_FOUND


class UnknownTenant(NotFound):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}: register a module first with "
                         f"`dwf tenant register {tenant_id} MODULE.wasm`")


class UnknownWorkflow(NotFound):
    def __init__(self, tenant_id: str, workflow: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(f"tenant {tenant_id!r} has no workflow {workflow!r} "
                         f"(its module defines: {names})")


class UnknownInstance(NotFound):
    def __init__(self, tenant_id: str, instance_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no instance {instance_id!r}")


class DuplicateInstance(DwfError):
    code = ErrorCode.CONFLICT

    def __init__(self, tenant_id: str, instance_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} already has an instance {instance_id!r}")


class InvalidModule(DwfError):
    """A module was rejected at registration; the registry is unchanged."""

    code = ErrorCode.INVALID_MODULE


class UploadInProgress(DwfError):
    """A tenant registers one module at a time: checking one takes a compile lane."""

    code = ErrorCode.CONFLICT

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} already has a module being checked; "
                         "register the next one when it is done")


class InvalidState(DwfError):
    """An instance API call that the instance's status does not allow."""

    code = ErrorCode.INVALID_STATE


class WorkerBusy(DwfError):
    code = ErrorCode.WORKER_BUSY


class StorageUnavailable(DwfError):
    """The database could not be written or read just now (locked by another process past
    its busy timeout, disk full, an I/O error): nothing was changed, and the same call can
    succeed later. Work in progress is put back, never failed, because of it."""

    code = ErrorCode.UNAVAILABLE


def unavailable_cause(exc: BaseException | None) -> StorageUnavailable | None:
    """The StorageUnavailable behind `exc` (itself or what it was raised from), if any."""
    while exc is not None:
        if isinstance(exc, StorageUnavailable):
            return exc
        exc = exc.__cause__
    return None


class GuestErrorName(enum.Enum):
    """Names of the errors an instance can fail with because of its guest (see ABI.md)."""

    ABI_VIOLATION = "AbiViolation"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    NONDETERMINISM = "NondeterminismError"
    STEP_LIMIT_EXCEEDED = "StepLimitExceeded"
    CPU_LIMIT_EXCEEDED = "CpuLimitExceeded"
    STEP_TIMEOUT = "StepTimeout"
    MEMORY_LIMIT_EXCEEDED = "MemoryLimitExceeded"
    GUEST_TRAP = "GuestTrap"
    WAIT_FOR_EVENT_TIMEOUT = "WaitForEventTimeout"
    WORKFLOW_ERROR = "WorkflowError"
    MODULE_UNAVAILABLE = "ModuleUnavailable"


class GuestFault(Exception):
    """The guest broke the contract or a limit; its instance fails with `name`.

    Raised inside host imports (which wasmtime turns into a trap) and re-raised by the
    sandbox, so it always ends the invocation.
    """

    def __init__(self, name: GuestErrorName, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


class UnknownSchedule(NotFound):
    def __init__(self, tenant_id: str, schedule_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no schedule {schedule_id!r} "
                         f"(`dwf schedule list {tenant_id}` shows its schedules)")


class DuplicateSchedule(DwfError):
    code = ErrorCode.CONFLICT

    def __init__(self, tenant_id: str, schedule_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} already has a schedule {schedule_id!r}; "
                         "pick another --id or delete that one first")


class ModuleSourceUnavailable(DwfError):
    """On-demand loading could not ask the deployment's module source (a directory that
    cannot be read, a code server that does not answer) for a tenant that has no module."""

    code = ErrorCode.UNAVAILABLE
