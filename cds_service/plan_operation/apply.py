"""PlanDefinition/$apply (FHIR R4): a plan from the engine, answered as a CarePlan.

The CarePlan (status draft, intent proposal) contains a RequestGroup with one action per phase
of the recommended schedule, the MedicationRequests of that schedule exactly as the engine
writes them for the CDS Hooks cards, and one DetectedIssue per safety rule (S-rule) that fired.
Without a schedule (no confirmed deficiency, a contraindication, current therapy) the CarePlan
has no activity; its description and notes say why.

Parsing of the operation's parameters is here too, so the router only speaks HTTP.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.clinical.assessment import CONFIRMED, INDETERMINATE, NOT_DEFICIENT, Finding
from cds_service.clinical.extract import resource_reference
from cds_service.clinical.references import full_urls_of, subject_mismatch
from cds_service.clinical.regimen import Plan, Schedule
from cds_service.engine import Engine, bundle_resources
from cds_service.fhir.medication_requests import reference
from cds_service.hooks.prefetch import next_page
from cds_service.plan_operation.artifacts import canonical, phase_condition

JSON = dict[str, Any]

REQUEST_GROUP_ID = "rg"
SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}
ACTION_TYPE = "http://terminology.hl7.org/CodeSystem/action-type"
_ID = r"[A-Za-z0-9\-.]{1,64}"
_TYPED_REFERENCE = re.compile(rf"^[A-Z][A-Za-z]+/{_ID}$")
_PATIENT = re.compile(rf"^(?:Patient/)?({_ID})$")
_NAMESPACE = uuid.UUID("0b9a3c1e-5f2d-4c7a-8e61-2d4f6a8b0c13")


class ParameterError(ValueError):
    """The operation's parameters are malformed or incomplete (HTTP 400)."""


class DataError(ValueError):
    """The `data` parameter is not a usable FHIR Bundle for the subject (HTTP 422)."""


@dataclass(frozen=True)
class ApplyRequest:
    patient_id: str
    practitioner: str | None = None
    encounter: str | None = None
    setting: str | None = None
    data: Mapping[str, Any] | None = None
    period_start: date | None = None

    @property
    def subject(self) -> str:
        return f"Patient/{self.patient_id}"


def _patient_id(value: str) -> str:
    match = _PATIENT.match(value.strip())
    if not match:
        raise ParameterError(
            f"subject must be a Patient reference like 'Patient/123', not {value!r}"
        )
    return match.group(1)


def _reference_value(param: Mapping[str, Any], name: str) -> str:
    """A reference given as valueString / valueId / valueUri or valueReference.reference."""
    for key in ("valueString", "valueId", "valueUri"):
        if isinstance(param.get(key), str) and param[key].strip():
            return str(param[key]).strip()
    ref = param.get("valueReference")
    if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str) and ref["reference"]:
        return str(ref["reference"]).strip()
    raise ParameterError(f"parameter {name!r} needs valueString or valueReference.reference")


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ParameterError(f"parameter {name!r} is not a date: {value!r}") from None


def parse_parameters(body: Any) -> ApplyRequest:
    """The POST form: a Parameters resource."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        raise ParameterError("the body must be a FHIR Parameters resource")
    params = body.get("parameter", [])
    if not isinstance(params, list) or not all(
        isinstance(p, Mapping) and isinstance(p.get("name"), str) for p in params
    ):
        raise ParameterError("Parameters.parameter must be a list of named parameters")
    found: dict[str, Mapping[str, Any]] = {}
    for p in params:
        name = str(p["name"])
        if name in found:
            raise ParameterError(f"parameter {name!r} is given more than once")
        found[name] = p
    if "subject" not in found:
        raise ParameterError("parameter 'subject' is required")
    data: Mapping[str, Any] | None = None
    if "data" in found:
        resource = found["data"].get("resource")
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "Bundle":
            raise DataError("parameter 'data' must hold a Bundle resource")
        data = resource
    start = None
    if "periodStart" in found:
        p = found["periodStart"]
        raw = p.get("valueDate") or p.get("valueDateTime") or p.get("valueString")
        if not isinstance(raw, str):
            raise ParameterError("parameter 'periodStart' needs valueDate")
        start = _date(raw, "periodStart")
    return ApplyRequest(
        patient_id=_patient_id(_reference_value(found["subject"], "subject")),
        practitioner=(
            _reference_value(found["practitioner"], "practitioner")
            if "practitioner" in found
            else None
        ),
        encounter=(
            _reference_value(found["encounter"], "encounter") if "encounter" in found else None
        ),
        setting=_setting(found.get("setting")),
        data=data,
        period_start=start,
    )


def _setting(param: Mapping[str, Any] | None) -> str | None:
    if param is None:
        return None
    concept = param.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        return str(concept.get("text") or "") or None
    value = param.get("valueString") or param.get("valueCode")
    return str(value) if value else None


def parse_query(query: Mapping[str, str]) -> ApplyRequest:
    """The GET form: ?subject=Patient/123&practitioner=...&encounter=...&setting=..."""
    subject = query.get("subject")
    if not subject:
        raise ParameterError("parameter 'subject' is required")
    if "data" in query:
        raise ParameterError("parameter 'data' is a resource: use the POST form")
    return ApplyRequest(
        patient_id=_patient_id(subject),
        practitioner=query.get("practitioner") or None,
        encounter=query.get("encounter") or None,
        setting=query.get("setting") or None,
        period_start=_date(query["periodStart"], "periodStart") if "periodStart" in query else None,
    )


def data_resources(bundle: Mapping[str, Any], patient_id: str) -> list[Mapping[str, Any]]:
    """The Bundle's resources; the Bundle must be about the subject when it holds a Patient."""
    if not isinstance(bundle.get("entry", []), list):
        raise DataError("Bundle.entry must be a list")
    if next_page(bundle) is not None:
        raise DataError("the data Bundle is paginated (link next); give the whole record")
    resources = bundle_resources(bundle)
    patients = [r.get("id") for r in resources if r.get("resourceType") == "Patient"]
    if patients and patient_id not in patients:
        raise DataError("the data Bundle holds no Patient resource for the subject")
    full_urls = full_urls_of(bundle)
    for resource in resources:
        if resource.get("resourceType") == "Patient":
            continue
        element = subject_mismatch(resource, patient_id, full_urls=full_urls)
        if element is not None:
            raise DataError(
                f"{resource_reference(resource)} in the data Bundle has a {element} that is not "
                "the subject (another patient, or a reference that cannot be resolved to it)"
            )
    return resources


