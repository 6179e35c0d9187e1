"""Replay protection on the database: once per (iss, jti), until the token is dead, no cap."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from cds_service.store import Store
from cds_service.store.replay import DatabaseReplayCache
from cds_service.store.tables import replay_token

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(store_settings: Any) -> Store:
    opened = Store(store_settings(auth=False))
    opened.open()
    return opened


async def test_a_token_is_accepted_once_per_issuer(store: Store) -> None:
    clock = Clock()
    cache = DatabaseReplayCache(store.database, clock=clock)
    assert await cache.check_and_store("https://ehr-a", "j1", clock.now + 300)
    assert not await cache.check_and_store("https://ehr-a", "j1", clock.now + 300)
    # The same jti from another client is another token.
    assert await cache.check_and_store("https://ehr-b", "j1", clock.now + 300)
    await store.database.dispose()


async def test_dead_rows_are_purged_and_their_jti_usable_again(store: Store) -> None:
    clock = Clock()
    cache = DatabaseReplayCache(store.database, clock=clock)
    assert await cache.check_and_store("iss", "old", clock.now + 10)
    assert await cache.check_and_store("iss", "young", clock.now + 1000)
    clock.now += 11
    # Not yet purged, but dead: a new token with that jti is a first use.
    assert await cache.check_and_store("iss", "old", clock.now + 10)
    clock.now += 11
    assert await cache.purge() == 1
    async with store.database().connect() as connection:
        left = (await connection.execute(select(replay_token.c.jti))).scalars().all()
    assert left == ["young"]
    await store.database.dispose()


async def test_concurrent_uses_admit_exactly_one(store: Store) -> None:
    caches = [DatabaseReplayCache(store.database) for _ in range(4)]  # as several workers
    expires = time.time() + 300
    results = await asyncio.gather(
        *(caches[i % 4].check_and_store("iss", "race", expires) for i in range(24))
    )
    assert sum(results) == 1
    await store.database.dispose()


async def test_a_flood_from_one_client_does_not_refuse_another(store: Store) -> None:
    """More live tokens from one client than any cap would allow: the other is unaffected."""
    expires = time.time() + 300
    flood = 120_000
    async with store.database().begin() as connection:
        for start in range(0, flood, 20_000):
            rows = [
                {"iss": "https://flooder", "jti": f"f{i}", "expires_at": expires}
                for i in range(start, start + 20_000)
            ]
            await connection.execute(insert(replay_token), rows)
    cache = DatabaseReplayCache(store.database)
    assert await cache.check_and_store("https://other-ehr", "mine", expires)
    assert await cache.check_and_store("https://flooder", "one-more", expires)
    async with store.database().connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(replay_token))).scalar()
    assert count == flood + 2
    await store.database.dispose()
