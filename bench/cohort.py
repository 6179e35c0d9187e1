"""The distinct-patient workload: a cohort built deterministically from the golden patients.

Patient `i` is golden patient `i mod 75` (fhir_examples/patients, sorted by name) made into
another person: its own ids (the patient id is replaced in every id and reference), a birth
date moved by up to a year, every other date moved back by 0-10 days, its lab values moved by
up to 3%, and the history a real record has: each quantitative result the golden patient has is
preceded by 2-9 older results of the same test, months apart (values drifting, B12 higher in
the past), and 0-4 text-only conditions, 0-3 text-only chronic medicines and sometimes an
allergy are added. Sizes then run from a few KiB to tens of KiB, as real prefetch does.

Each patient is then asked about as the CDS Hooks sandbox asks (tests/sandbox_client.py has the
shapes, read from github.com/cds-hooks/sandbox): `patient-view`, then `order-select` with one
order selected, then `order-sign`; each prefetch key holds what a FHIR server answers to the
service's prefetch template (filtered by status, clinical status and, for Observations, the
protocol's codes; one page: `link` self only), the Patient resource for `patient`. The order is
the golden patient's own draft orders when it has some (a Bundle without `type`, as the sandbox
sends it), else the sandbox's own draft of a cyanocobalamin injection (`request-123`, `category`
as an object, a dose in `{pill}`). No randomness outside `random.Random(<patient id>)`: the same
bytes on every run.
"""

from __future__ import annotations

import copy
import json
import random
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = ROOT / "fhir_examples" / "patients"
FHIR_BASE = "https://ehr.example.org/fhir"
USER_ID = "Practitioner/example"
NAMESPACE = uuid.UUID("5b0f3e4c-8f61-4f59-9c8e-2a1d7e6b4c10")
#: What the sandbox's rx-view and rx-sign propose when the golden patient has no draft order.
SANDBOX_ORDER = ("309594", "cyanocobalamin 1000 MCG/ML Injectable Solution")
#: The sandbox's draft orders carry today's date; the cohort's carry a fixed one.
AUTHORED_ON = "2026-11-30"
#: The hooks of one patient's sequence, with their service ids.
SEQUENCE = (
    ("patient-view", "b12-patient-view"),
    ("order-select", "b12-order-select"),
    ("order-sign", "b12-order-sign"),
)
DEFAULT_SIZE = 225

NOISE_CONDITIONS = (
    "Essential hypertension",
    "Osteoarthritis of knee",
    "Gastro-oesophageal reflux disease",
    "Hyperlipidaemia",
    "Chronic lower back pain",
    "Benign prostatic hyperplasia",
    "Allergic rhinitis",
)
NOISE_MEDICINES = (
    "amlodipine 5 mg tablet",
    "atorvastatin 20 mg tablet",
    "ramipril 5 mg capsule",
    "paracetamol 500 mg tablet",
    "cetirizine 10 mg tablet",
)
NOISE_ALLERGIES = ("Penicillin", "Latex", "Sulfonamide")
#: Elements holding a date or dateTime that moves with the record (birthDate moves on its own).
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(.*)$")
_DATE_KEYS = frozenset(
    {
        "effectiveDateTime",
        "issued",
        "recordedDate",
        "onsetDateTime",
        "abatementDateTime",
        "authoredOn",
        "performedDateTime",
        "dateAsserted",
        "start",
        "end",
    }
)
B12_CODES = frozenset({"14685-2", "2132-9"})


def golden_slugs() -> list[str]:
    return sorted(p.stem for p in PATIENTS.glob("*.json") if not p.stem.endswith(".expected"))


