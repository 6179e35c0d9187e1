"""The audit batches' INSERTs, on the database driver itself.

Every answer adds a row to `guidance_response` and one per card to `issued_card`; these two
INSERTs are the only statements on the hot path of every answer. Through SQLAlchemy Core and
aiosqlite a batch cost about 150 µs of CPU per answer (parameter processing per row and column,
and a thread hop per statement, begin and commit): more than the 10% of patient-view's
throughput the audit may take. Here the rows are plain tuples handed to the driver's
`executemany` once per batch:

- SQLite: a `sqlite3` connection of its own (WAL, `synchronous=NORMAL`, `BEGIN IMMEDIATE`),
  committed on the event loop; a thread only waits for a lock another worker holds and runs
  the checkpoints (`SqliteAuditWriter`);
- PostgreSQL: asyncpg's `executemany` on a connection of the engine's pool, in one transaction.

The values are stored exactly as SQLAlchemy Core would store them (the SQLite timestamps go
through the column type's own bind processor), so the reads and searches through Core see no
difference; `tests/store` reads every written row back through the operator API.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.store.tables import guidance_response, issued_card

Row = tuple[Any, ...]
#: SQLITE_BUSY and SQLITE_LOCKED (primary codes): another connection holds the lock.
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

#: The columns written, in the order of the row tuples `AuditLog` builds.
RESPONSE_COLUMNS = (
    "id",
    "request_identifier",
    "module",
    "subject",
    "occurred_at",
    "status",
    "resource",
)
CARD_COLUMNS = (
    "card_uuid",
    "guidance_response_id",
    "service",
    "kind",
    "rules",
    "suggestions",
    "issued_at",
)


def _insert(table: Table, columns: Sequence[str], placeholders: Sequence[str]) -> str:
    """An INSERT that skips rows already there: a batch retried after a failure that had in
    fact committed inserts nothing twice."""
    for name in columns:
        assert name in table.c, name  # a renamed column fails at import, not in production
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(placeholders)}) ON CONFLICT DO NOTHING"
    )


def _sqlite_insert(table: Table, columns: Sequence[str]) -> str:
    return _insert(table, columns, ["?"] * len(columns))


def _postgres_insert(table: Table, columns: Sequence[str]) -> str:
    return _insert(table, columns, [f"${i}" for i in range(1, len(columns) + 1)])


def _sqlite_datetime() -> Callable[[datetime], str]:
    """How SQLAlchemy's SQLite DateTime stores a value (text), for the raw rows to match."""
    dialect = sqlite.dialect()
    process = guidance_response.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process


class AuditWriter(Protocol):
    """Commits one batch: the response rows and the card rows, all or nothing."""

    #: Turns an answer's time into the value the driver takes.
    timestamp: Callable[[datetime], Any]

    async def write(self, responses: list[Row], cards: list[Row]) -> None: ...

    async def close(self) -> None: ...


