"""The MedicationRequest series: one resource per phase, sharing one groupIdentifier.

Series are created together by one suggestion, and server ids do not exist yet at that point,
so the phases are linked by the shared groupIdentifier and their chained boundsPeriods rather
than by references between them (CDS Hooks 2.0, protocol section 5).

What a phase's order shares with every patient's (medication, route, dose, timing, course) is
its template. Every template is validated as part of an R4B MedicationRequest when the writer
is built, so a regimen table that would produce invalid FHIR stops the service at start-up
instead of reaching an EHR. Per call the template is built afresh (building the small dicts
costs less than copying them, and no caller can change a shared one through its output) and
the patient's parts (ids, dates, reasons, requester) are filled in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

from cds_service.clinical.assessment import Assessment
from cds_service.clinical.codes import code_index
from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Schedule, ScheduledPhase
from cds_service.fhir.dosage_text import dosage_text
from cds_service.protocol import Protocol, ProtocolError
from cds_service.protocol.model import CodeEntry, Phase

UCUM = "http://unitsofmeasure.org"
COURSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
COURSE_DISPLAY = {
    "acute": "Short course (acute) therapy",
    "continuous": "Continuous long term therapy",
}
DOSE_RATE_SYSTEM = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
_NAMESPACE = uuid.UUID("6f1c2a3e-8d4b-5e7f-9a0b-1c2d3e4f5a6b")

JSON = dict[str, Any]


@dataclass(frozen=True)
class OrderContext:
    """Who and what the orders are for; all optional except the patient."""

    patient: str
    authored_on: date
    requester: str | None = None
    encounter: str | None = None


def coding(protocol: Protocol, entry: CodeEntry) -> JSON:
    out: JSON = {"system": protocol.system_url(entry.system), "code": entry.code}
    if entry.display:
        out["display"] = entry.display
    return out


def json_number(value: float) -> int | float:
    """Whole numbers as JSON integers: 1000 reads better than 1000.0 to a pharmacist."""
    return int(value) if float(value).is_integer() else value


def reference(value: str, default_type: str) -> JSON:
    """A Reference from "Type/id" as given, or from a bare id of `default_type`."""
    return {"reference": value if "/" in value else f"{default_type}/{value}"}


class TemplateError(ProtocolError):
    """A regimen phase would produce a MedicationRequest that is not valid FHIR R4."""


@dataclass(frozen=True)
class PhaseTemplate:
    """The parts of one phase's MedicationRequest that are the same for every patient."""

    medication: JSON
    course: JSON
    route: JSON
    dose_and_rate: list[JSON]
    #: `timing.repeat` without its `boundsPeriod`, which is dated per patient.
    repeat: JSON


def phase_template(protocol: Protocol, phase: Phase) -> PhaseTemplate:
    """Built afresh on each call, so no caller can change another's through its output. The
    plan operation's ActivityDefinitions use it too, so both carry the same dosage codings."""
    medication = protocol.regimens.medications[phase.medication]
    route = protocol.regimens.routes[phase.route]
    repeat: JSON = {}
    if phase.timing.count:
        repeat["count"] = phase.timing.count
    repeat["frequency"] = phase.timing.frequency
    repeat["period"] = json_number(phase.timing.period)
    if phase.timing.period_max is not None:
        repeat["periodMax"] = json_number(phase.timing.period_max)
    repeat["periodUnit"] = phase.timing.period_unit
    concept: JSON = {"text": f"{medication.name} {medication.form}"}
    if medication.coding:
        concept["coding"] = [coding(protocol, medication.coding)]
    return PhaseTemplate(
        medication=concept,
        course={
            "coding": [
                {
                    "system": COURSE_SYSTEM,
                    "code": phase.course,
                    "display": COURSE_DISPLAY[phase.course],
                }
            ]
        },
        route={"coding": [coding(protocol, route.coding)]},
        dose_and_rate=[
            {
                "type": {
                    "coding": [
                        {"system": DOSE_RATE_SYSTEM, "code": "ordered", "display": "Ordered"}
                    ]
                },
                "doseQuantity": {
                    "value": json_number(phase.dose_ug),
                    "unit": "mcg",
                    "system": UCUM,
                    "code": "ug",
                },
            }
        ],
        repeat=repeat,
    )


def assemble(
    template: PhaseTemplate,
    *,
    resource_id: str,
    group: str,
    patient: str,
    authored_on: date,
    reasons: list[JSON],
    text: str,
    bounds: JSON,
) -> JSON:
    """One phase's order: its template with one patient's parts filled in."""
    return {
        "resourceType": "MedicationRequest",
        "id": resource_id,
        "status": "draft",
        "intent": "proposal",
        "groupIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{group}"},
        "medicationCodeableConcept": template.medication,
        "subject": reference(patient, "Patient"),
        "authoredOn": authored_on.isoformat(),
        "reasonCode": reasons,
        "courseOfTherapyType": template.course,
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": text,
                "timing": {"repeat": {"boundsPeriod": bounds, **template.repeat}},
                "route": template.route,
                "doseAndRate": template.dose_and_rate,
            }
        ],
    }


