"""Real `dwf worker` processes for the tests that kill, stop and count them, and the
ledger guest's log of side effects (every step body logs "ledger-run <i>")."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def start_worker(db: str | Path, log_path: Path, *args: str,
                 inside: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`dwf worker ARGS` on `db`, its JSON log lines in `log_path`; `inside` prefixes the
    command (`ip netns exec NAME`: a host of its own)."""
    env = {**os.environ, "DWF_LOG_LEVEL": "info"}
    return subprocess.Popen(
        [*inside, sys.executable, "-m", "host.cli", "--db", str(db), "worker", *args],
        stderr=log_path.open("wb"), stdout=subprocess.DEVNULL, env=env)


def wait_for_line(log_path: Path, text: str, timeout: float = 30.0) -> str:
    """The first line of the log holding `text` (waiting for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                if text in line:
                    return line
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {log_path}:\n{log_path.read_text()}")


def log_entries(log_path: Path, event: str) -> list[dict[str, object]]:
    entries = []
    for line in log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the line a SIGKILL cut in half
    return entries


def ledger_runs(logs: list[Path]) -> collections.Counter[tuple[str, str]]:
    """How many times each (instance, "ledger-run <i>") step body ran, in all the logs."""
    runs: collections.Counter[tuple[str, str]] = collections.Counter()
    for log_path in logs:
        for entry in log_entries(log_path, "guest.log"):
            runs[(str(entry["instance_id"]), str(entry["message"]))] += 1
    return runs
