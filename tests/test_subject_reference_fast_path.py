"""subject_mismatch decides the usual `Patient/<id>` reference without parsing it: it must
answer exactly what resolving the reference (target_of) answers, for every kind of reference."""

from __future__ import annotations

import itertools
from types import MappingProxyType
from typing import Any

from cds_service.clinical.references import SUBJECT_FIELDS, subject_mismatch, target_of

PATIENT_IDS = ("p1", "a.b-C9", "bad/id", "", "x" * 64, "x" * 65, "p1 ")
BASE = "https://ehr.example.org/fhir"


def resolved(resource: Any, patient_id: str, **scope: Any) -> str | None:
    """The rule itself: every subject element must resolve to this patient."""
    for name in SUBJECT_FIELDS:
        if name not in resource or resource[name] is None:
            continue
        if target_of(resource[name], **scope) != ("Patient", patient_id):
            return name
    return None


def references(patient_id: str) -> list[Any]:
    plain = f"Patient/{patient_id}"
    return [
        {"reference": plain},
        {"reference": plain, "type": "Patient"},
        {"reference": plain, "type": "Group"},
        {"reference": plain, "type": 5},
        {"reference": plain, "type": None},
        {"reference": plain, "display": "someone"},
        MappingProxyType({"reference": plain}),
        {"reference": "Patient/other"},
        {"reference": f"{plain}/_history/2"},
        {"reference": f"{BASE}/{plain}"},
        {"reference": "urn:uuid:1"},
        {"reference": patient_id, "type": "Patient"},
        {"reference": ""},
        {"reference": 5},
        {},
        "Patient/p1",
        None,
    ]


def test_the_usual_reference_is_decided_as_resolving_it_decides() -> None:
    checked = 0
    for patient_id in PATIENT_IDS:
        for subject, patient in itertools.product(references(patient_id), repeat=2):
            for resource in ({"subject": subject}, {"subject": subject, "patient": patient}):
                for scope in (
                    {},
                    {"base_url": BASE},
                    # A Bundle entry whose fullUrl is the plain text names its own resource.
                    {"full_urls": {f"Patient/{patient_id}": {"resourceType": "Patient",
                                                             "id": "someone-else"}}},
                    {"full_urls": {"urn:uuid:1": {"resourceType": "Patient", "id": patient_id}}},
                ):  # fmt: skip
                    expected = resolved(resource, patient_id, **scope)
                    assert subject_mismatch(resource, patient_id, **scope) == expected, (
                        patient_id,
                        resource,
                        scope,
                    )
                    checked += 1
    assert checked > 10_000
