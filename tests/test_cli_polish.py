"""The `dwf` command line as a new user meets it: quiet one-shot commands, a fast start,
`dwf wait`, `dwf list` a page at a time, versions activated by a sha256 prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dwf_runner

from host import ModuleSha, TenantId
from host.core.errors import InvalidInput, NotFound
from host.durable.registry import ModuleRegistry
from host.store import ModuleInfo


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "DWF_LOG_LEVEL"}
    return {**clean, "DWF_DB": str(tmp_path / "polish.sqlite3")}


@pytest.fixture
def dwf(env: dict[str, str]):
    return dwf_runner(env)


@pytest.fixture
def kit(dwf, built: Path) -> str:
    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    return "kit"


def test_one_shot_commands_keep_stderr_for_problems(dwf, built: Path, env: dict[str, str]
                                                    ) -> None:
    commands = [("tenant", "register", "kit", str(built / "guests" / "testkit.wasm")),
                ("run", "kit", "steps", "--params", '{"count": 2}', "--id", "s-1", "--wait"),
                ("run", "kit", "waiter", "--params", '{"type": "go"}', "--id", "w-1"),
                ("status", "kit", "s-1"), ("history", "kit", "s-1"), ("list",),
                ("send-event", "kit", "w-1", "go"), ("pause", "kit", "w-1"),
                ("resume", "kit", "w-1"), ("tenant", "list"), ("tenant", "versions", "kit")]
    for command in commands:
        assert "" == dwf(*command).stderr, command
    # A long-running command tells its story.
    worker = subprocess.Popen([sys.executable, "-m", "host.cli", "worker"], env=env,
                              stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    started = worker.stderr.readline()
    worker.send_signal(signal.SIGTERM)
    assert 0 == worker.wait(timeout=30)
    assert "worker.started" in started and "info" in started


def test_help_and_status_load_neither_the_sandbox_nor_http(kit: str, dwf,
                                                           env: dict[str, str]) -> None:
    """What makes them start fast (README: about 0.1 s of CPU each): they import no
    wasmtime, aiohttp, cryptography or engine, which cost about 0.2 s of CPU together."""
    dwf("run", kit, "echo", "--id", "e-1")
    probe = ("import json, runpy, sys\n"
             "sys.argv = ['dwf', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('host.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "heavy = ('wasmtime', 'aiohttp', 'cryptography', 'host.durable.engine',\n"
             "         'host.sandbox', 'host.egress')\n"
             "print(json.dumps(sorted({m for m in sys.modules if m.startswith(heavy)})))\n")
    for args in (["--help"], ["status", kit, "e-1"], ["list", "--limit", "1"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        assert [] == json.loads(done.stdout.splitlines()[-1]), args


def test_a_queued_instance_does_not_say_when_it_wakes(kit: str, dwf) -> None:
    dwf("run", kit, "echo", "--id", "q-1")  # no worker: it stays queued
    human = dwf("status", kit, "q-1").stdout
    assert "status    queued" in human and "wakes" not in human
    assert None is json.loads(dwf("status", kit, "q-1", "--json").stdout)["wake_at_ms"]


def test_wait_runs_an_existing_instance_to_its_end(kit: str, dwf) -> None:
    dwf("run", kit, "sleeper", "--params", '{"ms": 300}', "--id", "nap-1")
    done = json.loads(dwf("wait", kit, "nap-1", "--json").stdout)
    assert ("complete", "done") == (done["status"], done["output"])
    dwf("run", kit, "fail", "--id", "f-1")
    assert "errored" == json.loads(dwf("wait", kit, "f-1", "--json", expect=1).stdout)["status"]


def test_wait_gives_up_after_its_timeout_and_says_so(kit: str, dwf) -> None:
    dwf("run", kit, "waiter", "--params", '{"type": "never"}', "--id", "w-1")
    done = dwf("wait", kit, "w-1", "--timeout", "0.5", expect=1)
    assert "status    waiting" in done.stdout
    assert "error: w-1 is still waiting after 0.5 s" in done.stderr
    assert "has no instance 'ghost'" in dwf("wait", kit, "ghost", expect=1).stderr


def test_list_pages_newest_first_with_a_cursor(kit: str, dwf) -> None:
    for n in range(5):
        dwf("run", kit, "echo", "--id", f"e-{n}")
    pages, cursor = [], None
    while True:
        page = json.loads(dwf("list", "--tenant", kit, "--limit", "2", "--json",
                              *(["--cursor", cursor] if cursor else [])).stdout)
        assert all("steps" not in row for row in page["instances"])
        pages.append([row["id"] for row in page["instances"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [["e-4", "e-3"], ["e-2", "e-1"], ["e-0"]] == pages
    table = dwf("list", "--tenant", kit, "--limit", "2").stdout
    assert table.splitlines()[1].split()[1] == "e-4" and "more: add --cursor " in table
    bad = dwf("list", "--cursor", "nonsense", expect=1)
    assert "is not one this host gave out" in bad.stderr


def test_activate_takes_a_unique_prefix_of_the_sha256(kit: str, dwf, built: Path) -> None:
    first = json.loads(dwf("tenant", "versions", kit, "--json").stdout)[0]["sha256"]
    dwf("tenant", "register", kit, str(built / "guests" / "batchkit.wasm"))
    done = json.loads(dwf("tenant", "activate", kit, first[:8], "--json").stdout)
    assert (1, first) == (done["version"], done["sha256"])
    short = dwf("tenant", "activate", kit, first[:3], expect=1)
    assert "at least 4 characters of a sha256" in short.stderr


def _version(number: int, sha256: str) -> ModuleInfo:
    return ModuleInfo(TenantId("t"), ModuleSha(sha256), number, 1, ("w",), "c", 0, False)


def test_a_prefix_two_versions_share_is_refused_naming_both() -> None:
    versions = [_version(1, "abcd1111" + "0" * 56), _version(2, "abcd2222" + "0" * 56),
                _version(12, "1234" + "0" * 60)]
    assert 2 == ModuleRegistry.version_named(versions, TenantId("t"), "abcd2").version
    assert 12 == ModuleRegistry.version_named(versions, TenantId("t"), "12").version
    with pytest.raises(InvalidInput, match="is the start of 2 .* give more of the sha256"):
        ModuleRegistry.version_named(versions, TenantId("t"), "abcd")
    with pytest.raises(NotFound):
        ModuleRegistry.version_named(versions, TenantId("t"), "ffff")
