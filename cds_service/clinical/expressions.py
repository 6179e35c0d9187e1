"""Evaluates the protocol's `when` expressions against a patient's facts.

The expression language is documented at the top of rules.yaml. Every match returns the
evidence behind it, so each fired rule can show the clinician what it saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from cds_service.clinical.codes import CodeIndex
from cds_service.clinical.facts import CodedRecord, Evidence, Facts
from cds_service.clinical.units import threshold_value
from cds_service.protocol import Protocol
from cds_service.protocol.model import Profile

Result = tuple[bool, list[Evidence]]
#: One key of the language: its argument, the scope, the `route` beside it in its mapping.
Leaf = Callable[[Any, "Scope", "str | None"], Result]

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
    #: What each fired safety rule saw, so a rule that reads its `flag` (severity reads S1) can
    #: show the clinician the same evidence instead of nothing.
    flag_evidence: dict[str, tuple[Evidence, ...]] = field(default_factory=dict)
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
        leaf = _LEAVES.get(key)
        if leaf is None:
            raise KeyError(f"unknown expression key {key!r}")
        ok, found = leaf(arg, scope, route)
        if not ok:
            return False, []
        if found:
            evidence += found
    return True, evidence


def _wanted(arg: Any) -> list[Any]:
    return arg if isinstance(arg, list) else [arg]


def _all(arg: Any, scope: Scope, route: str | None) -> Result:
    evidence: list[Evidence] = []
    for sub in arg:
        ok, found = evaluate(sub, scope)
        if not ok:
            return False, []
        evidence += found
    return True, evidence


def _any(arg: Any, scope: Scope, route: str | None) -> Result:
    hits: list[Evidence] = []
    matched = False
    for sub in arg:
        ok, found = evaluate(sub, scope)
        if ok:
            matched = True
            hits += found
    return matched, hits


def _not(arg: Any, scope: Scope, route: str | None) -> Result:
    ok, _ = evaluate(arg, scope)
    return not ok, []


def _always(arg: Any, scope: Scope, route: str | None) -> Result:
    return bool(arg), []


def _condition(arg: Any, scope: Scope, route: str | None) -> Result:
    found = _records(scope.condition_records(), arg, scope.codes)
    return bool(found), found


def _record_leaf(field_name: str) -> Leaf:
    def leaf(arg: Any, scope: Scope, route: str | None) -> Result:
        found = _records(getattr(scope.facts, field_name), arg, scope.codes)
        return bool(found), found

    return leaf


def _draft_order(arg: Any, scope: Scope, route: str | None) -> Result:
    return _orders(scope.facts.draft_medications, {"value_set": arg, "route": route}, scope)


def _active_order(arg: Any, scope: Scope, route: str | None) -> Result:
    return _orders(scope.facts.medications, {"value_set": arg, "route": route}, scope)


def _draft_order_changes_b12_therapy(arg: Any, scope: Scope, route: str | None) -> Result:
    codes = scope.codes
    found = [
        Evidence(r.reference, f"{r.label} (replaces a current prescription)", r.date)
        for r in scope.facts.draft_medications
        if r.has_prior_prescription and codes.matches("b12_product", r.codings, r.words)
    ]
    return bool(found) == bool(arg), found


def _positive(arg: Any, scope: Scope, route: str | None) -> Result:
    result = scope.facts.results.get(arg)
    if result is None or result.positive is not True:
        return False, []
    title = scope.protocol.observations.analytes[arg].title
    return True, [Evidence(result.reference, f"{title}: {result.shown}", result.date_text)]


def _comparison(op: str) -> Leaf:
    def leaf(arg: Any, scope: Scope, route: str | None) -> Result:
        return _compare(arg, scope, op)

    return leaf


def _age_below(arg: Any, scope: Scope, route: str | None) -> Result:
    facts = scope.facts
    age = facts.age_on(scope.day)
    limit = scope.profile.thresholds[arg]
    if age is None or age >= limit:
        return False, []
    return True, [Evidence(facts.patient_reference or "Patient", f"age {age} years", None)]


def _status(arg: Any, scope: Scope, route: str | None) -> Result:
    return scope.status in arg, []


def _deficiency_rule(arg: Any, scope: Scope, route: str | None) -> Result:
    return bool(set(scope.deficiency_rules) & set(_wanted(arg))), []


def _b12_therapy(arg: Any, scope: Scope, route: str | None) -> Result:
    has = bool(scope.b12_therapy)
    found = [
        Evidence(r.reference, f"{r.label} ({r.status or 'order'})", r.date)
        for r in scope.b12_therapy
    ]
    return has == bool(arg), found if has else []


def _b12_therapy_route(by: bool) -> Leaf:
    def leaf(arg: Any, scope: Scope, route: str | None) -> Result:
        # A therapy record is "by" a value set when its route or its product says so (an oral
        # tablet often carries no route at all).
        codes = scope.codes
        therapy = [
            r
            for r in scope.b12_therapy
            if codes.matches(arg, (*r.route_codings, *r.codings), f"{r.route_words} {r.words}")
            == by
        ]
        shown = [
            Evidence(r.reference, f"{r.label} ({r.status or 'order'})", r.date) for r in therapy
        ]
        return bool(therapy), shown

    return leaf


def _on_therapy(arg: Any, scope: Scope, route: str | None) -> Result:
    return _deficient_on_therapy(int(arg), scope)


def _type(arg: Any, scope: Scope, route: str | None) -> Result:
    return scope.type in _wanted(arg), []


def _cause(arg: Any, scope: Scope, route: str | None) -> Result:
    return bool(scope.causes & set(_wanted(arg))), []


def _severity(arg: Any, scope: Scope, route: str | None) -> Result:
    return scope.severity in _wanted(arg), []


def _flag(arg: Any, scope: Scope, route: str | None) -> Result:
    fired = [f for f in _wanted(arg) if f in scope.flags]
    return bool(fired), [e for f in fired for e in scope.flag_evidence.get(f, ())]


#: What each key of the expression language means (rules.yaml documents them): one look-up
#: per key, whatever its place in the language.
_LEAVES: dict[str, Leaf] = {
    "all": _all,
    "any": _any,
    "not": _not,
    "always": _always,
    "condition": _condition,
    **{key: _record_leaf(field_name) for key, field_name in _RECORD_KEYS.items()},
    "draft_order": _draft_order,
    "active_order": _active_order,
    "draft_order_changes_b12_therapy": _draft_order_changes_b12_therapy,
    "positive": _positive,
    **{op: _comparison(op) for op in ("below", "at_or_below", "above")},
    "age_below": _age_below,
    "status": _status,
    "deficiency_rule": _deficiency_rule,
    "b12_therapy": _b12_therapy,
    "b12_therapy_by": _b12_therapy_route(True),
    "b12_therapy_other_than": _b12_therapy_route(False),
    "b12_deficient_on_therapy_after_days": _on_therapy,
    "type": _type,
    "cause": _cause,
    "severity": _severity,
    "flag": _flag,
}