class SqliteAuditWriter:
    """A connection of its own, committed on the event loop, the lock contended in a thread.

    A batch is a few hundred microseconds of SQLite's own work; handing it to a thread cost
    more than doing it: the thread and the loop take the GIL from each other at every row
    (the driver lets it go around each statement), a context switch each time. So the commit
    is made where the batch is, with a busy timeout of zero; only when another connection (a
    second worker, a feedback commit) holds the write lock is the batch handed to the thread,
    which waits for the lock up to the busy timeout, so the loop never waits for a lock.

    The WAL is not checkpointed by these commits (`wal_autocheckpoint=0`): a checkpoint copies
    megabytes and fsyncs the database, which the loop must not wait for. The thread runs a
    passive checkpoint (one that never blocks a writer) at most every `checkpoint_s` seconds
    while batches are committed, and one at close; the other connections keep their automatic
    checkpoints.

    `synchronous=NORMAL`: a commit is not fsynced; it survives the process being killed, and a
    power cut or an OS crash loses only the commits since the last fsync (the next feedback or
    replay commit on the database, made with `FULL`, or a checkpoint).
    """

    RESPONSES = _sqlite_insert(guidance_response, RESPONSE_COLUMNS)
    CARDS = _sqlite_insert(issued_card, CARD_COLUMNS)

    def __init__(self, path: str, *, busy_timeout_ms: int, checkpoint_s: float = 1.0) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._checkpoint_s = checkpoint_s
        self.timestamp = _sqlite_datetime()
        self._executor: ThreadPoolExecutor | None = None
        #: Used by one batch at a time (the write-behind queue has one writer), on the loop or
        #: in the thread, never both at once.
        self._connection: sqlite3.Connection | None = None
        #: The last checkpoint begun (`time.monotonic`) and its future.
        self._checkpointed_at = time.monotonic()
        self._checkpoint: Future[None] | None = None
        #: Batches that found the write lock taken (a metric for tests and the curious).
        self.contended = 0

    async def write(self, responses: list[Row], cards: list[Row]) -> None:
        try:
            try:
                self._commit(self._connect(), responses, cards)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in _BUSY:  # extended codes too
                    raise
                self.contended += 1
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._thread(), self._commit_waiting, responses, cards)
        except BaseException:
            self._disconnect()  # the batch stays queued and is retried on a fresh connection
            raise
        now = time.monotonic()
        if now - self._checkpointed_at >= self._checkpoint_s and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpointed_at = now
            self._checkpoint = self._thread().submit(self._run_checkpoint)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._run_checkpoint)
            executor.shutdown(wait=True)
        self._checkpoint = None
        self._disconnect()

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="b12-cds-audit-writer")
        return self._executor

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path,
                timeout=0,  # on the loop: a taken lock is reported at once, not waited for
                isolation_level=None,  # transactions are begun and ended here, explicitly
                check_same_thread=False,  # the loop's thread, or the thread, one at a time
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._connection = connection
        return self._connection

    def _commit(
        self, connection: sqlite3.Connection, responses: list[Row], cards: list[Row]
    ) -> None:
        connection.execute("BEGIN IMMEDIATE")  # the write lock now, or SQLITE_BUSY
        try:
            connection.executemany(self.RESPONSES, responses)
            if cards:
                connection.executemany(self.CARDS, cards)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _commit_waiting(self, responses: list[Row], cards: list[Row]) -> None:
        """In the thread: the same transaction, waiting for the lock up to the busy timeout."""
        connection = self._connect()
        connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        try:
            self._commit(connection, responses, cards)
        finally:
            connection.execute("PRAGMA busy_timeout=0")

    def _run_checkpoint(self) -> None:
        """A passive checkpoint on a connection of the thread's own: it copies what no reader
        still needs and never waits for, or blocks, a writer."""
        connection = sqlite3.connect(self._path, timeout=self._busy_timeout_ms / 1000)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the next one, or another connection's automatic one, copies it
        finally:
            connection.close()

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()  # an open transaction is rolled back


class PostgresAuditWriter:
    """asyncpg's `executemany` on a connection of the engine's pool, in one transaction."""

    RESPONSES = _postgres_insert(guidance_response, RESPONSE_COLUMNS)
    CARDS = _postgres_insert(issued_card, CARD_COLUMNS)

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self.timestamp: Callable[[datetime], Any] = _as_is

    async def write(self, responses: list[Row], cards: list[Row]) -> None:
        async with self._engine().connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection  # asyncpg.Connection
            async with driver.transaction():
                await driver.executemany(self.RESPONSES, responses)
                if cards:
                    await driver.executemany(self.CARDS, cards)

    async def close(self) -> None:
        """The connections are the engine's, closed with it."""


def _as_is(value: datetime) -> datetime:
    """asyncpg takes the answer's aware datetime for `timestamptz` as it is."""
    return value
