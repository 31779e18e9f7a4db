"""A module's imports and exports read from its bytes agree with wasmtime's compiled view.

Registration refuses a module that breaks the ABI from its bytes alone, before compiling
it; that is only sound if the byte reader sees what the compiler sees, or admits it cannot
tell (None), never something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from helpers import slow_to_compile_function, wat_guest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.sandbox.module_interface import interface_of, interface_problems, read_interface

ENGINE = wasmtime.Engine()


def _built(root: Path) -> list[Path]:
    return sorted((root / "tenants").glob("*.wasm")) + sorted((root / "guests").glob("*.wasm"))


def _modules(built: Path) -> list[bytes]:
    extra = [
        wat_guest(["log", "step_do"], "i32.const 0"),
        wat_guest([], "i32.const 0", extra=slow_to_compile_function(10, 20)),
        wasmtime.wat2wasm("""(module (import "env" "t" (table 1 funcref))
          (import "env" "g" (global (mut i64))) (import "env" "m" (memory 1 2))
          (import "dwf" "log" (func (param f32))) (global $x i32 (i32.const 0))
          (export "g" (global $x)) (func $f (param f64) (result v128) v128.const i64x2 0 0)
          (export "dwf_run" (func $f)) (table $t 1 externref) (export "memory" (table $t)))"""),
    ]
    return [path.read_bytes() for path in _built(built)] + extra


def test_the_bytes_and_the_compiled_module_agree_on_every_built_module(built: Path) -> None:
    for wasm in _modules(built):
        from_bytes = read_interface(wasm)
        assert from_bytes is not None
        assert interface_of(wasmtime.Module(ENGINE, wasm)) == from_bytes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_module_reads_as_wasmtime_reads_it_or_not_at_all(built: Path,
                                                                   data: st.DataObject) -> None:
    """Truncated or mutated bytes: the reader either agrees with a compile of the same
    bytes or declines; it never invents an interface wasmtime would not see."""
    wasm = bytearray(data.draw(st.sampled_from(_modules(built))))
    for _ in range(data.draw(st.integers(0, 4))):
        wasm[data.draw(st.integers(8, len(wasm) - 1))] = data.draw(st.integers(0, 255))
    wasm = wasm[:data.draw(st.integers(8, len(wasm)))]
    from_bytes = read_interface(bytes(wasm))
    try:
        compiled = interface_of(wasmtime.Module(ENGINE, bytes(wasm)))
    except wasmtime.WasmtimeError:
        return  # invalid: registration refuses it either way (by the reader's verdict or
        # by the compiler's), which the next assertion does not need to compare
    if from_bytes is not None:
        assert interface_problems(compiled) == interface_problems(from_bytes)


@pytest.mark.parametrize("wasm", [b"", b"\0asm", b"\0asm\x02\0\0\0", b"\0asm\x01\0\0\0\x01"])
def test_bytes_it_cannot_read_are_left_to_the_compiler(wasm: bytes) -> None:
    assert read_interface(wasm) is None
