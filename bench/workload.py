"""The benchmark's synthetic patient and hook requests, built deterministically.

One adult with pernicious anaemia (D51.0) and a two-year laboratory history: 40 Observations
(B12, MMA, homocysteine, folate, haemoglobin, MCV, platelets, potassium, ... with LOINC codes,
plus a few unrelated results carrying `code.text` only) and 8 Conditions (coded and text-only).
The latest B12 is low, so the service confirms deficiency and answers with a full treatment card
(schedule table, MedicationRequest series): the realistic, most expensive path.

No randomness: the same bytes on every run and every machine.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

JSON = dict[str, Any]

PATIENT_ID = "bench-001"
USER_ID = "Practitioner/bench-pract-1"
ENCOUNTER_ID = "bench-enc-1"
#: Date of the most recent result; the history runs two years back from here.
ANCHOR = date(2026, 11, 20)
#: Start date of the plan in the in-process profile (the service uses its own clock).
START = date(2026, 12, 1)
FHIR_BASE = "https://ehr.example.org/fhir"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

#: Prefetch keys used when `cds_service.hooks.prefetch_templates` cannot be imported.
DEFAULT_PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "procedures",
    "medicationRequests",
    "medicationStatements",
    "allergies",
)

# (LOINC code or None for text only, display / text, unit, [values oldest -> newest]).
# 40 results over two years; the codes of the protocol's analytes come from
# cds_service/protocol/data/observations.yaml, the others are real LOINC codes it ignores.
SERIES: tuple[tuple[str | None, str, str | None, tuple[float, ...]], ...] = (
    ("14685-2", "Cobalamin (Vitamin B12) [Moles/volume] in Serum or Plasma", "pmol/L",
     (310, 262, 198, 151, 118, 104)),
    ("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", "umol/L", (0.31, 0.52, 0.71)),
    ("13965-9", "Homocysteine [Moles/volume] in Serum or Plasma", "umol/L", (11.8, 18.4)),
    ("2284-8", "Folate [Mass/volume] in Serum or Plasma", "ng/mL", (9.1, 7.4, 6.8, 6.2)),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", (13.9, 13.1, 12.4, 11.8, 11.2)),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", (91, 95, 99, 103, 106)),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", (248, 231, 204, 187)),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", (4.4, 4.1, 4.3, 4.0)),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", (0.9, 1.0)),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", (7.2,)),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", (2.1,)),
    (None, "Ferritin", "ng/mL", (88,)),
    (None, "Vitamin D 25-OH", "ng/mL", (24,)),
    (None, "C-reactive protein", "mg/L", (3.2,)),
)  # fmt: skip

# (system or None for text only, code, text, clinical status).
CONDITIONS: tuple[tuple[str | None, str, str, str], ...] = (
    (ICD10CM, "D51.0", "Vitamin B12 deficiency anemia due to intrinsic factor deficiency",
     "active"),
    (None, "", "Essential hypertension", "active"),
    (None, "", "Type 2 diabetes mellitus", "active"),
    (None, "", "Gastro-oesophageal reflux disease", "active"),
    (SNOMED, "40930008", "Hypothyroidism", "active"),
    (ICD10CM, "J45.909", "Unspecified asthma, uncomplicated", "active"),
    (None, "", "Osteoarthritis of knee", "active"),
    (ICD10CM, "D51.9", "Vitamin B12 deficiency anemia, unspecified", "resolved"),
)  # fmt: skip


def _coding(system: str, code: str, display: str) -> JSON:
    return {"system": system, "code": code, "display": display}


def _subject() -> JSON:
    return {"reference": f"Patient/{PATIENT_ID}"}


def patient() -> JSON:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [{"system": "https://ehr.example.org/fhir/sid/mrn", "value": "MRN0900001"}],
        "active": True,
        "name": [{"use": "official", "family": "Benchmark", "given": ["Beatrix"]}],
        "gender": "female",
        "birthDate": "1961-05-14",
    }


def observations() -> list[JSON]:
    out: list[JSON] = []
    n = 0
    for code, text, unit, values in SERIES:
        count = len(values)
        for i, value in enumerate(values):
            n += 1
            # Spread each series evenly over the two years, ending at ANCHOR (newest last).
            when = ANCHOR - timedelta(days=round(730 * (count - 1 - i) / max(count - 1, 1)))
            concept: JSON = {"text": text}
            if code is not None:
                concept = {"coding": [_coding(LOINC, code, text)], "text": text}
            obs: JSON = {
                "resourceType": "Observation",
                "id": f"{PATIENT_ID}-obs-{n}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/observation-category",
                                "laboratory",
                                "Laboratory",
                            )
                        ]
                    }
                ],
                "code": concept,
                "subject": _subject(),
                "effectiveDateTime": when.isoformat(),
                "issued": f"{when.isoformat()}T16:30:00Z",
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }
            if code == "14685-2" and value < 148:
                obs["interpretation"] = [{"coding": [_coding(INTERP, "L", "Low")]}]
            out.append(obs)
    assert len(out) == 40, len(out)
    return out


def conditions() -> list[JSON]:
    out: list[JSON] = []
    for n, (system, code, text, status) in enumerate(CONDITIONS, start=1):
        concept: JSON = {"text": text}
        if system is not None:
            concept = {"coding": [_coding(system, code, text)], "text": text}
        onset = ANCHOR - timedelta(days=90 + 97 * n)
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{PATIENT_ID}-cond-{n}",
                "clinicalStatus": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            status,
                            status.capitalize(),
                        )
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "confirmed",
                            "Confirmed",
                        )
                    ]
                },
                "code": concept,
                "subject": _subject(),
                "onsetDateTime": onset.isoformat(),
                "recordedDate": onset.isoformat(),
            }
        )
    return out


def medication_requests() -> list[JSON]:
    """Active chronic medicines, text only (none of them matters to the B12 rules)."""
    out = []
    for n, text in enumerate(("amlodipine 5 mg tablet", "levothyroxine 75 mcg tablet"), start=1):
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{PATIENT_ID}-medreq-{n}",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": text},
                "subject": _subject(),
                "authoredOn": (ANCHOR - timedelta(days=200 * n)).isoformat(),
                "dosageInstruction": [{"text": f"{text}, once daily"}],
            }
        )
    return out


def medication_statements() -> list[JSON]:
    return [
        {
            "resourceType": "MedicationStatement",
            "id": f"{PATIENT_ID}-medstmt-1",
            "status": "active",
            "medicationCodeableConcept": {"text": "salbutamol 100 mcg inhaler"},
            "subject": _subject(),
            "effectiveDateTime": (ANCHOR - timedelta(days=400)).isoformat(),
        }
    ]


def allergies() -> list[JSON]:
    return [
        {
            "resourceType": "AllergyIntolerance",
            "id": f"{PATIENT_ID}-allergy-1",
            "clinicalStatus": {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "active",
                        "Active",
                    )
                ]
            },
            "code": {"text": "Penicillin"},
            "patient": _subject(),
        }
    ]


def records() -> dict[str, list[JSON]]:
    """The patient's resources by prefetch key."""
    return {
        "patient": [patient()],
        "conditions": conditions(),
        "observations": observations(),
        "procedures": [],
        "medicationRequests": medication_requests(),
        "medicationStatements": medication_statements(),
        "allergies": allergies(),
    }


