"""The audit batches' INSERTs, on the database driver itself.

Every answer adds a row to `guidance_response` and one per card to `issued_card`; these two
INSERTs are the only statements on the hot path of every answer. Through SQLAlchemy Core and
aiosqlite a batch cost about 150 µs of CPU per answer (parameter processing per row and column,
and a thread hop per statement, begin and commit): more than the 10% of patient-view's
throughput the audit may take. Here the rows are plain tuples handed to the driver's
`executemany` once per batch:

- SQLite: one thread of its own with its own `sqlite3` connection (WAL, `synchronous=NORMAL`,
  `BEGIN IMMEDIATE`, the busy timeout of the other connections), one hop per batch;
- PostgreSQL: asyncpg's `executemany` on a connection of the engine's pool, in one transaction.

The values are stored exactly as SQLAlchemy Core would store them (the SQLite timestamps go
through the column type's own bind processor), so the reads and searches through Core see no
difference; `tests/store` reads every written row back through the operator API.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.store.tables import guidance_response, issued_card

Row = tuple[Any, ...]

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
    """One thread and one connection of its own: the event loop hands it a batch and waits
    for the commit without holding a connection of the pool the requests use.

    `synchronous=NORMAL`: a commit is not fsynced; it survives the process being killed, and a
    power cut or an OS crash loses only the commits since the last fsync (the next feedback or
    replay commit on the database, made with `FULL`, or a checkpoint).
    """

    RESPONSES = _sqlite_insert(guidance_response, RESPONSE_COLUMNS)
    CARDS = _sqlite_insert(issued_card, CARD_COLUMNS)

    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_ms / 1000
        self.timestamp = _sqlite_datetime()
        self._executor: ThreadPoolExecutor | None = None
        #: Touched only in the executor's one thread.
        self._connection: sqlite3.Connection | None = None

    async def write(self, responses: list[Row], cards: list[Row]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="b12-cds-audit-writer")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._commit, responses, cards)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
            executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # transactions are begun and ended here, explicitly
                check_same_thread=False,  # opened and used in the writer thread, closed there
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._connection = connection
        return self._connection

    def _commit(self, responses: list[Row], cards: list[Row]) -> None:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock now, waiting up to the timeout
            connection.executemany(self.RESPONSES, responses)
            if cards:
                connection.executemany(self.CARDS, cards)
            connection.execute("COMMIT")
        except BaseException:
            # The batch stays queued and is retried on a fresh connection.
            self._disconnect()
            raise

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
