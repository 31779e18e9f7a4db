"""The SQLite database: connection settings, migrations, group commit, transactions.

Two connections to one file. The hot writes (journal, claims, settling, creating
instances, events) go through `GroupCommitWriter`: one connection, fed by a queue, whose
leader commits every write queued while the previous commit ran in ONE transaction, and
acknowledges each write only after that COMMIT returned. The aiosqlite
connection serves reads (WAL lets them run beside the writer) and the rare multi-statement
transactions written as async code (`Database.transaction`), which park the writer while
they run so the two connections never wait on SQLite's lock. Code already on a worker
thread (an invocation loading its journal) reads through a read-only connection of that
thread's own (`read_blocking`), with no hop through the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import aiosqlite

from ...core.tally import CommitTally
from .checkpoints import Checkpointer
from .faults import busy_timeout_ms, storage_error, translated

T = TypeVar("T")

WriteDone = Callable[[bool, Any], None]
"""How a pipelined write's caller hears back, on the writer's side, after the COMMIT:
(True, the op's result) or (False, the exception that failed it)."""

WriteOp = Callable[[sqlite3.Connection], T]
"""A write: statements run on the writer's connection inside its open transaction.

It runs on the writer thread, between a SAVEPOINT and its RELEASE (a `RowAppend` or a
`one_write` op: its single writing statement, which SQLite rolls back alone): if it
raises, only its own statements are rolled back and its caller gets the exception; the
batch goes on.
"""


class WriterConnection(sqlite3.Connection):
    """The writer's connection, with a counter that says when a read may be stale.

    `epoch` changes before every op not marked `keeps_fences`, and when another connection
    (a `Database.transaction`, another process) committed such a write since the writer's
    last commit: each counts itself in the `fence_moves` row (`FENCE_MOVES_SQL`), so the
    claims, journal rows and settles of the other processes of `--processes N` leave it
    alone. A read made by an op about tenants, modules, or the run that owns an
    instance is still true for a later op of the same epoch: a journal append need not
    re-read its instance's fence, nor creating an instance its tenant's active version.
    """

    epoch = 0


def keeps_fences(op: WriteOp[T]) -> WriteOp[T]:
    """Mark `op` as changing no tenant or module, and no instance another invocation is
    running (it inserts instances, claims queued ones, settles its own run...)."""
    op.keeps_fences = True  # type: ignore[attr-defined]
    return op


def one_write(op: WriteOp[T]) -> WriteOp[T]:
    """Mark `op` as changing the database in at most one statement: SQLite undoes a failed
    statement by itself, so the op needs no SAVEPOINT (two statements fewer)."""
    op.one_write = True  # type: ignore[attr-defined]
    return op


FENCE_MOVES_SQL = "UPDATE fence_moves SET moves = moves + 1 WHERE id = 0"
"""Run inside every transaction that may have moved a fence (see `WriterConnection`)."""

_APPEND_TYPES: set[type] = set()  # every RowAppend subclass


class RowAppend(abc.ABC):
    """A write that adds rows through an INSERT shared with writes like it.

    Consecutive ones in a batch with the same `insert_sql` reach SQLite as one multi-row
    INSERT. Every statement the writer runs lets go of the GIL and must win it back, and
    with guests and the event loop busy, that wait, not SQLite, was most of what a journal
    write cost. A RowAppend `keeps_fences` and is `one_write`.
    """

    __slots__ = ()
    keeps_fences: ClassVar[bool] = True  # as `keeps_fences` marks an op: also when alone
    one_write: ClassVar[bool] = True
    insert_sql: ClassVar[str]  # "INSERT ... (columns) VALUES "
    placeholders: ClassVar[str]  # "(?, ?, ...)": one row

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _APPEND_TYPES.add(cls)

    @abc.abstractmethod
    def rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        """After its checks (which may raise to fail the write): its rows (none to write
        nothing)."""

    @abc.abstractmethod
    def failed(self, exc: BaseException) -> None:
        """Its rows could not be inserted: the write fails with `exc`."""

    def __call__(self, conn: sqlite3.Connection) -> None:
        """Insert its rows alone, in one statement: all of them or none."""
        rows = self.rows(conn)
        if rows:
            try:
                conn.execute(self.insert_sql + ", ".join([self.placeholders] * len(rows)),
                             [value for row in rows for value in row])
            except BaseException as exc:  # noqa: B036 - re-raised
                self.failed(exc)
                raise


def _as_append(op: WriteOp[Any]) -> RowAppend | None:
    """`op` if it is a RowAppend (an isinstance through ABCMeta costs more, once a write)."""
    return cast(RowAppend, op) if type(op) in _APPEND_TYPES else None


def _migrations() -> list[tuple[int, str]]:
    """Numbered `.sql` files shipped in `migrations/` beside this module, in order."""
    found = []
    for entry in resources.files(f"{__package__}.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.read_text()))
    return sorted(found)


class Database:
    """One aiosqlite connection; write transactions are serialized by an asyncio lock.

    SQLite allows one writer at a time anyway, and sharing one connection between
    coroutines needs the lock so two transactions never interleave their statements.
    """

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self._write_lock = asyncio.Lock()
        self.writer: GroupCommitWriter | None = None
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> Database:
        """Open (creating and migrating) the database; StorageUnavailable on a full disk
        or a lock held past the busy timeout."""
        with translated():
            return await cls._open(Path(path), synchronous)

    @classmethod
    async def _open(cls, path: Path, synchronous: str) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write transaction
        # takes the write lock up front instead of failing to upgrade halfway through.
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            await connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
            await connection.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL survives a killed process (the guarantee we make); FULL also
            # survives power loss, at the cost of an fsync per commit.
            await connection.execute(f"PRAGMA synchronous = {synchronous}")
            await connection.execute("PRAGMA foreign_keys = ON")
            database = cls(connection, path)
            await database._migrate()
            database.writer = GroupCommitWriter(path, synchronous)
        except BaseException:
            # aiosqlite's thread would keep the process alive at exit (a CLI that
            # could not migrate a full disk hung instead of saying so).
            await connection.close()
            raise
        return database

    async def write(self, op: WriteOp[T]) -> T:
        """Run `op` in the writer's next group commit; returns once that commit is durable."""
        assert self.writer is not None, "Database.open starts the writer"
        return await self.writer.submit(op, asyncio.get_running_loop())

    def queue_write(self, op: WriteOp[T], waiter: asyncio.Future[T]) -> None:
        """Queue `op` from any thread without waiting; `waiter`, made on its event loop, is
        resolved there after the COMMIT (with the rest of its batch: one wake-up)."""
        assert self.writer is not None, "Database.open starts the writer"
        self.writer.submit(op, waiter.get_loop(), waiter)

    def enqueue(self, op: WriteOp[T], on_done: WriteDone) -> None:
        """Queue `op` for the next commit without waiting (a guest's journal, pipelined)."""
        assert self.writer is not None, "Database.open starts the writer"
        self.writer.enqueue(op, on_done)

    def write_blocking(self, op: WriteOp[T]) -> T:
        """`write` for a thread that is not the event loop's (a guest's pool thread)."""
        assert self.writer is not None, "Database.open starts the writer"
        return self.writer.run(op)

    def writer_epoch(self) -> int | None:
        """The group-commit writer's epoch now (see `WriterConnection`)."""
        return self.writer.epoch if self.writer is not None else None

    def peek(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        """One row found by one index probe, read on the calling thread, even the event
        loop's.

        Only for such reads (a row by its key, the first entry of an index): WAL readers
        never wait for the writer, and they touch a few cached pages (~15 us). A hop to
        aiosqlite's thread and back costs more than that: five thread switches a call,
        measured with guests and the writer busy, on every `wait_finished`.
        """
        row: sqlite3.Row | None = self.read_blocking(
            lambda conn: conn.execute(sql, params).fetchone())
        return row

    def read_blocking(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on this thread's read-only connection (never on the event loop's,
        but for `peek`)."""
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
            connection.execute("PRAGMA query_only = ON")
            self._readers.connection = connection
            with self._readers_lock:
                self._reader_connections.append(connection)
        with translated():
            return read(connection)

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            row = await (await conn.execute("PRAGMA user_version")).fetchone()
            current = row[0] if row is not None else 0
            for number, script in _migrations():
                if number > current:
                    for statement in _split_statements(script):
                        await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version = {number}")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction on the aiosqlite connection, for cold paths.

        The group-commit writer is parked (after committing what was queued before) until
        it ends; never `write` from inside one: that would wait for itself.
        """
        async with self._write_lock:
            parked = await self.writer.park() if self.writer is not None else None
            try:
                with translated():
                    await self.connection.execute("BEGIN IMMEDIATE")
                try:
                    with translated():
                        yield self.connection
                        await self.connection.execute(FENCE_MOVES_SQL)
                        await self.connection.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (a lock, a full disk) may leave it open, or SQLite
                    # may have rolled it back already.
                    if self.connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            await self.connection.execute("ROLLBACK")
                    raise
                if self.writer is not None:
                    self.writer.moved_fences()
            finally:
                if parked is not None:
                    parked()

    # Reads run to completion in one call on the connection's thread. A statement left
    # open between two calls (execute, then fetch) would hold its read snapshot, and every
    # read interleaved meanwhile by another coroutine would share it, missing what the
    # writer committed since: a claim just made would look lost.

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with translated():
            return list(await self.connection.execute_fetchall(sql, params))

    async def close(self) -> None:
        if self.writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            self.writer = None
        with self._readers_lock:
            for reader in self._reader_connections:
                reader.close()
            self._reader_connections.clear()
        await self.connection.close()


class _Write(Generic[T]):
    """One queued write and how its caller hears back, after the COMMIT: the event loop
    through an asyncio future resolved with the rest of its batch in one callback (one
    wake-up of the loop per commit, not one per write); a waiting thread through `done`,
    which it reads when the leader steps down; a pipelined journal through `on_done`."""

    __slots__ = ("op", "waiter", "on_done", "done", "ok", "value")

    def __init__(self, op: WriteOp[T], waiter: asyncio.Future[T] | None = None,
                 on_done: WriteDone | None = None) -> None:
        self.op = op
        self.waiter = waiter
        self.on_done = on_done
        self.done = False
        self.ok = False
        self.value: Any = None

    def start(self) -> bool:
        """Whether to run it: False if its caller gave up (cancelled) before it started."""
        # A cancel after the start just drops the answer.
        return self.waiter is None or not self.waiter.cancelled()

    def result(self) -> T:
        if not self.ok:
            raise self.value
        return self.value  # type: ignore[no-any-return]


def _answer_loop(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for waiter, ok, value in answers:
        if not waiter.done():
            if ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)


MAX_BATCH = 4096
"""Most writes in one commit: bounds how long the first of a huge backlog waits."""
MAX_ROWS_PER_INSERT = 512
"""Most rows in one multi-row INSERT. Each row count is its own prepared statement, so the
writer's statement cache holds this many more."""


class GroupCommitWriter:
    """Commits batches of queued writes back to back, one leader at a time.

    Whoever finds no commit in progress becomes the leader: it takes every queued write,
    runs them in one BEGIN IMMEDIATE ... COMMIT (each rolled back alone if it fails), resolves
    their futures only after the COMMIT returned, and steps down; a write queued meanwhile
    is taken by the next leader as soon as that commit ended. There is no timer: a lone
    write pays one commit, a crowd shares one.

    A thread that writes and waits (a guest's pool thread) leads itself when nobody is
    committing, so a sequential workflow's step costs a commit and no thread switch (a
    switch to another thread and back costs ~100 us on this kind of machine, three times
    the commit). Writes from the event loop never block it: the writer's own thread leads
    for them. `park` takes the lead and keeps it until released (`Database.transaction`).
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        lock = threading.Lock()
        self._followers = threading.Condition(lock)  # threads waiting in `run`
        self._writer_wake = threading.Condition(lock)  # the writer's own thread, idle
        self._waiting = 0  # threads waiting on `_followers`
        self._queue: list[_Write[Any]] = []
        self._leading = False  # a commit (or a park) is in progress
        self._stopping = False
        self.commits = 0
        self.writes = 0
        self.tally = CommitTally()
        self._connection = sqlite3.connect(path, isolation_level=None,
                                           check_same_thread=False, factory=WriterConnection,
                                           cached_statements=128 + MAX_ROWS_PER_INSERT)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
        self._connection.execute(f"PRAGMA synchronous = {synchronous}")
        self._connection.execute("PRAGMA foreign_keys = ON")
        self._connection.execute("PRAGMA wal_autocheckpoint = 0")  # `checkpoints` does
        self._max_params = self._connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._data_version: int | None = None
        self._fence_moves: int | None = None  # the count when this writer last looked
        # Writers of several processes on one file (`--processes N`) take turns through
        # this lock: blocked in the kernel, a waiter is woken when the holder commits.
        # SQLite's own busy handler only sleeps and polls, and a writer committing back
        # to back would almost never let another in.
        resolved = path.resolve()
        self._turns = os.open(resolved.with_name(resolved.name + ".commit.lock"),
                              os.O_RDWR | os.O_CREAT, 0o644)
        self.checkpoints = Checkpointer(path)
        self._thread = threading.Thread(target=self._run, name="dwf-writer", daemon=True)
        self._thread.start()

    @property
    def epoch(self) -> int:
        """The writer connection's epoch now (from any thread: it only grows).

        It moves at once for ops of this writer and transactions of this `Database`; a
        commit by another process moves it at the writer's next BEGIN."""
        return self._connection.epoch

    def moved_fences(self) -> None:
        """A transaction on another connection committed, while this writer was parked
        (`park`): reads of the writer's epoch should not wait for its next BEGIN."""
        self._connection.epoch += 1

    def submit(self, op: WriteOp[T], loop: asyncio.AbstractEventLoop,
               waiter: asyncio.Future[T] | None = None) -> asyncio.Future[T]:
        """Queue `op` for the next commit; never blocks. Answered on `loop`, through `waiter`
        if given (a thread other than the loop's must give one the loop made)."""
        if waiter is None:
            waiter = loop.create_future()
        write: _Write[T] = _Write(op, waiter)
        with self._writer_wake:
            self._queue.append(write)
            if not self._leading:
                self._writer_wake.notify()
        return waiter

    def enqueue(self, op: WriteOp[T], on_done: WriteDone) -> None:
        """Queue `op` for the next commit; never blocks. Writes queued by one thread commit
        in the order it queued them, and a later write never commits before an earlier one."""
        write: _Write[T] = _Write(op, on_done=on_done)
        with self._writer_wake:
            self._queue.append(write)
            if not self._leading:
                self._writer_wake.notify()

    def run(self, op: WriteOp[T]) -> T:
        """Queue `op` and wait for its commit, leading it if nobody is committing."""
        write: _Write[T] = _Write(op)
        with self._followers:
            self._queue.append(write)
        while True:
            with self._followers:
                # The leader sets `done` before it steps down, which takes this lock and wakes us.
                while self._leading and not write.done:
                    self._waiting += 1
                    try:
                        self._followers.wait()
                    finally:
                        self._waiting -= 1
                if write.done:
                    break
                batch = self._lead_locked()
            self._commit_and_step_down(batch)
        return write.result()

    async def park(self) -> Callable[[], None]:
        """Commit what is queued, then hold the lead until the returned function is called."""
        def take() -> None:
            with self._followers:
                while self._leading:
                    self._waiting += 1
                    try:
                        self._followers.wait()
                    finally:
                        self._waiting -= 1
                batch = self._lead_locked()
            if batch:
                self._commit(batch)

        await asyncio.get_running_loop().run_in_executor(None, take)
        return self._step_down

    def _step_down(self) -> None:
        with self._followers:
            self._leading = False
            if self._waiting:  # their writes may be done, or one of them leads next
                self._followers.notify_all()
            if self._queue:  # writes nobody waits on a thread for: the writer leads them
                self._writer_wake.notify()

    def close(self) -> None:
        with self._writer_wake:
            self._stopping = True
            self._writer_wake.notify()
        self._thread.join()
        self.checkpoints.close()
        self._connection.close()
        os.close(self._turns)

    def _lead_locked(self) -> list[_Write[Any]]:
        """Become the leader and take the queue (the caller holds the condition)."""
        self._leading = True
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        return [w for w in batch if w.start()]

    def _commit_and_step_down(self, batch: list[_Write[Any]]) -> None:
        try:
            if batch:
                self._commit(batch)
        finally:
            self._step_down()

    def _run(self) -> None:
        """The writer's own thread: leads when writes wait and nobody else commits."""
        while True:
            with self._writer_wake:
                while (self._leading or not self._queue) and not self._stopping:
                    self._writer_wake.wait()
                if self._stopping and not self._queue and not self._leading:
                    return
                if self._leading:
                    continue
                batch = self._lead_locked()
            self._commit_and_step_down(batch)

    def _commit(self, batch: list[_Write[Any]]) -> None:
        fcntl.flock(self._turns, fcntl.LOCK_EX)
        try:
            outcomes = self._commit_in_turn(batch)
        finally:
            fcntl.flock(self._turns, fcntl.LOCK_UN)
        # Answered after the file's turn is given up: the other processes of
        # `--processes N` commit meanwhile (answering is Python work for every write, and
        # waits for this process's GIL; in the turn it held up every process's writer).
        self._answer(batch, outcomes)
        self.checkpoints.committed()

    def _commit_in_turn(self, batch: list[_Write[Any]]) -> list[tuple[bool, Any]]:
        """Commit the batch; the outcome of each write, to be answered (acknowledged only
        if the COMMIT returned)."""
        connection = self._connection
        outcomes: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._notice_fence_moves(connection)
            epoch = connection.epoch
            if len(batch) == 1:  # no savepoint needed: a failure rolls back the transaction
                op = batch[0].op
                if not getattr(op, "keeps_fences", False):
                    connection.epoch += 1
                try:
                    outcomes.append((True, op(connection)))
                except BaseException as exc:  # noqa: B036 - handed to the caller
                    connection.execute("ROLLBACK")
                    return [(False, exc)]
            else:
                self._run_batch(connection, batch, outcomes)
            moves = (connection.execute(FENCE_MOVES_SQL + " RETURNING moves").fetchall()[0][0]
                     if connection.epoch != epoch else self._fence_moves)
            connection.execute("COMMIT")
        except BaseException as exc:  # noqa: B036 - the commit failed: every write did
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._fence_moves = None  # unknown now: the next commit reads it again
            return [(False, exc)] * len(batch)
        self._fence_moves = moves  # our own moves are no news to us
        self.commits += 1
        self.writes += len(batch)
        self.tally.batch_sizes.observe(len(batch))
        self.tally.commit_seconds.observe(time.perf_counter() - started)
        return outcomes

    def _notice_fence_moves(self, connection: WriterConnection) -> None:
        """Move the epoch if another connection moved a fence since our last commit.

        `data_version` (no I/O) says whether anyone else committed at all; only then is
        the count read."""
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and self._fence_moves is not None:
            return
        self._data_version = version
        moves = connection.execute("SELECT moves FROM fence_moves WHERE id = 0").fetchone()[0]
        if moves != self._fence_moves:
            self._fence_moves = moves
            connection.epoch += 1

    def _run_batch(self, connection: WriterConnection, batch: list[_Write[Any]],
                   outcomes: list[tuple[bool, Any]]) -> None:
        """Run every op in order, consecutive `RowAppend`s of one table as one INSERT."""
        appends: list[RowAppend] = []  # consecutive ones of one INSERT, not yet run
        for write in batch:
            op = write.op
            append = _as_append(op)
            if appends and (append is None or append.insert_sql != appends[0].insert_sql):
                outcomes.extend(self._append_rows(connection, appends))
                appends = []
            if append is not None:
                appends.append(append)
            else:
                outcomes.append(self._run_op(connection, op))
        if appends:
            outcomes.extend(self._append_rows(connection, appends))

    def _append_rows(self, connection: WriterConnection,
                     appends: list[RowAppend]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        pending: list[tuple[int, list[tuple[Any, ...]]]] = []  # (index in appends, rows)
        for index, append in enumerate(appends):
            try:
                rows = append.rows(connection)
            except BaseException as exc:  # noqa: B036 - handed to the caller
                if not connection.in_transaction:
                    raise
                outcomes.append((False, exc))
                continue
            outcomes.append((True, None))
            if rows:
                pending.append((index, rows))
        first = appends[0]
        most = self._max_rows(first.placeholders.count("?"))
        start = 0
        while start < len(pending):
            end, count = start, 0  # never split an append: its rows land together or not
            while end < len(pending) and (end == start or count + len(pending[end][1]) <= most):
                count += len(pending[end][1])
                end += 1
            try:
                connection.execute(
                    first.insert_sql + ", ".join([first.placeholders] * count),
                    [value for _, rows in pending[start:end] for row in rows for value in row])
            except BaseException:  # noqa: B036 - SQLite undid this INSERT alone
                if not connection.in_transaction:
                    raise
                # Find the bad row: this INSERT's appends and every later one, one at a
                # time, each checking again (a failed row stops the rest of its chain).
                for index, _ in pending[start:]:
                    outcomes[index] = self._run_op(connection, appends[index])
                break
            start = end
        return outcomes

    def _max_rows(self, params_per_row: int) -> int:
        """Most rows one INSERT may carry (SQLite bounds its parameters)."""
        return max(1, min(MAX_ROWS_PER_INSERT, self._max_params // params_per_row))

    @staticmethod
    def _run_op(connection: WriterConnection, op: WriteOp[Any]) -> tuple[bool, Any]:
        if _as_append(op) is not None:
            return GroupCommitWriter._run_op_alone(connection, op)
        moves_fences = not getattr(op, "keeps_fences", False)
        if moves_fences:
            connection.epoch += 1
        if getattr(op, "one_write", False):
            return GroupCommitWriter._run_op_alone(connection, op, moves_fences)
        connection.execute("SAVEPOINT write")
        try:
            return True, op(connection)
        except BaseException as exc:  # noqa: B036 - handed to the caller
            connection.execute("ROLLBACK TO write")
            if moves_fences:
                connection.epoch += 1
            return False, exc
        finally:
            connection.execute("RELEASE write")

    @staticmethod
    def _run_op_alone(connection: WriterConnection, op: WriteOp[Any],
                      moves_fences: bool = False) -> tuple[bool, Any]:
        """An op whose one writing statement SQLite rolls back alone if it fails."""
        try:
            return True, op(connection)
        except BaseException as exc:  # noqa: B036 - handed to the caller
            if not connection.in_transaction:
                # SQLite rolled the whole transaction back (disk full, I/O error), not
                # just the statement: the batch's earlier writes are gone too.
                raise
            if moves_fences:
                connection.epoch += 1
            return False, exc

    @staticmethod
    def _answer(batch: list[_Write[Any]], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
        by_loop = {}
        for write, (ok, value) in zip(batch, outcomes, strict=True):
            if not ok:
                value = storage_error(value)  # a lock or a full disk: the write may retry
            if write.waiter is not None:
                by_loop.setdefault(write.waiter.get_loop(), []).append((write.waiter, ok, value))
                continue
            write.ok, write.value, write.done = ok, value, True
            if write.on_done is not None:
                write.on_done(ok, value)
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                loop.call_soon_threadsafe(_answer_loop, answers)


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if s]
