"""Property tests at the two doors a tenant controls: module bytes and ABI calls.

Whatever comes in, the answer is success or a clear error, and the host stays up.
In CI (CI=true) the examples are derandomized so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
from helpers import guest_wasm, wat_guest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host import DurableEngine, InvalidModule, Status, TenantId
from host.sandbox import abi

FUZZ = settings(max_examples=int(os.environ.get("DWF_FUZZ_EXAMPLES", "40")), deadline=None,
                derandomize=os.environ.get("CI") == "true",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FINAL_OR_PARKED = {Status.COMPLETE, Status.ERRORED, Status.WAITING}


def _with_engine(body: Callable[[DurableEngine], Awaitable[None]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as directory:
            engine = await DurableEngine.open(Path(directory) / "fuzz.sqlite3")
            try:
                await body(engine)
            finally:
                await engine.close()
    asyncio.run(main())


async def _register_and_run(engine: DurableEngine, wasm: bytes) -> None:
    tenant = TenantId("fuzz")
    try:
        info = await engine.registry.register(tenant, wasm)
    except InvalidModule as exc:
        assert str(exc)  # a reason, always
        return
    await engine.registry.set_limits(tenant, {"cpu_fuel": 20_000_000,
                                              "invocation_timeout_ms": 2000})
    instance = await engine.instances.create(tenant, info.workflows[0], {"fuzz": True})
    await engine.run_until_idle()
    status = await engine.instances.status(tenant, instance)
    assert status.status in FINAL_OR_PARKED


@st.composite
def mutated_module(draw: st.DrawFn) -> bytes:
    wasm = bytearray(guest_wasm("testkit"))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(wasm) - 1))
        wasm[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del wasm[draw(st.integers(8, len(wasm))):]
    return bytes(wasm)


@FUZZ
@given(wasm=st.one_of(st.binary(max_size=256), mutated_module(),
                      st.binary(max_size=64).map(lambda tail: b"\0asm\x01\0\0\0" + tail)))
def test_registration_accepts_or_explains_any_bytes(built: Path, wasm: bytes) -> None:
    _with_engine(lambda engine: _register_and_run(engine, wasm))


_I32 = st.one_of(st.integers(0, 64), st.integers(1024, 1024 + 300),
                 st.integers(-(2**31), 2**31 - 1))
_I64 = st.integers(-(2**63), 2**63 - 1)
_DATA = st.one_of(st.binary(max_size=200),
                  st.recursive(st.none() | st.booleans() | st.integers(-10, 10)
                               | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                               max_leaves=8).map(msgpack.packb))


def _abi_caller(import_name: str, args: list[int], data: bytes) -> bytes:
    """A module that calls one dwf import with the given raw arguments from dwf_run."""
    signature = abi.IMPORTS[import_name]
    call_args = " ".join(f"({kind.value}.const {value})"
                         for kind, value in zip(signature.params, args, strict=True))
    drop = "drop" if signature.results else ""
    return wat_guest([import_name], f"(call ${import_name} {call_args}) {drop} i32.const 0",
                     {1024: data}, workflow="fuzz")


@st.composite
def abi_call(draw: st.DrawFn) -> tuple[str, list[int], bytes]:
    name = draw(st.sampled_from(sorted(abi.IMPORTS)))
    args = [draw(_I32 if kind is abi.I32 else _I64) for kind in abi.IMPORTS[name].params]
    return name, args, draw(_DATA)


@FUZZ
@given(call=abi_call())
def test_any_abi_call_ends_in_a_status_not_a_crash(built: Path,
                                                   call: tuple[str, list[int], bytes]) -> None:
    wasm = _abi_caller(*call)
    _with_engine(lambda engine: _register_and_run(engine, wasm))


def test_the_fuzzer_reaches_real_outcomes(built: Path) -> None:
    """The ABI fuzz module is well-formed: a valid call really completes."""
    data = msgpack.packb("hello")
    wasm = _abi_caller("set_output", [1024, len(data)], data)
    outcome: dict[str, Any] = {}

    async def body(engine: DurableEngine) -> None:
        await engine.registry.register(TenantId("fuzz"), wasm)
        instance = await engine.instances.create(TenantId("fuzz"), "fuzz")
        await engine.run_until_idle()
        outcome["status"] = await engine.instances.status(TenantId("fuzz"), instance)
    _with_engine(body)
    assert (Status.COMPLETE, "hello") == (outcome["status"].status, outcome["status"].output)
