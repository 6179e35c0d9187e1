"""Replay protection shared by every worker and replica: (iss, jti) rows with a unique key.

A token's identifier is stored until the token is dead; a second use, on any worker that shares
the database, hits the primary key and is refused. There is no size cap: a row lives only as
long as its token, so one client sending many tokens grows the table by its own tokens and never
makes another client's token fail. Expired rows are deleted at most once a minute per worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete

from cds_service.store.database import AsyncEngineSource
from cds_service.store.dialect import insert_for
from cds_service.store.tables import replay_token

PURGE_INTERVAL_S = 60.0


class DatabaseReplayCache:
    """The verifier's `ReplayCache` on the state database."""

    def __init__(self, engine: AsyncEngineSource, *, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        self._next_purge = 0.0

    async def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        now = self._clock()
        async with self._engine().begin() as connection:
            insert = insert_for(connection, replay_token)
            # One atomic statement: a new row, or the row of a token that is already dead.
            statement = insert.values(
                iss=iss, jti=jti, expires_at=expires_at
            ).on_conflict_do_update(
                index_elements=[replay_token.c.iss, replay_token.c.jti],
                set_={"expires_at": insert.excluded.expires_at},
                where=replay_token.c.expires_at <= now,
            )
            first_use = (await connection.execute(statement)).rowcount == 1
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL_S
            await self.purge(now)
        return first_use

    async def purge(self, now: float | None = None) -> int:
        """Delete the rows of dead tokens; returns how many."""
        moment = self._clock() if now is None else now
        async with self._engine().begin() as connection:
            result = await connection.execute(
                delete(replay_token).where(replay_token.c.expires_at <= moment)
            )
        return int(result.rowcount or 0)
