"""Write-behind for the audit trail: answers are not held up by a commit each.

Records are written in batches by one task per worker: it waits `delay_s` after the first
record so that several answers share a commit (a `flush` cuts the wait short), then writes
everything pending. A failed write
keeps the batch and retries, so the database being down delays the audit but never drops it
while the process lives; past `max_pending` records, new answers wait for the writer instead of
growing memory without bound. `flush()` returns when everything submitted before it is written
(feedback calls it so the cards it refers to are in the database; shutdown calls it last).
What a crash (SIGKILL, power cut) can lose is what is still pending: the audit records of the
answers of the last `delay_s` plus one write.

No asyncio primitive is kept between calls: a primitive belongs to the loop that first waited
on it, and tests serve one app from several loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cds_service.safe_log import where_raised

logger = logging.getLogger("cds_service.store")
T = TypeVar("T")

RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class WriteBehind(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        delay_s: float = 0.05,
        max_batch: int = 500,
        max_pending: int = 20_000,
    ) -> None:
        self._write = write
        self._delay_s = delay_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._pending: list[T] = []
        self._writing = 0
        self._task: asyncio.Task[None] | None = None
        self._hurry = False
        #: Set while the writer waits out `delay_s`: `flush` ends the wait (same loop only).
        self._wake: asyncio.Future[None] | None = None
        #: Told the depth each time it changes (the audit-queue gauge).
        self.on_depth: Callable[[int], None] | None = None

    @property
    def depth(self) -> int:
        """Records submitted and not yet committed (a metric: it should stay near zero)."""
        return len(self._pending) + self._writing

    async def submit(self, record: T) -> None:
        while len(self._pending) >= self._max_pending:
            # The database is slower than the answers: wait for it rather than drop a record.
            await self._wait(timeout=1.0)
        self._pending.append(record)
        self._report()
        self._start()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending; False if `timeout` passed first."""
        self._hurry = True
        loop = asyncio.get_running_loop()
        wake = self._wake
        if wake is not None and not wake.done() and wake.get_loop() is loop:
            wake.set_result(None)  # whoever flushes waits for the commit, not for the delay
        deadline = None if timeout is None else loop.time() + timeout
        while self.depth:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await self._wait(timeout=left)
        return True

    def _report(self) -> None:
        if self.on_depth is not None:
            self.on_depth(self.depth)

    def _start(self) -> asyncio.Task[None]:
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._task = loop.create_task(self._run(), name="b12-cds-audit-writer")
        return task

    async def _wait(self, *, timeout: float | None) -> None:
        task = self._start()
        await asyncio.wait({task}, timeout=timeout)

    async def _run(self) -> None:
        failures = 0
        while self._pending:
            if not self._hurry and self._delay_s > 0 and failures == 0:
                self._wake = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait({self._wake}, timeout=self._delay_s)
                finally:
                    self._wake = None
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            self._writing = len(batch)
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._pending[:0] = batch  # the loop is closing: kept for a later flush
                raise
            except Exception as exc:
                self._pending[:0] = batch  # kept, in order, for the next try
                pause = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                logger.error(
                    "audit write failed (%d record(s) kept, retry in %.1f s): %s",
                    len(batch),
                    pause,
                    where_raised(exc),
                )
            else:
                failures = 0
            finally:
                self._writing = 0  # the batch is either written or back in `_pending`
                self._report()
            if failures:
                await asyncio.sleep(pause)
        self._hurry = False
