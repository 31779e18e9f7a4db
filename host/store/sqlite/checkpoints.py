"""Checkpoints of the write-ahead log, on a thread of their own, never inside a commit.

SQLite checkpoints by default in the connection that commits, once the log passes 1,000
pages: right after that COMMIT, on the committing thread. For the group-commit writer that
is inside its commit, and under `--processes N` inside the file's turn (the flock every
process's writer takes to commit), so every process waited for one process's checkpoint:
copying the log into the database and, at synchronous=NORMAL, the only fsyncs there are.
Waking 20,000 sleepers with `dwf worker --processes 2`, the writers spent 45% of their time
waiting for that turn. With checkpoints on this thread they woke 4,051-4,328 a second
where they had woken 3,782-3,914 (interleaved runs); with none at all, 4,306-5,119 (the
copying still has to be done somewhere: this thread does it beside the writer).

So the writer's connection never checkpoints (`wal_autocheckpoint = 0`), and this thread,
on a connection of its own, runs a PASSIVE checkpoint (it waits for no reader or writer)
a moment after commits were made: the log is copied while the writer goes on appending.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

from .faults import busy_timeout_ms

log = structlog.get_logger("dwf.sqlite")

CHECKPOINT_AFTER_SECONDS = 0.25
"""How long after the first commit since the last checkpoint the next one runs: commits
meanwhile share it (on a busy writer, a few hundred of them)."""


class Checkpointer:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._dirty = threading.Event()  # a commit since the last checkpoint
        self._stopping = threading.Event()
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="dwf-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer committed (cheap when already said since the last checkpoint)."""
        if not self._dirty.is_set():
            self._dirty.set()

    def close(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
            while True:
                self._dirty.wait()
                if self._stopping.wait(CHECKPOINT_AFTER_SECONDS):
                    return  # the last connection to close checkpoints by itself
                self._dirty.clear()
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # a full disk: the log keeps it all; try again later
            log.warning("sqlite.checkpoint_failed", path=str(self._path), reason=str(exc))
            self._dirty.set()
            self._stopping.wait(1.0)
            return
        self.checkpoints += 1
