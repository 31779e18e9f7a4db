"""Worker hosts cut off from the database by a real network partition.

Each worker runs in a network namespace of its own (a host as far as the network goes),
linked to the database's host by a veth pair; cutting a link drops its packets both ways,
as a failed switch or a firewall would, with no RST and no FIN: the server still sees the
worker's sessions open, and only the lease tells. Needs root (CI runs as root); elsewhere
the same story with SIGSTOP instead of a partition is `test_many_workers.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import throwaway_cluster
from helpers import sql
from test_many_workers import (
    LEDGER,
    UNCOMMITTED_STEPS,
    WORKER_CONCURRENCY,
    _assert_each_completed_once,
    _assert_every_step_once,
    _count,
    _prepare,
    _wait_all_finished,
    _worker_id,
)
from workers import ledger_runs, log_entries, start_worker, wait_for_line

from host import DurableEngine, InstanceRequest


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Host:
    """A network namespace linked to this one: the database is `gateway` from inside it."""

    namespace: str
    link: str  # this side of its veth pair: down is the partition
    gateway: str

    @property
    def inside(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)

    def cut(self) -> None:
        assert 0 == _ip("link", "set", self.link, "down").returncode

    def heal(self) -> None:
        assert 0 == _ip("link", "set", self.link, "up").returncode


@contextlib.contextmanager
def _hosts(count: int) -> Iterator[list[Host]]:
    """`count` namespaces, host i on 10.N.i.0/24 (N from this process, so that two test
    runs on one machine do not share a subnet)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (CI has both); "
                    "test_many_workers.py tells the same story with processes")
    tag, octet = os.getpid() % 10_000, 100 + os.getpid() % 150
    hosts: list[Host] = []
    try:
        for i in range(1, count + 1):
            host = Host(f"dwf{tag}-{i}", f"dwf{tag}h{i}", f"10.{octet}.{i}.1")
            inner = f"dwf{tag}n{i}"
            made = _ip("netns", "add", host.namespace)
            if made.returncode != 0:
                pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
            hosts.append(host)
            for step in (("link", "add", host.link, "type", "veth", "peer", "name", inner,
                          "netns", host.namespace),
                         ("addr", "add", f"{host.gateway}/24", "dev", host.link),
                         ("link", "set", host.link, "up"),
                         ("-n", host.namespace, "addr", "add", f"10.{octet}.{i}.2/24", "dev",
                          inner),
                         ("-n", host.namespace, "link", "set", inner, "up"),
                         ("-n", host.namespace, "link", "set", "lo", "up")):
                done = _ip(*step)
                assert 0 == done.returncode, f"ip {' '.join(step)}: {done.stderr}"
        yield hosts
    finally:
        for host in hosts:
            _ip("link", "del", host.link)  # its peer goes with it
            _ip("netns", "del", host.namespace)


async def _progress(engine: DurableEngine, instances: list[str]) -> int:
    """Step bodies of `instances` checkpointed so far, and those of them complete."""
    total = 0
    for instance in instances:
        total += await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do' "
                                      "AND instance_id = ?", instance)
        total += await _count(engine, "SELECT count(*) FROM instances WHERE status = "
                                      "'complete' AND instance_id = ?", instance)
    return total


def _server_for(hosts: list[Host]) -> contextlib.AbstractContextManager[str]:
    """A PostgreSQL of its own that listens on every host's gateway too: its URL as seen
    from this host (the workers use their gateway instead of 127.0.0.1)."""
    return throwaway_cluster(also_listen_on=tuple(h.gateway for h in hosts),
                             trusted_networks=tuple(f"{h.gateway}/24" for h in hosts))


