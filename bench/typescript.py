"""The TypeScript SDK beside the C SDK, in one process on one engine:

    python -m bench.typescript '{"seconds": 5, "callers": 100}'

throughput   the same 10-step workflow (bench/guests/benchkit.c and
             bench/guests/js/benchkit.ts) created and awaited by one sequential caller,
             then by `callers` concurrent ones, C first, then TypeScript, against one
             worker in this process: steps/s and latency, as bench.ours measures them.
instantiate  module from the in-memory cache + instantiate + a no-step workflow, for the
             C module, the TypeScript module snapshotted by Wizer (the engine and the
             tenant's code already loaded) and the same module without the snapshot
             (QuickJS starts and evaluates the bundle on the first call).
size         the module files' sizes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from host import TenantId, eventloop, logs

from .common import emit
from .ours import BENCHKIT, ROOT, _callers, _open, _with_worker, instantiate_costs

BENCHKIT_TS = ROOT / "build" / "bench" / "js" / "benchkit.wasm"
BENCHKIT_TS_NO_SNAPSHOT = ROOT / "build" / "bench" / "js" / "benchkit_no_snapshot.wasm"
MODULES = {"c": BENCHKIT, "ts": BENCHKIT_TS}


async def typescript(params: dict[str, Any]) -> dict[str, Any]:
    seconds = float(params.get("seconds", 5.0))
    callers = int(params.get("callers", 100))
    steps = int(params.get("steps", 10))
    tenants = {sdk: TenantId(f"bench-{sdk}") for sdk in MODULES}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = await _open(Path(tmp), modules={tenants[sdk]: wasm
                                                 for sdk, wasm in MODULES.items()})
        try:
            async def body() -> None:
                for sdk, tenant in tenants.items():
                    results[sdk] = {
                        "sequential": await _callers(engine, 1, steps, seconds, tenant),
                        "concurrent": await _callers(engine, callers, steps, seconds, tenant)}
            await _with_worker(engine, callers, body)
        finally:
            await engine.close()
    for sdk, wasm in {**MODULES, "ts_no_snapshot": BENCHKIT_TS_NO_SNAPSHOT}.items():
        costs = await instantiate_costs(wasm.read_bytes(), min(seconds, 1.0), ("memory",))
        results.setdefault(sdk, {})["instantiate_first_call_ms"] = \
            costs["memory"]["get_and_run_noop_ms"]
        results[sdk]["module_bytes"] = wasm.stat().st_size
    results["steps_per_workflow"] = steps
    return results


def main() -> None:
    logs.configure("warning")
    params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    emit(eventloop.run(typescript(params)))


if __name__ == "__main__":
    main()