def searchset(resources: list[JSON]) -> JSON:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def prefetch_keys() -> tuple[str, ...]:
    try:
        from cds_service.hooks.prefetch_templates import PREFETCH
    except ImportError:  # the hooks package is not there yet
        return DEFAULT_PREFETCH_KEYS
    return tuple(PREFETCH)


def prefetch() -> JSON:
    """Every prefetch key the service asks for: the Patient itself, searchset Bundles else."""
    by_key = records()
    out: JSON = {}
    for key in prefetch_keys():
        resources = by_key.get(key, [])
        out[key] = resources[0] if key == "patient" else searchset(resources)
    return out


def patient_bundle() -> JSON:
    """The whole record as one collection Bundle (for the loopback FHIR test server)."""
    resources = [r for rs in records().values() for r in rs]
    return {
        "resourceType": "Bundle",
        "id": PATIENT_ID,
        "type": "collection",
        "entry": [
            {"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def draft_orders() -> list[JSON]:
    """Being signed: cyanocobalamin 1000 mcg IV daily (an S2 finding) and folic acid 1 mg oral."""
    route_iv = _coding(SNOMED, "47625008", "Intravenous route")
    route_oral = _coding(SNOMED, "26643006", "Oral route")
    return [
        {
            "resourceType": "MedicationRequest",
            "id": f"{PATIENT_ID}-draft-1",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    _coding(RXNORM, "309594", "cyanocobalamin 1000 MCG/ML Injectable Solution")
                ],
                "text": "cyanocobalamin 1000 MCG/ML Injectable Solution",
            },
            "subject": _subject(),
            "authoredOn": ANCHOR.isoformat(),
            "dosageInstruction": [
                {
                    "text": "cyanocobalamin 1000 mcg IV once daily for 7 days",
                    "timing": {
                        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "count": 7}
                    },
                    "route": {"coding": [route_iv], "text": "Intravenous route"},
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": 1000,
                                "unit": "ug",
                                "system": UCUM,
                                "code": "ug",
                            }
                        }
                    ],
                }
            ],
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{PATIENT_ID}-draft-2",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [_coding(RXNORM, "310410", "folic acid 1 MG Oral Tablet")],
                "text": "folic acid 1 MG Oral Tablet",
            },
            "subject": _subject(),
            "authoredOn": ANCHOR.isoformat(),
            "dosageInstruction": [
                {
                    "text": "folic acid 1 mg by mouth once daily",
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "route": {"coding": [route_oral], "text": "Oral route"},
                    "doseAndRate": [
                        {"doseQuantity": {"value": 1, "unit": "mg", "system": UCUM, "code": "mg"}}
                    ],
                }
            ],
        },
    ]


def _base(hook: str, instance: str) -> JSON:
    return {
        "hook": hook,
        "hookInstance": instance,
        "context": {"userId": USER_ID, "patientId": PATIENT_ID, "encounterId": ENCOUNTER_ID},
    }


def patient_view_request() -> JSON:
    body = _base("patient-view", "6f1c2d3e-0000-4000-8000-00000000b001")
    body["prefetch"] = prefetch()
    return body


def order_sign_request() -> JSON:
    body = _base("order-sign", "6f1c2d3e-0000-4000-8000-00000000b002")
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in draft_orders()],
    }
    body["prefetch"] = prefetch()
    return body


def fallback_fetch_request(fhir_server: str) -> JSON:
    """Patient-view with no prefetch at all: the service must fetch from `fhir_server`."""
    body = _base("patient-view", "6f1c2d3e-0000-4000-8000-00000000b003")
    body["fhirServer"] = fhir_server
    return body
