"""`dwf schedule ...` as a real process, and the schedules under /v1 on a real `dwf serve`:
what they accept, show and refuse. (When ticks fire is tests/test_schedules.py.)"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import dwf_runner
from serving import Server, api_error, prepare

from host import TenantId


@pytest.fixture
def dwf(tmp_path: Path, built: Path):
    env = {**os.environ, "DWF_DB": str(tmp_path / "cli.sqlite3"), "DWF_LOG_LEVEL": "warning"}

    run = dwf_runner(env)
    run("tenant", "register", "kit", str(built / "guests" / "testkit.wasm"))
    return run


def test_schedule_commands(dwf) -> None:
    created = json.loads(dwf("schedule", "create", "kit", "echo", "--cron", "0 9 * * 1-5",
                             "--tz", "Europe/Berlin", "--params", '{"hello": "world"}',
                             "--catchup", "last", "--id", "morning", "--json").stdout)
    assert ("morning", "0 9 * * 1-5", "Europe/Berlin", "skip", "last", {"hello": "world"}) == (
        created["id"], created["cron"], created["timezone"], created["overlap"],
        created["catchup"], created["params"])
    human = dwf("schedule", "create", "kit", "echo", "--cron", "@hourly").stdout
    assert re.match(r"schedule echo-[0-9a-f]{8} starts echo at '0 \* \* \* \*' \(UTC\); "
                    r"first tick \d{4}-\d\d-\d\d \d\d:00:00.000 UTC", human), human

    listed = dwf("schedule", "list", "kit").stdout.splitlines()
    assert ["TENANT", "ID", "WORKFLOW"] == listed[0].split()[:3] and 3 == len(listed)
    assert json.loads(dwf("schedule", "pause", "kit", "morning", "--json").stdout)["paused"]
    resumed = json.loads(dwf("schedule", "resume", "kit", "morning", "--json").stdout)
    assert (False, True) == (resumed["paused"], resumed["next_tick_ms"] is not None)
    assert "deleted schedule morning" in dwf("schedule", "delete", "kit", "morning").stdout
    assert 1 == len(json.loads(dwf("schedule", "list", "--json").stdout))


@pytest.mark.parametrize(("args", "expect", "message"), [
    (("create", "kit", "echo", "--cron", "* * * *"), 1, "use five fields"),
    (("create", "kit", "echo", "--cron", "@daily", "--tz", "Nowhere/City"), 1,
     "unknown time zone 'Nowhere/City'"),
    (("create", "kit", "nope", "--cron", "@daily"), 1, "has no workflow 'nope'"),
    (("create", "nobody", "echo", "--cron", "@daily"), 1, "unknown tenant 'nobody'"),
    (("create", "kit", "echo", "--cron", "@daily", "--params", "{"), 1,
     "--params is not valid JSON"),
    (("create", "kit", "echo", "--cron", "@daily", "--overlap", "maybe"), 2,
     "'maybe' is not one of 'skip', 'allow'"),
    (("pause", "kit", "nope"), 1, "tenant 'kit' has no schedule 'nope'"),
    (("delete", "kit", "nope"), 1, "tenant 'kit' has no schedule 'nope'"),
])
def test_schedule_commands_explain_bad_input(dwf, args: tuple[str, ...], expect: int,
                                             message: str) -> None:
    assert message in dwf("schedule", *args, expect=expect).stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[tuple[Server, dict]]:
    db = tmp_path_factory.mktemp("schedules") / "dwf.sqlite3"

    async def setup(engine, tokens) -> dict[str, str]:
        testkit = (built / "guests" / "testkit.wasm").read_bytes()
        for name in ("kit", "other"):
            await engine.registry.register(TenantId(name), testkit)
        return {"kit": (await tokens.create(TenantId("kit"), "t"))[1],
                "other": (await tokens.create(TenantId("other"), "t"))[1],
                "admin": (await tokens.create(None, "t"))[1]}
    tokens = prepare(db, setup)
    with Server(db) as server:
        yield server, tokens


def test_schedules_over_http(served: tuple[Server, dict]) -> None:
    server, tokens = served
    url = "/v1/tenants/kit/schedules"
    with server.client(tokens["kit"]) as api:
        created = api.post(url, json={"workflow": "echo", "cron": "*/5 * * * *",
                                      "timezone": "Asia/Tokyo", "params": [1, 2], "id": "five",
                                      "overlap": "allow", "catchup": "all"})
        assert (201, f"{url}/five") == (created.status_code, created.headers["location"])
        assert ("five", [1, 2], "allow", "all") == tuple(
            created.json()[k] for k in ("id", "params", "overlap", "catchup"))
        assert ["five"] == [s["id"] for s in api.get(url).json()["schedules"]]
        assert api.post(f"{url}/five/pause").json()["paused"]
        assert not api.post(f"{url}/five/resume").json()["paused"]
        assert "Asia/Tokyo" == api.get(f"{url}/five").json()["timezone"]
        assert ["five"] == [s["id"] for s in api.get("/v1/schedules").json()["schedules"]]
        assert (409, "conflict") == api_error(api.post(url, json={"workflow": "echo",
                                                               "cron": "@daily", "id": "five"}))
    with server.client(tokens["other"]) as other:
        assert [] == other.get("/v1/schedules").json()["schedules"]
        for response in (other.get(url), other.get(f"{url}/five"),
                         other.post(f"{url}/five/pause"), other.delete(f"{url}/five")):
            assert (404, "not_found") == api_error(response)
    with server.client(tokens["admin"]) as admin:
        assert ["five"] == [s["id"] for s in admin.get("/v1/schedules").json()["schedules"]]
        assert {"id": "five", "deleted": True} == admin.delete(f"{url}/five").json()
        assert (404, "not_found") == api_error(admin.get(f"{url}/five"))


@pytest.mark.parametrize(("body", "expected", "message"), [
    ({"workflow": "echo"}, (400, "invalid_input"), "needs a `workflow` and a `cron`"),
    ({"workflow": "echo", "cron": "61 * * * *"}, (400, "invalid_input"), "bad minute"),
    ({"workflow": "echo", "cron": "@daily", "timezone": 5}, (400, "invalid_input"),
     "`timezone` must be a non-empty string"),
    ({"workflow": "echo", "cron": "@daily", "overlap": "never"}, (400, "invalid_input"),
     "`overlap` must be one of skip, allow"),
    ({"workflow": "echo", "cron": "@daily", "every": 5}, (400, "invalid_input"),
     "unknown fields: every"),
    ({"workflow": "nope", "cron": "@daily"}, (404, "not_found"), "has no workflow 'nope'"),
])
def test_bad_schedules_over_http(served: tuple[Server, dict], body: dict,
                                 expected: tuple[int, str], message: str) -> None:
    server, tokens = served
    with server.client(tokens["kit"]) as api:
        response = api.post("/v1/tenants/kit/schedules", json=body)
    assert expected == api_error(response)
    assert message in response.json()["error"]["message"]
