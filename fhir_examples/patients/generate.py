#!/usr/bin/env python3
"""Generate the golden test patients for the B12 CDS service.

Writes, for every case below, ``<slug>.json`` (a FHIR R4 Bundle of type ``collection`` holding one
Patient and that patient's record) and ``<slug>.expected.json`` (the outcome the service must
reach), then cross-checks every hand-written expected outcome against a small, independent
reading of ``cds_service/protocol/data/*.yaml`` (``reference_assessment`` below). The expected
files are written from the hand-written values, never from the reference reading: a mismatch
stops the script so that a disagreement is looked at by a person.

Run from the repository root:  .venv/bin/python fhir_examples/patients/generate.py

Only codes that occur in the protocol YAML are used (plus the FHIR/HL7 code systems for statuses,
categories and interpretations). Medications without a code in the YAML are sent as text only.
Everything is deterministic: running the script twice gives identical files.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = REPO / "cds_service" / "protocol" / "data"
BASE_URL = "https://ehr.example.org/fhir"
START = "2026-12-01"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MRN_SYSTEM = "https://ehr.example.org/fhir/sid/mrn"

# --------------------------------------------------------------------------------------------
# Codes (all taken from the protocol YAML; the script checks this at the end)
# --------------------------------------------------------------------------------------------
C = {
    # b12_deficiency / inherited / pernicious anaemia
    "D51.0": (ICD10CM, "D51.0", "Vitamin B12 deficiency anemia due to intrinsic factor deficiency"),
    "D51.2": (ICD10CM, "D51.2", "Transcobalamin II deficiency"),
    "D51.9": (ICD10CM, "D51.9", "Vitamin B12 deficiency anemia, unspecified"),
    "D519": (ICD10CM, "D519", "Vitamin B12 deficiency anemia, unspecified"),  # dotless on purpose
    "pernicious": (SNOMED, "84027009", "Pernicious anemia"),
    "atrophic-gastritis": (SNOMED, "84568007", "Atrophic gastritis"),
    # malabsorption
    "rygb": (SNOMED, "443906008", "Bypass of stomach with short limb Roux-en-Y gastroenterostomy"),
    "subtotal-gastrectomy": (SNOMED, "49209004", "Subtotal gastrectomy"),
    "small-bowel-excision": (SNOMED, "107938000", "Small intestine excision"),
    "K50.00": (ICD10CM, "K50.00", "Crohn's disease of small intestine without complications"),
    "crohn-si": (SNOMED, "56689002", "Crohn's disease of small intestine"),
    "K90.0": (ICD10CM, "K90.0", "Celiac disease"),
    # dietary
    "vegan-diet": (SNOMED, "281015005", "Vegan diet"),
    # safety
    "polyneuropathy": (SNOMED, "42345000", "Polyneuropathy"),
    "H47.22": (ICD10CM, "H47.22", "Hereditary optic atrophy"),
    "pregnant": (SNOMED, "77386006", "Pregnant"),
    # medications and routes
    "cyanocobalamin-inj": (RXNORM, "309594", "cyanocobalamin 1000 MCG/ML Injectable Solution"),
    "hydroxocobalamin-inj": (RXNORM, "317106", "hydroxocobalamin 1000 MCG/ML Injectable Solution"),
    "folic-acid": (RXNORM, "310410", "folic acid 1 MG Oral Tablet"),
    "route-iv": (SNOMED, "47625008", "Intravenous route"),
    "route-im": (SNOMED, "78421000", "Intramuscular route"),
    "route-oral": (SNOMED, "26643006", "Oral route"),
}

# LOINC per analyte: (code, display)
L = {
    "b12-molar": ("14685-2", "Cobalamin (Vitamin B12) [Moles/volume] in Serum or Plasma"),
    "b12-mass": ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma"),
    "mma": ("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma"),
    "hcy": ("13965-9", "Homocysteine [Moles/volume] in Serum or Plasma"),
    "folate": ("2284-8", "Folate [Mass/volume] in Serum or Plasma"),
    "hb": ("718-7", "Hemoglobin [Mass/volume] in Blood"),
    "k": ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
    "ifab": ("31443-5", "Intrinsic factor antibody"),
    "pca": ("8087-9", "Parietal cell Ab [Units/volume] in Serum"),
    "plt": ("777-3", "Platelets [#/volume] in Blood by Automated count"),
}

# Reference ranges per (analyte, unit): (low, high); None = open.
REF = {
    ("b12-molar", "pmol/L"): (148, 664),
    ("b12-mass", "pg/mL"): (200, 900),
    ("b12-mass", "ng/L"): (200, 900),
    ("mma", "umol/L"): (0.0, 0.40),
    ("mma", "nmol/L"): (0, 400),
    ("hcy", "umol/L"): (5, 15),
    ("folate", "ng/mL"): (4.0, None),
    ("k", "mmol/L"): (3.5, 5.1),
    ("plt", "10*3/uL"): (150, 400),
}
INTERP_DISPLAY = {
    "L": "Low",
    "H": "High",
    "N": "Normal",
    "LL": "Critical low",
    "POS": "Positive",
    "NEG": "Negative",
}


def coding(key: str) -> dict[str, str]:
    system, code, display = C[key]
    return {"system": system, "code": code, "display": display}


def concept(key: str) -> dict[str, Any]:
    return {"coding": [coding(key)], "text": C[key][2]}


def ref(resource_type: str, rid: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{rid}"}


# --------------------------------------------------------------------------------------------
# Bundle builder
# --------------------------------------------------------------------------------------------
class Patient:
    """One patient's record, built resource by resource."""

    def __init__(
        self, slug: str, pid: str, mrn: str, given: list[str], family: str, gender: str, birth: str
    ) -> None:
        self.slug = slug
        self.pid = pid
        self.entries: list[dict[str, Any]] = []
        self.counter: dict[str, int] = {}
        self._add(
            {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [
                    {
                        "use": "usual",
                        "type": {
                            "coding": [
                                {
                                    "system": V2_0203,
                                    "code": "MR",
                                    "display": "Medical record number",
                                }
                            ],
                            "text": "MRN",
                        },
                        "system": MRN_SYSTEM,
                        "value": mrn,
                    }
                ],
                "active": True,
                "name": [{"use": "official", "family": family, "given": given}],
                "gender": gender,
                "birthDate": birth,
            }
        )

    # -- helpers -----------------------------------------------------------------------------
    def _id(self, abbrev: str) -> str:
        n = self.counter.get(abbrev, 0) + 1
        self.counter[abbrev] = n
        return f"{self.pid}-{abbrev}-{n}"

    def _add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.entries.append(
            {
                "fullUrl": f"{BASE_URL}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
            }
        )
        return resource

    @property
    def subject(self) -> dict[str, str]:
        return ref("Patient", self.pid)

    # -- resources ---------------------------------------------------------------------------
    def condition(
        self,
        key: str | None = None,
        *,
        text: str | None = None,
        onset: str,
        recorded: str | None = None,
        clinical: str = "active",
        verification: str = "confirmed",
        abated: str | None = None,
        category: str = "problem-list-item",
    ) -> None:
        code: dict[str, Any] = concept(key) if key else {"text": text}
        res: dict[str, Any] = {"resourceType": "Condition", "id": self._id("cond")}
        if verification != "entered-in-error":  # con-5: no clinicalStatus when entered-in-error
            res["clinicalStatus"] = {
                "coding": [
                    {"system": COND_CLINICAL, "code": clinical, "display": clinical.capitalize()}
                ]
            }
        res["verificationStatus"] = {
            "coding": [
                {
                    "system": COND_VER,
                    "code": verification,
                    "display": {
                        "confirmed": "Confirmed",
                        "refuted": "Refuted",
                        "provisional": "Provisional",
                        "unconfirmed": "Unconfirmed",
                        "entered-in-error": "Entered in Error",
                    }[verification],
                }
            ]
        }
        res["category"] = [
            {
                "coding": [
                    {
                        "system": COND_CAT,
                        "code": category,
                        "display": {
                            "problem-list-item": "Problem List Item",
                            "encounter-diagnosis": "Encounter Diagnosis",
                        }[category],
                    }
                ]
            }
        ]
        res["code"] = code
        res["subject"] = self.subject
        res["onsetDateTime"] = onset
        if abated:
            res["abatementDateTime"] = abated
        res["recordedDate"] = recorded or onset
        self._add(res)

    def lab(
        self,
        analyte: str,
        value: float,
        unit: str,
        when: str,
        *,
        ucum: str | None = None,
        interpretation: str | None = None,
        status: str = "final",
        ref_range: tuple[float | None, float | None] | None = None,
        ref_text: str | None = None,
    ) -> None:
        code, display = L[analyte]
        res: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": status,
            "category": [
                {"coding": [{"system": OBS_CAT, "code": "laboratory", "display": "Laboratory"}]}
            ],
            "code": {
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": display,
            },
            "subject": self.subject,
            "effectiveDateTime": when,
            "issued": _issued(when),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum or unit},
        }
        if interpretation:
            res["interpretation"] = [
                {
                    "coding": [
                        {
                            "system": INTERP,
                            "code": interpretation,
                            "display": INTERP_DISPLAY[interpretation],
                        }
                    ]
                }
            ]
        rng = ref_range if ref_range is not None else REF.get((analyte, unit))
        if rng is not None:
            rr: dict[str, Any] = {}
            if rng[0] is not None:
                rr["low"] = {"value": rng[0], "unit": unit, "system": UCUM, "code": ucum or unit}
            if rng[1] is not None:
                rr["high"] = {"value": rng[1], "unit": unit, "system": UCUM, "code": ucum or unit}
            if ref_text:
                rr["text"] = ref_text
            res["referenceRange"] = [rr]
        self._add(res)

    def qualitative(self, analyte: str, result: str, interpretation: str, when: str) -> None:
        code, display = L[analyte]
        self._add(
            {
                "resourceType": "Observation",
                "id": self._id("obs"),
                "status": "final",
                "category": [
                    {"coding": [{"system": OBS_CAT, "code": "laboratory", "display": "Laboratory"}]}
                ],
                "code": {
                    "coding": [{"system": LOINC, "code": code, "display": display}],
                    "text": display,
                },
                "subject": self.subject,
                "effectiveDateTime": when,
                "issued": _issued(when),
                "valueCodeableConcept": {"text": result},
                "interpretation": [
                    {
                        "coding": [
                            {
                                "system": INTERP,
                                "code": interpretation,
                                "display": INTERP_DISPLAY[interpretation],
                            }
                        ]
                    }
                ],
            }
        )

    def procedure(self, key: str, when: str) -> None:
        self._add(
            {
                "resourceType": "Procedure",
                "id": self._id("proc"),
                "status": "completed",
                "code": concept(key),
                "subject": self.subject,
                "performedDateTime": when,
            }
        )

    def med_request(
        self,
        *,
        med: str | None = None,
        text: str | None = None,
        status: str,
        authored: str,
        dosage: str,
        route: str | None = None,
        dose: tuple[float, str] | None = None,
        timing: dict[str, Any] | None = None,
        intent: str = "order",
        period_start: str | None = None,
    ) -> None:
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self._id("medreq"),
            "status": status,
            "intent": intent,
            "medicationCodeableConcept": concept(med) if med else {"text": text},
            "subject": self.subject,
            "authoredOn": authored,
            "dosageInstruction": [_dosage(dosage, route, dose, timing, period_start)],
        }
        self._add(res)

    def med_statement(
        self,
        *,
        med: str | None = None,
        text: str | None = None,
        status: str,
        since: str,
        asserted: str,
        dosage: str,
        route: str | None = None,
        dose: tuple[float, str] | None = None,
        timing: dict[str, Any] | None = None,
    ) -> None:
        self._add(
            {
                "resourceType": "MedicationStatement",
                "id": self._id("medstmt"),
                "status": status,
                "medicationCodeableConcept": concept(med) if med else {"text": text},
                "subject": self.subject,
                "effectivePeriod": {"start": since},
                "dateAsserted": asserted,
                "dosage": [_dosage(dosage, route, dose, timing, None)],
            }
        )

    def allergy(
        self,
        text: str,
        *,
        clinical: str = "active",
        recorded: str,
        category: str = "environment",
        reaction: str | None = None,
    ) -> None:
        res: dict[str, Any] = {
            "resourceType": "AllergyIntolerance",
            "id": self._id("allergy"),
            "clinicalStatus": {
                "coding": [
                    {"system": ALLERGY_CLINICAL, "code": clinical, "display": clinical.capitalize()}
                ]
            },
            "verificationStatus": {
                "coding": [{"system": ALLERGY_VER, "code": "confirmed", "display": "Confirmed"}]
            },
            "type": "allergy",
            "category": [category],
            "code": {"text": text},
            "patient": self.subject,
            "recordedDate": recorded,
        }
        if reaction:
            res["reaction"] = [{"manifestation": [{"text": reaction}]}]
        self._add(res)

    def service_request(
        self, analyte: str, *, status: str, authored: str, reason: str | None = None
    ) -> None:
        code, display = L[analyte]
        res: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": self._id("servreq"),
            "status": status,
            "intent": "order",
            "code": {
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": display,
            },
            "subject": self.subject,
            "authoredOn": authored,
        }
        if reason:
            res["reasonCode"] = [{"text": reason}]
        self._add(res)

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "id": self.slug,
            "type": "collection",
            "timestamp": "2026-11-24T09:00:00Z",
            "entry": self.entries,
        }


