"""The audit record of one answer as a FHIR R4 GuidanceResponse (profile cdshooksguidanceresponse).

It answers "why was this patient offered this schedule" without the prefetch: the rules that
fired with the resources they read and what was read from each (the evidence texts carry the
values, units and dates), the protocol and profile versions, the schedule proposed and, for a
CDS Hooks answer, every card's uuid, kind and suggestion uuids. Pure: no I/O.

R4 types `performer` as Reference(Device): it names this service, and the user who asked
(`context.userId`) is carried in the `requesting-user` extension.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from cds_service.clinical.facts import Evidence
from cds_service.clinical.regimen import Plan
from cds_service.fhir.medication_requests import reference
from cds_service.protocol import Protocol

JSON = dict[str, Any]

PROFILE = "http://hl7.org/fhir/StructureDefinition/cdshooksguidanceresponse"
ENDPOINT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/cqf-cdsHooksEndpoint"
USER_EXTENSION = "https://b12-cds.example.org/StructureDefinition/requesting-user"
OUTPUT_ID = "output"


@dataclass(frozen=True)
class Answer:
    """Who asked what, and when: the parts of a GuidanceResponse that are not the plan."""

    response_id: str
    request_identifier: str
    module_uri: str
    occurred: datetime
    patient_id: str | None
    encounter: str | None = None
    user: str | None = None
    #: The CDS Hooks service id, or the PlanDefinition id of a $apply.
    service: str = ""


def _evidence(rule_id: str | None, items: Iterable[Evidence]) -> list[JSON]:
    out: list[JSON] = []
    for e in items:
        part: list[JSON] = []
        if rule_id:
            part.append({"name": "rule", "valueString": rule_id})
        part.append({"name": "reference", "valueReference": {"reference": e.reference}})
        part.append({"name": "value", "valueString": e.text})
        if e.date:
            part.append({"name": "date", "valueString": e.date})
        out.append({"name": "evidence", "part": part})
    return out


def evidence_parameters(plan: Plan) -> list[JSON]:
    """Each rule that fired with what it read; the deficiency rules share their evidence."""
    a = plan.assessment
    params: list[JSON] = []
    params += _evidence(",".join(a.deficiency_rules) or None, a.deficiency_evidence)
    params += _evidence(a.type_rule.id if a.type_rule else None, a.cause_evidence)
    for finding in a.findings:
        params += _evidence(finding.rule.id, finding.evidence)
    for therapy in a.b12_therapy:
        params += _evidence(None, [Evidence(therapy.reference, f"B12 therapy: {therapy.label}")])
    for result in a.unusable:
        params += _evidence(None, [Evidence(result.reference, f"unusable: {result.shown}")])
    for result in a.conflicting:
        params += _evidence(
            "D10", [Evidence(result.reference, f"conflicting: {result.shown}", result.date_text)]
        )
    return params


@lru_cache(maxsize=4096)
def _phase_text(title: str, dose_ug: float, route: str, start: date, end: date | None) -> str:
    """Memoised: every answer of a day repeats the same few phases (an audit record per answer
    is on the request path)."""
    until = end.isoformat() if end else "open"
    return f"{title}: {dose_ug:g} mcg {route}, {start.isoformat()} to {until}"


def plan_parameters(plan: Plan, protocol: Protocol) -> list[JSON]:
    a = plan.assessment
    params: list[JSON] = [
        {"name": "protocol", "valueString": protocol.id},
        {"name": "protocolVersion", "valueString": protocol.version},
        {"name": "profile", "valueString": a.profile_name},
        {"name": "profileVersion", "valueString": a.profile.version},
        {"name": "status", "valueCode": a.status},
        {"name": "severity", "valueCode": a.severity},
    ]
    if a.type:
        params.append({"name": "type", "valueCode": a.type})
    params += [{"name": "rule", "valueString": r} for r in plan.rule_ids]
    for schedule in plan.schedules:
        part: list[JSON] = [
            {"name": "regimen", "valueString": schedule.regimen_id},
            {"name": "rule", "valueString": schedule.rule_id},
            {"name": "recommended", "valueBoolean": schedule.recommended},
            {"name": "lifelong", "valueBoolean": schedule.lifelong},
        ]
        for p in schedule.phases:
            text = _phase_text(p.phase.title, p.phase.dose_ug, p.phase.route, p.start, p.end)
            part.append({"name": "phase", "valueString": text})
        params.append({"name": "schedule", "part": part})
    params += evidence_parameters(plan)
    return params


def card_parameters(cards: Sequence[Mapping[str, Any]]) -> list[JSON]:
    out: list[JSON] = []
    for card in cards:
        extension = card.get("extension") or {}
        part: list[JSON] = [
            {"name": "uuid", "valueString": str(card.get("uuid"))},
            {"name": "kind", "valueString": str(extension.get("card", "unknown"))},
            {"name": "indicator", "valueCode": str(card.get("indicator"))},
        ]
        part += [{"name": "rule", "valueString": str(r)} for r in extension.get("rules", ())]
        part += [
            {"name": "suggestion", "valueString": str(s["uuid"])}
            for s in card.get("suggestions", ())
            if s.get("uuid")
        ]
        out.append({"name": "card", "part": part})
    return out


#: The longest reason kept per unavailable key (they are the service's own texts).
MAX_REASON_CHARS = 300


def unavailable_parameters(
    protocol: Protocol, profile: str | None, http_status: int, reasons: Mapping[str, str]
) -> list[JSON]:
    """What an answer the service could not give says: under which protocol and profile, the
    HTTP status, and each data key it could not get with the reason (the service's own text,
    as the 412 body gives it)."""
    chosen = protocol.profile(profile)
    params: list[JSON] = [
        {"name": "protocol", "valueString": protocol.id},
        {"name": "protocolVersion", "valueString": protocol.version},
        {"name": "profile", "valueString": profile or protocol.profiles.default},
        {"name": "profileVersion", "valueString": chosen.version},
        {"name": "httpStatus", "valueInteger": http_status},
    ]
    for key in sorted(reasons):
        params.append(
            {
                "name": "unavailable",
                "part": [
                    {"name": "key", "valueString": key},
                    {"name": "reason", "valueString": reasons[key][:MAX_REASON_CHARS]},
                ],
            }
        )
    return params


def guidance_response(
    answer: Answer,
    plan: Plan | None,
    protocol: Protocol,
    outputs: list[JSON],
    status: str,
    *,
    data_requirements: Sequence[str] = (),
) -> JSON:
    """The GuidanceResponse; `outputs` are the answer's own parameters (cards, CarePlan);
    `data_requirements` the resource types it lacked (status `data-required`)."""
    params = (plan_parameters(plan, protocol) if plan is not None else []) + outputs
    resource: JSON = {
        "resourceType": "GuidanceResponse",
        "id": answer.response_id,
        "meta": {"profile": [PROFILE]},
        "extension": [{"url": ENDPOINT_EXTENSION, "valueUri": answer.module_uri}],
        "requestIdentifier": {"value": answer.request_identifier},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{answer.response_id}"}],
        "moduleUri": answer.module_uri,
        "status": status,
        "occurrenceDateTime": answer.occurred.isoformat().replace("+00:00", "Z"),
        "performer": {"type": "Device", "display": f"{protocol.title} {protocol.version}"},
    }
    if answer.user:
        resource["extension"].append(
            {"url": USER_EXTENSION, "valueReference": reference(answer.user, "Practitioner")}
        )
    if answer.patient_id:
        resource["subject"] = {"reference": f"Patient/{answer.patient_id}"}
    if answer.encounter:
        resource["encounter"] = reference(answer.encounter, "Encounter")
    if data_requirements:
        resource["dataRequirement"] = [{"type": t} for t in data_requirements]
    if plan is not None:
        # Every resource the evidence names, once, in order of first mention.
        seen = dict.fromkeys(
            ref
            for p in params
            for part in p.get("part", ())
            if "valueReference" in part and (ref := part["valueReference"].get("reference"))
        )
        if seen:
            resource["reasonReference"] = [{"reference": r} for r in seen]
    if params:
        resource["contained"] = [
            {"resourceType": "Parameters", "id": OUTPUT_ID, "parameter": params}
        ]
        resource["outputParameters"] = {"reference": f"#{OUTPUT_ID}"}
    return resource


def care_plan_parameters(
    plan_definition: Mapping[str, Any], care_plan: Mapping[str, Any]
) -> list[JSON]:
    """What a $apply answered: the CarePlan's id, its definition and the requests it holds."""
    part: list[JSON] = [
        {"name": "id", "valueString": str(care_plan["id"])},
        {"name": "planDefinition", "valueString": str(plan_definition.get("url", ""))},
        {"name": "version", "valueString": str(plan_definition.get("version", ""))},
    ]
    for resource in care_plan.get("contained", ()):
        part.append(
            {"name": "contained", "valueString": f"{resource['resourceType']}/{resource['id']}"}
        )
    return [{"name": "carePlan", "part": part}]
