"""Whose record is this? One reading of FHIR references for every subject comparison.

A resource belongs to the patient in context only when its `subject` / `patient` reference can
be shown to name that patient. Every place that compares a subject (prefetch, fallback fetch,
draft orders, `$apply` data) asks `subject_mismatch`, so they cannot read references
differently: `Patient/other/_history/1`, `{"reference": "other", "type": "Patient"}`, an absolute
URL on another server, or `urn:uuid:` of another entry all name someone else.

Pure: no FastAPI, no HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cds_service.clinical.raw import OBJECT

#: The reference elements that name the patient a clinical resource is about.
SUBJECT_FIELDS = ("subject", "patient")

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def _split_relative(path: str) -> tuple[str, str] | None:
    """`Type/id` or `Type/id/_history/v` (the tail of a relative or absolute reference)."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not _TYPE.fullmatch(parts[-2]) or not _ID.fullmatch(parts[-1]):
        return None
    return parts[-2], parts[-1]


def target_of(
    reference: Any,
    *,
    base_url: str | None = None,
    full_urls: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, str] | None:
    """(type, id) a Reference object names, or None when it cannot be resolved.

    `base_url` is the FHIR server the record comes from: an absolute URL is resolved only
    beneath it (the same id on another server is another patient). `full_urls` maps the
    `fullUrl` of Bundle entries to their resources, for `urn:uuid:` references.
    """
    if not isinstance(reference, OBJECT):
        return None
    ref = reference.get("reference")
    declared = reference.get("type")
    if declared is not None and not isinstance(declared, str):
        return None
    if not isinstance(ref, str) or not ref:
        return None
    target: tuple[str, str] | None
    entry = (full_urls or {}).get(ref)
    if entry is not None:
        # The Bundle holds the resource it names: its own type and id are what count.
        kind, rid = entry.get("resourceType"), entry.get("id")
        target = (kind, rid) if isinstance(kind, str) and isinstance(rid, str) else None
    elif ref.startswith(("urn:", "#")):
        return None
    elif ref.startswith(("http://", "https://")):
        if base_url is None:
            return None
        base = base_url.rstrip("/") + "/"
        if not ref.startswith(base):
            return None
        target = _split_relative(ref[len(base) :])
    elif "/" not in ref:
        # A bare id is a reference only together with its type.
        target = (declared, ref) if declared and _ID.fullmatch(ref) else None
    else:
        target = _split_relative(ref)
        if target is not None and ref.count("/") not in (1, 3):
            target = None
    if target is not None and declared is not None and declared != target[0]:
        return None
    return target


def subject_mismatch(
    resource: Mapping[str, Any],
    patient_id: str,
    *,
    base_url: str | None = None,
    full_urls: Mapping[str, Mapping[str, Any]] | None = None,
) -> str | None:
    """The element (`subject` or `patient`) naming someone other than `patient_id`, else None.

    A reference that cannot be resolved counts as someone else: it cannot be shown to be the
    patient. An absent element is not a mismatch (prefetch and fetch queries are patient-scoped).
    """
    plain = _plain_reference(patient_id)
    for name in SUBJECT_FIELDS:
        if name not in resource or resource[name] is None:
            continue
        value = resource[name]
        if (
            # The usual case, decided without parsing: what target_of would answer for it.
            plain is not None
            and type(value) is dict
            and value.get("reference") == plain
            and value.get("type") in (None, "Patient")
            and not (full_urls and plain in full_urls)
        ):
            continue
        target = target_of(value, base_url=base_url, full_urls=full_urls)
        if target != ("Patient", patient_id):
            return name
    return None


@lru_cache(maxsize=1024)
def _plain_reference(patient_id: str) -> str | None:
    """`Patient/<id>` when `target_of` reads that text as this patient, else None."""
    text = f"Patient/{patient_id}"
    return text if _split_relative(text) == ("Patient", patient_id) else None


def full_urls_of(*bundles: Any) -> dict[str, Mapping[str, Any]]:
    """`fullUrl` -> resource over the entries of the given Bundles (others are skipped)."""
    out: dict[str, Mapping[str, Any]] = {}
    for bundle in bundles:
        if not isinstance(bundle, OBJECT):
            continue
        entries = bundle.get("entry")
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, OBJECT):
                continue
            url, resource = entry.get("fullUrl"), entry.get("resource")
            if isinstance(url, str) and isinstance(resource, OBJECT):
                out[url] = resource
    return out


def contained_in(container: Mapping[str, Any], reference: Any) -> Mapping[str, Any] | None:
    """The resource a local reference (`#med1`) names among `container.contained`, else None."""
    ref = reference.get("reference") if isinstance(reference, OBJECT) else None
    if not isinstance(ref, str) or not ref.startswith("#") or len(ref) < 2:
        return None
    for inner in container.get("contained") or ():
        if isinstance(inner, OBJECT) and inner.get("id") == ref[1:]:
            return inner
    return None


def resolve(
    container: Mapping[str, Any],
    reference: Any,
    found: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    base_url: str | None = None,
    full_urls: Mapping[str, Mapping[str, Any]] | None = None,
) -> Mapping[str, Any] | None:
    """The resource a Reference names: contained in `container` (`#id`), a Bundle entry by its
    `fullUrl`, or one of `found` ((type, id) -> resource, the record's own resources) by a
    relative or absolute reference; None when it is not in the record.

    The same reading as `target_of`, so a medication and a subject reference cannot be resolved
    by two different rules."""
    local = contained_in(container, reference)
    if local is not None:
        return local
    ref = reference.get("reference") if isinstance(reference, OBJECT) else None
    entry = (full_urls or {}).get(ref) if isinstance(ref, str) else None
    if entry is not None:
        return entry
    target = target_of(reference, base_url=base_url, full_urls=full_urls)
    return found.get(target) if target is not None else None