async def test_a_worker_cut_off_by_a_partition_loses_its_instances_and_writes_nothing_after(
        tmp_path: Path, built: Path) -> None:
    # Every tenth runs 60 steps back to back (running when the cut lands); the rest
    # sleep 20 ms after each of 3 steps, and the first 40 wait for an event too.
    instances, with_event, lease = 200, 40, 2.0
    shape = {n: (60, 0) if n % 10 == 9 else (3, 20) for n in range(instances)}
    requests = [InstanceRequest("ledger", {"steps": shape[n][0], "gap_ms": shape[n][1],
                                           **({"event": "go"} if n < with_event else {})},
                                f"ledger-{n}") for n in range(instances)]
    with _hosts(3) as hosts, _server_for(hosts) as url:
        ids = await _prepare(url, tmp_path, requests)
        logs = [tmp_path / f"host-{n}.log" for n in range(len(hosts))]
        workers = [start_worker(url.replace("127.0.0.1", host.gateway), log,
                                "--concurrency", str(WORKER_CONCURRENCY),
                                "--lease-seconds", str(lease), inside=host.inside)
                   for host, log in zip(hosts, logs, strict=True)]
        engine = await DurableEngine.open(url, artifacts=tmp_path / "artifacts")
        events: dict[str, Any] = {}
        cut_off = hosts[0]
        try:
            cut_id = _worker_id(logs[0])
            for log in logs[1:]:
                wait_for_line(log, "worker.started")
            held = "SELECT count(*) FROM instances WHERE owner = ? AND status = 'running'"
            deadline = time.monotonic() + 120
            while (await _count(engine, "SELECT count(*) FROM steps WHERE kind = 'do'") < 300
                   or not await _count(engine, held, cut_id)):
                assert time.monotonic() < deadline, "the workers made no progress"
                await asyncio.sleep(0.005)
            cut_off.cut()
            cut_at = time.monotonic()
            stranded = [row[0] for row in await sql(
                engine, "SELECT instance_id FROM instances WHERE owner = ? "
                        "AND status = 'running'", cut_id)]
            held_at_cut = len(stranded)
            done_then = await _progress(engine, stranded)
            for n in range(with_event):
                events[ids[n]] = {"n": n}
                await engine.instances.send_event(LEDGER, ids[n], "go", events[ids[n]])
            # Its sessions look alive to the server: only its lease running out frees them.
            while await _count(engine, held, cut_id):
                assert time.monotonic() - cut_at < 60, "the cut-off host kept its instances"
                await asyncio.sleep(0.02)
            takeover_ms = (time.monotonic() - cut_at) * 1000
            renewal = min(1.0, lease / 4)  # a lease is renewed every quarter of it
            assert takeover_ms >= (lease - renewal) * 900, "taken over before its lease ran out"
            # The other hosts carry on with what the cut-off one held, before it is back.
            while await _progress(engine, stranded) <= done_then:
                assert time.monotonic() - cut_at < 60, "its instances made no progress"
                await asyncio.sleep(0.02)
            cut_off.heal()
            wait_for_line(logs[0], '"worker.lease_lapsed"', timeout=90)

            try:
                await _wait_all_finished(engine, timeout=120)
            except AssertionError:
                left = await sql(engine, "SELECT instance_id, status, owner, wake_at_ms, "
                                         "waiting_event_type FROM instances WHERE status NOT "
                                         "IN ('complete', 'errored', 'terminated')")
                leases = await sql(engine, "SELECT worker_id, lease_until_ms FROM workers")
                raise AssertionError(f"unfinished: {[tuple(r) for r in left][:20]}; "
                                     f"workers: {[tuple(r) for r in leases]}") from None
            for n, instance in enumerate(ids):
                await _assert_every_step_once(engine, [instance], shape[n][0], events)
            for process in workers:
                process.terminate()
                assert 0 == process.wait(timeout=60)
        finally:
            cut_off.heal()
            for process in workers:
                if process.poll() is None:
                    process.kill()
            await engine.close()

    runs = ledger_runs(logs)
    reruns = sum(count - 1 for count in runs.values())
    # Per run the cut-off host had in flight: its uncommitted steps (run again by the new
    # owner) and those its guest ran on before a refused write told it.
    assert 0 < held_at_cut <= WORKER_CONCURRENCY
    assert reruns <= held_at_cut * 2 * UNCOMMITTED_STEPS, runs.most_common(5)
    _assert_each_completed_once(logs)
    assert sum(len(log_entries(log, "worker.took_over")) for log in logs[1:]) >= 1
    stepped_back = (log_entries(logs[0], "instance.aborted")
                    + log_entries(logs[0], "instance.not_recorded"))
    assert stepped_back, "the cut-off host's runs never heard that they had lost"
    print(f"\npartition: the cut-off host held {held_at_cut} running instances, taken over "
          f"{takeover_ms:.0f} ms after the cut (lease {lease:.0f} s); {len(stepped_back)} of "
          f"its runs stepped back once it was reconnected; {reruns} step bodies ran twice")
