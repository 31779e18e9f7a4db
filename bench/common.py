"""Helpers shared by the benchmark sections (stdlib only: the DBOS section imports it too)."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(seconds, 50) * 1e3, "p99_ms": percentile(seconds, 99) * 1e3,
            "mean_ms": statistics.fmean(seconds) * 1e3 if seconds else float("nan"),
            "samples": len(seconds)}


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def time_loop(body: Callable[[], Any], seconds: float, min_runs: int = 3) -> list[float]:
    """Run `body` until `seconds` passed (at least `min_runs` times); each run's duration."""
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < min_runs:
        start = time.perf_counter()
        body()
        durations.append(time.perf_counter() - start)
    return durations


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = 0
    try:
        with open("/proc/meminfo") as info:
            memory = int(next(line.split()[1] for line in info
                              if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_bytes": memory,
            "python": sys.version.split()[0], "platform": platform.platform()}


def emit(result: dict[str, Any]) -> None:
    """A section's result: one JSON line on stdout, read by the orchestrator."""
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_in_process(command: list[str], cwd: Path, env: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """Run one section in its own process; its result is its last `BENCH-RESULT` line."""
    process = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    lines = [line for line in process.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if process.returncode != 0 or not lines:
        tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed (exit {process.returncode}): {tail}",
                "stderr": process.stderr[-4000:]}
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    return result


def stop(process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """SIGTERM (in-flight work finishes), then SIGKILL if it takes longer than `timeout`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
