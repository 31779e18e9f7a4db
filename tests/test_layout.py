"""The host's packages import only downward, and its public API stays what users import.

core <- sandbox, store <- egress <- durable <- http <- cli: a package may import itself
and those before it, never one after it, and sandbox and store never each other. Database
drivers stay inside the store's backends, wasmtime inside the sandbox and aiohttp in the
HTTP server and the egress client, so the engine's code names none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

import host

HOST = ROOT / "host"
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "sandbox": {"core", "sandbox"},
    "store": {"core", "store"},
    "egress": {"core", "sandbox", "store", "egress"},
    "durable": {"core", "sandbox", "store", "egress", "durable"},
    "http": {"core", "sandbox", "store", "egress", "durable", "http"},
    "cli": {"core", "sandbox", "store", "egress", "durable", "http", "cli"},
}
# Third-party modules only one part of the host may use.
CONFINED = {"sqlite3": ("store/sqlite",), "aiosqlite": ("store/sqlite",),
            "wasmtime": ("sandbox",), "aiohttp": ("http", "egress")}


def _modules() -> list[tuple[Path, str]]:
    """Every module of the host with its dotted package (e.g. host.store.sqlite)."""
    found = []
    for path in sorted(HOST.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        package = parts if path.name == "__init__.py" else parts[:-1]
        found.append((path, ".".join(package).removesuffix(".__init__")))
    return found


def _imports(path: Path, package: str) -> set[str]:
    """The absolute names of every module `path` imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def _part(module: str) -> str | None:
    """The host package a module name belongs to (None: outside them, or top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "host" and parts[1] in ALLOWED else None


def test_every_package_imports_only_itself_and_the_packages_below_it() -> None:
    upward = []
    for path, package in _modules():
        own = _part(package)
        if own is None:
            continue  # host/__init__.py, logs.py, eventloop.py: process-wide, on top
        for imported in _imports(path, package):
            target = _part(imported)
            if imported.startswith("host") and target is None and imported != "host":
                upward.append(f"{path.relative_to(ROOT)} imports the top-level {imported}")
            elif target is not None and target not in ALLOWED[own]:
                upward.append(f"{path.relative_to(ROOT)} ({own}) imports {imported}")
    assert [] == upward


def test_database_drivers_wasmtime_and_aiohttp_stay_in_their_package() -> None:
    leaks = []
    for path, package in _modules():
        where = str(path.relative_to(HOST))
        for imported in _imports(path, package):
            homes = CONFINED.get(imported.split(".")[0])
            if homes is not None and not where.startswith(tuple(f"{h}/" for h in homes)):
                leaks.append(f"{where} imports {imported} (belongs in host/{homes[0]})")
    assert [] == leaks


def test_the_public_api_is_what_users_import() -> None:
    assert sorted([
        "Clock", "DuplicateInstance", "DurableEngine", "DwfError", "InstanceHandle",
        "InstanceId", "InstanceRequest", "InstanceStatus", "InvalidInput", "InvalidModule",
        "InvalidState", "IsolatePool", "ManualClock", "ModuleInfo", "ModuleRegistry",
        "ModuleSha", "ModuleStub", "NotFound", "PoolConfig", "Status", "SystemClock",
        "TenantBinding", "TenantId", "TenantLimits", "UnknownInstance", "UnknownTenant",
        "UnknownWorkflow", "Worker",
    ]) == sorted(host.__all__)
    assert all(hasattr(host, name) for name in host.__all__)
