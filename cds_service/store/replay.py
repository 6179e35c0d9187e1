"""Replay protection shared by every worker and replica: (iss, jti) rows with a unique key.

A token's identifier is stored until the token is dead; a second use, on any worker that shares
the database, hits the primary key and is refused. There is no size cap: a row lives only as
long as its token, so one client sending many tokens grows the table by its own tokens and never
makes another client's token fail. Expired rows are deleted at most once a minute per worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cds_service.store.claims import ExpiringClaims
from cds_service.store.database import AsyncEngineSource
from cds_service.store.tables import replay_token


class DatabaseReplayCache:
    """The verifier's `ReplayCache` on the state database."""

    def __init__(self, engine: AsyncEngineSource, *, clock: Callable[[], float] = time.time):
        self._claims = ExpiringClaims(engine, replay_token, clock=clock)

    async def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        return await self._claims.claim({"iss": iss, "jti": jti}, expires_at)

    async def purge(self, now: float | None = None) -> int:
        """Delete the rows of dead tokens; returns how many."""
        return await self._claims.purge(now)
