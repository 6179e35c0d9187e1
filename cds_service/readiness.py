"""Readiness: whether this process can answer calls now, and if not, why.

A check is `async () -> str | None`, None when its part is ready, otherwise the reason in
words (no secrets: the probe's answer is public). Parts register their checks by name
(`readiness.add("database", store.ping)`); each check runs under a time limit, so a probe
always answers within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cds_service.safe_log import where_raised

logger = logging.getLogger("cds_service.health")

Check = Callable[[], Awaitable[str | None]]
#: Longest time one check may take before it counts as not ready.
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Outcome:
    name: str
    reason: str | None

    @property
    def ready(self) -> bool:
        return self.reason is None


class Readiness:
    def __init__(self, *, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self._checks: dict[str, Check] = {}
        self._timeout_s = timeout_s

    def add(self, name: str, check: Check) -> None:
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    async def _run(self, name: str, check: Check) -> Outcome:
        try:
            async with asyncio.timeout(self._timeout_s):
                return Outcome(name, await check())
        except TimeoutError:
            return Outcome(name, f"no answer within {self._timeout_s:g} s")
        except Exception as exc:
            logger.error("readiness check %s failed: %s", name, where_raised(exc))
            return Outcome(name, f"the check failed ({type(exc).__name__})")

    async def run(self) -> list[Outcome]:
        return list(await asyncio.gather(*(self._run(name, c) for name, c in self._checks.items())))