class MedicationRequestWriter:
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)
        for regimen_id, regimen in protocol.regimens.regimens.items():
            for phase in regimen.phases:
                self._check((regimen_id, phase.id), phase_template(protocol, phase))

    @staticmethod
    def _check(key: tuple[str, str], template: PhaseTemplate) -> None:
        """Validates the template inside the order it gives, with placeholder patient parts."""
        sample = assemble(
            template,
            resource_id="template",
            group=str(_NAMESPACE),
            patient="Patient/template",
            authored_on=date(2000, 1, 1),
            reasons=[{"text": "template"}],
            text="template",
            bounds={"start": "2000-01-01"},
        )
        try:
            MedicationRequest.model_validate(sample)
        except ValidationError as exc:
            raise TemplateError(
                f"regimens.yaml: regimen {key[0]} phase {key[1]} gives a MedicationRequest that "
                f"is not valid FHIR R4 ({len(exc.errors())} error(s))"
            ) from None

    def group_id(self, schedule: Schedule, assessment: Assessment, ctx: OrderContext) -> str:
        """Deterministic: the same plan for the same patient and day gets the same group."""
        key = "|".join(
            (
                ctx.patient,
                assessment.profile_name,
                schedule.regimen_id,
                str(schedule.phases[0].start),
            )
        )
        return str(uuid.uuid5(_NAMESPACE, key))

    def reason_codes(self, assessment: Assessment) -> list[JSON]:
        """The type's own codes (T2), the cause's codes (T3) and the deficiency code."""
        protocol = self.protocol
        rule = assessment.type_rule
        concepts: list[JSON] = []
        if rule and rule.reason_codes:
            concepts.append(
                {"coding": [coding(protocol, e) for e in rule.reason_codes], "text": rule.label}
            )
            return concepts
        records = {
            r.reference: r for r in (*assessment.facts.conditions, *assessment.facts.procedures)
        }
        for cause in assessment.causes:
            if not cause.reason_value_set or rule is None or rule.type != "malabsorption":
                continue
            cited = [
                records[e.reference] for e in assessment.cause_evidence if e.reference in records
            ]
            entries = self._entries(cause.reason_value_set, cited)
            if entries:
                concepts.append(
                    {"coding": [coding(protocol, e) for e in entries], "text": cause.label}
                )
        deficiency = self._entries("b12_deficiency", assessment.facts.confirmed_conditions) or [
            protocol.rules.default_deficiency_code
        ]
        concepts.append(
            {"coding": [coding(protocol, e) for e in deficiency], "text": "Vitamin B12 deficiency"}
        )
        return concepts

    def _entries(self, value_set: str, records: Iterable[CodedRecord]) -> list[CodeEntry]:
        """The protocol's own entries (verified display) for the codes the patient has."""
        out: list[CodeEntry] = []
        for record in records:
            out += [e for e in self.codes.entries_in(value_set, record.codings) if e not in out]
        return out

    def series(self, schedule: Schedule, assessment: Assessment, ctx: OrderContext) -> list[JSON]:
        group = self.group_id(schedule, assessment, ctx)
        reasons = self.reason_codes(assessment)
        return [self._one(p, schedule, assessment, ctx, group, reasons) for p in schedule.phases]

    def _one(
        self,
        scheduled: ScheduledPhase,
        schedule: Schedule,
        assessment: Assessment,
        ctx: OrderContext,
        group: str,
        reasons: list[JSON],
    ) -> JSON:
        protocol = self.protocol
        phase = scheduled.phase
        template = phase_template(protocol, phase)
        bounds = {"start": scheduled.start.isoformat()}
        if scheduled.end:
            bounds["end"] = scheduled.end.isoformat()
        medication = protocol.regimens.medications[phase.medication]
        route = protocol.regimens.routes[phase.route]
        review = assessment.profile.maintenance_review
        resource = assemble(
            template,
            resource_id=f"{group[:8]}-{scheduled.index + 1}-{phase.id}",
            group=group,
            patient=ctx.patient,
            authored_on=ctx.authored_on,
            reasons=reasons,
            text=dosage_text(scheduled, medication, route, review),
            bounds=bounds,
        )
        if ctx.encounter:
            resource["encounter"] = reference(ctx.encounter, "Encounter")
        if ctx.requester:
            resource["requester"] = reference(ctx.requester, "Practitioner")
        notes = [f"Phase {scheduled.index + 1} of {len(schedule.phases)}: {phase.title}."]
        if phase.condition:
            notes.append(phase.condition)
        if phase.maintenance:
            notes.append(protocol.rules.maintenance_note)
            rule = assessment.type_rule
            if scheduled.end is not None and rule is not None and rule.review_note:
                notes.append(rule.review_note)
        resource["note"] = [{"text": n} for n in notes]
        return resource
