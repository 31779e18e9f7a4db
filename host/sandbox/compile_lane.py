"""Compiling tenant modules in a bounded lane: child processes with CPU and memory caps.

Compiling is the one thing a tenant can make the host do at length before any of its code
runs: a hostile 60 MiB module compiled for 73 s and 440 MB on the threads that run every
tenant's workflows, and four uploads at once slowed another tenant's instance fifty-fold.
Here each compile runs in a child process forked from a warm server (`python -m
host.sandbox.compile_server`, wasmtime already imported: a fork costs milliseconds), at a
lower CPU priority, single-threaded, under RLIMIT_CPU and RLIMIT_AS, a bounded number at
a time. The host gets back wasmtime's serialized artifact and loads it; nothing of the
compile runs in the host's own process.

The server is a plain subprocess speaking length-prefixed frames over its stdin and
stdout, not multiprocessing: a multiprocessing child imports the host program's main
module again, which an embedding script without a `__main__` guard does not survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import resource
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO

import wasmtime

from ..core.errors import DwfError, ErrorCode

_OK, _INVALID, _FAILED, _DIED = 0, 1, 2, 3
_JOB = struct.Struct("<IIQ")  # wasm length, CPU seconds, memory bytes; then the wasm
_ANSWER = struct.Struct("<BiI")  # kind, the child's wait status, payload length; payload


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


# -- the host's side -----------------------------------------------------------------------

class _Server:
    """One warm compile server; a job at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host.sandbox.compile_server"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True)

    def compile(self, wasm: bytes, limits: CompileLimits) -> tuple[int, int, bytes]:
        """(kind, wait status, payload); OSError or EOFError if the server is gone."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(_JOB.pack(len(wasm), limits.cpu_seconds,
                                           limits.memory_bytes) + wasm)
        self.process.stdin.flush()
        kind, status, length = _ANSWER.unpack(_read_exact(self.process.stdout, _ANSWER.size))
        return kind, status, _read_exact(self.process.stdout, length)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()


class CompileLane:
    """At most `lanes` compiles at once, each in its own capped child process."""

    def __init__(self, lanes: int = 1, limits: CompileLimits = CompileLimits()) -> None:
        self.limits = limits
        self._lanes = threading.BoundedSemaphore(lanes)
        self._idle: queue.SimpleQueue[_Server] = queue.SimpleQueue()
        self._servers: list[_Server] = []
        self._lock = threading.Lock()

    async def compile(self, wasm: bytes) -> bytes:
        """wasmtime's serialized artifact of `wasm` (CompileFailed saying why not)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.compile_blocking,
                                                                wasm)

    def compile_blocking(self, wasm: bytes) -> bytes:
        with self._lanes:
            server = self._server()
            try:
                kind, status, payload = server.compile(wasm, self.limits)
            except (OSError, EOFError) as exc:
                self._retire(server)
                raise CompileFailed(f"the compile lane stopped ({exc}); try again") from None
            self._idle.put(server)
        if kind == _OK:
            return payload
        if kind in (_INVALID, _FAILED):
            raise CompileFailed(payload.decode(errors="replace"), invalid=kind == _INVALID)
        raise CompileFailed(self._death(status))

    def close(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, []
        for server in servers:
            server.close()

    def _server(self) -> _Server:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            server = _Server()
            with self._lock:
                self._servers.append(server)
            return server

    def _retire(self, server: _Server) -> None:
        server.close()
        with self._lock:
            if server in self._servers:
                self._servers.remove(server)

    def _death(self, status: int) -> str:
        killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if killed_by in (signal.SIGXCPU, signal.SIGKILL):
            return (f"compiling it took more than {self.limits.cpu_seconds} s of CPU, "
                    "the host's limit")
        if killed_by in (signal.SIGABRT, signal.SIGSEGV):
            return (f"compiling it needed more than {self.limits.memory_bytes} bytes of "
                    "memory, the host's limit")
        if killed_by is not None:
            return f"the compiler was stopped by {signal.Signals(killed_by).name}"
        return f"the compiler exited with status {os.WEXITSTATUS(status)}"


def _read_exact(stream: IO[bytes], count: int) -> bytes:
    data = stream.read(count)
    if data is None or len(data) != count:
        raise EOFError("the compile server closed its pipe")
    return data


# -- the server's side ----------------------------------------------------------------------

def _compile_in_child(out: int, wasm: bytes, limits: CompileLimits) -> None:
    """In the forked child: cap itself, compile, write the framed answer to `out`."""
    os.nice(10)  # the host's own threads (every tenant's workflows) come first
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    cap = in_use + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    config = engine_config()
    config.parallel_compilation = False  # one core: leave the other to the host
    engine = wasmtime.Engine(config)
    kind, payload = _OK, b""
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        kind, payload = _INVALID, _reason(exc).encode()
    else:
        try:
            payload = bytes(wasmtime.Module(engine, wasm).serialize())
        except wasmtime.WasmtimeError as exc:
            kind, payload = _FAILED, _reason(exc).encode()
        except MemoryError:
            kind, payload = _FAILED, (f"compiling needs more than {limits.memory_bytes} "
                                      "bytes of memory").encode()
    with os.fdopen(out, "wb") as answer:
        answer.write(bytes([kind]) + payload)


def serve(jobs: IO[bytes], answers: IO[bytes]) -> None:
    """Fork a capped child per job; answer with what it wrote, or how it died."""
    while header := jobs.read(_JOB.size):
        if len(header) != _JOB.size:
            return
        length, cpu_seconds, memory_bytes = _JOB.unpack(header)
        wasm = _read_exact(jobs, length)
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # the compile
            os.close(read_end)
            try:
                _compile_in_child(write_end, wasm, CompileLimits(cpu_seconds, memory_bytes))
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as from_child:
            written = from_child.read()
        _, status = os.waitpid(child, 0)
        kind, payload = (written[0], written[1:]) if written else (_DIED, b"")
        answers.write(_ANSWER.pack(kind, status, len(payload)) + payload)
        answers.flush()