def _issued(when: str) -> str:
    return f"{when}T16:30:00Z" if len(when) == 10 else when


def _dosage(
    text: str,
    route: str | None,
    dose: tuple[float, str] | None,
    timing: dict[str, Any] | None,
    period_start: str | None,
) -> dict[str, Any]:
    d: dict[str, Any] = {"text": text}
    if timing:
        t = dict(timing)
        if period_start:
            t["boundsPeriod"] = {"start": period_start}
        d["timing"] = {"repeat": t}
    if route:
        d["route"] = concept(route)
    if dose:
        d["doseAndRate"] = [
            {"doseQuantity": {"value": dose[0], "unit": dose[1], "system": UCUM, "code": dose[1]}}
        ]
    return d


DAILY = {"frequency": 1, "period": 1, "periodUnit": "d"}
TWICE_DAILY = {"frequency": 2, "period": 1, "periodUnit": "d"}
MONTHLY = {"frequency": 1, "period": 1, "periodUnit": "mo"}
WEEKLY = {"frequency": 1, "period": 1, "periodUnit": "wk"}
EVERY_3_MONTHS = {"frequency": 1, "period": 3, "periodUnit": "mo"}


def metformin(p: Patient, *, status: str = "active", authored: str = "2024-03-11") -> None:
    p.med_request(
        text="metformin 500 mg oral tablet",
        status=status,
        authored=authored,
        dosage="metformin 500 mg by mouth twice daily with meals",
        route="route-oral",
        dose=(1, "{tbl}"),
        timing=TWICE_DAILY,
    )


def b12_im_active(
    p: Patient,
    authored: str,
    *,
    route: str = "route-im",
    timing: dict[str, Any] = MONTHLY,
    text: str | None = None,
) -> None:
    p.med_request(
        med="cyanocobalamin-inj",
        status="active",
        authored=authored,
        dosage=text or "cyanocobalamin 1000 mcg IM once a month",
        route=route,
        dose=(1000, "ug"),
        timing=timing,
        period_start=authored,
    )


# --------------------------------------------------------------------------------------------
# Expected outcomes
# --------------------------------------------------------------------------------------------
IM4 = ["loading", "alternate-days", "every-3-4-days", "maintenance"]
IM_ORAL = ["loading", "alternate-days", "every-3-4-days", "maintenance-oral"]
ORAL = ["oral-daily"]
NICE = ["loading", "maintenance"]
M123 = ["M1", "M2", "M3"]


def expected(
    description: str,
    status: str,
    *,
    rules: list[str],
    type_: str | None = None,
    causes: list[str] | None = None,
    regimen: str | None = None,
    alternatives: list[str] | None = None,
    phases: list[str] | None = None,
    lifelong: bool = False,
    unusable: list[str] | None = None,
    profile: str = "standard",
) -> dict[str, Any]:
    return {
        "description": description,
        "profile": profile,
        "start": START,
        "status": status,
        "type": type_,
        "causes": causes or [],
        "rules": sorted(set(rules)),
        "regimen": regimen,
        "alternatives": alternatives or [],
        "phases": phases or [],
        "lifelong": lifelong,
        "unusable": unusable or [],
    }


def unspecified_regimen(
    description: str, extra_rules: list[str], status: str = "confirmed", profile: str = "standard"
) -> dict[str, Any]:
    """Confirmed, cause not identified: R2 with the R5 alternative (standard profile)."""
    return expected(
        description,
        status,
        rules=[*extra_rules, "T6", "R2", "R5", *M123],
        type_="unspecified",
        causes=["unspecified"],
        regimen="cyanocobalamin-im-1000",
        alternatives=["cyanocobalamin-im-then-oral"],
        phases=IM4,
        profile=profile,
    )


def blocked(
    description: str, rules: list[str], type_: str = "unspecified", causes: list[str] | None = None
) -> dict[str, Any]:
    """Confirmed but no schedule (blocked by an S-rule, or T1)."""
    return expected(
        description,
        "confirmed",
        rules=rules,
        type_=type_,
        causes=causes if causes is not None else ["unspecified"],
    )


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
Builder = Callable[["Patient"], None]
CASES: list[tuple[str, str, Builder, dict[str, Any]]] = []  # (slug, case label, builder, expected)


def case(slug: str, label: str, exp: dict[str, Any]) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        CASES.append((slug, label, fn, exp))
        return fn

    return deco


def low_b12(p: Patient, value: float = 110, when: str = "2026-10-14") -> None:
    p.lab("b12-molar", value, "pmol/L", when, interpretation="L")


def hb(p: Patient, value: float, when: str, female: bool) -> None:
    rng = (12.0, 15.5) if female else (13.5, 17.5)
    interp = "L" if value < rng[0] else "N"
    p.lab("hb", value, "g/dL", when, interpretation=interp, ref_range=rng)


# ---- T1 ------------------------------------------------------------------------------------
@case(
    "t1-inherited-tcii-deficiency",
    "T1 inherited: transcobalamin II deficiency (D51.2)",
    blocked(
        "Transcobalamin II deficiency on the problem list: confirmed by D1, inherited type T1, "
        "specialist referral and no schedule.",
        ["D1", "T1"],
        type_="inherited",
        causes=["inherited-disorder"],
    ),
)
def _t1(p: Patient) -> None:
    p.condition("D51.2", onset="2024-06-03", recorded="2024-06-03")
    p.lab("mma", 2.8, "umol/L", "2026-09-17", interpretation="H")
    p.lab("hcy", 38, "umol/L", "2026-09-17", interpretation="H")
    hb(p, 11.2, "2026-09-17", female=False)


# ---- T2 ------------------------------------------------------------------------------------
def _pernicious_d510(p: Patient) -> None:
    p.condition("D51.0", onset="2026-09-15", recorded="2026-09-16")
    p.condition(text="Hypothyroidism", onset="2024-02-20")
    low_b12(p, 95, "2026-09-10")
    hb(p, 10.4, "2026-09-10", female=True)
    p.lab("folate", 7.9, "ng/mL", "2026-09-10", interpretation="N")


