"""`python -m bench`: run every section, each in a process of its own; print a table; save JSON.

Sections and where they run:
  raw            bench/raw_sqlite.py   the raw SQLite limit on this disk (product venv)
  throughput, resume, instantiate, sleepers
                 bench/ours.py         our engine (product venv); throughput-full: the same
                                       with synchronous=FULL, DBOS's durability setting
  dbos, dbos-wal bench/peer_dbos.py    DBOS Transact 3.4 on SQLite (its own venv)
  http           bench/http.py         the HTTP front door: `dwf serve`, trivial handler;
                                       http-2p: `dwf serve --processes 2`
  scale, rates   bench/scale.py        1 and 2 worker processes draining a backlog;
                                       create_batch and wake rates
  *-pg           the same on PostgreSQL: throughput-pg, dbos-pg, scale-pg, rates-pg, each
                 on a database of its own on one server: DWF_BENCH_POSTGRES (a URL of a
                 database the user may create databases from), else a throwaway cluster
                 started for the run with the server's default settings (fsync and
                 synchronous_commit on), from Debian's postgresql-15
  typescript     bench/typescript.py   the TypeScript guest beside the C guest: the same
                                       10-step workflow, instantiate + first call, size
  egress         bench/egress.py       outbound HTTP: a step's loopback GET vs plain aiohttp
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from host.store.postgres import throwaway

from . import http, postgres
from .common import machine, run_in_process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

FULL: dict[str, dict[str, Any]] = {
    "raw": {"seconds": 3.0, "producers": 100},
    "throughput": {"seconds": 8.0, "callers": 100},
    "throughput-full": {"seconds": 5.0, "callers": 100, "synchronous": "FULL"},
    "writer": {"seconds": 3.0, "producers": 100},
    "resume": {"counts": [10, 100, 1000], "repeats": 15},
    "instantiate": {"seconds": 1.0},
    "sleepers": {"count": 100_000},
    "dbos": {"seconds": 5.0, "callers": 100, "journal_mode": "delete"},
    "dbos-wal": {"seconds": 5.0, "callers": 100, "journal_mode": "wal"},
    "http": {"seconds": 5.0, "connections": 32},
    "http-2p": {"seconds": 5.0, "connections": 32, "processes": 2},
    "throughput-pg": {"seconds": 8.0, "callers": 100},
    "dbos-pg": {"seconds": 5.0, "callers": 100},
    "scale": {"instances": 3000, "concurrency": 100, "processes": [1, 2]},
    "scale-pg": {"instances": 3000, "concurrency": 100, "processes": [1, 2]},
    "rates": {"count": 20_000},
    "rates-pg": {"count": 20_000},
    "typescript": {"seconds": 5.0, "callers": 100},
    "egress": {"calls": 3000},
}
SMOKE: dict[str, dict[str, Any]] = {
    "raw": {"seconds": 0.2, "producers": 10},
    "throughput": {"seconds": 0.3, "callers": 10},
    "throughput-full": {"seconds": 0.2, "callers": 10, "synchronous": "FULL"},
    "writer": {"seconds": 0.2, "producers": 10},
    "resume": {"counts": [10, 100], "repeats": 2},
    "instantiate": {"seconds": 0.05},
    "sleepers": {"count": 300},
    "dbos": {"seconds": 0.3, "callers": 5, "journal_mode": "delete"},
    "dbos-wal": {"seconds": 0.3, "callers": 5, "journal_mode": "wal"},
    "http": {"seconds": 0.3, "connections": 4},
    "http-2p": {"seconds": 0.3, "connections": 4, "processes": 2},
    "throughput-pg": {"seconds": 0.3, "callers": 10},
    "dbos-pg": {"seconds": 0.3, "callers": 5},
    "scale": {"instances": 100, "concurrency": 10, "processes": [1, 2]},
    "scale-pg": {"instances": 100, "concurrency": 10, "processes": [1, 2]},
    "rates": {"count": 300},
    "rates-pg": {"count": 300},
    "typescript": {"seconds": 0.3, "callers": 10},
    "egress": {"calls": 50},
}


def _command(section: str, params: dict[str, Any], dbos_python: str) -> list[str]:
    payload = json.dumps(params)
    if section == "raw":
        return [sys.executable, "-m", "bench.raw_sqlite", payload]
    if section.startswith("dbos"):
        return [dbos_python, "-m", "bench.peer_dbos", payload]
    if section == "typescript":
        return [sys.executable, "-m", "bench.typescript", payload]
    if section == "egress":
        return [sys.executable, "-m", "bench.egress", payload]
    base = section.removesuffix("-pg").removesuffix("-full")
    if base in ("scale", "rates"):
        return [sys.executable, "-m", "bench.scale", base, payload]
    return [sys.executable, "-m", "bench.ours", base, payload]


def run_section(section: str, params: dict[str, Any], dbos_python: str | None) -> dict[str, Any]:
    """One section in a fresh process; {"error": ...} instead of numbers if it failed."""
    if section.startswith("http"):
        return http.run(params)
    if section.startswith("dbos") and not dbos_python:
        return {"error": "not measured: no DBOS environment (make bench creates .venv-dbos)"}
    assert dbos_python is not None or not section.startswith("dbos")
    started = time.perf_counter()
    result = run_in_process(_command(section, params, dbos_python or ""), ROOT,
                            {**os.environ, "PYTHONPATH": str(ROOT)})
    if "error" in result:
        return result
    result["wall_s"] = time.perf_counter() - started
    return result


def _get(results: dict[str, Any], *path: str) -> float:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return float(value) if isinstance(value, int | float) else math.nan


def _fmt(value: float, digits: int = 0, unit: str = "") -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each as measured (ratios within this run)."""
    ours_seq = _get(results, "throughput", "sequential", "steps_per_s")
    dbos_wal_seq = _get(results, "dbos-wal", "sequential", "steps_per_s")
    ours_conc = _get(results, "throughput", "concurrent", "steps_per_s")
    raw_group = _get(results, "raw", "group_commit", "rows_per_s")
    p50 = _get(results, "throughput", "sequential", "p50_ms")
    replay = _get(results, "resume", "us_per_cached_step")
    live = _get(results, "sleepers", "live_sandboxes_sleeping")
    ts_seq = _get(results, "typescript", "ts", "sequential", "steps_per_s")
    c_seq = _get(results, "typescript", "c", "sequential", "steps_per_s")
    ts_p50 = _get(results, "typescript", "ts", "sequential", "p50_ms")
    c_p50 = _get(results, "typescript", "c", "sequential", "p50_ms")
    found = [
        ("sequential steps/s >= 5x DBOS-WAL", ours_seq / dbos_wal_seq, 5.0, "x", True),
        ("100 concurrent >= 40% of raw group commit", ours_conc / raw_group * 100, 40.0, "%",
         True),
        ("(writer alone, no guest: >= 40% of raw group commit)",
         _get(results, "writer", "writes_per_s") / raw_group * 100, 40.0, "%", True),
        ("10-step workflow p50 <= 3 ms", p50, 3.0, " ms", False),
        ("replay <= 20 us per cached step", replay, 20.0, " us", False),
        ("sleeping instances hold no sandbox", live, 0.0, " live sandboxes", False),
        ("TypeScript guest steps/s >= 50% of C (sequential)", ts_seq / c_seq * 100, 50.0, "%",
         True),
        ("TypeScript guest 10-step p50 <= 2x C", ts_p50 / c_p50, 2.0, "x", False),
        ("TypeScript instantiate + first call <= 0.5 ms (Wizer snapshot)",
         _get(results, "typescript", "ts", "instantiate_first_call_ms"), 0.5, " ms", False),
        ("outbound call p50 within 1 ms of a plain aiohttp client",
         _get(results, "egress", "overhead_p50_ms"), 1.0, " ms", False),
    ]
    found += [
        ("PostgreSQL: sequential steps/s >= 5x DBOS-PostgreSQL",
         _get(results, "throughput-pg", "sequential", "steps_per_s")
         / _get(results, "dbos-pg", "sequential", "steps_per_s"), 5.0, "x", True),
        ("SQLite: 2 processes >= 1.7x one, 100 concurrent",
         _get(results, "scale", "two_over_one"), 1.7, "x", True),
        ("PostgreSQL: 2 processes >= 1.7x one, 100 concurrent",
         _get(results, "scale-pg", "two_over_one"), 1.7, "x", True),
        ("SQLite: waking >= 5,000 instances/s", _get(results, "rates", "wake_per_s"),
         5000.0, "/s", True),
        ("SQLite: create_batch >= 5,000 instances/s",
         _get(results, "rates", "create_batch_per_s"), 5000.0, "/s", True),
        ("front door, serve --processes 2, 32 connections: >= 3,000 req/s",
         _get(results, "http-2p", "requests_per_s"), 3000.0, " req/s", True),
        ("front door, serve --processes 2, 32 connections: p50 <= 10 ms",
         _get(results, "http-2p", "p50_ms"), 10.0, " ms", False),
    ]
    out = []
    for name, value, limit, unit, at_least in found:
        met = None if math.isnan(value) else (value >= limit if at_least else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "unit": unit, "met": met})
    return out


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    rows: list[tuple[str, str, str, str, str]] = []  # metric, ours, dbos, dbos-wal, raw

    def err(section: str) -> str:
        error = r.get(section, {}).get("error")
        return str(error) if error else ""

    rows.append(("durable steps/s, 1 sequential caller (10-step workflow)",
                 _fmt(_get(r, "throughput", "sequential", "steps_per_s")),
                 _fmt(_get(r, "dbos", "sequential", "steps_per_s")),
                 _fmt(_get(r, "dbos-wal", "sequential", "steps_per_s")),
                 _fmt(_get(r, "raw", "one_at_a_time", "commits_per_s")) + " commits/s"))
    rows.append(("durable steps/s, 100 concurrent instances",
                 _fmt(_get(r, "throughput", "concurrent", "steps_per_s")),
                 _fmt(_get(r, "dbos", "concurrent", "steps_per_s")),
                 _fmt(_get(r, "dbos-wal", "concurrent", "steps_per_s")),
                 _fmt(_get(r, "raw", "group_commit", "rows_per_s")) + " rows/s"))
    rows.append(("durable steps/s, 1 sequential caller, ours with synchronous=FULL",
                 _fmt(_get(r, "throughput-full", "sequential", "steps_per_s")), "", "", ""))
    rows.append(("durable steps/s, 100 concurrent, ours with synchronous=FULL",
                 _fmt(_get(r, "throughput-full", "concurrent", "steps_per_s")), "", "", ""))
    for label, key in (("10-step workflow p50 / p99, sequential", "sequential"),
                       ("10-step workflow p50 / p99, 100 concurrent", "concurrent")):
        cells = []
        for section in ("throughput", "dbos", "dbos-wal"):
            cells.append(f"{_fmt(_get(r, section, key, 'p50_ms'), 2)} / "
                         f"{_fmt(_get(r, section, key, 'p99_ms'), 2)} ms")
        rows.append((label, cells[0], cells[1], cells[2], ""))
    rows.append(("group-commit writer alone: journal writes/s, 100 producers, no guest",
                 f"{_fmt(_get(r, 'writer', 'writes_per_s'))} "
                 f"({_fmt(_get(r, 'writer', 'writes_per_commit'), 1)} per commit)", "", "",
                 _fmt(_get(r, "raw", "group_commit", "rows_per_s")) + " rows/s"))
    rows.append(("raw SQLite one at a time, synchronous NORMAL / FULL", "", "", "",
                 f"{_fmt(_get(r, 'raw', 'one_at_a_time', 'commits_per_s'))} / "
                 f"{_fmt(_get(r, 'raw', 'one_at_a_time_full', 'commits_per_s'))} commits/s"))
    rows.append(("raw SQLite group commit, 100 producers (asyncio / threads)", "", "", "",
                 f"{_fmt(_get(r, 'raw', 'group_commit', 'rows_per_s'))} / "
                 f"{_fmt(_get(r, 'raw', 'group_commit_threads', 'rows_per_s'))} rows/s"))
    resume = r.get("resume", {})
    for count in resume:
        if count.isdigit():
            rows.append((f"resume: wake -> {count} cached steps replayed -> next step -> done",
                         f"{_fmt(_get(resume, count, 'wake_to_complete_ms'), 2)} ms", "", "",
                         ""))
    rows.append(("replay cost per cached step (resume slope / replay alone)",
                 f"{_fmt(_get(r, 'resume', 'us_per_cached_step'), 1)} / "
                 f"{_fmt(_replay_only(resume), 1)} us", "", "", ""))
    inst = r.get("instantiate", {})
    rows.append(("module get + instantiate + no-step run: memory / disk / cold compile",
                 " / ".join(_fmt(_get(inst, k, "get_and_run_noop_ms"), 2)
                            for k in ("memory", "disk", "cold_compile")) + " ms", "", "", ""))
    sleepers = r.get("sleepers", {})
    count = _get(sleepers, "count")
    rows.append((f"{_fmt(count)} sleeping instances: worker RSS, empty db / with them",
                 f"{_fmt(_get(sleepers, 'rss_worker_empty_db_bytes') / 2**20, 1)} / "
                 f"{_fmt(_get(sleepers, 'rss_worker_sleeping_db_bytes') / 2**20, 1)} MiB "
                 f"({_fmt(_get(sleepers, 'live_sandboxes_sleeping'))} live sandboxes)",
                 "", "", ""))
    rows.append((f"{_fmt(count)} sleeping instances: put to sleep (create + first run)",
                 f"{_fmt(_get(sleepers, 'all_asleep_s'), 1)} s", "", "", ""))
    rows.append((f"{_fmt(count)} sleeping instances: wake + complete all",
                 f"{_fmt(_get(sleepers, 'wake_all_s'), 1)} s "
                 f"({_fmt(_get(sleepers, 'woken_per_s'))}/s)", "", "", ""))
    rows.append(("HTTP front door requests/s, trivial tenant handler (p50 / p99)",
                 str(r.get("http", {}).get("error") or
                     f"{_fmt(_get(r, 'http', 'requests_per_s'))} "
                     f"({_fmt(_get(r, 'http', 'p50_ms'), 2)} / "
                     f"{_fmt(_get(r, 'http', 'p99_ms'), 2)} ms, "
                     f"{_fmt(_get(r, 'http', 'connections'))} connections)"), "", "", ""))
    rows += _typescript_rows(r.get("typescript", {}))
    rows.append(("outbound HTTP: a step's loopback GET, calls/s (p50 / p99 per call)",
                 f"{_fmt(_get(r, 'egress', 'ours', 'calls_per_s'))} "
                 f"({_fmt(_get(r, 'egress', 'ours', 'p50_ms'), 2)} / "
                 f"{_fmt(_get(r, 'egress', 'ours', 'p99_ms'), 2)} ms)", "", "",
                 f"plain aiohttp: {_fmt(_get(r, 'egress', 'raw', 'calls_per_s'))} "
                 f"({_fmt(_get(r, 'egress', 'raw', 'p50_ms'), 2)} / "
                 f"{_fmt(_get(r, 'egress', 'raw', 'p99_ms'), 2)} ms)"))
    header = ("metric", "ours", "DBOS 3.4 (SQLite)", "DBOS 3.4 (SQLite WAL)", "raw SQLite")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *scale_table(r)]
    failed = [f"- {name}: {err(name)}" for name in r if err(name)]
    lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {_fmt(t['value'], 1)}{t['unit']} | {met} |")
    if failed:
        lines += ["", "sections that did not run:"] + failed
    return "\n".join(lines)


