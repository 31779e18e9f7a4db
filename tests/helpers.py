"""Small helpers shared by engine tests."""

from __future__ import annotations

import re
from typing import Any

from host import DurableEngine, InstanceStatus, TenantId
from host.store.postgres import PostgresStorage
from host.store.sqlite import SqliteStorage


async def start(engine: DurableEngine, tenant: TenantId, workflow: str, params: Any = None,
                id: str | None = None) -> str:
    return await engine.instances.create(tenant, workflow, params, id)


async def settle(engine: DurableEngine, tenant: TenantId, instance: str) -> InstanceStatus:
    """Run everything due at the current (manual) time, then report the instance."""
    await engine.run_until_idle()
    return await engine.instances.status(tenant, instance)


async def run_workflow(engine: DurableEngine, tenant: TenantId, workflow: str,
                       params: Any = None) -> InstanceStatus:
    return await settle(engine, tenant, await start(engine, tenant, workflow, params))


async def sql(engine: DurableEngine, statement: str, *params: Any) -> list[Any]:
    """One statement on the engine's database, whichever backend (`?` placeholders): the
    rows it returns. For tests that reach under the engine on purpose."""
    store = engine.store
    if isinstance(store, PostgresStorage):
        numbers = iter(range(1, 100))
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", statement)
        rows = list(await store.db.pool.fetch(numbered, *params))
        store.db.moved()  # as a control action would: claims read again
        return rows
    assert isinstance(store, SqliteStorage)
    if statement.lstrip().upper().startswith("SELECT"):
        return list(await store.db.fetchall(statement, params))
    async with store.db.transaction() as conn:
        await conn.execute(statement, params)
    return []


async def refuse_journal_position(engine: DurableEngine, position: int) -> None:
    """A real database error (a trigger) on every write of journal `position`."""
    if isinstance(engine.store, PostgresStorage):
        await engine.store.db.pool.execute(f"""
            CREATE FUNCTION refuse_{position}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.position = {position} THEN RAISE EXCEPTION 'the disk says no'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_{position} BEFORE INSERT ON steps
                FOR EACH ROW EXECUTE FUNCTION refuse_{position}();""")
        return
    await sql(engine, f"CREATE TRIGGER refuse_position_{position} BEFORE INSERT ON steps "
                      f"WHEN NEW.position = {position} "
                      "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END")


async def change_workflow_under(engine: DurableEngine, instance: str, workflow: str) -> None:
    """Simulate code that changed under a sleeping instance: it wakes as `workflow`."""
    await sql(engine, "UPDATE instances SET workflow = ? WHERE instance_id = ?", workflow,
              instance)


def step_names(status: InstanceStatus) -> list[tuple[str, str, str]]:
    return [(s["kind"], s["name"], s["state"]) for s in status.steps]


def guest_wasm(name: str) -> bytes:
    """A test guest built by `make guests` (the `built` fixture runs it)."""
    from conftest import BUILD
    return (BUILD / "guests" / f"{name}.wasm").read_bytes()


async def register_guest(engine: DurableEngine, tenant: str, name: str,
                         **limits: int) -> TenantId:
    tenant_id = TenantId(tenant)
    await engine.registry.register(tenant_id, guest_wasm(name))
    if limits:
        await engine.registry.set_limits(tenant_id, limits)
    return tenant_id


