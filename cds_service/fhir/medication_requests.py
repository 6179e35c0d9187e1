"""The MedicationRequest series: one resource per phase, sharing one groupIdentifier.

Series are created together by one suggestion, and server ids do not exist yet at that point,
so the phases are linked by the shared groupIdentifier and their chained boundsPeriods rather
than by references between them (CDS Hooks 2.0, protocol section 5).

What a phase's order shares with every patient's (medication, route, dose, timing, course) is
its template. Every template is validated as part of an R4B MedicationRequest when the writer
is built, so a regimen table that would produce invalid FHIR stops the service at start-up
instead of reaching an EHR.

Two ways out, the same JSON: `series()` builds every dict afresh (the CLI, `$apply`, the
pages: callers that may read or change what they get), while `series(..., templated=True)`,
for the hook answers, which are only serialised (orjson) and audited, puts in the JSON text of
the fixed parts serialised once at start-up (`orjson.Fragment`) from the very dicts that were
validated, and memoises what depends only on the regimen and the start day (the dosage text,
`timing`, the notes): per call only the patient's parts (ids, dates, reasons, requester,
encounter) are built. tests/test_output_templates.py checks that both give the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

from cds_service.clinical.assessment import Assessment
from cds_service.clinical.codes import code_index
from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Schedule, ScheduledPhase
from cds_service.fhir.dosage_text import dosage_text
from cds_service.ids import name_based_uuid
from cds_service.protocol import Protocol, ProtocolError
from cds_service.protocol.model import CodeEntry, Duration, Phase

UCUM = "http://unitsofmeasure.org"
COURSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
COURSE_DISPLAY = {
    "acute": "Short course (acute) therapy",
    "continuous": "Continuous long term therapy",
}
DOSE_RATE_SYSTEM = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
_NAMESPACE = uuid.UUID("6f1c2a3e-8d4b-5e7f-9a0b-1c2d3e4f5a6b")
#: Dated parts kept per (regimen, phase, start day, ...): a few per day and regimen in use.
_DATED_CACHE = 4096

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


@dataclass(frozen=True)
class PhaseText:
    """A template's fixed parts as JSON text, serialised once from the validated dicts."""

    phase: Phase
    medication: orjson.Fragment
    course: orjson.Fragment
    route: orjson.Fragment
    dose_and_rate: orjson.Fragment
    repeat: JSON

    @classmethod
    def of(cls, phase: Phase, template: PhaseTemplate) -> PhaseText:
        def text(value: Any) -> orjson.Fragment:
            return orjson.Fragment(orjson.dumps(value))

        return cls(
            phase,
            text(template.medication),
            text(template.course),
            text(template.route),
            text(template.dose_and_rate),
            template.repeat,
        )


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
    template: PhaseTemplate | PhaseText,
    *,
    resource_id: str,
    group: str,
    patient: str,
    authored_on: date,
    reasons: list[JSON],
    text: str,
    bounds: JSON,
    timing: JSON | orjson.Fragment | None = None,
) -> JSON:
    """One phase's order: its template with one patient's parts filled in (`timing`, when
    given, is the `timing` of `bounds` already made)."""
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
                "timing": timing or {"repeat": {"boundsPeriod": bounds, **template.repeat}},
                "route": template.route,
                "doseAndRate": template.dose_and_rate,
            }
        ],
    }