def scale_table(r: dict[str, Any]) -> list[str]:
    """PostgreSQL beside SQLite, and what more processes add."""
    def pair(section: str, key: str, digits: int = 0, unit: str = "") -> tuple[str, str]:
        return (_fmt(_get(r, section, *key.split(".")), digits, unit),
                _fmt(_get(r, f"{section}-pg", *key.split(".")), digits, unit))

    rows: list[tuple[str, str, str, str]] = []  # metric, SQLite, PostgreSQL, DBOS (PG)
    seq, conc = pair("throughput", "sequential.steps_per_s"), pair(
        "throughput", "concurrent.steps_per_s")
    rows.append(("durable steps/s, 1 sequential caller (10-step workflow), 1 process",
                 *seq, _fmt(_get(r, "dbos-pg", "sequential", "steps_per_s"))))
    rows.append(("durable steps/s, 100 concurrent instances, 1 process", *conc,
                 _fmt(_get(r, "dbos-pg", "concurrent", "steps_per_s"))))
    for label, key in (("p50 / p99, sequential", "sequential"),
                       ("p50 / p99, 100 concurrent", "concurrent")):
        cells = [f"{_fmt(_get(r, section, key, 'p50_ms'), 2)} / "
                 f"{_fmt(_get(r, section, key, 'p99_ms'), 2)} ms"
                 for section in ("throughput", "throughput-pg", "dbos-pg")]
        rows.append((f"10-step workflow {label}", cells[0], cells[1], cells[2]))
    for processes in ("1", "2"):
        rows.append((f"backlog drained by {processes} worker process"
                     f"{'es' if processes != '1' else ''} (100 running): steps/s",
                     *pair("scale", f"{processes}.steps_per_s"), ""))
    rows.append(("2 processes / 1 process", *pair("scale", "two_over_one", 2, "x"), ""))
    rows.append(("create_batch: instances/s (batches of 1,000)",
                 *pair("rates", "create_batch_per_s"), ""))
    rows.append(("sleepers: first run up to the sleep, instances/s",
                 *pair("rates", "first_run_per_s"), ""))
    rows.append(("sleepers: wake + complete, instances/s (1 process)",
                 *pair("rates", "wake_per_s"), ""))
    for processes in ("1", "2"):
        rows.append((f"sleepers: wake + complete, instances/s, `dwf worker --processes "
                     f"{processes}`", *pair("rates", f"wake_{processes}p.wake_per_s"), ""))
    rows.append(("HTTP front door, dwf serve --processes 2: req/s (p50 / p99), SQLite",
                 str(r.get("http-2p", {}).get("error") or
                     f"{_fmt(_get(r, 'http-2p', 'requests_per_s'))} "
                     f"({_fmt(_get(r, 'http-2p', 'p50_ms'), 2)} / "
                     f"{_fmt(_get(r, 'http-2p', 'p99_ms'), 2)} ms, "
                     f"{_fmt(_get(r, 'http-2p', 'connections'))} connections)"), "", ""))
    header = ("scale-out", "ours, SQLite", "ours, PostgreSQL", "DBOS 3.4 (PostgreSQL)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _typescript_rows(ts: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The TypeScript guest beside the C guest (C / TypeScript in the `ours` column)."""
    def pair(*path: str, digits: int = 0, unit: str = "") -> str:
        return (f"{_fmt(_get(ts, 'c', *path), digits)} / "
                f"{_fmt(_get(ts, 'ts', *path), digits)}{unit}")
    return [
        ("C / TypeScript guest: durable steps/s, 1 sequential caller",
         pair("sequential", "steps_per_s"), "", "", ""),
        ("C / TypeScript guest: durable steps/s, concurrent callers",
         pair("concurrent", "steps_per_s"), "", "", ""),
        ("C / TypeScript guest: 10-step workflow p50, sequential",
         pair("sequential", "p50_ms", digits=2, unit=" ms"), "", "", ""),
        ("C / TypeScript guest: instantiate + first call (TypeScript without snapshot)",
         pair("instantiate_first_call_ms", digits=2, unit=" ms")
         + f" ({_fmt(_get(ts, 'ts_no_snapshot', 'instantiate_first_call_ms'), 2)} ms)",
         "", "", ""),
        ("C / TypeScript guest: module size",
         f"{_fmt(_get(ts, 'c', 'module_bytes') / 1024, 0)} KiB / "
         f"{_fmt(_get(ts, 'ts', 'module_bytes') / 2**20, 2)} MiB", "", "", ""),
    ]


def _replay_only(resume: dict[str, Any]) -> float:
    per_step = [v["replay_only_us_per_step"] for k, v in resume.items() if k.isdigit()]
    return min(per_step) if per_step else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): seconds")
    parser.add_argument("--only", help="comma-separated sections: " + ", ".join(FULL))
    parser.add_argument("--sleepers", type=int, help="sleeping instances (default 100,000)")
    parser.add_argument("--seconds", type=float, help="measuring time of each timed loop")
    parser.add_argument("--dbos-python", default=str(ROOT / ".venv-dbos" / "bin" / "python"),
                        help="python of the DBOS environment")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a section failed (the smoke run uses it)")
    args = parser.parse_args()

    plan = {name: dict(params) for name, params in (SMOKE if args.smoke else FULL).items()}
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        unknown = wanted - set(plan)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
        plan = {name: params for name, params in plan.items() if name in wanted}
    if args.sleepers is not None and "sleepers" in plan:
        plan["sleepers"]["count"] = args.sleepers
    if args.seconds is not None:
        for params in plan.values():
            if "seconds" in params:
                params["seconds"] = args.seconds
    dbos_python = args.dbos_python if Path(args.dbos_python).exists() else None

    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if any(name.endswith("-pg") for name in plan):
            try:
                url = stack.enter_context(postgres.server())
            except throwaway.NoPostgres as exc:
                url = None
                for name in [n for n in plan if n.endswith("-pg")]:
                    results[name] = {"error": f"not measured: {exc}"}
                    del plan[name]
        for name, params in plan.items():
            if name.endswith("-pg"):
                key = "postgres_url" if name.startswith("dbos") else "db"
                params[key] = postgres.fresh_database(url or "", f"bench_{name[:-3]}")
            print(f"bench: {name} {json.dumps(params)}", file=sys.stderr, flush=True)
            results[name] = run_section(name, params, dbos_python)
            if "error" in results[name]:
                print(f"bench: {name}: {results[name]['error']}", file=sys.stderr)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "smoke": args.smoke, "plan": plan, "results": results}
    report["targets"] = targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"\n{report['date']} | {m['cpus']} cpus, {m['cpu_model']}, "
          f"{m['memory_bytes'] / 2**30:.0f} GiB, Python {m['python']}"
          f"{' | SMOKE sizes: not a measurement' if args.smoke else ''}\n")
    print(table(report))
    print(f"\nresults: {args.out}")
    failed = [name for name, res in results.items() if "error" in res]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