def wat_guest(imports: list[str], run_body: str, data: dict[int, bytes] | None = None,
              workflow: str = "raw", extra: str = "", manifest: bytes | None = None,
              alloc_hook: str = "") -> bytes:
    """A minimal ABI-shaped module written in WAT, for guests the C SDK would never be.

    `imports` are dwf import names (callable as `$name`), `run_body` is dwf_run's body,
    `data` places bytes at fixed offsets below 512 or at 1024 and above; `extra` adds
    module fields (a table, say); `manifest` replaces what dwf_describe reports (msgpack,
    at 512: data must then stay below 512); `alloc_hook` runs first in dwf_alloc.
    """
    import msgpack  # type: ignore[import-untyped]
    import wasmtime

    from host.sandbox import abi

    def escaped(raw: bytes) -> str:
        return "".join(f"\\{byte:02x}" for byte in raw)

    def declaration(name: str) -> str:
        signature = abi.IMPORTS[name]
        params = " ".join(kind.value for kind in signature.params)
        results = " ".join(kind.value for kind in signature.results)
        return (f'(import "dwf" "{name}" (func ${name} (param {params})'
                + (f" (result {results})" if results else "") + "))")

    if manifest is None:
        manifest = msgpack.packb({"abi": 1, "sdk": "wat", "workflows": [workflow]})
    segments = {512: manifest, **(data or {})}
    return wasmtime.wat2wasm(f"""(module
      {" ".join(declaration(name) for name in sorted({*imports, "set_output"}))}
      (memory (export "memory") 2)
      {extra}
      {" ".join(f'(data (i32.const {at}) "{escaped(raw)}")' for at, raw in segments.items())}
      (global $heap (mut i32) (i32.const 8192))
      (func (export "dwf_abi_version") (result i32) i32.const 1)
      (func (export "dwf_alloc") (param $n i32) (result i32)
        (local $p i32) {alloc_hook} global.get $heap local.set $p
        global.get $heap local.get $n i32.add i32.const 7 i32.add i32.const -8 i32.and
        global.set $heap local.get $p)
      (func (export "dwf_free") (param i32 i32))
      (func (export "dwf_describe") (result i32)
        (call $set_output (i32.const 512) (i32.const {len(manifest)})) i32.const 0)
      (func (export "dwf_run") (param i32 i32) (result i32) {run_body}))""")


def slow_to_compile_function(locals_count: int = 2000, operations: int = 20000) -> str:
    """A WAT function that takes Cranelift seconds of CPU to compile (about 1.8 s here with
    the defaults, a 200 KB module): thousands of locals kept live across many small
    branches make register allocation superlinear. Compiling it is the costly part of a
    hostile upload."""
    body = []
    for n in range(operations):
        a, b, c = n % locals_count, (n * 7 + 3) % locals_count, (n * 13 + 5) % locals_count
        body.append(f"(local.set {c} (i32.add (local.get {a}) (local.get {b})))")
        if n % 50 == 0:
            body.append(f"(if (local.get {a}) (then (local.set {a} "
                        f"(i32.add (local.get {c}) (i32.const 1)))))")
    total = " ".join(f"(local.get {n}) i32.add" for n in range(locals_count))
    return (f"(func $slow (result i32) (local {' i32' * locals_count}) {' '.join(body)} "
            f"i32.const 0 {total})")


async def orders_in_flight(engine: DurableEngine, tenant: TenantId,
                           sleep_ms: int = 60_000) -> tuple[str, str, str]:
    """Release 1 of the "order" workflow (tests/guests/order.h) with three instances:
    "sleeping" at its "cool-off" sleep (journal: reserve, cool-off), "waiting" for its
    approval (reserve, cool-off, charge, approval) and "done" (complete)."""
    await engine.registry.register(tenant, guest_wasm("order_v1"))
    ids = []
    for instance, amount, ms in (("sleeping", 100, sleep_ms), ("waiting", 200, 0),
                                 ("done", 300, 0)):
        ids.append(await start(engine, tenant, "order", {"amount": amount, "ms": ms}, instance))
    await engine.run_until_idle()
    await engine.instances.send_event(tenant, "done", "approval", True)
    assert "complete" == (await settle(engine, tenant, "done")).status.value
    return ids[0], ids[1], ids[2]


def dwf_runner(env: dict[str, str]) -> Any:
    """`dwf ARGS...` as a real process with `env`, asserting its exit code (`expect`)."""
    import subprocess
    import sys

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "host.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert expect == done.returncode, (done.stdout, done.stderr)
        return done
    return run
