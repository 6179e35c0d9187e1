"""FHIR Clinical Reasoning knowledge artifacts generated from the protocol tables.

One PlanDefinition per protocol profile (ids `b12-deficiency-<profile>`), because a profile
owns its regimen rules (R-rules) and thresholds: a profile is a complete, separately citable
protocol. Each PlanDefinition has one action per regimen rule in table order (the first whose
condition holds applies), under it one action per regimen (recommended first, then the
alternatives, `selectionBehavior: at-most-one`), and under each regimen one action per phase,
chained by `relatedAction after-end` and pointing at the phase's ActivityDefinition.

ActivityDefinitions (`<regimen>-<phase>`) depend only on regimens.yaml, so they are shared by
every profile that uses the regimen. Their dosage uses the same codings, UCUM units and timing
fields as the MedicationRequest writer, without dates (dates exist only once a plan is applied).

Conditions: the official R4 JSON schema restricts Expression.language to text/cql,
text/fhirpath and application/x-fhir-query, so `text/plain` is not allowed. The plain reading
of a `when` ("type is pernicious-anemia") is the Expression `description`; `expression` holds
the same test in CQL syntax over identifiers this service defines ("Deficiency Type",
"Severity", "Causes", "Safety Findings"); no CQL Library is published for them.

Pure functions of a Protocol: no FastAPI, no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cds_service.fhir.dosage_text import duration_phrase, frequency_phrase
from cds_service.fhir.medication_requests import UCUM, json_number, phase_template
from cds_service.protocol import Protocol
from cds_service.protocol.model import Phase, Profile

JSON = dict[str, Any]

PLAN_DEFINITION_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
PLAN_PREFIX = "b12-deficiency"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UNIT_CODE = {"d": "d", "wk": "wk", "mo": "mo"}
_UNIT_NAME = {"d": "days", "wk": "weeks", "mo": "months"}


class ArtifactError(ValueError):
    """A table value cannot be turned into a valid FHIR artifact (e.g. an id that is too long)."""


def _check_id(value: str) -> str:
    if not _FHIR_ID.match(value):
        raise ArtifactError(f"{value!r} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})")
    return value


def plan_definition_id(profile: str) -> str:
    return _check_id(f"{PLAN_PREFIX}-{profile}")


def profile_of(plan_definition_id: str, protocol: Protocol) -> str | None:
    """The profile a PlanDefinition id names, or None when no such PlanDefinition exists."""
    for name in protocol.profiles.profiles:
        if plan_definition_id == f"{PLAN_PREFIX}-{name}":
            return name
    return None


def plan_definition_url(protocol: Protocol, profile: str) -> str:
    return f"{protocol.url}/{profile}"


def activity_definition_id(regimen_id: str, phase_id: str) -> str:
    return _check_id(f"{regimen_id}-{phase_id}")


def activity_definition_url(protocol: Protocol, regimen_id: str, phase_id: str) -> str:
    return f"{protocol.url}/activity/{activity_definition_id(regimen_id, phase_id)}"


def canonical(resource: JSON) -> str:
    """`url|version`, as CarePlan.instantiatesCanonical names the PlanDefinition."""
    return f"{resource['url']}|{resource['version']}"


# -- `when` expressions -------------------------------------------------------------------------

_CQL_NAMES = {
    "type": '"Deficiency Type"',
    "severity": '"Severity"',
    "cause": '"Causes"',
    "flag": '"Safety Findings"',
}


def _quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def when_text(expr: Any, protocol: Protocol) -> str:
    """A plain reading of a regimen rule's `when` (e.g. "type is pernicious-anemia")."""
    if not isinstance(expr, dict):
        return str(expr)
    parts: list[str] = []
    for key, arg in expr.items():
        if key in ("any", "all"):
            joined = f" {'or' if key == 'any' else 'and'} ".join(
                when_text(sub, protocol) for sub in arg
            )
            parts.append(f"({joined})" if len(arg) > 1 else joined)
        elif key == "not":
            parts.append(f"not ({when_text(arg, protocol)})")
        elif key == "flag":
            titles = {r.id: r.title for r in protocol.rules.safety_rules}
            parts.append(f"safety rule {arg} fired ({titles.get(str(arg), 'unknown rule')})")
        elif isinstance(arg, list):
            parts.append(f"{key} is one of {', '.join(str(a) for a in arg)}")
        else:
            parts.append(f"{key} is {arg}")
    return " and ".join(parts)


