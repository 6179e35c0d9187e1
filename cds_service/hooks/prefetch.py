"""Turn a hook request's prefetch into the resources the engine reads.

Each prefetch value may be a Bundle (its entry resources are used), a single resource, `null`
(the client found nothing) or an OperationOutcome (the client could not get it: treated as
missing). A Bundle that is only part of its search result (`partial_reason`) is missing too.
Keys the client did not send are missing. Missing keys are fetched from the client's
FHIR server when a `Fetcher` is configured (`cds_service.fetch` implements it); a required key
that stays missing makes the request fail with 412 (CDS Hooks 2.0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cds_service.clinical.extract import resource_reference
from cds_service.clinical.raw import OBJECT
from cds_service.clinical.references import full_urls_of, subject_mismatch
from cds_service.fhir.search_completeness import (
    match_count,
    partial_outcome,
    short_of_total,
    total_of,
)
from cds_service.hooks.models import HookRequest
from cds_service.hooks.prefetch_templates import (
    KEY_TYPES,
    PREFETCH,
    REQUIRED_KEYS,
    UnresolvedTokenError,
    render,
)

#: Why a fetched key counts as missing when its answer is not usable FHIR (fetcher and hook layer).
INVALID_FETCHED = "invalid FHIR in the answer"
#: Why a paginated prefetch key is not yet complete.
PAGINATED = "the prefetch Bundle has more pages (link next)"

if TYPE_CHECKING:
    from cds_service.fetch.pages import PageReader

Resource = dict[str, Any]


class DataUnavailable(Exception):  # noqa: N818 - name fixed by the fetch module's contract
    """The data could not be obtained; `details` maps prefetch keys to a short reason."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in details.items()) or "unavailable")
        self.details = details


class Fetcher(Protocol):
    """Fetches prefetch queries from the client's FHIR server.

    `queries` maps prefetch keys to rendered relative URLs (`Condition?patient=123&...`).
    Returns key -> the JSON the server answered (a Bundle or a resource) for every key it could
    fetch; raises DataUnavailable naming the keys it could not, among them a search whose pages
    say they are partial (`partial_outcome`, `short_of_total`). A search answer's `total`
    counts the matches of every page read. `next_pages` maps keys of paginated prefetch
    Bundles to their `next` URL: the answer for such a key is a Bundle of the remaining pages'
    entries (it is passed only when there are any), whose `total` this layer checks against
    the first page's. `pages` reads large
    search pages off the event loop (cds_service.hooks.fetched_pages; passed only when set).
    """

    async def fetch(
        self,
        fhir_server: str | None,
        access_token: str | None,
        queries: Mapping[str, str],
        *,
        allow: Sequence[str] = (),
        optional: AbstractSet[str] = frozenset(),
        next_pages: Mapping[str, str] | None = None,
        pages: PageReader | None = None,
    ) -> dict[str, Any]: ...


class PrefetchError(ValueError):
    """A prefetch value is not usable FHIR for its key (answered with 400)."""


class MissingPrefetch(Exception):  # noqa: N818
    """Required data is neither in the prefetch nor fetchable (answered with 412)."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__(", ".join(sorted(details)))
        self.details = details


@dataclass(frozen=True)
class ResolvedRecord:
    """The patient's resources, the draft orders of the hook context, and what was missing."""

    patient_id: str
    resources: tuple[Resource, ...]
    draft_orders: tuple[Resource, ...]
    #: Optional keys that could not be obtained (the cards say what was not checked).
    missing: dict[str, str] = field(default_factory=dict)
    #: "Type/id" of every fetched resource -> its prefetch key: invalid FHIR among these is the
    #: FHIR server's, not the client's (412 rather than 400).
    fetched_references: Mapping[str, str] = field(default_factory=dict)
    #: The FHIR server and the Bundle `fullUrl`s the record's references resolve against.
    scope: RecordScope = field(default_factory=lambda: RecordScope())


