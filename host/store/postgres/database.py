"""The PostgreSQL database: connections, migrations, group commit, LISTEN/NOTIFY.

A pool of asyncpg connections serves reads and the rare multi-statement transactions of
cold paths (registering a module, pausing an instance...); PostgreSQL runs them beside
everything else. The hot writes (journal rows, claims, settling, creating instances,
events) go through `GroupCommitWriter`: one connection, fed by a queue, that runs every
write queued while its previous commit ran in ONE transaction and acknowledges each only
after that COMMIT returned, so a crowd of writers pays one commit (and one fsync). Each
statement is a network round trip, so the writes of a kind in a batch (journal rows,
settles, creations) are merged into one statement over arrays (`Merged`).

Everything runs on the event loop that opened the database; threads (a guest's pool
thread) queue writes without waiting, or block on a future for reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from ...core.errors import DwfError, StorageUnavailable
from ...core.tally import CommitTally
from ..interface import EarlierWriteFailed
from .faults import storage_error, translated

log = structlog.get_logger("dwf.postgres")
T = TypeVar("T")
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own (the writer's) or one lent by the pool."""

DUE_CHANNEL = "dwf_due"
"""NOTIFY channel: something became due (a new instance, an event, a resume, a takeover)."""

MOVED_CHANNEL = "dwf_moved"
"""NOTIFY channel: a control action changed an instance under whoever runs it (pause,
terminate, restart): a claim made before it can no longer trust what it read."""

MIGRATION_LOCK = 0x64776600  # pg_advisory_xact_lock key: one migrating process at a time

WriteDone = Callable[[bool, Any], None]
"""How a pipelined write's caller hears back, after the COMMIT: (True, the op's result) or
(False, the exception that failed it)."""


class Batch:
    """What the writer knows while it runs one transaction: its connection, and the fences
    of the runs whose writes are in it (read and locked first, see `Fenced`)."""

    __slots__ = ("conn", "fences", "notify")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.fences: dict[tuple[str, str], tuple[str | None, str]] = {}
        self.notify = False  # an op made an instance due: NOTIFY before COMMIT


WriteOp = Callable[[Batch], Awaitable[T]]
"""A write: statements on the writer's connection inside its open transaction.

The contract that lets a batch run without a SAVEPOINT per write: an op raises one of
`CLEAN_FAILURES` only before its first write (or after undoing its own writes), so the
batch goes on without it. Any other exception means the transaction may be broken: the
writer rolls the batch back and runs its writes again, each in a transaction of its own.
"""

CLEAN_FAILURES = (DwfError, EarlierWriteFailed)


class Fenced:
    """A write of a claimed run: the writer locks the instance row of every such write in a
    batch first (`FOR NO KEY UPDATE`, in key order, in one statement) and reads who holds
    it. A takeover or a terminate waits for that lock, so a fence read in a batch holds
    until its COMMIT: a worker that lost its instance cannot commit over the new owner."""

    fence_key: tuple[str, str]


class Merged:
    """A write that runs merged with the writes of its kind beside it in a batch: the
    writer gathers a stretch of them (up to the next write that is not `Merged`) and runs
    each kind's together, the kinds in `merge_order`, so a kind costs one statement (one
    round trip) however many writes of it the stretch holds.

    Reordering a stretch this way keeps every guarantee: a run queues its writes in the
    order they must land and the kinds run in that order (its journal rows, then its
    settle); writes of different instances touch different rows (a new instance's id
    cannot be a running one's); and every write is still answered after the COMMIT.
    """

    __slots__ = ()
    merge_order: ClassVar[int]

    @classmethod
    async def run_merged(cls, batch: Batch, ops: list[Any]) -> list[tuple[bool, Any]]:
        """The outcomes of `ops` (all of this class), in their order: (False, one of
        `CLEAN_FAILURES`) for an op that failed having written nothing, else (True, its
        result). Any other exception fails the batch (the writer then runs each write
        alone)."""
        raise NotImplementedError

    async def __call__(self, batch: Batch) -> Any:
        """Alone (a stretch of one): its outcome, a clean failure raised."""
        [(ok, value)] = await self.run_merged(batch, [self])
        if not ok:
            raise value
        return value


