"""Shared fixtures: guest modules built from source by make, engines on real SQLite files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from host import DurableEngine, ManualClock, TenantId

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


@pytest.fixture(scope="session")
def built() -> Path:
    """Build every tenant and test guest once per session (make is incremental)."""
    subprocess.run(["make", "-s", "tenants", "guests", f"PYTHON={sys.executable}"], cwd=ROOT,
                   check=True)
    return BUILD


@pytest.fixture(scope="session")
def testkit_wasm(built: Path) -> bytes:
    return (built / "guests" / "testkit.wasm").read_bytes()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock) -> AsyncIterator[DurableEngine]:
    engine = await DurableEngine.open(tmp_path / "dwf.sqlite3", clock=clock)
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
async def kit(engine: DurableEngine, testkit_wasm: bytes) -> TenantId:
    """A tenant running the testkit module."""
    tenant = TenantId("kit")
    await engine.registry.register(tenant, testkit_wasm)
    return tenant
