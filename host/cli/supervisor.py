"""`dwf worker|serve --processes N`: N processes on one database, so one machine uses all
its cores.

One process runs everything on one interpreter (guests, the writer, the event loop, HTTP),
and its GIL makes that one core, however many guest threads it has. So the supervisor
starts N ordinary worker (or serve) processes and keeps them running:

- PostgreSQL: they are N workers like any others (their own connections and lease); the
  supervisor only forwards signals and restarts one that dies, after telling the database
  it is gone so its instances are taken over at once.
- SQLite: the file keeps one writer at a time (SQLite's own lock), and N processes with a
  group commit each share it: the processes take turns committing, and their guests, the
  CPU-heavy part, run in parallel. The supervisor holds the file's worker lock for the
  group (no worker outside it may start) and recovers the file once before starting them
  (no process of the group queues again what its siblings run); when one dies, it queues
  again exactly what that one was running (its claims carry its worker id), then restarts
  it. Guests in child processes of one writer process would keep a single writer too, but
  every journal write would then cross a process boundary, where today it is a queue
  append; leases over the file reuse all of the single-process machinery as it is.
- `serve`: every process listens on the same port (SO_REUSEPORT) and the kernel spreads
  connections over them; the supervisor holds the port for the group (bound, never
  listening) so a restarted process gets it back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ..store import is_postgres_url

if TYPE_CHECKING:  # the engine is imported when a supervisor starts, not for `dwf --help`
    from ..durable.engine import DurableEngine

log = structlog.get_logger("dwf.supervisor")
MEMBER_OPTION = "--member-of-group"
"""The hidden option a supervisor starts its processes with: their worker id."""

RESTART_PAUSE_S = 1.0  # a process that keeps dying is restarted at most once a second


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Bind (never listen on) `host:port` with SO_REUSEPORT for the group's lifetime: the
    port a `--port 0` group shares, and one nobody else takes between restarts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, port))
        yield int(held.getsockname()[1])


def supervise(db: str | Path, command: list[str], processes: int,
              global_args: list[str] | None = None) -> int:
    """Run `dwf --db DB [GLOBAL_ARGS] COMMAND` in `processes` processes until SIGTERM/SIGINT,
    which each
    of them gets (and handles as it always does: in-flight work finishes); returns the
    exit code (0 when every one stopped cleanly)."""
    from .. import eventloop
    from ..durable.worker import worker_lock

    postgres = is_postgres_url(db)
    with worker_lock(db):
        if not postgres:
            recovered = eventloop.run(_recover(db))
            log.info("supervisor.recovered", instances=recovered)
        group = f"{socket.gethostname()[:40]}:{os.getpid()}"
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True
            for child in children.values():
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

        children: dict[int, subprocess.Popen[bytes]] = {}
        started: dict[int, float] = {}
        generation = 0

        def spawn(slot: int) -> None:
            nonlocal generation
            generation += 1
            member = f"{group}:{slot}.{generation}"
            children[slot] = subprocess.Popen(
                [sys.executable, "-m", "host.cli", "--db", str(db), *(global_args or []),
                 *command, MEMBER_OPTION, member])
            children[slot].member = member  # type: ignore[attr-defined]
            started[slot] = time.monotonic()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(processes):
                spawn(slot)
            log.info("supervisor.started", processes=processes, command=command[0])
            worst = 0
            while children:
                for slot, child in list(children.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    del children[slot]
                    if stopping:
                        worst = max(worst, abs(code))
                        continue
                    member = child.member  # type: ignore[attr-defined]
                    log.warning("supervisor.process_died", member=member, code=code)
                    taken = eventloop.run(_take_over(db, member))
                    log.info("supervisor.took_over", member=member, instances=taken)
                    if time.monotonic() - started[slot] < RESTART_PAUSE_S:
                        time.sleep(RESTART_PAUSE_S)
                    if not stopping:
                        spawn(slot)
                time.sleep(0.05)
            return worst
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in children.values():
                child.kill()
                child.wait()


async def _open(db: str | Path) -> DurableEngine:
    from ..durable.engine import DurableEngine
    return await DurableEngine.open(db)


async def _recover(db: str | Path) -> int:
    engine = await _open(db)
    try:
        return await engine.recover()
    finally:
        await engine.close()


async def _take_over(db: str | Path, member: str) -> int:
    engine = await _open(db)
    try:
        return await engine.store.take_over(member)
    finally:
        await engine.close()
