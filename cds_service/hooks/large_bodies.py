"""Large hook requests are read in a separate process, so the event loop never parses them.

Reading a request near the caps (5 MB of JSON, 20,000 resources) costs about half a second of
CPU, nearly all of it holding the GIL: orjson building a million objects, the cyclic garbage
collector walking them, and the checks of every entry. A worker thread does not help, since it
holds the same GIL that the event loop needs to answer /health and the other calls. So a body
over `OFFLOAD_BYTES` goes as bytes to a small process pool. The child parses and checks it
exactly as the event loop would (400 and 413 with the same messages) and sends back the same
request, as JSON, with each prefetch Bundle cut down to the entries the rules can read
(`FactExtractor.relevant`): kilobytes instead of megabytes. The event loop answers that small
request along the ordinary path, so the answer is the one the whole request would get.

The pool is one per process (a uvicorn worker), made on the first large request (that request
waits about a second for the child to start; a worker that never gets one never starts it). The
child runs at a lower priority than the workers (cds_service.hooks.reader_child).
`CDS_READ_PROCESSES=0` reads large bodies in a worker thread instead (the loop then stalls while
they are parsed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import orjson

from cds_service.api_errors import ApiError
from cds_service.clinical.extract import FactExtractor
from cds_service.clinical.raw import OBJECT
from cds_service.hooks import reader_child
from cds_service.hooks.limits import Caps, TooLargeError, check_caps
from cds_service.hooks.models import RequestError, parse_hook_request
from cds_service.hooks.prefetch import PrefetchError, read_prefetch
from cds_service.hooks.prefetch_templates import PREFETCH
from cds_service.protocol import default_protocol
from cds_service.request_body import parse_json

logger = logging.getLogger("cds_service.app")

#: Bodies larger than this are read off the event loop. Usual requests (tens of kilobytes) take
#: a few milliseconds on it, less than a hand-off to another process would.
OFFLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Slimmed:
    """What the child sends back: the cut-down request as JSON, or the error to answer."""

    body: bytes | None
    status: int = 200
    message: str = ""


@cache
def _extractor() -> FactExtractor:
    return FactExtractor(default_protocol())


def warm() -> None:
    """Read the tables now, in the child, rather than on its first request."""
    _extractor()


def slim(raw: bytes, hook: str, caps: Caps, today: date) -> Slimmed:
    """The request `raw` with only the prefetch entries the rules can read; or its error.

    Runs in the child process. Every check the event loop makes on a request is made here on
    the whole request (JSON, nesting, envelope, caps, the type and patient of every entry), so
    nothing that is refused in full is answered once cut down."""
    try:
        body = parse_json(raw)
        request = parse_hook_request(body, hook)
        check_caps(request.prefetch, request.context, caps)
        read_prefetch(request)
    except ApiError as exc:
        return Slimmed(None, exc.status, exc.message)
    except (RequestError, PrefetchError) as exc:
        return Slimmed(None, 400, str(exc))
    except TooLargeError as exc:
        return Slimmed(None, 413, str(exc))
    prefetch = body.get("prefetch") or {}
    body["prefetch"] = {
        key: _slim_value(prefetch[key], today) for key in PREFETCH if key in prefetch
    }
    return Slimmed(orjson.dumps(body))


def _slim_in_child(raw: bytes, hook: str, caps: Caps, today: date) -> Slimmed:
    """`slim` without the cyclic garbage collector, which the child alone may switch off.

    A JSON tree holds no reference cycles, so while it is built the collector would only walk
    it over and over: about half the time of parsing 5 MB. It runs again once the tree is freed.
    """
    gc.disable()
    try:
        return slim(raw, hook, caps, today)
    finally:
        gc.enable()


def _slim_value(value: Any, today: date) -> Any:
    """A Bundle with only its relevant entries; anything else as it is."""
    if not isinstance(value, OBJECT) or value.get("resourceType") != "Bundle":
        return value
    entries = value.get("entry")
    if not isinstance(entries, list):
        return value
    resources = [e["resource"] for e in entries if isinstance(e, OBJECT) and "resource" in e]
    kept = {id(r) for r in _extractor().relevant(resources, today=today)}
    return {
        **value,
        "entry": [e for e in entries if isinstance(e, OBJECT) and id(e.get("resource")) in kept],
    }


class LargeBodyReader:
    """Hands large bodies to a process pool (made on first use) and gets the slim JSON back."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running an event loop and threads is not safe.
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=reader_child.start,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def slim(self, raw: bytes, hook: str, caps: Caps, today: date) -> bytes:
        """`raw` cut down to what the rules read; raises ApiError (400, 413) as parsing would."""
        if self.processes < 1:
            result = await asyncio.to_thread(slim, raw, hook, caps, today)
        else:
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(
                    self._executor(), _slim_in_child, raw, hook, caps, today
                )
            except BrokenProcessPool:
                # The child died (killed for memory, most likely): a new pool for the next
                # request, and this one read in a thread rather than refused.
                logger.error("the process reading large requests died; it is restarted")
                self._pool = None
                result = await asyncio.to_thread(slim, raw, hook, caps, today)
        if result.body is None:
            raise ApiError(result.status, result.message)
        return result.body

    def close(self) -> None:
        """Stop the child now: the worker's exit would otherwise wait for a child that is still
        starting (seconds on a busy machine) to take its stop message."""
        if self._pool is not None:
            children = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for child in children:
                child.terminate()
            self._pool = None


@cache
def process_reader(processes: int) -> LargeBodyReader:
    """The process's reader (one pool per uvicorn worker, shared by the apps it serves)."""
    return LargeBodyReader(processes)