class MedicationRequestWriter:
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)
        self._texts: dict[tuple[str, str], PhaseText] = {}
        for regimen_id, regimen in protocol.regimens.regimens.items():
            for phase in regimen.phases:
                template = phase_template(protocol, phase)
                self._check((regimen_id, phase.id), template)
                self._texts[regimen_id, phase.id] = PhaseText.of(phase, template)
        self._dated = lru_cache(maxsize=_DATED_CACHE)(self._dated_parts)
        self._notes = lru_cache(maxsize=_DATED_CACHE)(self._note_text)

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
        return name_based_uuid(_NAMESPACE, key)

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

    def series(
        self,
        schedule: Schedule,
        assessment: Assessment,
        ctx: OrderContext,
        *,
        templated: bool = False,
        reasons: list[JSON] | None = None,
    ) -> list[JSON]:
        """One order per phase; `templated`: with the fixed parts as JSON text (see above).
        `reasons` is `reason_codes(assessment)` when the caller has made it already: it is the
        same for every schedule of a plan, and every phase's order shares it."""
        group = self.group_id(schedule, assessment, ctx)
        if reasons is None:
            reasons = self.reason_codes(assessment)
        if templated:
            return [
                self._templated(p, schedule, assessment, ctx, group, reasons)
                for p in schedule.phases
            ]
        return [self._one(p, schedule, assessment, ctx, group, reasons) for p in schedule.phases]

    def _dated_parts(
        self,
        regimen_id: str,
        phase_id: str,
        index: int,
        start: date,
        end: date | None,
        review: Duration,
    ) -> tuple[str, orjson.Fragment]:
        """The dosage text and `timing` of a phase on its dates: the same for every patient."""
        text = self._texts[regimen_id, phase_id]
        phase = text.phase
        scheduled = ScheduledPhase(phase, index, start, end)
        medication = self.protocol.regimens.medications[phase.medication]
        route = self.protocol.regimens.routes[phase.route]
        bounds = {"start": scheduled.start.isoformat()}
        if scheduled.end:
            bounds["end"] = scheduled.end.isoformat()
        timing = {"repeat": {"boundsPeriod": bounds, **text.repeat}}
        return (
            dosage_text(scheduled, medication, route, review),
            orjson.Fragment(orjson.dumps(timing)),
        )

    def _note_text(
        self,
        regimen_id: str,
        phase_id: str,
        index: int,
        open_ended: bool,
        phases: int,
        review_note: str | None,
    ) -> orjson.Fragment:
        phase = self._texts[regimen_id, phase_id].phase
        scheduled = ScheduledPhase(phase, index, date.min, None if open_ended else date.min)
        return orjson.Fragment(orjson.dumps(self._note(scheduled, phases, review_note)))

    def _note(self, scheduled: ScheduledPhase, phases: int, review_note: str | None) -> list[JSON]:
        phase = scheduled.phase
        notes = [f"Phase {scheduled.index + 1} of {phases}: {phase.title}."]
        if phase.condition:
            notes.append(phase.condition)
        if phase.maintenance:
            notes.append(self.protocol.rules.maintenance_note)
            if scheduled.end is not None and review_note:
                notes.append(review_note)
        return [{"text": n} for n in notes]

    @staticmethod
    def _review_note(assessment: Assessment) -> str | None:
        rule = assessment.type_rule
        return rule.review_note if rule is not None else None

    def _templated(
        self,
        scheduled: ScheduledPhase,
        schedule: Schedule,
        assessment: Assessment,
        ctx: OrderContext,
        group: str,
        reasons: list[JSON],
    ) -> JSON:
        phase = scheduled.phase
        template = self._texts.get((schedule.regimen_id, phase.id))
        if template is None or template.phase is not phase:
            # Not a phase of the tables validated at start-up: the plain way.
            return self._one(scheduled, schedule, assessment, ctx, group, reasons)
        review = assessment.profile.maintenance_review
        key = (schedule.regimen_id, phase.id, scheduled.index)
        text, timing = self._dated(*key, scheduled.start, scheduled.end, review)
        resource = assemble(
            template,
            resource_id=f"{group[:8]}-{scheduled.index + 1}-{phase.id}",
            group=group,
            patient=ctx.patient,
            authored_on=ctx.authored_on,
            reasons=reasons,
            text=text,
            bounds={},
            timing=timing,
        )
        if ctx.encounter:
            resource["encounter"] = reference(ctx.encounter, "Encounter")
        if ctx.requester:
            resource["requester"] = reference(ctx.requester, "Practitioner")
        resource["note"] = self._notes(
            *key, scheduled.end is None, len(schedule.phases), self._review_note(assessment)
        )
        return resource

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
        resource["note"] = self._note(
            scheduled, len(schedule.phases), self._review_note(assessment)
        )
        return resource
