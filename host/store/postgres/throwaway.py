"""A throwaway local PostgreSQL cluster: for the test suite, the benchmarks, and trying the
PostgreSQL backend on one machine without installing a service.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` system
user (Debian's package creates it) and every server command runs as that user; as anyone
else it is the caller's own. It listens on loopback TCP (and on the addresses it is given
besides, trusting only the networks it is given), on a free port, with trust
authentication (nothing but this machine can reach it), and it is stopped and deleted by
`stop()`. Its settings are the server's defaults (fsync and synchronous commit on) unless
`fast=True`, which turns fsync off: for tests, which never crash the server itself.

    python -m host.store.postgres.throwaway DIR    # start one, print its URL, wait for ^C
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SEARCHED_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
                    "/usr/lib/postgresql/17/bin")
HOW_TO_GET_ONE = (
    "install the server (Debian: `apt-get install postgresql-15`, which `.ci/run` does), "
    "or point DWF_TEST_POSTGRES at a server you run (postgresql://USER@HOST:PORT/DB, a "
    "database the user may create schemas in)")
DATABASE = "dwf"
USER = "dwf"


class NoPostgres(RuntimeError):
    """No server binaries here (or the cluster would not start): says how to get one."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    candidates = [os.environ.get("DWF_PG_BINDIR", ""), *SEARCHED_BINDIRS]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True,
                                             text=True, check=True).stdout.strip())
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise NoPostgres("no PostgreSQL server binaries (initdb) found in "
                     f"{', '.join(SEARCHED_BINDIRS)}: {HOW_TO_GET_ONE}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster; `url` reaches its `dwf` database as user `dwf`."""

    directory: Path
    port: int
    bindir: Path
    owner: str | None  # the system user the server runs as when we are root

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w",
                  "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start(directory: Path | None = None, *, fast: bool = False,
          max_connections: int = 200, also_listen_on: tuple[str, ...] = (),
          trusted_networks: tuple[str, ...] = ()) -> Cluster:
    """initdb, start and create the `dwf` database; raises NoPostgres saying why not.

    `also_listen_on` adds addresses beside loopback, and `trusted_networks` (CIDR) the
    clients trusted there: hosts of a test's own network namespaces, say."""
    bindir = find_bindir()
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise NoPostgres("running as root, initdb needs a non-root user and there is "
                             f"no `postgres` user: {HOW_TO_GET_ONE}") from None
        owner = "postgres"
    directory = Path(tempfile.mkdtemp(prefix="dwf-pg-")) if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        shutil.chown(directory, owner)
        directory.chmod(0o700)
    cluster = Cluster(directory, _free_port(), bindir, owner)
    data = directory / "data"
    done = cluster._run("initdb", "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                        "--no-sync", "--locale=C")
    if done.returncode != 0:
        raise NoPostgres(f"initdb failed: {done.stderr.strip()[-500:]}")
    if trusted_networks:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in trusted_networks)
    listen = ",".join(("127.0.0.1", *also_listen_on))
    settings = [f"port={cluster.port}", f"listen_addresses='{listen}'",
                f"unix_socket_directories='{directory}'", f"max_connections={max_connections}",
                "shared_buffers=128MB"]
    if fast:
        settings += ["fsync=off", "full_page_writes=off"]
    options = " ".join(f"-c {setting}" for setting in settings)
    done = cluster._run("pg_ctl", "-D", str(data), "-l", str(directory / "server.log"), "-o",
                        options, "-w", "-t", "60", "start")
    if done.returncode != 0:
        log = (directory / "server.log")
        tail = log.read_text()[-800:] if log.exists() else done.stderr
        raise NoPostgres(f"the throwaway PostgreSQL did not start: {tail.strip()}")
    created = cluster._run("psql", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", USER,
                           "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}")
    if created.returncode != 0:
        cluster.stop()
        raise NoPostgres(f"creating the database failed: {created.stderr.strip()}")
    return cluster


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    cluster = start(directory)
    print(cluster.url, flush=True)
    try:
        signal.sigwait(stops)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
