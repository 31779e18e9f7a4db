"""The isolate pool: memory and disk caches, corrupt artifacts, eviction."""

from __future__ import annotations

from pathlib import Path

from host import IsolatePool, PoolConfig, TenantId
from host.sandbox.pool import module_sha


async def _never() -> bytes:
    raise AssertionError("the pool should not need the wasm bytes")


async def test_compiled_module_survives_a_restart_on_disk(tmp_path: Path,
                                                          testkit_wasm: bytes) -> None:
    sha = module_sha(testkit_wasm)
    first = IsolatePool(tmp_path)
    first.compile(testkit_wasm)
    first.close()

    second = IsolatePool(tmp_path)
    try:
        stub = await second.get(TenantId("t"), sha, _never)
        assert (stub.sha256, second.stats.disk_hits, second.stats.compiles) == (sha, 1, 0)
        await second.get(TenantId("t"), sha, _never)
        assert second.stats.memory_hits == 1
    finally:
        second.close()


async def test_corrupt_artifact_is_discarded_and_recompiled(tmp_path: Path,
                                                            testkit_wasm: bytes) -> None:
    sha = module_sha(testkit_wasm)
    first = IsolatePool(tmp_path)
    first.compile(testkit_wasm)
    first.close()
    artifact = tmp_path / f"{sha}.cwasm"
    blob = bytearray(artifact.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    artifact.write_bytes(bytes(blob))

    async def load() -> bytes:
        return testkit_wasm

    second = IsolatePool(tmp_path)
    try:
        await second.get(TenantId("t"), sha, load)
        assert (second.stats.corrupt_artifacts, second.stats.compiles) == (1, 1)
        assert artifact.exists()  # rewritten, good again
    finally:
        second.close()


async def test_least_recently_used_module_is_evicted(tmp_path: Path, built: Path) -> None:
    pool = IsolatePool(tmp_path, PoolConfig(max_modules=2))
    try:
        shas = [module_sha(pool_bytes) for pool_bytes in (
            (built / "tenants" / name).read_bytes() for name in
            ("acme.wasm", "globex.wasm", "initech.wasm"))]
        for name in ("acme.wasm", "globex.wasm", "initech.wasm"):
            pool.compile((built / "tenants" / name).read_bytes())
        assert pool.cached_modules() == shas[1:]
        assert pool.stats.evictions == 1
    finally:
        pool.close()


async def test_idle_modules_are_evicted(tmp_path: Path, testkit_wasm: bytes) -> None:
    pool = IsolatePool(tmp_path, PoolConfig(idle_seconds=0.0))
    try:
        pool.compile(testkit_wasm)
        pool.evict_idle()
        assert pool.cached_modules() == []
    finally:
        pool.close()


async def test_another_modules_artifact_under_this_name_is_refused_and_recompiled(
        tmp_path: Path, testkit_wasm: bytes, built: Path) -> None:
    """A valid artifact of other code must never run as this module."""
    other_wasm = (built / "tenants" / "acme.wasm").read_bytes()
    sha, other = module_sha(testkit_wasm), module_sha(other_wasm)
    first = IsolatePool(tmp_path)
    first.compile(other_wasm)
    first.close()
    (tmp_path / f"{other}.cwasm").rename(tmp_path / f"{sha}.cwasm")

    async def load() -> bytes:
        return testkit_wasm

    second = IsolatePool(tmp_path)
    try:
        stub = await second.get(TenantId("t"), sha, load)
        exports = {item.name for item in stub.module.exports}
        assert (1, 1) == (second.stats.corrupt_artifacts, second.stats.compiles)
        assert "dwf_fetch" not in exports  # testkit's code, not acme's (which has a handler)
        assert {item.name for item in (await second.get(TenantId("t"), sha, load))
                .module.exports} == exports
    finally:
        second.close()


async def test_a_directory_where_the_artifact_goes_is_compiled_around(
        tmp_path: Path, testkit_wasm: bytes) -> None:
    sha = module_sha(testkit_wasm)
    (tmp_path / f"{sha}.cwasm").mkdir()

    async def load() -> bytes:
        return testkit_wasm

    pool = IsolatePool(tmp_path)
    try:
        stub = await pool.get(TenantId("t"), sha, load)
        assert (sha, 1) == (stub.sha256, pool.stats.compiles)
    finally:
        pool.close()
