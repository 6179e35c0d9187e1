"""One answer of a FHIR search, parsed and checked: what the fetcher reads of each page.

Kept apart from the HTTP client because a page over 256 KiB is read in the reading process
(cds_service.offload.pool) with exactly these checks, and the event loop gets back the page
cut down (`PageReader`); the reasons are the same wherever the page was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from cds_service.fhir.search_completeness import partial_outcome

from .errors import INVALID_FETCHED

REASON_NOT_JSON = "answer is not JSON"
REASON_NOT_BUNDLE = "search answer is not a Bundle"
# The same phrase the hook layer uses for fetched data the clinical core finds invalid.
REASON_INVALID = INVALID_FETCHED

RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})


class QueryFailed(Exception):
    """One query failed, with a reason fit for ``DataUnavailable.details``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@lru_cache(maxsize=1024)  # Bounded: the names come from servers.
def is_resource_type(name: str) -> bool:
    """Whether ``name`` is a concrete FHIR R4B resource type (not a data type such as Coding,
    nor the abstract Resource and DomainResource); the model classes are the registry."""
    if not RESOURCE_TYPE.fullmatch(name) or name in _ABSTRACT_TYPES:
        return False
    try:
        model = get_fhir_model_class(name)
    except (KeyError, ValueError, ImportError, AttributeError):
        return False
    return issubclass(model, Resource)


def check_resource(resource: Any) -> dict[str, Any]:
    """A JSON object naming a known resource type, whose ``id`` (if any) is a string."""
    if not isinstance(resource, dict):
        raise QueryFailed(REASON_INVALID)
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not is_resource_type(kind) or kind == "Bundle":
        raise QueryFailed(REASON_INVALID)
    if not isinstance(resource.get("id", ""), str):
        raise QueryFailed(REASON_INVALID)
    return resource


def check_page(bundle: Any) -> list[dict[str, Any]]:
    """The entries of one searchset page, after checking the parts of the Bundle this client
    reads: ``type``, ``total``, ``link`` and every entry's ``resource`` and ``search.mode``
    (the ``next`` link is checked when it is followed, after the caps). A page whose
    OperationOutcome says results were left out fails here, before it can be cut down."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise QueryFailed(REASON_NOT_BUNDLE)
    entries = bundle.get("entry", [])
    total = bundle.get("total", 0)
    links = bundle.get("link", [])
    if (
        bundle.get("type") != "searchset"
        or not isinstance(entries, list)
        or not isinstance(links, list)
        or isinstance(total, bool)
        or not isinstance(total, int)
        or total < 0
    ):
        raise QueryFailed(REASON_INVALID)
    for entry in entries:
        if not isinstance(entry, dict):
            raise QueryFailed(REASON_INVALID)
        check_resource(entry.get("resource"))
        search = entry.get("search", {})
        if not isinstance(search, dict) or not isinstance(search.get("mode", ""), str):
            raise QueryFailed(REASON_INVALID)
    partial = partial_outcome(entries)
    if partial is not None:
        raise QueryFailed(partial)
    return entries


def next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link") or []
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if not isinstance(url, str) or not url:
                raise QueryFailed(REASON_INVALID)
            return url
    return None


def parse(raw: bytes) -> Any:
    """An answer's JSON, or QueryFailed."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise QueryFailed(REASON_NOT_JSON) from None


@dataclass(frozen=True)
class ReadPage:
    """A page read elsewhere: the page as checked, its entries cut down to what is read, and
    how many entries and matches the whole page had (for the caps and the total); or why the
    query failed."""

    bundle: dict[str, Any] | None
    entries: int = 0
    matches: int = 0
    reason: str = ""


class PageReader(Protocol):
    """Reads the search pages of one call that are over `threshold` bytes (prefetch key,
    answer's bytes): parsed and checked as `check_page` does, cut down to what the caller
    reads. The fetcher then reads the cut-down page as it would any other."""

    @property
    def threshold(self) -> int: ...

    async def __call__(self, key: str, raw: bytes) -> ReadPage: ...
