"""Remembering which tokens were already used, so a captured token cannot be replayed.

The verifier only depends on the ``ReplayCache`` protocol: with several replicas behind a load
balancer, a store shared by all of them (Redis ``SET key 1 NX EXAT expires_at``, a database
unique key, ...) must back it, otherwise a token replayed against another replica goes
unnoticed. ``InMemoryReplayCache`` is the single-process default.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("cds_service.auth")


class ReplayCacheFullError(RuntimeError):
    """The cache cannot remember one more token; the caller must reject rather than forget."""


class ReplayCache(Protocol):
    """Atomic "first use" check for token identifiers."""

    def check_and_store(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (Unix time) and return True on its first use.

        Return False if ``key`` was recorded before and has not expired. Check and record must
        be one atomic step, or two concurrent requests could both use the same token. Raise if
        the answer is unknown (store down, full); the verifier then rejects the request.
        """
        ...


class InMemoryReplayCache:
    """Thread-safe in-process replay cache with expiry and a hard size bound.

    Expired entries are purged on every call (amortised O(log n) through a heap ordered by
    expiry), so memory tracks only live tokens. When ``max_entries`` live tokens are held,
    new tokens are refused with ``ReplayCacheFullError`` instead of evicting live entries,
    which would reopen the replay window. Calls never block on I/O, so using it from async
    code is fine.
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time):
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def check_and_store(self, key: str, expires_at: float) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            if key in self._expiry:
                return False
            if expires_at <= now:
                # Already expired: the token is rejected elsewhere; nothing worth remembering.
                return True
            if len(self._expiry) >= self._max_entries:
                logger.warning("replay cache full (%d live entries)", len(self._expiry))
                raise ReplayCacheFullError("replay cache is full")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
