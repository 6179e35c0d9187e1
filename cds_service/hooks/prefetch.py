"""Turn a hook request's prefetch into the resources the engine reads.

Each prefetch value may be a Bundle (its entry resources are used), a single resource, `null`
(the client found nothing) or an OperationOutcome (the client could not get it: treated as
missing). Keys the client did not send are missing. Missing keys are fetched from the client's
FHIR server when a `Fetcher` is configured (`cds_service.fetch` implements it); a required key
that stays missing makes the request fail with 412 (CDS Hooks 2.0).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from cds_service.clinical.extract import resource_reference
from cds_service.clinical.raw import OBJECT
from cds_service.hooks.models import HookRequest
from cds_service.hooks.prefetch_templates import (
    KEY_TYPES,
    PREFETCH,
    REQUIRED_KEYS,
    UnresolvedTokenError,
    render,
)

logger = logging.getLogger("cds_service.hooks")

#: Why a fetched key counts as missing when its answer is not usable FHIR (fetcher and hook layer).
INVALID_FETCHED = "invalid FHIR in the answer"

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
    fetch; raises DataUnavailable naming the keys it could not.
    """

    async def fetch(
        self,
        fhir_server: str | None,
        access_token: str | None,
        queries: Mapping[str, str],
        *,
        allow: Sequence[str] = (),
        optional: AbstractSet[str] = frozenset(),
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


def _other_patient(value: Any, own: str) -> bool:
    """Whether a reference (`subject`, `patient`) points at a Patient other than `own`
    ("Patient/<id>"); an absolute URL is compared by its last two segments."""
    if not isinstance(value, dict):
        return False
    reference = value.get("reference")
    if not isinstance(reference, str) or reference == own:
        return False
    parts = reference.rstrip("/").rsplit("/", 2)
    return len(parts) >= 2 and parts[-2] == "Patient" and f"Patient/{parts[-1]}" != own


def _check_resource(key: str, resource: Any, patient_id: str) -> Resource | None:
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
        own = f"Patient/{patient_id}"
        if _other_patient(resource.get("subject"), own) or _other_patient(
            resource.get("patient"), own
        ):
            raise PrefetchError(
                f"prefetch.{key} holds a {kind} of a different patient than context.patientId"
            )
    return resource


def resources_of(key: str, value: Any, patient_id: str) -> list[Resource] | None:
    """The resources a prefetch value holds; None when it stands for missing data."""
    if value is None:
        return []
    if not isinstance(value, OBJECT) or not isinstance(value.get("resourceType"), str):
        raise PrefetchError(f"prefetch.{key} must be a FHIR resource, a Bundle or null")
    kind = value["resourceType"]
    if kind == "OperationOutcome":
        return None
    if kind != "Bundle":
        checked = _check_resource(key, value, patient_id)
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
        checked = _check_resource(key, entry["resource"], patient_id)
        if checked is not None:
            out.append(checked)
    links = value.get("link")
    if isinstance(links, list) and any(
        isinstance(link, OBJECT) and link.get("relation") == "next" for link in links
    ):
        # CDS Hooks allows paginated prefetch; following `next` needs the FHIR server, which is
        # the fetch module's job. Using the first page may miss records: log it (no PHI).
        logger.warning("prefetch %s is paginated; only the first page was used", key)
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


def draft_orders_of(context: Mapping[str, Any]) -> list[Resource]:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, OBJECT):
        return []
    return [
        dict(e["resource"])
        for e in bundle.get("entry") or ()
        if isinstance(e, OBJECT) and isinstance(e.get("resource"), OBJECT)
    ]


async def resolve(
    request: HookRequest, fetcher: Fetcher | None, *, allow: Sequence[str] = ()
) -> ResolvedRecord:
    """Collect the resources of every prefetch key, fetching the missing ones if possible.

    Raises PrefetchError (400) for values that are not FHIR of the right type and
    MissingPrefetch (412) when a required key is missing and cannot be fetched.
    """
    patient_id = str(request.context["patientId"])
    prefetch = request.prefetch or {}
    found: dict[str, list[Resource]] = {}
    missing: dict[str, str] = {}
    for key in PREFETCH:
        if key not in prefetch:
            missing[key] = "not in prefetch"
            continue
        resources = resources_of(key, prefetch[key], patient_id)
        if resources is None:
            missing[key] = "the client reported an error (OperationOutcome)"
        else:
            found[key] = resources

    references: dict[str, str] = {}
    if missing and fetcher is not None and request.fhirServer:
        queries: dict[str, str] = {}
        for key in missing:
            try:
                queries[key] = render(PREFETCH[key], request.context)
            except UnresolvedTokenError:
                continue
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        answers: dict[str, Any] = {}
        try:
            # Optional keys that fail come back as OperationOutcomes instead of failing the call.
            answers = await fetcher.fetch(
                request.fhirServer,
                token,
                queries,
                allow=allow,
                optional=frozenset(queries) - set(REQUIRED_KEYS),
            )
        except DataUnavailable as exc:
            for key, reason in exc.details.items():
                if key in missing:
                    missing[key] = reason
            answers = {}
        for key, value in answers.items():
            if key not in missing:
                continue
            try:
                resources = resources_of(key, value, patient_id)
            except PrefetchError:
                # Fetched data that is not usable FHIR is data the service cannot get.
                missing[key] = INVALID_FETCHED
                continue
            if resources is not None:
                found[key] = resources
                del missing[key]
                for resource in resources:
                    references[resource_reference(resource)] = key
            else:
                missing[key] = unavailable_reason(value) or "the FHIR server reported an error"
    elif missing and fetcher is None:
        for key in missing:
            missing[key] += "; no FHIR fetch configured"
    elif missing:
        for key in missing:
            missing[key] += "; no fhirServer given"

    required_missing = {k: v for k, v in missing.items() if k in REQUIRED_KEYS}
    if required_missing:
        raise MissingPrefetch(required_missing)
    return ResolvedRecord(
        patient_id=patient_id,
        resources=tuple(r for key in PREFETCH for r in found.get(key, ())),
        draft_orders=tuple(draft_orders_of(request.context)),
        missing=missing,
        fetched_references=references,
    )
