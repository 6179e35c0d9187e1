"""Fetches prefetch data the EHR did not send, from the EHR's own FHIR server.

One ``FhirFetcher`` serves the whole app: it keeps one ``aiohttp.ClientSession`` (connection
pool) and no per-request state, so concurrent hook calls can share it. Each ``fetch`` call runs
all its queries concurrently under a per-query timeout and an overall deadline, follows search
paging, checks that every answer has the shape its query asks for, and reports what failed per
prefetch key with a reason that holds no secrets or PHI.

The fetcher checks shape, not content: a read must answer the resource type and id it asked
for, a search a ``searchset`` Bundle whose entries hold resources of known FHIR types. Whether
each resource is valid FHIR R4 is checked where it is read, by the clinical core, for exactly
the resources its rules read (the same rule as for prefetch data); the hook layer answers
invalid fetched data with 412, since it is data the service cannot get in usable form.
Validating all of a two-year record here would cost more than the whole assessment.

aiohttp: on the fetch path the HTTP client's own per-request work is a large part of a call
(seven queries per hook call), and aiohttp's connection pool and C parser keep it small.

The EHR's access token is only ever placed in the ``Authorization`` header of the requests of
the call that received it; it is not stored, logged or put into any error. Logs name the
prefetch key, the resource type, the status code and the timing, never the URL or query, which
carry patient ids. aiohttp logs no request URLs by itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urljoin

import aiohttp
from yarl import URL

from cds_service.fhir.search_completeness import match_count, short_of_total, total_of

from .allowlist import Allowlist, is_under
from .budget import BudgetExceededError, MemoryBudget, current_usage, fetch_scope
from .errors import DataUnavailable
from .pages import (
    RESOURCE_TYPE,
    PageReader,
    QueryFailed,
    check_page,
    check_resource,
    next_link,
    parse,
)

logger = logging.getLogger("cds_service.fetch")

FHIR_JSON = "application/fhir+json"
ACCEPTED_CONTENT_TYPES = frozenset({FHIR_JSON, "application/json"})

DEFAULT_TIMEOUT = 2.0
DEFAULT_DEADLINE = 4.0
DEFAULT_MAX_PAGES = 10
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 10_000
_CHUNK = 256 * 1024
# Reserved and already-escaped characters stay as they are in a request URL.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"

REASON_NO_SERVER = "no fhirServer in the request"
REASON_NOT_ALLOWED = "server not on the allowlist"
REASON_BAD_TOKEN = "access token is not a valid bearer token"
REASON_BAD_QUERY = "query is not a relative FHIR read or search"
REASON_CONNECT = "could not connect to the FHIR server"
REASON_NEXT_OFF_SERVER = "next page link leaves the FHIR server"

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 6750 b64token is stricter; any visible ASCII keeps odd but harmless tokens working while
# refusing the control characters that would let a token inject headers.
_TOKEN = re.compile(r"[\x21-\x7e]+")


#: Told how one query ended: (prefetch key, reason or None when it succeeded, seconds).
QueryObserver = Callable[[str, str | None, float], None]


@dataclass(frozen=True)
class ParsedQuery:
    kind: Literal["read", "search"]
    resource_type: str
    resource_id: str | None


def _is_id(segment: str) -> bool:
    return bool(_ID.fullmatch(segment)) and segment not in (".", "..")


def parse_query(query: str) -> ParsedQuery | None:
    """Classifies a rendered prefetch query, or returns None for anything that is not a plain
    relative read (``Type/id``, ``Type/id/_history/v``) or search (``Type?...``,
    ``Patient/id/Type?...``). Paths that could climb out of the FHIR base are refused."""
    if not isinstance(query, str) or not query or "#" in query or "\\" in query:
        return None
    if _CONTROL.search(query):
        return None
    path, _, _ = query.partition("?")
    lowered = path.lower()
    if "%" in path or ":" in path or " " in path or lowered.startswith("/"):
        return None
    segments = path.split("/")
    if not segments or not RESOURCE_TYPE.fullmatch(segments[0]):
        return None
    if len(segments) == 1:
        return ParsedQuery("search", segments[0], None)
    if not _is_id(segments[1]):
        return None
    if len(segments) == 2:
        return ParsedQuery("read", segments[0], segments[1])
    if len(segments) == 3 and RESOURCE_TYPE.fullmatch(segments[2]):
        return ParsedQuery("search", segments[2], None)
    if len(segments) == 4 and segments[2] == "_history" and _is_id(segments[3]):
        return ParsedQuery("read", segments[0], segments[1])
    return None


def unavailable_outcome(reason: str) -> dict[str, Any]:
    """What an optional key that could not be fetched maps to."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": reason}],
    }


