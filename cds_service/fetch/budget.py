"""How many bytes of FHIR answers the fallback fetch may hold: per call and per process.

Each answer is buffered, then parsed into objects several times its size, and those live until
the call is answered. Without a bound, concurrent calls over large records add up to an
out-of-memory kill that takes every other call down with it. Bytes are reserved as they arrive;
past either budget the query fails and its key is unavailable (412 for a required key), which
the EHR can retry, instead of the process dying.

A reservation lasts for the hook call: the app opens `call_scope()` around reading the record
and answering, and everything reserved inside it is given back when the scope ends. Outside a
scope (a fetch on its own), the reservations end with the `fetch` call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


class BudgetExceededError(Exception):
    """A reservation would pass a budget; `reason` says which, in words for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Usage:
    """What one call has reserved, by budget."""

    held: dict[MemoryBudget, int] = field(default_factory=dict)

    def total(self, budget: MemoryBudget) -> int:
        return self.held.get(budget, 0)


_current: ContextVar[_Usage | None] = ContextVar("fetch_budget_usage", default=None)


class MemoryBudget:
    """Bytes the fetches of one call (`per_call`) and of all calls (`total`) may hold."""

    def __init__(self, *, per_call: int, total: int) -> None:
        if per_call < 1 or total < per_call:
            raise ValueError("budgets must be positive and per_call must not exceed total")
        self.per_call = per_call
        self.total = total
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, usage: _Usage, size: int) -> None:
        """Reserve `size` bytes for the call `usage`, or raise BudgetExceededError."""
        with self._lock:
            if usage.total(self) + size > self.per_call:
                raise BudgetExceededError(
                    f"answers larger than the {self.per_call // (1024 * 1024)} MB one call may "
                    "hold (CDS_FHIR_MAX_BYTES_PER_CALL)"
                )
            if self._used + size > self.total:
                raise BudgetExceededError(
                    "the service's memory for FHIR answers is in use by other calls "
                    "(CDS_FHIR_MAX_BYTES_TOTAL); retry shortly"
                )
            self._used += size
            usage.held[self] = usage.total(self) + size

    def release(self, usage: _Usage) -> None:
        with self._lock:
            self._used -= usage.held.pop(self, 0)


def current_usage() -> _Usage | None:
    return _current.get()


@contextmanager
def call_scope() -> Iterator[None]:
    """Reservations made inside are held until the scope ends (one hook call)."""
    usage = _Usage()
    token = _current.set(usage)
    try:
        yield
    finally:
        _current.reset(token)
        for budget in list(usage.held):
            budget.release(usage)


@contextmanager
def fetch_scope() -> Iterator[None]:
    """Inside a call scope, nothing; outside one, a scope for this fetch alone."""
    if _current.get() is not None:
        yield
        return
    with call_scope():
        yield
