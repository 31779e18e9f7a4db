"""Checking a module a tenant wants to register: is it a dwf guest, and what it exports.

Everything here runs the module only as far as `dwf_describe`, under the tenant's limits
and a small CPU budget; compiling happens in the compile lane, never on the threads that
run workflows. The registry stores what passes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import structlog
import wasmtime

from ..core.errors import GuestFault, InvalidModule
from ..core.limits import TenantLimits
from . import abi
from .compile_lane import CompileFailed
from .guest import classify_trap, describe
from .module_interface import interface_of, interface_problems, read_interface
from .pool import IsolatePool, module_sha

_WORKFLOW_NAME = re.compile(abi.WORKFLOW_NAME_PATTERN)
WASM_MAGIC = b"\0asm"
MAX_MODULE_BYTES = 64 * 1024 * 1024
MAX_SDK_CHARS = 64
DESCRIBE_FUEL = 500_000_000
"""Most fuel `dwf_describe` may use (about half a second of CPU): it only names the
module's workflows, and it runs at registration, on the threads of every tenant."""
DESCRIBE_TIMEOUT_MS = 2_000


async def inspect_module(pool: IsolatePool, wasm: bytes, limits: TenantLimits,
                         logger: structlog.typing.FilteringBoundLogger, *,
                         on_disk: bool = True) -> dict[str, Any]:
    """The manifest of a module a tenant wants to register, checked: a WebAssembly module
    that speaks ABI v1 (told from its bytes first, before the costly compile), compiled in
    the pool's compile lane (and cached), describing itself within a small CPU budget.
    InvalidModule, saying why, for anything else."""
    if not wasm.startswith(WASM_MAGIC):
        raise InvalidModule(f"not a WebAssembly module: it starts with {wasm[:4]!r}, "
                            f"a .wasm file starts with {WASM_MAGIC!r}")
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidModule(f"module is {len(wasm)} bytes; the limit is {MAX_MODULE_BYTES}")
    interface = read_interface(wasm)
    if interface is not None:
        _refuse_problems(interface_problems(interface))
    try:
        module = await pool.compile_in_lane(wasm, module_sha(wasm), on_disk=on_disk)
    except CompileFailed as exc:
        problem = "invalid WebAssembly" if exc.invalid else "module does not compile"
        raise InvalidModule(f"{problem}: {exc}") from None
    _refuse_problems(interface_problems(interface_of(module)))
    budget = dataclasses.replace(
        limits, cpu_fuel=min(limits.cpu_fuel, DESCRIBE_FUEL),
        invocation_timeout_ms=min(limits.invocation_timeout_ms, DESCRIBE_TIMEOUT_MS))
    try:
        manifest = await pool.call(lambda: describe(pool.engine, module, budget, logger))
    except GuestFault as fault:
        raise InvalidModule(f"dwf_describe failed: {fault.message}") from None
    except wasmtime.Trap as trap:
        _, message = classify_trap(trap, None, budget)
        raise InvalidModule(f"dwf_describe trapped: {message}") from None
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"module does not instantiate: {_first_line(exc)}") from None
    # The host decides whether a module has a fetch handler, from its exports: the
    # guest's manifest cannot claim one it does not have.
    has_fetch = any(item.name == abi.EXPORT_FETCH for item in module.exports)
    return {**_check_manifest(manifest), "fetch": has_fetch}


def _refuse_problems(problems: list[str]) -> None:
    if problems:
        raise InvalidModule("module does not implement the dwf ABI "
                            f"v{abi.ABI_VERSION}: " + "; ".join(problems))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise InvalidModule("dwf_describe must report a msgpack map")
    version = manifest.get("abi")
    if type(version) is not int or version != abi.ABI_VERSION:  # `true` is not 1
        raise InvalidModule(f"manifest says abi {version!r}; expected the integer "
                            f"{abi.ABI_VERSION}")
    workflows = manifest.get("workflows")
    if not isinstance(workflows, list) or not workflows:
        raise InvalidModule("manifest must list at least one workflow name")
    for name in workflows:
        if not isinstance(name, str) or not _WORKFLOW_NAME.fullmatch(name):
            raise InvalidModule(f"manifest has an invalid workflow name {name!r}: use 1-64 "
                                "characters of [A-Za-z0-9_-]")
    if len(set(workflows)) != len(workflows):
        raise InvalidModule("manifest lists a workflow name twice")
    sdk = manifest.get("sdk", "unknown")
    if not isinstance(sdk, str) or not 1 <= len(sdk) <= MAX_SDK_CHARS:
        raise InvalidModule(f"manifest `sdk` must be a string of 1-{MAX_SDK_CHARS} "
                            f"characters (the SDK's name and version), got a "
                            f"{type(sdk).__name__}" + (f" of {len(sdk)}" if isinstance(sdk, str)
                                                        else ""))
    return {"abi": abi.ABI_VERSION, "sdk": sdk, "workflows": workflows}