def _sandbox() -> Any:
    """tests/sandbox_client.py: the sandbox's request shapes, kept in one place."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import sandbox_client

    return sandbox_client


def _move_dates(value: Any, days: int) -> Any:
    if isinstance(value, dict):
        return {
            k: (_shift(v, days) if k in _DATE_KEYS and isinstance(v, str) else _move_dates(v, days))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_move_dates(v, days) for v in value]
    return value


def _shift(text: str, days: int) -> str:
    match = _DATE.match(text)
    if match is None:
        return text  # a partial date (a year, a month): left as it is
    day = date.fromisoformat(match.group(1)) + timedelta(days=days)
    return day.isoformat() + match.group(2)


def _jitter(value: float, rng: random.Random, spread: float) -> float | int:
    """`value` moved by up to `spread` (a share), with the precision it was written with."""
    moved = value * (1 + rng.uniform(-spread, spread))
    if isinstance(value, int):
        return max(1, round(moved))
    decimals = len(repr(value).split(".")[1]) if "." in repr(value) else 0
    return round(moved, decimals)


def _codes(resource: JSON) -> set[str]:
    return {c.get("code", "") for c in resource.get("code", {}).get("coding", [])}


def _history(obs: JSON, patient_id: str, rng: random.Random) -> list[JSON]:
    """Older results of the same test: no notes, flags or interpretation (values differ)."""
    quantity = obs.get("valueQuantity")
    when = obs.get("effectiveDateTime")
    if not isinstance(quantity, dict) or "value" not in quantity or not isinstance(when, str):
        return []
    b12 = bool(_codes(obs) & B12_CODES)
    day = date.fromisoformat(when[:10])
    out = []
    for n in range(1, rng.randint(2, 9) + 1):
        day -= timedelta(days=rng.randint(60, 200))
        value = _jitter(quantity["value"], rng, 0.1)
        if b12:
            value = type(value)(value * (1 + 0.12 * n))
        old = {
            "resourceType": "Observation",
            "id": f"{obs['id']}-h{n}",
            "status": "final",
            "category": obs.get("category", []),
            "code": obs["code"],
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": day.isoformat(),
            "issued": f"{day.isoformat()}T15:10:00Z",
            "valueQuantity": {**quantity, "value": value},
        }
        if not old["category"]:
            del old["category"]
        out.append(old)
    return out


def _noise(patient_id: str, rng: random.Random, anchor: date) -> list[JSON]:
    subject = {"reference": f"Patient/{patient_id}"}
    out: list[JSON] = []
    for n, text in enumerate(rng.sample(NOISE_CONDITIONS, rng.randint(0, 4)), start=1):
        onset = (anchor - timedelta(days=rng.randint(200, 3000))).isoformat()
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{patient_id}-nc-{n}",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"text": text},
                "subject": subject,
                "onsetDateTime": onset,
                "recordedDate": onset,
            }
        )
    for n, text in enumerate(rng.sample(NOISE_MEDICINES, rng.randint(0, 3)), start=1):
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{patient_id}-nm-{n}",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": text},
                "subject": subject,
                "authoredOn": (anchor - timedelta(days=rng.randint(30, 900))).isoformat(),
                "dosageInstruction": [{"text": f"{text}, once daily"}],
            }
        )
    if rng.random() < 0.3:
        out.append(
            {
                "resourceType": "AllergyIntolerance",
                "id": f"{patient_id}-na-1",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "allergyintolerance-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"text": rng.choice(NOISE_ALLERGIES)},
                "patient": subject,
            }
        )
    return out


def patient_record(i: int, slugs: list[str] | None = None) -> tuple[str, list[JSON]]:
    """Patient `i` of the cohort: its id and every resource of its record (drafts included)."""
    slugs = slugs or golden_slugs()
    slug = slugs[i % len(slugs)]
    bundle = json.loads((PATIENTS / f"{slug}.json").read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    old_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    new_id = f"cohort-{i:04d}"
    rng = random.Random(new_id)
    resources = json.loads(json.dumps(resources).replace(old_id, new_id))
    days = -rng.randint(0, 10)
    out: list[JSON] = []
    for r in resources:
        r = _move_dates(r, days)
        if r["resourceType"] == "Patient":
            r["birthDate"] = _shift(r["birthDate"], rng.randint(-365, 365))
            r["name"] = [{"use": "official", "family": f"Cohort{i:04d}", "given": ["Alex"]}]
        elif r["resourceType"] == "Observation":
            quantity = r.get("valueQuantity")
            if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
                quantity["value"] = _jitter(quantity["value"], rng, 0.03)
            out.extend(_history(r, new_id, rng))
        out.append(r)
    anchor = date.fromisoformat(_shift("2026-11-24", days))
    out.extend(_noise(new_id, rng, anchor))
    return new_id, out


# What a FHIR server answers to each prefetch template (cds_service.hooks.prefetch_templates).
def _status(resource: JSON) -> str | None:
    value = resource.get("status")
    return value if isinstance(value, str) else None


def _clinical(resource: JSON) -> str | None:
    codings = (resource.get("clinicalStatus") or {}).get("coding") or [{}]
    code = codings[0].get("code")
    return code if isinstance(code, str) else None


def _matchers(observation_codes: set[str]) -> dict[str, tuple[str, Callable[[JSON], bool]]]:
    return {
        "conditions": (
            "Condition",
            lambda r: _clinical(r) in ("active", "recurrence", "relapse"),
        ),
        "observations": ("Observation", lambda r: bool(_codes(r) & observation_codes)),
        "procedures": ("Procedure", lambda r: _status(r) == "completed"),
        "medicationRequests": ("MedicationRequest", lambda r: _status(r) in ("active", "on-hold")),
        "medicationStatements": (
            "MedicationStatement",
            lambda r: _status(r) in ("active", "on-hold"),
        ),
        "allergies": ("AllergyIntolerance", lambda r: _clinical(r) == "active"),
    }


def _page(key: str, query: str, resources: list[JSON], patient_id: str) -> JSON:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(NAMESPACE, f"{patient_id}/{key}")),
        "meta": {"lastUpdated": "2026-11-30T08:00:00.000+00:00"},
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{FHIR_BASE}/{query}"}],
        "entry": [
            {
                "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def prefetch(patient_id: str, resources: list[JSON]) -> JSON:
    from cds_service.hooks.prefetch_templates import PREFETCH, observation_codes, render
    from cds_service.protocol import default_protocol

    codes = {token.split("|")[1] for token in observation_codes(default_protocol())}
    matchers = _matchers(codes)
    context = {"patientId": patient_id, "userId": USER_ID}
    out: JSON = {}
    for key, template in PREFETCH.items():
        if key == "patient":
            out[key] = next(r for r in resources if r["resourceType"] == "Patient")
            continue
        kind, wanted = matchers[key]
        found = [r for r in resources if r["resourceType"] == kind and wanted(r)]
        out[key] = _page(key, render(template, context), found, patient_id)
    return out


def _drafts(patient_id: str, resources: list[JSON]) -> list[JSON]:
    drafts = [
        r
        for r in resources
        if r["resourceType"] in ("MedicationRequest", "ServiceRequest") and r["status"] == "draft"
    ]
    if drafts:
        return drafts
    draft = _sandbox().sandbox_draft(patient_id, *SANDBOX_ORDER)
    draft["authoredOn"] = AUTHORED_ON
    return [draft]


def requests(i: int, slugs: list[str] | None = None) -> list[tuple[str, JSON]]:
    """Patient `i`'s sequence: (service id, request body) for view, select and sign."""
    patient_id, resources = patient_record(i, slugs)
    drafts = _drafts(patient_id, resources)
    filled = prefetch(patient_id, resources)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]}
    out = []
    for hook, service in SEQUENCE:
        context: JSON = {"patientId": patient_id, "userId": USER_ID}
        if hook == "order-select":
            first = drafts[0]
            context["selections"] = [f"{first['resourceType']}/{first['id']}"]
        if hook != "patient-view":
            context["draftOrders"] = copy.deepcopy(bundle)
        body = {
            "hookInstance": str(uuid.uuid5(NAMESPACE, f"{patient_id}/{hook}")),
            "hook": hook,
            "fhirServer": FHIR_BASE,
            "context": context,
            "prefetch": filled,
        }
        out.append((service, body))
    return out


def cohort(size: int = DEFAULT_SIZE) -> Iterator[tuple[str, JSON]]:
    """Every patient's sequence, patient after patient."""
    slugs = golden_slugs()
    for i in range(size):
        yield from requests(i, slugs)
