"""Alembic migrations, applied at start-up or by `b12-cds db upgrade`.

Migrations run in a thread of their own with their own event loop and engine, so they can be
called from synchronous start-up code and from inside a running loop alike. Several workers
starting at once migrate one after the other: SQLite's `BEGIN IMMEDIATE` and a PostgreSQL
advisory lock serialise them, and the later ones find the schema at head.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from cds_service.store.database import DatabaseUrl, StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(target: DatabaseUrl) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["target"] = target
    return config


def head_revision() -> str:
    """The revision this build's migrations end at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0][:200] if text else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def upgrade(target: DatabaseUrl, revision: str = "head") -> None:
    """Bring the schema to `revision`; StoreError (naming the variable) if that fails."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(target), revision)
        except BaseException as exc:  # reported to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="b12-cds-migrate")
    worker.start()
    worker.join()
    if failure:
        exc = failure[0]
        if "Can't locate revision" in str(exc):
            raise target.error(
                "the database schema is at a revision this build does not know (a newer build "
                "migrated it)"
            ) from None
        raise target.error(f"cannot reach or migrate the database: {_first_line(exc)}") from None


def current_revision(target: DatabaseUrl) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext

    from cds_service.store.database import create_engine

    async def read() -> str | None:
        engine = create_engine(target)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()

    result: list[str | None] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(read()))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="b12-cds-revision")
    worker.start()
    worker.join()
    if failure:
        raise target.error(f"cannot reach the database: {_first_line(failure[0])}")
    return result[0]


__all__ = ["StoreError", "alembic_config", "current_revision", "head_revision", "upgrade"]