# -- the answer ---------------------------------------------------------------------------------


def proposed_schedule(plan: Plan) -> Schedule | None:
    """The schedule the answer proposes: the recommended one, unless no new course is due (S7)."""
    if plan.recommended is not None and plan.assessment.new_course:
        return plan.recommended
    return None


def detected_issue(engine: Engine, finding: Finding, subject: str, day: date) -> JSON:
    rule = finding.rule
    issue: JSON = {
        "resourceType": "DetectedIssue",
        "id": f"issue-{rule.id}",
        "status": "final",
        "code": {
            "coding": [{"system": f"{engine.protocol.url}/rule", "code": rule.id}],
            "text": rule.title,
        },
        "severity": SEVERITY[rule.indicator],
        "patient": {"reference": subject},
        "identifiedDateTime": day.isoformat(),
        "detail": f"{rule.id}: {rule.summary}. {rule.detail}",
    }
    implicated = [
        {"reference": e.reference, "display": e.text}
        for e in finding.evidence
        if _TYPED_REFERENCE.match(e.reference)
    ]
    unique = list({r["reference"]: r for r in implicated}.values())
    if unique:
        issue["implicated"] = unique
    return issue


def status_text(engine: Engine, plan: Plan) -> str:
    """Why the plan proposes what it proposes, e.g. "B12 deficiency not confirmed (D5)"."""
    a = plan.assessment
    d_rules = ", ".join(a.deficiency_rules)
    if a.status == NOT_DEFICIENT:
        return f"B12 deficiency not confirmed ({d_rules}): no treatment is proposed."
    if a.status == INDETERMINATE:
        mma = engine.protocol.observations.analytes["mma"].codes[0]
        return (
            f"B12 deficiency indeterminate ({d_rules}): measure methylmalonic acid "
            f"(LOINC {mma.code}) before treating; no schedule is proposed."
        )
    if a.status != CONFIRMED:
        return f"B12 deficiency status unknown ({d_rules}): no schedule is proposed."
    rule = a.type_rule
    kind = f"{rule.label} ({rule.id})" if rule else "type not determined"
    if rule is not None and not rule.schedule:
        return (
            f"B12 deficiency confirmed ({d_rules}); {kind}: specialist referral, "
            "no schedule is proposed."
        )
    blocking = [f"{f.rule.title} ({f.rule.id})" for f in a.findings if f.rule.blocks_schedule]
    if blocking:
        return (
            f"B12 deficiency confirmed ({d_rules}); no schedule is proposed: {'; '.join(blocking)}."
        )
    current = [f"{f.rule.title} ({f.rule.id})" for f in a.findings if f.rule.no_new_course]
    if current:
        return (
            f"B12 deficiency confirmed ({d_rules}); {'; '.join(current)}: no new loading course "
            "is proposed; continue or adjust the current schedule on symptoms."
        )
    if plan.recommended is None:
        return f"B12 deficiency confirmed ({d_rules}); {kind}: no regimen rule applies."
    s = plan.recommended
    return (
        f"B12 deficiency confirmed ({d_rules}); {kind}. Recommended: {s.regimen.title} "
        f"(rule {s.rule_id}, profile {a.profile_name} {a.profile.version})."
    )


