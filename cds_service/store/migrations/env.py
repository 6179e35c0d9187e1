"""Alembic environment: online migrations over the service's own async engine."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context

from cds_service.store.database import DatabaseUrl, create_engine
from cds_service.store.tables import metadata

#: Any constant: PostgreSQL sessions migrating at once wait on this advisory lock in turn.
_PG_MIGRATION_LOCK = 1_612_162_026


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        context.run_migrations()


async def _online(target: DatabaseUrl) -> None:
    engine = create_engine(target)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


target = context.config.attributes.get("target")
if not isinstance(target, DatabaseUrl):
    raise RuntimeError("run migrations through cds_service.store.migrate or `b12-cds db upgrade`")
asyncio.run(_online(target))