PA_RULES = ["D1", "D2", "T2", "R1", *M123]
case(
    "t2-pernicious-anemia-d51-0",
    "T2 pernicious anaemia via D51.0 + low B12 (R1), profile standard",
    expected(
        "Pernicious anaemia (D51.0) with B12 95 pmol/L: confirmed by D1 and D2, R1 cyanocobalamin "
        "1000 mcg IM with FDA 100 mcg and IM-then-oral alternatives, lifelong.",
        "confirmed",
        rules=PA_RULES,
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
        regimen="cyanocobalamin-im-1000",
        alternatives=["cyanocobalamin-im-100-fda", "cyanocobalamin-im-then-oral"],
        phases=IM4,
        lifelong=True,
    ),
)(_pernicious_d510)
case(
    "t2-pernicious-anemia-d51-0-nice",
    "T2 pernicious anaemia, profile nice-ng239",
    expected(
        "Same record as t2-pernicious-anemia-d51-0 under the nice-ng239 profile: R1 "
        "hydroxocobalamin 1 mg IM three times a week then every 2-3 months.",
        "confirmed",
        rules=PA_RULES,
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
        regimen="hydroxocobalamin-im-nice",
        alternatives=["hydroxocobalamin-im-nice-then-oral"],
        phases=NICE,
        lifelong=True,
        profile="nice-ng239",
    ),
)(_pernicious_d510)
case(
    "t2-pernicious-anemia-d51-0-fda",
    "T2 pernicious anaemia, profile fda-label",
    expected(
        "Same record as t2-pernicious-anemia-d51-0 under the fda-label profile: R1 "
        "cyanocobalamin 100 mcg IM per the FDA label, 1000 mcg as the alternative.",
        "confirmed",
        rules=PA_RULES,
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
        regimen="cyanocobalamin-im-100-fda",
        alternatives=["cyanocobalamin-im-1000"],
        phases=IM4,
        lifelong=True,
        profile="fda-label",
    ),
)(_pernicious_d510)


@case(
    "t2-intrinsic-factor-antibody",
    "T2 via positive intrinsic factor antibody + low B12",
    expected(
        "No condition on record; B12 118 pmol/L (D2) and a positive intrinsic factor antibody "
        "make it pernicious anaemia (T2), R1, lifelong.",
        "confirmed",
        rules=["D2", "T2", "R1", *M123],
        type_="pernicious-anemia",
        causes=["intrinsic-factor-antibody"],
        regimen="cyanocobalamin-im-1000",
        alternatives=["cyanocobalamin-im-100-fda", "cyanocobalamin-im-then-oral"],
        phases=IM4,
        lifelong=True,
    ),
)
def _t2_ifab(p: Patient) -> None:
    low_b12(p, 118, "2026-10-02")
    p.qualitative("ifab", "Positive", "POS", "2026-10-09")
    hb(p, 11.9, "2026-10-02", female=False)


@case(
    "t2-autoimmune-gastritis-parietal-cell",
    "T2 via atrophic gastritis + positive parietal cell antibody",
    expected(
        "Atrophic gastritis (84568007) with a positive parietal cell antibody and B12 130 pmol/L: "
        "D2, T2 autoimmune gastritis, R1, lifelong.",
        "confirmed",
        rules=["D2", "T2", "R1", *M123],
        type_="pernicious-anemia",
        causes=["autoimmune-gastritis"],
        regimen="cyanocobalamin-im-1000",
        alternatives=["cyanocobalamin-im-100-fda", "cyanocobalamin-im-then-oral"],
        phases=IM4,
        lifelong=True,
    ),
)
def _t2_pca(p: Patient) -> None:
    p.condition("atrophic-gastritis", onset="2025-05-20", recorded="2025-05-22")
    p.qualitative("pca", "Positive", "POS", "2025-05-28")
    low_b12(p, 130, "2026-08-19")


@case(
    "t2-pernicious-snomed-with-metformin",
    "T2 wins over T4: SNOMED pernicious anaemia + metformin",
    expected(
        "Pernicious anaemia (SNOMED 84027009) and active metformin with B12 100 pmol/L: the first "
        "matching type rule T2 wins over T4; R1, lifelong.",
        "confirmed",
        rules=PA_RULES,
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
        regimen="cyanocobalamin-im-1000",
        alternatives=["cyanocobalamin-im-100-fda", "cyanocobalamin-im-then-oral"],
        phases=IM4,
        lifelong=True,
    ),
)
def _t2_metformin(p: Patient) -> None:
    p.condition("pernicious", onset="2026-10-20", recorded="2026-10-21")
    p.condition(text="Type 2 diabetes mellitus", onset="2024-01-15")
    metformin(p, authored="2024-01-15")
    low_b12(p, 100, "2026-10-16")


# ---- T3 ------------------------------------------------------------------------------------
@case(
    "t3-bariatric-roux-en-y",
    "T3 malabsorption: bariatric surgery Procedure 443906008 (R3)",
    expected(
        "Roux-en-Y gastric bypass (Procedure 443906008) and B12 105 pmol/L: D2, T3 bariatric "
        "surgery, R3 IM loading then oral daily for life, IM monthly as the alternative.",
        "confirmed",
        rules=["D2", "T3", "R3", *M123],
        type_="malabsorption",
        causes=["bariatric-surgery"],
        regimen="cyanocobalamin-im-then-oral",
        alternatives=["cyanocobalamin-im-1000"],
        phases=IM_ORAL,
        lifelong=True,
    ),
)
def _t3_bariatric(p: Patient) -> None:
    p.procedure("rygb", "2024-04-18")
    p.condition(
        text="Obesity, class III", onset="2024-01-09", clinical="resolved", abated="2025-06-30"
    )
    low_b12(p, 105, "2026-08-20")
    hb(p, 11.6, "2026-08-20", female=True)