def _request_group(
    plan_definition: JSON,
    schedule: Schedule,
    requests: list[JSON],
    subject: str,
    encounter: str | None,
    day: date,
) -> JSON:
    actions: list[JSON] = []
    previous: str | None = None
    for scheduled, request in zip(schedule.phases, requests, strict=True):
        phase = scheduled.phase
        period: JSON = {"start": scheduled.start.isoformat()}
        if scheduled.end:
            period["end"] = scheduled.end.isoformat()
        action: JSON = {
            "id": phase.id,
            "prefix": f"Phase {scheduled.index + 1}",
            "title": phase.title,
            "description": request["dosageInstruction"][0]["text"],
            "type": {"coding": [{"system": ACTION_TYPE, "code": "create"}]},
            "timingPeriod": period,
        }
        condition = phase_condition(phase)
        if condition:
            action["condition"] = [condition]
        if previous:
            action["relatedAction"] = [{"actionId": previous, "relationship": "after-end"}]
        action["resource"] = {"reference": f"#{request['id']}"}
        actions.append(action)
        previous = phase.id
    group: JSON = {
        "resourceType": "RequestGroup",
        "id": REQUEST_GROUP_ID,
        "instantiatesCanonical": [canonical(plan_definition)],
        "groupIdentifier": requests[0]["groupIdentifier"],
        "status": "draft",
        "intent": "proposal",
        "code": {"text": schedule.regimen.title},
        "subject": {"reference": subject},
        "authoredOn": day.isoformat(),
        "reasonCode": requests[0]["reasonCode"],
        "action": actions,
    }
    if encounter:
        group["encounter"] = reference(encounter, "Encounter")
    return group


def care_plan(engine: Engine, plan_definition: JSON, plan: Plan, request: ApplyRequest) -> JSON:
    """The $apply answer for one plan."""
    subject = request.subject
    a = plan.assessment
    schedule = proposed_schedule(plan)
    contained: list[JSON] = []
    activity: list[JSON] = []
    period: JSON = {"start": plan.start.isoformat()}
    notes = [f"{d}: {engine.protocol.rules.deficiency_rules[d].title}." for d in a.deficiency_rules]
    if schedule is not None:
        requests = engine.medication_requests(
            plan,
            requester=request.practitioner,
            encounter=request.encounter,
            authored_on=plan.start,
        )[schedule.regimen_id]
        contained.append(
            _request_group(
                plan_definition, schedule, requests, subject, request.encounter, plan.start
            )
        )
        contained += requests
        activity.append({"reference": {"reference": f"#{REQUEST_GROUP_ID}"}})
        if all(p.end for p in schedule.phases):
            end = schedule.phases[-1].end
            assert end is not None
            period["end"] = end.isoformat()
        alternatives = [f"{s.regimen.title} ({s.rule_id})" for s in plan.alternatives]
        if alternatives:
            notes.append(
                "Alternatives in this profile (not proposed here): " + "; ".join(alternatives) + "."
            )
        notes += [f"{m.id}: {m.text}" for m in plan.monitoring]
    issues = [detected_issue(engine, f, subject, plan.start) for f in a.findings]
    contained += issues
    if a.unusable:
        notes.append(
            "Not usable, so not used: "
            + "; ".join(f"{r.analyte} {r.shown} ({r.problem})" for r in a.unusable)
            + "."
        )
    if a.stale:
        notes.append(
            f"Stale (older than {a.profile.result_recency_days} days), so not used: "
            + "; ".join(f"{r.analyte} {r.shown} ({r.date_text})" for r in a.stale)
            + "."
        )
    if a.conflicting:
        notes.append(
            "Of the same time and disagreeing, so none used: "
            + "; ".join(f"{r.analyte} {r.shown} ({r.date_text})" for r in a.conflicting)
            + "."
        )
    identity = f"{subject}|{plan_definition['id']}|{plan.start.isoformat()}"
    resource: JSON = {
        "resourceType": "CarePlan",
        "id": str(uuid.uuid5(_NAMESPACE, identity)),
        "instantiatesCanonical": [canonical(plan_definition)],
        "status": "draft",
        "intent": "proposal",
        "title": f"Vitamin B12 deficiency plan ({a.profile_name})",
        "description": status_text(engine, plan),
        "subject": {"reference": subject},
        "period": period,
        "created": plan.start.isoformat(),
    }
    if contained:
        resource["contained"] = contained
    if request.encounter:
        resource["encounter"] = reference(request.encounter, "Encounter")
    if issues:
        resource["supportingInfo"] = [{"reference": f"#{i['id']}"} for i in issues]
    if activity:
        resource["activity"] = activity
    if notes:
        resource["note"] = [{"text": n} for n in notes]
    return resource


def apply(
    engine: Engine,
    plan_definition: JSON,
    profile: str,
    request: ApplyRequest,
    resources: list[Mapping[str, Any]],
    start: date,
) -> tuple[Plan, JSON]:
    """Run the engine on the record: the plan (for the audit trail) and the CarePlan answered.

    InvalidResourceError passes."""
    plan = engine.plan(
        resources,
        start=request.period_start or start,
        profile=profile,
        patient_id=request.patient_id,
        full_urls=full_urls_of(request.data) if request.data is not None else None,
    )
    return plan, care_plan(engine, plan_definition, plan, request)
