"""Evaluates the protocol's `when` expressions against a patient's facts.

The expression language is documented at the top of rules.yaml. Every match returns the
evidence behind it, so each fired rule can show the clinician what it saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from cds_service.clinical.codes import CodeIndex
from cds_service.clinical.facts import CodedRecord, Evidence, Facts
from cds_service.clinical.units import threshold_value
from cds_service.protocol import Protocol
from cds_service.protocol.model import Profile

Result = tuple[bool, list[Evidence]]

# Keys that test for a coded record in one list of the facts.
_RECORD_KEYS = {
    "procedure": "procedures",
    "medication": "medications",
    "allergy": "allergies",
    "draft_service_request": "draft_service_requests",
}


@dataclass
class Scope:
    """Everything an expression may read. `type`, `causes` and `flags` are set for R-rules."""

    protocol: Protocol
    profile: Profile
    facts: Facts
    codes: CodeIndex
    day: date
    status: str | None = None
    type: str | None = None
    causes: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    severity: str | None = None
    deficiency_rules: tuple[str, ...] = ()
    b12_therapy: tuple[CodedRecord, ...] = field(default=())
    #: Which Conditions `condition:` reads. Deficiency and type rules read confirmed ones only
    #: (protocol D1 amended); safety rules read every non-refuted one, since a suspected
    #: contraindication or neuropathy must still be heeded.
    conditions: Literal["all", "confirmed", "unconfirmed"] = "all"

    def condition_records(self) -> tuple[CodedRecord, ...]:
        if self.conditions == "all":
            return self.facts.conditions
        wanted = self.conditions == "unconfirmed"
        return tuple(c for c in self.facts.conditions if c.unconfirmed == wanted)


def _records(records: Iterable[CodedRecord], value_set: str, codes: CodeIndex) -> list[Evidence]:
    return [
        Evidence(r.reference, r.label, r.date)
        for r in records
        if codes.matches(value_set, r.codings, r.words)
    ]


def _route_matches(record: CodedRecord, value_set: str, codes: CodeIndex) -> bool:
    return codes.matches(value_set, record.route_codings, record.route_words)


def _orders(records: Iterable[CodedRecord], arg: Mapping[str, Any] | str, scope: Scope) -> Result:
    value_set = arg if isinstance(arg, str) else arg["value_set"]
    route = None if isinstance(arg, str) else arg.get("route")
    hits = [
        Evidence(r.reference, f"{r.label} ({r.status or 'order'})", r.date)
        for r in records
        if scope.codes.matches(value_set, r.codings, r.words)
        and (route is None or _route_matches(r, route, scope.codes))
    ]
    return bool(hits), hits


def _compare(arg: Mapping[str, Any], scope: Scope, op: str) -> Result:
    analyte = arg["analyte"]
    result = scope.facts.results.get(analyte)
    if result is None or result.value is None or result.unit is None:
        return False, []
    spec = scope.protocol.observations.analytes[analyte]
    limit = threshold_value(scope.profile.thresholds.get(arg["threshold"]), result.unit, spec)
    if limit is None:
        return False, []
    hit = {
        "below": result.value < limit,
        "at_or_below": result.value <= limit,
        "above": result.value > limit,
    }[op]
    evidence = [Evidence(result.reference, f"{spec.title} {result.shown}", result.date_text)]
    return hit, evidence if hit else []


def _deficient_on_therapy(days: int, scope: Scope) -> Result:
    """The laboratory result that confirmed the deficiency (D2, D3) was taken at least `days`
    after a current (not draft) B12 therapy began: that therapy has not corrected it."""
    result = scope.facts.results.get("b12")
    if not ({"D2", "D3"} & set(scope.deficiency_rules)) or result is None or result.when is None:
        return False, []
    taken = result.when.date()
    for r in scope.b12_therapy:
        if r.status == "draft" or r.date is None:
            continue
        try:
            began = date.fromisoformat(r.date)
        except ValueError:
            continue
        if (taken - began).days >= days:
            spec = scope.protocol.observations.analytes["b12"]
            return True, [
                Evidence(r.reference, f"{r.label} (since {r.date})", r.date),
                Evidence(result.reference, f"{spec.title} {result.shown}", result.date_text),
            ]
    return False, []


def evaluate(expr: Mapping[str, Any], scope: Scope) -> Result:
    """True when every key of the mapping holds (a mapping is an implicit `all`)."""
    evidence: list[Evidence] = []
    # `route` qualifies an order key in the same mapping rather than standing alone.
    route = expr.get("route")
    for key, arg in expr.items():
        if key == "route":
            continue
        ok, found = _leaf(key, arg, scope, route)
        if not ok:
            return False, []
        evidence += found
    return True, evidence


def _leaf(key: str, arg: Any, scope: Scope, route: str | None) -> Result:
    facts, codes = scope.facts, scope.codes
    if key == "all":
        evidence: list[Evidence] = []
        for sub in arg:
            ok, found = evaluate(sub, scope)
            if not ok:
                return False, []
            evidence += found
        return True, evidence
    if key == "any":
        hits: list[Evidence] = []
        matched = False
        for sub in arg:
            ok, found = evaluate(sub, scope)
            if ok:
                matched = True
                hits += found
        return matched, hits
    if key == "not":
        ok, _ = evaluate(arg, scope)
        return not ok, []
    if key == "always":
        return bool(arg), []
    if key == "condition":
        found = _records(scope.condition_records(), arg, codes)
        return bool(found), found
    if key in _RECORD_KEYS:
        found = _records(getattr(facts, _RECORD_KEYS[key]), arg, codes)
        return bool(found), found
    if key == "draft_order":
        return _orders(facts.draft_medications, {"value_set": arg, "route": route}, scope)
    if key == "active_order":
        return _orders(facts.medications, {"value_set": arg, "route": route}, scope)
    if key == "draft_order_changes_b12_therapy":
        found = [
            Evidence(r.reference, f"{r.label} (replaces a current prescription)", r.date)
            for r in facts.draft_medications
            if r.has_prior_prescription and codes.matches("b12_product", r.codings, r.words)
        ]
        return bool(found) == bool(arg), found
    if key == "positive":
        result = facts.results.get(arg)
        if result is None or result.positive is not True:
            return False, []
        title = scope.protocol.observations.analytes[arg].title
        return True, [Evidence(result.reference, f"{title}: {result.shown}", result.date_text)]
    if key in ("below", "at_or_below", "above"):
        return _compare(arg, scope, key)
    if key == "age_below":
        age = facts.age_on(scope.day)
        limit = scope.profile.thresholds[arg]
        if age is None or age >= limit:
            return False, []
        return True, [Evidence(facts.patient_reference or "Patient", f"age {age} years", None)]
    if key == "status":
        return scope.status in arg, []
    if key == "deficiency_rule":
        wanted = arg if isinstance(arg, list) else [arg]
        return bool(set(scope.deficiency_rules) & set(wanted)), []
    if key == "b12_therapy":
        has = bool(scope.b12_therapy)
        found = [
            Evidence(r.reference, f"{r.label} ({r.status or 'order'})", r.date)
            for r in scope.b12_therapy
        ]
        return has == bool(arg), found if has else []
    if key in ("b12_therapy_by", "b12_therapy_other_than"):
        # A therapy record is "by" a value set when its route or its product says so (an oral
        # tablet often carries no route at all).
        therapy = [
            r
            for r in scope.b12_therapy
            if codes.matches(arg, (*r.route_codings, *r.codings), f"{r.route_words} {r.words}")
            == (key == "b12_therapy_by")
        ]
        shown = [
            Evidence(r.reference, f"{r.label} ({r.status or 'order'})", r.date) for r in therapy
        ]
        return bool(therapy), shown
    if key == "b12_deficient_on_therapy_after_days":
        return _deficient_on_therapy(int(arg), scope)
    if key == "type":
        wanted = arg if isinstance(arg, list) else [arg]
        return scope.type in wanted, []
    if key == "cause":
        wanted = arg if isinstance(arg, list) else [arg]
        return bool(scope.causes & set(wanted)), []
    if key == "severity":
        wanted = arg if isinstance(arg, list) else [arg]
        return scope.severity in wanted, []
    if key == "flag":
        wanted = arg if isinstance(arg, list) else [arg]
        return bool(scope.flags & set(wanted)), []
    raise KeyError(f"unknown expression key {key!r}")
