"""Cards raised once per hook instance, shared by every worker: (hookInstance, card kind) rows.

order-select fires again with the same hookInstance each time the clinician picks an order; a
card that is only a reminder (an untreated deficiency beside a B12-relevant draft) is answered
the first time and left out after that, whichever worker answers. A hook instance lasts one
ordering session, so a row is kept `RAISED_TTL_S` and then deleted (at most once a minute per
worker, and by `b12-cds db purge`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cds_service.store.claims import ExpiringClaims
from cds_service.store.database import AsyncEngineSource
from cds_service.store.tables import raised_card

#: Longer than any ordering session; after it the same hookInstance raises the card again.
RAISED_TTL_S = 24 * 3600.0


class RaisedCards:
    def __init__(self, engine: AsyncEngineSource, *, clock: Callable[[], float] = time.time):
        self._claims = ExpiringClaims(engine, raised_card, clock=clock)

    async def first_time(self, hook_instance: str, kind: str) -> bool:
        """True if no worker has raised a card of `kind` for `hook_instance` yet."""
        expires_at = self._claims.now() + RAISED_TTL_S
        return await self._claims.claim({"hook_instance": hook_instance, "kind": kind}, expires_at)

    async def purge(self, now: float | None = None) -> int:
        """Delete the rows of hook instances that are over; returns how many."""
        return await self._claims.purge(now)
