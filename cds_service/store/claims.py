"""First use of a key, shared by every worker and replica: rows with a unique key that expire.

One atomic INSERT ... ON CONFLICT decides which caller is first, on any worker that shares the
database; a row whose time is up is taken over as new. Expired rows are deleted at most once a
minute per worker, and by `b12-cds db purge`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from sqlalchemy import Table, delete

from cds_service.store.database import AsyncEngineSource
from cds_service.store.dialect import insert_for

PURGE_INTERVAL_S = 60.0


class ExpiringClaims:
    """Claims on `table`: its primary key is the claimed key, `expires_at` a Unix time."""

    def __init__(
        self, engine: AsyncEngineSource, table: Table, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._table = table
        self._clock = clock
        self._next_purge = 0.0

    def now(self) -> float:
        return self._clock()

    async def claim(self, key: Mapping[str, str], expires_at: float) -> bool:
        """True for the first claim of `key` while it lives, False for every later one."""
        now = self._clock()
        table = self._table
        async with self._engine().begin() as connection:
            insert = insert_for(connection, table)
            # One atomic statement: a new row, or the row of a claim that has expired.
            statement = insert.values(**key, expires_at=expires_at).on_conflict_do_update(
                index_elements=list(table.primary_key.columns),
                set_={"expires_at": insert.excluded.expires_at},
                where=table.c.expires_at <= now,
            )
            first = (await connection.execute(statement)).rowcount == 1
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL_S
            await self.purge(now)
        return first

    async def purge(self, now: float | None = None) -> int:
        """Delete the expired rows; returns how many."""
        moment = self._clock() if now is None else now
        async with self._engine().begin() as connection:
            result = await connection.execute(
                delete(self._table).where(self._table.c.expires_at <= moment)
            )
        return int(result.rowcount or 0)
