"""Registration compiles in a bounded lane: child processes with CPU and memory caps.

A tenant's upload never compiles on the threads that run workflows, a module that does not
speak the ABI is refused from its bytes before any compile, a compile past its CPU cap is
stopped and refused, and each tenant checks one upload at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import wasmtime
from helpers import run_workflow, slow_to_compile_function, wat_guest

from host import DurableEngine, InvalidModule, PoolConfig, Status, TenantId
from host.core.errors import UploadInProgress
from host.sandbox.compile_lane import CompileLimits


def _slow_guest() -> bytes:
    return wat_guest([], "i32.const 0", extra=slow_to_compile_function())


@pytest.fixture
async def one_thread_engine(tmp_path: Path) -> DurableEngine:
    engine = await DurableEngine.open(tmp_path / "dwf.sqlite3",
                                      pool_config=PoolConfig(threads=1))
    try:
        yield engine
    finally:
        await engine.close()


async def test_a_compile_does_not_hold_up_other_tenants_workflows(
        one_thread_engine: DurableEngine, testkit_wasm: bytes) -> None:
    """One guest thread: compiling there would stop every workflow until it is done."""
    engine = one_thread_engine
    await engine.registry.register(TenantId("kit"), testkit_wasm)
    upload = asyncio.create_task(engine.registry.register(TenantId("slow"), _slow_guest()))
    await asyncio.sleep(0.3)  # well into its compile (seconds of CPU)
    status = await run_workflow(engine, TenantId("kit"), "steps", {"count": 3})
    assert (Status.COMPLETE, False) == (status.status, upload.done())
    assert ("raw",) == (await upload).workflows


async def test_a_compile_past_its_cpu_cap_is_stopped_and_refused(tmp_path: Path) -> None:
    engine = await DurableEngine.open(tmp_path / "dwf.sqlite3", pool_config=PoolConfig(
        compile_limits=CompileLimits(cpu_seconds=1)))
    try:
        with pytest.raises(InvalidModule, match="took more than 1 s of CPU"):
            await engine.registry.register(TenantId("slow"), _slow_guest())
        assert [] == await engine.registry.tenants()
    finally:
        await engine.close()


async def test_a_module_that_breaks_the_abi_is_refused_before_compiling(
        tmp_path: Path) -> None:
    """Its code would take seconds to compile; the cap is one: no compile ever started."""
    engine = await DurableEngine.open(tmp_path / "dwf.sqlite3", pool_config=PoolConfig(
        compile_limits=CompileLimits(cpu_seconds=1)))
    wasm = wasmtime.wat2wasm(f"""(module (import "wasi_snapshot_preview1" "fd_write"
        (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1)
        {slow_to_compile_function()} (export "dwf_run" (func $slow)))""")
    try:
        with pytest.raises(InvalidModule) as refused:
            await engine.registry.register(TenantId("bad"), wasm)
        assert "imports wasi_snapshot_preview1.fd_write" in str(refused.value)
        assert "does not export `dwf_alloc`" in str(refused.value)
        assert 0 == engine.pool.stats.compiles
    finally:
        await engine.close()


async def test_a_tenant_checks_one_upload_at_a_time(engine: DurableEngine,
                                                    testkit_wasm: bytes) -> None:
    tenant = TenantId("kit")
    first = asyncio.create_task(engine.registry.register(tenant, _slow_guest()))
    await asyncio.sleep(0.2)
    with pytest.raises(UploadInProgress, match="already has a module being checked"):
        await engine.registry.register(tenant, testkit_wasm)
    await engine.registry.register(TenantId("other"), testkit_wasm)  # others are not held
    await first
    assert ("raw",) == (await engine.registry.register(tenant, _slow_guest())).workflows


async def test_describe_runs_on_a_small_cpu_budget(engine: DurableEngine) -> None:
    wasm = wasmtime.wat2wasm("""(module (import "dwf" "set_output" (func (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "dwf_abi_version") (result i32) i32.const 1)
      (func (export "dwf_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "dwf_free") (param i32 i32))
      (func (export "dwf_describe") (result i32) (loop $forever (br $forever)) i32.const 0)
      (func (export "dwf_run") (param i32 i32) (result i32) i32.const 0))""")
    with pytest.raises(InvalidModule, match="cpu limit exceeded: the invocation used its "
                                            "500000000 units of fuel"):
        await engine.registry.register(TenantId("spinner"), wasm)


def test_an_embedding_script_without_a_main_guard_registers_modules(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    """The lane is a plain subprocess: nothing re-imports the embedding program."""
    import subprocess
    import sys

    (tmp_path / "kit.wasm").write_bytes(testkit_wasm)
    script = tmp_path / "embed.py"
    script.write_text(
        "import asyncio\n"
        "from pathlib import Path\n"
        "from host import DurableEngine, TenantId\n"
        "async def main():\n"
        "    engine = await DurableEngine.open(Path(__file__).parent / 'db.sqlite3')\n"
        "    info = await engine.registry.register(TenantId('kit'), "
        "(Path(__file__).parent / 'kit.wasm').read_bytes())\n"
        "    print('registered', info.version)\n"
        "    await engine.close()\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert (0, "registered 1") == (done.returncode, done.stdout.splitlines()[-1]), done.stderr
