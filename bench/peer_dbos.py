"""The peer: DBOS Transact on SQLite or PostgreSQL, running the same 10-step workflow.

Runs in its own virtualenv (`make bench` creates .venv-dbos from bench/requirements-dbos.txt)
so DBOS and its dependencies never reach the product's environment:

    .venv-dbos/bin/python -m bench.peer_dbos '{"seconds": 5, "journal_mode": "wal"}'

Configuration (DBOS docs, "Configuring DBOS"): `system_database_url` "sqlite:///PATH" selects
the SQLite backend. DBOS itself leaves SQLite in its default rollback-journal mode
("delete"); for "wal" the benchmark switches the file to WAL before DBOS opens it (the mode
is persistent in the file). DBOS keeps SQLite's default synchronous level (FULL). The
admin server is off; nothing else is changed. With "postgres_url", DBOS runs on that
PostgreSQL database instead (`system_database_url` "postgresql://..."), the same server
and settings our PostgreSQL sections use.

Workflow: `count` steps, each returning {"i": i}, summed, like bench/guests/benchkit.c.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .common import emit, latency_summary


def main(params: dict[str, Any]) -> dict[str, Any]:
    seconds = float(params.get("seconds", 5.0))
    callers = int(params.get("callers", 100))
    steps = int(params.get("steps", 10))
    journal_mode = str(params.get("journal_mode", "delete"))

    # Imported here: only the DBOS venv has it (mypy in the product venv cannot see it).
    import dbos  # type: ignore[import-not-found,unused-ignore]
    from dbos import DBOS, DBOSConfig  # type: ignore[import-not-found,unused-ignore]

    logging.getLogger("dbos").setLevel(logging.WARNING)

    @DBOS.step()  # type: ignore[untyped-decorator,unused-ignore]
    def step(i: int) -> dict[str, int]:
        return {"i": i}

    @DBOS.workflow()  # type: ignore[untyped-decorator,unused-ignore]
    def steps_workflow(count: int) -> dict[str, int]:
        total = 0
        for i in range(count):
            total += step(i)["i"]
        return {"sum": total}

    postgres_url = params.get("postgres_url")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dbos.sqlite3"
        if journal_mode != "delete" and not postgres_url:
            with sqlite3.connect(path) as conn:
                conn.execute(f"PRAGMA journal_mode = {journal_mode}")
        config: DBOSConfig = {"name": "dwf-bench",
                              "system_database_url": postgres_url or f"sqlite:///{path}",
                              "run_admin_server": False, "log_level": "WARNING"}
        DBOS(config=config)
        DBOS.launch()
        try:
            if postgres_url:
                actual_mode = "postgresql (synchronous_commit on)"
            else:
                with sqlite3.connect(path) as conn:
                    actual_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]

            def run_callers(count: int) -> dict[str, Any]:
                latencies: list[float] = []
                lock = threading.Lock()
                state = {"measuring": False, "stop": False}

                def caller() -> None:
                    while not state["stop"]:
                        start = time.perf_counter()
                        result = steps_workflow(steps)
                        duration = time.perf_counter() - start
                        assert result == {"sum": sum(range(steps))}, result
                        if state["measuring"]:
                            with lock:
                                latencies.append(duration)

                threads = [threading.Thread(target=caller) for _ in range(count)]
                for thread in threads:
                    thread.start()
                time.sleep(min(1.0, seconds / 3))
                state["measuring"] = True
                start = time.perf_counter()
                time.sleep(seconds)
                state["measuring"] = False
                elapsed = time.perf_counter() - start
                done = len(latencies)
                state["stop"] = True
                for thread in threads:
                    thread.join()
                return {"callers": count, "workflows": done, "seconds": elapsed,
                        "steps_per_s": done * steps / elapsed, "workflows_per_s": done / elapsed,
                        **latency_summary(latencies)}

            sequential = run_callers(1)
            concurrent = run_callers(callers)
        finally:
            DBOS.destroy()
    return {"version": getattr(dbos, "__version__", _version()), "journal_mode": actual_mode,
            "synchronous": "server default" if postgres_url else "FULL (SQLite default)",
            "steps_per_workflow": steps,
            "sequential": sequential, "concurrent": concurrent}


def _version() -> str:
    from importlib.metadata import version
    return version("dbos")


if __name__ == "__main__":
    emit(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
