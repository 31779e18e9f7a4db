"""The README's HTTP example, run as written against a real `dwf serve`.

The block runs in bash with the README's exact commands and bodies. Two things differ, so
that tests can run side by side: the test starts `dwf serve` itself on a free port (the
block's `dwf serve --port 8080 &` line is skipped) and `localhost:8080` becomes that port.
`curl` is wrapped with `--fail-with-body`, so any non-2xx answer fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from serving import Server, wait_until

SERVE_LINE = "dwf serve --port 8080 &"


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- http-example -->\n```sh\n(.*?)```", readme, re.S)
    assert found is not None, "the README lost its HTTP example"
    return found.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_readme_http_example_works(db: str | Path, built: Path) -> None:
    example = _example()
    assert SERVE_LINE in example
    with Server(db) as server:
        script = example.replace(SERVE_LINE, ":  # the test runs dwf serve").replace(
            "localhost:8080", f"127.0.0.1:{server.port}")
        prelude = ('set -euo pipefail\n'
                   'curl() { command curl --fail-with-body "$@"; echo; }\n')
        env = {**os.environ, "DWF_DB": str(db), "DWF_LOG_LEVEL": "warning",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert 0 == done.returncode, (done.stdout, done.stderr)
        outputs = [line for line in done.stdout.splitlines() if line.strip()]
        assert '{"id": "signup-ada", "status_url": "/status/signup-ada"}' in outputs
        assert '"openapi": "3.1.0"' in outputs[-1]

        token = _admin_token(db)
        with server.client(token) as api:
            ada = wait_until(lambda: (s := api.get(
                "/v1/tenants/acme/instances/signup-ada").json())["status"] == "complete" and s,
                timeout=30, what="signup-ada to finish")
            bo = api.get("/v1/tenants/acme/instances/onboard-bo").json()
    assert "activated" == ada["output"]["outcome"]
    assert bo["status"] in ("paused", "waitingForPause")  # with the approval event buffered


def _admin_token(db: str | Path) -> str:
    """A token for checking the outcome (the example's own one stayed in its shell)."""
    env = {**os.environ, "DWF_DB": str(db)}
    return subprocess.run([sys.executable, "-m", "host.cli", "token", "create", "--admin"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