def when_cql(expr: Any) -> str:
    """The same test in CQL syntax over this service's identifiers."""
    if not isinstance(expr, dict):
        raise ArtifactError(f"cannot express {expr!r}")
    parts: list[str] = []
    for key, arg in expr.items():
        if key in ("any", "all"):
            op = " or " if key == "any" else " and "
            parts.append("(" + op.join(when_cql(sub) for sub in arg) + ")")
        elif key == "not":
            parts.append(f"not ({when_cql(arg)})")
        elif key in ("type", "severity"):
            values = arg if isinstance(arg, list) else [arg]
            if len(values) == 1:
                parts.append(f"{_CQL_NAMES[key]} = {_quote(values[0])}")
            else:
                parts.append(f"{_CQL_NAMES[key]} in {{{', '.join(_quote(v) for v in values)}}}")
        elif key in ("cause", "flag"):
            values = arg if isinstance(arg, list) else [arg]
            parts.append(
                "(" + " or ".join(f"{_quote(v)} in {_CQL_NAMES[key]}" for v in values) + ")"
                if len(values) > 1
                else f"{_quote(values[0])} in {_CQL_NAMES[key]}"
            )
        else:
            raise ArtifactError(f"regimen rule `when` key {key!r} has no CQL rendering")
    return " and ".join(parts)


def applicability(description: str, cql: str) -> JSON:
    return {
        "kind": "applicability",
        "expression": {"description": description, "language": "text/cql", "expression": cql},
    }


def phase_condition(phase: Phase) -> JSON | None:
    """A conditional phase (regimens.yaml `condition`): a clinician's judgement, named in CQL."""
    if not phase.condition:
        return None
    return applicability(phase.condition, f'"Condition Met: {phase.title}"')


# -- ActivityDefinitions ------------------------------------------------------------------------


def phase_dosage(protocol: Protocol, phase: Phase) -> JSON:
    """Dosage without dates: the same codings and timing fields the MedicationRequests carry."""
    medication = protocol.regimens.medications[phase.medication]
    route = protocol.regimens.routes[phase.route]
    template = phase_template(protocol, phase)
    t = phase.timing
    repeat: JSON = {}
    if phase.duration:
        repeat["boundsDuration"] = {
            "value": phase.duration.value,
            "unit": _UNIT_NAME[phase.duration.unit],
            "system": UCUM,
            "code": _UNIT_CODE[phase.duration.unit],
        }
    repeat.update(template.repeat)

    words = [
        f"{medication.name} {json_number(phase.dose_ug)} mcg {route.text}",
        frequency_phrase(t),
    ]
    if t.count:
        words.append(f"for {t.count} doses")
    elif phase.duration:
        words.append(f"for {duration_phrase(phase.duration)}")
    else:
        words.append("ongoing (lifelong when the cause is lifelong, otherwise until reviewed)")
    return {
        "sequence": 1,
        "text": " ".join(words[:2]) + ", " + " ".join(words[2:]) + ".",
        "timing": {"repeat": repeat},
        "route": template.route,
        "doseAndRate": template.dose_and_rate,
    }


def _citations(protocol: Protocol, keys: Iterable[str]) -> list[JSON]:
    out: list[JSON] = []
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        source = protocol.sources.sources[key]
        artifact: JSON = {"type": "citation", "label": key, "display": source.title}
        if source.url:
            artifact["url"] = source.url
        out.append(artifact)
    return out


def activity_definition(protocol: Protocol, regimen_id: str, phase: Phase) -> JSON:
    regimen = protocol.regimens.regimens[regimen_id]
    index = [p.id for p in regimen.phases].index(phase.id)
    description = f"Phase {index + 1} of {len(regimen.phases)} of {regimen.title}: {phase.title}."
    if phase.condition:
        description += f" {phase.condition}"
    if phase.maintenance:
        description += f" {protocol.rules.maintenance_note}"
    return {
        "resourceType": "ActivityDefinition",
        "id": activity_definition_id(regimen_id, phase.id),
        "url": activity_definition_url(protocol, regimen_id, phase.id),
        "version": protocol.version,
        "title": f"{regimen.title}: {phase.title}",
        "status": "active",
        "publisher": protocol.publisher or None,
        "description": description,
        "relatedArtifact": _citations(protocol, regimen.citations),
        "kind": "MedicationRequest",
        "intent": "proposal",
        "productCodeableConcept": phase_template(protocol, phase).medication,
        "dosage": [phase_dosage(protocol, phase)],
    }


def activity_definitions(protocol: Protocol) -> dict[str, JSON]:
    """Every phase of every regimen, keyed by ActivityDefinition id."""
    out: dict[str, JSON] = {}
    for regimen_id, regimen in protocol.regimens.regimens.items():
        for phase in regimen.phases:
            resource = _drop_none(activity_definition(protocol, regimen_id, phase))
            if resource["id"] in out:
                raise ArtifactError(f"duplicate ActivityDefinition id {resource['id']!r}")
            out[resource["id"]] = resource
    return out


# -- PlanDefinitions ----------------------------------------------------------------------------


def _phase_actions(protocol: Protocol, regimen_id: str, prefix: str) -> list[JSON]:
    regimen = protocol.regimens.regimens[regimen_id]
    actions: list[JSON] = []
    previous: str | None = None
    for phase in regimen.phases:
        action_id = f"{prefix}-{phase.id}"
        action: JSON = {
            "id": action_id,
            "title": phase.title,
            "description": phase_dosage(protocol, phase)["text"],
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/action-type",
                        "code": "create",
                    }
                ]
            },
        }
        condition = phase_condition(phase)
        if condition:
            action["condition"] = [condition]
        if previous:
            action["relatedAction"] = [{"actionId": previous, "relationship": "after-end"}]
        action["definitionCanonical"] = activity_definition_url(protocol, regimen_id, phase.id)
        actions.append(action)
        previous = action_id
    return actions