def _check_resource(
    key: str, resource: Any, patient_id: str, scope: RecordScope
) -> Resource | None:
    """The resource if it belongs under `key`; None for an OperationOutcome inside a Bundle."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise PrefetchError(f"prefetch.{key} holds an entry that is not a FHIR resource")
    kind = resource["resourceType"]
    if kind == "OperationOutcome":
        return None
    allowed = KEY_TYPES.get(key)
    if allowed is not None and kind not in allowed:
        # The type is not echoed: until it is checked it is any string the client sent.
        expected = " or ".join(sorted(allowed))
        raise PrefetchError(f"prefetch.{key} holds a resource that is not {expected}")
    if not isinstance(resource.get("status", ""), str):
        raise PrefetchError(f"prefetch.{key} holds a {kind} whose status is not a code")
    if kind == "Patient":
        if resource.get("id") not in (None, patient_id):
            raise PrefetchError(f"prefetch.{key} is a different patient than context.patientId")
    else:
        element = subject_mismatch(
            resource, patient_id, base_url=scope.base_url, full_urls=scope.full_urls
        )
        if element is not None:
            raise PrefetchError(
                f"prefetch.{key} holds a {kind} whose {element} is not context.patientId "
                "(another patient, or a reference that cannot be resolved to this patient)"
            )
    return resource


@dataclass(frozen=True)
class RecordScope:
    """What subject references are resolved against: the FHIR server the record comes from
    (absolute URLs) and the `fullUrl`s of the request's Bundles (`urn:uuid:` references)."""

    base_url: str | None = None
    full_urls: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def next_page(value: Any) -> str | None:
    """The `link` `next` URL of a Bundle (a paginated search result), else None."""
    if not isinstance(value, OBJECT) or value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, OBJECT) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else PAGINATED_WITHOUT_URL
    return None


#: `next_page` of a Bundle whose `next` link has no usable URL: paginated, not followable.
PAGINATED_WITHOUT_URL = ""


def partial_reason(value: Any) -> str | None:
    """Why a prefetch Bundle is not the whole search result although it may be read, else None.

    The `total` of a paginated Bundle is checked once its next pages are in (`resolve`)."""
    if not isinstance(value, OBJECT) or value.get("resourceType") != "Bundle":
        return None
    entries = value.get("entry")
    reason = partial_outcome(entries)
    if reason is None and next_page(value) is None:
        reason = short_of_total(total_of(value), match_count(entries))
    return reason


def matches_still_expected(value: Any) -> int:
    """How many matches the next pages of a paginated Bundle must bring for its `total`."""
    total = total_of(value)
    return 0 if total is None else total - match_count(value.get("entry"))


