"""The process that reads large JSON for a worker: hook requests, `$apply` bodies, FHIR pages.

Reading JSON near the caps (a 5 MB request, a 16 MB page of search results) costs about half a
second of CPU, nearly all of it holding the GIL: orjson building a million objects, the cyclic
garbage collector walking them, and the checks of every entry. A worker thread does not help,
since it holds the same GIL that the event loop needs to answer /health and the other calls.
So input over `OFFLOAD_BYTES` goes as bytes to a small process pool, where a function parses
and checks all of it exactly as the event loop would and sends back what the loop needs: the
input cut down to the entries the rules read (kilobytes instead of megabytes), or the error
to answer.

One pool per process (a uvicorn worker), shared by every kind of large input and made on the
first one (that input waits about a second for the child to start; a worker that never gets
one never starts it). The child runs at a lower priority than the workers
(cds_service.offload.child). `CDS_READ_PROCESSES=0` reads large input in a worker thread
instead (the loop then stalls while it is parsed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from typing import Any, TypeVar

from cds_service.offload import child

logger = logging.getLogger("cds_service.app")

T = TypeVar("T")

#: Input larger than this is read off the event loop. Usual requests and pages (tens of
#: kilobytes) take a few milliseconds on it, less than a hand-off to another process would.
OFFLOAD_BYTES = 256 * 1024


def _without_gc(read: Callable[..., T], *args: Any) -> T:
    """`read(*args)` without the cyclic garbage collector, which the child alone may switch off.

    A JSON tree holds no reference cycles, so while it is built the collector would only walk
    it over and over: about half the time of parsing 5 MB. It runs again once the tree is freed.
    """
    gc.disable()
    try:
        return read(*args)
    finally:
        gc.enable()


class ReaderPool:
    """Runs reading functions in a process pool (made on first use), or in a thread."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._started: Future[None] | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running an event loop and threads is not safe.
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=child.start,
                initargs=(os.getpid(),),
            )
            # Done once the child has started and loaded what reading needs.
            self._started = self._pool.submit(child.started)
        return self._pool

    async def ready(self) -> None:
        """Wait until the child is up (starting it if need be); nothing without processes."""
        if self.processes >= 1:
            self._executor()
            assert self._started is not None
            await asyncio.wrap_future(self._started)

    async def run(self, read: Callable[..., T], *args: Any, wait: bool = True) -> T:
        """`read(*args)` in the child; `read` is a module-level function and returns its
        errors as values (an exception raised in the child is the service's own fault).

        `wait=False` for input that runs against a clock (a fetch's timeout): while the child
        is still starting (about a second, more on a busy machine) this input is read in a
        thread, as with `CDS_READ_PROCESSES=0`, and the child goes on starting for the next."""
        if self.processes < 1:
            return await asyncio.to_thread(read, *args)
        executor = self._executor()
        if not wait and self._started is not None and not self._started.done():
            return await asyncio.to_thread(read, *args)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, _without_gc, read, *args)
        except BrokenProcessPool:
            # The child died (killed for memory, most likely): a new pool for the next input,
            # and this one read in a thread rather than refused.
            logger.error("the process reading large input died; it is restarted")
            if self._pool is executor:  # another call may have made the new pool already
                self._pool = self._started = None
            return await asyncio.to_thread(read, *args)

    def close(self) -> None:
        """Stop the child now: the worker's exit would otherwise wait for a child that is still
        starting (seconds on a busy machine) to take its stop message."""
        if self._pool is not None:
            children = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in children:
                process.terminate()
            self._pool = self._started = None


@cache
def process_pool(processes: int) -> ReaderPool:
    """The process's pool (one per uvicorn worker, shared by the apps and inputs it serves)."""
    return ReaderPool(processes)
