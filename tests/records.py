"""Small FHIR record builders for rule tests: one line per fact, realistic enough to validate."""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


class Record:
    """Accumulates resources for one patient; `resources` feeds Engine.plan."""

    def __init__(self, birth_date: str = "1960-05-01", gender: str = "female") -> None:
        self._n = 0
        self.resources: list[dict[str, Any]] = [
            {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth_date}
        ]

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def condition(
        self,
        system: str,
        code: str,
        display: str = "",
        clinical: str = "active",
        verification: str = "confirmed",
    ) -> Record:
        self.resources.append(
            {
                "resourceType": "Condition",
                "id": self._id("cond"),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": clinical,
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": verification,
                        }
                    ]
                },
                "code": {"coding": [{"system": system, "code": code, "display": display or code}]},
                "subject": {"reference": "Patient/p1"},
                "recordedDate": "2026-06-01",
            }
        )
        return self

    def lab(
        self, code: str, value: float, unit: str, when: str = "2026-10-01", status: str = "final"
    ) -> Record:
        self.resources.append(
            {
                "resourceType": "Observation",
                "id": self._id("obs"),
                "status": status,
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }
        )
        return self

    def qualitative(self, code: str, text: str, when: str = "2026-10-01") -> Record:
        self.resources.append(
            {
                "resourceType": "Observation",
                "id": self._id("obs"),
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": when,
                "valueCodeableConcept": {"text": text},
            }
        )
        return self

    def b12(self, value: float, unit: str = "pmol/L", when: str = "2026-10-01") -> Record:
        return self.lab("14685-2" if "mol" in unit else "2132-9", value, unit, when)

    def procedure(self, code: str, display: str = "") -> Record:
        self.resources.append(
            {
                "resourceType": "Procedure",
                "id": self._id("proc"),
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display or code}]},
                "subject": {"reference": "Patient/p1"},
                "performedDateTime": "2020-03-01",
            }
        )
        return self

    def medication(
        self,
        text: str,
        status: str = "active",
        route: tuple[str, str] | None = None,
        rxnorm: str | None = None,
        kind: str = "MedicationRequest",
        dose_ug: float | None = None,
        prior: bool = False,
    ) -> Record:
        concept: dict[str, Any] = {"text": text}
        if rxnorm:
            concept["coding"] = [{"system": RXNORM, "code": rxnorm}]
        res: dict[str, Any] = {
            "resourceType": kind,
            "id": self._id("med"),
            "status": status,
            "medicationCodeableConcept": concept,
            "subject": {"reference": "Patient/p1"},
        }
        dosage: dict[str, Any] = {}
        if route:
            dosage["route"] = {
                "coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]
            }
        if dose_ug:
            dosage["doseAndRate"] = [
                {"doseQuantity": {"value": dose_ug, "unit": "mcg", "system": UCUM, "code": "ug"}}
            ]
        if kind == "MedicationRequest":
            res["intent"] = "order"
            if dosage:
                res["dosageInstruction"] = [dosage]
            if prior:
                res["priorPrescription"] = {"reference": "MedicationRequest/old"}
        elif dosage:
            res["dosage"] = [dosage]
        self.resources.append(res)
        return self

    def allergy(self, text: str, clinical: str = "active") -> Record:
        self.resources.append(
            {
                "resourceType": "AllergyIntolerance",
                "id": self._id("alg"),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                            "code": clinical,
                        }
                    ]
                },
                "code": {"text": text},
                "patient": {"reference": "Patient/p1"},
            }
        )
        return self

    def draft_test(self, code: str) -> Record:
        self.resources.append(
            {
                "resourceType": "ServiceRequest",
                "id": self._id("sr"),
                "status": "draft",
                "intent": "order",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": "Patient/p1"},
            }
        )
        return self