def resources_of(
    key: str, value: Any, patient_id: str, scope: RecordScope | None = None
) -> list[Resource] | None:
    """The resources a prefetch value holds; None when it stands for missing data.

    A paginated Bundle gives its first page only: `next_page` says whether there is more."""
    scope = scope or RecordScope()
    if value is None:
        return []
    if not isinstance(value, OBJECT) or not isinstance(value.get("resourceType"), str):
        raise PrefetchError(f"prefetch.{key} must be a FHIR resource, a Bundle or null")
    kind = value["resourceType"]
    if kind == "OperationOutcome":
        return None
    if kind != "Bundle":
        checked = _check_resource(key, value, patient_id, scope)
        return [checked] if checked is not None else []
    entries = value.get("entry", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise PrefetchError(f"prefetch.{key}.entry must be an array")
    out: list[Resource] = []
    for entry in entries:
        if not isinstance(entry, OBJECT):
            raise PrefetchError(f"prefetch.{key}.entry holds an item that is not an object")
        if "resource" not in entry:
            continue
        checked = _check_resource(key, entry["resource"], patient_id, scope)
        if checked is not None:
            out.append(checked)
    return out


def unavailable_reason(value: Any) -> str | None:
    """The reason if `value` is an OperationOutcome standing in for missing data, else None.

    Part of the Fetcher contract: a fetcher answers an optional key it could not get with an
    OperationOutcome whose diagnostics say why.
    """
    if not isinstance(value, OBJECT) or value.get("resourceType") != "OperationOutcome":
        return None
    for issue in value.get("issue") or ():
        diagnostics = issue.get("diagnostics") if isinstance(issue, OBJECT) else None
        if isinstance(diagnostics, str):
            return diagnostics
    return "data unavailable"


def fetched_partial(value: Any, expected: int, continues: bool) -> str | None:
    """Why a fetched search answer is not the whole result, else None.

    The fetcher fails a search whose own pages say they are partial; what only this layer
    knows is the first page's `total` when the answer continues a paginated prefetch Bundle.
    The answer's `total` counts the matches of the pages the fetcher read whole, since their
    entries may come back cut down (cds_service.hooks.fetched_pages)."""
    if not isinstance(value, OBJECT) or value.get("resourceType") != "Bundle":
        return None
    entries = value.get("entry")
    reason = partial_outcome(entries)
    if reason is None and continues:
        fetched = total_of(value)
        reason = short_of_total(expected, match_count(entries) if fetched is None else fetched)
    return reason


def draft_orders_of(
    context: Mapping[str, Any], patient_id: str, scope: RecordScope
) -> list[Resource]:
    """The resources of `context.draftOrders`; a draft for another patient is refused (400)."""
    bundle = context.get("draftOrders")
    if not isinstance(bundle, OBJECT):
        return []
    out = []
    for e in bundle.get("entry") or ():
        if not isinstance(e, OBJECT) or not isinstance(e.get("resource"), OBJECT):
            continue
        resource = dict(e["resource"])
        element = subject_mismatch(
            resource, patient_id, base_url=scope.base_url, full_urls=scope.full_urls
        )
        if element is not None:
            raise PrefetchError(
                f"context.draftOrders holds a {resource['resourceType']} whose {element} is not "
                "context.patientId (another patient, or a reference that cannot be resolved to "
                "this patient)"
            )
        out.append(resource)
    return out


@dataclass
class _Prefetched:
    """The prefetch as read: resources per key, missing keys, pages still to follow and the
    matches those pages must bring for the first page's `total`, and why the Bundles that
    are partial are."""

    patient_id: str
    scope: RecordScope
    found: dict[str, list[Resource]]
    missing: dict[str, str]
    continuations: dict[str, str]
    draft_orders: list[Resource]
    expected: dict[str, int] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)


def read_prefetch(request: HookRequest) -> _Prefetched:
    """Every prefetch key read and checked (type, patient); raises PrefetchError (400)."""
    patient_id = str(request.context["patientId"])
    prefetch = request.prefetch or {}
    scope = RecordScope(
        base_url=request.fhirServer,
        full_urls=full_urls_of(*prefetch.values(), request.context.get("draftOrders")),
    )
    found: dict[str, list[Resource]] = {}
    missing: dict[str, str] = {}
    continuations: dict[str, str] = {}
    expected: dict[str, int] = {}
    partials: dict[str, str] = {}
    for key in PREFETCH:
        if key not in prefetch:
            missing[key] = "not in prefetch"
            continue
        resources = resources_of(key, prefetch[key], patient_id, scope)
        if resources is None:
            missing[key] = "the client reported an error (OperationOutcome)"
            continue
        following = next_page(prefetch[key])
        partial = partial_reason(prefetch[key])
        if partial is not None:
            # Searched again when possible, as a page that cannot be followed is.
            missing[key] = partials[key] = partial
        elif following is None:
            found[key] = resources
        elif following == PAGINATED_WITHOUT_URL:
            missing[key] = f"{PAGINATED}, and its next link has no URL"
        else:
            # The first page is kept and completed by the pages the fetcher follows.
            found[key] = resources
            continuations[key] = following
            expected[key] = matches_still_expected(prefetch[key])
            missing[key] = PAGINATED
    draft_orders = draft_orders_of(request.context, patient_id, scope)
    return _Prefetched(
        patient_id, scope, found, missing, continuations, draft_orders, expected, partials
    )


