"""Shared fixtures: guest modules built from source by make, engines on real databases.

Every test that asks for `engine` or `db` runs on each storage backend: a fresh SQLite
file, and a fresh schema on a real PostgreSQL server (`DWF_TEST_POSTGRES`, else a
throwaway cluster started for the session). A test marked `sqlite_only` (it reads the
SQLite file or the SQLite writer's internals) runs on SQLite alone and says why
(`postgres_only` likewise). No PostgreSQL is a failure saying how to get one, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_schemas import create_schema, drop_schema, with_search_path

from host import DurableEngine, ManualClock, TenantId

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY_FILE = "DWF_SECRET_KEY_FILE"
BUILD = ROOT / "build"
BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    # Processes the tests start cache compiled modules here, not in the user's home.
    os.environ.setdefault("DWF_ARTIFACTS", tempfile.mkdtemp(prefix="dwf-test-artifacts-"))
    config.addinivalue_line(
        "markers", "sqlite_only(why): the test is about SQLite itself (its file, its SQL, "
        "its writer); it runs on SQLite alone")
    config.addinivalue_line(
        "markers", "postgres_only(why): the test is about PostgreSQL itself (its writer, "
        "leases, many workers); it runs on PostgreSQL alone")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = list(BACKENDS)
        if metafunc.definition.get_closest_marker("sqlite_only") is not None:
            backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgres_only") is not None:
            backends = ["postgres"]
        metafunc.parametrize("backend", backends, indirect=True, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The TypeScript SDK's runs of the tests parametrized by SDK are about the SDK: they
    run on SQLite; the C SDK's runs of the same tests check PostgreSQL under them (this
    keeps `make test` within its time on 2 cores)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        sdk = params.get("sdk")
        if sdk == "ts" and params.get("backend") == "postgres":
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def built() -> Path:
    """Build every tenant and test guest once per session (make is incremental)."""
    subprocess.run(["make", "-s", "tenants", "guests", f"PYTHON={sys.executable}"], cwd=ROOT,
                   check=True)
    return BUILD


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server the tests may create schemas on."""
    given = os.environ.get("DWF_TEST_POSTGRES")
    if given:
        yield given
        return
    with throwaway_cluster() as url:
        yield url


@contextlib.contextmanager
def throwaway_cluster(**options: Any) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (fsync off) started with `options` for the span of
    the block: its URL. No server binaries here is a failure saying how to get them."""
    from host.store.postgres import throwaway
    try:
        cluster = throwaway.start(fast=True, **options)
    except throwaway.NoPostgres as exc:
        pytest.fail(f"the PostgreSQL tests need a server: {exc}", pytrace=False)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend this test runs on (parametrized: every backend)."""
    return str(request.param)


def fresh_database(backend: str, directory: Path, request: pytest.FixtureRequest) -> str | Path:
    """Where a new, empty database of `backend` is: a file in `directory`, or a schema of
    its own on the test server (dropped when the test or module is done)."""
    if backend == "sqlite":
        return directory / "dwf.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    schema = create_schema(url)
    request.addfinalizer(lambda: drop_schema(url, schema))
    # Tenant secrets are sealed with a key no file beside the database holds: one key for
    # every process of the test, as for every host of a deployment.
    before = os.environ.get(SECRET_KEY_FILE)
    os.environ[SECRET_KEY_FILE] = str(directory / "secret-key")
    request.addfinalizer(lambda: _restore(SECRET_KEY_FILE, before))
    return with_search_path(url, schema)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def secret_key_file(db: str | Path) -> Path:
    """Where the key sealing a database's tenant secrets is, in these tests."""
    if isinstance(db, Path):
        return db.with_name(db.name + ".secret-key")
    return Path(os.environ[SECRET_KEY_FILE])


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | Path:
    """A fresh database on this test's backend: pass it as --db / DWF_DB or to open()."""
    return fresh_database(backend, tmp_path, request)


@pytest.fixture(scope="session")
def testkit_wasm(built: Path) -> bytes:
    return (built / "guests" / "testkit.wasm").read_bytes()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(db: str | Path, tmp_path: Path, clock: ManualClock
                 ) -> AsyncIterator[DurableEngine]:
    # One artifact cache for the session, as a host has: artifacts are named by their
    # module's sha256 and checked, so tests share them safely, and compile each module once.
    engine = await DurableEngine.open(db, clock=clock,
                                      artifacts=Path(os.environ["DWF_ARTIFACTS"]),
                                      secret_key_file=secret_key_file(db))
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
