"""The README's code-lifecycle example (on-demand loading, check, replay, upgrade, drain,
prune, schedules), run as written in bash against a fresh database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- lifecycle-example -->\n```sh\n(.*?)```", readme, re.S)
    assert found is not None, "the README lost its code-lifecycle example"
    return found.group(1)


def test_readme_lifecycle_example_works(tmp_path: Path, built: Path) -> None:
    env = {**os.environ, "DWF_DB": str(tmp_path / "dwf.sqlite3"), "DWF_LOG_LEVEL": "warning",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The block stops its worker at the end; if it fails before, this stops it.
    prelude = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    done = subprocess.run(["bash", "-c", prelude + _example()], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert 0 == done.returncode, (done.stdout, done.stderr)
    out = done.stdout
    expected = [
        "status    complete",                                      # initech, loaded on demand
        "2 of 2 unfinished instances would replay on",              # v2
        "1 of 2 unfinished instances would replay on",              # v3...
        "v3 would break order-2",
        "matches the journal at position 3: the instance waits here for an event",
        "DIVERGES at position 2: journal position 2 was do 'charge' when recorded, is do "
        "'charge-card' now",
        "and where it diverges",
        "moved 1 of 2 to version 2",
        "moved  version 1 -> 2",
        "pruned 1 version of shop: 3",
        "schedule weekdays starts order at '0 9 * * 1-5' (Europe/Berlin)",
        "weekdays: paused",
        "deleted schedule weekdays",
    ]
    missing = [line for line in expected if line not in out]
    assert [] == missing, out
    # dwf tenant versions: each version still runs one instance (UNFINISHED 1, FINISHED 0)
    rows = [line.split() for line in out[out.index("VERSION  ACTIVE"):].splitlines()[1:3]]
    assert [("1", ["1", "0"]), ("2", ["1", "0"])] == [(row[0], row[-3:-1]) for row in rows]
    assert "*" == rows[1][1]  # version 2 is active
