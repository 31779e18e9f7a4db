"""Checking a module a tenant wants to register: is it a dwf guest, and what it exports.

Everything here runs the module only as far as `dwf_describe`, under the tenant's limits;
the registry stores what passes.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
import wasmtime

from ..core.errors import GuestFault, InvalidModule
from ..core.limits import TenantLimits
from . import abi
from .guest import classify_trap, describe, interface_problems
from .pool import IsolatePool

_WORKFLOW_NAME = re.compile(abi.WORKFLOW_NAME_PATTERN)
WASM_MAGIC = b"\0asm"
MAX_MODULE_BYTES = 64 * 1024 * 1024
MAX_SDK_CHARS = 64


async def inspect_module(pool: IsolatePool, wasm: bytes, limits: TenantLimits,
                         logger: structlog.typing.FilteringBoundLogger) -> dict[str, Any]:
    """The manifest of a module a tenant wants to register, checked: valid WebAssembly,
    compiled (and cached by the pool), speaking ABI v1, and describing itself within the
    tenant's `limits`. InvalidModule, saying why, for anything else."""
    if not wasm.startswith(WASM_MAGIC):
        raise InvalidModule(f"not a WebAssembly module: it starts with {wasm[:4]!r}, "
                            f"a .wasm file starts with {WASM_MAGIC!r}")
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidModule(f"module is {len(wasm)} bytes; the limit is {MAX_MODULE_BYTES}")
    try:
        wasmtime.Module.validate(pool.engine, wasm)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"invalid WebAssembly: {_first_line(exc)}") from None
    try:
        module = await pool.call(lambda: pool.compile(wasm))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"module does not compile: {_first_line(exc)}") from None
    problems = interface_problems(module)
    if problems:
        raise InvalidModule("module does not implement the dwf ABI "
                            f"v{abi.ABI_VERSION}: " + "; ".join(problems))
    try:
        manifest = await pool.call(lambda: describe(
            pool.engine, module, limits, logger))
    except GuestFault as fault:
        raise InvalidModule(f"dwf_describe failed: {fault.message}") from None
    except wasmtime.Trap as trap:
        _, message = classify_trap(trap, None, limits)
        raise InvalidModule(f"dwf_describe trapped: {message}") from None
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"module does not instantiate: {_first_line(exc)}") from None
    # The host decides whether a module has a fetch handler, from its exports: the
    # guest's manifest cannot claim one it does not have.
    has_fetch = any(item.name == abi.EXPORT_FETCH for item in module.exports)
    return {**_check_manifest(manifest), "fetch": has_fetch}


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
