"""Remembering which tokens were already used, so a captured token cannot be replayed.

The verifier only depends on the ``ReplayCache`` protocol. With several workers or replicas,
every one of them must consult the same store, or a token replayed against another worker goes
unnoticed: the service uses ``cds_service.store.DatabaseReplayCache`` on its state database.
"""

from __future__ import annotations

from typing import Protocol


class ReplayCache(Protocol):
    """Atomic "first use" check for a client's token identifiers."""

    async def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record ``(iss, jti)`` until ``expires_at`` (Unix time); True on its first use.

        Return False if it was recorded before and has not expired. Check and record must be
        one atomic step across every worker, or two concurrent requests could both use the
        same token. Raise if the answer is unknown (store down); the verifier then rejects.
        """
        ...
