"""The `dwf` command line, run as a real process against a real database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture
def dwf(tmp_path: Path):
    env = {**os.environ, "DWF_DB": str(tmp_path / "cli.sqlite3"), "DWF_LOG_LEVEL": "warning"}

    def run(*args: str, expect: int = 0,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120, input=stdin)
        assert expect == done.returncode, (done.stdout, done.stderr)
        return done
    return run


def test_register_run_wait_and_inspect(dwf, built: Path) -> None:
    registered = json.loads(dwf("tenant", "register", "kit",
                                str(built / "guests" / "testkit.wasm"), "--json").stdout)
    assert registered["version"] == 1 and "echo" in registered["workflows"]

    status = json.loads(dwf("run", "kit", "echo", "--params", '{"a": [1, 2]}', "--id", "e-1",
                            "--wait", "--json").stdout)
    assert ("complete", {"a": [1, 2]}) == (status["status"], status["output"])

    listed = json.loads(dwf("list", "--tenant", "kit", "--status", "complete", "--json").stdout)
    assert (["e-1"], None) == ([i["id"] for i in listed["instances"]], listed["next_cursor"])
    table = dwf("tenant", "list").stdout
    assert table.splitlines()[0].split()[:2] == ["TENANT", "VERSION"] and "kit" in table


def test_events_and_control_commands(dwf, built: Path) -> None:
    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    dwf("run", "kit", "waiter", "--params", '{"type": "go", "timeout_ms": 600000}',
        "--id", "w-1")
    dwf("send-event", "kit", "w-1", "go", "--payload", '"now"')
    assert json.loads(dwf("pause", "kit", "w-1", "--json").stdout)["status"] == "paused"
    assert json.loads(dwf("resume", "kit", "w-1", "--json").stdout)["status"] == "queued"
    status = json.loads(dwf("run", "kit", "echo", "--wait", "--json").stdout)
    assert status["status"] == "complete"  # the inline worker also ran w-1
    assert json.loads(dwf("status", "kit", "w-1", "--json").stdout)["output"] == "now"
    history = json.loads(dwf("history", "kit", "w-1", "--json").stdout)
    assert [("event", "wait", "ok")] == [(s["kind"], s["name"], s["state"]) for s in history]
    dwf("restart", "kit", "w-1")
    assert json.loads(dwf("terminate", "kit", "w-1", "--json").stdout)["status"] == "terminated"


@pytest.mark.parametrize(("args", "expect", "message"), [
    (("run", "kit", "echo", "--params", "{not json"), 1, "--params is not valid JSON"),
    (("run", "kit", "nope"), 1, "has no workflow 'nope'"),
    (("run", "ghost", "echo"), 1, "unknown tenant 'ghost'"),
    (("run", "bad tenant", "echo"), 2, "invalid tenant id"),
    (("run", "kit", "echo", "--id", "-x"), 1, "invalid instance id"),
    (("status", "kit", "missing"), 1, "has no instance 'missing'"),
    (("list", "--status", "sleeping"), 2, "'sleeping' is not one of"),
    (("tenant", "limits", "kit", "--set", "cpu_fuel=lots"), 2, "use NAME=INTEGER"),
    (("tenant", "limits", "kit", "--set", "cpu_seconds=1"), 1, "unknown limit 'cpu_seconds'"),
    (("pause", "kit", "missing"), 1, "has no instance 'missing'"),
    (("run", "kit", "echo", "--params", "[" * 200 + "]" * 200), 1,
     "params is nested more than 128 levels"),
    (("run", "kit", "echo", "--params", "[" * 60_000 + "]" * 60_000), 1,
     "--params is nested too deeply to read"),
    (("run", "kit", "echo", "--params", "7" * 4301), 1, "integers must fit 64 bits"),
    (("run", "kit", "echo", "--params", "18446744073709551616"), 1, "outside the 64-bit range"),
    (("run", "kit", "echo", "--params", '{"\\ud800": 1}'), 1, "not valid Unicode"),
    (("send-event", "kit", "missing", "caf\udcff"), 1,
     "event type holds text that is not valid Unicode"),
])
def test_bad_input_is_a_clear_error(dwf, built: Path, args: tuple[str, ...], expect: int,
                                    message: str) -> None:
    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    done = dwf(*args, expect=expect)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_register_a_non_wasm_file(dwf, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wasm"
    bogus.write_text("hello")
    done = dwf("tenant", "register", "kit", str(bogus), expect=1)
    assert "not a WebAssembly module" in done.stderr
    assert "unknown tenant" in dwf("tenant", "versions", "kit", expect=1).stderr


def test_errors_are_json_with_json_flag(dwf, built: Path) -> None:
    dwf("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    done = dwf("run", "kit", "echo", "--id", "x", "--json")
    again = dwf("run", "kit", "echo", "--id", "x", "--json", expect=1)
    assert json.loads(done.stdout)["id"] == "x"
    assert json.loads(again.stdout)["error"]["code"] == "conflict"


@pytest.mark.parametrize("first_path", ["cli.sqlite3", "alias.sqlite3"])
def test_only_one_worker_per_database(dwf, tmp_path: Path, first_path: str) -> None:
    """Also when the first worker reached the file through a symlink (alias.sqlite3)."""
    (tmp_path / "alias.sqlite3").symlink_to(tmp_path / "cli.sqlite3")
    env = {**os.environ, "DWF_DB": str(tmp_path / first_path)}
    first = subprocess.Popen([sys.executable, "-m", "host.cli", "worker"], env=env,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "cli.sqlite3.worker.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        done = dwf("worker", expect=1)  # the fixture's DWF_DB: the file's own path
        assert f"another dwf worker (pid {first.pid})" in done.stderr
    finally:
        first.terminate()
        assert first.wait(timeout=30) == 0


def test_egress_rules_are_shown_added_refused_and_cleared(dwf, built: Path) -> None:
    dwf("tenant", "register", "kit", str(built / "guests" / "egresskit.wasm"))
    assert "kit may not reach anything" in dwf("tenant", "egress", "kit").stdout
    rules = json.loads(dwf("tenant", "egress", "kit", "--allow", "https://*.example.com",
                           "--deny", "https://evil.example.com", "--json").stdout)
    assert [{"action": "allow", "rule": "https://*.example.com:443", "private": False},
            {"action": "deny", "rule": "https://evil.example.com:443", "private": False}
            ] == rules
    private = dwf("tenant", "egress", "kit", "--allow", "http://10.0.0.5:8080", "--private")
    assert ["allow", "http://10.0.0.5:8080", "yes"] == private.stdout.splitlines()[-1].split()
    bad = dwf("tenant", "egress", "kit", "--allow", "https://api.example.com", "--private",
              expect=1)
    assert bad.stderr.startswith("error: egress rule 'https://api.example.com': only an "
                                 "allow rule for an exact IP address may be private")
    assert 3 == len(json.loads(dwf("tenant", "egress", "kit", "--json").stdout))
    assert "may not reach anything" in dwf("tenant", "egress", "kit", "--clear").stdout
    unknown = dwf("tenant", "egress", "nobody", expect=1)
    assert "unknown tenant 'nobody'" in unknown.stderr


def test_secrets_are_set_from_stdin_listed_by_name_and_deleted(dwf, built: Path,
                                                               tmp_path: Path) -> None:
    dwf("tenant", "register", "kit", str(built / "guests" / "egresskit.wasm"))
    dwf("secret", "set", "kit", "API_KEY", stdin="s3cr3t-value\n")
    listed = dwf("secret", "list", "kit")
    assert "API_KEY" in listed.stdout and "s3cr3t-value" not in listed.stdout
    assert ["API_KEY"] == [s["name"] for s in json.loads(dwf("secret", "list", "kit",
                                                             "--json").stdout)]
    key_file = tmp_path / "cli.sqlite3.secret-key"
    assert 0o600 == key_file.stat().st_mode & 0o777
    for path in tmp_path.iterdir():
        if path.is_file():
            assert b"s3cr3t-value" not in path.read_bytes(), path
    bad = dwf("secret", "set", "kit", "bad name", stdin="x", expect=1)
    assert bad.stderr.startswith("error: invalid secret name 'bad name'")
    dwf("secret", "delete", "kit", "API_KEY")
    assert "kit has no secrets" in dwf("secret", "list", "kit").stdout
    gone = dwf("secret", "delete", "kit", "API_KEY", expect=1)
    assert "kit has no secret 'API_KEY'" in gone.stderr

