"""Where the state lives: the database URL from the settings and the async engine on it.

SQLite (aiosqlite) in `CDS_DATA_DIR` is the embedded default, so `make run` and several workers
on one machine need nothing else; `CDS_DATABASE_URL` names a PostgreSQL server (asyncpg) for
replicas on several machines. Every error names the variable the operator has to fix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cds_service.settings import Settings, SettingsError
from cds_service.store.audit_writer import AuditWriter, PostgresAuditWriter, SqliteAuditWriter

# The drivers' debug logs quote statement parameters, which hold patient data: never let them
# through, whatever level the root logger is at (alembic's INFO lines are start-up noise).
for _name in ("aiosqlite", "sqlalchemy", "asyncpg", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)

SQLITE_FILE = "b12-cds.sqlite3"
#: How long a SQLite writer waits for another worker's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class StoreError(SettingsError):
    """The database cannot be opened, reached or migrated: the service cannot start."""


@dataclass(frozen=True)
class DatabaseUrl:
    """The URL to connect to and the variable that chose it (named in every error)."""

    url: URL
    variable: str

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def shown(self) -> str:
        """The URL without its password, for messages."""
        return self.url.render_as_string(hide_password=True)

    def error(self, problem: str) -> StoreError:
        return StoreError(f"{self.variable}: {problem} ({self.shown()})")


def database_url(settings: Settings) -> DatabaseUrl:
    """`CDS_DATABASE_URL` if set, else the SQLite file in `CDS_DATA_DIR` (created if needed)."""
    if settings.database_url:
        try:
            url = make_url(settings.database_url)
        except ArgumentError:
            raise StoreError("CDS_DATABASE_URL is not a database URL") from None
        driver = _DRIVERS.get(url.drivername)
        if driver is None:
            raise StoreError(
                f"CDS_DATABASE_URL: unsupported database {url.drivername!r} "
                "(postgresql://... or sqlite:///path)"
            )
        return DatabaseUrl(url.set(drivername=driver), "CDS_DATABASE_URL")
    directory = Path(settings.data_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"CDS_DATA_DIR: cannot create {str(directory)!r} ({exc.strerror or exc})"
        ) from None
    path = (directory / SQLITE_FILE).resolve()
    return DatabaseUrl(URL.create("sqlite+aiosqlite", database=str(path)), "CDS_DATA_DIR")


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL for concurrent readers and workers, full sync so a commit survives a power cut, and
    `BEGIN IMMEDIATE`: a transaction takes the write lock when it starts, waiting up to the busy
    timeout, instead of failing when a read turns into a write while another worker writes.
    (The audit writer's own connection, `audit_writer.SqliteAuditWriter`, commits with
    `synchronous=NORMAL`.)"""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver issues no BEGIN of its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(target: DatabaseUrl) -> AsyncEngine:
    if target.is_sqlite:
        engine = create_async_engine(target.url, pool_size=4, max_overflow=8)
        _sqlite_setup(engine)
        return engine
    return create_async_engine(
        target.url, pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=1800
    )


AsyncEngineSource = Callable[[], AsyncEngine]


class Database:
    """The engine of one app, created on first use inside the event loop that serves it.

    asyncpg connections belong to the loop that opened them, so a PostgreSQL engine is rebuilt
    when it is first used from another loop (only tests run one app on several loops); the
    aiosqlite connections are not tied to a loop and one engine serves them all.
    """

    def __init__(self, target: DatabaseUrl) -> None:
        self.target = target
        self._engine: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._audit_writer: AuditWriter | None = None

    def __call__(self) -> AsyncEngine:
        loop = asyncio.get_running_loop()
        if self._engine is None or (not self.target.is_sqlite and self._loop is not loop):
            self._engine = create_engine(self.target)
            self._loop = loop
        return self._engine

    def audit_writer(self) -> AuditWriter:
        """What the audit batches are committed with (`audit_writer`), one per app.

        On SQLite a connection of its own with `synchronous=NORMAL`: the audit is written behind
        and already lost if the process dies before its batch, so an fsync per batch bought
        little; feedback and replay rows are committed on the main engine with a full fsync,
        which also makes every audit batch before them durable. On PostgreSQL the main engine.
        """
        if self._audit_writer is None:
            if self.target.is_sqlite:
                path = self.target.url.database
                assert path  # database_url always names the file
                self._audit_writer = SqliteAuditWriter(path, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
            else:
                self._audit_writer = PostgresAuditWriter(self)
        return self._audit_writer

    async def ping(self) -> None:
        """Raise unless the database answers (a readiness check)."""
        async with self().connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._audit_writer is not None:
            await self._audit_writer.close()
        if self._engine is not None and (
            self.target.is_sqlite or self._loop is asyncio.get_running_loop()
        ):
            await self._engine.dispose()
        self._engine = None
        self._loop = None
