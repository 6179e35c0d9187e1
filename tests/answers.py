"""The cards of one answer, built without HTTP, and what makes two of them contradict.

Used by the rule tests and the property tests: the same CardBuilder the service uses, fed the
same plan and series, so the cards are those an EHR would get for the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from cds_service.engine import Engine
from cds_service.hooks.cards import CardBuilder, HookContext

JSON = dict[str, Any]
ORAL_ROUTES = {"26643006", "37839007"}
IV_ROUTE = "47625008"
IM_ROUTE = "78421000"


def answer(
    engine: Engine,
    resources: Iterable[Mapping[str, Any]],
    *,
    start: date,
    hook: str = "patient-view",
    profile: str | None = None,
    draft_orders: Iterable[Mapping[str, Any]] = (),
) -> list[JSON]:
    drafts = tuple(draft_orders)
    plan = engine.plan(resources, start=start, profile=profile, draft_orders=drafts)
    series = engine.medication_requests(plan, requester="Practitioner/example", authored_on=start)
    ctx = HookContext(
        hook=hook,
        patient_id=plan.assessment.facts.patient_id or "unknown",
        user_id="Practitioner/example",
        draft_orders=drafts,
        authored_on=start,
    )
    return CardBuilder(engine.protocol).cards(plan, series, ctx)


def created(card: Mapping[str, Any]) -> list[JSON]:
    return [
        a["resource"]
        for s in card.get("suggestions", [])
        for a in s.get("actions", [])
        if a.get("type") == "create" and isinstance(a.get("resource"), dict)
    ]


def _route(mr: Mapping[str, Any]) -> str | None:
    codings = mr.get("dosageInstruction", [{}])[0].get("route", {}).get("coding", [])
    return codings[0].get("code") if codings else None


def recommended_series(card: Mapping[str, Any]) -> list[JSON]:
    """The MedicationRequests of the card's recommended suggestion (or its only one)."""
    suggestions = [
        s
        for s in card.get("suggestions", [])
        if any(a.get("resource", {}).get("resourceType") == "MedicationRequest"
               for a in s.get("actions", []) if a.get("type") == "create")
    ]  # fmt: skip
    chosen = [s for s in suggestions if s.get("isRecommended")] or suggestions[:1]
    return [
        a["resource"]
        for s in chosen
        for a in s["actions"]
        if a.get("type") == "create" and a["resource"].get("resourceType") == "MedicationRequest"
    ]


def starts_course(card: Mapping[str, Any]) -> bool:
    return any(r.get("resourceType") == "MedicationRequest" for r in created(card))


def says_no_new_course(card: Mapping[str, Any]) -> bool:
    return "no new loading course" in f"{card['summary']} {card['detail']}".lower()


def calls_severe(card: Mapping[str, Any]) -> bool:
    text = f"{card['summary']} {card['detail']}".lower()
    return card["indicator"] == "critical" or "severity: severe" in text


def contradictions(cards: list[JSON]) -> list[str]:
    """Pairs (or single cards) of one answer that tell the clinician opposite things.

    - a card that starts or switches a course (creates a MedicationRequest series) beside one
      saying that no new course is proposed;
    - two cards that each create a MedicationRequest series (accepting both doubles the course);
    - a card that calls the patient severe (critical, or "Severity: severe") while a card's
      recommended series starts by mouth;
    - any proposed order by the intravenous route.
    """
    found: list[str] = []
    starting = [c for c in cards if starts_course(c)]
    quiet = [c for c in cards if says_no_new_course(c)]
    for s in starting:
        for q in quiet:
            if q is not s:
                found.append(f"{kind(s)} starts a course beside {kind(q)} (no new course)")
    if len(starting) > 1:
        found.append("several cards create a series: " + ", ".join(kind(c) for c in starting))
    if any(calls_severe(c) for c in cards):
        for c in starting:
            first = recommended_series(c)[:1]
            if first and _route(first[0]) in ORAL_ROUTES:
                found.append(f"severe, but {kind(c)} recommends oral first")
    for c in cards:
        for r in created(c):
            if r.get("resourceType") == "MedicationRequest" and _route(r) == IV_ROUTE:
                found.append(f"{kind(c)} proposes the intravenous route")
    return found


def kind(card: Mapping[str, Any]) -> str:
    return str(card.get("extension", {}).get("card", "?"))
