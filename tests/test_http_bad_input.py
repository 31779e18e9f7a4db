"""Hostile input over HTTP gets a 4xx saying what is wrong, never a 500 with a traceback.

Every case here once answered `500 internal` (or worse, was stored and then made the
instance and its tenant's whole list answer 500 for good). One `dwf serve` process on a
loopback port serves the module (tests/serving.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack  # type: ignore[import-untyped]
import pytest
from helpers import wat_guest
from serving import World, wait_until

from host.core.codec import MAX_DEPTH


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("bad-input"), built)
    with world.server:
        yield world


def nested(depth: int, inner: Any = 1) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


def _error(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert response.headers["x-request-id"] == body["error"]["request_id"]
    return response.status_code, body["error"]["code"]


def _no_internal_errors(world: World) -> None:
    assert world.server.find("http.internal_error") is None, world.server.find(
        "http.internal_error")


# -- nesting (F1) ------------------------------------------------------------------------

def _deep_params(depth: int) -> bytes:
    return b'{"workflow": "echo", "params": ' + b"[" * depth + b"]" * depth + b"}"


_TOO_DEEP = f"params is nested more than {MAX_DEPTH} levels of arrays and maps deep"
_UNREADABLE = "the request body is nested too deeply to read"


@pytest.mark.parametrize(("depth", "messages"), [
    (MAX_DEPTH + 1, (_TOO_DEEP,)),
    (990, (_TOO_DEEP, _UNREADABLE)),  # refused by the check or by the parser's stack
    (100_000, (_UNREADABLE,)),
])
def test_deeply_nested_params_are_400(world: World, depth: int,
                                      messages: tuple[str, ...]) -> None:
    with world.client("alpha") as api:
        response = api.post("/v1/tenants/alpha/instances", content=_deep_params(depth))
        status, code = _error(response)
        message = response.json()["error"]["message"]
        assert 400 == status and code in ("invalid_json", "invalid_input")
        assert any(message.startswith(m) for m in messages), message
        assert 200 == api.get("/v1/tenants/alpha/instances").status_code
    _no_internal_errors(world)


def test_deeply_nested_event_payloads_are_400(world: World) -> None:
    with world.client("alpha") as api:
        api.post("/v1/tenants/alpha/instances", json={"workflow": "echo", "id": "ev-target"})
        response = api.post("/v1/tenants/alpha/instances/ev-target/events",
                            json={"type": "t", "payload": nested(700)})
    assert (400, "invalid_input") == _error(response)
    assert "event payload is nested more than" in response.json()["error"]["message"]


def test_an_anonymous_deep_body_through_a_fetch_handler_never_breaks_the_list(
        world: World) -> None:
    """fetchkit's /create stores the JSON body's params as a new instance: anyone can
    call it. A body too deep to store reaches the handler without `json`; one within
    the limit is stored and shown."""
    with world.client() as http:
        deep = http.post("/create", headers={"x-tenant-id": "alpha"},
                         json={"workflow": "echo", "params": nested(600), "id": "anon-deep"})
        fits = http.post("/create", headers={"x-tenant-id": "alpha"},
                         json={"workflow": "echo", "params": nested(MAX_DEPTH - 2),
                               "id": "anon-fits"})
    assert 422 == deep.status_code  # the handler saw no `json`: no workflow named
    assert 201 == fits.status_code
    with world.client("alpha") as api:
        assert 200 == api.get("/v1/tenants/alpha/instances").status_code
        done = wait_until(lambda: (s := api.get("/v1/tenants/alpha/instances/anon-fits")
                                   .json())["status"] == "complete" and s, what="anon-fits")
        assert nested(MAX_DEPTH - 2) == done["output"]
        assert 404 == api.get("/v1/tenants/alpha/instances/anon-deep").status_code
    _no_internal_errors(world)


# -- bytes and values a JSON parser or msgpack cannot carry (F5) -------------------------

@pytest.mark.parametrize(("body", "code", "message"), [
    (b'{"workflow": "echo", "params": 18446744073709551616}', "invalid_input",
     "params holds the integer 18446744073709551616, outside the 64-bit range"),
    (b'{"workflow": "echo", "params": [-9223372036854775809]}', "invalid_input",
     "outside the 64-bit range"),
    (b'{"workflow": "echo", "params": ' + b"7" * 4301 + b"}", "invalid_json",
     "integers must fit 64 bits"),
    (b'{"workflow": "echo", "params": "\\ud800"}', "invalid_input",
     "params holds text that is not valid Unicode (a lone surrogate \\ud800)"),
    (b'{"workflow": "echo", "params": {"\\udfff": 1}}', "invalid_input",
     "params holds text that is not valid Unicode"),
    (b'{"workflow": "echo", "params": NaN}', "invalid_json", "NaN is not JSON"),
    (b'{"workflow": "echo\\ud800"}', "not_found", "has no workflow"),
])
def test_values_msgpack_cannot_carry_are_400(world: World, body: bytes, code: str,
                                             message: str) -> None:
    with world.client("alpha") as api:
        response = api.post("/v1/tenants/alpha/instances", content=body)
    assert code == _error(response)[1]
    assert 400 <= response.status_code < 500
    assert message in response.json()["error"]["message"]
    _no_internal_errors(world)


@pytest.mark.parametrize(("event", "message"), [
    (b'{"type": "\\ud800"}', "event type holds text that is not valid Unicode"),
    (b'{"type": "t", "payload": {"\\ud800": 1}}', "event payload holds text that is not"),
    (b'{"type": "t", "payload": 99999999999999999999}', "outside the 64-bit range"),
])
def test_bad_event_types_and_payloads_are_400(world: World, event: bytes, message: str) -> None:
    with world.client("alpha") as api:
        api.post("/v1/tenants/alpha/instances", json={"workflow": "echo", "id": "ev-bad"})
        response = api.post("/v1/tenants/alpha/instances/ev-bad/events", content=event)
    assert (400, "invalid_input") == _error(response)
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize("token", [b"\xff\xfe", b"dwf_\xff_secret", b"dwf_id_\xff"])
def test_a_raw_0xff_byte_in_authorization_is_401(world: World, token: bytes) -> None:
    with world.client() as http:
        response = http.get("/v1/tenants", headers={"Authorization": b"Bearer " + token})
    assert (401, "unauthorized") == _error(response)
    _no_internal_errors(world)


def test_a_raw_0xff_byte_in_a_front_door_header_is_400(world: World) -> None:
    with world.client() as http:
        response = http.get("/echo", headers={"x-tenant-id": "alpha", "x-note": b"caf\xff"})
    assert (400, "invalid_header") == _error(response)
    assert "x-note" in response.json()["error"]["message"]
    _no_internal_errors(world)


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "1e3", "-1", "0x10", "99999999999999999"])
def test_a_list_limit_that_is_not_plain_digits_is_400(world: World, limit: str) -> None:
    with world.client("alpha") as api:
        response = api.get(f"/v1/tenants/alpha/instances?limit={limit}")
    assert (400, "invalid_input") == _error(response)
    assert "limit must be an integer from 1 to 1000" in response.json()["error"]["message"]


def _manifest(sdk: bytes) -> bytes:
    return (b"\x83" + msgpack.packb("abi") + msgpack.packb(1) + msgpack.packb("sdk") + sdk
            + msgpack.packb("workflows") + msgpack.packb(["raw"]))


@pytest.mark.parametrize(("sdk", "message"), [
    (b"\x91" * 1000 + b"\xa1x", f"manifest is nested more than {MAX_DEPTH} levels"),
    (b"\x91" * 100 + b"\xa1x", "manifest `sdk` must be a string of 1-64 characters"),
    (msgpack.packb("x" * 65), "manifest `sdk` must be a string of 1-64 characters"),
])
def test_a_manifest_sdk_that_is_not_a_short_string_is_422(world: World, sdk: bytes,
                                                          message: str) -> None:
    wasm = wat_guest([], "i32.const 0", manifest=_manifest(sdk))
    with world.client("alpha") as api:
        response = api.post("/v1/tenants/alpha/modules", content=bytes(wasm))
    assert (422, "invalid_module") == _error(response)
    assert message in response.json()["error"]["message"]
    _no_internal_errors(world)


# -- what the API renders ----------------------------------------------------------------

def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"the API sent {name}, which is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinite_outputs_render_as_strict_json(world: World) -> None:
    """A guest may output any msgpack float; JSON has no NaN, so the API shows it as
    {"$float": "NaN"} (as bytes show as {"$base64": ...})."""
    nan, inf = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xcb\xff\xf0" + bytes(6)
    output = b"\x93" + nan + inf + b"\xcb\x3f\xf8" + bytes(6)  # [NaN, -Infinity, 1.5]
    wasm = wat_guest(["step_do", "step_ok"], f"""
        (drop (call $step_do (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 0)
                             (i32.const 8)))
        (call $step_ok (i32.const 1024) (i32.const {len(nan)}))
        (call $set_output (i32.const 2048) (i32.const {len(output)})) i32.const 0""",
                     {16: b"s", 1024: nan, 2048: output})
    with world.client("admin") as api:
        assert 201 == api.post("/v1/tenants/floats/modules", content=bytes(wasm)).status_code
        api.post("/v1/tenants/floats/instances", json={"workflow": "raw", "id": "f"})
        done = wait_until(lambda: (s := _strict_json(api.get(
            "/v1/tenants/floats/instances/f").text))["status"] == "complete" and s,
            what="the instance to complete")
        listed = _strict_json(api.get("/v1/tenants/floats/instances").text)
    expected = [{"$float": "NaN"}, {"$float": "-Infinity"}, 1.5]
    assert expected == done["output"] == listed["instances"][0]["output"]
    assert {"$float": "NaN"} == done["steps"][0]["result"]