class FhirFetcher:
    """Implements the hook layer's ``Fetcher`` protocol over real HTTP.

    ``timeout`` bounds each query including all its pages; ``deadline`` bounds a whole
    ``fetch`` call; ``max_pages`` caps search paging (more pages make the key unavailable
    rather than silently truncated, since partial data can change a clinical answer);
    ``max_bytes`` caps each response body (decompressed). A ``client`` passed in stays the
    caller's to close; one created here (lazily, on first use) is closed by ``aclose()``. Either
    way it belongs to the event loop it is first used on: create and close the fetcher in the
    app's lifespan. ``on_query(key, reason, seconds)`` is told how each query ended (``reason``
    None when it succeeded), for the metrics.
    """

    def __init__(
        self,
        allowlist: Allowlist,
        *,
        client: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        budget: MemoryBudget | None = None,
        on_query: QueryObserver | None = None,
    ) -> None:
        if timeout <= 0 or deadline <= 0 or max_pages < 1 or max_bytes < 1 or max_entries < 1:
            raise ValueError(
                "timeout, deadline, max_pages, max_bytes and max_entries must be positive"
            )
        self.allowlist = allowlist
        self.timeout = timeout
        self.deadline = deadline
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.budget = budget
        self.on_query = on_query
        self._client = client
        self._owns_client = client is None
        self._fresh: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        """The pooled client: keep-alive connections shared by every call."""
        if self._client is None:
            self._client = self._session()
        return self._client

    @property
    def fresh_client(self) -> aiohttp.ClientSession:
        """A client that opens a new connection for every request: the retry after a pooled
        connection turned out closed must not take another pooled one, closed as well."""
        if self._fresh is None:
            self._fresh = self._session(aiohttp.TCPConnector(force_close=True))
        return self._fresh

    def _session(self, connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            # No proxies or .netrc credentials picked up from the environment.
            trust_env=False,
            # A shared client must not carry one EHR session's cookies into the next call.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Accept": FHIR_JSON},
        )
        # aiohttp would retry on the next pooled connection, which a server that closed its
        # idle connections has closed too; `_get` retries once on a new connection instead.
        session._retry_connection = False
        return session

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            client, self._client = self._client, None
            await client.close()
        if self._fresh is not None:
            fresh, self._fresh = self._fresh, None
            await fresh.close()

    async def __aenter__(self) -> FhirFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def fetch(
        self,
        fhir_server: str | None,
        access_token: str | None,
        queries: Mapping[str, str],
        *,
        allow: Sequence[str] = (),
        optional: Set[str] = frozenset(),
        next_pages: Mapping[str, str] | None = None,
        pages: PageReader | None = None,
    ) -> dict[str, Any]:
        """Returns prefetch key -> FHIR JSON: the resource for a read, one searchset Bundle
        holding every page's entries for a search. Raises ``DataUnavailable`` naming every
        failed key not in ``optional``; a failed optional key maps to an OperationOutcome
        (see ``unavailable_outcome``). ``allow`` adds allowlist prefixes for this call only.
        ``next_pages`` maps keys of paginated prefetch Bundles to their ``next`` URL: their
        answer is one searchset Bundle of the entries of the pages from there on (the first
        page, the client's, counts against ``max_pages``). ``pages`` reads search pages over its
        threshold off the event loop (cut down to what the caller reads)."""
        next_pages = dict(next_pages or {})
        keys = [*queries, *(k for k in next_pages if k not in queries)]
        if not keys:
            return {}
        reasons: dict[str, str] = {}
        results: dict[str, Any] = {}
        if not fhir_server:
            reasons = dict.fromkeys(keys, REASON_NO_SERVER)
        elif not self.allowlist.allows(fhir_server, allow):
            reasons = dict.fromkeys(keys, REASON_NOT_ALLOWED)
        elif access_token is not None and not _TOKEN.fullmatch(access_token):
            reasons = dict.fromkeys(keys, REASON_BAD_TOKEN)
        if reasons:
            for key, reason in reasons.items():
                logger.warning("FHIR fetch skipped: key=%r reason=%s", key, reason)
        else:
            assert fhir_server is not None
            base = fhir_server.rstrip("/")
            headers = {"Accept": FHIR_JSON}
            if access_token is not None:
                headers["Authorization"] = f"Bearer {access_token}"
            loop = asyncio.get_running_loop()
            start = loop.time()
            deadline_at = start + self.deadline
            with fetch_scope():
                outcomes = await self._gather(
                    keys, base, queries, next_pages, headers, start, deadline_at, pages
                )
            for key, (ok, value) in zip(keys, outcomes, strict=True):
                if ok:
                    results[key] = value
                else:
                    reasons[key] = value
            # One line per call; each failed key has its own warning, each success a debug line.
            logger.info(
                "FHIR fetch: queries=%d ok=%d failed=%d elapsed_ms=%.0f",
                len(keys),
                len(results),
                len(reasons),
                (loop.time() - start) * 1000,
            )
        required = {key: reason for key, reason in reasons.items() if key not in optional}
        if required:
            raise DataUnavailable(required)
        for key, reason in reasons.items():
            results[key] = unavailable_outcome(reason)
        return results

    async def _gather(
        self,
        keys: list[str],
        base: str,
        queries: Mapping[str, str],
        next_pages: Mapping[str, str],
        headers: dict[str, str],
        start: float,
        deadline_at: float,
        pages: PageReader | None,
    ) -> list[tuple[bool, Any]]:
        return list(
            await asyncio.gather(
                *(
                    self._timed(
                        key,
                        base,
                        queries.get(key),
                        next_pages.get(key),
                        headers,
                        start,
                        deadline_at,
                        pages,
                    )
                    for key in keys
                )
            )
        )

    async def _timed(
        self,
        key: str,
        base: str,
        query: str | None,
        next_url: str | None,
        headers: dict[str, str],
        start: float,
        deadline_at: float,
        pages: PageReader | None,
    ) -> tuple[bool, Any]:
        """Runs one query (or the rest of a paginated one, from ``next_url``) to completion;
        returns (True, data) or (False, reason)."""
        began = time.perf_counter()
        parsed = parse_query(query) if query is not None else None
        kind = parsed.resource_type if parsed is not None else "?"
        status: list[int] = []
        per_query = start + self.timeout <= deadline_at
        try:
            async with asyncio.timeout_at(min(start + self.timeout, deadline_at)):
                if next_url is not None:
                    url = urljoin(base + "/", next_url)
                    if not is_under(url, base):
                        raise QueryFailed(REASON_NEXT_OFF_SERVER)
                    data = await self._search(
                        base, url, headers, status, key, pages, pages_before=1
                    )
                elif parsed is None or query is None:
                    raise QueryFailed(REASON_BAD_QUERY)
                else:
                    data = await self._run(base, query, parsed, headers, status, key, pages)
        except QueryFailed as exc:
            reason = exc.reason
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too.
            if per_query:
                reason = f"timed out after {self.timeout:.1f} s"
            else:
                reason = f"timed out at the {self.deadline:.1f} s overall deadline"
        except aiohttp.ClientConnectorError:
            reason = REASON_CONNECT
        except aiohttp.ClientError as exc:  # Protocol errors, closed connections, bad headers.
            reason = f"HTTP error talking to the FHIR server ({type(exc).__name__})"
        else:
            logger.debug(
                "FHIR fetch ok: key=%r type=%s status=%s pages=%d elapsed_ms=%.0f",
                key,
                kind,
                status[-1] if status else None,
                len(status),
                (time.perf_counter() - began) * 1000,
            )
            if self.on_query is not None:
                self.on_query(key, None, time.perf_counter() - began)
            return True, data
        logger.warning(
            "FHIR fetch failed: key=%r type=%s status=%s reason=%s elapsed_ms=%.0f",
            key,
            kind,
            status[-1] if status else None,
            reason,
            (time.perf_counter() - began) * 1000,
        )
        if self.on_query is not None:
            self.on_query(key, reason, time.perf_counter() - began)
        return False, reason

    async def _run(
        self,
        base: str,
        query: str,
        parsed: ParsedQuery,
        headers: dict[str, str],
        status: list[int],
        key: str,
        pages: PageReader | None,
    ) -> Any:
        url = f"{base}/{query}"
        if not is_under(url, base):  # parse_query should make this impossible; belt and braces.
            raise QueryFailed(REASON_BAD_QUERY)
        if parsed.kind == "read":
            resource = check_resource(parse(await self._get(url, headers, status)))
            if resource["resourceType"] != parsed.resource_type:
                raise QueryFailed(f"answer is not a {parsed.resource_type}")
            if resource.get("id", parsed.resource_id) != parsed.resource_id:
                raise QueryFailed(f"answer is a different {parsed.resource_type}")
            return resource
        return await self._search(base, url, headers, status, key, pages)

    async def _search(
        self,
        base: str,
        url: str,
        headers: dict[str, str],
        status: list[int],
        key: str,
        pages: PageReader | None,
        *,
        pages_before: int = 0,
    ) -> dict[str, Any]:
        """Every page of a search from ``url`` on, as one searchset Bundle.

        A page over the reader's threshold is parsed and checked by ``pages`` (in another
        process) and comes back cut down; the caps and the total count the whole page."""
        entries: list[dict[str, Any]] = []
        seen = matched = 0
        while True:
            raw = await self._get(url, headers, status)
            if pages is not None and len(raw) > pages.threshold:
                read = await pages(key, raw)
                if read.bundle is None:
                    raise QueryFailed(read.reason)
                bundle = read.bundle
                entries.extend(check_page(bundle))
                seen, matched = seen + read.entries, matched + read.matches
            else:
                bundle = parse(raw)
                page = check_page(bundle)
                entries.extend(page)
                seen, matched = seen + len(page), matched + match_count(page)
            if seen > self.max_entries:
                raise QueryFailed(
                    f"more than {self.max_entries} resources (CDS_MAX_ENTRIES_PER_KEY)"
                )
            next_url = next_link(bundle)
            if next_url is None:
                break
            if pages_before + len(status) >= self.max_pages:
                raise QueryFailed(f"more than {self.max_pages} pages of results")
            url = urljoin(base + "/", next_url)
            if not is_under(url, base):
                raise QueryFailed(REASON_NEXT_OFF_SERVER)
        # Continuing a client's first page, the total is checked where that page's matches
        # are known (the hook layer).
        partial = short_of_total(total_of(bundle), matched) if not pages_before else None
        if partial is not None:
            raise QueryFailed(partial)
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": matched,
            "entry": entries,
        }

    async def _get(self, url: str, headers: dict[str, str], status: list[int]) -> bytes:
        """One GET; returns the body or raises ``QueryFailed``.

        A pooled keep-alive connection may have been closed by the server (its idle timeout
        crossing this request, or a middlebox forgetting the connection): the request then
        fails before any answer although the server is up. A GET is idempotent, so it is sent
        once more, on a new connection; if that fails too, the query fails as before. Failing
        to connect at all (ClientConnectorError) is not retried: a new connection just failed.
        """
        answered = len(status)
        try:
            return await self._get_on(self.client, url, headers, status)
        except aiohttp.ClientConnectorError:
            raise
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if len(status) > answered:  # The server answered; the body broke off: not a retry.
                raise
        logger.info("FHIR connection closed before an answer: retried on a new connection")
        return await self._get_on(self.fresh_client, url, headers, status)

    async def _get_on(
        self, client: aiohttp.ClientSession, url: str, headers: dict[str, str], status: list[int]
    ) -> bytes:
        # Sent as given: the query was percent-encoded when the template was rendered, and
        # characters left raw (``|`` in token searches, non-ASCII) are encoded here.
        target = URL(quote(url, safe=_URL_SAFE), encoded=True)
        async with client.get(target, headers=headers, allow_redirects=False) as response:
            status.append(response.status)
            if response.status != 200:
                raise QueryFailed(f"FHIR server answered {response.status}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type.lower() not in ACCEPTED_CONTENT_TYPES:
                raise QueryFailed("answer is not FHIR JSON (content type)")
            declared = response.content_length
            if declared is not None and declared > self.max_bytes:
                raise QueryFailed(f"answer larger than {self.max_bytes} bytes")
            body = bytearray()
            usage = current_usage()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise QueryFailed(f"answer larger than {self.max_bytes} bytes")
                if self.budget is not None and usage is not None:
                    try:
                        self.budget.reserve(usage, len(chunk))
                    except BudgetExceededError as exc:
                        raise QueryFailed(exc.reason) from None
        return bytes(body)
