"""Every route of /openapi.json fuzzed against its own schema (schemathesis), for real.

Schemathesis generates requests from the document (valid ones and, per parameter and body,
ones that break it) and sends them to a real `dwf serve` with an admin token. Each answer
must be what the document promises: never a 5xx, a documented status with a body that
matches its schema, schema-breaking requests refused with a 4xx, valid ones not refused
with a 400. A quick run by default; `DWF_SCHEMA_EXAMPLES=500 pytest -m schema_fuzz` for a
long one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from serving import World

from host.http import openapi

EXAMPLES = int(os.environ.get("DWF_SCHEMA_EXAMPLES", "25"))


@schemathesis.serializer("application/wasm")
def _wasm(ctx: Any, value: Any) -> bytes:
    """Module uploads are raw bytes (the generated ones are never a dwf module: 422)."""
    return value if isinstance(value, bytes) else str(value).encode()


# The document the server serves (tests/test_http_api.py checks they are the same).
schema = schemathesis.openapi.from_dict(openapi.document())

# What the document cannot say, and so a check cannot know:
_EXCLUDED: dict[str, list[Any]] = {
    # Every upload the schema allows is bytes; only a real dwf module is accepted (422).
    "registerModule": [checks.positive_data_acceptance],
    # A rule is a string to the schema; its syntax (SCHEME://HOST[:PORT]) and "private
    # only on an allow rule for an exact IP" are checked by the server (400 saying why).
    "putEgress": [checks.positive_data_acceptance],
    # A candidate module is bytes to the schema; only a real dwf module replays (422).
    "checkModule": [checks.positive_data_acceptance],
    "replayInstance": [checks.positive_data_acceptance],
    # A cron expression and a time zone are strings to the schema; their syntax (five
    # cron fields, an IANA zone name) is checked by the server (400 saying why).
    "createSchedule": [checks.positive_data_acceptance],
    # A cursor is a string to the schema; only one the host gave out (a page's
    # `next_cursor`) is taken, anything else is a 400 saying so.
    "listInstances": [checks.positive_data_acceptance],
    # `batch` is also a valid instance id, so GET /instances/batch reads that instance and
    # a 405 there rightly lists GET among the allowed methods.
    "createInstances": [checks.allow_header_conformance],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("schema") / "dwf.sqlite3", built)
    with world.server:
        yield world


@pytest.mark.schema_fuzz
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_within_its_schema(case: schemathesis.Case, world: World) -> None:
    case.call_and_validate(base_url=world.server.url,
                           headers={"Authorization": f"Bearer {world.tokens['admin']}"},
                           excluded_checks=_EXCLUDED.get(case.operation.definition.raw
                                                         .get("operationId", ""), []))
