"""The README's example workflow compiles with the SDK and behaves as the README says (its
TypeScript twin: test_sdk_ts.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from helpers import settle, start

from host import DurableEngine, ManualClock, Status, TenantId


def _compile_readme_example(tmp_path: Path) -> bytes:
    source = re.search(r"```c\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert source is not None
    (tmp_path / "readme.c").write_text(source.group(1))
    # Built with the command the C SDK's README gives tenants, word for word.
    command = re.search(r"<!-- build-command -->\n```sh\n(.*?)```",
                        (ROOT / "guest_sdk" / "c" / "README.md").read_text(), re.S)
    assert command is not None
    words = [word for word in command.group(1).split() if word != "\\"]
    assert ["python", "-m", "ziglang", "cc"] == words[:4] and "-O2" in words
    words = [str(tmp_path / "readme.wasm") if w == "my_tenant.wasm"
             else str(tmp_path / "readme.c") if w == "my_tenant/*.c" else w for w in words[1:]]
    sdk = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "guest_sdk" / "c").glob("*.c"))
    words = [part for w in words for part in (sdk if w == "guest_sdk/c/*.c" else [w])]
    subprocess.run([sys.executable, *words, "-Wall", "-Wextra", "-Werror"], cwd=ROOT,
                   check=True)
    return (tmp_path / "readme.wasm").read_bytes()


async def test_readme_example_runs_as_described(tmp_path: Path, engine: DurableEngine,
                                                clock: ManualClock) -> None:
    tenant = TenantId("readme")
    await engine.registry.register(tenant, _compile_readme_example(tmp_path))
    await billing_runs_as_described(engine, tenant, clock)


async def billing_runs_as_described(engine: DurableEngine, tenant: TenantId,
                                    clock: ManualClock) -> None:
    """The README's billing workflow (in C, and in TypeScript: test_sdk_ts.py)."""
    instance = await start(engine, tenant, "billing", {"amount_cents": 4200})
    for delay in (1000, 2000):  # two failed attempts, exponential backoff
        await settle(engine, tenant, instance)
        clock.advance(delay)
    status = await settle(engine, tenant, instance)
    assert (Status.WAITING, clock.now_ms() + 24 * 3600 * 1000) == (status.status,
                                                                   status.wake_at_ms)
    clock.advance(24 * 3600 * 1000)
    await settle(engine, tenant, instance)
    await engine.instances.send_event(tenant, instance, "approval", {"ok": True})
    status = await settle(engine, tenant, instance)
    assert (Status.COMPLETE, 4200) == (status.status, status.output)