class RowAppend(Fenced, Merged):
    """A write of journal rows, merged with the ones beside it in a batch into one INSERT
    of arrays (`unnest`): one statement, one round trip, however many rows. A position
    written twice in a batch keeps its later row."""

    __slots__ = ()
    merge_order = 0
    insert_sql: ClassVar[str]  # "INSERT ... SELECT * FROM unnest($1::t[], ...)": one row per index

    def rows(self, batch: Batch) -> list[tuple[Any, ...]]:
        """After its checks (which may raise to fail the write): its rows."""
        raise NotImplementedError

    @classmethod
    async def run_merged(cls, batch: Batch, ops: list[Any]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # by key: the last write wins
        for append in ops:
            try:
                found = append.rows(batch)
            except CLEAN_FAILURES as exc:
                outcomes.append((False, exc))
                continue
            outcomes.append((True, None))
            for row in found:
                rows[row[:3]] = row
        if rows:
            await batch.conn.execute(cls.insert_sql, *columns(list(rows.values())))
        return outcomes


def columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays `unnest` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def migrations() -> list[tuple[int, str]]:
    """Numbered `.sql` files shipped in `migrations/` beside this module, in order."""
    found = []
    for entry in resources.files(f"{__package__}.migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class Database:
    """The pool, the writer and (for workers) a LISTEN connection, on one event loop."""

    def __init__(self, url: str, settings: dict[str, str], pool: asyncpg.Pool,
                 writer: GroupCommitWriter, worker_id: str) -> None:
        self.url = url
        self.settings = settings
        self.pool = pool
        self.writer = writer
        self.worker_id = worker_id
        self.loop = asyncio.get_running_loop()
        self.epoch = 0
        """Moves when a control action committed (here, or anywhere once its NOTIFY
        arrives): what a claim read is still true while it has not moved."""
        self._listener: asyncpg.Connection | None = None
        self._watching_moves = False

    @classmethod
    async def open(cls, url: str, worker_id: str, lease_ms: int) -> Database:
        """Connect (every connection named `worker_id`, which tells other workers this one
        lives) and migrate.

        A transaction left open longer than a lease (a process stopped mid-commit) is
        ended by the server, so its row locks never hold up a takeover.
        """
        settings = {"application_name": worker_id,
                    "idle_in_transaction_session_timeout": str(lease_ms)}
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=8,
                                             server_settings=settings, reset=_kept_as_is)
            writer = await GroupCommitWriter.open(url, settings)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(
                f"cannot use PostgreSQL at {redacted(url)}: {exc}; check that the server "
                "runs, and the URL's host, port, user, password and database") from None
        assert pool is not None
        async with pool.acquire() as conn:
            await _migrate(conn)
        return cls(url, settings, pool, writer, worker_id)

    async def write(self, op: WriteOp[T]) -> T:
        """Run `op` in the writer's next group commit; returns once that commit is done."""
        return await self.writer.submit(op)

    def queue_write(self, op: WriteOp[T], waiter: asyncio.Future[T]) -> None:
        """Queue `op` from any thread; `waiter` (of this loop) is resolved after the COMMIT."""
        self.writer.push(_Write(op, waiter=waiter))

    def enqueue(self, op: WriteOp[Any], on_done: WriteDone) -> None:
        """Queue `op` for the next commit without waiting (a guest's journal, pipelined)."""
        self.writer.push(_Write(op, on_done=on_done))

    def write_blocking(self, op: WriteOp[T]) -> T:
        """`write` for a thread that is not the event loop's (a guest's pool thread)."""
        write: _Write[T] = _Write(op, done=threading.Event())
        self.writer.push(write)
        assert write.done is not None
        write.done.wait()
        return write.result()

    def blocking(self, coroutine: Awaitable[T]) -> T:
        """Run `coroutine` on the database's loop and wait for it, from another thread."""
        return asyncio.run_coroutine_threadsafe(_awaited(coroutine), self.loop).result()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction on a pooled connection, for cold paths (READ COMMITTED)."""
        with translated():
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, for reads of several statements."""
        with translated():
            async with self.pool.acquire() as conn:
                yield conn

    async def fetchone(self, sql: str, *args: Any) -> asyncpg.Record | None:
        with translated():
            return await self.pool.fetchrow(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with translated():
            return await self.pool.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with translated():
            return await self.pool.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """One statement in a transaction of its own; its status ("UPDATE 1")."""
        with translated():
            return await self.pool.execute(sql, *args)

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call `callback` on every NOTIFY on `DUE_CHANNEL`, from any process."""
        listener = await self._listening()
        await listener.add_listener(DUE_CHANNEL, lambda *_: callback())

    async def watch_moves(self) -> None:
        """Move `epoch` on every control action, from any process (for claims)."""
        if not self._watching_moves:
            self._watching_moves = True
            listener = await self._listening()
            await listener.add_listener(MOVED_CHANNEL, lambda *_: self.moved())

    def moved(self) -> None:
        self.epoch += 1

    async def _listening(self) -> asyncpg.Connection:
        if self._listener is None:
            self._listener = await asyncpg.connect(self.url, server_settings=self.settings)
        return self._listener

    async def close(self) -> None:
        await self.writer.close()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self.pool.close()


async def _kept_as_is(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset: nothing to send. asyncpg rolls back a transaction left
    open before calling it; its default reset query (UNLISTEN, RESET ALL, CLOSE ALL, advisory
    locks unlocked) would cost a round trip per pooled statement, and undoes nothing here:
    no pool user sets session state (a LISTEN has a connection of its own, settings are
    given at connect, advisory locks are transaction-scoped)."""


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, _, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}@{place}"


async def _migrate(conn: Connection) -> None:
    """Apply what is missing, one process at a time (workers may start together)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                           "(version integer NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        for number, script in migrations():
            if number > current:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)


class _Write(Generic[T]):
    """One queued write and how its caller hears back, after the COMMIT: an asyncio
    future, a `threading.Event` a blocked thread waits on, or an `on_done` callback."""

    __slots__ = ("op", "waiter", "on_done", "done", "ok", "value", "answered")

    def __init__(self, op: WriteOp[T], waiter: asyncio.Future[T] | None = None,
                 on_done: WriteDone | None = None, done: threading.Event | None = None) -> None:
        self.op = op
        self.waiter = waiter
        self.on_done = on_done
        self.done = done
        self.ok = False
        self.value: Any = None
        self.answered = False

    def result(self) -> T:
        if not self.ok:
            raise self.value
        return self.value  # type: ignore[no-any-return]

    def answer(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.answered = ok, value, True
        if self.waiter is not None:
            if not self.waiter.done():
                if ok:
                    self.waiter.set_result(value)
                else:
                    self.waiter.set_exception(value)
        elif self.on_done is not None:
            self.on_done(ok, value)
        if self.done is not None:
            self.done.set()


COMMIT_NOTIFYING = f"NOTIFY {DUE_CHANNEL}; COMMIT"
"""A NOTIFY is sent at COMMIT, so it goes with it."""

MAX_BATCH = 4096
"""Most writes in one commit: bounds how long the first of a huge backlog waits."""

FENCES_SQL = (
    "SELECT i.tenant_id, i.instance_id, i.run_id, i.status FROM instances i "
    "JOIN unnest($1::text[], $2::text[]) AS f (tenant_id, instance_id) "
    "ON i.tenant_id = f.tenant_id AND i.instance_id = f.instance_id "
    "ORDER BY i.tenant_id, i.instance_id FOR NO KEY UPDATE OF i")


class GroupCommitWriter:
    """Commits batches of queued writes back to back on one connection, as a task of the
    event loop: no timer, a lone write pays one commit, a crowd shares one.

    A batch is BEGIN, one statement locking and reading the fences of its runs, its writes
    in queue order (each stretch of `Merged` writes as one statement a kind: the journal
    rows of every run in it, their settles, creations), COMMIT with a NOTIFY if a write
    made an instance due; every write is answered only after the COMMIT returned. If a
    statement fails, the batch is rolled back and each write runs again in a transaction of
    its own, so one bad write fails alone and the order holds.
    """

    def __init__(self, url: str, settings: dict[str, str], conn: asyncpg.Connection) -> None:
        self._url = url
        self._settings = settings
        self._conn: asyncpg.Connection | None = conn
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._queue: list[_Write[Any]] = []
        self._idle = True  # the task waits for `_wake`: a push must set it
        self._wake = asyncio.Event()
        self._stopping = False
        self.commits = 0
        self.writes = 0
        self.tally = CommitTally()
        self._task = asyncio.create_task(self._run(), name="dwf-pg-writer")

    @classmethod
    async def open(cls, url: str, settings: dict[str, str]) -> GroupCommitWriter:
        return cls(url, settings, await asyncpg.connect(url, server_settings=settings))

    def submit(self, op: WriteOp[T]) -> asyncio.Future[T]:
        waiter: asyncio.Future[T] = self._loop.create_future()
        self.push(_Write(op, waiter=waiter))
        return waiter

    def push(self, write: _Write[Any]) -> None:
        """Queue a write from any thread; writes pushed by one thread commit in that order."""
        with self._lock:
            self._queue.append(write)
            if not self._idle:
                return
            self._idle = False
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        await self._task
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    if not batch:
                        self._idle = True
                        break
                batch = [w for w in batch if w.waiter is None or not w.waiter.cancelled()]
                if not batch:
                    continue
                try:
                    await self._commit(batch)
                except Exception as exc:  # the writer must outlive any batch
                    log.exception("writer.batch_failed")
                    self._drop_connection()
                    for write in batch:
                        if not write.answered:
                            write.answer(False, storage_error(exc))
            if self._stopping:
                return

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._url, server_settings=self._settings)
        return self._conn

    def _drop_connection(self) -> None:
        """Its state is unknown (lost mid-transaction, say): the next batch connects anew."""
        if self._conn is not None and not self._conn.is_closed():
            self._conn.terminate()
        self._conn = None

    async def _commit(self, writes: list[_Write[Any]]) -> None:
        """Commit `writes` together; if a statement fails, each alone, in order. If the
        connection fails, nobody can tell whether a COMMIT in flight landed: every write
        not yet answered fails as unavailable (the engine puts runs back), none is run
        again here."""
        try:
            conn = await self._connection()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            failure = storage_error(exc)
            for write in writes:
                write.answer(False, failure)
            return
        together = await self._try_together(conn, writes, alone=len(writes) == 1)
        if isinstance(together, list):
            for write, (ok, value) in zip(writes, together, strict=True):
                write.answer(ok, value)
            return
        for index, write in enumerate(writes):
            alone = together if together is not None else await self._try_together(
                conn, [write], alone=True)
            if isinstance(alone, BaseException):
                for rest in writes[index:]:
                    rest.answer(False, alone)
                return
            assert alone is not None
            write.answer(*alone[0])

    async def _try_together(self, conn: asyncpg.Connection, writes: list[_Write[Any]],
                            alone: bool = False
                            ) -> list[tuple[bool, Any]] | BaseException | None:
        """One transaction for `writes`: their outcomes; None if a statement failed and it
        was rolled back (only when not `alone`: a lone write's failure is its outcome); the
        failure itself if the connection failed (the transaction's fate is unknown)."""
        batch = Batch(conn)
        outcomes: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        try:
            await conn.execute("BEGIN")
            try:
                await self._lock_fences(batch, writes)
                await self._run_ops(batch, writes, outcomes)
                # One round trip for both (a simple query of two statements).
                await conn.execute(COMMIT_NOTIFYING if batch.notify else "COMMIT")
            except BaseException:
                if not conn.is_closed():  # after a failed COMMIT: a harmless warning
                    await conn.execute("ROLLBACK")
                raise
        except _Broken as broken:
            return [(False, broken.cause)] if alone else None
        except Exception as exc:  # sorted below
            if (conn.is_closed() or not isinstance(exc, asyncpg.PostgresError)
                    or isinstance(exc, asyncpg.PostgresConnectionError)):
                self._drop_connection()
                return storage_error(exc)
            # A statement failed on a live connection, which rolled the transaction back.
            return [(False, storage_error(exc))] if alone else None
        self.commits += 1
        self.writes += len(writes)
        self.tally.batch_sizes.observe(len(writes))
        self.tally.commit_seconds.observe(time.perf_counter() - started)
        return outcomes

    @staticmethod
    async def _lock_fences(batch: Batch, writes: list[_Write[Any]]) -> None:
        ops: list[object] = [write.op for write in writes]
        keys = {op.fence_key for op in ops if isinstance(op, Fenced)}
        if not keys:
            return
        tenants, instances = zip(*sorted(keys), strict=True)
        for row in await batch.conn.fetch(FENCES_SQL, list(tenants), list(instances)):
            batch.fences[(row[0], row[1])] = (row[2], row[3])

    async def _run_ops(self, batch: Batch, writes: list[_Write[Any]],
                       outcomes: list[tuple[bool, Any]]) -> None:
        """Every op in queue order, but each stretch of `Merged` ops as one statement a
        kind (see `Merged`)."""
        stretch: list[tuple[int, Merged]] = []
        for index, write in enumerate(writes):
            op = write.op
            if isinstance(op, Merged):
                stretch.append((index, op))
                continue
            if stretch:
                outcomes.extend(await self._run_stretch(batch, stretch))
                stretch = []
            try:
                outcomes.append((True, await op(batch)))
            except CLEAN_FAILURES as exc:
                outcomes.append((False, exc))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                raise
            except Exception as exc:  # a bug in an op: its writes may be half done
                raise _Broken(exc) from exc
        if stretch:
            outcomes.extend(await self._run_stretch(batch, stretch))

    @staticmethod
    async def _run_stretch(batch: Batch, stretch: list[tuple[int, Merged]]
                           ) -> list[tuple[bool, Any]]:
        """The outcomes of a stretch of merged ops, in queue order."""
        kinds: dict[type[Merged], list[tuple[int, Merged]]] = {}
        for index, op in stretch:
            kinds.setdefault(type(op), []).append((index, op))
        first = stretch[0][0]
        outcomes: list[tuple[bool, Any] | None] = [None] * len(stretch)
        for kind, ops in sorted(kinds.items(), key=lambda item: item[0].merge_order):
            try:
                done = await kind.run_merged(batch, [op for _, op in ops])
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                raise
            except Exception as exc:  # a bug: the writes of the kind may be half done
                raise _Broken(exc) from exc
            for (index, _), outcome in zip(ops, done, strict=True):
                outcomes[index - first] = outcome
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]  # every slot filled above


class _Broken(Exception):
    """An op failed in a way that may have left its writes half done."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause
