"""The HTTP front door benchmark: requests/s for a trivial tenant handler.

The front door (`dwf serve`) is being built on another branch and is not merged yet, so
this section measures nothing and says so; it never reports a number it did not measure.
Once it lands: start `dwf serve` on 127.0.0.1 with a registered tenant whose handler
returns a constant, drive it from a bounded number of local connections for a bounded
time, and return {"requests_per_s", "p50_ms", "p99_ms"} here.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def run(params: dict[str, Any]) -> dict[str, Any]:
    if importlib.util.find_spec("host.http") is None:
        return {"error": "not measured: front door not merged yet"}
    return {"error": "not measured: front door found, but its benchmark is not written yet"}