#: The reader of large fetched pages for a call: (patient id, reference scope) -> reader.
PageReaderFor = Callable[[str, "RecordScope"], "PageReader"]


async def resolve(
    request: HookRequest,
    fetcher: Fetcher | None,
    *,
    allow: Sequence[str] = (),
    pages: PageReaderFor | None = None,
) -> ResolvedRecord:
    """Collect the resources of every prefetch key, fetching the missing ones if possible.

    A paginated prefetch Bundle (`link` `next`) is completed by following its remaining pages
    through the fetcher; when that is impossible, or the Bundle says it is partial, the key
    counts as missing, since a partial record can hide the result that changes the answer.
    Raises PrefetchError (400) for values that are not FHIR of the right type or of another
    patient, and MissingPrefetch (412) when a required key is missing and cannot be fetched.
    A large request reaches this already cut down to the entries the rules read
    (cds_service.hooks.large_bodies); `pages` does the same for large fetched pages.
    """
    read = read_prefetch(request)
    patient_id, scope = read.patient_id, read.scope
    found, missing, continuations = read.found, read.missing, read.continuations
    draft_orders = read.draft_orders

    references: dict[str, str] = {}
    if missing and fetcher is not None and request.fhirServer:
        queries: dict[str, str] = {}
        for key in missing:
            if key in continuations:
                continue
            try:
                queries[key] = render(PREFETCH[key], request.context)
            except UnresolvedTokenError:
                continue
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        asked = set(queries) | set(continuations)
        answers: dict[str, Any] = {}
        # Passed only when set: a Fetcher may predate them.
        extra: dict[str, Any] = {"next_pages": continuations} if continuations else {}
        if pages is not None:
            extra["pages"] = pages(patient_id, scope)

        def fail(key: str, reason: str) -> None:
            # The reason says why the prefetch did not do, then why the fetch did not either.
            if key in continuations:
                missing[key] = f"{PAGINATED}; its next pages: {reason}"
            elif key in read.partial:
                missing[key] = f"{read.partial[key]}; searched again: {reason}"
            else:
                missing[key] = reason

        try:
            # Optional keys that fail come back as OperationOutcomes instead of failing the call.
            answers = await fetcher.fetch(
                request.fhirServer,
                token,
                queries,
                allow=allow,
                optional=frozenset(asked) - set(REQUIRED_KEYS),
                **extra,
            )
        except DataUnavailable as exc:
            for key, reason in exc.details.items():
                if key in missing:
                    fail(key, reason)
            answers = {}

        def merge() -> None:
            for key, value in answers.items():
                if key not in missing:
                    continue
                try:
                    resources = resources_of(key, value, patient_id, scope)
                except PrefetchError as exc:
                    # Fetched data that is not usable FHIR is data the service cannot get.
                    missing[key] = f"{INVALID_FETCHED}: {exc}"
                    continue
                if resources is None:
                    fail(key, unavailable_reason(value) or "the FHIR server reported an error")
                    continue
                partial = fetched_partial(value, read.expected.get(key, 0), key in continuations)
                if partial is not None:
                    fail(key, partial)
                    continue
                first = found.get(key, []) if key in continuations else []
                found[key] = first + resources
                del missing[key]
                for resource in resources:
                    references[resource_reference(resource)] = key

        merge()
    elif missing and fetcher is None:
        for key in missing:
            missing[key] += "; no FHIR fetch configured"
    elif missing:
        for key in missing:
            missing[key] += "; no fhirServer given"
    for key in missing:
        # Never a partial record: the first page of a key that could not be completed is dropped.
        found.pop(key, None)

    required_missing = {k: v for k, v in missing.items() if k in REQUIRED_KEYS}
    if required_missing:
        raise MissingPrefetch(required_missing)
    return ResolvedRecord(
        patient_id=patient_id,
        resources=tuple(r for key in PREFETCH for r in found.get(key, ())),
        draft_orders=tuple(draft_orders),
        missing=missing,
        fetched_references=references,
        scope=scope,
    )
