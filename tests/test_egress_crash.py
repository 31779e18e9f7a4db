"""A worker SIGKILLed between an outbound call and its checkpoint: the step runs again,
the remote API sees the call at most twice, both times with the same Idempotency-Key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import guest_wasm
from remote import Remote, remote_fixture  # noqa: F401 - the `remote` fixture

from host import DurableEngine, Status, TenantId


def _worker(db: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "host.cli", "--db", str(db), "worker"],
                            stderr=log.open("wb"), stdout=subprocess.DEVNULL,
                            env={**os.environ, "DWF_LOG_LEVEL": "info"})


async def test_a_kill_between_the_call_and_its_checkpoint_repeats_it_with_the_same_key(
        tmp_path: Path, built: Path, remote: Remote) -> None:
    db = tmp_path / "dwf.sqlite3"
    tenant = TenantId("kit")
    engine = await DurableEngine.open(db)
    try:
        await engine.registry.register(tenant, guest_wasm("egresskit"))
        await engine.egress.change_rules(tenant, allow=[remote.url], private=True)
        instance = await engine.instances.create(tenant, "call", {
            "method": "POST", "url": f"{remote.url}/hold", "idempotency": True})
    finally:
        await engine.close()

    first = _worker(db, tmp_path / "first.log")
    try:
        assert remote.held.wait(30), (tmp_path / "first.log").read_text()
        first.send_signal(signal.SIGKILL)  # the call is out, its answer not yet back
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    remote.release()

    second = _worker(db, tmp_path / "second.log")
    engine = await DurableEngine.open(db)
    try:
        deadline = time.monotonic() + 60
        while (status := await engine.instances.status(tenant, instance)).status not in (
                Status.COMPLETE, Status.ERRORED):
            assert time.monotonic() < deadline, status.to_dict()
            time.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        assert 0 == second.wait(30)
        await engine.close()
    assert Status.COMPLETE == status.status, status.to_dict()
    assert 2 == remote.hits["hold"]
    keys = {seen["headers"]["Idempotency-Key"] for seen in remote.seen}
    assert 1 == len(keys) and next(iter(keys)).startswith("dwf-")