def _regimen_action(
    protocol: Protocol, regimen_id: str, prefix: str, label: str, rule_id: str
) -> JSON:
    regimen = protocol.regimens.regimens[regimen_id]
    action_id = f"{prefix}-{regimen_id}"
    return {
        "id": action_id,
        "prefix": label,
        "title": regimen.title,
        "description": f"{label} regimen {regimen_id} (rule {rule_id}).",
        "documentation": _citations(protocol, regimen.citations),
        "groupingBehavior": "logical-group",
        "action": _phase_actions(protocol, regimen_id, action_id),
    }


def _profile_citations(protocol: Protocol, profile: Profile) -> list[str]:
    keys = list(profile.citations)
    for rule in profile.regimen_rules:
        for regimen_id in (rule.recommended, *(a.regimen for a in rule.alternatives)):
            keys += protocol.regimens.regimens[regimen_id].citations
    for option in profile.option_rules:
        for regimen_id in option.beside.values():
            keys += protocol.regimens.regimens[regimen_id].citations
    for d in protocol.rules.deficiency_rules.values():
        keys += d.citations
    for s in protocol.rules.safety_rules:
        keys += s.citations
    return keys


def plan_definition(protocol: Protocol, profile_name: str) -> JSON:
    profile = protocol.profile(profile_name)
    pd_id = plan_definition_id(profile_name)
    actions: list[JSON] = []
    for n, rule in enumerate(profile.regimen_rules, start=1):
        prefix = f"rule-{n}"
        regimens = [
            _regimen_action(protocol, rule.recommended, prefix, "Recommended", rule.id),
            *(
                _regimen_action(protocol, alt.regimen, prefix, "Alternative", alt.rule)
                for alt in rule.alternatives
            ),
        ]
        recommended = protocol.regimens.regimens[rule.recommended]
        actions.append(
            {
                "id": f"{prefix}-{rule.id}",
                "prefix": rule.id,
                "title": f"{rule.id}: {recommended.title}",
                "description": (
                    f"Applies when {when_text(rule.when, protocol)} and no earlier rule applied."
                ),
                "condition": [applicability(when_text(rule.when, protocol), when_cql(rule.when))],
                "selectionBehavior": "at-most-one",
                "action": regimens,
            }
        )
    for n, option in enumerate(profile.option_rules, start=1):
        prefix = f"option-{n}"
        beside = "; ".join(f"{right} beside {left}" for left, right in option.beside.items())
        actions.append(
            {
                "id": f"{prefix}-{option.id}",
                "prefix": option.id,
                "title": f"{option.id}: options beside the schedule the regimen rule decided",
                "description": (
                    f"Applies when {when_text(option.when, protocol)}: one more alternative "
                    f"beside the first offered regimen it names, never in its place ({beside})."
                ),
                "condition": [
                    applicability(when_text(option.when, protocol), when_cql(option.when))
                ],
                "selectionBehavior": "at-most-one",
                "action": [
                    _regimen_action(protocol, right, prefix, "Alternative", option.id)
                    for right in dict.fromkeys(option.beside.values())
                ],
            }
        )
    description = (
        f"{protocol.title}, profile {profile_name} (version {profile.version}): {profile.title}. "
        "For a confirmed, untreated deficiency of a treatable type with no contraindication "
        "(protocol D-, T- and S-rules), the first regimen rule whose condition holds applies; "
        "its first regimen is recommended, the others are alternatives. Option rules (R7) then "
        "add alternatives beside it, never in its place. Each phase is one MedicationRequest; a "
        "phase starts the day after the previous one ends."
    )
    return _drop_none(
        {
            "resourceType": "PlanDefinition",
            "id": pd_id,
            "url": plan_definition_url(protocol, profile_name),
            "version": protocol.version,
            "name": "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", pd_id) if p),
            "title": f"{protocol.title} ({profile.title})",
            "type": {
                "coding": [
                    {
                        "system": PLAN_DEFINITION_TYPE,
                        "code": "clinical-protocol",
                        "display": "Clinical Protocol",
                    }
                ]
            },
            "status": "active",
            "publisher": protocol.publisher or None,
            "description": description,
            "relatedArtifact": _citations(protocol, _profile_citations(protocol, profile)),
            "action": actions,
        }
    )


def plan_definitions(protocol: Protocol) -> dict[str, JSON]:
    """One PlanDefinition per profile, keyed by id."""
    return {
        plan_definition_id(name): plan_definition(protocol, name)
        for name in protocol.profiles.profiles
    }


def _drop_none(resource: JSON) -> JSON:
    return {k: v for k, v in resource.items() if v is not None}