@case(
    "t3-gastrectomy",
    "T3 malabsorption: subtotal gastrectomy Procedure 49209004 (R2)",
    expected(
        "Subtotal gastrectomy and B12 120 pmol/L: D2, T3 gastrectomy, R2 cyanocobalamin 1000 mcg "
        "IM with monthly maintenance for life.",
        "confirmed",
        rules=["D2", "T3", "R2", *M123],
        type_="malabsorption",
        causes=["gastrectomy"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=True,
    ),
)
def _t3_gastrectomy(p: Patient) -> None:
    p.procedure("subtotal-gastrectomy", "2024-11-05")
    p.condition(text="Adenocarcinoma of stomach, treated", onset="2024-09-30", clinical="remission")
    # stopped before surgery: not current therapy
    p.med_request(
        text="omeprazole 20 mg delayed-release oral capsule",
        status="stopped",
        authored="2024-06-02",
        dosage="omeprazole 20 mg by mouth once daily",
        route="route-oral",
        dose=(1, "{cap}"),
        timing=DAILY,
    )
    low_b12(p, 120, "2026-09-24")


@case(
    "t3-ileal-resection",
    "T3 malabsorption: small intestine excision Procedure 107938000 (R2)",
    expected(
        "Small-bowel resection (Procedure 107938000) and B12 135 pmol/L: D2, T3 ileal resection, "
        "R2, lifelong.",
        "confirmed",
        rules=["D2", "T3", "R2", *M123],
        type_="malabsorption",
        causes=["ileal-resection"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=True,
    ),
)
def _t3_ileal(p: Patient) -> None:
    p.procedure("small-bowel-excision", "2025-01-22")
    low_b12(p, 135, "2026-10-05")
    p.lab("folate", 11.2, "ng/mL", "2026-10-05", interpretation="N")


@case(
    "t3-crohn-small-intestine",
    "T3 malabsorption: Crohn's disease K50.00 (prefix K50.0), relapse",
    expected(
        "Crohn's disease of small intestine (ICD-10-CM K50.00, clinicalStatus relapse) and B12 "
        "140 pmol/L: D2, T3 Crohn's, R2, not lifelong.",
        "confirmed",
        rules=["D2", "T3", "R2", *M123],
        type_="malabsorption",
        causes=["crohn-disease"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=False,
    ),
)
def _t3_crohn(p: Patient) -> None:
    p.condition("K50.00", onset="2024-03-12", recorded="2026-07-30", clinical="relapse")
    low_b12(p, 140, "2026-08-11")
    hb(p, 12.6, "2026-08-11", female=False)


@case(
    "t3-coeliac",
    "T3 malabsorption: coeliac disease K90.0",
    expected(
        "Coeliac disease (K90.0) and B12 128 pmol/L: D2, T3 coeliac, R2, not lifelong.",
        "confirmed",
        rules=["D2", "T3", "R2", *M123],
        type_="malabsorption",
        causes=["celiac-disease"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=False,
    ),
)
def _t3_coeliac(p: Patient) -> None:
    p.condition("K90.0", onset="2025-02-14", recorded="2025-02-18")
    low_b12(p, 128, "2026-06-30")


@case(
    "t3-crohn-with-ileal-resection",
    "T3 with two causes: ileal resection + Crohn's (SNOMED)",
    expected(
        "Crohn's disease of small intestine (SNOMED 56689002) after a small-bowel resection, "
        "B12 112 pmol/L: T3 lists both causes in YAML order; lifelong via ileal resection.",
        "confirmed",
        rules=["D2", "T3", "R2", *M123],
        type_="malabsorption",
        causes=["ileal-resection", "crohn-disease"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=True,
    ),
)
def _t3_two(p: Patient) -> None:
    p.condition("crohn-si", onset="2024-02-01", recorded="2024-02-05")
    p.procedure("small-bowel-excision", "2024-07-16")
    low_b12(p, 112, "2026-09-03")


# ---- T4 ------------------------------------------------------------------------------------
@case(
    "t4-metformin",
    "T4 drug-associated: active metformin MedicationRequest (text only), R4 oral",
    expected(
        "Active metformin (text only) and B12 125 pmol/L: D2, T4 metformin, R4 oral "
        "cyanocobalamin 1000 mcg daily with the IM series as the alternative.",
        "confirmed",
        rules=["D2", "T4", "R4", *M123],
        type_="drug-associated",
        causes=["metformin"],
        regimen="cyanocobalamin-oral-1000",
        alternatives=["cyanocobalamin-im-1000"],
        phases=ORAL,
        lifelong=False,
    ),
)
def _t4_metformin(p: Patient) -> None:
    p.condition(text="Type 2 diabetes mellitus", onset="2024-03-11")
    p.condition(text="Essential hypertension", onset="2024-05-02")
    metformin(p)
    low_b12(p, 125, "2026-09-18")
    hb(p, 13.9, "2026-09-18", female=False)


@case(
    "t4-omeprazole-statement",
    "T4 drug-associated: active omeprazole MedicationStatement (text only)",
    expected(
        "Active omeprazole MedicationStatement (text only) and B12 140 pmol/L: D2, T4 acid "
        "suppression, R4 oral.",
        "confirmed",
        rules=["D2", "T4", "R4", *M123],
        type_="drug-associated",
        causes=["acid-suppression"],
        regimen="cyanocobalamin-oral-1000",
        alternatives=["cyanocobalamin-im-1000"],
        phases=ORAL,
        lifelong=False,
    ),
)
def _t4_ppi(p: Patient) -> None:
    p.condition(text="Gastro-oesophageal reflux disease", onset="2024-02-27")
    p.med_statement(
        text="omeprazole 40 mg delayed-release oral capsule",
        status="active",
        since="2024-03-01",
        asserted="2026-10-12",
        dosage="omeprazole 40 mg by mouth once daily before breakfast",
        route="route-oral",
        dose=(1, "{cap}"),
        timing=DAILY,
    )
    low_b12(p, 140, "2026-10-12")


# ---- T5 ------------------------------------------------------------------------------------
@case(
    "t5-vegan-diet",
    "T5 dietary: vegan diet 281015005, R4 oral open-ended",
    expected(
        "Vegan diet (281015005) and B12 98 pmol/L: D2, T5 vegan diet, R4 oral daily with no end "
        "date (lifelong while the diet continues).",
        "confirmed",
        rules=["D2", "T5", "R4", *M123],
        type_="dietary",
        causes=["vegan-diet"],
        regimen="cyanocobalamin-oral-1000",
        alternatives=["cyanocobalamin-im-1000"],
        phases=ORAL,
        lifelong=True,
    ),
)
def _t5(p: Patient) -> None:
    p.condition("vegan-diet", onset="2024-01-01", recorded="2025-04-09")
    low_b12(p, 98, "2026-10-27")
    hb(p, 12.4, "2026-10-27", female=True)


# ---- T6 ------------------------------------------------------------------------------------
@case(
    "t6-unspecified-low-b12",
    "T6 unspecified: low B12 only (older normal result superseded), R2 + R5",
    unspecified_regimen(
        "Low B12 105 pmol/L (an older 380 pmol/L result is superseded) and no cause on "
        "record: D2, T6, R2 with the R5 IM-then-oral alternative.",
        ["D2"],
    ),
)
def _t6(p: Patient) -> None:
    p.condition(text="Essential hypertension", onset="2024-04-15")
    p.med_request(
        text="amlodipine 5 mg oral tablet",
        status="active",
        authored="2024-04-15",
        dosage="amlodipine 5 mg by mouth once daily",
        route="route-oral",
        dose=(1, "{tbl}"),
        timing=DAILY,
    )
    p.lab("b12-molar", 380, "pmol/L", "2024-05-14", interpretation="N")
    low_b12(p, 105, "2026-10-20")
    hb(p, 13.1, "2026-10-20", female=False)


# ---- S1 ------------------------------------------------------------------------------------
@case(
    "s1-polyneuropathy-metformin",
    "S1 neuro: polyneuropathy + metformin + low B12 -> IM (R2, not R4)",
    expected(
        "Polyneuropathy (42345000) with metformin and B12 102 pmol/L: type stays drug-associated "
        "but S1 forces the IM series (R2), no oral alternative.",
        "confirmed",
        rules=["D2", "T4", "S1", "R2", *M123],
        type_="drug-associated",
        causes=["metformin"],
        regimen="cyanocobalamin-im-1000",
        phases=IM4,
        lifelong=False,
    ),
)
def _s1(p: Patient) -> None:
    p.condition(text="Type 2 diabetes mellitus", onset="2024-02-08")
    p.condition("polyneuropathy", onset="2026-08-01", recorded="2026-09-29")
    metformin(p, authored="2024-02-08")
    low_b12(p, 102, "2026-10-06")


# ---- S2 ------------------------------------------------------------------------------------
@case(
    "s2-draft-iv-cyanocobalamin",
    "S2 IV: draft cyanocobalamin order by the IV route (order-sign)",
    blocked(
        "Low B12 108 pmol/L and a draft IV cyanocobalamin order: S2 warns about IV; the draft is a "
        "B12 order so S7 (no new course) fires too and no schedule is proposed.",
        ["D2", "T6", "S2", "S7"],
    ),
)
def _s2_draft(p: Patient) -> None:
    low_b12(p, 108, "2026-11-20")
    p.med_request(
        med="cyanocobalamin-inj",
        status="draft",
        authored="2026-11-24",
        dosage="cyanocobalamin 1000 mcg IV once daily for 7 days",
        route="route-iv",
        dose=(1000, "ug"),
        timing={**DAILY, "count": 7},
    )


@case(
    "s2-active-iv-cyanocobalamin",
    "S2 IV: an active cyanocobalamin order by the IV route",
    blocked(
        "Low B12 115 pmol/L before treatment and an active weekly IV cyanocobalamin order: S2 and "
        "S7 (already on therapy), no schedule.",
        ["D2", "T6", "S2", "S7"],
    ),
)
def _s2_active(p: Patient) -> None:
    low_b12(p, 115, "2026-06-02")
    b12_im_active(
        p,
        "2026-06-10",
        route="route-iv",
        timing=WEEKLY,
        text="cyanocobalamin 1000 mcg IV once a week",
    )


# ---- S3 ------------------------------------------------------------------------------------
@case(
    "s3-folate-deficiency",
    "S3 folate 2.8 ng/mL with low B12",
    unspecified_regimen(
        "Folate 2.8 ng/mL (<= 3.9) with B12 120 pmol/L: D2, S3 (B12 with or before "
        "folic acid), T6, R2 + R5.",
        ["D2", "S3"],
    ),
)
def _s3_folate(p: Patient) -> None:
    p.condition(text="Alcohol use disorder, in early remission", onset="2025-03-03")
    low_b12(p, 120, "2026-10-08")
    p.lab("folate", 2.8, "ng/mL", "2026-10-08", interpretation="L")
    hb(p, 10.1, "2026-10-08", female=False)


@case(
    "s3-draft-folic-acid-low-b12",
    "S3 draft folic acid order (310410) with low B12, no B12 therapy",
    unspecified_regimen(
        "A draft folic acid 1 mg order while B12 is 112 pmol/L and no B12 therapy "
        "exists (folate normal): S3 via the draft-order branch; T6, R2 + R5.",
        ["D2", "S3"],
    ),
)
def _s3_draft(p: Patient) -> None:
    low_b12(p, 112, "2026-11-18")
    p.lab("folate", 9.6, "ng/mL", "2026-11-18", interpretation="N")
    hb(p, 10.2, "2026-11-18", female=True)
    p.med_request(
        med="folic-acid",
        status="draft",
        authored="2026-11-24",
        dosage="folic acid 1 mg by mouth once daily",
        route="route-oral",
        dose=(1, "mg"),
        timing=DAILY,
    )


@case(
    "s3-draft-folic-acid-unknown-status",
    "S3 draft folic acid order with no B12 result (status unknown)",
    expected(
        "No B12 result (D6, unknown) and a draft folic acid order: S3's draft branch includes "
        "status unknown, so S3 fires; no schedule.",
        "unknown",
        rules=["D6", "S3"],
    ),
)
def _s3_unknown(p: Patient) -> None:
    p.lab("folate", 3.4, "ng/mL", "2026-11-21", interpretation="L")
    hb(p, 11.4, "2026-11-21", female=False)
    p.med_request(
        med="folic-acid",
        status="draft",
        authored="2026-11-24",
        dosage="folic acid 1 mg by mouth once daily",
        route="route-oral",
        dose=(1, "mg"),
        timing=DAILY,
    )


# ---- S4 ------------------------------------------------------------------------------------
@case(
    "s4-cobalt-allergy",
    "S4 active cobalt allergy + low B12 -> no schedule",
    blocked(
        "Active allergy to cobalt (text only) with B12 110 pmol/L: D2, T6, S4 blocks the schedule.",
        ["D2", "T6", "S4"],
    ),
)
def _s4(p: Patient) -> None:
    p.allergy("Cobalt", recorded="2024-09-12", reaction="Allergic contact dermatitis")
    low_b12(p, 110, "2026-10-29")


# ---- S5 ------------------------------------------------------------------------------------
@case(
    "s5-leber-optic-neuropathy",
    "S5 Leber's (H47.22) + low B12 -> no schedule",
    blocked(
        "Hereditary optic atrophy (H47.22) with B12 118 pmol/L: D2, T6, S5 blocks the schedule "
        "(cyanocobalamin contraindicated).",
        ["D2", "T6", "S5"],
    ),
)
def _s5(p: Patient) -> None:
    p.condition("H47.22", onset="2024-08-19", recorded="2024-08-22")
    low_b12(p, 118, "2026-09-09")


# ---- S6 ------------------------------------------------------------------------------------
@case(
    "s6-severe-anaemia-hb-7-1",
    "S6 Hb 7.1 g/dL + low B12 (M4)",
    unspecified_regimen(
        "B12 78 pmol/L with Hb 7.1 g/dL: D2, S6 (monitor potassium, M4), T6, R2 + R5.",
        ["D2", "S6", "M4"],
    ),
)
def _s6_hb(p: Patient) -> None:
    low_b12(p, 78, "2026-11-02")
    p.lab("hb", 7.1, "g/dL", "2026-11-02", interpretation="LL", ref_range=(12.0, 15.5))
    p.lab("k", 4.1, "mmol/L", "2026-11-02", interpretation="N")
    p.lab("plt", 112, "10*3/uL", "2026-11-02", interpretation="L")


@case(
    "s6-low-potassium-3-1",
    "S6 potassium 3.1 mmol/L + low B12 (M4)",
    unspecified_regimen(
        "B12 100 pmol/L with potassium 3.1 mmol/L: D2, S6 (M4), T6, R2 + R5.", ["D2", "S6", "M4"]
    ),
)
def _s6_k(p: Patient) -> None:
    low_b12(p, 100, "2026-10-30")
    p.lab("k", 3.1, "mmol/L", "2026-10-30", interpretation="L")
    hb(p, 11.0, "2026-10-30", female=False)


# ---- S7 ------------------------------------------------------------------------------------
@case(
    "s7-active-b12-therapy",
    "S7 active cyanocobalamin MedicationRequest (309594) + D51.9",
    blocked(
        "D51.9 on the problem list and an active monthly cyanocobalamin order: D1, T6, S7 (no new "
        "loading course), no schedule.",
        ["D1", "T6", "S7"],
    ),
)
def _s7(p: Patient) -> None:
    p.condition("D51.9", onset="2025-10-28", recorded="2025-10-30")
    b12_im_active(p, "2025-11-03")
    hb(p, 13.0, "2026-05-12", female=True)


@case(
    "s7-duplicate-draft-on-therapy",
    "Duplicate order: draft cyanocobalamin IM while on hydroxocobalamin",
    blocked(
        "Pernicious anaemia (D51.0) on an active hydroxocobalamin MedicationStatement, and a new "
        "draft cyanocobalamin IM order: D1, T2, S7 (duplicate therapy), no schedule.",
        ["D1", "T2", "S7"],
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
    ),
)
def _s7_dup(p: Patient) -> None:
    p.condition("D51.0", onset="2024-05-07", recorded="2024-05-09")
    p.med_statement(
        med="hydroxocobalamin-inj",
        status="active",
        since="2024-05-13",
        asserted="2026-11-04",
        dosage="hydroxocobalamin 1 mg IM every 3 months",
        route="route-im",
        dose=(1000, "ug"),
        timing=EVERY_3_MONTHS,
    )
    p.med_request(
        med="cyanocobalamin-inj",
        status="draft",
        authored="2026-11-24",
        dosage="cyanocobalamin 1000 mcg IM once daily for 7 days",
        route="route-im",
        dose=(1000, "ug"),
        timing={**DAILY, "count": 7},
    )


# ---- S8 ------------------------------------------------------------------------------------
@case(
    "s8-adolescent-15y",
    "S8 age 15 + low B12 -> no schedule",
    blocked(
        "A 15-year-old with B12 115 pmol/L: D2, T6, S8 (adult protocol only) blocks the schedule.",
        ["D2", "T6", "S8"],
    ),
)
def _s8(p: Patient) -> None:
    low_b12(p, 115, "2026-10-21")
    hb(p, 11.8, "2026-10-21", female=True)


# ---- S9 ------------------------------------------------------------------------------------
@case(
    "s9-pregnancy",
    "S9 pregnancy (77386006) + low B12",
    unspecified_regimen(
        "Pregnant (77386006) with B12 120 pmol/L: D2, S9 (specialist review), T6, "
        "R2 + R5 still proposed.",
        ["D2", "S9"],
    ),
)
def _s9(p: Patient) -> None:
    p.condition("pregnant", onset="2026-07-06", recorded="2026-08-14")
    low_b12(p, 120, "2026-10-19")
    hb(p, 11.3, "2026-10-19", female=True)
    p.lab("folate", 12.5, "ng/mL", "2026-10-19", interpretation="N")


# ---- S10 -----------------------------------------------------------------------------------
@case(
    "s10-draft-b12-test-on-therapy",
    "S10 draft B12 test (14685-2) while on B12 therapy",
    blocked(
        "Pernicious anaemia on monthly cyanocobalamin, and a draft serum B12 test: D1 and D2 (the "
        "pre-treatment B12 is still the latest), T2, S7, S10 (titrate on symptoms).",
        ["D1", "D2", "T2", "S7", "S10"],
        type_="pernicious-anemia",
        causes=["pernicious-anemia"],
    ),
)
def _s10(p: Patient) -> None:
    p.condition("D51.0", onset="2025-03-10", recorded="2025-03-11")
    low_b12(p, 95, "2025-03-04")
    b12_im_active(p, "2025-04-01")
    p.service_request(
        "b12-molar",
        status="draft",
        authored="2026-11-24",
        reason="Check B12 to adjust injection frequency",
    )


@case(
    "draft-b12-test-not-on-therapy",
    "S10 negative: draft B12 test, deficient, not on therapy",
    unspecified_regimen(
        "A draft serum B12 test (ServiceRequest 14685-2) is not B12 therapy: with B12 "
        "115 pmol/L and no therapy, S7 and S10 do not fire; D2, T6, R2 + R5.",
        ["D2"],
    ),
)
def _s10_neg(p: Patient) -> None:
    low_b12(p, 115, "2026-10-23")
    p.service_request(
        "b12-molar", status="draft", authored="2026-11-24", reason="Repeat B12 to confirm"
    )


@case(
    "draft-b12-order-unknown-status",
    "Draft B12 order with no B12 result (D6 on order-sign)",
    expected(
        "No B12 result and a draft cyanocobalamin IM order: D6 (no confirmed deficiency on "
        "record); the draft B12 order counts as B12 therapy so S7 fires; no schedule.",
        "unknown",
        rules=["D6", "S7"],
    ),
)
def _draft_unknown(p: Patient) -> None:
    hb(p, 12.9, "2026-11-12", female=True)
    p.med_request(
        med="cyanocobalamin-inj",
        status="draft",
        authored="2026-11-24",
        dosage="cyanocobalamin 1000 mcg IM once a month",
        route="route-im",
        dose=(1000, "ug"),
        timing=MONTHLY,
    )


# ---- D rules -------------------------------------------------------------------------------
@case(
    "d3-borderline-b12-raised-mma",
    "D3 borderline B12 170 pmol/L + MMA 0.62 umol/L",
    unspecified_regimen(
        "B12 170 pmol/L (borderline) with MMA 0.62 umol/L: D3 confirmed; a refuted "
        "pernicious anaemia condition is ignored, so T6, R2 + R5.",
        ["D3"],
    ),
)
def _d3_mma(p: Patient) -> None:
    p.condition("pernicious", onset="2026-09-01", recorded="2026-09-01", verification="refuted")
    p.lab("b12-molar", 170, "pmol/L", "2026-09-08", interpretation="N")
    p.lab("mma", 0.62, "umol/L", "2026-09-15", interpretation="H")


@case(
    "d3-borderline-b12-raised-homocysteine",
    "D3 borderline B12 250 pg/mL + homocysteine 22 umol/L",
    unspecified_regimen(
        "B12 250 pg/mL (borderline) with homocysteine 22 umol/L: D3 confirmed; the "
        "metformin order is stopped, so T6, R2 + R5.",
        ["D3"],
    ),
)
def _d3_hcy(p: Patient) -> None:
    p.condition(text="Type 2 diabetes mellitus, diet-controlled", onset="2024-06-20")
    metformin(p, status="stopped", authored="2024-06-20")
    p.lab("b12-mass", 250, "pg/mL", "2026-10-01", interpretation="N")
    p.lab("hcy", 22, "umol/L", "2026-10-07", interpretation="H")


@case(
    "d3-borderline-b12-normal-mma",
    "D3 evaluated: borderline B12 with normal latest MMA -> not deficient",
    expected(
        "B12 190 pmol/L (borderline) with the latest MMA 0.24 umol/L normal (an older raised 0.55 "
        "is superseded): D3 evaluated, status not deficient.",
        "not-deficient",
        rules=["D3"],
    ),
)
def _d3_normal(p: Patient) -> None:
    p.lab("mma", 0.55, "umol/L", "2024-09-10", interpretation="H")
    p.lab("b12-molar", 190, "pmol/L", "2026-10-01", interpretation="N")
    p.lab("mma", 0.24, "umol/L", "2026-10-08", interpretation="N")


@case(
    "d4-borderline-no-mma",
    "D4 borderline B12 190 pmol/L without MMA or homocysteine",
    expected(
        "B12 190 pmol/L (borderline) and no MMA or homocysteine on record: D4 indeterminate, no "
        "schedule.",
        "indeterminate",
        rules=["D4"],
    ),
)
def _d4(p: Patient) -> None:
    p.lab("b12-molar", 190, "pmol/L", "2026-10-13", interpretation="N")
    hb(p, 12.7, "2026-10-13", female=True)


@case(
    "d5-normal-b12",
    "D5 B12 450 pmol/L (older low result, resolved D51.9, entered-in-error B12 ignored)",
    expected(
        "Latest valid B12 450 pmol/L: D5 not deficient. The older low result, the resolved D51.9 "
        "and a later entered-in-error B12 of 90 pmol/L do not count.",
        "not-deficient",
        rules=["D5"],
    ),
)
def _d5(p: Patient) -> None:
    p.condition(
        "D51.9", onset="2024-02-12", recorded="2024-02-13", clinical="resolved", abated="2025-01-15"
    )
    p.lab("b12-molar", 130, "pmol/L", "2024-02-06", interpretation="L")
    p.lab("b12-molar", 450, "pmol/L", "2026-09-22", interpretation="N")
    p.lab("b12-molar", 90, "pmol/L", "2026-10-30", interpretation="L", status="entered-in-error")


@case(
    "d6-no-b12",
    "D6 no B12 result (an entered-in-error D51.9 is ignored)",
    expected(
        "No B12 result and only an entered-in-error D51.9 condition: D6 unknown.",
        "unknown",
        rules=["D6"],
    ),
)
def _d6(p: Patient) -> None:
    p.condition("D51.9", onset="2026-03-02", recorded="2026-03-02", verification="entered-in-error")
    p.condition(text="Essential hypertension", onset="2024-11-19")
    hb(p, 13.4, "2026-10-05", female=True)
    p.lab("folate", 8.2, "ng/mL", "2026-10-05", interpretation="N")


@case(
    "d7-very-high-b12",
    "D7 B12 1450 pg/mL without supplement",
    expected(
        "B12 1450 pg/mL with no B12 therapy: D7 (not deficient; consider liver disease or "
        "malignancy).",
        "not-deficient",
        rules=["D7"],
    ),
)
def _d7(p: Patient) -> None:
    p.condition(text="Alcohol-related liver disease", onset="2025-06-10")
    p.lab("b12-mass", 1450, "pg/mL", "2026-10-26", interpretation="H")


@case(
    "d5-very-high-b12-on-supplement",
    "D7 negative: B12 1450 pg/mL while taking oral cyanocobalamin",
    expected(
        "B12 1450 pg/mL while an active oral cyanocobalamin MedicationStatement (text only) is on "
        "record: D5, not D7.",
        "not-deficient",
        rules=["D5"],
    ),
)
def _d7_neg(p: Patient) -> None:
    p.med_statement(
        text="cyanocobalamin 1000 mcg oral tablet",
        status="active",
        since="2025-01-20",
        asserted="2026-10-26",
        dosage="cyanocobalamin 1000 mcg by mouth once daily",
        route="route-oral",
        dose=(1000, "ug"),
        timing=DAILY,
    )
    p.lab("b12-mass", 1450, "pg/mL", "2026-10-26", interpretation="H")


# ---- units and boundaries ------------------------------------------------------------------
@case(
    "unit-b12-150-pgml",
    "Unit: B12 150 pg/mL (LOINC 2132-9) -> confirmed",
    unspecified_regimen(
        "B12 150 pg/mL (< 200 pg/mL): D2; a negative intrinsic factor antibody does "
        "not make it T2, so T6, R2 + R5.",
        ["D2"],
    ),
)
def _u_pg(p: Patient) -> None:
    p.lab("b12-mass", 150, "pg/mL", "2026-10-09", interpretation="L")
    p.qualitative("ifab", "Negative", "NEG", "2026-10-16")


@case(
    "unit-b12-160-ngl",
    "Unit: B12 160 ng/L -> confirmed (inactive cobalt allergy ignored)",
    unspecified_regimen(
        "B12 160 ng/L (= pg/mL, < 200): D2; the cobalt allergy is inactive so S4 does "
        "not fire; T6, R2 + R5.",
        ["D2"],
    ),
)
def _u_ng(p: Patient) -> None:
    p.allergy(
        "Cobalt",
        clinical="inactive",
        recorded="2024-03-05",
        reaction="Contact dermatitis (patch test later negative)",
    )
    p.lab("b12-mass", 160, "ng/L", "2026-09-29", interpretation="L")


@case(
    "unit-mma-620-nmoll",
    "Unit: MMA 620 nmol/L with borderline B12 -> confirmed (D3)",
    unspecified_regimen(
        "B12 180 pmol/L (borderline) with MMA 620 nmol/L (= 0.62 umol/L): D3, T6, R2 + R5.", ["D3"]
    ),
)
def _u_mma(p: Patient) -> None:
    p.lab("b12-molar", 180, "pmol/L", "2026-10-02", interpretation="N")
    p.lab("mma", 620, "nmol/L", "2026-10-02", interpretation="H")


@case(
    "unit-b12-unknown-unit",
    "Unit: latest B12 in mIU/mL is unusable -> unknown (no fallback)",
    expected(
        "The latest B12 is reported in an unknown unit (mIU/mL): it is unusable and the older low "
        "result is not used instead, so D6 unknown.",
        "unknown",
        rules=["D6"],
        unusable=["b12"],
    ),
)
def _u_unknown(p: Patient) -> None:
    p.lab("b12-molar", 120, "pmol/L", "2025-01-14", interpretation="L")
    p.lab("b12-mass", 310, "mIU/mL", "2026-10-15", ucum="m[IU]/mL")


@case(
    "boundary-b12-200-pgml",
    "Boundary: B12 exactly 200 pg/mL -> indeterminate (D4)",
    expected(
        "B12 exactly 200 pg/mL is not below 200: borderline, no MMA or homocysteine, D4.",
        "indeterminate",
        rules=["D4"],
    ),
)
def _b200(p: Patient) -> None:
    p.lab("b12-mass", 200, "pg/mL", "2026-10-22", interpretation="N")


@case(
    "boundary-b12-221-pmoll",
    "Boundary: B12 exactly 221 pmol/L -> indeterminate (D4)",
    expected(
        "B12 exactly 221 pmol/L is not above 221: borderline, no MMA or homocysteine, D4.",
        "indeterminate",
        rules=["D4"],
    ),
)
def _b221(p: Patient) -> None:
    p.lab("b12-molar", 221, "pmol/L", "2026-10-22", interpretation="N")


@case(
    "nice-threshold-b12-190-pgml",
    "Profile thresholds: B12 190 pg/mL under nice-ng239 -> indeterminate",
    expected(
        "B12 190 pg/mL is deficient under the standard profile but borderline under nice-ng239 "
        "(180-350 ng/L): D4 indeterminate.",
        "indeterminate",
        rules=["D4"],
        profile="nice-ng239",
    ),
)
def _nice190(p: Patient) -> None:
    p.lab("b12-mass", 190, "pg/mL", "2026-10-07", interpretation="L")


@case(
    "dotless-icd-d519",
    "D1 from a dotless ICD-10-CM code (D519), no B12 result",
    unspecified_regimen(
        "Condition coded D519 (ICD-10-CM without the dot) and no B12 result: D1 "
        "confirmed, T6, R2 + R5.",
        ["D1"],
    ),
)
def _dotless(p: Patient) -> None:
    p.condition("D519", onset="2026-10-12", recorded="2026-10-12")
    hb(p, 10.8, "2026-10-12", female=False)


# --------------------------------------------------------------------------------------------
# Patient demographics (slug -> id, MRN, given, family, gender, birthDate)
# --------------------------------------------------------------------------------------------
PEOPLE: dict[str, tuple[list[str], str, str, str]] = {
    "t1-inherited-tcii-deficiency": (["Mateo"], "Alvarez", "male", "1994-05-12"),
    "t2-pernicious-anemia-d51-0": (["Margaret", "Ann"], "Whitfield", "female", "1961-09-23"),
    "t2-pernicious-anemia-d51-0-nice": (["Margaret", "Ann"], "Whitfield", "female", "1961-09-23"),
    "t2-pernicious-anemia-d51-0-fda": (["Margaret", "Ann"], "Whitfield", "female", "1961-09-23"),
    "t2-intrinsic-factor-antibody": (["Harold"], "Okafor", "male", "1958-02-14"),
    "t2-autoimmune-gastritis-parietal-cell": (["Ingrid"], "Lindqvist", "female", "1970-11-30"),
    "t2-pernicious-snomed-with-metformin": (["Walter"], "Brennan", "male", "1952-07-08"),
    "t3-bariatric-roux-en-y": (["Tanya", "Marie"], "Kowalski", "female", "1979-03-27"),
    "t3-gastrectomy": (["Hiroshi"], "Tanaka", "male", "1950-12-02"),
    "t3-ileal-resection": (["Deborah"], "Mensah", "female", "1966-06-18"),
    "t3-crohn-small-intestine": (["Liam"], "O'Sullivan", "male", "1988-08-09"),
    "t3-coeliac": (["Chloe"], "Dubois", "female", "1992-01-25"),
    "t3-crohn-with-ileal-resection": (["Rafael"], "Moreno", "male", "1975-04-03"),
    "t4-metformin": (["Gerald"], "Pike", "male", "1957-10-14"),
    "t4-omeprazole-statement": (["Sunita"], "Rao", "female", "1963-05-31"),
    "t5-vegan-diet": (["Freya"], "Hansen", "female", "1996-02-11"),
    "t6-unspecified-low-b12": (["Marcus"], "Bell", "male", "1969-09-04"),
    "s1-polyneuropathy-metformin": (["Dolores"], "Reyes", "female", "1955-01-19"),
    "s2-draft-iv-cyanocobalamin": (["Kwame"], "Asante", "male", "1972-03-15"),
    "s2-active-iv-cyanocobalamin": (["Edith"], "Campbell", "female", "1948-07-22"),
    "s3-folate-deficiency": (["Sean"], "Gallagher", "male", "1964-12-12"),
    "s3-draft-folic-acid-low-b12": (["Priya"], "Natarajan", "female", "1981-08-26"),
    "s3-draft-folic-acid-unknown-status": (["Tomasz"], "Nowak", "male", "1977-02-05"),
    "s4-cobalt-allergy": (["Renate"], "Fischer", "female", "1968-04-09"),
    "s5-leber-optic-neuropathy": (["Daniel"], "Levi", "male", "1990-10-01"),
    "s6-severe-anaemia-hb-7-1": (["Agnes"], "Murray", "female", "1952-06-06"),
    "s6-low-potassium-3-1": (["Bernard"], "Hughes", "male", "1949-11-17"),
    "s7-active-b12-therapy": (["Lucia"], "Romano", "female", "1959-03-03"),
    "s7-duplicate-draft-on-therapy": (["Arthur"], "Penrose", "male", "1953-09-28"),
    "s8-adolescent-15y": (["Maya"], "Cohen", "female", "2011-03-10"),
    "s9-pregnancy": (["Aisha"], "Bello", "female", "1994-06-21"),
    "s10-draft-b12-test-on-therapy": (["Helen"], "Stavros", "female", "1971-12-19"),
    "draft-b12-test-not-on-therapy": (["Victor"], "Hale", "male", "1963-07-07"),
    "draft-b12-order-unknown-status": (["Nora"], "Quinlan", "female", "1976-05-14"),
    "d3-borderline-b12-raised-mma": (["Peter"], "Jansen", "male", "1960-01-29"),
    "d3-borderline-b12-raised-homocysteine": (["Gloria"], "Mendez", "female", "1954-10-10"),
    "d3-borderline-b12-normal-mma": (["Oliver"], "Grant", "male", "1982-03-21"),
    "d4-borderline-no-mma": (["Hannah"], "Weiss", "female", "1974-08-02"),
    "d5-normal-b12": (["Samuel"], "Adeyemi", "male", "1980-06-30"),
    "d6-no-b12": (["Julia"], "Novak", "female", "1985-09-09"),
    "d7-very-high-b12": (["Frank"], "Doyle", "male", "1951-02-26"),
    "d5-very-high-b12-on-supplement": (["Rose"], "Ashworth", "female", "1947-12-05"),
    "unit-b12-150-pgml": (["Ahmed"], "Karim", "male", "1966-04-17"),
    "unit-b12-160-ngl": (["Elena"], "Petrova", "female", "1973-07-13"),
    "unit-mma-620-nmoll": (["George"], "Whitaker", "male", "1962-11-08"),
    "unit-b12-unknown-unit": (["Miriam"], "Katz", "female", "1958-05-25"),
    "boundary-b12-200-pgml": (["Trevor"], "Lloyd", "male", "1970-02-28"),
    "boundary-b12-221-pmoll": (["Yvonne"], "Berger", "female", "1965-10-31"),
    "nice-threshold-b12-190-pgml": (["Fiona"], "MacLeod", "female", "1967-03-14"),
    "dotless-icd-d519": (["Luis"], "Ortega", "male", "1956-08-16"),
}


# --------------------------------------------------------------------------------------------
# Independent reference reading of the protocol YAML (cross-check only)
# --------------------------------------------------------------------------------------------
ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
BAD_VERIFICATION = {"refuted", "entered-in-error"}
OBS_OK = {"final", "amended", "corrected", "preliminary"}


def _norm_icd(code: str) -> str:
    return code.replace(".", "").upper()


class Protocol:
    def __init__(self) -> None:
        def load(name: str) -> Any:
            # Work-around, cross-check only: some one-line flow mappings in the YAML carry unquoted
            # displays with "[...]" (a YAML parse error) or "," (silently splits the display into
            # an extra key). Quote every `display:` value that is followed by `, source:`.
            text = (DATA / name).read_text()
            text = re.sub(
                r"display: (?!\")(.*?), source: ",
                lambda m: 'display: "' + m.group(1).replace('"', '\\"') + '", source: ',
                text,
            )
            return yaml.safe_load(text)

        self.codes = load("codes.yaml")
        self.obs = load("observations.yaml")
        self.rules = load("rules.yaml")
        self.profiles = load("profiles.yaml")
        self.regimens = load("regimens.yaml")
        self.systems = self.codes["systems"]
        self.vs = self.codes["value_sets"]

    def in_vs(self, concept_: dict[str, Any] | None, vs_name: str) -> bool:
        if not concept_:
            return False
        vs = self.vs[vs_name]
        for c in concept_.get("coding", []):
            for entry in vs.get("codes", []):
                system = self.systems[entry["system"]]
                if c.get("system") != system:
                    continue
                if entry["system"] == "icd10cm":
                    a, b = _norm_icd(c.get("code", "")), _norm_icd(entry["code"])
                    if a == b or (entry.get("match") == "prefix" and a.startswith(b)):
                        return True
                elif c.get("code") == entry["code"]:
                    return True
        words = vs.get("text") or []
        texts = [concept_.get("text") or ""] + [
            c.get("display") or "" for c in concept_.get("coding", [])
        ]
        for w in words:
            rx = re.compile(r"(?<![A-Za-z0-9])" + re.escape(w) + r"(?![A-Za-z0-9])", re.I)
            if any(rx.search(t) for t in texts):
                return True
        return False


class Facts:
    def __init__(self, bundle: dict[str, Any], proto: Protocol) -> None:
        self.p = proto
        res = [e["resource"] for e in bundle["entry"]]
        self.patient = next(r for r in res if r["resourceType"] == "Patient")
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for r in res:
            self.by_type.setdefault(r["resourceType"], []).append(r)

    def of(self, t: str) -> list[dict[str, Any]]:
        return self.by_type.get(t, [])

    @staticmethod
    def _code(cc: dict[str, Any] | None) -> str | None:
        return cc["coding"][0]["code"] if cc and cc.get("coding") else None

    def condition(self, vs: str) -> bool:
        for c in self.of("Condition"):
            if self._code(c.get("clinicalStatus")) not in ACTIVE_CLINICAL:
                continue
            if self._code(c.get("verificationStatus")) in BAD_VERIFICATION:
                continue
            if self.p.in_vs(c.get("code"), vs):
                return True
        return False

    def procedure(self, vs: str) -> bool:
        return any(
            r["status"] == "completed" and self.p.in_vs(r["code"], vs) for r in self.of("Procedure")
        )

    def _meds(self, statuses: set[str]) -> list[dict[str, Any]]:
        out = [r for r in self.of("MedicationRequest") if r["status"] in statuses]
        out += [r for r in self.of("MedicationStatement") if r["status"] in statuses]
        return out

    def medication(self, vs: str) -> bool:
        return any(
            self.p.in_vs(r.get("medicationCodeableConcept"), vs)
            for r in self._meds({"active", "on-hold"})
        )

    def _route_ok(self, r: dict[str, Any], route_vs: str | None) -> bool:
        if route_vs is None:
            return True
        dosages = r.get("dosageInstruction") or r.get("dosage") or []
        return any(self.p.in_vs(d.get("route"), route_vs) for d in dosages)

    def draft_order(self, vs: str, route: str | None = None) -> bool:
        # medication orders only; a draft lab ServiceRequest is not a B12 order
        return any(
            r["status"] == "draft"
            and self.p.in_vs(r.get("medicationCodeableConcept"), vs)
            and self._route_ok(r, route)
            for r in self.of("MedicationRequest")
        )

    def active_order(self, vs: str, route: str | None = None) -> bool:
        return any(
            r["status"] in {"active", "on-hold"}
            and self.p.in_vs(r.get("medicationCodeableConcept"), vs)
            and self._route_ok(r, route)
            for r in self.of("MedicationRequest")
        )

    def allergy(self, vs: str) -> bool:
        for a in self.of("AllergyIntolerance"):
            if self._code(a.get("clinicalStatus")) != "active":
                continue
            if self._code(a.get("verificationStatus")) in BAD_VERIFICATION:
                continue
            if self.p.in_vs(a.get("code"), vs):
                return True
        return False

    def draft_service_request(self, vs: str) -> bool:
        return any(
            r["status"] == "draft" and self.p.in_vs(r.get("code"), vs)
            for r in self.of("ServiceRequest")
        )

    def _latest(self, analyte: str) -> dict[str, Any] | None:
        codes = {c["code"] for c in self.p.obs["analytes"][analyte]["codes"]}
        cands = [
            o
            for o in self.of("Observation")
            if o["status"] in OBS_OK
            and any(
                c.get("system") == LOINC and c.get("code") in codes for c in o["code"]["coding"]
            )
        ]
        cands.sort(key=lambda o: o["effectiveDateTime"])
        return cands[-1] if cands else None

    def quantity(self, analyte: str) -> tuple[float, str] | None | str:
        """(value, comparison unit), None if no result, or 'unusable'."""
        o = self._latest(analyte)
        if o is None:
            return None
        q = o.get("valueQuantity")
        units = self.p.obs["analytes"][analyte]["units"]
        if not q or q.get("code") not in units:
            return "unusable"
        u = units[q["code"]]
        return q["value"] * u["factor"], u["compare_as"]

    def positive(self, analyte: str) -> bool:
        o = self._latest(analyte)
        if o is None:
            return False
        q = self.p.obs["qualitative"]
        for i in o.get("interpretation", []):
            for c in i.get("coding", []):
                if c.get("code") in q["positive_interpretations"]:
                    return True
        text = (o.get("valueCodeableConcept") or {}).get("text") or o.get("valueString") or ""
        return text.strip().lower() in q["positive_words"]

    def age(self) -> int:
        b = date.fromisoformat(self.patient["birthDate"])
        s = date.fromisoformat(START)
        return s.year - b.year - ((s.month, s.day) < (b.month, b.day))


def reference_assessment(
    bundle: dict[str, Any], profile_name: str, proto: Protocol
) -> dict[str, Any]:
    f = Facts(bundle, proto)
    profile = proto.profiles["profiles"][profile_name]
    th = profile["thresholds"]
    fired: set[str] = set()
    unusable: list[str] = []

    def cmp_value(analyte: str) -> tuple[float, str] | None:
        q = f.quantity(analyte)
        if q == "unusable":
            unusable.append(analyte)
            return None
        return q  # type: ignore[return-value]

    b12_therapy = f.medication("b12_product") or f.draft_order("b12_product")

    # D-rules
    d1 = f.condition("b12_deficiency")
    status = "confirmed" if d1 else None
    if d1:
        fired.add("D1")
    b12 = cmp_value("b12")
    if b12 is not None:
        v, unit = b12
        if v < th["b12_deficient_below"][unit]:
            fired.add("D2")
            status = "confirmed"
        elif v <= th["b12_normal_above"][unit]:
            mma = cmp_value("mma")
            hcy = cmp_value("homocysteine")
            if mma is None and hcy is None:
                if not d1:
                    fired.add("D4")
                    status = "indeterminate"
            else:
                raised = (mma is not None and mma[0] > th["mma_raised_above"][mma[1]]) or (
                    hcy is not None and hcy[0] > th["homocysteine_raised_above"][hcy[1]]
                )
                if raised:
                    fired.add("D3")
                    status = "confirmed"
                elif not d1:
                    fired.add("D3")
                    status = "not-deficient"
        elif not d1:
            status = "not-deficient"
            fired.add("D7" if v > th["b12_very_high_above"][unit] and not b12_therapy else "D5")
    elif not d1:
        fired.add("D6")
        status = "unknown"

    # T-rules
    type_: str | None = None
    causes: list[dict[str, Any]] = []

    def ev(expr: dict[str, Any]) -> bool:
        results = []
        for k, val in expr.items():
            if k == "route":
                continue
            if k == "all":
                results.append(all(ev(x) for x in val))
            elif k == "any":
                results.append(any(ev(x) for x in val))
            elif k == "not":
                results.append(not ev(val))
            elif k == "always":
                results.append(True)
            elif k == "condition":
                results.append(f.condition(val))
            elif k == "procedure":
                results.append(f.procedure(val))
            elif k == "medication":
                results.append(f.medication(val))
            elif k == "draft_order":
                results.append(f.draft_order(val, expr.get("route")))
            elif k == "active_order":
                results.append(f.active_order(val, expr.get("route")))
            elif k == "allergy":
                results.append(f.allergy(val))
            elif k == "positive":
                results.append(f.positive(val))
            elif k == "draft_service_request":
                results.append(f.draft_service_request(val))
            elif k == "draft_order_changes_b12_therapy":
                results.append(False)  # not exercised by these patients
            elif k in ("below", "at_or_below", "above"):
                q = f.quantity(val["analyte"])
                if q is None or q == "unusable":
                    results.append(False)
                    continue
                t = th[val["threshold"]][q[1]]
                x = q[0]
                results.append(x < t if k == "below" else x <= t if k == "at_or_below" else x > t)
            elif k == "age_below":
                results.append(f.age() < th[val])
            elif k == "status":
                results.append(status in val)
            elif k == "b12_therapy":
                results.append(b12_therapy == val)
            else:
                raise KeyError(k)
        return all(results)

    if status == "confirmed":
        for rule in proto.rules["type_rules"]:
            matched = [c for c in rule["causes"] if ev(c["when"])]
            if matched:
                type_ = rule["type"]
                causes = matched
                fired.add(rule["id"])
                break

    flags: set[str] = set()
    blocked_ = False
    for s in proto.rules["safety_rules"]:
        if ev(s["when"]):
            flags.add(s["id"])
            fired.add(s["id"])
            if s.get("blocks_schedule") or s.get("no_new_course"):
                blocked_ = True
            for m in s.get("monitoring", []):
                fired.add(m)

    regimen = None
    alternatives: list[str] = []
    if status == "confirmed" and type_ != "inherited" and not blocked_:
        cause_ids = {c["id"] for c in causes}
        for rr in profile["regimen_rules"]:
            w = rr["when"]
            ok = True
            if "type" in w:
                ok &= type_ in (w["type"] if isinstance(w["type"], list) else [w["type"]])
            if "cause" in w:
                ok &= w["cause"] in cause_ids
            if "flag" in w:
                ok &= w["flag"] in flags
            if ok:
                regimen = rr["recommended"]
                fired.add(rr["id"])
                for alt in rr.get("alternatives", []):
                    alternatives.append(alt["regimen"])
                    fired.add(alt["rule"])
                break
    if regimen:
        fired.update({"M1", "M2", "M3"})
    phases = [ph["id"] for ph in proto.regimens["regimens"][regimen]["phases"]] if regimen else []
    return {
        "profile": profile_name,
        "start": START,
        "status": status,
        "type": type_,
        "causes": [c["id"] for c in causes],
        "rules": sorted(fired),
        "regimen": regimen,
        "alternatives": alternatives,
        "phases": phases,
        "lifelong": bool(regimen) and any(c.get("lifelong") for c in causes),
        "unusable": unusable,
    }


# --------------------------------------------------------------------------------------------
# Code provenance check: every code sent must come from the YAML (or an HL7 system)
# --------------------------------------------------------------------------------------------
HL7_SYSTEMS = {
    COND_CLINICAL,
    COND_VER,
    COND_CAT,
    OBS_CAT,
    INTERP,
    ALLERGY_CLINICAL,
    ALLERGY_VER,
    V2_0203,
}
EXTRA_ALLOWED: set[tuple[str, str]] = set()


def yaml_codes(proto: Protocol) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "system" in node and "code" in node and node["system"] in proto.systems:
                out.add((proto.systems[node["system"]], str(node["code"])))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for doc in (proto.codes, proto.obs, proto.rules, proto.profiles, proto.regimens):
        walk(doc)
    return out


def codings_in(node: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if "system" in node and "code" in node and isinstance(node["code"], str):
            found.append((node["system"], node["code"]))
        for v in node.values():
            found.extend(codings_in(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(codings_in(v))
    return found


def main() -> int:
    proto = Protocol()
    allowed = yaml_codes(proto)
    problems: list[str] = []
    seen_ids: set[str] = set()
    rows = []
    for n, (slug, label, build, exp) in enumerate(CASES, start=1):
        given, family, gender, birth = PEOPLE[slug]
        pid = f"b12gp-{n:03d}"
        p = Patient(slug, pid, f"MRN{700100 + n:07d}", given, family, gender, birth)
        build(p)
        bundle = p.bundle()
        for e in bundle["entry"]:
            rid = f"{e['resource']['resourceType']}/{e['resource']['id']}"
            if rid in seen_ids:
                problems.append(f"{slug}: duplicate id {rid}")
            seen_ids.add(rid)
        for system, code in codings_in(bundle):
            if system == UCUM or system in HL7_SYSTEMS or (system, code) in EXTRA_ALLOWED:
                continue
            norm = (system, code)
            if system == ICD10CM:
                ok = any(
                    s == ICD10CM and _norm_icd(c) == _norm_icd(code) for s, c in allowed
                ) or any(
                    s == ICD10CM and _norm_icd(code).startswith(_norm_icd(c)) and c == "K50.0"
                    for s, c in allowed
                )
            else:
                ok = norm in allowed
            if not ok:
                problems.append(f"{slug}: code {system}|{code} is not in the protocol YAML")
        got = reference_assessment(bundle, exp["profile"], proto)
        for k, v in got.items():
            if exp[k] != v:
                problems.append(f"{slug}: {k} expected {exp[k]!r}, reference reading gives {v!r}")
        (HERE / f"{slug}.json").write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
        (HERE / f"{slug}.expected.json").write_text(json.dumps(exp, indent=2) + "\n")
        rows.append((slug, label, exp))
    (HERE / "README.md").write_text(readme(rows))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"wrote {len(rows)} patients to {HERE.relative_to(REPO)}")
    return 0


def readme(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    lines = [
        README_HEAD.strip(),
        "",
        "| # | slug | case | profile | expected status / type / regimen | rules |",
        "|---|---|---|---|---|---|",
    ]
    for n, (slug, label, exp) in enumerate(rows, start=1):
        typ = exp["type"] or "-"
        if exp["causes"] and exp["type"]:
            typ += f" ({', '.join(exp['causes'])})"
        reg = exp["regimen"] or "no schedule"
        if exp["alternatives"]:
            reg += f" [alt: {', '.join(exp['alternatives'])}]"
        if exp["regimen"] and exp["lifelong"]:
            reg += ", lifelong"
        if exp["unusable"]:
            typ += f"; unusable: {', '.join(exp['unusable'])}"
        lines.append(
            f"| {n} | `{slug}` | {label} | {exp['profile']} | {exp['status']} / {typ} / {reg} "
            f"| {' '.join(exp['rules'])} |"
        )
    lines += ["", README_TAIL.strip(), ""]
    return "\n".join(lines)


README_HEAD = """
# Golden test patients (vitamin B12 deficiency CDS)

One FHIR R4 `Bundle` (`type: collection`) per patient in `<slug>.json`, and the outcome the
service must reach in `<slug>.expected.json`. All files here, this README included, are written by
`generate.py` (run `.venv/bin/python fhir_examples/patients/generate.py` from the repository
root); edit the script, not the JSON. The script also cross-checks every hand-written expected
outcome against an independent reading of `cds_service/protocol/data/*.yaml`, and checks that every
code sent comes from those YAML files (or from an HL7 status / category / interpretation system).

Conventions
- Each bundle holds exactly one `Patient` plus that patient's Conditions, Observations,
  Procedures, MedicationRequests / MedicationStatements, AllergyIntolerances and ServiceRequests.
  `fullUrl` is `https://ehr.example.org/fhir/<Type>/<id>`; references are `Patient/<id>`.
- A `MedicationRequest` or `ServiceRequest` with `status: draft`, `intent: order` is an order
  being written now: for order-select / order-sign requests move it into `context.draftOrders`.
- Medications with no code in the YAML (metformin, omeprazole, amlodipine, oral cyanocobalamin)
  carry `medicationCodeableConcept.text` only. Quantities are UCUM with `unit` equal to `code`,
  except the deliberately unknown `mIU/mL` (code `m[IU]/mL`).
- Treatment start date for every expected outcome: 2026-12-01. Draft orders are authored
  2026-11-24 and no clinical date is later. No patient is near the age-18 boundary, so ages are
  the same whether computed today or on the start date.
- Expected-file fields: `status`; `type`; `causes` (cause ids of the matching T-rule in YAML
  order, `["unspecified"]` for T6); `rules` (Python `sorted`, so `S10` sorts before `S2`);
  `regimen` / `alternatives` / `phases` (ids from regimens.yaml); `lifelong` (true only when a
  regimen is proposed and a matched cause is lifelong); `unusable` (analytes whose latest result
  has a unit the protocol does not know).

Deliberate noise, each of which must be ignored: superseded older B12 / MMA results, a later
`entered-in-error` B12 observation, a resolved D51.9, an entered-in-error D51.9, a refuted
pernicious anaemia, stopped metformin / omeprazole orders, an inactive cobalt allergy, a negative
intrinsic factor antibody, and text-only conditions (hypertension, type 2 diabetes, GORD, ...).
"""

README_TAIL = """
## Readings of the protocol these files pin

- A draft B12 *medication* order counts as current B12 therapy (rules.yaml `b12_therapy`), so S7
  (no new course) fires in `s2-draft-iv-cyanocobalamin`, `s7-duplicate-draft-on-therapy` and
  `draft-b12-order-unknown-status`, and no IM series is proposed, although protocol.md S2 speaks
  of replacing the IV draft with the IM series. Change these files if the rule changes.
- A draft *laboratory* ServiceRequest (LOINC 14685-2) is neither a B12 order nor B12 therapy,
  although its LOINC display contains "Vitamin B12" and b12_product also matches by text
  (`draft-b12-test-not-on-therapy`: no S7, no S10).
- A borderline B12 with MMA / homocysteine on record but not raised: status `not-deficient`, rule
  D3 (`d3-borderline-b12-normal-mma`); the latest MMA wins over an older raised one.
- The latest B12 in an unknown unit is unusable and is not replaced by an older usable result
  (`unit-b12-unknown-unit`).
- `clinicalStatus: relapse` counts as active (`t3-crohn-small-intestine`); ICD-10-CM codes match
  with or without the dot (`dotless-icd-d519`); K50.00 matches the K50.0 prefix.
- T3 lists every matching cause in YAML order (`t3-crohn-with-ileal-resection`:
  ileal-resection, crohn-disease) and is lifelong if any of them is.
- No case combines D1 with a borderline or high B12 (whether D4 / D5 are then listed is not
  specified), and no case sits on the age-18 boundary.
"""


if __name__ == "__main__":
    sys.exit(main())
