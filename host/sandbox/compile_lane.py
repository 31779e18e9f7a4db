"""Compiling tenant modules in a bounded lane: child processes with CPU and memory caps.

Compiling is the one thing a tenant can make the host do at length before any of its code
runs: a hostile 60 MiB module compiled for 73 s and 440 MB on the threads that run every
tenant's workflows, and four uploads at once slowed another tenant's instance fifty-fold.
Here each compile runs in a child process forked from a warm server (multiprocessing's
forkserver, wasmtime already imported: a fork costs milliseconds), at a lower CPU
priority, single-threaded, under RLIMIT_CPU and RLIMIT_AS, a bounded number at a time.
The host gets back wasmtime's serialized artifact and loads it; nothing of the compile
runs in the host's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

import wasmtime

from ..core.errors import DwfError, ErrorCode

_OK, _INVALID, _FAILED = b"\x00", b"\x01", b"\x02"


@dataclass(frozen=True, slots=True)
class CompileLimits:
    """What one compile may use; it fails with CompileFailed past either."""

    cpu_seconds: int = 60
    """CPU time of the compile (the default takes any sane module many times over)."""

    memory_bytes: int = 2 * 1024 * 1024 * 1024
    """Address space the compile may add to the lane's own."""


class CompileFailed(DwfError):
    """The module did not compile: invalid, or past the lane's CPU or memory cap."""

    code = ErrorCode.INVALID_MODULE

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid
        """Not valid WebAssembly (rather than a module the compiler gave up on)."""


def engine_config() -> wasmtime.Config:
    """The one engine configuration: artifacts compiled in the lane load in the host."""
    config = wasmtime.Config()
    config.consume_fuel = True  # the CPU budget, deterministic per invocation
    config.epoch_interruption = True  # wall-clock deadlines (step timeouts)
    config.max_wasm_stack = 512 * 1024  # deep recursion traps long before the host's stack
    return config


def _reason(exc: BaseException) -> str:
    """wasmtime's error in one line: what failed, and the innermost cause."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    causes = [line for line in lines[1:] if line != "Caused by:"]
    return f"{lines[0]}: {causes[-1]}" if causes else lines[0]


def _compile_in_child(out: Connection, wasm: bytes, limits: CompileLimits) -> None:
    """In the forked child: cap itself, compile, send the artifact (or why not)."""
    os.nice(10)  # the host's own threads (every tenant's workflows) come first
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    cap = in_use + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    config = engine_config()
    config.parallel_compilation = False  # one core: leave the other to the host
    engine = wasmtime.Engine(config)
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        out.send_bytes(_INVALID + _reason(exc).encode())
        return
    try:
        artifact = wasmtime.Module(engine, wasm).serialize()
    except wasmtime.WasmtimeError as exc:
        out.send_bytes(_FAILED + _reason(exc).encode())
    except MemoryError:
        out.send_bytes(_FAILED + f"compiling needs more than {limits.memory_bytes} bytes "
                       "of memory".encode())
    else:
        out.send_bytes(_OK + artifact)
    out.close()


class CompileLane:
    """At most `lanes` compiles at once, each in its own capped child process."""

    def __init__(self, lanes: int = 1, limits: CompileLimits = CompileLimits()) -> None:
        self.limits = limits
        self._lanes = threading.BoundedSemaphore(lanes)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])

    async def compile(self, wasm: bytes) -> bytes:
        """wasmtime's serialized artifact of `wasm` (CompileFailed saying why not)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.compile_blocking,
                                                                wasm)

    def compile_blocking(self, wasm: bytes) -> bytes:
        with self._lanes:
            receive, send = self._context.Pipe(duplex=False)
            child = self._context.Process(target=_compile_in_child,
                                          args=(send, wasm, self.limits), daemon=True)
            child.start()
            send.close()
            try:
                answer = receive.recv_bytes()
            except EOFError:  # it died without a word: a limit's signal, an abort
                answer = b""
            finally:
                receive.close()
                child.join()
        if answer[:1] == _OK:
            return answer[1:]
        if answer[:1] in (_INVALID, _FAILED):
            raise CompileFailed(answer[1:].decode(errors="replace"),
                                invalid=answer[:1] == _INVALID)
        raise CompileFailed(self._death(child.exitcode))

    def _death(self, exitcode: int | None) -> str:
        killed_by = -exitcode if exitcode is not None and exitcode < 0 else None
        if killed_by in (signal.SIGXCPU, signal.SIGKILL):
            return (f"compiling it took more than {self.limits.cpu_seconds} s of CPU, "
                    "the host's limit")
        if killed_by in (signal.SIGABRT, signal.SIGSEGV):
            return (f"compiling it needed more than {self.limits.memory_bytes} bytes of "
                    "memory, the host's limit")
        with contextlib.suppress(ValueError):
            if killed_by is not None:
                return f"the compiler was stopped by {signal.Signals(killed_by).name}"
        return f"the compiler exited with status {exitcode}"
